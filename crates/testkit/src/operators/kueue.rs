//! Kueue's controller manager (`sigs.k8s.io/kueue/cmd/kueue`) with the batch/v1 Job
//! integration only: internal certificate management off in its configuration file,
//! webhooks on loopback, the visibility API server off (`VisibilityOnDemand=false`: it is an
//! aggregated API server on a fixed port, and nothing here queries it). Its CRDs (as the
//! module ships them, without the conversion-webhook patches: tests use `v1beta2` only) are
//! installed when it starts.
//!
//! One line of upstream's `cmd/kueue/main.go` is patched at build time: with internal
//! certificate management off it reads the metrics server's certificate from the fixed
//! `/etc/kueue/metrics/certs` and exits if it is missing; the build copies that file (the
//! package's only one) into its own module with that line reading the directory in
//! `$RLAUNCH_OPERATOR_CERT_DIR` (testkit's certificate) instead, so nothing is written outside
//! the test's state directory. The build fails if that line has changed.

use std::fs;
use std::process::Command;

use super::{Launch, Spec};
use crate::binaries::go_env;
use crate::servers::build::{Recipe, Step, run_logged};
use crate::{Error, Result, io_err, versions};

const GO_MOD: &str = include_str!("../../assets/go/kueue/go.mod");
const GO_SUM: &str = include_str!("../../assets/go/kueue/go.sum");
/// Bump when the recipe changes in a way that needs a fresh build.
const RECIPE: u32 = 1;
const MODULE: &str = "sigs.k8s.io/kueue";
const PACKAGE: &str = "sigs.k8s.io/kueue/cmd/kueue";
const WEBHOOKS: &str = "webhooks.yaml";
const CRDS: &str = "crds.yaml";
/// The line of `cmd/kueue/main.go` the build replaces, and its replacement.
const METRICS_CERT_PATH: (&str, &str) = (
    "metricsCertPath := \"/etc/kueue/metrics/certs\"",
    "metricsCertPath := os.Getenv(\"RLAUNCH_OPERATOR_CERT_DIR\")",
);

pub(super) static SPEC: Spec = Spec {
    name: "kueue",
    recipe,
    binary: "kueue",
    launch,
    webhooks: Some(WEBHOOKS),
    webhook_resources: &[
        ("batch", "jobs"),
        ("kueue.x-k8s.io", "clusterqueues"),
        ("kueue.x-k8s.io", "cohorts"),
        ("kueue.x-k8s.io", "localqueues"),
        ("kueue.x-k8s.io", "resourceflavors"),
        ("kueue.x-k8s.io", "workloads"),
    ],
    crds: Some(CRDS),
};

fn recipe() -> Recipe {
    Recipe {
        name: "kueue",
        key: format!("kueue-{}-r{RECIPE}", versions::KUEUE),
        outputs: &["bin/kueue", WEBHOOKS, CRDS],
        build,
    }
}

fn build(step: &Step<'_>) -> Result<()> {
    let module = step.work.join("module");
    let bin = step.staged.join("bin");
    for dir in [&module, &bin] {
        fs::create_dir_all(dir).map_err(io_err("cannot create the build directory", dir))?;
    }
    for (name, text) in [("go.mod", GO_MOD), ("go.sum", GO_SUM)] {
        let path = module.join(name);
        fs::write(&path, text).map_err(io_err("cannot write", &path))?;
    }
    // The module first (its main.go is copied and patched), through the lock files.
    let mut download = Command::new("go");
    go_env(&mut download);
    download
        .current_dir(&module)
        .args(["mod", "download", MODULE]);
    run_logged(&format!("go mod download {MODULE}"), download, step.log)?;
    let source = crate::crds::module_dir(MODULE, versions::KUEUE);
    let main = source.join("cmd/kueue/main.go");
    let text = fs::read_to_string(&main).map_err(io_err("cannot read Kueue's main.go", &main))?;
    let (from, to) = METRICS_CERT_PATH;
    if text.matches(from).count() != 1 {
        return Err(Error::Internal(format!(
            "{} no longer contains `{from}` once; update the patch in testkit's operators/kueue.rs",
            main.display()
        )));
    }
    // The patched copy is the main package of our module (a file in the module cache cannot
    // be overlaid); it imports only public packages of Kueue's module, at the pinned version.
    let patched = module.join("main.go");
    fs::write(&patched, text.replace(from, to)).map_err(io_err("cannot write", &patched))?;
    let mut cmd = Command::new("go");
    go_env(&mut cmd);
    cmd.current_dir(&module)
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(bin.join("kueue"))
        .arg(".");
    run_logged(&format!("go build {PACKAGE} (patched main)"), cmd, step.log)?;
    let webhooks = source.join("config/components/webhook/manifests.yaml");
    fs::copy(&webhooks, step.staged.join(WEBHOOKS)).map_err(io_err("cannot copy", &webhooks))?;
    concatenate_crds(step, &source.join("config/components/crd/bases"))
}

/// Every CRD Kueue ships, as one multi-document file.
fn concatenate_crds(step: &Step<'_>, dir: &std::path::Path) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io_err("cannot list Kueue's CRDs", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    names.sort();
    let mut all = String::new();
    for path in names {
        let text = fs::read_to_string(&path).map_err(io_err("cannot read", &path))?;
        all.push_str("---\n");
        all.push_str(text.trim_start_matches("---\n"));
        all.push('\n');
    }
    let dest = step.staged.join(CRDS);
    fs::write(&dest, all).map_err(io_err("cannot write", &dest))
}

/// The controller manager's `Configuration` (config.kueue.x-k8s.io/v1beta2).
fn configuration(launch: &Launch) -> String {
    format!(
        "apiVersion: config.kueue.x-k8s.io/v1beta2\n\
         kind: Configuration\n\
         namespace: kueue-system\n\
         manageJobsWithoutQueueName: false\n\
         leaderElection:\n  leaderElect: false\n\
         internalCertManagement:\n  enable: false\n\
         webhook:\n  host: 127.0.0.1\n  port: {port}\n  certDir: {certs}\n\
         metrics:\n  bindAddress: \"0\"\n\
         health:\n  healthProbeBindAddress: 127.0.0.1:{health}\n\
         integrations:\n  frameworks: [\"batch/job\"]\n",
        port = launch.webhook_port,
        certs = launch.cert_dir.display(),
        health = launch.health_port,
    )
}

fn launch(launch: &Launch) -> super::LaunchFiles {
    let config = launch.dir.join("config.yaml");
    (
        vec![("config.yaml", configuration(launch))],
        vec![
            format!("--kubeconfig={}", launch.kubeconfig.display()),
            format!("--config={}", config.display()),
            "--feature-gates=VisibilityOnDemand=false".into(),
            "--zap-log-level=info".into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_file_pins_the_version() {
        assert!(super::GO_MOD.contains(&format!("sigs.k8s.io/kueue {}", crate::versions::KUEUE)));
    }
}
