//! Architecture rules from ARCHITECTURE.md, enforced: pure crates stay pure, and only the
//! crates allowed to talk to the outside world depend on IO libraries.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Crates that must never do IO, read env or the clock.
const PURE: &[&str] = &["rlaunch-model", "rlaunch-render", "rlaunch-gpu"];
/// Dependencies a pure crate must not have (directly).
const FORBIDDEN_IN_PURE: &[&str] = &[
    "tokio",
    "reqwest",
    "kube",
    "hyper",
    "axum",
    "graphql_client",
];
/// Source patterns a pure crate must not contain.
const FORBIDDEN_CALLS: &[&str] = &[
    "std::fs",
    "std::env",
    "SystemTime::now",
    "Instant::now",
    "std::net",
];
/// `(crate, dependency)` edges that must not exist: wire formats live in one crate each, and
/// only `agent` composes the W&B client and the runner.
const FORBIDDEN_EDGES: &[(&str, &str)] = &[
    ("rlaunch-k8s-runner", "rlaunch-wandb-api"),
    ("rlaunch-wandb-api", "rlaunch-k8s-runner"),
    ("rlaunch-wandb-api", "rlaunch-render"),
    ("rlaunch-wandb-api", "rlaunch-gpu"),
    ("rlaunch-wandb-api", "k8s-openapi"),
    ("rlaunch-model", "k8s-openapi"),
    ("rlaunch-builder", "rlaunch-wandb-api"),
];

/// Runs every tidy rule; fails listing all violations.
pub fn check(root: &Path) -> Result<()> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
    let mut problems = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let deps: Vec<&str> = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .collect();
        if PURE.contains(&name) {
            for dep in &deps {
                if FORBIDDEN_IN_PURE.contains(dep) {
                    problems.push(format!("pure crate `{name}` depends on `{dep}`: move the IO into k8s-runner, wandb-api or agent"));
                }
            }
            let manifest = package["manifest_path"].as_str().unwrap_or_default();
            let src = Path::new(manifest).with_file_name("src");
            scan_sources(&src, name, &mut problems)?;
        }
        for (from, to) in FORBIDDEN_EDGES {
            if name == *from && deps.contains(to) {
                problems.push(format!(
                    "`{from}` must not depend on `{to}` (see ARCHITECTURE.md, dependency picture)"
                ));
            }
        }
        let lib_rs = Path::new(package["manifest_path"].as_str().unwrap_or_default())
            .with_file_name("src/lib.rs");
        let text = std::fs::read_to_string(&lib_rs).unwrap_or_default();
        if lib_rs.exists() && !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{}: a crate's lib.rs opens with `//!` saying what it is for",
                lib_rs.display()
            ));
        }
    }
    if problems.is_empty() {
        eprintln!("tidy: ok");
        Ok(())
    } else {
        for problem in &problems {
            eprintln!("tidy: {problem}");
        }
        bail!("{} tidy problem(s)", problems.len())
    }
}

fn scan_sources(dir: &Path, crate_name: &str, problems: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            scan_sources(&path, crate_name, problems)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for (number, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for call in FORBIDDEN_CALLS {
                    if line.contains(call) {
                        problems.push(format!(
                            "{}:{}: pure crate `{crate_name}` uses `{call}`: pass the value in instead",
                            path.display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
