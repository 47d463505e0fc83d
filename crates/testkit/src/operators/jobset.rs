//! The JobSet controller (`sigs.k8s.io/jobset`, its `main` at the module root): internal
//! certificate management off in its configuration file, webhooks on loopback.

use std::fs;

use serde_json::Value;

use super::{Launch, Spec};
use crate::servers::build::{Recipe, Step, go_build};
use crate::versions;
use crate::{Result, io_err};

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
    let webhook_dir =
        crate::crds::module_dir(MODULE, versions::JOBSET).join("config/components/webhook");
    let read = |name: &str| {
        let path = webhook_dir.join(name);
        fs::read_to_string(&path).map_err(io_err("cannot read JobSet's webhook manifests", &path))
    };
    let mut docs = super::split_documents("jobset", &read("manifests.yaml")?)?;
    // The kustomize patches of the release: the pod webhooks only see JobSet's pods.
    for (kind, patch) in [
        (
            "MutatingWebhookConfiguration",
            "patches/mutating-patch.yaml",
        ),
        (
            "ValidatingWebhookConfiguration",
            "patches/validating-patch.yaml",
        ),
    ] {
        let ops: Vec<Value> =
            serde_yaml_ng::from_str(&read(patch)?).map_err(|source| crate::Error::Yaml {
                what: format!("JobSet's {patch}"),
                source,
            })?;
        let doc = docs.iter_mut().find(|d| d["kind"] == kind).ok_or_else(|| {
            crate::Error::Internal(format!("JobSet's webhook manifests have no {kind}"))
        })?;
        for op in ops {
            apply_replace(doc, &op)?;
        }
    }
    let text = docs
        .iter()
        .map(|d| serde_json::to_string(d).map(|json| format!("---\n{json}\n")))
        .collect::<Result<String, _>>()
        .map_err(|e| crate::Error::Internal(format!("cannot encode JobSet's webhooks: {e}")))?;
    let dest = step.staged.join(WEBHOOKS);
    fs::write(&dest, text).map_err(io_err("cannot write", &dest))
}

/// One `{op: replace, path, value}` JSON-patch operation (the only kind the patches use).
fn apply_replace(doc: &mut Value, op: &Value) -> Result<()> {
    let (Some("replace"), Some(path)) = (op["op"].as_str(), op["path"].as_str()) else {
        return Err(crate::Error::Internal(format!(
            "unexpected patch operation {op}"
        )));
    };
    let target = doc.pointer_mut(path).ok_or_else(|| {
        crate::Error::Internal(format!("patch path {path} not in JobSet's webhooks"))
    })?;
    *target = op["value"].clone();
    Ok(())
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

fn launch(launch: &Launch) -> super::LaunchFiles {
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
