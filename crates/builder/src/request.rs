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
}

/// What the workload runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Built {
    /// This image, with the code inside.
    Image(String),
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
            Built::Image(image) | Built::BaseImage { image, .. } => image,
        }
    }
}
