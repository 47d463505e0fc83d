//! `kill -9` of the agent at seeded points of a burst of 20 launches, each followed by a
//! restart: every item ends with exactly one workload and exactly one terminal report.
//!
//! The kill points are events, not wall time: right after the next ack the fake sees, the
//! next Job to appear, or the next failure report. The seed is fixed
//! (`RLAUNCH_KILL_SEED` overrides it) and printed with the plan, so a failure replays.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::chaos::{
    Outcome, Scenario, SplitMix, agent_config, log_tails, oom_queue, settle, succeeding_queue,
};
use common::{AgentProcess, Jobs, eventually, image_item, record_jobs, simulate_wandb_init};
use rlaunch_wandb_fake::{FakeConfig, FakeWandb};

const WAIT: Duration = Duration::from_secs(240);
const SEED: u64 = 0x0b5e_55ed_2026;
const KILLS: usize = 10;
const OK_ITEMS: usize = 15;
const OOM_ITEMS: usize = 5;

/// Where to kill: right after the next event of its kind in this life.
#[derive(Clone, Copy, Debug)]
enum KillPoint {
    Ack,
    JobCreated,
    FailureReport,
}

/// Ten points. With `max_jobs: 1` a life between two kills uses about one item (a kill
/// right after an ack leaves that item for the next life), a failure report up to four
/// (every fourth item OOMs), so at most two of those keep all ten inside the burst.
fn plan(rng: &mut SplitMix) -> Vec<KillPoint> {
    let mut reports = 0;
    (0..KILLS)
        .map(|_| match rng.next() % 3 {
            0 => KillPoint::Ack,
            2 if reports < 2 => {
                reports += 1;
                KillPoint::FailureReport
            }
            _ => KillPoint::JobCreated,
        })
        .collect()
}

/// Event counts so far: acks the fake saw, distinct Jobs seen, failure reports.
fn counts(fake: &FakeWandb, jobs: &Jobs) -> (usize, usize, usize) {
    let items = fake.items();
    let acks = items.iter().map(|i| i.ack_attempts as usize).sum();
    let created = jobs.values().map(BTreeSet::len).sum();
    let reports = items
        .iter()
        .map(|i| usize::from(i.failure.is_some()) + i.later_failures.len())
        .sum();
    (acks, created, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kill_9_at_ten_seeded_points_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let mut scenario = Scenario::start_from("agent-kill-9", "RLAUNCH_KILL_SEED", SEED);
    let seed = scenario.seed;
    let kill_plan = plan(&mut scenario.rng);
    scenario.step(format!(
        "plan: kill -9 right after {kill_plan:?}, a restart after each"
    ));
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-kill9").await?;
    // A short lease: an item popped but never acked by a killed agent comes back quickly.
    let fake = Arc::new(
        FakeWandb::start_with(FakeConfig {
            lease: Duration::from_secs(4),
            ..FakeConfig::default()
        })
        .await?,
    );
    fake.create_queue(succeeding_queue("ok", &ns.name, 2))?;
    fake.create_queue(oom_queue("oom", &ns.name, 1))?;
    let mut expected = BTreeMap::new();
    for i in 0..OK_ITEMS + OOM_ITEMS {
        if i % 4 == 3 {
            let id = fake.push_item(image_item("oom", "kill9")).unwrap();
            expected.insert(id, Outcome::Fails("OOMKilled"));
        } else {
            let id = fake.push_item(image_item("ok", "kill9")).unwrap();
            expected.insert(id, Outcome::Succeeds);
        }
    }
    scenario.step(format!(
        "pushed {OK_ITEMS} items that succeed and {OOM_ITEMS} that run out of memory; max_jobs 1"
    ));
    let _sdk = simulate_wandb_init(fake.clone());
    let (seen_jobs, recorder) = record_jobs(client.clone(), ns.name.clone());
    let config = agent_config(&ns.name, &["ok", "oom"], 1, "kill9");

    let mut kills = 0;
    for (n, point) in kill_plan.iter().enumerate() {
        let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
        let start = counts(&fake, &seen_jobs.lock().unwrap());
        let reached = eventually(&format!("kill point {n} {point:?}"), WAIT, || async {
            anyhow::ensure!(
                !agent.has_exited(),
                "the agent exited:\n{}",
                agent.log_text()
            );
            let now = counts(&fake, &seen_jobs.lock().unwrap());
            Ok(match point {
                KillPoint::Ack => now.0 > start.0,
                KillPoint::JobCreated => now.1 > start.1,
                KillPoint::FailureReport => now.2 > start.2,
            }
            .then_some(now))
        })
        .await;
        let now = match reached {
            Ok(now) => now,
            Err(error) => panic!(
                "seed {seed}: {error}\nitems: {:#?}\nlog:\n{}",
                fake.items(),
                agent.log_text()
            ),
        };
        agent.signal("KILL")?;
        agent.child.wait().await?;
        kills += 1;
        scenario.step(format!(
            "kill -9 {n} right after {point:?} (acks, Jobs, reports so far: {now:?}); restarting"
        ));
    }
    assert!(kills >= 10, "seed {seed}: only {kills} kills");

    let mut last = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let verdict = settle(&fake, &client, &ns.name, &expected, &seen_jobs, WAIT).await;
    recorder.abort();
    verdict.assert_clean(&scenario, &log_tails(&[&last], 60));
    last.signal("TERM")?;
    assert!(last.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
