//! Project automation, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `ci`: formatting, tidy checks, clippy with `-D warnings`, then every test.
//! - `cluster build|up|down`: the local Kubernetes control plane built from source.
//! - `bench render`: manifests per second of the render engine.
//! - `tidy`: the architecture rules of ARCHITECTURE.md, checked.
//! - `demo`: the README's first command.

mod bench_render;
mod cluster;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("cluster") => cluster::main(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("tidy") => tidy::check(&root),
        Some("demo") => demo(),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci | cluster build|up|down | bench render | tidy | demo>"
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

fn ci() -> Result<()> {
    step("fmt", cargo().args(["fmt", "--all", "--", "--check"]))?;
    eprintln!("==> tidy");
    tidy::check(Path::new("."))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // Build (or find cached) the control plane first, so its progress is visible and a
    // build failure is reported as such rather than as failing cluster tests.
    eprintln!("==> cluster build");
    cluster::main(&["build".to_owned()])?;
    // insta never writes snapshots here: a mismatch fails the test.
    step(
        "test",
        cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("INSTA_UPDATE", "no")
            .env("CI", "true"),
    )
}

fn bench(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("render") => bench_render::run(&args[1..]),
        None => bench_render::run(&[]),
        Some(other) => bail!("unknown benchmark `{other}` (available: render)"),
    }
}

fn demo() -> Result<()> {
    step(
        "render the CoreWeave GPU example",
        cargo().args([
            "run",
            "--quiet",
            "-p",
            "rlaunch-render-cli",
            "--",
            "--run-spec",
            "examples/run-specs/image-job.json",
            "--queue-config",
            "examples/queue-configs/coreweave-gpu.yaml",
            "--rqi-id",
            "UnVuUXVldWVJdGVtOjE=",
            "--queue",
            "gpu-a100",
        ]),
    )
}
