//! The JobSet controller (`sigs.k8s.io/jobset`, its `main` at the module root): internal
//! certificate management off in its configuration file, webhooks on loopback.

use super::{Launch, Spec, copy_from_module};
use crate::Result;
use crate::servers::build::{Recipe, Step, go_build};
use crate::versions;

const GO_MOD: &str = include_str!("../../assets/go/jobset/go.mod");
const GO_SUM: &str = include_str!("../../assets/go/jobset/go.sum");
/// Bump when the recipe changes in a way that needs a fresh build.
const RECIPE: u32 = 1;
const MODULE: &str = "sigs.k8s.io/jobset";
const WEBHOOKS: &str = "webhooks.yaml";

pub(super) static SPEC: Spec = Spec {
    name: "jobset",
    recipe,
    binary: "jobset",
    launch,
    webhooks: Some(WEBHOOKS),
    webhook_resources: &[],
    crds: None,
};

fn recipe() -> Recipe {
    Recipe {
        name: "jobset",
        key: format!("jobset-{}-r{RECIPE}", versions::JOBSET),
        outputs: &["bin/jobset", WEBHOOKS],
        build,
    }
}

fn build(step: &Step<'_>) -> Result<()> {
    go_build(step, (GO_MOD, GO_SUM), &[MODULE])?;
    copy_from_module(
        step,
        (MODULE, versions::JOBSET),
        "config/components/webhook/manifests.yaml",
        WEBHOOKS,
    )
}

/// The controller's `Configuration` (config.jobset.x-k8s.io/v1alpha1).
fn configuration(launch: &Launch) -> String {
    format!(
        "apiVersion: config.jobset.x-k8s.io/v1alpha1\n\
         kind: Configuration\n\
         leaderElection:\n  leaderElect: false\n\
         internalCertManagement:\n  enable: false\n\
         webhook:\n  host: 127.0.0.1\n  port: {port}\n  certDir: {certs}\n\
         metrics:\n  bindAddress: \"0\"\n\
         health:\n  healthProbeBindAddress: 127.0.0.1:{health}\n",
        port = launch.webhook_port,
        certs = launch.cert_dir.display(),
        health = launch.health_port,
    )
}

fn launch(launch: &Launch) -> (Vec<(&'static str, String)>, Vec<String>) {
    let config = launch.dir.join("config.yaml");
    (
        vec![("config.yaml", configuration(launch))],
        vec![
            format!("--kubeconfig={}", launch.kubeconfig.display()),
            format!("--config={}", config.display()),
            "--zap-log-level=info".into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_file_pins_the_version() {
        assert!(super::GO_MOD.contains(&format!("sigs.k8s.io/jobset {}", crate::versions::JOBSET)));
    }
}
