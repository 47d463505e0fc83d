//! The render engine: turns a W&B Launch run spec and a queue config
//! into the Kubernetes objects the agent creates.
//!
//! Given the `runSpec` a queue item carries (its `resource_args.kubernetes` is the queue's
//! merged config), an optional queue config and a [`RenderContext`], [`render`] returns every
//! object to create, in creation order: the API-key Secret, additional services, then the
//! batch Job or custom resource. `launch-render` prints them; the agent submits them.
//!
//! **Invariant:** this crate never does IO, reads the environment or the clock, and has no
//! async runtime or Kubernetes client. Everything variable (run id, env values, image, key)
//! comes in through [`RenderContext`], so a render is a deterministic function of its input.
//!
//! Main types: [`RenderContext`], [`Rendered`], and [`rlaunch_model::RenderError`] (every problem
//! with its field path and fix).
//!
//! # Differs from the reference agent
//!
//! Each item is tested; the module docs say why.
//! 1. Generated names keep digits and are valid DNS-1123 labels of at most 63 characters; an
//!    invalid user `metadata.name` is a render error naming the field ([`rlaunch_model::names`]). With a run
//!    queue item id the workload name is deterministic, so a retried submit finds its object.
//! 2. Agent-only keys ([`AGENT_ONLY_KEYS`]) are removed from the submitted body.
//! 3. User `imagePullSecrets` are kept and the agent's appended.
//! 4. Macros: the six named ones plus admin allow-listed agent variables only ([`macros`]).
//! 5. Custom resources get the API key through a `secretKeyRef`, the `wandb.ai/run-id` label,
//!    and a plural from a table or an override, never `kind + "s"` ([`rlaunch_model::crd`]).
//! 6. The refuse-list can be relaxed per field by an admin allow-list ([`security`]).
//! 7. The job entrypoint and `overrides.args` go to the main container only, not sidecars.
//! 8. Additional services keep their env var names (the reference lower-cases them) and are
//!    supported on the custom-resource path too.
//! 9. In helm mode a run with its own API key gets its own Secret instead of replacing the
//!    shared one under running pods.
#![doc = include_str!("../README.md")]

pub mod env;
pub mod macros;
pub mod render;
pub mod security;

pub use render::context::{ApiKeyMode, CodeMount, CodeMountVariant, CodeSource, RenderContext};
pub use render::output::{
    AgentKeys, ApiCoordinates, Layer, ObjectRole, Provenance, Rendered, RenderedObject,
};
pub use render::{AGENT_ONLY_KEYS, API_KEY_PLACEHOLDER, render};
