//! Chaos: a queue config that becomes malformed mid-run (an admin saves `containers: main`
//! instead of a list). Items pushed to that queue from then on fail before the ack with a
//! message naming the field; its earlier items and the other queue's items keep going;
//! nothing is lost or doubled.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::chaos::{
    Outcome, SETTLE, Scenario, agent_config, log_tails, push_items, settle, succeeding_queue,
    wait_for_jobs,
};
use common::{AgentProcess, record_jobs, simulate_wandb_init};
use rlaunch_wandb_fake::{DEFAULT_PROJECT, FAKE_ENTITY, FakeWandb};
use serde_json::json;

const SEED: u64 = 0xc4a0_c0f1;
/// The field the broken config gets wrong, as the failure must name it.
const FIELD: &str = "spec.template.spec.containers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_a_queue_config_broken_mid_run_fails_only_its_new_items() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("queue-config", SEED);
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("chaos-qconfig").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(succeeding_queue("steady", &ns.name, 2))?;
    fake.create_queue(succeeding_queue("edited", &ns.name, 2))?;
    let _sdk = simulate_wandb_init(fake.clone());
    let (seen, recorder) = record_jobs(client.clone(), ns.name.clone());
    let mut expected = BTreeMap::new();
    push_items(&fake, &mut expected, "steady", 3, Outcome::Succeeds);
    push_items(&fake, &mut expected, "edited", 3, Outcome::Succeeds);
    let config = agent_config(&ns.name, &["steady", "edited"], 3, "chaos-qconfig");
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let after = usize::try_from(scenario.rng.between(1, 3))?;
    scenario.step(format!(
        "pushed 3 items to each of two queues; one agent, max_jobs 3; `edited` breaks once {after} Jobs exist"
    ));
    wait_for_jobs(&seen, after, &[&agent], SETTLE).await?;
    let broken = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": ns.name},
        "spec": {"template": {"spec": {"containers": "main"}}},
    }}});
    fake.set_queue_config(FAKE_ENTITY, DEFAULT_PROJECT, "edited", broken)?;
    let mut refused = BTreeMap::new();
    push_items(&fake, &mut refused, "edited", 3, Outcome::Refused(FIELD));
    push_items(&fake, &mut expected, "steady", 3, Outcome::Succeeds);
    scenario.step("`edited` now has `containers: main`; pushed 3 more items to each queue");
    expected.extend(refused.clone());

    let verdict = settle(&fake, &client, &ns.name, &expected, &seen, SETTLE).await;
    recorder.abort();
    verdict.assert_clean(&scenario, &log_tails(&[&agent], 80));
    for id in refused.keys() {
        let item = fake.item(id).unwrap();
        assert_eq!(item.ack_attempts, 0, "failed before the ack: {item:#?}");
        scenario.step(format!(
            "{id}: {}",
            item.failure.map(|f| f.message).unwrap_or_default()
        ));
    }
    agent.signal("TERM")?;
    let status = agent.child.wait().await?;
    assert!(status.success(), "{status}\n{}", agent.log_text());
    ns.cleanup().await;
    Ok(())
}
