//! The Kaniko builder on the testkit cluster (real kube-apiserver, controller-manager and
//! scheduler; kwok plays the build pod's outcome, chosen through `kaniko-config`), with the
//! real OCI registry for the existence check and the real S3 server (moto) as context
//! store. (A PVC context needs a bound claim, which this cluster has no provisioner for:
//! the scheduler keeps such a pod Pending, which the runner reports as not started.)
//!
//! kwok runs no container, so no image is pushed: a succeeded build returns the URI
//! Kaniko would have pushed to, and kwok serves no logs, so a failure's log part says so.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_builder::{
    BuildRequest, Built, CodeFetcher, ContextStore, JobDetails, JobSource, KanikoBuilder,
    KanikoConfig, KanikoSettings, RegistryAuth, RegistryClient,
};
use rlaunch_k8s_runner::{Runner, RunnerConfig, TrackerConfig};
use rlaunch_testkit::annotations;
use rlaunch_testkit::servers::{ImageFile, Registry, S3Server, TestImage};
use serde_json::json;

struct Files;

impl CodeFetcher for Files {
    fn fetch_artifact<'a>(
        &'a self,
        _artifact: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            std::fs::write(dest.join("train.py"), "print('hi')\n").map_err(|e| e.to_string())
        })
    }
}

struct Setup {
    builder: KanikoBuilder,
    client: kube::Client,
    namespace: rlaunch_testkit::TestNamespace,
    registry: Registry,
    store: ContextStore,
    _s3: S3Server,
    _work: tempfile::TempDir,
}

async fn setup(prefix: &str, pod_annotations: serde_json::Value) -> anyhow::Result<Setup> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(prefix).await?;
    let registry = Registry::start().await?;
    let runner = Runner::new(
        client.clone(),
        RunnerConfig {
            tracker: TrackerConfig {
                start_timeout: Duration::from_secs(120),
                image_pull_grace: Duration::from_secs(5),
                verdict_settle: Duration::from_secs(1),
                crash_loop_budget: None,
            },
            ..RunnerConfig::default()
        },
    );
    let s3 = S3Server::start().await?;
    s3.create_bucket("contexts").await?;
    let options: BTreeMap<String, String> = [
        ("aws_endpoint", s3.endpoint()),
        ("aws_allow_http", "true".to_owned()),
        ("aws_access_key_id", "test".to_owned()),
        ("aws_secret_access_key", "test".to_owned()),
        ("aws_region", "us-east-1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let store = ContextStore::object("s3://contexts/builds", &options)?;
    let work = tempfile::tempdir()?;
    let config = KanikoConfig {
        destination: format!("{}/team/trainer", registry.host()),
        store: store.clone(),
        job: KanikoSettings {
            namespace: namespace.name().to_owned(),
            template: Some(
                json!({"spec": {"template": {"metadata": {"annotations": pod_annotations}}}}),
            ),
            ..KanikoSettings::default()
        },
        registry: RegistryClient::new(RegistryAuth::Anonymous, vec![registry.host()]),
        agent_identity: Some("kaniko-tests".to_owned()),
        work_dir: work.path().to_owned(),
        log_limit_bytes: 64 * 1024,
    };
    Ok(Setup {
        builder: KanikoBuilder::new(config, runner, Arc::new(Files)),
        client,
        namespace,
        registry,
        store,
        _s3: s3,
        _work: work,
    })
}

fn request(run_id: &str) -> BuildRequest {
    BuildRequest {
        run_id: run_id.to_owned(),
        entity: "team".into(),
        project: "vision".into(),
        source: JobSource::Artifact {
            artifact: "team/vision/code:v1".into(),
            base_image: None,
            dockerfile: None,
        },
        base_image_override: None,
        overrides: Default::default(),
        details: JobDetails {
            entrypoint: Some(vec!["python".into(), "train.py".into()]),
            ..JobDetails::default()
        },
    }
}

/// The build Jobs of `run_id` still in the namespace (not being deleted).
async fn live_jobs(setup: &Setup, run_id: &str) -> Vec<String> {
    let jobs: Api<Job> = Api::namespaced(setup.client.clone(), setup.namespace.name());
    let list = jobs
        .list(&ListParams::default().labels(&format!("wandb.ai/run-id={run_id}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter_map(|j| j.metadata.name)
        .collect()
}

async fn store_is_empty(setup: &Setup) -> bool {
    let ContextStore::Object { store, .. } = &setup.store else {
        panic!("an object store");
    };
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    objects.is_empty()
}

#[tokio::test]
async fn a_succeeded_build_returns_the_image_and_cleans_up() -> anyhow::Result<()> {
    let setup = setup(
        "kaniko-ok",
        json!({ annotations::OUTCOME: annotations::outcome::SUCCEED }),
    )
    .await?;
    let request = request("okrun1");
    let (context, image) = setup.builder.plan(&request).await?;
    let report = setup.builder.build_report(&request).await?;
    assert_eq!(report.built, Built::image_as_is(image.clone()));
    assert!(
        image.ends_with(&format!("/team/trainer:{}", context.tag)),
        "{image}"
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(live_jobs(&setup, "okrun1").await, Vec::<String>::new());
    assert!(
        store_is_empty(&setup).await,
        "the uploaded context is deleted"
    );
    Ok(())
}

#[tokio::test]
async fn a_failed_build_is_a_build_error_with_the_reason_and_cleans_up() -> anyhow::Result<()> {
    let setup = setup(
        "kaniko-fail",
        json!({
            annotations::OUTCOME: annotations::outcome::FAIL,
            annotations::EXIT_CODE: "3",
            annotations::MESSAGE: "error building image: RUN pip install failed",
        }),
    )
    .await?;
    let error = setup
        .builder
        .build_report(&request("failrun1"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "build_failed", "{error}");
    let text = error.to_string();
    assert!(text.contains("failrun1"), "{text}");
    // The runner's classification: the pod's exit code, or the Job's own verdict when
    // that came first.
    assert!(
        text.contains("exit code 3") || text.contains("BackoffLimitExceeded"),
        "{text}"
    );
    assert!(text.contains("build log"), "the log part is there: {text}");
    assert_eq!(live_jobs(&setup, "failrun1").await, Vec::<String>::new());
    assert!(store_is_empty(&setup).await);
    Ok(())
}

#[tokio::test]
async fn an_existing_tag_creates_no_job() -> anyhow::Result<()> {
    let setup = setup(
        "kaniko-skip",
        json!({ annotations::OUTCOME: annotations::outcome::SUCCEED }),
    )
    .await?;
    let request = request("skiprun1");
    let (context, image) = setup.builder.plan(&request).await?;
    setup
        .registry
        .push_image(
            &TestImage::new("team/trainer", &context.tag).with_file(ImageFile::new("a", "a")),
        )
        .await?;
    let report = setup.builder.build_report(&request).await?;
    assert_eq!(report.built, Built::image_as_is(image));
    let jobs: Api<Job> = Api::namespaced(setup.client.clone(), setup.namespace.name());
    let all = jobs.list(&ListParams::default()).await?;
    assert!(
        all.items.is_empty(),
        "no build job: {:?}",
        all.items
            .iter()
            .map(|j| &j.metadata.name)
            .collect::<Vec<_>>()
    );
    assert!(store_is_empty(&setup).await, "nothing uploaded");
    Ok(())
}
