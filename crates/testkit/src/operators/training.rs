//! The Kubeflow training-operator (`github.com/kubeflow/training-operator`): its own
//! PyTorchJob controller and validating webhook, wired by `assets/go/training-operator/
//! main.go` (upstream's `main` without the certificate rotator, which it cannot turn off),
//! with only the PyTorchJob scheme enabled: the other kinds' CRDs are not installed, and
//! their controllers would wait for them forever.

use std::fs;

use super::{Launch, Spec, copy_from_module};
use crate::servers::build::{Recipe, Step, go_build};
use crate::{Result, io_err, versions};

const GO_MOD: &str = include_str!("../../assets/go/training-operator/go.mod");
const GO_SUM: &str = include_str!("../../assets/go/training-operator/go.sum");
const MAIN: &str = include_str!("../../assets/go/training-operator/main.go");
/// Bump when the recipe changes in a way that needs a fresh build.
const RECIPE: u32 = 1;
const MODULE: &str = "github.com/kubeflow/training-operator";
const WEBHOOKS: &str = "webhooks.yaml";

pub(super) static SPEC: Spec = Spec {
    name: "training-operator",
    recipe,
    binary: "training-operator",
    launch,
    webhooks: Some(WEBHOOKS),
    webhook_resources: &[("kubeflow.org", "pytorchjobs")],
    crds: None,
};

fn recipe() -> Recipe {
    Recipe {
        name: "training-operator",
        key: format!(
            "training-operator-{}-r{RECIPE}",
            versions::TRAINING_OPERATOR
        ),
        outputs: &["bin/training-operator", WEBHOOKS],
        build,
    }
}

fn build(step: &Step<'_>) -> Result<()> {
    let module = step.work.join("module");
    fs::create_dir_all(&module).map_err(io_err("cannot create the build directory", &module))?;
    let main = module.join("main.go");
    fs::write(&main, MAIN).map_err(io_err("cannot write", &main))?;
    go_build(step, (GO_MOD, GO_SUM), &["."])?;
    copy_from_module(
        step,
        (MODULE, versions::TRAINING_OPERATOR),
        "manifests/base/webhook/manifests.yaml",
        WEBHOOKS,
    )
}

fn launch(launch: &Launch) -> super::LaunchFiles {
    (
        Vec::new(),
        vec![
            format!("--kubeconfig={}", launch.kubeconfig.display()),
            format!(
                "--health-probe-bind-address=127.0.0.1:{}",
                launch.health_port
            ),
            format!("--webhook-server-port={}", launch.webhook_port),
            format!("--webhook-cert-dir={}", launch.cert_dir.display()),
            "--enable-scheme=pytorchjob".into(),
            "--controller-threads=4".into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_lock_file_pins_the_version() {
        assert!(super::GO_MOD.contains(&format!(
            "github.com/kubeflow/training-operator {}",
            crate::versions::TRAINING_OPERATOR
        )));
    }
}
