//! `cargo xtask demo`: the whole product on one machine. Builds `launch-agent`, starts the
//! local control plane with its real node (kubelet + containerd + runc) and the fake W&B,
//! creates a queue from `examples/queue-configs/basic.yaml`, pushes example runs, runs the
//! agent and prints each run's journey live until every run has ended, then tears
//! everything down. Exits non-zero if a run ends in an unexpected state.
//!
//! The CPU runs (one succeeds, one OOMs, one exits with code 3) run the trainer image as
//! real containers on the real node: they call the fake W&B as `wandb.init` would, and
//! their real container logs are printed as they come. The GPU runs (one never fits, one
//! A100 run) stay on the kwok GPU nodes, scripted by annotations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use rlaunch_testkit::node::{self, images};
use rlaunch_wandb_fake::{
    FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeWandb, ItemState, NewItem, NewQueue,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How a demo run is expected to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Finished, no failure reported.
    Finished,
    /// Failed at `stage` with a message containing the text.
    Failed(&'static str, &'static str),
}

/// Where a demo run's pod runs.
#[derive(Clone, Debug)]
enum Place {
    /// The real node: the trainer image with these `TRAINER_*` env vars and memory limit.
    RealNode {
        env: &'static [(&'static str, &'static str)],
        memory: &'static str,
    },
    /// A kwok node, its outcome scripted by these pod annotations.
    Kwok { annotations: Value },
}

struct DemoRun {
    name: &'static str,
    place: Place,
    extra: Value,
    expect: Expect,
}

fn runs() -> Vec<DemoRun> {
    let outcome = |outcome: &str, seconds: &str| json!({"kwok.rlaunch.dev/outcome": outcome, "kwok.rlaunch.dev/run-seconds": seconds});
    let real = |env, memory| Place::RealNode { env, memory };
    vec![
        DemoRun {
            name: "succeeds",
            place: real(&[("TRAINER_STEPS", "5")], "64Mi"),
            extra: json!({}),
            expect: Expect::Finished,
        },
        DemoRun {
            name: "runs-out-of-memory",
            place: real(&[("TRAINER_ALLOCATE", "1")], "32Mi"),
            extra: json!({}),
            expect: Expect::Failed("run", "OOMKilled"),
        },
        DemoRun {
            name: "exits-with-3",
            place: real(&[("TRAINER_EXIT_CODE", "3")], "64Mi"),
            extra: json!({}),
            expect: Expect::Failed("run", "code 3"),
        },
        DemoRun {
            name: "never-fits",
            place: Place::Kwok {
                annotations: outcome("succeed", "1"),
            },
            extra: json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "64"}}}]}}}}),
            expect: Expect::Failed("agent", "never be scheduled"),
        },
        DemoRun {
            name: "one-a100",
            place: Place::Kwok {
                annotations: outcome("succeed", "3"),
            },
            extra: json!({"gpu": "1xA100-80GB"}),
            expect: Expect::Finished,
        },
    ]
}

/// The run's `resource_args.kubernetes` and image.
fn placed(run: &DemoRun) -> (Value, String) {
    let mut kubernetes = run.extra.clone();
    match &run.place {
        Place::Kwok { annotations } => {
            kubernetes["spec"]["template"]["metadata"]["annotations"] = annotations.clone();
            (kubernetes, "ghcr.io/example/train:1".to_owned())
        }
        Place::RealNode { env, memory } => {
            let env: Vec<Value> = env
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            // A merge patch replaces lists: this container replaces the queue config's.
            kubernetes["spec"]["template"]["spec"] = json!({
                "nodeSelector": node::node_selector(),
                "tolerations": [node::toleration()],
                "containers": [{"name": "main", "env": env, "resources": {
                    "requests": {"cpu": "100m", "memory": memory},
                    "limits": {"cpu": "500m", "memory": memory},
                }}],
            });
            (kubernetes, images::reference(images::TRAINER))
        }
    }
}

/// Runs the demo.
pub fn run(root: &Path) -> Result<()> {
    crate::step(
        "build launch-agent",
        crate::cargo().args(["build", "-p", "rlaunch-agent-cli"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("launch-agent");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(600), demo(root, &binary))
            .await
            .context("the demo did not finish within 10 minutes")?
    })
}

async fn demo(root: &Path, binary: &Path) -> Result<()> {
    let started = Instant::now();
    eprintln!("==> start the local control plane and its real node (builds them on first use)");
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    let node = cluster.real_node().await?;
    let namespace = cluster.namespace("demo").await?;
    // The real node's pods reach the host on the node's bridge address.
    let listener = tokio::net::TcpListener::bind((node.host_ip.as_str(), 0)).await?;
    let fake = Arc::new(FakeWandb::serve_on(listener, FakeConfig::default()).await?);
    eprintln!(
        "==> fake W&B at {}; namespace {}",
        fake.base_url, namespace.name
    );
    let queue_config = queue_config(root, &namespace.name)?;
    let mut queue = NewQueue::new(FAKE_ENTITY, "demo");
    queue.config = json!({"resource_args": {"kubernetes": queue_config}});
    fake.create_queue(queue).map_err(anyhow::Error::msg)?;
    let runs = runs();
    let mut by_item = BTreeMap::new();
    let mut kwok_items = std::collections::BTreeSet::new();
    for run in &runs {
        let (kubernetes, image) = placed(run);
        let id = fake
            .push_item(NewItem {
                entity: FAKE_ENTITY.to_owned(),
                project: "model-registry".to_owned(),
                queue: "demo".to_owned(),
                run_spec: json!({
                    "entity": FAKE_ENTITY, "project": "demo", "name": run.name,
                    "docker": {"docker_image": image},
                    "resource_args": {"kubernetes": kubernetes},
                }),
                priority: None,
            })
            .map_err(anyhow::Error::msg)?;
        if matches!(run.place, Place::Kwok { .. }) {
            kwok_items.insert(id.clone());
        }
        by_item.insert(id, run.name);
    }
    let sdk = mark_runs_initialised(fake.clone(), kwok_items);
    let client = cluster.client().await?;
    let logs = tokio::spawn(print_real_logs(client, namespace.name.clone(), started));
    let dir = std::env::temp_dir().join(format!("rlaunch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("launch-config.yaml");
    std::fs::write(
        &config,
        format!(
            "entity: {FAKE_ENTITY}\nqueues: [demo]\nmax_jobs: 3\npoll_interval: 0.5\ninit_check_timeout: 10\ntarget_namespaces: [{ns}]\nidentity: demo-{ns}\nhealth_addr: 127.0.0.1:0\nmetrics_addr: 127.0.0.1:0\n",
            ns = namespace.name
        ),
    )?;
    eprintln!("==> run launch-agent ({} runs, max_jobs 3)", runs.len());
    let mut agent = tokio::process::Command::new(binary)
        .args(["--config"])
        .arg(&config)
        .args(["--log-format", "json"])
        .env("WANDB_API_KEY", FAKE_API_KEY)
        .env("WANDB_BASE_URL", &fake.base_url)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("HOME", &dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stderr = agent.stderr.take().context("no agent stderr")?;
    let names = by_item.clone();
    let journey = tokio::spawn(print_journey(stderr, names, started));
    let ended = wait_until_ended(&fake, &by_item).await;
    if let Some(pid) = agent.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let status = tokio::time::timeout(Duration::from_secs(60), agent.wait()).await;
    journey.abort();
    logs.abort();
    sdk.abort();
    namespace.cleanup().await;
    let _ = std::fs::remove_dir_all(&dir);
    let ended = ended?;
    let problems = summary(&runs, &by_item, &ended);
    match status {
        Ok(Ok(exit)) if exit.success() => eprintln!("==> agent stopped on SIGTERM (exit 0)"),
        other => bail!("the agent did not stop cleanly on SIGTERM: {other:?}"),
    }
    eprintln!("==> demo done in {:.1}s", started.elapsed().as_secs_f64());
    if problems > 0 {
        bail!("{problems} run(s) ended in an unexpected state");
    }
    Ok(())
}

/// `examples/queue-configs/basic.yaml`, pointed at the demo namespace, with requests the
/// fake nodes have.
fn queue_config(root: &Path, namespace: &str) -> Result<Value> {
    let path = root.join("examples/queue-configs/basic.yaml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML", path.display()))?;
    config["metadata"]["namespace"] = json!(namespace);
    Ok(config)
}

/// Plays the W&B SDK inside each kwok workload (`items`): every acked run calls
/// `wandb.init`. The real node's trainer calls the fake itself.
fn mark_runs_initialised(
    fake: Arc<FakeWandb>,
    items: std::collections::BTreeSet<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut done = std::collections::BTreeSet::new();
        loop {
            for item in fake.items().into_iter().filter(|i| items.contains(&i.id)) {
                if let (ItemState::Claimed, Some(run_id)) =
                    (item.state, item.associated_run_id.clone())
                    && done.insert(run_id.clone())
                {
                    fake.set_run_state(FAKE_ENTITY, "demo", &run_id, "running");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// One line per state change of a demo run, from the agent's JSON log.
async fn print_journey(
    stderr: tokio::process::ChildStderr,
    names: BTreeMap<String, &'static str>,
    started: Instant,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let text = |key: &str| {
            event
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let Some(name) = names.get(&text("item")) else {
            continue;
        };
        let message = text("message");
        let state = match message.as_str() {
            "item popped" | "item state" => text("state"),
            "workload created" => format!("created {}", text("workload")),
            "workload terminal; slot freed" => format!("terminal: {}", text("state")),
            "item finished" => "finished".to_owned(),
            "item failed" => format!("failed at stage {}: {}", text("stage"), text("reason")),
            "warning raised" => format!("warning: {}", text("warning")),
            _ => continue,
        };
        eprintln!(
            "  {:>6.1}s  {name:<20} {state}",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Follows the container log of every pod the real node runs in `namespace`, printing
/// each line under the run's name (the pod's `WANDB_NAME`).
async fn print_real_logs(client: kube::Client, namespace: String, started: Instant) {
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let mut following = std::collections::BTreeSet::new();
    loop {
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", node::NODE_NAME));
        for pod in pods
            .list(&on_node)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            if !container_started(&pod) || !following.insert(name.clone()) {
                continue;
            }
            tokio::spawn(follow_log(pods.clone(), name, run_name(&pod), started));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn container_started(pod: &Pod) -> bool {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|cs| {
        cs.iter().any(|c| {
            c.state
                .as_ref()
                .is_some_and(|s| s.running.is_some() || s.terminated.is_some())
        })
    })
}

fn run_name(pod: &Pod) -> String {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == "WANDB_NAME")
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default())
}

async fn follow_log(pods: Api<Pod>, pod: String, run: String, started: Instant) {
    use futures::{AsyncBufReadExt as _, StreamExt as _};
    let params = LogParams {
        follow: true,
        ..LogParams::default()
    };
    let Ok(stream) = pods.log_stream(&pod, &params).await else {
        return;
    };
    let mut lines = stream.lines();
    while let Some(Ok(line)) = lines.next().await {
        eprintln!(
            "  {:>6.1}s  {run:<20} | {line}",
            started.elapsed().as_secs_f64()
        );
    }
}

/// What each item ended as: `None` = finished, `Some((stage, message))` = failed.
type Ended = BTreeMap<String, Option<(String, String)>>;

async fn wait_until_ended(
    fake: &FakeWandb,
    by_item: &BTreeMap<String, &'static str>,
) -> Result<Ended> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let items = fake.items();
        let mut ended = Ended::new();
        for item in items.iter().filter(|i| by_item.contains_key(&i.id)) {
            match (&item.state, &item.failure) {
                (ItemState::Failed, Some(failure)) => {
                    ended.insert(
                        item.id.clone(),
                        Some((failure.stage.clone(), failure.message.clone())),
                    );
                }
                (ItemState::Claimed, None) if run_finished(fake, item) => {
                    ended.insert(item.id.clone(), None);
                }
                _ => {}
            }
        }
        if ended.len() == by_item.len() {
            return Ok(ended);
        }
        if Instant::now() > deadline {
            bail!(
                "runs still in flight after 5 minutes: {}",
                by_item.len() - ended.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A claimed item counts as finished once its run has been initialised and the agent no
/// longer has a workload for it (it removes a workload after reporting its outcome).
fn run_finished(fake: &FakeWandb, item: &rlaunch_wandb_fake::ItemView) -> bool {
    let Some(run_id) = &item.associated_run_id else {
        return false;
    };
    fake.runs()
        .iter()
        .any(|r| &r.name == run_id && r.state == "running")
        && fake.journal_of("RunState").iter().any(|e| {
            e.variables
                .as_ref()
                .is_some_and(|v| v["name"] == run_id.as_str())
        })
}

fn summary(runs: &[DemoRun], by_item: &BTreeMap<String, &'static str>, ended: &Ended) -> usize {
    eprintln!("==> outcomes");
    let mut problems = 0;
    for (id, name) in by_item {
        let Some(run) = runs.iter().find(|r| r.name == *name) else {
            continue;
        };
        let got = ended.get(id).cloned().flatten();
        let ok = match (run.expect, &got) {
            (Expect::Finished, None) => true,
            (Expect::Failed(stage, text), Some((got_stage, message))) => {
                got_stage == stage && message.contains(text)
            }
            _ => false,
        };
        if !ok {
            problems += 1;
        }
        let shown = match &got {
            None => "finished".to_owned(),
            Some((stage, message)) => format!("failed at stage {stage}: {message}"),
        };
        eprintln!("  {} {name:<20} {shown}", if ok { "ok  " } else { "FAIL" });
    }
    problems
}
