//! The small, pure model every rlaunch crate shares: the W&B Launch run spec as a queue item
//! carries it, the API key as a value that cannot leak, the label and annotation keys the
//! agent writes, the naming rules of what it creates, the table of workload custom resources,
//! and the field-level error type that names the path, the problem and the fix.
//!
//! It depends on serde (and secrecy for the key) only: no Kubernetes types, no IO, so the W&B
//! client and any tool that only needs to read a run spec can use it without compiling the
//! render engine.
//!
//! [`RunSpec`] reads the fields as W&B's agent does: the project lower-cased, `resource`
//! defaulting to `local-container`, numbers accepted where strings are expected, an empty
//! `_wandb_api_key` meaning no key, and a sweep scheduler marked by exactly
//! [`SCHEDULER_URI`]. Unlike W&B's agent it reports every malformed field at once, keeps
//! unknown fields so a spec round-trips unchanged, and generates names that keep digits and
//! fit Kubernetes' 63-character limit ([`names`]). The [`ApiKey`] is kept byte for byte:
//! whoever reads it from a file trims the trailing newline there.
//!
//! ```
//! use rlaunch_model::RunSpec;
//!
//! let spec = RunSpec::from_json(r#"{"entity": "team", "project": "Vision",
//!     "docker": {"docker_image": "python:3.12"}, "resource": "kubernetes"}"#)?;
//! assert_eq!(spec.project, "vision");
//! assert_eq!(spec.docker_image.as_deref(), Some("python:3.12"));
//! # Ok::<(), rlaunch_model::RenderError>(())
//! ```

mod api_key;
pub mod crd;
mod error;
pub mod labels;
pub mod names;
mod run_spec;

pub use api_key::ApiKey;
pub use error::{FieldError, RenderError, Result};
pub use run_spec::{
    API_KEY_FIELD, AdditionalService, Overrides, RunSpec, SCHEDULER_URI, json_kind,
};
