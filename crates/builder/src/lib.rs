//! Image builders of the launch agent: the [`Builder`] trait, the [`NoopBuilder`] and the
//! in-cluster [`KanikoBuilder`].
//!
//! A builder turns what a run queue item asks to run (a [`JobSource`]) into the image the
//! workload runs ([`Built`]). The agent calls it between ack and render, and reports an
//! [`Error`] as a failure of stage `build`.
//!
//! - [`NoopBuilder`] builds nothing: image jobs run their image; code jobs (a code artifact
//!   or a git repository) run on a base image and fetch their code at run time through the
//!   render engine's code mount, installing dependencies when the base image is the
//!   automatic default. This is what W&B's agent does with its no-op builder, except that
//!   we never end in a "builder not configured" error for an image job.
//! - [`KanikoBuilder`] builds code jobs without a base image in the cluster: the context
//!   (the code from a [`CodeFetcher`] or a git checkout with `diff.patch`, plus the job's
//!   Dockerfile or a generated one, [`generate_dockerfile`]) is archived deterministically and its
//!   content hash is the tag, so the same job gives the same tag on any agent; when the
//!   registry has that tag ([`RegistryClient`], OCI distribution API) nothing is built;
//!   otherwise the context goes to the [`ContextStore`] (S3, GCS, Azure Blob through
//!   `object_store`, or a PVC) and a Kaniko Job ([`render_job`]) runs through
//!   `rlaunch-k8s-runner` under the image-build role. The Job and the uploaded context are
//!   always removed; a cleanup problem is reported next to the outcome, never instead.
//!
//! **Invariant:** this crate never talks to W&B; everything about the run comes in through
//! [`BuildRequest`] and the [`CodeFetcher`] the agent provides. It never calls the API
//! server itself: the runner does. Main types: [`Builder`], [`BuildRequest`],
//! [`JobSource`], [`Built`], [`BuildReport`], [`NoopBuilder`], [`KanikoBuilder`],
//! [`KanikoConfig`], [`ContextStore`], [`RegistryClient`], [`RegistryAuth`], [`EcrAuth`],
//! [`EcrPullSecret`],
//! [`BuildOverrides`], [`PullCredentials`], [`Error`].
#![doc = include_str!("../README.md")]

mod context;
mod dockerfile;
mod ecr;
mod ecr_pull;
mod git;
mod job;
mod kaniko;
mod noop;
mod registry;
mod request;
mod store;

pub use context::{BuildContext, CodeFetcher, TAG_LENGTH, assemble, write_archive};
pub use dockerfile::{
    DEFAULT_PYTHON_VERSION, DOCKERFILE_NAME, Dependencies, FAILED_PACKAGES_MARKER, Generated,
    IMAGE_UID, failed_packages, generate as generate_dockerfile, python_minor,
};
pub use ecr::EcrAuth;
pub use ecr_pull::EcrPullSecret;
pub use job::{
    BUILD_CONTAINER, DEFAULT_KANIKO_IMAGE, IMAGE_ANNOTATION, JobContext, JobInput, KanikoSettings,
    PushCredentials, default_resources, job_name, render as render_job,
};
pub use kaniko::{DEFAULT_LOG_LIMIT, KanikoBuilder, KanikoConfig, check_destination};
pub use noop::{DEFAULT_BASE_IMAGE, NoopBuilder};
pub use registry::{ImageRef, RegistryAuth, RegistryClient};
pub use request::{BuildOverrides, BuildRequest, Built, GitCredentials, JobDetails, JobSource};
pub use store::{ContextStore, PVC_CONTEXT_MOUNT, StoreUri};

use std::path::PathBuf;

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
    #[error(
        "image build for run {run_id} failed: {reason}{}{}",
        tail_text(log_tail),
        cleanup_text(cleanup)
    )]
    BuildFailed {
        /// The run.
        run_id: String,
        /// What failed, as the runner classified it.
        reason: String,
        /// The last lines of the build log.
        log_tail: String,
        /// Cleanup problems seen after the failure (reported with it, never instead).
        cleanup: Vec<String>,
    },
    /// The code artifact could not be downloaded.
    #[error(
        "cannot fetch the code artifact {artifact} of run {run_id}: {reason} (check that the artifact exists and the agent's API key may read it)"
    )]
    FetchCode {
        /// The run.
        run_id: String,
        /// The artifact.
        artifact: String,
        /// Why.
        reason: String,
    },
    /// A git step failed.
    #[error(
        "cannot {step} of {remote} for run {run_id}: {detail} (check the remote, the commit and the git credentials)"
    )]
    Git {
        /// The run.
        run_id: String,
        /// The remote, without credentials.
        remote: String,
        /// The step (`fetch the commit`, `apply diff.patch`).
        step: &'static str,
        /// git's last lines.
        detail: String,
    },
    /// The Dockerfile the job names is not in its code.
    #[error(
        "run {run_id}: Dockerfile does not exist at {path} (relative to the code root; fix the job's or the run spec's dockerfile)"
    )]
    DockerfileMissing {
        /// The run.
        run_id: String,
        /// The path asked for.
        path: String,
    },
    /// The job's Python version is not one.
    #[error(
        "run {run_id}: python version {version:?} is not of the form 3.X[.Y] (fix the job's runtime)"
    )]
    InvalidPythonVersion {
        /// The run.
        run_id: String,
        /// The version found.
        version: String,
    },
    /// Local IO while assembling the context.
    #[error("run {run_id}: cannot {what} ({}): {source} (check the builder's work directory)", path.display())]
    Context {
        /// The run.
        run_id: String,
        /// The step.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// `build-context-store` is malformed or its options are wrong (a config error).
    #[error("`builder.build-context-store` {store:?} is invalid: {problem}")]
    StoreConfig {
        /// The configured store.
        store: String,
        /// What is wrong.
        problem: String,
    },
    /// The context store exists in config but cannot be used (missing bucket, no access).
    #[error(
        "the build context store ({store}) is not usable: {problem} (create it or grant the agent access)"
    )]
    StoreUnusable {
        /// The store, naming the bucket.
        store: String,
        /// The store's answer.
        problem: String,
    },
    /// Uploading (or deleting) a context failed.
    #[error("cannot upload build context {id} to {store}: {problem}")]
    Upload {
        /// The store.
        store: String,
        /// The context id.
        id: String,
        /// Why.
        problem: String,
    },
    /// `builder.destination` is not a repository.
    #[error("`builder.destination` {destination:?} {problem}")]
    Destination {
        /// The configured value.
        destination: String,
        /// What is wrong.
        problem: String,
    },
    /// The registry could not answer the existence check.
    #[error("cannot check whether {image} exists: {problem}")]
    Registry {
        /// The image.
        image: String,
        /// Why.
        problem: String,
    },
    /// The registry credentials for the existence check cannot be set up.
    #[error("cannot set up the registry credentials: {problem}")]
    RegistryAuth {
        /// What is wrong.
        problem: String,
    },
    /// `kaniko-config` cannot be the base of a build Job.
    #[error("`builder.kaniko-config` is not a usable batch/v1 Job template: {problem}")]
    Template {
        /// What is wrong.
        problem: String,
    },
    /// The build Job could not be created.
    #[error("cannot create the build job of run {run_id}: {source}")]
    Submit {
        /// The run.
        run_id: String,
        /// The runner's error.
        source: Box<rlaunch_k8s_runner::Error>,
    },
    /// A bug.
    #[error("internal builder error: {0}")]
    Internal(String),
}

fn tail_text(tail: &str) -> String {
    match tail.trim() {
        "" => String::new(),
        tail => format!("\nbuild log (last lines):\n{tail}"),
    }
}

fn cleanup_text(problems: &[String]) -> String {
    match problems {
        [] => String::new(),
        _ => format!(
            "\ncleanup after the failure also failed: {}",
            problems.join("; ")
        ),
    }
}

impl Error {
    /// A short stable name, for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::CannotBuild { .. } => "cannot_build",
            Error::BuildFailed { .. } => "build_failed",
            Error::FetchCode { .. } => "fetch_code",
            Error::Git { .. } => "git",
            Error::DockerfileMissing { .. } => "dockerfile_missing",
            Error::InvalidPythonVersion { .. } => "invalid_python_version",
            Error::Context { .. } => "context",
            Error::StoreConfig { .. } => "store_config",
            Error::StoreUnusable { .. } => "store_unusable",
            Error::Upload { .. } => "upload",
            Error::Destination { .. } => "destination",
            Error::Registry { .. } => "registry",
            Error::RegistryAuth { .. } => "registry_auth",
            Error::Template { .. } => "template",
            Error::Submit { .. } => "submit",
            Error::Internal(_) => "internal",
        }
    }
}

/// A build's result with the warnings it raised (failed packages, cleanup problems), which
/// the agent reports as run queue item warnings of stage `build`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildReport {
    /// What to run.
    pub built: Built,
    /// One sentence each.
    pub warnings: Vec<String>,
}

impl From<Built> for BuildReport {
    fn from(built: Built) -> Self {
        BuildReport {
            built,
            warnings: Vec::new(),
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

    /// [`Builder::build`] with the warnings the build raised; the default has none.
    fn build_report<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<BuildReport>> {
        Box::pin(async move { self.build(request).await.map(BuildReport::from) })
    }

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
