//! `kill -9` of the agent at seeded points of a burst of 20 launches, each followed by a
//! restart: every item ends with exactly one workload and exactly one terminal report.
//!
//! The kill points are events, not wall time: right after the next ack the fake sees, the
//! next Job to appear, or the next failure report. The seed is fixed
//! (`RLAUNCH_KILL_SEED` overrides it) and printed with the plan, so a failure replays.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, Jobs, eventually, image_item, queue, record_jobs, simulate_wandb_init};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeConfig, FakeWandb, ItemState, ItemView};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(240);
const SEED: u64 = 0x0b5e_55ed_2026;
const KILLS: usize = 10;
const OK_ITEMS: usize = 15;
const OOM_ITEMS: usize = 5;

/// splitmix64: a tiny, fixed PRNG, so a seed means the same plan everywhere.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

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
fn plan(seed: u64) -> Vec<KillPoint> {
    let mut rng = SplitMix(seed);
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

/// Every item done: it had a workload, OOM items failed, the others claimed without
/// failure (the caller also waits for every Job to be reported and removed).
fn all_done(
    items: &[ItemView],
    ours: &BTreeSet<String>,
    oom: &BTreeSet<String>,
    jobs: &Jobs,
) -> bool {
    items.iter().filter(|i| ours.contains(&i.id)).all(|i| {
        if !jobs.contains_key(&i.id) {
            false
        } else if oom.contains(&i.id) {
            i.state == ItemState::Failed
        } else {
            i.state == ItemState::Claimed && i.failure.is_none()
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_ten_seeded_points_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let seed = std::env::var("RLAUNCH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED);
    let kill_plan = plan(seed);
    println!("kill seed {seed}: plan {kill_plan:?}");
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
    let ok = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "2"});
    let oom = json!({annotations::OUTCOME: outcome::OOM, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("ok", &ns.name, ok)).unwrap();
    fake.create_queue(queue("oom", &ns.name, oom)).unwrap();
    let mut ours = BTreeSet::new();
    let mut oom_items = BTreeSet::new();
    for i in 0..OK_ITEMS + OOM_ITEMS {
        if i % 4 == 3 {
            let id = fake.push_item(image_item("oom", "kill9")).unwrap();
            oom_items.insert(id.clone());
            ours.insert(id);
        } else {
            ours.insert(fake.push_item(image_item("ok", "kill9")).unwrap());
        }
    }
    assert_eq!(oom_items.len(), OOM_ITEMS);
    let _sdk = simulate_wandb_init(fake.clone());
    let (seen_jobs, recorder) = record_jobs(client.clone(), ns.name.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [ok, oom]\nmax_jobs: 1\npoll_interval: 0.2\ninit_check_timeout: 5\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nidentity: kill9-{0}\n",
        ns.name
    );

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
        println!("kill {n} {point:?}: acks, Jobs, reports = {now:?}");
    }
    assert!(kills >= 10, "seed {seed}: only {kills} kills");

    let mut last = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let finished = eventually("every item to end", WAIT, || async {
        let items = fake.items();
        let no_jobs = common::active_jobs(&client, &ns.name).await? == 0
            && common::jobs_by_item(&client, &ns.name).await?.is_empty();
        let done = all_done(&items, &ours, &oom_items, &seen_jobs.lock().unwrap());
        Ok((no_jobs && done).then_some(items))
    })
    .await;
    recorder.abort();
    let items = finished.unwrap_or_else(|_| fake.items());
    let jobs = seen_jobs.lock().unwrap().clone();
    let mut lost = Vec::new();
    let mut doubled = Vec::new();
    for item in items.iter().filter(|i| ours.contains(&i.id)) {
        let workloads = jobs.get(&item.id).map_or(0, BTreeSet::len);
        let reports = usize::from(item.failure.is_some()) + item.later_failures.len();
        let expected_reports = usize::from(oom_items.contains(&item.id));
        let ended = if oom_items.contains(&item.id) {
            item.state == ItemState::Failed
        } else {
            item.state == ItemState::Claimed
        };
        if workloads == 0 || !ended || reports < expected_reports {
            lost.push(format!(
                "{} ({:?}, {workloads} workloads, {reports} reports)",
                item.id, item.state
            ));
        } else if workloads > 1 || reports > expected_reports {
            doubled.push(format!(
                "{} ({workloads} workloads, {reports} reports: {:?} {:?})",
                item.id, item.failure, item.later_failures
            ));
        }
    }
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "seed {seed}: lost {lost:#?}\ndoubled {doubled:#?}\nitems: {items:#?}\nlast agent log:\n{}",
        last.log_text()
    );
    for item in items.iter().filter(|i| oom_items.contains(&i.id)) {
        let failure = item.failure.as_ref().unwrap();
        assert!(
            failure.message.contains("OOMKilled"),
            "seed {seed}: {failure:?}"
        );
    }
    last.signal("TERM")?;
    assert!(last.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
