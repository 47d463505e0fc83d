//! Chaos: two agents with the same identity started by mistake — the same launch config
//! with leader election on, on the same host, without `POD_NAME` (two `launch-agent` runs
//! in two terminals, or two containers given the same hostname). The Lease must keep one of
//! them passive: only one pops, the other stays a ready standby, and every item ends with
//! one workload and one terminal report.
//!
//! Before the fix both processes named themselves after the hostname in the Lease, so each
//! saw itself as the holder and both polled.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::chaos::{
    Outcome, SETTLE, Scenario, agent_config, log_tails, oom_queue, poppers, push_items, readyz,
    settle, succeeding_queue,
};
use common::{AgentProcess, eventually, record_jobs, simulate_wandb_init};
use rlaunch_wandb_fake::FakeWandb;

const SEED: u64 = 0xc4a0_1d1d;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_two_agents_with_one_identity_keep_one_passive() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("same-identity", SEED);
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("chaos-twins").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(succeeding_queue("ok", &ns.name, 2))?;
    fake.create_queue(oom_queue("oom", &ns.name, 1))?;
    let _sdk = simulate_wandb_init(fake.clone());
    let (seen, recorder) = record_jobs(client.clone(), ns.name.clone());
    let config = format!(
        "{}leader_election: true\nlease_namespace: {}\nlease_duration_seconds: 4\nrenew_deadline_seconds: 3\nretry_period_seconds: 1\n",
        agent_config(&ns.name, &["ok", "oom"], 3, "twins"),
        ns.name
    );
    let first = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    // The seed decides whether the twin starts at once or once the first one leads.
    let twin_at_once = scenario.rng.next().is_multiple_of(2);
    if !twin_at_once {
        eventually("the first agent to lead", SETTLE, || async {
            Ok(readyz(&first).await.filter(|b| b.starts_with("ready:")))
        })
        .await?;
    }
    let twin = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    scenario.step(format!(
        "started two agents with one launch config (leader election on, no POD_NAME), the second {}",
        if twin_at_once { "at once" } else { "once the first led" }
    ));
    let roles = eventually("both agents to settle into a role", SETTLE, || async {
        let (a, b) = (readyz(&first).await, readyz(&twin).await);
        let settled = |body: &Option<String>| {
            body.as_deref()
                .is_some_and(|b| b.starts_with("ready:") || b.starts_with("standby"))
        };
        let someone_leads = [&a, &b]
            .iter()
            .any(|body| body.as_deref().is_some_and(|b| b.starts_with("ready:")));
        Ok((settled(&a) && settled(&b) && someone_leads).then_some((a, b)))
    })
    .await?;
    scenario.step(format!("readyz: first {:?}, second {:?}", roles.0, roles.1));

    let mut expected = BTreeMap::new();
    push_items(&fake, &mut expected, "ok", 6, Outcome::Succeeds);
    push_items(&fake, &mut expected, "oom", 2, Outcome::Fails("OOMKilled"));
    scenario.step("pushed 6 items that succeed and 2 that run out of memory");
    let verdict = settle(&fake, &client, &ns.name, &expected, &seen, SETTLE).await;
    recorder.abort();
    let popped_by = poppers(&fake);
    scenario.step(format!("agents that popped: {popped_by:?}"));
    verdict.assert_clean(&scenario, &log_tails(&[&first, &twin], 60));
    assert_eq!(
        popped_by.len(),
        1,
        "seed {}: both agents popped, the Lease kept neither passive\n{}",
        scenario.seed,
        log_tails(&[&first, &twin], 60)
    );
    let standbys = [readyz(&first).await, readyz(&twin).await]
        .iter()
        .filter(|body| body.as_deref().is_some_and(|b| b.starts_with("standby")))
        .count();
    assert_eq!(standbys, 1, "one agent stays a ready standby");
    for mut agent in [first, twin] {
        agent.signal("TERM")?;
        let status = agent.child.wait().await?;
        assert!(status.success(), "{status}\n{}", agent.log_text());
    }
    ns.cleanup().await;
    Ok(())
}
