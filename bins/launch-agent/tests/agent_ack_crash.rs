//! An agent killed (SIGKILL) between the ack and the workload's create: the next start
//! finishes the launch from the launch intent (one workload, no failure), or — for a spec
//! with its own API key, which is never written to the cluster — fails the item with a
//! clear message; either way no intent is left and nothing is forgotten.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually, image_item, queue, simulate_wandb_init};
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
async fn an_item_acked_before_a_crash_is_launched_on_restart_not_forgotten() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-ack-crash").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let ok = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("q", &ns.name, ok)).unwrap();
    let item = fake.push_item(image_item("q", "crash")).unwrap();
    let mut keyed = image_item("q", "crash");
    keyed.run_spec["_wandb_api_key"] = json!("the-runs-own-key-0123456789abcdef01234567");
    let keyed = fake.push_item(keyed).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [q]\nmax_jobs: 2\npoll_interval: 0.3\ninit_check_timeout: 5\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nidentity: crash-{0}\n",
        ns.name
    );

    // The first agent acks both, then (test hook) stops before the creates and is killed.
    let mut first = AgentProcess::start_with_env(
        &fake,
        cluster.kubeconfig_path(),
        &config,
        FAKE_API_KEY,
        &[(PAUSE_AFTER_ACK_ENV, "1")],
    )
    .await?;
    eventually("both items acked and paused", WAIT, || async {
        let acked = fake
            .items()
            .iter()
            .filter(|i| i.state == ItemState::Claimed)
            .count();
        let paused = first
            .log_text()
            .matches("test hook: paused after the ack")
            .count();
        Ok((acked == 2 && paused == 2).then_some(()))
    })
    .await?;
    assert_eq!(
        intents(&client, &ns.name).await?,
        2,
        "the intents are recorded before the acks"
    );
    first.signal("KILL")?;
    first.child.wait().await?;
    assert_eq!(jobs(&client, &ns.name).await?, 0, "nothing was created");

    // The second agent finishes the first launch and fails the keyed item once.
    let mut second = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let job_count = eventually("the resumed launch's Job", WAIT, || async {
        let n = jobs(&client, &ns.name).await?;
        Ok((n > 0).then_some(n))
    })
    .await;
    let job_count = match job_count {
        Ok(n) => n,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), second.log_text()),
    };
    assert_eq!(job_count, 1, "one workload: the resumed one");
    let done = eventually(
        "the keyed item failed and the run reported",
        WAIT,
        || async {
            let failed = fake
                .item(&keyed)
                .is_some_and(|i| i.state == ItemState::Failed);
            let reported = jobs(&client, &ns.name).await? == 0;
            Ok((failed && reported && intents(&client, &ns.name).await? == 0).then_some(()))
        },
    )
    .await;
    if let Err(error) = done {
        panic!("{error}\n{:#?}\n{}", fake.items(), second.log_text());
    }
    let resumed = fake.item(&item).unwrap();
    assert!(
        resumed.failure.is_none() && resumed.state == ItemState::Claimed,
        "the resumed run finished: {resumed:#?}"
    );
    assert!(
        second
            .log_text()
            .contains("resuming the launch of an item acked before the agent stopped"),
        "{}",
        second.log_text()
    );
    let keyed = fake.item(&keyed).unwrap();
    let failure = keyed.failure.clone().unwrap();
    assert_eq!(failure.stage, "agent");
    assert!(
        failure
            .message
            .contains("stopped after acknowledging this item and before creating its workload")
            && failure.message.contains("own W&B API key"),
        "{}",
        failure.message
    );
    assert!(
        !failure.message.contains("the-runs-own-key"),
        "{}",
        failure.message
    );
    second.signal("TERM")?;
    assert!(second.child.wait().await?.success());
    assert!(
        keyed.later_failures.is_empty(),
        "failed once: {:?}",
        keyed.later_failures
    );
    ns.cleanup().await;
    Ok(())
}
