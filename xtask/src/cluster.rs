//! `cargo xtask cluster build|up|down|status`: the local Kubernetes control plane built
//! from source (see `crates/testkit`).
//!
//! - `build`: build (or find cached) etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and kwok for the versions pinned in `rlaunch_testkit::versions`, the
//!   kubelet, the Kaniko executor of the real node's builds, the operators' CRDs and their
//!   controllers (`rlaunch_testkit::operators`: JobSet, the Kubeflow training-operator, Kueue).
//! - `up [--nodes FILE] [--real-node]`: start a cluster in `$HOME/.cache/rlaunch/run/cluster`
//!   that keeps running after this command exits; prints `export KUBECONFIG=…`. With
//!   `--real-node`, a real node (kubelet + containerd + runc, `rlaunch_testkit::node`) joins
//!   the kwok nodes, in `$HOME/.cache/rlaunch/run/rlaunch-node` (needs root and `cargo xtask setup`).
//! - `down`: stop exactly the processes `up` started and remove the state dir.
//! - `status`: say whether a cluster is running.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rlaunch_testkit::control_plane::{self, ControlPlane, NodeSet, StartOptions, Supervision};
use rlaunch_testkit::{binaries, node};

const USAGE: &str =
    "usage: cargo xtask cluster <build | up [--nodes FILE] [--real-node] | down | status>";

/// Entry point of `cargo xtask cluster`.
pub fn main(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => build(),
        Some("up") => up(&args[1..]),
        Some("down") => down(),
        Some("status") => status(),
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown or missing `cluster` subcommand")
        }
    }
}

fn state_dir() -> PathBuf {
    binaries::cache_root().join("run").join("cluster")
}

fn build() -> Result<()> {
    let started = Instant::now();
    let hit = binaries::cached().is_some();
    let bins = binaries::ensure_built().context("building the test control plane")?;
    if hit {
        eprintln!(
            "cluster binaries: cache hit ({}) in {:.2}s at {}",
            binaries::describe(),
            started.elapsed().as_secs_f32(),
            bins.dir.display()
        );
    }
    for name in binaries::BINARIES {
        println!("{}", bins.path(name).display());
    }
    let kubelet = rlaunch_testkit::node::ensure_kubelet().context("building the kubelet")?;
    println!("{}", kubelet.display());
    let executor = rlaunch_testkit::node::kaniko::ensure_executor()
        .context("building the Kaniko executor for the real node's builds")?;
    println!("{}", executor.display());
    let crds = rlaunch_testkit::crds::manifests().context("fetching the operators' CRDs")?;
    eprintln!(
        "CRDs: {}",
        crds.iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for operator in rlaunch_testkit::operators::Operator::ALL {
        let started = Instant::now();
        let dir = rlaunch_testkit::operators::ensure_built(operator)
            .with_context(|| format!("building the {} controller", operator.name()))?;
        eprintln!(
            "operator {}: ready in {:.2}s",
            operator.name(),
            started.elapsed().as_secs_f32()
        );
        println!("{}", dir.display());
    }
    Ok(())
}

fn up(args: &[String]) -> Result<()> {
    let (nodes_yaml, nodes) = parse_up_args(args)?;
    let dir = state_dir();
    refuse_if_running(&dir)?;
    if dir.exists() {
        // Leftovers of a cluster whose processes are gone.
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove the stale state dir {}", dir.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a tokio runtime")?;
    let started = Instant::now();
    let result = runtime.block_on(ControlPlane::start(StartOptions {
        state_dir: dir.clone(),
        supervision: Supervision::Detached,
        nodes_yaml,
        nodes,
        controller_manager_qps: control_plane::controller_manager_qps()?,
    }));
    match result {
        Ok(plane) => {
            eprintln!(
                "cluster up in {:.1}s: {} (logs in {})",
                started.elapsed().as_secs_f32(),
                plane.server,
                dir.join("logs").display()
            );
            println!("export KUBECONFIG={}", plane.kubeconfig.display());
            Ok(())
        }
        Err(e) => {
            // Do not leave half a cluster behind.
            let _ = node::down(&node_dir());
            let _ = control_plane::down(&dir);
            Err(anyhow::Error::new(e).context("cluster up failed (partial cluster stopped)"))
        }
    }
}

/// `[--nodes FILE]`: the node list to create instead of the default one; `[--real-node]`.
fn parse_up_args(args: &[String]) -> Result<(Option<String>, NodeSet)> {
    let mut nodes_yaml = None;
    let mut nodes = NodeSet::Kwok;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--nodes" => {
                let file = rest.next().context("--nodes needs a file argument")?;
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the node list {file}"))?;
                nodes_yaml = Some(text);
            }
            "--real-node" => nodes = NodeSet::WithRealNode,
            other => {
                eprintln!("{USAGE}");
                bail!("unknown argument {other:?} to `cluster up`")
            }
        }
    }
    Ok((nodes_yaml, nodes))
}

/// Fails, saying how to use or stop it, if a cluster of `dir` is still running.
fn refuse_if_running(dir: &std::path::Path) -> Result<()> {
    let running = control_plane::running_components(dir);
    if running.is_empty() {
        return Ok(());
    }
    let server = control_plane::read_state(dir)
        .map(|s| s.server)
        .unwrap_or_default();
    let list: Vec<String> = running
        .iter()
        .map(|(n, p)| format!("{n} (pid {p})"))
        .collect();
    bail!(
        "a test cluster is already running at {server} from {}: {}; use it with \
         `export KUBECONFIG={}` or stop it with `cargo xtask cluster down`",
        dir.display(),
        list.join(", "),
        dir.join("kubeconfig").display()
    )
}

fn node_dir() -> PathBuf {
    control_plane::node_dir(&state_dir(), Supervision::Detached)
}

fn down() -> Result<()> {
    let node = node_dir();
    if node::down(&node).context("stopping the real node")? {
        eprintln!("stopped the real node; removed {}", node.display());
    }
    let dir = state_dir();
    if !dir.exists() {
        eprintln!(
            "no test cluster state at {}; nothing to stop",
            dir.display()
        );
        return Ok(());
    }
    let stopped = control_plane::down(&dir).context("cluster down")?;
    if stopped.is_empty() {
        eprintln!("no running processes; removed {}", dir.display());
    } else {
        let list: Vec<String> = stopped.iter().map(|(n, p)| format!("{n} ({p})")).collect();
        eprintln!("stopped {}; removed {}", list.join(", "), dir.display());
    }
    Ok(())
}

fn status() -> Result<()> {
    let dir = state_dir();
    let running = control_plane::running_components(&dir);
    if running.is_empty() {
        println!("no test cluster running");
    } else {
        let server = control_plane::read_state(&dir)
            .map(|s| s.server)
            .unwrap_or_default();
        println!("test cluster at {server}:");
        for (name, pid) in running {
            println!("  {name} pid {pid}");
        }
        println!("export KUBECONFIG={}", dir.join("kubeconfig").display());
    }
    Ok(())
}
