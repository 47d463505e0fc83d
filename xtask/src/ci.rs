//! `cargo xtask ci`: every check and test, in the order that fails fastest, with the time
//! of each step and a summary at the end (also when a step fails).
//!
//! 1. `fmt`: `cargo fmt --check`.
//! 2. `fetch`: `cargo fetch --locked`, so the lock file is current and later steps (tidy's
//!    offline `cargo metadata`) find every dependency.
//! 3. `tidy`: the workspace rules (`rlaunch-tidy`; `cargo test` runs them too).
//! 4. `clippy`: every target, `-D warnings`.
//! 5. `doc`: `cargo doc --workspace --no-deps` with `RUSTDOCFLAGS=-D warnings`.
//! 6. `cluster build`: the test control plane, built or found in the cache.
//! 7. `test`: every test of the workspace, doc tests included; insta never writes snapshots;
//!    tests named `chaos_*` are left to step 8.
//! 8. `chaos`: the agent's chaos scenarios, one at a time (`cargo xtask chaos`).
//! 9. `publish dry-run`: `cargo publish --workspace --dry-run` of the embeddable crates.
//! 10. `fuzz`: every fuzz target of `fuzz/` for [`FUZZ_SECONDS`] each (`cargo xtask fuzz`).
//! 11. `chart image`: the container image's static (musl) `launch-agent`, dev profile, runs
//!     (`cargo xtask chart image`; the chart itself is checked by the `test` step).
//! 12. `chart checkov`: checkov on the all-features render, 0 failed checks (about 8 s warm;
//!     the first run installs checkov into a venv, minutes).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cargo, cluster};

/// Workspace packages `cargo publish` skips: they only serve this repository (tidy checks
/// that they are `publish = false`, and that the embeddable crates are publishable).
pub const NOT_PUBLISHED: &[&str] = &[
    "rlaunch-testkit",
    "rlaunch-tests",
    "rlaunch-tidy",
    "xtask",
    "rlaunch-render-cli",
];

/// Crates whose docs still warn, documented without `-D warnings` until fixed. Each warns
/// about a link that is both a module and a function (`pub mod render` + `pub use
/// render::render`); making the module private (tidy's `pub-and-reexported` allow-list)
/// and writing `[`render()`]` fixes it. The list can only shrink: a crate here whose docs
/// are clean fails the step until it is removed.
const DOC_WARNINGS_PENDING: &[&str] = &[];

/// Seconds each fuzz target runs in CI: a short pass that keeps the warm corpus growing
/// (the corpus lives in the cached target dir) and catches a crash a change brings in.
pub const FUZZ_SECONDS: u64 = 30;

/// Names and durations of the steps run so far.
#[derive(Default)]
struct Timings(Vec<(String, Duration, bool)>);

impl Timings {
    /// Runs `body` as step `name`, printing its start and duration.
    fn step(&mut self, name: &str, body: impl FnOnce() -> Result<()>) -> Result<()> {
        eprintln!("==> {name}");
        let started = Instant::now();
        let result = body();
        let took = started.elapsed();
        eprintln!("<== {name}: {:.1}s", took.as_secs_f64());
        self.0.push((name.to_owned(), took, result.is_ok()));
        result
    }

    fn summary(&self) {
        let total: Duration = self.0.iter().map(|(_, d, _)| *d).sum();
        eprintln!("ci timings:");
        for (name, took, ok) in &self.0 {
            let mark = if *ok { "ok" } else { "FAILED" };
            eprintln!("  {name:<16} {:>7.1}s  {mark}", took.as_secs_f64());
        }
        eprintln!("  {:<16} {:>7.1}s", "total", total.as_secs_f64());
    }
}

/// Entry point of `cargo xtask ci`.
pub fn main() -> Result<()> {
    let mut timings = Timings::default();
    let result = run(&mut timings);
    timings.summary();
    result
}

fn run(t: &mut Timings) -> Result<()> {
    t.step("fmt", || {
        status(cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    t.step("fetch", || status(cargo().args(["fetch", "--locked"])))?;
    t.step("tidy", || crate::tidy(std::path::Path::new(".")))?;
    t.step("clippy", || {
        status(
            cargo()
                .args(["clippy", "--workspace", "--all-targets", "--locked"])
                .args(["--", "-D", "warnings"]),
        )
    })?;
    t.step("doc", doc)?;
    // Build (or find cached) the control plane first, so its progress is visible and a
    // build failure is reported as such rather than as failing cluster tests.
    t.step("setup", crate::setup::main)?;
    t.step("cluster build", || cluster::main(&["build".to_owned()]))?;
    t.step("test", || {
        status(
            cargo()
                .args(["test", "--workspace", "--locked", "--no-fail-fast"])
                // The chaos scenarios run in their own step, one at a time.
                .args(["--", "--skip", "chaos_"])
                .env("INSTA_UPDATE", "no")
                .env("CI", "true"),
        )
    })?;
    t.step("chaos", || crate::chaos::main(&[]))?;
    t.step("publish dry-run", || {
        forget_packaged_builds()?;
        status(&mut publish_dry_run())
    })?;
    t.step("fuzz", || {
        let outcomes = crate::fuzz::run(crate::fuzz::TARGETS, FUZZ_SECONDS)?;
        crate::fuzz::print_table(&outcomes);
        Ok(())
    })?;
    t.step("chart image", || {
        crate::chart::image(crate::chart::Profile::Dev).map(drop)
    })?;
    t.step("chart checkov", || crate::chart::checkov().map(drop))
}

/// The target dir of the publish dry-run: its own, so its builds (dependencies resolved
/// from the packaged crates) never mix with the workspace's.
fn publish_target_dir() -> PathBuf {
    let base =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    base.join("publish-check")
}

/// Cargo verifies a packaged crate against its packaged siblings as if they came from a
/// registry (the dry-run's `tmp-registry`), and a registry crate of the same version is
/// neither unpacked again nor rebuilt: a sibling changed since the last dry-run would be
/// checked against its old sources and build. Forgetting both — the builds of our own crates
/// (their fingerprints) and their unpacked sources under `$CARGO_HOME/registry/src` outside
/// crates.io's folder — makes every dry-run check the sources as they are; third-party
/// dependencies stay cached.
fn forget_packaged_builds() -> Result<()> {
    remove_ours_in(&publish_target_dir().join("debug/.fingerprint"))?;
    let sources = cargo_home().join("registry/src");
    let Ok(registries) = std::fs::read_dir(&sources) else {
        return Ok(()); // nothing unpacked yet
    };
    for registry in registries {
        let registry = registry.with_context(|| format!("cannot list {}", sources.display()))?;
        if !registry
            .file_name()
            .to_string_lossy()
            .starts_with("index.crates.io")
        {
            remove_ours_in(&registry.path())?;
        }
    }
    Ok(())
}

/// Removes every entry of `dir` whose name starts with `rlaunch`; a missing `dir` is fine.
fn remove_ours_in(dir: &std::path::Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if entry.file_name().to_string_lossy().starts_with("rlaunch") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `$CARGO_HOME`, or `~/.cargo` as cargo defaults it.
fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    )
}

/// `cargo publish --workspace --dry-run` of the embeddable crates: packages each one (so a
/// file it needs outside its folder fails here) and builds it against the others as
/// packaged, then stops before uploading.
pub fn publish_dry_run() -> Command {
    let mut command = cargo();
    command
        .args(["publish", "--workspace", "--dry-run", "--allow-dirty"])
        .env("CARGO_TARGET_DIR", publish_target_dir());
    for name in NOT_PUBLISHED {
        command.args(["--exclude", name]);
    }
    command
}

/// The `doc` step: every crate's docs with `-D warnings`, except the pending ones.
pub fn doc() -> Result<()> {
    let mut strict = cargo();
    strict
        .args(["doc", "--workspace", "--no-deps", "--locked"])
        .env("RUSTDOCFLAGS", "-D warnings");
    for name in DOC_WARNINGS_PENDING {
        strict.args(["--exclude", name]);
    }
    status(&mut strict)?;
    let mut fixed = Vec::new();
    for name in DOC_WARNINGS_PENDING {
        eprintln!("doc: {name} is on the pending list; its warnings follow");
        let clean = cargo()
            .args(["doc", "--no-deps", "--locked", "-p", name])
            .env("RUSTDOCFLAGS", "-D warnings")
            .status()
            .with_context(|| format!("cannot run cargo doc -p {name}"))?
            .success();
        if clean {
            fixed.push(*name);
        } else {
            // Warnings are tolerated; docs that do not build at all are not.
            status(cargo().args(["doc", "--no-deps", "--locked", "-p", name]))?;
        }
    }
    if !fixed.is_empty() {
        bail!(
            "the docs of {} build without warnings now: remove them from DOC_WARNINGS_PENDING in xtask/src/ci.rs",
            fixed.join(", ")
        );
    }
    Ok(())
}

fn status(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
