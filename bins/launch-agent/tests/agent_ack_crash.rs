//! An agent killed (SIGKILL) between the ack and the workload's create: the next start
//! fails the item with a clear message instead of forgetting it, and leaves no intent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{AgentProcess, eventually, image_item, queue};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use rlaunch_agent::{INTENT_LABEL, PAUSE_AFTER_ACK_ENV};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, ItemState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

async fn intents(client: &kube::Client, namespace: &str) -> anyhow::Result<usize> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(INTENT_LABEL))
        .await?;
    Ok(list.items.len())
}

async fn jobs(client: &kube::Client, namespace: &str) -> anyhow::Result<usize> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_acked_before_a_crash_is_failed_on_restart_not_forgotten() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-ack-crash").await?;
    let fake = FakeWandb::start().await?;
    let ok = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("q", &ns.name, ok)).unwrap();
    let item = fake.push_item(image_item("q", "crash")).unwrap();
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [q]\npoll_interval: 0.3\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nidentity: crash-{0}\n",
        ns.name
    );

    // The first agent acks, then (test hook) stops before the create and is killed.
    let mut first = AgentProcess::start_with_env(
        &fake,
        cluster.kubeconfig_path(),
        &config,
        FAKE_API_KEY,
        &[(PAUSE_AFTER_ACK_ENV, "1")],
    )
    .await?;
    eventually(
        "the item to be acked and the agent paused",
        WAIT,
        || async {
            let acked = fake
                .items()
                .iter()
                .any(|i| i.id == item && i.state == ItemState::Claimed);
            Ok(
                (acked && first.log_text().contains("test hook: paused after the ack"))
                    .then_some(()),
            )
        },
    )
    .await?;
    assert_eq!(
        intents(&client, &ns.name).await?,
        1,
        "the intent is recorded before the ack"
    );
    first.signal("KILL")?;
    first.child.wait().await?;
    assert_eq!(jobs(&client, &ns.name).await?, 0, "nothing was created");

    // The second agent finds the intent without a workload and fails the item once.
    let mut second = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let failed = eventually("the item to be failed", WAIT, || async {
        Ok(fake
            .items()
            .into_iter()
            .find(|i| i.id == item && i.state == ItemState::Failed))
    })
    .await;
    let failed = match failed {
        Ok(failed) => failed,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), second.log_text()),
    };
    let failure = failed.failure.unwrap();
    assert_eq!(failure.stage, "agent");
    assert!(
        failure
            .message
            .contains("stopped after acknowledging this item and before creating its workload"),
        "{}",
        failure.message
    );
    eventually("the intent to be deleted", WAIT, || async {
        Ok((intents(&client, &ns.name).await? == 0).then_some(()))
    })
    .await?;
    assert_eq!(
        jobs(&client, &ns.name).await?,
        0,
        "and still nothing launched"
    );
    second.signal("TERM")?;
    assert!(second.child.wait().await?.success());
    let last = fake.items().into_iter().find(|i| i.id == item).unwrap();
    assert!(
        last.later_failures.is_empty(),
        "failed once: {:?}",
        last.later_failures
    );
    ns.cleanup().await;
    Ok(())
}
