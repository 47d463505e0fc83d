//! What a builder is asked for and what it answers.

/// Where a run's code comes from, as the job (or the run spec) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobSource {
    /// A ready image: run it as is.
    Image {
        /// Image reference.
        image: String,
    },
    /// A W&B code artifact.
    Artifact {
        /// Qualified artifact name (`entity/project/name:alias`).
        artifact: String,
        /// Base image the job names, if any.
        base_image: Option<String>,
        /// Dockerfile the job names, if any (relative to the code root).
        dockerfile: Option<String>,
    },
    /// A git repository at a commit.
    Repo {
        /// Clone URL.
        remote: String,
        /// Commit to check out.
        commit: String,
        /// Base image the job names, if any.
        base_image: Option<String>,
        /// Dockerfile the job names, if any.
        dockerfile: Option<String>,
    },
}

/// One build request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildRequest {
    /// The run id the item was acked with.
    pub run_id: String,
    /// Target entity of the run.
    pub entity: String,
    /// Target project of the run.
    pub project: String,
    /// What to run.
    pub source: JobSource,
    /// `resource_args.<resource>.builder.base_image` of the run spec, if set: wins over the
    /// job's base image.
    pub base_image_override: Option<String>,
    /// What a building builder needs beyond the source (the no-op builder ignores it).
    pub details: JobDetails,
    /// What the run spec's own `builder` block changes for this run (the agent lets
    /// through only what its admin allows, and checks it before the ack).
    pub overrides: BuildOverrides,
}

/// Builder settings one run may change (the run spec's `builder` block), each `None`
/// unless the run asks and the agent admin allows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildOverrides {
    /// `destination`: the repository this run's image is pushed to.
    pub destination: Option<String>,
    /// `kaniko-image`: the executor image of this run's build.
    pub kaniko_image: Option<String>,
    /// `build-job-name`: the name prefix of this run's build Job.
    pub job_name_prefix: Option<String>,
}

/// The parts of a job that shape a built image. Everything here goes into the image tag
/// through the generated Dockerfile or the context, and nothing here comes from the host
/// the agent runs on, so the same job gives the same tag on every agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobDetails {
    /// The job's entrypoint (`["python", "train.py"]`): the generated image's `ENTRYPOINT`.
    pub entrypoint: Option<Vec<String>>,
    /// The job's Python version (`runtime` in `wandb-job.json`, `3.10` or `3.10.4`); the
    /// generated Dockerfile uses [`crate::DEFAULT_PYTHON_VERSION`] without it.
    pub python_version: Option<String>,
    /// `overrides.dockerfile` of the run spec: wins over the job's Dockerfile.
    pub dockerfile_override: Option<String>,
    /// The job's `diff.patch` (uncommitted changes of a git job), applied after checkout.
    pub diff_patch: Option<String>,
    /// Credentials for cloning a private git repository.
    pub git_credentials: Option<GitCredentials>,
}

/// HTTP credentials for a git remote (a user name and a token). `Debug` never shows the
/// token, and the builder hands it to git through its environment, never its arguments.
#[derive(Clone, PartialEq, Eq)]
pub struct GitCredentials {
    /// User name (`x-access-token`, `oauth2`, ...).
    pub username: String,
    /// Token or password.
    pub password: String,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What the workload runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Built {
    /// This image, with the code inside.
    Image {
        /// Image reference.
        image: String,
        /// The entrypoint the image runs the job with, when the build changed the job's
        /// (the context was the entrypoint's directory); `None` keeps the job's.
        entrypoint: Option<Vec<String>>,
    },
    /// A base image; the code is mounted at run time.
    BaseImage {
        /// Image reference.
        image: String,
        /// True when the image is the automatic default, so dependencies are installed
        /// before the entrypoint runs.
        install_dependencies: bool,
    },
}

impl Built {
    /// The image reference, whichever the variant.
    pub fn image(&self) -> &str {
        match self {
            Built::Image { image, .. } | Built::BaseImage { image, .. } => image,
        }
    }

    /// An image used as it is (the job's entrypoint unchanged).
    pub fn image_as_is(image: impl Into<String>) -> Built {
        Built::Image {
            image: image.into(),
            entrypoint: None,
        }
    }

    /// The entrypoint the build rewrote, if it did.
    pub fn entrypoint(&self) -> Option<&[String]> {
        match self {
            Built::Image {
                entrypoint: Some(entrypoint),
                ..
            } => Some(entrypoint),
            _ => None,
        }
    }
}
