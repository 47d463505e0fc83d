//! What every chaos scenario shares (`chaos_*.rs`, `agent_kill_points.rs`, run together by
//! `cargo xtask chaos`): the seed (fixed per scenario, printed, `RLAUNCH_CHAOS_SEED`
//! replays another), a tiny PRNG, the step log each scenario prints, and the verdict:
//! 0 lost, 0 duplicated, every item exactly one terminal report. A broken verdict names
//! the item ids that were lost, doubled or misreported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState, ItemView, NewQueue};
use serde_json::json;

use super::{AgentProcess, Jobs, active_jobs, jobs_by_item};

/// The variable that replays a scenario with another seed.
pub const SEED_ENV: &str = "RLAUNCH_CHAOS_SEED";

/// splitmix64: a tiny, fixed PRNG, so a seed means the same plan everywhere.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The printed story of a scenario: each step with the time since its start.
#[derive(Clone, Copy)]
pub struct Log {
    name: &'static str,
    started: std::time::Instant,
}

impl Log {
    /// Prints one step of what the scenario did.
    pub fn step(&self, what: impl Display) {
        println!(
            "[chaos {} +{:.1}s] {what}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// One scenario: its name, its seed (printed at the start) and the PRNG drawn from it.
pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub rng: SplitMix,
    pub log: Log,
}

impl Scenario {
    /// Takes the seed from [`SEED_ENV`] (else `default`) and prints it.
    pub fn start(name: &'static str, default: u64) -> Self {
        Self::start_from(name, SEED_ENV, default)
    }

    /// Like [`Scenario::start`] with the seed read from `env` (an older variable).
    pub fn start_from(name: &'static str, env: &str, default: u64) -> Self {
        let seed = std::env::var(env)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        println!("[chaos {name}] seed {seed} (replay with {env}={seed})");
        Self {
            name,
            seed,
            rng: SplitMix(seed),
            log: Log {
                name,
                started: std::time::Instant::now(),
            },
        }
    }

    /// Prints one step of what the scenario did.
    pub fn step(&self, what: impl Display) {
        self.log.step(what);
    }
}

/// How an item must end.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// One workload that succeeds; claimed, never failed.
    Succeeds,
    /// One workload, then one failure report whose message contains the text.
    Fails(&'static str),
    /// No workload at all, one failure report whose message contains the text.
    Refused(&'static str),
}

/// What one item's record says against its expected outcome.
enum Judgement {
    Done,
    Pending(String),
    Lost(String),
    Doubled(String),
    Misreported(String),
}

fn judge(item: &ItemView, outcome: Outcome, workloads: usize) -> Judgement {
    let reports = usize::from(item.failure.is_some()) + item.later_failures.len();
    let message = item.failure.as_ref().map(|f| f.message.as_str());
    let seen = format!(
        "{:?}, {workloads} workloads, {reports} reports{}",
        item.state,
        message.map(|m| format!(": {m}")).unwrap_or_default()
    );
    let (wanted_workloads, wanted_text) = match outcome {
        Outcome::Succeeds => (1, None),
        Outcome::Fails(text) => (1, Some(text)),
        Outcome::Refused(text) => (0, Some(text)),
    };
    if workloads > wanted_workloads || reports > 1 {
        return Judgement::Doubled(seen);
    }
    match wanted_text {
        None if reports > 0 => Judgement::Misreported(seen),
        None if workloads == 1
            && matches!(item.state, ItemState::Claimed | ItemState::Finished) =>
        {
            Judgement::Done
        }
        None => Judgement::Pending(seen),
        Some(_) if reports == 0 => Judgement::Pending(seen),
        Some(_) if workloads < wanted_workloads => Judgement::Lost(seen),
        Some(text) if message.is_some_and(|m| m.contains(text)) => Judgement::Done,
        Some(text) => Judgement::Misreported(format!("{seen} (expected a message with `{text}`)")),
    }
}

/// The verdict over a scenario's items: which were lost, doubled or misreported.
#[derive(Debug, Default)]
pub struct Verdict {
    pub items: usize,
    pub lost: Vec<String>,
    pub doubled: Vec<String>,
    pub misreported: Vec<String>,
    /// Items not yet ended (counted as lost when the scenario gives up).
    pub pending: Vec<String>,
}

impl Verdict {
    /// Judges every expected item against the fake's records and the workloads seen.
    pub fn of(items: &[ItemView], expected: &BTreeMap<String, Outcome>, jobs: &Jobs) -> Self {
        let mut verdict = Verdict {
            items: expected.len(),
            ..Verdict::default()
        };
        for (id, outcome) in expected {
            let workloads = jobs.get(id).map_or(0, BTreeSet::len);
            let Some(item) = items.iter().find(|i| &i.id == id) else {
                verdict.lost.push(format!("{id} (unknown to W&B)"));
                continue;
            };
            let entry = |seen: String| format!("{id} ({seen})");
            match judge(item, *outcome, workloads) {
                Judgement::Done => {}
                Judgement::Pending(seen) => verdict.pending.push(entry(seen)),
                Judgement::Lost(seen) => verdict.lost.push(entry(seen)),
                Judgement::Doubled(seen) => verdict.doubled.push(entry(seen)),
                Judgement::Misreported(seen) => verdict.misreported.push(entry(seen)),
            }
        }
        verdict
    }

    /// Every item ended as expected.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.doubled.is_empty()
            && self.misreported.is_empty()
            && self.pending.is_empty()
    }

    /// Prints the verdict, or fails the test naming every item that broke it.
    pub fn assert_clean(&self, scenario: &Scenario, context: &str) {
        if self.is_clean() {
            scenario.step(format!(
                "verdict: 0 lost, 0 duplicated, every item exactly one terminal report ({} items)",
                self.items
            ));
            return;
        }
        let lost: Vec<_> = self.lost.iter().chain(&self.pending).collect();
        panic!(
            "[chaos {}] seed {}: verdict broken over {} items\nlost: {lost:#?}\ndoubled: {:#?}\nmisreported: {:#?}\n{context}",
            scenario.name, scenario.seed, self.items, self.doubled, self.misreported
        );
    }
}

/// Waits until every expected item has ended as expected and no workload is left in
/// `namespace` (the agent deletes a workload once it reported it), or `limit` passes (a
/// hang guard); returns the verdict either way.
pub async fn settle(
    fake: &FakeWandb,
    client: &kube::Client,
    namespace: &str,
    expected: &BTreeMap<String, Outcome>,
    seen: &Arc<Mutex<Jobs>>,
    limit: Duration,
) -> Verdict {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let verdict = Verdict::of(&fake.items(), expected, &seen.lock().unwrap().clone());
        let broken = !verdict.doubled.is_empty() || !verdict.misreported.is_empty();
        if broken || tokio::time::Instant::now() > deadline {
            return verdict;
        }
        if verdict.is_clean() && workloads_gone(client, namespace).await {
            return verdict;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn workloads_gone(client: &kube::Client, namespace: &str) -> bool {
    matches!(active_jobs(client, namespace).await, Ok(0))
        && jobs_by_item(client, namespace)
            .await
            .is_ok_and(|jobs| jobs.is_empty())
}

/// The agents' logs for a failure message (the last `lines` lines of each).
pub fn log_tails(agents: &[&AgentProcess], lines: usize) -> String {
    agents
        .iter()
        .enumerate()
        .map(|(n, agent)| {
            let text = agent.log_text();
            let tail: Vec<_> = text.lines().rev().take(lines).collect();
            let tail: Vec<_> = tail.into_iter().rev().collect();
            format!(
                "--- agent {n} log (last {lines} lines) ---\n{}",
                tail.join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Agent ids that popped, from the fake's journal.
pub fn poppers(fake: &FakeWandb) -> BTreeSet<String> {
    fake.journal_of("popFromRunQueue")
        .iter()
        .filter_map(|e| {
            e.variables.as_ref()?["launchAgentId"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The `/readyz` body of an agent when it answers 200.
pub async fn readyz(agent: &AgentProcess) -> Option<String> {
    match agent.http_get(agent.health_port, "/readyz").await {
        Ok((200, body)) => Some(body),
        _ => None,
    }
}

/// The launch config of a scenario's agent: `queues` of [`FAKE_ENTITY`] into `namespace`,
/// polling fast, with a fixed identity.
pub fn agent_config(namespace: &str, queues: &[&str], max_jobs: u32, identity: &str) -> String {
    format!(
        "entity: {FAKE_ENTITY}\nqueues: [{}]\nmax_jobs: {max_jobs}\npoll_interval: 0.2\ninit_check_timeout: 5\ntarget_namespaces: [{namespace}]\ndefault_namespace: {namespace}\nidentity: {identity}-{namespace}\n",
        queues.join(", ")
    )
}

/// A queue whose pods succeed after `seconds`.
pub fn succeeding_queue(name: &str, namespace: &str, seconds: u32) -> NewQueue {
    super::queue(
        name,
        namespace,
        json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: seconds.to_string()}),
    )
}

/// A queue whose pods run out of memory after `seconds`.
pub fn oom_queue(name: &str, namespace: &str, seconds: u32) -> NewQueue {
    super::queue(
        name,
        namespace,
        json!({annotations::OUTCOME: outcome::OOM, annotations::RUN_SECONDS: seconds.to_string()}),
    )
}

/// Pushes `count` image items to `queue`, each expected to end as `outcome`.
pub fn push_items(
    fake: &FakeWandb,
    expected: &mut BTreeMap<String, Outcome>,
    queue: &str,
    count: usize,
    outcome: Outcome,
) {
    for _ in 0..count {
        let id = fake
            .push_item(super::image_item(queue, "chaos"))
            .unwrap_or_else(|error| panic!("cannot push to {queue}: {error}"));
        expected.insert(id, outcome);
    }
}

/// Waits until at least `count` distinct Jobs were seen (failing if an agent exits).
pub async fn wait_for_jobs(
    seen: &Arc<Mutex<Jobs>>,
    count: usize,
    agents: &[&AgentProcess],
    limit: Duration,
) -> anyhow::Result<()> {
    super::eventually(&format!("{count} Jobs"), limit, || async {
        for agent in agents {
            anyhow::ensure!(
                !agent.has_exited(),
                "an agent exited:\n{}",
                agent.log_text()
            );
        }
        let jobs: usize = seen.lock().unwrap().values().map(BTreeSet::len).sum();
        Ok((jobs >= count).then_some(()))
    })
    .await
}

/// How long a scenario waits for its items at most (a hang guard, not a timing check).
pub const SETTLE: Duration = Duration::from_secs(240);

/// A burst of 12 items (9 that succeed after 2 s, 3 that run out of memory) on the
/// process's own cluster, one agent with `max_jobs: 4`, and `fault` run on the cluster
/// once a seeded number (2..=5) of Jobs exist; then the verdict.
pub async fn burst_with_fault<F, Fut>(scenario: &mut Scenario, fault: F) -> anyhow::Result<()>
where
    F: FnOnce(&'static rlaunch_testkit::TestCluster, Log) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let cluster = rlaunch_testkit::private_cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace(scenario.name).await?;
    let fake = Arc::new(
        FakeWandb::start_with(rlaunch_wandb_fake::FakeConfig {
            lease: Duration::from_secs(4),
            ..rlaunch_wandb_fake::FakeConfig::default()
        })
        .await?,
    );
    fake.create_queue(succeeding_queue("ok", &ns.name, 2))?;
    fake.create_queue(oom_queue("oom", &ns.name, 1))?;
    let mut expected = BTreeMap::new();
    push_items(&fake, &mut expected, "ok", 9, Outcome::Succeeds);
    push_items(&fake, &mut expected, "oom", 3, Outcome::Fails("OOMKilled"));
    let _sdk = super::simulate_wandb_init(fake.clone());
    let (seen, recorder) = super::record_jobs(client.clone(), ns.name.clone());
    let config = agent_config(&ns.name, &["ok", "oom"], 4, scenario.name);
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let after = usize::try_from(scenario.rng.between(2, 5))?;
    scenario.step(format!(
        "pushed 9 items that succeed and 3 that run out of memory; one agent, max_jobs 4; the fault comes once {after} Jobs exist"
    ));
    wait_for_jobs(&seen, after, &[&agent], SETTLE).await?;
    fault(cluster, scenario.log).await?;
    let verdict = settle(&fake, &client, &ns.name, &expected, &seen, SETTLE).await;
    recorder.abort();
    verdict.assert_clean(scenario, &log_tails(&[&agent], 80));
    agent.signal("TERM")?;
    let status = agent.child.wait().await?;
    anyhow::ensure!(
        status.success(),
        "the agent exited with {status}:\n{}",
        agent.log_text()
    );
    ns.cleanup().await;
    Ok(())
}
