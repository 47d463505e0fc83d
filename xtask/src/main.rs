//! Project automation, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `ci`: formatting, tidy, clippy and rustdoc with `-D warnings`, every test, and a
//!   `cargo publish --dry-run` of the embeddable crates; prints the time of each step.
//! - `setup`: installs what the real test node needs (Debian packages, as root; idempotent).
//! - `cluster build|up|down`: the local Kubernetes control plane built from source.
//! - `bench render [--compare-reference]`: renders and objects per second of the render
//!   engine, per example; with `--compare-reference`, W&B's own manifest construction timed
//!   in-process on the same inputs, and the ratio; `target/bench/render.json`.
//! - `bench agent [--items N] [--max-jobs M] [--queues Q]`: ours and W&B's agent draining
//!   queues on the same cluster and fake (startup, RSS, CPU, latency, Jobs/s, GraphQL
//!   calls per item, the raw create rate); `target/bench/agent.json`.
//! - `bench watch [--jobs N]`: both agents' RSS, CPU and GraphQL calls while monitoring N
//!   running Jobs, and the time from a pod's end to the agent's report;
//!   `target/bench/watch.json`.
//! - Every bench takes `--compare FILE` (ratios against an earlier JSON of the same bench)
//!   and records the machine (cores, memory, load) and versions in its JSON.
//! - `tidy`: the architecture rules of ARCHITECTURE.md (the `rlaunch-tidy` crate), checked.
//! - `doc`: the crate docs as `ci` checks them (`-D warnings`).
//! - `demo`: the README's first command.
//! - `fuzz [TARGET] [--seconds N]`: the libFuzzer targets of `fuzz/`, built on the stable
//!   toolchain, each run for N seconds (default 60); prints executions per target.
//! - `chart [--check] | check | image [--release] | checkov`: the Helm chart's generated
//!   files, its tests, the static binary of the container image, checkov (see `chart.rs`).
//! - `chaos [SCENARIO…]`: the agent's fault-injection scenarios, each with its verdict.

mod bench_agent;
mod bench_proc;
mod bench_render;
mod bench_report;
mod bench_watch;
mod chaos;
mod chart;
mod ci;
mod cluster;
mod demo;
mod fuzz;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci::main(),
        Some("cluster") => cluster::main(&args[1..]),
        Some("setup") => setup::main(),
        Some("bench") => bench(&args[1..]),
        Some("tidy") => tidy(&root),
        Some("doc") => ci::doc(),
        Some("demo") => demo(),
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("chart") => chart::main(&args[1..]),
        Some("chaos") => chaos::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | setup | cluster build|up|down | bench render [--compare-reference] [--compare FILE] | bench agent [--items N] [--max-jobs M] [--queues Q] [--compare FILE] | bench watch [--jobs N] [--compare FILE] | tidy | doc | demo | fuzz [TARGET] [--seconds N] | chart [--check] | chart check | chart image [--release] | chart checkov | chaos [SCENARIO…]>"
            );
            bail!("unknown or missing command")
        }
    }
}

/// A `cargo` command with the target-dir override applied.
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // Children inherit CARGO_TARGET_DIR, so they share the artifacts xtask itself was built
    // with (`.ci/run` points it at ~/.cache/rlaunch/target, outside the clone).
    Command::new(cargo)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// Runs a step, printing its name and how long it took.
pub fn step(name: &str, command: &mut Command) -> Result<()> {
    eprintln!("==> {name}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("cannot start {name}"))?;
    eprintln!("<== {name}: {:.1}s", started.elapsed().as_secs_f64());
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// The workspace rules (`rlaunch-tidy`, also run by `cargo test` as its test `tidy`).
pub fn tidy(root: &Path) -> Result<()> {
    let report = rlaunch_tidy::check(root).context("tidy could not run")?;
    eprintln!("{report}");
    if !report.is_clean() {
        bail!("tidy failed");
    }
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("render") => bench_render::run(&args[1..]),
        Some("agent") => bench_agent::run(&args[1..]),
        Some("watch") => bench_watch::run(&args[1..]),
        None => bench_render::run(&[]),
        Some(other) => bail!("unknown benchmark `{other}` (available: render, agent, watch)"),
    }
}

fn demo() -> Result<()> {
    demo::run(&workspace_root())
}
