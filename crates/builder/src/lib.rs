//! Image builders of the launch agent: the [`Builder`] trait and the [`NoopBuilder`].
//!
//! A builder turns what a run queue item asks to run (a [`JobSource`]) into the image the
//! workload runs ([`Built`]). The agent calls it between ack and render, and reports a
//! [`Error`] as a failure of stage `build`.
//!
//! - [`NoopBuilder`] builds nothing: image jobs run their image; code jobs (a code artifact
//!   or a git repository) run on a base image and fetch their code at run time through the
//!   render engine's code mount, installing dependencies when the base image is the
//!   automatic default. This is what W&B's agent does with its no-op builder, except that
//!   we never end in a "builder not configured" error for an image job.
//! - A Kaniko builder will implement the same trait; it receives everything it needs
//!   through [`BuildRequest`] (no W&B client here).
//!
//! **Invariant:** this crate never talks to W&B; everything about the run comes in through
//! [`BuildRequest`]. Main types: [`Builder`], [`BuildRequest`], [`JobSource`], [`Built`],
//! [`NoopBuilder`], [`PullCredentials`], [`Error`].
#![doc = include_str!("../README.md")]

mod noop;
mod request;

pub use noop::{DEFAULT_BASE_IMAGE, NoopBuilder};
pub use request::{BuildRequest, Built, JobSource};

use futures::future::BoxFuture;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a build failed. Reported to W&B as a failure of stage `build`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job needs an image built from a Dockerfile, and this builder cannot build.
    #[error(
        "run {run_id} needs an image built from {dockerfile}, but the agent's builder is `{builder}` (set `builder.type: kaniko` in the agent config, or push an image job)"
    )]
    CannotBuild {
        /// The run.
        run_id: String,
        /// The Dockerfile asked for.
        dockerfile: String,
        /// The configured builder.
        builder: &'static str,
    },
    /// The build ran and failed.
    #[error("image build for run {run_id} failed: {reason}")]
    BuildFailed {
        /// The run.
        run_id: String,
        /// What failed, in the build tool's words.
        reason: String,
    },
}

impl Error {
    /// A short stable name, for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::CannotBuild { .. } => "cannot_build",
            Error::BuildFailed { .. } => "build_failed",
        }
    }
}

/// Credentials to pull a built image from a private registry. The agent turns them into
/// the run's image-pull Secret (`regcred-<run id>`). `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PullCredentials {
    /// Registry host as image references name it (`123.dkr.ecr.us-east-1.amazonaws.com`).
    pub registry: String,
    /// User name (`AWS`, `oauth2accesstoken`, ...).
    pub username: String,
    /// Password or short-lived token.
    pub password: String,
}

impl std::fmt::Debug for PullCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullCredentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Something that turns a [`BuildRequest`] into an image to run.
///
/// Implementations must be safe to call twice for the same run (a restarted agent may build
/// again): the same request gives the same image.
pub trait Builder: Send + Sync {
    /// The builder's name as the agent config spells it (`noop`, `kaniko`).
    fn kind(&self) -> &'static str;

    /// Resolve or build the image for one run.
    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<Built>>;

    /// Credentials the run needs to pull `image` (a builder pushing to a private registry
    /// returns them); `None` (the default, and the noop builder's answer) means the
    /// cluster pulls it as it is.
    fn pull_credentials<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<PullCredentials>>> {
        let _ = image;
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_credentials_never_show_the_password() {
        let credentials = PullCredentials {
            registry: "r.example".to_owned(),
            username: "AWS".to_owned(),
            password: "s3cret".to_owned(),
        };
        let text = format!("{credentials:?}");
        assert!(
            !text.contains("s3cret") && text.contains("r.example"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_noop_builder_needs_no_pull_credentials() {
        assert_eq!(
            NoopBuilder.pull_credentials("trainer:1").await.unwrap(),
            None
        );
    }
}
