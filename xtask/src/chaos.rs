//! `cargo xtask chaos [SCENARIO…]`: the agent's chaos suite. Each scenario is a test
//! binary of `bins/launch-agent` (the real `launch-agent` against the testkit cluster and
//! `wandb-fake`) that injects one kind of fault with a fixed seed, prints each step, and
//! ends with the verdict "0 lost, 0 duplicated, every item exactly one terminal report" or
//! fails naming the item ids that were lost, doubled or misreported.
//!
//! Scenarios run one after another (two of them restart parts of their own control plane),
//! each with `--test-threads=1 --nocapture`, after one build of them all; a summary table
//! with each scenario's time follows. `RLAUNCH_CHAOS_SEED` replays a scenario with another
//! seed. `cargo xtask ci` runs the suite as its `chaos` step (and its `test` step skips
//! tests named `chaos_*`, so no scenario runs twice).

use std::time::Instant;

use anyhow::{Result, bail};

use crate::cargo;

/// Package of the scenarios.
const PACKAGE: &str = "rlaunch-agent-cli";

/// Every scenario: test binary and what it does.
pub const SCENARIOS: &[(&str, &str)] = &[
    ("chaos_apiserver", "kube-apiserver restarted mid-burst"),
    (
        "chaos_etcd",
        "etcd killed for 20 s mid-burst, then restarted",
    ),
    (
        "chaos_wandb",
        "W&B answers 500/503/429 with Retry-After, then 2 s per request, then drops connections",
    ),
    (
        "agent_kill_points",
        "the agent killed with SIGKILL at 10 seeded points, restarted each time",
    ),
    (
        "chaos_same_identity",
        "two agents with the same identity started by mistake",
    ),
    (
        "chaos_queue_config",
        "a queue config that becomes malformed mid-run",
    ),
];

/// The command line: scenario names (default all).
pub fn main(args: &[String]) -> Result<()> {
    let chosen: Vec<&(&str, &str)> = if args.is_empty() {
        SCENARIOS.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for arg in args {
            match SCENARIOS.iter().find(|(name, _)| name == arg) {
                Some(scenario) => chosen.push(scenario),
                None => bail!(
                    "unknown scenario `{arg}` (available: {})",
                    SCENARIOS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        chosen
    };
    run(&chosen)
}

/// Builds the chosen scenarios, runs each, prints the table; fails if any failed.
pub fn run(scenarios: &[&(&str, &str)]) -> Result<()> {
    let started = Instant::now();
    let mut build = cargo();
    build.args(["test", "-p", PACKAGE, "--locked", "--no-run"]);
    for (name, _) in scenarios {
        build.args(["--test", name]);
    }
    crate::step("chaos: build the scenarios", &mut build)?;
    let mut results = Vec::new();
    for (name, what) in scenarios {
        eprintln!("==> chaos {name}: {what}");
        let scenario_started = Instant::now();
        let status = cargo()
            .args(["test", "-p", PACKAGE, "--locked", "--test", name])
            .args(["--", "--test-threads=1", "--nocapture", "chaos_"])
            .env("CI", "true")
            .status()?;
        let secs = scenario_started.elapsed().as_secs_f64();
        eprintln!(
            "<== chaos {name}: {} in {secs:.1}s",
            verdict(status.success())
        );
        results.push((*name, status.success(), secs));
    }
    eprintln!(
        "\nchaos suite ({:.0}s in all):",
        started.elapsed().as_secs_f64()
    );
    eprintln!("  {:<22} {:<8} {:>8}", "scenario", "verdict", "seconds");
    for (name, ok, secs) in &results {
        eprintln!("  {name:<22} {:<8} {secs:>8.1}", verdict(*ok));
    }
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(n, ..)| *n)
        .collect();
    if !failed.is_empty() {
        bail!(
            "chaos scenarios failed: {} (their output above names the items)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "passed" } else { "FAILED" }
}
