//! W&B's own launch agent (PyPI `wandb[launch]`, pinned), installed once into a venv in the
//! cache, for the tests and benchmarks that run it beside ours against `wandb-fake` and the
//! test cluster (`tests/tests/reference_agent.rs`, `cargo xtask bench`).
//!
//! [`ensure_installed`] is idempotent and safe to call from several processes at once (a
//! lock file serialises the install); a missing `python3` or an unreachable PyPI is an
//! [`Error::ReferenceInstall`] that says so. [`isolated_home`] gives the agent the
//! environment it needs here (`../shared/docs/running-the-reference.md`): it reads only
//! `~/.kube/config`, so it gets a throw-away `HOME` holding a copy of the kubeconfig.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::binaries::cache_root;
use crate::{Error, Result, io_err};

/// The packages installed, pinned so every run measures the same agent.
pub const PACKAGES: [&str; 2] = ["wandb[launch]==0.31.0", "kubernetes-asyncio==36.1.0"];
/// The `wandb` version [`PACKAGES`] pins.
pub const WANDB_VERSION: &str = "0.31.0";

/// The installed reference agent.
#[derive(Debug, Clone)]
pub struct ReferenceAgent {
    /// The venv's `python`.
    pub python: PathBuf,
    /// The venv's `wandb` command (`wandb launch-agent --config FILE`).
    pub wandb: PathBuf,
}

impl ReferenceAgent {
    /// `wandb launch-agent --config CONFIG` with only the environment it needs here:
    /// `HOME` and `WANDB_DIR` set to `home` (prepared by [`isolated_home`]), the fake's
    /// URL in `WANDB_BASE_URL` (without it 0.31.0 targets a hosted default), the key in
    /// `WANDB_API_KEY`, and `PATH`.
    pub fn launch_agent(
        &self,
        home: &Path,
        base_url: &str,
        api_key: &str,
        config: &Path,
    ) -> Command {
        let mut command = Command::new(&self.wandb);
        command
            .arg("launch-agent")
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("WANDB_DIR", home)
            .env("WANDB_BASE_URL", base_url)
            .env("WANDB_API_KEY", api_key)
            .stdin(Stdio::null());
        command
    }
}

/// `$HOME/.cache/rlaunch/reference-venv`.
pub fn venv_dir() -> PathBuf {
    cache_root().join("reference-venv")
}

/// The venv, created and filled from PyPI the first time (about 2 minutes), reused after.
pub fn ensure_installed() -> Result<ReferenceAgent> {
    let venv = venv_dir();
    let agent = ReferenceAgent {
        python: venv.join("bin/python"),
        wandb: venv.join("bin/wandb"),
    };
    if installed_version(&agent.python).as_deref() == Some(WANDB_VERSION) {
        return Ok(agent);
    }
    let root = cache_root();
    fs::create_dir_all(&root).map_err(io_err("cannot create the cache directory", &root))?;
    let lock_path = root.join(".reference-venv.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("cannot open the reference venv lock", &lock_path))?;
    lock.lock()
        .map_err(io_err("cannot take the reference venv lock", &lock_path))?;
    if installed_version(&agent.python).as_deref() != Some(WANDB_VERSION) {
        install(&venv, &agent.python)?;
    }
    match installed_version(&agent.python) {
        Some(version) if version == WANDB_VERSION => Ok(agent),
        other => Err(Error::ReferenceInstall {
            step: "checking the installed version".to_owned(),
            detail: format!(
                "{} holds wandb {other:?}, not {WANDB_VERSION}; delete it and rerun",
                venv.display()
            ),
        }),
    }
}

fn install(venv: &Path, python: &Path) -> Result<()> {
    crate::binaries::progress(&format!(
        "installing W&B's reference agent ({}) into {}",
        PACKAGES.join(" "),
        venv.display()
    ));
    run(
        "creating the venv (needs python3 with the venv module)",
        Command::new("python3").arg("-m").arg("venv").arg(venv),
    )?;
    run(
        "pip install from PyPI (is PyPI reachable?)",
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
    )
}

fn run(step: &str, command: &mut Command) -> Result<()> {
    let output = command.output().map_err(|e| Error::ReferenceInstall {
        step: step.to_owned(),
        detail: e.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    Err(Error::ReferenceInstall {
        step: step.to_owned(),
        detail: format!(
            "{}:\n{}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ),
    })
}

fn installed_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args([
            "-c",
            "import wandb, kubernetes_asyncio; print(wandb.__version__)",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Makes `dir` a home for the agent: `dir/.kube/config` is a copy of `kubeconfig` (the
/// agent ignores `KUBECONFIG`). Set `HOME` and `WANDB_DIR` to `dir` when starting it.
pub fn isolated_home(dir: &Path, kubeconfig: &Path) -> Result<()> {
    let kube = dir.join(".kube");
    fs::create_dir_all(&kube).map_err(io_err("cannot create the agent's .kube", &kube))?;
    let target = kube.join("config");
    fs::copy(kubeconfig, &target).map_err(io_err("cannot copy the kubeconfig", kubeconfig))?;
    Ok(())
}
