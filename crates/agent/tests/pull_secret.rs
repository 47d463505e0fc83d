//! The image-pull Secret a builder's credentials call for: created by the agent as
//! `regcred-<run id>`, labelled with the run, referenced by the workload, and deleted after
//! the report — also by the next agent when the run was adopted (on the testkit cluster,
//! with `wandb-fake`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use rlaunch_agent::{Agent, Config, Flags, StopReason};
use rlaunch_builder::{BuildRequest, Builder, Built, NoopBuilder, PullCredentials};
use rlaunch_k8s_runner::{Runner, RunnerConfig};
use rlaunch_model::ApiKey;
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_api::{Client, ClientConfig};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, NewItem, NewQueue};
use serde_json::json;

/// The noop builder, plus credentials for a private registry.
struct PrivateRegistry;

impl Builder for PrivateRegistry {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn build<'a>(
        &'a self,
        request: &'a BuildRequest,
    ) -> BoxFuture<'a, rlaunch_builder::Result<Built>> {
        NoopBuilder.build(request)
    }

    fn pull_credentials<'a>(
        &'a self,
        _image: &'a str,
    ) -> BoxFuture<'a, rlaunch_builder::Result<Option<PullCredentials>>> {
        Box::pin(async {
            Ok(Some(PullCredentials {
                registry: "registry.example".to_owned(),
                username: "AWS".to_owned(),
                password: "short-lived-token".to_owned(),
            }))
        })
    }
}

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let result = tokio::time::timeout(Duration::from_secs(180), async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_secret_is_labelled_used_and_deleted_after_the_report_of_an_adopted_run()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-regcred").await?;
    let fake = FakeWandb::start().await?;
    let mut queue = NewQueue::new(FAKE_ENTITY, "private");
    queue.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": ns.name},
        "spec": {"template": {"metadata": {"annotations": {
            annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "6"}}}}
    }}});
    fake.create_queue(queue).unwrap();
    let item = fake
        .push_item(NewItem {
            entity: FAKE_ENTITY.to_owned(),
            project: "model-registry".to_owned(),
            queue: "private".to_owned(),
            run_spec: json!({"entity": FAKE_ENTITY, "project": "p",
                "docker": {"docker_image": "registry.example/train:1"}}),
            priority: None,
        })
        .unwrap();

    let path = std::path::Path::new("launch-config.yaml");
    let text = format!(
        "entity: {FAKE_ENTITY}\nqueues: [private]\npoll_interval: 0.3\ninit_check_timeout: 1\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nidentity: regcred-{0}\nhealth_addr: 127.0.0.1:0\nmetrics_addr: 127.0.0.1:0\n",
        ns.name
    );
    let config = Config::resolve(Some((path, &text)), &BTreeMap::new(), &Flags::default())?;
    let key = ApiKey::new(FAKE_API_KEY);
    let wandb = Client::new(ClientConfig::new(fake.base_url.clone(), key.clone()))?;
    let start = |builder: Option<Arc<dyn Builder>>| {
        let runner = Runner::new(client.clone(), RunnerConfig::default());
        let mut agent = Agent::with_parts(config.clone(), key.clone(), wandb.clone(), runner);
        if let Some(builder) = builder {
            agent = agent.with_builder(builder);
        }
        let (trigger, shutdown) = rlaunch_agent::shutdown_channel();
        (trigger, tokio::spawn(agent.run(shutdown)))
    };
    let (trigger, running) = start(Some(Arc::new(PrivateRegistry)));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let job = wait_for("the Job", || async {
        jobs.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let run_id = job.metadata.labels.as_ref().unwrap()["wandb.ai/run-id"].clone();
    let name = format!("regcred-{run_id}");
    let secret = secrets.get(&name).await?;
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["wandb.ai/run-id"], run_id);
    assert_eq!(
        labels["rlaunch.dev/agent-identity"],
        format!("regcred-{}", ns.name)
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    let pulls: Vec<String> = pod
        .image_pull_secrets
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(pulls.contains(&name), "{pulls:?}");

    // The first agent stops (SIGTERM leaves the run for adoption); the next adopts it.
    trigger.stop(StopReason::Signal);
    assert_eq!(running.await??, StopReason::Signal);
    assert!(
        secrets.get_opt(&name).await?.is_some(),
        "kept while the run runs"
    );
    let (trigger, running) = start(None);
    wait_for("the item to be reported", || async {
        let reported = fake
            .items()
            .into_iter()
            .any(|i| i.id == item && i.failure.is_some());
        reported.then_some(())
    })
    .await;
    wait_for("the Secret to be deleted after the report", || async {
        secrets.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    trigger.stop(StopReason::Signal);
    assert_eq!(running.await??, StopReason::Signal);
    ns.cleanup().await;
    Ok(())
}
