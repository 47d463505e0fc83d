//! The builder that builds nothing.

use futures::future::BoxFuture;

use crate::request::{BuildRequest, Built, JobSource};
use crate::{Builder, Error, Result};

/// Base image for code jobs that name none (W&B's agent uses the same).
pub const DEFAULT_BASE_IMAGE: &str = "python:3.12-slim";

/// Runs image jobs on their image and code jobs on a base image with the code mounted at
/// run time. A job that insists on a Dockerfile cannot run without a real builder.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopBuilder;

impl NoopBuilder {
    /// The decision, without the async wrapper.
    pub fn resolve(&self, request: &BuildRequest) -> Result<Built> {
        let (base_image, dockerfile) = match &request.source {
            JobSource::Image { image } => return Ok(Built::image_as_is(image.clone())),
            JobSource::Artifact {
                base_image,
                dockerfile,
                ..
            }
            | JobSource::Repo {
                base_image,
                dockerfile,
                ..
            } => (base_image, dockerfile),
        };
        let chosen = request.base_image_override.as_ref().or(base_image.as_ref());
        match (chosen, dockerfile) {
            (Some(image), _) => Ok(Built::BaseImage {
                image: image.clone(),
                install_dependencies: false,
            }),
            (None, Some(dockerfile)) => Err(Error::CannotBuild {
                run_id: request.run_id.clone(),
                dockerfile: dockerfile.clone(),
                builder: "noop",
            }),
            (None, None) => Ok(Built::BaseImage {
                image: DEFAULT_BASE_IMAGE.to_owned(),
                install_dependencies: true,
            }),
        }
    }
}

impl Builder for NoopBuilder {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move { self.resolve(request) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(source: JobSource) -> BuildRequest {
        BuildRequest {
            run_id: "abcd1234".into(),
            entity: "team".into(),
            project: "proj".into(),
            source,
            base_image_override: None,
            overrides: Default::default(),
            details: Default::default(),
        }
    }

    fn artifact(base_image: Option<&str>, dockerfile: Option<&str>) -> JobSource {
        JobSource::Artifact {
            artifact: "team/proj/code:v1".into(),
            base_image: base_image.map(str::to_owned),
            dockerfile: dockerfile.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn image_jobs_run_their_image() {
        let built = NoopBuilder
            .build(&request(JobSource::Image {
                image: "ghcr.io/x/y:1".into(),
            }))
            .await
            .unwrap();
        assert_eq!(built, Built::image_as_is("ghcr.io/x/y:1"));
    }

    #[test]
    fn code_jobs_without_base_image_get_the_default_and_install_dependencies() {
        let built = NoopBuilder.resolve(&request(artifact(None, None))).unwrap();
        assert_eq!(
            built,
            Built::BaseImage {
                image: DEFAULT_BASE_IMAGE.into(),
                install_dependencies: true
            }
        );
    }

    #[test]
    fn the_run_spec_base_image_wins_over_the_jobs() {
        let mut req = request(artifact(Some("job/base:1"), None));
        assert_eq!(NoopBuilder.resolve(&req).unwrap().image(), "job/base:1");
        req.base_image_override = Some("spec/base:2".into());
        assert_eq!(
            NoopBuilder.resolve(&req).unwrap(),
            Built::BaseImage {
                image: "spec/base:2".into(),
                install_dependencies: false
            }
        );
    }

    #[test]
    fn a_dockerfile_without_base_image_needs_a_real_builder() {
        let error = NoopBuilder
            .resolve(&request(artifact(None, Some("Dockerfile.train"))))
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("Dockerfile.train"), "{message}");
        assert!(message.contains("builder.type: kaniko"), "{message}");
        assert_eq!(error.kind(), "cannot_build");
    }
}
