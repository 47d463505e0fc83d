//! The Kaniko builder: assemble and hash the context, skip when the registry has the tag,
//! upload, run the build Job through the runner (under the image-build role), read its log,
//! clean up always.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use rlaunch_k8s_runner::{RunHandle, RunRef, RunState, Runner};
use rlaunch_render::{AgentKeys, ApiCoordinates, ObjectRole, Rendered, RenderedObject};
use tracing::{info, warn};

use crate::context::{self, BuildContext, CodeFetcher};
use crate::dockerfile::failed_packages;
use crate::job::{self, BUILD_CONTAINER, JobContext, JobInput, KanikoSettings};
use crate::registry::RegistryClient;
use crate::request::{BuildRequest, Built, JobSource};
use crate::store::ContextStore;
use crate::{BuildReport, Builder, Error, Result};

/// Bytes of the build log read after the build (the whole log, up to this).
pub const DEFAULT_LOG_LIMIT: usize = 8 * 1024 * 1024;
/// Lines of the build log a failure report carries.
const LOG_TAIL_LINES: usize = 40;

/// Everything the Kaniko builder is configured with.
#[derive(Clone, Debug)]
pub struct KanikoConfig {
    /// Repository the images go to (`builder.destination`, no tag).
    pub destination: String,
    /// Where contexts are uploaded.
    pub store: ContextStore,
    /// The build Job's settings.
    pub job: KanikoSettings,
    /// The existence check's registry client.
    pub registry: RegistryClient,
    /// The agent's stable identity, put on build Jobs.
    pub agent_identity: Option<String>,
    /// Where contexts are assembled (a temporary directory each).
    pub work_dir: PathBuf,
    /// How much of the build log is scanned.
    pub log_limit_bytes: usize,
}

/// Builds images in the cluster with Kaniko.
pub struct KanikoBuilder {
    config: KanikoConfig,
    runner: Runner,
    fetcher: Arc<dyn CodeFetcher>,
}

impl std::fmt::Debug for KanikoBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KanikoBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// `repository` must name a repository without a tag (the builder tags with the content
/// hash).
pub fn check_destination(repository: &str) -> Result<()> {
    let bare = repository.trim_start_matches("https://");
    let last = bare.rsplit('/').next().unwrap_or_default();
    let problem = if bare.is_empty() {
        Some("is empty; set `builder.destination` to the repository images are pushed to")
    } else if !bare.contains('/') {
        Some("names no repository (expected host/repository)")
    } else if last.contains(':') || last.contains('@') {
        Some("has a tag or digest; the builder tags images with the content hash itself")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::Destination {
            destination: repository.to_owned(),
            problem: problem.to_owned(),
        }),
        None => Ok(()),
    }
}

impl KanikoBuilder {
    /// A builder submitting through `runner` and fetching code artifacts through `fetcher`.
    pub fn new(config: KanikoConfig, runner: Runner, fetcher: Arc<dyn CodeFetcher>) -> Self {
        KanikoBuilder {
            config,
            runner,
            fetcher,
        }
    }

    /// The same builder with these credentials for the existence check.
    pub fn with_registry_auth(mut self, auth: crate::RegistryAuth) -> Self {
        self.config.registry = self.config.registry.with_auth(auth);
        self
    }

    /// The start-up check: the destination is a repository and the context store is
    /// usable. `launch-agent check` and the agent's start call it.
    pub async fn check(&self) -> Result<()> {
        check_destination(&self.config.destination)?;
        self.config.store.check().await
    }

    /// The assembled context of a build and the image it would push
    /// (`<destination>:<content hash>`). Nothing in the builder's settings but the
    /// destination goes into it.
    pub async fn plan(&self, request: &BuildRequest) -> Result<(BuildContext, String)> {
        let context = context::assemble(request, &*self.fetcher, &self.config.work_dir).await?;
        let image = format!("{}:{}", self.destination(request), context.tag);
        Ok((context, image))
    }

    /// The repository of this run's image: the run's own `destination` when it has one
    /// (the agent checked it before the ack), else the configured one.
    fn destination<'a>(&'a self, request: &'a BuildRequest) -> &'a str {
        request
            .overrides
            .destination
            .as_deref()
            .unwrap_or(&self.config.destination)
    }

    /// The build Job settings with the run's own executor image and Job name prefix.
    fn settings(&self, request: &BuildRequest) -> KanikoSettings {
        let overrides = &request.overrides;
        let mut settings = self.config.job.clone();
        if let Some(image) = &overrides.kaniko_image {
            settings.image = image.clone();
        }
        if let Some(prefix) = &overrides.job_name_prefix {
            settings.job_name_prefix = prefix.clone();
        }
        settings
    }

    /// Build (or find) the image for one run, with the warnings the build raised.
    pub async fn build_report(&self, request: &BuildRequest) -> Result<BuildReport> {
        if let Some(built) = without_build(request) {
            return Ok(BuildReport::from(built));
        }
        let (context, image) = self.plan(request).await?;
        let built = Built::Image {
            image: image.clone(),
            entrypoint: context.entrypoint.clone(),
        };
        match self.config.registry.exists(&image).await {
            Ok(true) => {
                info!(run_id = %request.run_id, %image, "the image exists; no build");
                return Ok(BuildReport::from(built));
            }
            Ok(false) => {}
            Err(error) => {
                warn!(run_id = %request.run_id, %error, "existence check failed; building")
            }
        }
        let id = format!("{}-{}", request.run_id, context.tag);
        let uri = self.config.store.upload(&id, &context.archive()).await?;
        let outcome = self.run_job(request, &image, uri).await;
        let mut cleanup = outcome.cleanup;
        if let Err(error) = self.config.store.delete(&id).await {
            cleanup.push(error.to_string());
        }
        finish(request, built, outcome.result, cleanup)
    }

    async fn run_job(&self, request: &BuildRequest, image: &str, uri: String) -> JobOutcome {
        let context = match &self.config.store {
            ContextStore::Pvc { claim, .. } => JobContext::Pvc {
                claim: claim.clone(),
                uri,
            },
            ContextStore::Object { .. } => JobContext::Remote(uri),
        };
        let settings = self.settings(request);
        let input = JobInput {
            settings: &settings,
            run_id: &request.run_id,
            agent_identity: self.config.agent_identity.as_deref(),
            context: &context,
            image,
            repository: self.destination(request),
        };
        let rendered = match job::render(&input).and_then(|job| rendered(&settings, &job)) {
            Ok(rendered) => rendered,
            Err(error) => return JobOutcome::failed(error),
        };
        let mut handle = match self.runner.submit(&rendered).await {
            Ok(submitted) => submitted.handle,
            Err(source) => {
                return JobOutcome::failed(Error::Submit {
                    run_id: request.run_id.clone(),
                    source: Box::new(source),
                });
            }
        };
        info!(run_id = %request.run_id, job = %handle.run().object(), %image, "build job created");
        let result = self.watch(request, &mut handle).await;
        let run = handle.run().clone();
        let mut cleanup = Vec::new();
        if let Err(error) = self.runner.cancel(&run).await {
            cleanup.push(format!("cannot delete build job {}: {error}", run.object()));
        }
        self.runner.untrack(&run);
        JobOutcome { result, cleanup }
    }

    async fn watch(&self, request: &BuildRequest, handle: &mut RunHandle) -> Result<Vec<String>> {
        let status = handle.wait_terminal().await;
        let run = handle.run().clone();
        let log = self.full_log(&run).await;
        match status.state {
            RunState::Finished => Ok(package_warnings(&log)),
            RunState::Failed(failure) => Err(build_failed(request, failure.message, &log)),
            other => Err(build_failed(
                request,
                format!("the build job ended {other:?}"),
                &log,
            )),
        }
    }

    async fn full_log(&self, run: &RunRef) -> Result<String, String> {
        let logs = self
            .runner
            .read_log(run, BUILD_CONTAINER, self.config.log_limit_bytes)
            .await
            .map_err(|e| e.to_string())?;
        Ok(logs
            .into_iter()
            .map(|l| l.tail)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

struct JobOutcome {
    result: Result<Vec<String>>,
    cleanup: Vec<String>,
}

impl JobOutcome {
    fn failed(error: Error) -> Self {
        JobOutcome {
            result: Err(error),
            cleanup: Vec::new(),
        }
    }
}

/// Image jobs and code jobs with a base image need no build (as W&B's agent).
fn without_build(request: &BuildRequest) -> Option<Built> {
    let base_image = match &request.source {
        JobSource::Image { image } => return Some(Built::image_as_is(image.clone())),
        JobSource::Artifact { base_image, .. } | JobSource::Repo { base_image, .. } => base_image,
    };
    let chosen = request
        .base_image_override
        .as_ref()
        .or(base_image.as_ref())?;
    Some(Built::BaseImage {
        image: chosen.clone(),
        install_dependencies: false,
    })
}

fn rendered(settings: &KanikoSettings, job: &k8s_openapi::api::batch::v1::Job) -> Result<Rendered> {
    let manifest = serde_json::to_value(job).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Rendered {
        namespace: settings.namespace.clone(),
        objects: vec![RenderedObject {
            role: ObjectRole::Workload,
            api: ApiCoordinates {
                group: "batch".to_owned(),
                version: "v1".to_owned(),
                kind: "Job".to_owned(),
                plural: Some("jobs".to_owned()),
            },
            manifest,
        }],
        warnings: Vec::new(),
        agent_keys: AgentKeys::default(),
        provenance: Vec::new(),
    })
}

fn package_warnings(log: &Result<String, String>) -> Vec<String> {
    match log {
        Ok(text) => failed_packages(text)
            .into_iter()
            .map(|packages| {
                format!(
                    "Some packages were not successfully installed during the build: {packages}"
                )
            })
            .collect(),
        Err(error) => {
            warn!(%error, "cannot read the build log; no failed-packages check");
            Vec::new()
        }
    }
}

fn build_failed(request: &BuildRequest, reason: String, log: &Result<String, String>) -> Error {
    let log_tail = match log {
        Ok(text) if text.trim().is_empty() => "(the build pod left no log)".to_owned(),
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(cannot read the build log: {error})"),
    };
    Error::BuildFailed {
        run_id: request.run_id.clone(),
        reason,
        log_tail,
        cleanup: Vec::new(),
    }
}

/// The build's result with the cleanup problems next to it: added to a build error, or
/// warnings of a successful build — never instead of the outcome.
fn finish(
    request: &BuildRequest,
    built: Built,
    result: Result<Vec<String>>,
    cleanup: Vec<String>,
) -> Result<BuildReport> {
    match result {
        Ok(mut warnings) => {
            for problem in &cleanup {
                warn!(run_id = %request.run_id, problem, "build cleanup failed");
            }
            warnings.extend(cleanup.into_iter().map(|p| format!("build cleanup: {p}")));
            Ok(BuildReport { built, warnings })
        }
        Err(Error::BuildFailed {
            run_id,
            reason,
            log_tail,
            cleanup: mut earlier,
        }) => {
            earlier.extend(cleanup);
            Err(Error::BuildFailed {
                run_id,
                reason,
                log_tail,
                cleanup: earlier,
            })
        }
        Err(error) => {
            for problem in &cleanup {
                warn!(run_id = %request.run_id, problem, "build cleanup failed");
            }
            Err(error)
        }
    }
}

impl Builder for KanikoBuilder {
    fn kind(&self) -> &'static str {
        "kaniko"
    }

    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<Built>> {
        Box::pin(async move { self.build_report(request).await.map(|r| r.built) })
    }

    fn build_report<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<BuildReport>> {
        Box::pin(KanikoBuilder::build_report(self, request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_repositories_without_tags() {
        check_destination("r.example/team/x").unwrap();
        check_destination("https://123.dkr.ecr.us-east-1.amazonaws.com/x").unwrap();
        for bad in [
            "",
            "r.example",
            "r.example/x:latest",
            "r.example/x@sha256:00",
        ] {
            let error = check_destination(bad).unwrap_err();
            assert!(error.to_string().contains("builder.destination"), "{error}");
        }
    }

    struct NoCode;

    impl CodeFetcher for NoCode {
        fn fetch_artifact<'a>(
            &'a self,
            _: &'a str,
            _: &'a std::path::Path,
        ) -> BoxFuture<'a, std::result::Result<(), String>> {
            Box::pin(async { Err("no code here".to_owned()) })
        }
    }

    #[tokio::test]
    async fn a_runs_own_destination_image_and_job_name_win_over_the_config() {
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap()))
                .unwrap();
        let runner = Runner::new(client, Default::default());
        let work_dir = std::env::temp_dir();
        let config = KanikoConfig {
            destination: "r.example/team/trainer".into(),
            store: ContextStore::pvc("ctx", &work_dir),
            job: KanikoSettings::default(),
            registry: RegistryClient::new(Default::default(), vec![]),
            agent_identity: None,
            work_dir,
            log_limit_bytes: 1024,
        };
        let builder = KanikoBuilder::new(config, runner, Arc::new(NoCode));
        let mut request = BuildRequest {
            run_id: "r".into(),
            entity: "e".into(),
            project: "p".into(),
            source: JobSource::Image { image: "x".into() },
            base_image_override: None,
            details: Default::default(),
            overrides: Default::default(),
        };
        assert_eq!(builder.destination(&request), "r.example/team/trainer");
        assert_eq!(builder.settings(&request), KanikoSettings::default());
        request.overrides = crate::BuildOverrides {
            destination: Some("r.example/team/other".into()),
            kaniko_image: Some("ghcr.io/fork/executor:v2".into()),
            job_name_prefix: Some("nightly".into()),
        };
        assert_eq!(builder.destination(&request), "r.example/team/other");
        let settings = builder.settings(&request);
        assert_eq!(settings.image, "ghcr.io/fork/executor:v2");
        assert_eq!(settings.job_name_prefix, "nightly");
        assert_eq!(settings.namespace, KanikoSettings::default().namespace);
    }

    #[test]
    fn a_cleanup_problem_goes_next_to_the_build_error() {
        let request = BuildRequest {
            run_id: "r".into(),
            entity: "e".into(),
            project: "p".into(),
            source: JobSource::Image { image: "x".into() },
            base_image_override: None,
            overrides: Default::default(),
            details: Default::default(),
        };
        let failed = build_failed(&request, "exit code 1".into(), &Ok("a\nb\n".into()));
        let error = finish(
            &request,
            Built::image_as_is("i"),
            Err(failed),
            vec!["bucket gone".into()],
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("exit code 1") && text.contains("bucket gone"),
            "{text}"
        );
        assert!(text.contains("a\nb"), "{text}");
        let report = finish(
            &request,
            Built::image_as_is("i"),
            Ok(vec![]),
            vec!["gone".into()],
        )
        .unwrap();
        assert_eq!(report.built, Built::image_as_is("i"));
        assert_eq!(report.warnings, vec!["build cleanup: gone".to_owned()]);
    }
}
