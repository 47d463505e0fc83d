//! `cargo xtask bench agent [--items N] [--max-jobs M] [--queues Q]`: our agent and W&B's
//! (PyPI `wandb[launch]`, see `rlaunch_testkit::reference`) one after the other on the
//! same test cluster and the same in-process `wandb-fake`, each draining its own queues.
//!
//! Per agent: startup → first `popFromRunQueue` (spawn to the fake answering it), idle RSS
//! of the whole process tree 30 s after the first poll, peak RSS while draining, CPU
//! seconds per item (tree, drain phase), ack → Job created p50/p99 (the fake's journal
//! time of the item's `ackRunQueueItem` to a Job watch seeing the Job; both on this
//! process's clock), drain time (push of N items to the last Job created) and Jobs/s,
//! GraphQL calls per item (the fake's journal over the drain). Plus the raw create rate
//! of the control plane: a tight kube client loop creating the same Jobs.
//!
//! What is excluded, so the figures compare the agents and not the workloads: kwok runs
//! each pod for 1 s, and the fake reports every acked run as `running` at once, so neither
//! agent waits on the W&B "did the run call wandb.init?" check (W&B's agent otherwise
//! holds a slot for its ~63 s back-off). The test cluster's controller manager runs at 200
//! requests/s (`rlaunch_testkit::control_plane::CONTROLLER_MANAGER_QPS`): at upstream's
//! default of 20 it, not the agents, bounds the drain of 1-s Jobs (about 3 Jobs/s for both);
//! `RLAUNCH_TESTKIT_KCM_QPS=20` measures that case. Writes `target/bench/agent.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::watcher;
use rlaunch_testkit::{TestCluster, reference};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeWandb, NewItem, NewQueue};
use serde_json::{Value, json};

use crate::bench_proc;
use crate::bench_report::{self, fmt};

/// Hang guards (not timing assertions): startup, and one drain.
pub(crate) const STARTUP_LIMIT: Duration = Duration::from_secs(120);
const DRAIN_LIMIT: Duration = Duration::from_secs(900);
/// How long an agent idles before its RSS is read.
const IDLE: Duration = Duration::from_secs(30);

struct Options {
    items_ours: usize,
    items_reference: usize,
    max_jobs: usize,
    queues: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            items_ours: 1000,
            items_reference: 200,
            max_jobs: 50,
            queues: 1,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value: usize = args
                .next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{flag} needs a positive number"))?;
            match flag.as_str() {
                "--items" => (options.items_ours, options.items_reference) = (value, value),
                "--max-jobs" => options.max_jobs = value,
                "--queues" => options.queues = value.max(1),
                _ => bail!(
                    "usage: cargo xtask bench agent [--items N] [--max-jobs M] [--queues Q] [--compare FILE]"
                ),
            }
        }
        Ok(options)
    }
}

/// Which agent a measurement runs.
pub(crate) enum Side {
    Ours(PathBuf),
    Reference(reference::ReferenceAgent),
}

impl Side {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Side::Ours(_) => "ours",
            Side::Reference(_) => "reference",
        }
    }
}

fn phase(text: &str) {
    bench_report::phase("agent", text);
}

pub fn run(args: &[String]) -> Result<()> {
    bench_report::run_on_runtime(args, Options::parse, bench)
}

/// What both agent benches start from: our binary, W&B's agent (installed once), the test
/// cluster, and a fake W&B that reports every acked run `running` at once.
pub(crate) struct Rig {
    pub(crate) ours: PathBuf,
    pub(crate) theirs: reference::ReferenceAgent,
    pub(crate) cluster: &'static TestCluster,
    pub(crate) client: kube::Client,
    pub(crate) fake: FakeWandb,
    /// The clock every figure of the run is read on.
    pub(crate) clock: Instant,
}

impl Rig {
    /// Builds or finds the agents, then starts the cluster and the fake; `phase` prints
    /// progress under the calling bench's name.
    pub(crate) async fn start(phase: fn(&str)) -> Result<Rig> {
        let ours = our_binary()?;
        phase("installing W&B's agent (once, cached)");
        let theirs = tokio::task::spawn_blocking(reference::ensure_installed).await??;
        phase("starting the test cluster");
        let cluster = rlaunch_testkit::cluster().await?;
        let client = cluster.client().await?;
        let clock = Instant::now();
        let fake = FakeWandb::start_with(FakeConfig {
            acked_run_state: "running".to_owned(),
            ..FakeConfig::default()
        })
        .await?;
        Ok(Rig {
            ours,
            theirs,
            cluster,
            client,
            fake,
            clock,
        })
    }

    /// The JSON every agent bench starts from: machine, versions (our binary's path
    /// among them) and the test cluster's controller-manager rate in `options`.
    pub(crate) fn report(&self, mut options: Value) -> Result<Value> {
        let mut report = bench_report::context();
        report["versions"]["ours_binary"] = json!(self.ours.display().to_string());
        options["controller_manager_qps"] =
            json!(rlaunch_testkit::control_plane::controller_manager_qps()?);
        report["options"] = options;
        Ok(report)
    }
}

async fn bench(options: Options) -> Result<Value> {
    let rig = Rig::start(phase).await?;
    let kube_version = rig.client.apiserver_version().await?.git_version;
    warm_custom_resources(&rig.client).await?;
    let (cluster, fake, clock) = (rig.cluster, &rig.fake, rig.clock);
    let raw = raw_create_rate(cluster, options.items_ours.min(300)).await?;
    let ours = Side::Ours(rig.ours.clone());
    let ours = measure(cluster, fake, clock, &ours, &options).await?;
    let theirs = Side::Reference(rig.theirs.clone());
    let theirs = measure(cluster, fake, clock, &theirs, &options).await?;
    let mut report = rig.report(json!({"max_jobs": options.max_jobs, "queues": options.queues}))?;
    report["versions"]["kube_apiserver"] = json!(kube_version);
    report["raw_create"] = raw;
    report["ours"] = ours;
    report["reference"] = theirs;
    print_report(&report);
    bench_report::write("agent", &report)?;
    Ok(report)
}

/// `RLAUNCH_BENCH_AGENT_BIN` if set (a binary built elsewhere; the JSON names it), else a
/// release build of `launch-agent`.
pub(crate) fn our_binary() -> Result<PathBuf> {
    if let Some(binary) = std::env::var_os("RLAUNCH_BENCH_AGENT_BIN") {
        return Ok(PathBuf::from(binary));
    }
    phase("building launch-agent (release)");
    crate::step(
        "cargo build --release -p rlaunch-agent-cli",
        crate::cargo().args(["build", "--release", "-p", "rlaunch-agent-cli"]),
    )?;
    release_binary()
}

fn release_binary() -> Result<PathBuf> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let binary = target.join("release/launch-agent");
    if !binary.is_file() {
        bail!("{} is missing after the release build", binary.display());
    }
    Ok(binary)
}

/// A Job like the ones the agents create for an image item (one container, kwok's 1 s).
fn job_body(name: &str) -> Result<Job> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"annotations": {rlaunch_testkit::annotations::RUN_SECONDS: "1"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "registry.example/train:1"}
            ]},
        }},
    }))?)
}

/// Lists every custom resource the cluster serves once. The API server builds a CRD's
/// storage on the first request for it (about 1 s each for PyTorchJob and JobSet here), which
/// a cluster that has been up a while has long done; without this, the first agent to list
/// them (ours, adopting at start-up) would pay it in its startup figure.
async fn warm_custom_resources(client: &kube::Client) -> Result<()> {
    phase("touching each custom resource once");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds.list(&ListParams::default()).await? {
        let spec = &crd.spec;
        let Some(version) = spec.versions.iter().find(|v| v.served) else {
            continue;
        };
        let gvk = GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
        let resource = ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        api.list(&ListParams::default().limit(1)).await?;
    }
    Ok(())
}

/// Jobs per second of a tight create loop: one call at a time, then 16 at a time.
async fn raw_create_rate(cluster: &TestCluster, count: usize) -> Result<Value> {
    phase(&format!(
        "raw create rate ({count} Jobs, sequential and 16 concurrent)"
    ));
    let ns = cluster.namespace("bench-raw").await?;
    let jobs: Api<Job> = Api::namespaced(cluster.client().await?, ns.name());
    let started = Instant::now();
    for n in 0..count {
        jobs.create(&PostParams::default(), &job_body(&format!("seq-{n}"))?)
            .await?;
    }
    let sequential = count as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..16 {
        let jobs = jobs.clone();
        tasks.spawn(async move {
            for n in (worker..count).step_by(16) {
                jobs.create(&PostParams::default(), &job_body(&format!("par-{n}"))?)
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let concurrent = count as f64 / started.elapsed().as_secs_f64();
    ns.cleanup().await;
    Ok(
        json!({"jobs": count, "sequential_jobs_per_s": sequential, "concurrent16_jobs_per_s": concurrent}),
    )
}

/// First sight of each Job in a namespace: ms on the bench clock, keyed by the run id the
/// agent put in `WANDB_RUN_ID` (both agents set it) or else the item annotation.
pub(crate) type Seen = Arc<Mutex<BTreeMap<String, f64>>>;

pub(crate) fn watch_jobs(api: Api<Job>, clock: Instant) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                let (Ok(watcher::Event::Apply(job)) | Ok(watcher::Event::InitApply(job))) = event
                else {
                    continue;
                };
                let at = clock.elapsed().as_secs_f64() * 1000.0;
                if let Some(key) = job_key(&job)
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.entry(key).or_insert(at);
                }
            }
        })
    };
    (seen, task)
}

pub(crate) fn job_key(job: &Job) -> Option<String> {
    let spec = job.spec.as_ref()?.template.spec.as_ref()?;
    let run_id = spec.containers.iter().find_map(|container| {
        let env = container.env.as_ref()?;
        env.iter().find(|v| v.name == "WANDB_RUN_ID")?.value.clone()
    });
    run_id.or_else(|| {
        let annotations = job.metadata.annotations.as_ref()?;
        annotations.get("rlaunch.dev/run-queue-item").cloned()
    })
}

/// One agent's run: start idle, first poll, 30 s idle, then N items drained.
async fn measure(
    cluster: &TestCluster,
    fake: &FakeWandb,
    clock: Instant,
    side: &Side,
    options: &Options,
) -> Result<Value> {
    let name = side.name();
    let items = match side {
        Side::Ours(_) => options.items_ours,
        Side::Reference(_) => options.items_reference,
    };
    let ns = cluster.namespace(&format!("bench-{name}")).await?;
    let queues: Vec<String> = (0..options.queues).map(|n| format!("{name}-{n}")).collect();
    for queue in &queues {
        let mut new = NewQueue::new(FAKE_ENTITY, queue);
        new.config = json!({"resource_args": {"kubernetes": {
            "metadata": {"namespace": ns.name()},
            "spec": {"template": {"metadata": {"annotations": {
                rlaunch_testkit::annotations::RUN_SECONDS: "1",
            }}}},
        }}});
        fake.create_queue(new)?;
    }
    let dir = tempfile::tempdir()?;
    phase(&format!("{name}: starting, waiting for its first poll"));
    fake.clear_journal();
    let started = Instant::now();
    let mut child = spawn(
        side,
        cluster,
        fake,
        dir.path(),
        &queues,
        ns.name(),
        options.max_jobs,
    )?;
    let pid = child.id().context("the agent exited at once")?;
    let first_poll = tokio::time::timeout(
        STARTUP_LIMIT,
        fake.wait_until(|f| (!f.journal_of("popFromRunQueue").is_empty()).then_some(())),
    )
    .await;
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    if first_poll.is_err() {
        bail!(
            "{name} never polled within {STARTUP_LIMIT:?}; its log: {}",
            dir.path().join("agent.log").display()
        );
    }
    phase(&format!(
        "{name}: first poll after {startup_ms:.0} ms; idling {IDLE:?}"
    ));
    tokio::time::sleep(IDLE).await;
    let idle_rss = bench_proc::tree_rss_mib(pid);
    let drained = drain(fake, clock, pid, &queues, ns.name(), items, cluster).await;
    let tree = bench_proc::tree(pid);
    stop(side, fake, &mut child, &tree).await;
    keep_log(dir.path(), &format!("agent-{name}"));
    ns.cleanup().await;
    let mut figures = drained?;
    figures["startup_to_first_poll_ms"] = json!(startup_ms);
    figures["idle_rss_mib_after_30s"] = json!(idle_rss);
    figures["items"] = json!(items);
    phase(&format!("{name}: done"));
    Ok(figures)
}

pub(crate) fn spawn(
    side: &Side,
    cluster: &TestCluster,
    fake: &FakeWandb,
    dir: &Path,
    queues: &[String],
    namespace: &str,
    max_jobs: usize,
) -> Result<tokio::process::Child> {
    let config = dir.join("launch-config.yaml");
    let queue_list = queues.join(", ");
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let mut command = match side {
        Side::Ours(binary) => {
            std::fs::write(
                &config,
                format!(
                    "entity: {FAKE_ENTITY}\nqueues: [{queue_list}]\nmax_jobs: {max_jobs}\ntarget_namespaces: [{namespace}]\nidentity: bench-ours\n",
                ),
            )?;
            let mut command = std::process::Command::new(binary);
            command
                .arg("--config")
                .arg(&config)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", dir)
                .env("WANDB_API_KEY", FAKE_API_KEY)
                .env("WANDB_BASE_URL", &fake.base_url)
                .env("KUBECONFIG", cluster.kubeconfig_path())
                .env(
                    "RUST_LOG",
                    std::env::var("RLAUNCH_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
                );
            command
        }
        Side::Reference(agent) => {
            std::fs::write(
                &config,
                format!("entity: {FAKE_ENTITY}\nqueues: [{queue_list}]\nmax_jobs: {max_jobs}\n",),
            )?;
            reference::isolated_home(dir, cluster.kubeconfig_path())?;
            agent.launch_agent(dir, &fake.base_url, FAKE_API_KEY, &config)
        }
    };
    command
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null());
    Ok(tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?)
}

/// Copies the agent's log to `target/bench/<name>.log` (its temporary directory goes).
pub(crate) fn keep_log(dir: &Path, name: &str) {
    let _ = std::fs::create_dir_all("target/bench");
    let kept = Path::new("target/bench").join(format!("{name}.log"));
    match std::fs::copy(dir.join("agent.log"), &kept) {
        Ok(_) => eprintln!("the agent's log: {}", kept.display()),
        Err(error) => eprintln!("cannot keep the agent's log at {}: {error}", kept.display()),
    }
}

/// Ours: SIGTERM. W&B's: `stopPolling` (its orderly exit; it ignores nothing else
/// reliably). Anything of the tree left after 30 s is killed by pid.
pub(crate) async fn stop(
    side: &Side,
    fake: &FakeWandb,
    child: &mut tokio::process::Child,
    tree: &[u32],
) {
    match side {
        Side::Ours(_) => {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
        }
        Side::Reference(_) => {
            for agent in fake.agents() {
                let _ = fake.set_stop_polling(&agent.id, true);
            }
        }
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
    }
    for pid in tree {
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status();
    }
}

/// Pushes `items` across `queues` and samples the agent's tree every 200 ms until every
/// item has its Job.
async fn drain(
    fake: &FakeWandb,
    clock: Instant,
    pid: u32,
    queues: &[String],
    namespace: &str,
    items: usize,
    cluster: &TestCluster,
) -> Result<Value> {
    phase(&format!("pushing {items} items; draining"));
    let api: Api<Job> = Api::namespaced(cluster.client().await?, namespace);
    let (seen, watch) = watch_jobs(api, clock);
    let cpu_before = bench_proc::tree_cpu_seconds(pid);
    fake.clear_journal();
    let pushed_at = clock.elapsed().as_secs_f64() * 1000.0;
    let mut ids = Vec::with_capacity(items);
    for n in 0..items {
        let spec = json!({
            "entity": FAKE_ENTITY,
            "project": "bench",
            "docker": {"docker_image": "registry.example/train:1"},
        });
        ids.push(fake.push_item(NewItem::new(FAKE_ENTITY, &queues[n % queues.len()], spec))?);
    }
    let mut peak_rss: f64 = 0.0;
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut last_report = Instant::now();
    loop {
        peak_rss = peak_rss.max(bench_proc::tree_rss_mib(pid));
        let created = seen.lock().map_or(0, |s| s.len());
        if created >= items {
            break;
        }
        if Instant::now() > deadline {
            watch.abort();
            bail!("only {created} of {items} Jobs were created within {DRAIN_LIMIT:?}");
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            phase(&format!("  {created}/{items} Jobs"));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    watch.abort();
    let cpu = bench_proc::tree_cpu_seconds(pid) - cpu_before;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let last_job = seen.values().copied().fold(0.0_f64, f64::max);
    let drain_s = (last_job - pushed_at) / 1000.0;
    let journal = fake.journal();
    let latencies = ack_to_job(fake, &ids, &journal, &seen);
    Ok(json!({
        "peak_rss_mib": peak_rss,
        "cpu_s_per_item": cpu / items as f64,
        "ack_to_job_ms_p50": percentile(&latencies, 0.50),
        "ack_to_job_ms_p99": percentile(&latencies, 0.99),
        "drain_s": drain_s,
        "jobs_per_s": items as f64 / drain_s,
        "graphql_calls_per_item": journal.len() as f64 / items as f64,
        "graphql_calls_by_operation": calls_by_operation(&journal),
    }))
}

/// ms from each item's `ackRunQueueItem` (the journal entry whose variables name the
/// item) to its Job's first sighting, sorted.
fn ack_to_job(
    fake: &FakeWandb,
    ids: &[String],
    journal: &[rlaunch_wandb_fake::JournalEntry],
    seen: &BTreeMap<String, f64>,
) -> Vec<f64> {
    let mut latencies: Vec<f64> = ids
        .iter()
        .filter_map(|id| {
            let item = fake.item(id)?;
            let job = item
                .associated_run_id
                .as_ref()
                .and_then(|run| seen.get(run))
                .or_else(|| seen.get(id))?;
            let ack = journal.iter().find(|entry| {
                entry.operation.as_deref() == Some("ackRunQueueItem")
                    && entry.variables.as_ref().is_some_and(|v| names(v, id))
            })?;
            Some(job - ack.at_ms)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// Whether a JSON value holds the string `id` anywhere.
pub(crate) fn names(value: &Value, id: &str) -> bool {
    match value {
        Value::String(text) => text == id,
        Value::Array(items) => items.iter().any(|v| names(v, id)),
        Value::Object(map) => map.values().any(|v| names(v, id)),
        _ => false,
    }
}

pub(crate) fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    sorted.get(((last as f64) * q).round() as usize).copied()
}

fn calls_by_operation(journal: &[rlaunch_wandb_fake::JournalEntry]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in journal {
        let name = entry.operation.clone().unwrap_or_else(|| "?".to_owned());
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// The figures side by side, with ours ÷ W&B's.
fn print_report(report: &Value) {
    let rows = [
        ("startup → first poll (ms)", "startup_to_first_poll_ms"),
        ("idle RSS after 30 s (MiB)", "idle_rss_mib_after_30s"),
        ("peak RSS (MiB)", "peak_rss_mib"),
        ("CPU s per item", "cpu_s_per_item"),
        ("ack → Job p50 (ms)", "ack_to_job_ms_p50"),
        ("ack → Job p99 (ms)", "ack_to_job_ms_p99"),
        ("drain (s)", "drain_s"),
        ("Jobs/s", "jobs_per_s"),
        ("GraphQL calls per item", "graphql_calls_per_item"),
    ];
    bench_report::print_side_by_side(report, &rows);
    let raw = &report["raw_create"];
    let ours_rate = report["ours"]["jobs_per_s"].as_f64();
    let raw_rate = raw["concurrent16_jobs_per_s"].as_f64();
    println!(
        "raw create rate: {} Jobs/s sequential, {} Jobs/s 16 concurrent; ours ÷ raw (16): {}",
        fmt(raw["sequential_jobs_per_s"].as_f64()),
        fmt(raw_rate),
        fmt(ours_rate.zip(raw_rate).map(|(o, r)| o / r))
    );
}
