//! `cargo xtask bench watch [--jobs N] [--compare FILE]`: ours and W&B's agent (one after
//! the other, same cluster, same in-process `wandb-fake`) each monitoring N running Jobs.
//!
//! Per agent: N items whose pods kwok keeps `Running` (outcome `run-forever`) on a kwok
//! node the bench adds for them (taint and label `rlaunch.dev/bench=watch`, room for any N;
//! the test cluster's own nodes hold 110 pods each). Once every pod runs and 10 s have
//! passed, a 60-s window: RSS of the agent's process tree (mean and peak, sampled every
//! second), its CPU seconds, and its GraphQL calls per second (the fake's journal). Then
//! five probe items whose pods succeed after 5 s: for each, the time from the bench's pod
//! watch seeing the pod `Succeeded` to the agent's first `RunState` query for the run (what
//! both agents send first when a run ends: W&B's "did it call wandb.init?" check). Ours
//! follows the pods with a watch; W&B's checks each job on its 10-s loop tick.
//! Writes `target/bench/watch.json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use rlaunch_testkit::{TestCluster, annotations};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, NewItem, NewQueue};
use serde_json::{Value, json};

use crate::bench_agent::{self, Rig, STARTUP_LIMIT, Side};
use crate::{bench_proc, bench_report};

/// The node the bench adds, and the label and taint that keep other pods off it.
const NODE: &str = "bench-watch";
const NODE_LABEL: &str = "rlaunch.dev/bench";
/// Probe items per agent, and how long their pods run.
const PROBES: usize = 5;
const PROBE_SECONDS: &str = "5";
/// Quiet time after the last pod runs, then the measurement window.
const SETTLE: Duration = Duration::from_secs(10);
const WINDOW: Duration = Duration::from_secs(60);
/// Hang guards (not timing assertions).
const FILL_LIMIT: Duration = Duration::from_secs(1200);
const PROBE_LIMIT: Duration = Duration::from_secs(180);

fn phase(text: &str) {
    bench_report::phase("watch", text);
}

/// Entry point of `cargo xtask bench watch`.
pub fn run(args: &[String]) -> Result<()> {
    bench_report::run_on_runtime(args, parse_jobs, bench)
}

fn parse_jobs(args: &[String]) -> Result<usize> {
    match args {
        [] => Ok(1000),
        [flag, value] if flag == "--jobs" => value
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .context("--jobs needs a positive number"),
        _ => bail!("usage: cargo xtask bench watch [--jobs N] [--compare FILE]"),
    }
}

async fn bench(jobs: usize) -> Result<Value> {
    let rig = Rig::start(phase).await?;
    phase("adding the bench's kwok node");
    add_node(&rig.client, jobs).await?;
    let (cluster, fake, clock) = (rig.cluster, &rig.fake, rig.clock);
    let ours = measure(cluster, fake, clock, &Side::Ours(rig.ours.clone()), jobs).await?;
    let theirs = Side::Reference(rig.theirs.clone());
    let theirs = measure(cluster, fake, clock, &theirs, jobs).await?;
    let mut report =
        rig.report(json!({"jobs": jobs, "probes": PROBES, "window_s": WINDOW.as_secs()}))?;
    report["ours"] = ours;
    report["reference"] = theirs;
    print_report(&report);
    bench_report::write("watch", &report)?;
    Ok(report)
}

/// A kwok node with room for every Job's pod, tainted so only the bench's pods land there.
async fn add_node(client: &kube::Client, jobs: usize) -> Result<()> {
    let pods = (jobs + PROBES + 50).to_string();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": NODE, NODE_LABEL: "watch"}},
        "spec": {"taints": [{"key": NODE_LABEL, "value": "watch", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": pods},
            "capacity": {"cpu": "1000", "memory": "4Ti", "pods": pods},
        },
    }))?;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.delete(NODE, &DeleteParams::default()).await.ok();
    nodes
        .create(&PostParams::default(), &node)
        .await
        .context("cannot add the bench's kwok node")?;
    Ok(())
}

/// A queue whose Jobs' pods land on the bench node and do `outcome` (after `seconds`).
fn create_queue(fake: &FakeWandb, queue: &str, namespace: &str, outcome: &str) -> Result<()> {
    let mut new = NewQueue::new(FAKE_ENTITY, queue);
    new.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": namespace},
        "spec": {"template": {
            "metadata": {"annotations": {
                annotations::OUTCOME: outcome,
                annotations::RUN_SECONDS: PROBE_SECONDS,
            }},
            "spec": {
                "nodeSelector": {NODE_LABEL: "watch"},
                "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            },
        }},
    }}});
    fake.create_queue(new)?;
    Ok(())
}

fn push(fake: &FakeWandb, queue: &str, count: usize) -> Result<Vec<String>> {
    let spec = json!({
        "entity": FAKE_ENTITY,
        "project": "bench",
        "docker": {"docker_image": "registry.example/train:1"},
    });
    (0..count)
        .map(|_| Ok(fake.push_item(NewItem::new(FAKE_ENTITY, queue, spec.clone()))?))
        .collect()
}

/// One agent: start, N running Jobs, the window, the probes.
async fn measure(
    cluster: &TestCluster,
    fake: &FakeWandb,
    clock: Instant,
    side: &Side,
    jobs: usize,
) -> Result<Value> {
    let name = side.name();
    let ns = cluster.namespace(&format!("watch-{name}")).await?;
    let (watch_queue, probe_queue) = (format!("{name}-watch"), format!("{name}-probe"));
    create_queue(
        fake,
        &watch_queue,
        ns.name(),
        annotations::outcome::RUN_FOREVER,
    )?;
    create_queue(fake, &probe_queue, ns.name(), annotations::outcome::SUCCEED)?;
    let pods = watch_pods(Api::namespaced(cluster.client().await?, ns.name()), clock);
    let dir = tempfile::tempdir()?;
    phase(&format!("{name}: starting, waiting for its first poll"));
    let queues = [watch_queue.clone(), probe_queue.clone()];
    let max_jobs = jobs + PROBES;
    fake.clear_journal();
    let mut child = bench_agent::spawn(
        side,
        cluster,
        fake,
        dir.path(),
        &queues,
        ns.name(),
        max_jobs,
    )?;
    let pid = child.id().context("the agent exited at once")?;
    let outcome = watch_phases(
        fake,
        &pods,
        pid,
        (&watch_queue, &probe_queue),
        jobs,
        dir.path(),
    )
    .await;
    let tree = bench_proc::tree(pid);
    bench_agent::stop(side, fake, &mut child, &tree).await;
    bench_agent::keep_log(dir.path(), &format!("watch-{name}"));
    pods.task.abort();
    ns.cleanup().await;
    phase(&format!("{name}: done"));
    outcome
}

/// First poll, fill, window, probes.
async fn watch_phases(
    fake: &FakeWandb,
    pods: &PodTimes,
    pid: u32,
    (watch_queue, probe_queue): (&str, &str),
    jobs: usize,
    dir: &Path,
) -> Result<Value> {
    let first_poll = tokio::time::timeout(
        STARTUP_LIMIT,
        fake.wait_until(|f| (!f.journal_of("popFromRunQueue").is_empty()).then_some(())),
    )
    .await;
    if first_poll.is_err() {
        bail!(
            "the agent never polled; its log: {}",
            dir.join("agent.log").display()
        );
    }
    phase(&format!(
        "pushing {jobs} run-forever items; waiting for every pod to run"
    ));
    let started = Instant::now();
    push(fake, watch_queue, jobs)?;
    wait_running(pods, jobs).await?;
    let fill_s = started.elapsed().as_secs_f64();
    phase(&format!(
        "{jobs} pods running after {fill_s:.1} s; settling {SETTLE:?}, then a {WINDOW:?} window"
    ));
    tokio::time::sleep(SETTLE).await;
    let mut figures = window(fake, pid).await;
    figures["fill_s"] = json!(fill_s);
    figures["jobs"] = json!(jobs);
    phase(&format!(
        "{PROBES} probe items (pods succeed after {PROBE_SECONDS} s)"
    ));
    let latencies = probes(fake, pods, probe_queue).await?;
    figures["terminal_to_report_ms_p50"] = json!(bench_agent::percentile(&latencies, 0.5));
    figures["terminal_to_report_ms_max"] = json!(latencies.last());
    figures["terminal_to_report_ms"] = json!(latencies);
    Ok(figures)
}

/// RSS (mean, peak), CPU and GraphQL calls of the tree over [`WINDOW`].
async fn window(fake: &FakeWandb, pid: u32) -> Value {
    fake.clear_journal();
    let cpu_before = bench_proc::tree_cpu_seconds(pid);
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < WINDOW {
        samples.push(bench_proc::tree_rss_mib(pid));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = bench_proc::tree_cpu_seconds(pid) - cpu_before;
    let calls = fake.journal();
    let mean = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    let peak = samples.iter().copied().fold(0.0_f64, f64::max);
    json!({
        "rss_mib_mean": mean,
        "rss_mib_peak": peak,
        "cpu_s_per_minute": cpu * 60.0 / seconds,
        "cpu_percent_of_a_core": cpu * 100.0 / seconds,
        "graphql_calls_per_s": calls.len() as f64 / seconds,
        "graphql_calls_by_operation": count_operations(&calls),
    })
}

fn count_operations(journal: &[rlaunch_wandb_fake::JournalEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in journal {
        let name = entry.operation.clone().unwrap_or_else(|| "?".to_owned());
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// ms from each probe pod's `Succeeded` to the agent's first `RunState` for its run, sorted.
async fn probes(fake: &FakeWandb, pods: &PodTimes, queue: &str) -> Result<Vec<f64>> {
    fake.clear_journal();
    let ids = push(fake, queue, PROBES)?;
    let deadline = Instant::now() + PROBE_LIMIT;
    loop {
        let latencies = probe_latencies(fake, pods, &ids);
        if latencies.len() == ids.len() {
            let mut latencies = latencies;
            latencies.sort_by(f64::total_cmp);
            return Ok(latencies);
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {PROBES} probes were reported within {PROBE_LIMIT:?}",
                latencies.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn probe_latencies(fake: &FakeWandb, pods: &PodTimes, ids: &[String]) -> Vec<f64> {
    let journal = fake.journal_of("RunState");
    let times = pods.times.lock().map(|t| t.clone()).unwrap_or_default();
    ids.iter()
        .filter_map(|id| {
            let run_id = fake.item(id)?.associated_run_id?;
            let terminal = times.get(&run_id)?.terminal?;
            let report = journal.iter().find(|entry| {
                entry.at_ms >= terminal
                    && entry
                        .variables
                        .as_ref()
                        .is_some_and(|v| bench_agent::names(v, &run_id))
            })?;
            Some(report.at_ms - terminal)
        })
        .collect()
}

/// First sighting (bench clock, ms) of each run's pod `Running` and terminal.
#[derive(Clone, Copy, Default)]
struct PodTime {
    running: Option<f64>,
    terminal: Option<f64>,
}

struct PodTimes {
    times: Arc<Mutex<BTreeMap<String, PodTime>>>,
    task: tokio::task::JoinHandle<()>,
}

fn watch_pods(api: Api<Pod>, clock: Instant) -> PodTimes {
    let times: Arc<Mutex<BTreeMap<String, PodTime>>> = Arc::default();
    let task = {
        let times = times.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let (Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod))) = event
                else {
                    continue;
                };
                let at = clock.elapsed().as_secs_f64() * 1000.0;
                if let (Some(key), Ok(mut times)) = (run_id_of(&pod), times.lock()) {
                    record(times.entry(key).or_default(), &pod, at);
                }
            }
        })
    };
    PodTimes { times, task }
}

fn record(time: &mut PodTime, pod: &Pod, at: f64) {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match phase {
        Some("Running") => {
            time.running.get_or_insert(at);
        }
        Some("Succeeded" | "Failed") => {
            time.terminal.get_or_insert(at);
        }
        _ => {}
    }
}

/// The run id both agents put in `WANDB_RUN_ID`.
fn run_id_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().find_map(|container| {
        let env = container.env.as_ref()?;
        env.iter().find(|v| v.name == "WANDB_RUN_ID")?.value.clone()
    })
}

async fn wait_running(pods: &PodTimes, jobs: usize) -> Result<()> {
    let deadline = Instant::now() + FILL_LIMIT;
    let mut last_report = Instant::now();
    loop {
        let running = pods
            .times
            .lock()
            .map_or(0, |t| t.values().filter(|p| p.running.is_some()).count());
        if running >= jobs {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {running} of {jobs} pods ran within {FILL_LIMIT:?}");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            phase(&format!("  {running}/{jobs} pods running"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The figures side by side, with ours ÷ W&B's.
fn print_report(report: &Value) {
    let rows = [
        ("jobs running", "jobs"),
        ("fill: push → all running (s)", "fill_s"),
        ("RSS, mean (MiB)", "rss_mib_mean"),
        ("RSS, peak (MiB)", "rss_mib_peak"),
        ("CPU s per minute", "cpu_s_per_minute"),
        ("GraphQL calls per s", "graphql_calls_per_s"),
        ("terminal → report p50 (ms)", "terminal_to_report_ms_p50"),
        ("terminal → report max (ms)", "terminal_to_report_ms_max"),
    ];
    bench_report::print_side_by_side(report, &rows);
}
