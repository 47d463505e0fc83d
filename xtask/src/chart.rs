//! `cargo xtask chart`: the Helm chart `charts/launch-agent` and the agent's container image.
//!
//! - `chart [--check]`: regenerates the generated parts of the chart — the
//!   `launchConfigObject` schema in `values.schema.json` (from the agent's config types,
//!   `rlaunch_agent::launch_config_schema`), the values table of its README and
//!   `files/rbac-rules.yaml` — by running their generator tests with `RLAUNCH_REGENERATE=1`;
//!   with `--check`, the same tests fail when a committed file is stale (what CI runs).
//! - `chart check`: `helm lint --strict`, the template snapshots of every `ci/*.yaml`, the
//!   schema rejections, the server-side dry-run, `helm install`, the agent run under the
//!   chart's ServiceAccount and the negative RBAC checks: the chart tests of `rlaunch-tests`.
//! - `chart image [--release]`: the static (`x86_64-unknown-linux-musl`) `launch-agent` the
//!   `Dockerfile` copies, at `target/image/launch-agent`, checked to be static and to run
//!   (`launch-agent --version`). CI builds it with the dev profile; `--release` for images.
//! - `chart checkov`: PyPI `checkov` (in a venv under `~/.cache/rlaunch/checkov-venv`) on the
//!   chart rendered with every feature on (`charts/launch-agent/ci/all-features-values.yaml`);
//!   fails on any failed check. Suppressions live in the chart, each with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cargo;

/// The musl target of the static binary.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// Where the `Dockerfile` takes the binary from (inside the build context).
const IMAGE_BINARY: &str = "target/image/launch-agent";
/// The pinned checkov release.
const CHECKOV: &str = "checkov==3.3.30";
/// The ci values file with every feature on, for checkov.
const ALL_FEATURES: &str = "charts/launch-agent/ci/all-features-values.yaml";
/// The chart's test binaries of `rlaunch-tests`.
const CHART_TESTS: &[&str] = &["chart", "chart_agent", "chart_rbac", "chart_generated"];
/// The generator tests (each writes its file with `RLAUNCH_REGENERATE=1`).
const GENERATORS: &[&str] = &["chart_generated", "chart_rbac"];

/// Build profile of the static binary.
#[derive(Clone, Copy, Debug)]
pub enum Profile {
    /// `dev`: what CI checks (minutes, not the release build's quarter hour).
    Dev,
    /// `release`: what an image ships.
    Release,
}

/// Entry point of `cargo xtask chart`.
pub fn main(args: &[String]) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => generate(false),
        ["--check"] => generate(true),
        ["check"] => check(),
        ["image"] => image(Profile::Dev).map(drop),
        ["image", "--release"] => image(Profile::Release).map(drop),
        ["checkov"] => checkov().map(drop),
        _ => bail!("usage: cargo xtask chart [--check] | check | image [--release] | checkov"),
    }
}

fn tests_of(tests: &[&str]) -> Command {
    let mut command = cargo();
    command.args(["test", "-p", "rlaunch-tests"]);
    for test in tests {
        command.args(["--test", test]);
    }
    command.env("INSTA_UPDATE", "no");
    command
}

/// Regenerates (or with `check`, verifies) the chart's generated files.
fn generate(check: bool) -> Result<()> {
    let mut command = tests_of(GENERATORS);
    if !check {
        command.env("RLAUNCH_REGENERATE", "1");
    }
    let what = if check {
        "the chart's generated files are current"
    } else {
        "regenerating the chart's generated files"
    };
    crate::step(what, &mut command).context(if check {
        "a generated chart file is stale: run `cargo xtask chart` and commit the result"
    } else {
        "the generators failed"
    })
}

/// `cargo xtask chart check`: the control plane, then every chart test.
fn check() -> Result<()> {
    crate::cluster::main(&["build".to_owned()])?;
    crate::step(
        "chart tests (lint, snapshots, schema, dry-run, install, agent run, RBAC)",
        tests_of(CHART_TESTS).env("CI", "true"),
    )
}

/// Builds the static `launch-agent`, copies it to [`IMAGE_BINARY`] and checks it; returns
/// its path.
pub fn image(profile: Profile) -> Result<PathBuf> {
    ensure_musl_target()?;
    let mut build = cargo();
    build.args([
        "build",
        "-p",
        "rlaunch-agent-cli",
        "--bin",
        "launch-agent",
        "--locked",
    ]);
    build.args(["--target", MUSL_TARGET]);
    let dir = match profile {
        Profile::Dev => "debug",
        Profile::Release => {
            build.arg("--release");
            "release"
        }
    };
    // aws-lc-sys (the TLS provider) compiles C: with musl's gcc wrapper unless told otherwise.
    let cc_var = format!("CC_{}", MUSL_TARGET.replace('-', "_"));
    if std::env::var_os(&cc_var).is_none() {
        if !on_path("musl-gcc") {
            bail!(
                "musl-gcc is missing: run `cargo xtask setup` (Debian package musl-tools) or set {cc_var}"
            );
        }
        build.env(&cc_var, "musl-gcc");
    }
    crate::step(&format!("static launch-agent ({profile:?})"), &mut build)?;
    let built = target_dir()
        .join(MUSL_TARGET)
        .join(dir)
        .join("launch-agent");
    let dest = crate::workspace_root().join(IMAGE_BINARY);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::copy(&built, &dest)
        .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
    check_static(&dest)?;
    let version = run_version(&dest)?;
    eprintln!(
        "chart image: {} is static and runs: {version}",
        dest.display()
    );
    Ok(dest)
}

/// Installs the musl target with rustup when it is missing.
pub fn ensure_musl_target() -> Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup is needed for the musl target")?;
    if installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        return Ok(());
    }
    crate::step(
        &format!("rustup target add {MUSL_TARGET}"),
        Command::new("rustup").args(["target", "add", MUSL_TARGET]),
    )
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::workspace_root().join("target"), PathBuf::from)
}

/// Refuses a binary that asks for a dynamic loader (an ELF `PT_INTERP` program header).
fn check_static(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let interp = elf_has_interpreter(&bytes)
        .with_context(|| format!("{} is not a 64-bit little-endian ELF", path.display()))?;
    if interp {
        bail!(
            "{} needs a dynamic loader: it would not start on a distroless/static base",
            path.display()
        );
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF has a `PT_INTERP` header; `None` if it is no such ELF.
fn elf_has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let phoff = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for index in 0..phnum {
        let at = phoff.checked_add(index.checked_mul(phentsize)?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// `launch-agent --version` with an empty environment, as in a bare container.
fn run_version(binary: &Path) -> Result<String> {
    let version = output(Command::new(binary).arg("--version").env_clear())?;
    let version = version.trim().to_owned();
    if !version.starts_with("launch-agent ") {
        bail!("`{} --version` printed {version:?}", binary.display());
    }
    Ok(version)
}

/// Checkov's summary of one run.
#[derive(Debug)]
pub struct CheckovSummary {
    /// Checks that passed.
    pub passed: u64,
    /// Checks that failed.
    pub failed: u64,
    /// Checks suppressed in the chart (`checkov.io/skip*` annotations).
    pub skipped: u64,
}

/// `cargo xtask chart checkov`: renders the all-features chart and runs checkov on it.
pub fn checkov() -> Result<CheckovSummary> {
    let checkov = install_checkov()?;
    let root = crate::workspace_root();
    // Inside the workspace: checkov skips every path with a hidden directory in it (such
    // as `~/.cache`, where CARGO_TARGET_DIR often points).
    let dir = root.join("target/checkov");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let rendered = output(
        Command::new(helm()?)
            .args(["template", "checkov"])
            .arg(root.join("charts/launch-agent"))
            .args(["--namespace", "launch", "-f"])
            .arg(root.join(ALL_FEATURES))
            .args(["--api-versions", "monitoring.coreos.com/v1"]),
    )
    .context("helm template of the all-features values")?;
    std::fs::write(dir.join("chart.yaml"), rendered)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let started = Instant::now();
    let out = Command::new(&checkov)
        .arg("-d")
        .arg(&dir)
        .args([
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ])
        .output()
        .with_context(|| format!("cannot start {}", checkov.display()))?;
    let report = String::from_utf8_lossy(&out.stdout);
    let summary =
        parse_checkov(&report).with_context(|| format!("checkov printed no summary:\n{report}"))?;
    eprintln!(
        "checkov ({:.1}s): {} passed, {} failed, {} suppressed in the chart",
        started.elapsed().as_secs_f64(),
        summary.passed,
        summary.failed,
        summary.skipped
    );
    if summary.failed > 0 {
        bail!("checkov failed {} checks:\n{report}", summary.failed);
    }
    Ok(summary)
}

fn parse_checkov(report: &str) -> Option<CheckovSummary> {
    let value: serde_json::Value = serde_json::from_str(report).ok()?;
    // One report per framework: an object, or a list of them.
    let reports = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    let mut summary = CheckovSummary {
        passed: 0,
        failed: 0,
        skipped: 0,
    };
    for report in reports {
        let counts = report.get("summary")?;
        summary.passed += counts.get("passed")?.as_u64()?;
        summary.failed += counts.get("failed")?.as_u64()?;
        summary.skipped += counts.get("skipped")?.as_u64()?;
    }
    Some(summary)
}

/// The checkov executable, installed into its venv when missing.
fn install_checkov() -> Result<PathBuf> {
    let venv = cache_dir()?.join("checkov-venv");
    let checkov = venv.join("bin/checkov");
    if checkov.is_file() {
        return Ok(checkov);
    }
    crate::step(
        "python3 -m venv (checkov)",
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
    )
    .context("python3 with the venv module is needed for checkov")?;
    crate::step(
        &format!("pip install {CHECKOV}"),
        Command::new(venv.join("bin/pip")).args(["install", "--quiet", CHECKOV]),
    )?;
    Ok(checkov)
}

fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/rlaunch"))
}

/// helm as the chart tests install it (`tests/tests/chart_tools`); the lint test installs
/// it when it is missing.
fn helm() -> Result<PathBuf> {
    let helm = cache_dir()?.join("helm/helm");
    if !helm.is_file() {
        crate::step(
            "installing helm (through the chart lint test)",
            tests_of(&["chart"]).arg("lint_strict"),
        )?;
    }
    Ok(helm)
}

fn output(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_elf_is_told_from_a_static_one() {
        let mut elf = vec![0u8; 0x40 + 2 * 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        assert_eq!(elf_has_interpreter(&elf), Some(false));
        elf[0x40 + 56..0x40 + 60].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        assert_eq!(elf_has_interpreter(&elf), Some(true));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn checkov_summaries_are_summed_over_frameworks() {
        let one = r#"{"summary": {"passed": 3, "failed": 1, "skipped": 2}}"#;
        let summary = parse_checkov(one).unwrap();
        assert_eq!((summary.passed, summary.failed, summary.skipped), (3, 1, 2));
        let two = format!("[{one}, {one}]");
        assert_eq!(parse_checkov(&two).unwrap().passed, 6);
        assert!(parse_checkov("no json").is_none());
    }
}
