//! The render engine: turns a W&B Launch run spec and a queue config into the Kubernetes
//! objects the agent creates.
//!
//! Given the `runSpec` a queue item carries (its `resource_args.kubernetes` is the queue's
//! merged config), an optional queue config and a [`RenderContext`], [`render`] returns every
//! object to create, in creation order: the API-key Secret, additional services, then the
//! batch Job or custom resource. `launch-render` prints them; the agent submits them.
//! [`validate`] runs the same checks without an image, so the agent can fail a malformed
//! queue item before acknowledging it.
//!
//! ```
//! use rlaunch_model::RunSpec;
//! use rlaunch_render::{RenderContext, render};
//!
//! let spec = RunSpec::from_json(r#"{"entity": "team", "project": "vision",
//!     "docker": {"docker_image": "trainer:1"}}"#)?;
//! let rendered = render(&spec, None, &RenderContext::new("run1"))?;
//! let job = &rendered.workload().expect("a workload").manifest;
//! assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"], "trainer:1");
//! # Ok::<(), rlaunch_model::RenderError>(())
//! ```
//!
//! **Invariant:** this crate never does IO, reads the environment or the clock, and has no
//! async runtime or Kubernetes client. Everything variable (run id, env values, image, key)
//! comes in through [`RenderContext`], so a render is a deterministic function of its input.
//!
//! Main types: [`RenderContext`], [`Rendered`], and [`rlaunch_model::RenderError`] (every
//! problem with its field path and fix).
//!
//! # What follows W&B's agent, and where it differs
//!
//! The render follows W&B's Python agent: the same macros, the same refuse-list of unsafe
//! fields, the same namespace order, the same Job defaults (`backoffLimit: 0`,
//! `ttlSecondsAfterFinished: 60`, `restartPolicy: Never`), the same `WANDB_*` variables in the
//! same order (JSON values longer than 32,670 characters split into numbered chunks), the
//! same API-key Secret (`kubernetes.io/basic-auth`, key `password`), the same runtime code
//! mount for base-image jobs and the same forced container security context. Where that agent
//! is weak it differs, and each difference is tested:
//!
//! 1. Generated names keep digits and are valid DNS-1123 labels of at most 63 characters; an
//!    invalid user `metadata.name` is a render error naming the field
//!    ([`rlaunch_model::names`]). With a run queue item id the workload name is deterministic,
//!    so a retried submit finds its object.
//! 2. Agent-only keys ([`AGENT_ONLY_KEYS`]) are removed from the submitted body; W&B's agent
//!    leaves all but `builder` in it.
//! 3. User `imagePullSecrets` are kept and the agent's appended.
//! 4. Macros: the six named ones plus admin allow-listed agent variables only, never the whole
//!    agent environment; a named macro without a value is empty (with a warning), not `None`.
//! 5. Custom resources get the API key through a `secretKeyRef` (never a plain value), the
//!    `wandb.ai/run-id` label, and a plural from a table or an override, never `kind + "s"`
//!    ([`rlaunch_model::crd`]). Their pod specs are found anywhere in the body; a body with
//!    none, or a container without an image, is refused rather than rendered without W&B.
//! 6. The refuse-list can be relaxed per field by an admin allow-list, and an allowed container
//!    `securityContext` is kept: the forced keys fill only what it leaves unset.
//! 7. The job entrypoint and `overrides.args` go to the main container only, not sidecars.
//! 8. Additional services keep their env var names (W&B's agent lower-cases them) and are
//!    supported on the custom-resource path too.
//! 9. In helm mode a run with its own API key gets its own Secret instead of replacing the
//!    shared one under running pods.
//! 10. The queue config and the run spec's `resource_args.kubernetes` merge as an RFC 7386
//!     JSON merge patch: the run spec wins, and a `null` in it removes the queue config's key.
//! 11. [`RenderContext::secure_mode`] (W&B's agent's `secure_mode`) refuses host namespaces,
//!     init containers and container commands in every pod spec of the workload, not only in
//!     `spec.template.spec`, and names each field.

mod agent_keys;
mod code_mount;
mod context;
mod custom;
mod env;
mod job;
mod macros;
mod output;
mod pipeline;
mod provenance;
mod secret;
mod secure_mode;
mod security;
mod service;
mod walk;
mod workload;

pub use agent_keys::AGENT_ONLY_KEYS;
pub use context::{
    ApiKeyMode, CodeMount, CodeMountVariant, CodeSource, DEFAULT_CODE_INIT_IMAGE, RenderContext,
};
pub use output::{
    AgentKeys, ApiCoordinates, Layer, ObjectRole, Provenance, Rendered, RenderedObject,
};
pub use pipeline::{render, validate};
pub use secret::API_KEY_PLACEHOLDER;
