//! The operators' real controllers in a test cluster: the JobSet controller, the Kubeflow
//! training-operator and Kueue's controller manager, each built from its Go module at the
//! version pinned in [`crate::versions`] (lock files in `assets/go/<operator>/`), cached in
//! `$HOME/.cache/rlaunch/servers/<key>/` with the discipline of the test servers (a lock
//! file, complete or absent) and started on demand beside a cluster this process started
//! ([`crate::operator_cluster`]): tests that need no operator start as fast as before.
//!
//! - Each controller runs with the cluster's admin kubeconfig, no leader election, its
//!   health probe on a free loopback port (readiness is its own `/readyz`) and metrics off.
//! - Admission webhooks are served on loopback with testkit's PKI: the webhook server
//!   listens on `127.0.0.1:<free port>` with the API server's certificate (SAN
//!   `127.0.0.1`, signed by the cluster CA), and the webhook configurations the module
//!   ships are installed with `clientConfig.url` (and the CA bundle) instead of a Service.
//!   The operators' own certificate management (which wants an in-cluster Service name
//!   and a Secret) is off: JobSet and Kueue through their configuration files; the
//!   training-operator, whose `main` cannot turn it off, through a `main` of ours
//!   (`assets/go/training-operator/main.go`) that wires the operator's own controllers
//!   and webhooks exactly as upstream's does, minus the certificate rotator.
//! - A controller process lives in the process group of a watchdog that kills it when the
//!   test process exits ([`crate::servers::ServerProcess`]); one that exits or is not ready
//!   in time is an error with the last lines of its log, which tests propagate and fail on.
//!
//! Volcano has no controller here: `volcano.sh/volcano` (scheduler and controllers) is not
//! served by the module proxy, so Volcano tests keep writing its status themselves, on the
//! real schema.

mod jobset;
mod kueue;
mod training;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use serde::Deserialize as _;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::servers::ServerProcess;
use crate::servers::build::{self, Recipe};
use crate::support::free_ports;
use crate::{Error, Result, TestCluster, io_err};

/// Seconds a controller has to answer `/readyz` once started.
const READY_SECS: u64 = 90;

/// A controller testkit can run beside a test cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `sigs.k8s.io/jobset`: the JobSet controller (JobSets and their child Jobs).
    JobSet,
    /// `github.com/kubeflow/training-operator`: PyTorchJob.
    TrainingOperator,
    /// `sigs.k8s.io/kueue`: quota and admission of batch/v1 Jobs.
    Kueue,
}

impl Operator {
    /// Every operator, in the order `cargo xtask cluster build` builds them.
    pub const ALL: [Operator; 3] = [
        Operator::JobSet,
        Operator::TrainingOperator,
        Operator::Kueue,
    ];

    /// Short name (log files, progress lines, webhook configuration names).
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    fn index(self) -> usize {
        match self {
            Operator::JobSet => 0,
            Operator::TrainingOperator => 1,
            Operator::Kueue => 2,
        }
    }

    fn spec(self) -> &'static Spec {
        match self {
            Operator::JobSet => &jobset::SPEC,
            Operator::TrainingOperator => &training::SPEC,
            Operator::Kueue => &kueue::SPEC,
        }
    }
}

/// How one operator is built and started.
struct Spec {
    /// Short name.
    name: &'static str,
    /// The build recipe (a function: the key is formatted from the versions).
    recipe: fn() -> Recipe,
    /// The binary under the cache directory's `bin/`.
    binary: &'static str,
    /// Files to write into the launch directory, then the arguments.
    launch: fn(&Launch) -> LaunchFiles,
    /// The webhook manifests in the cache directory (`None`: the operator has none).
    webhooks: Option<&'static str>,
    /// The `(API group, resource)` pairs whose webhooks are installed (empty: all): the
    /// manifests also name kinds this test world does not serve.
    webhook_resources: &'static [(&'static str, &'static str)],
    /// CRDs of the operator's own kinds (multi-document YAML in the cache directory),
    /// installed before it starts; `None` when [`crate::crds`] already has them.
    crds: Option<&'static str>,
}

/// What a [`Spec`] starts with: files (name, text) for the launch directory, and arguments.
type LaunchFiles = (Vec<(&'static str, String)>, Vec<String>);

/// Where and how one controller process runs.
pub(crate) struct Launch {
    /// Directory for its configuration files (inside the cluster's state dir).
    pub dir: PathBuf,
    /// Directory holding `tls.crt` and `tls.key` for the webhook server.
    pub cert_dir: PathBuf,
    /// The admin kubeconfig of the cluster.
    pub kubeconfig: PathBuf,
    /// Loopback port of the webhook server.
    pub webhook_port: u16,
    /// Loopback port of the health probes (`/healthz`, `/readyz`).
    pub health_port: u16,
}

/// The cached build of `operator`: its installed directory (with `bin/`), built first if
/// the cache is cold. Blocking.
pub fn ensure_built(operator: Operator) -> Result<PathBuf> {
    build::ensure(&(operator.spec().recipe)())
}

/// A controller running beside a test cluster.
#[derive(Debug)]
pub struct OperatorProcess {
    operator: Operator,
    server: ServerProcess,
}

impl OperatorProcess {
    /// Which operator this is.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.server.log_path()
    }
}

/// The controllers this process started, one slot per [`Operator`] (an error is kept as
/// its message, so every later caller fails the same way).
static RUNNING: [OnceCell<std::result::Result<OperatorProcess, String>>; Operator::ALL.len()] =
    [const { OnceCell::const_new() }; Operator::ALL.len()];

/// `operator` running beside `cluster`, started on the first call in this process.
pub(crate) async fn ensure_running(
    operator: Operator,
    cluster: &'static TestCluster,
) -> Result<&'static OperatorProcess> {
    RUNNING[operator.index()]
        .get_or_init(|| async move {
            start(operator, cluster)
                .await
                .map_err(|e| crate::error_chain(&e))
        })
        .await
        .as_ref()
        .map_err(|msg| Error::StartFailed(format!("the {} controller: {msg}", operator.name())))
}

/// The `operator` this process started, if it did (for log tails in failure messages).
pub fn running(operator: Operator) -> Option<&'static OperatorProcess> {
    RUNNING[operator.index()]
        .get()
        .and_then(|r| r.as_ref().ok())
}

/// Builds `operator` if needed, starts it against `cluster` (which this process must have
/// started: the webhook server uses its PKI) and installs its webhook configurations once
/// it is ready.
pub(crate) async fn start(operator: Operator, cluster: &TestCluster) -> Result<OperatorProcess> {
    let started = Instant::now();
    let spec = operator.spec();
    let plane = cluster.control_plane().ok_or_else(|| {
        Error::Unsupported(format!(
            "the {} controller runs only beside a cluster this process started (rlaunch_testkit::operator_cluster), not one attached through KUBECONFIG",
            spec.name
        ))
    })?;
    let installed = tokio::task::spawn_blocking(move || ensure_built(operator))
        .await
        .map_err(|e| Error::Internal(format!("operator build task panicked: {e}")))??;
    let client = cluster.client().await?;
    if let Some(file) = spec.crds {
        let path = installed.join(file);
        let text =
            fs::read_to_string(&path).map_err(io_err("cannot read the cached CRDs", &path))?;
        let crds = split_documents(spec.name, &text)?;
        install_crds(&client, spec.name, &crds).await?;
    }
    let launch = prepare(spec.name, &plane.state_dir, &plane.kubeconfig)?;
    let server = spawn_ready(spec, &installed, &launch).await?;
    if let Some(file) = spec.webhooks {
        let path = installed.join(file);
        let text = fs::read_to_string(&path)
            .map_err(io_err("cannot read the cached webhook manifests", &path))?;
        let ca = fs::read_to_string(plane.state_dir.join("pki").join("ca.crt"))
            .map_err(io_err("cannot read the cluster CA", &plane.state_dir))?;
        let configs = webhook_configurations(spec, &text, &ca, launch.webhook_port)?;
        install_webhooks(&client, spec.name, configs).await?;
    }
    say(&format!(
        "testkit operators: {} ready in {:.1}s (log {})",
        spec.name,
        started.elapsed().as_secs_f32(),
        server.log_path().display()
    ));
    Ok(OperatorProcess { operator, server })
}

/// Writes the spec's files, starts the controller and waits for its `/readyz`.
async fn spawn_ready(spec: &Spec, installed: &Path, launch: &Launch) -> Result<ServerProcess> {
    let (files, args) = (spec.launch)(launch);
    for (name, text) in files {
        let path = launch.dir.join(name);
        fs::write(&path, text).map_err(io_err("cannot write", &path))?;
    }
    let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    let arg_refs: Vec<&std::ffi::OsStr> = args.iter().map(OsString::as_os_str).collect();
    let binary = installed.join("bin").join(spec.binary);
    let (kubeconfig, cert_dir) = (launch.kubeconfig.clone(), launch.cert_dir.clone());
    let mut server = ServerProcess::spawn(spec.name, &binary, &arg_refs, |cmd, _| {
        cmd.env("KUBECONFIG", &kubeconfig)
            .env("RLAUNCH_OPERATOR_CERT_DIR", &cert_dir);
    })?;
    let readyz = format!("http://127.0.0.1:{}/readyz", launch.health_port);
    server
        .wait_until(READY_SECS, |_| {
            let readyz = readyz.clone();
            async move { ready(&readyz).await.then_some(()) }
        })
        .await?;
    Ok(server)
}

/// The launch directory with the webhook certificate, and free loopback ports.
fn prepare(name: &str, state_dir: &Path, kubeconfig: &Path) -> Result<Launch> {
    let dir = state_dir.join("operators").join(name);
    let cert_dir = dir.join("certs");
    fs::create_dir_all(&cert_dir)
        .map_err(io_err("cannot create the operator directory", &cert_dir))?;
    let pki = state_dir.join("pki");
    for (from, to) in [("apiserver.crt", "tls.crt"), ("apiserver.key", "tls.key")] {
        let from = pki.join(from);
        fs::copy(&from, cert_dir.join(to))
            .map_err(io_err("cannot copy the webhook certificate", &from))?;
    }
    let ports = free_ports(2)?;
    Ok(Launch {
        dir,
        cert_dir,
        kubeconfig: kubeconfig.to_owned(),
        webhook_port: ports[0],
        health_port: ports[1],
    })
}

/// Whether `url` answers 200.
async fn ready(url: &str) -> bool {
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build()
    else {
        return false;
    };
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The non-empty documents of a multi-document YAML, as JSON values.
fn split_documents(name: &str, yaml: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = Value::deserialize(doc).map_err(|source| Error::Yaml {
            what: format!("the cached manifests of {name}"),
            source,
        })?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Applies `crds` (server-side apply) and waits until each is Established.
async fn install_crds(client: &kube::Client, name: &str, crds: &[Value]) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("rlaunch-testkit").force();
    let mut names = Vec::new();
    for crd in crds {
        let crd: CustomResourceDefinition = serde_json::from_value(crd.clone())
            .map_err(|e| Error::Internal(format!("a CRD of {name} does not parse: {e}")))?;
        let crd_name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&crd_name, &pp, &Patch::Apply(&crd))
            .await
            .map_err(|source| Error::Kube {
                step: format!("applying CRD {crd_name}"),
                source,
            })?;
        names.push(crd_name);
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(READY_SECS);
    for crd_name in names {
        loop {
            let crd = api.get(&crd_name).await.map_err(|source| Error::Kube {
                step: format!("reading CRD {crd_name}"),
                source,
            })?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("CRD {crd_name} of {name} to become Established"),
                    secs: READY_SECS,
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Whether a webhook's rules only name `(group, resource)` pairs of `keep` (every webhook
/// when `keep` is empty).
fn webhook_wanted(webhook: &Value, keep: &[(&str, &str)]) -> bool {
    if keep.is_empty() {
        return true;
    }
    let rules = webhook
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let strings = |rule: &Value, field: &str| -> Vec<String> {
        rule.get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    rules.iter().all(|rule| {
        strings(rule, "apiGroups").iter().all(|group| {
            strings(rule, "resources").iter().all(|resource| {
                let base = resource.split('/').next().unwrap_or_default();
                keep.iter().any(|(g, r)| g == group && *r == base)
            })
        })
    })
}

/// Every webhook configuration of the multi-document `yaml` (only the webhooks of
/// `spec.webhook_resources`), pointed at `https://127.0.0.1:<port><path>` with the
/// cluster CA, renamed `rlaunch-<name>-<kind>`.
fn webhook_configurations(spec: &Spec, yaml: &str, ca_pem: &str, port: u16) -> Result<Vec<Value>> {
    let name = spec.name;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let mut out = Vec::new();
    for mut value in split_documents(name, yaml)? {
        let Some(kind) = value.get("kind").and_then(Value::as_str).map(str::to_owned) else {
            continue;
        };
        value["metadata"] =
            serde_json::json!({ "name": format!("rlaunch-{name}-{}", kind.to_ascii_lowercase()) });
        let webhooks = value
            .get_mut("webhooks")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| Error::Internal(format!("{name}'s {kind} has no webhooks")))?;
        webhooks.retain(|w| webhook_wanted(w, spec.webhook_resources));
        for webhook in webhooks {
            let path = webhook
                .pointer("/clientConfig/service/path")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Internal(format!("a webhook of {name} has no service path")))?
                .to_owned();
            webhook["clientConfig"] = serde_json::json!({
                "url": format!("https://127.0.0.1:{port}{path}"),
                "caBundle": ca,
            });
        }
        out.push(value);
    }
    Ok(out)
}

async fn install_webhooks(client: &kube::Client, name: &str, configs: Vec<Value>) -> Result<()> {
    let pp = PatchParams::apply("rlaunch-testkit").force();
    for config in configs {
        let object_name = config["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let step = format!("installing the webhook configuration {object_name}");
        let kube_err = |source| Error::Kube {
            step: step.clone(),
            source,
        };
        match config["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
                api.patch(&object_name, &pp, &Patch::Apply(&config))
                    .await
                    .map_err(kube_err)?;
            }
            Some("ValidatingWebhookConfiguration") => {
                let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                api.patch(&object_name, &pp, &Patch::Apply(&config))
                    .await
                    .map_err(kube_err)?;
            }
            other => {
                return Err(Error::Internal(format!(
                    "unexpected kind {other:?} in the webhook manifests of {name}"
                )));
            }
        }
    }
    Ok(())
}

/// Copies `path` of the module `module@version` (downloaded into the module cache by the
/// build) into the staged cache directory as `to`.
pub(crate) fn copy_from_module(
    step: &build::Step<'_>,
    (module, version): (&str, &str),
    path: &str,
    to: &str,
) -> Result<()> {
    let from = crate::crds::module_dir(module, version).join(path);
    let dest = step.staged.join(to);
    fs::copy(&from, &dest).map_err(io_err("cannot copy from the module cache", &from))?;
    Ok(())
}

fn say(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_configurations_point_at_loopback_with_the_ca() {
        let yaml = "---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: validating-webhook-configuration\nwebhooks:\n- name: v.kb.io\n  clientConfig:\n    service:\n      name: webhook-service\n      namespace: system\n      path: /validate-x\n";
        let spec = Spec {
            name: "demo",
            webhook_resources: &[("batch", "jobs")],
            ..jobset::SPEC
        };
        let yaml = format!(
            "{yaml}  rules:\n  - apiGroups: [batch]\n    resources: [jobs]\n- name: other.kb.io\n  clientConfig:\n    service:\n      path: /other\n  rules:\n  - apiGroups: ['']\n    resources: [pods]\n"
        );
        let configs = webhook_configurations(&spec, &yaml, "PEM", 4443).unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(
            configs[0]["webhooks"].as_array().unwrap().len(),
            1,
            "the pods webhook is left out"
        );
        let config = &configs[0];
        assert_eq!(
            config["metadata"]["name"],
            "rlaunch-demo-validatingwebhookconfiguration"
        );
        assert_eq!(
            config["webhooks"][0]["clientConfig"],
            serde_json::json!({"url": "https://127.0.0.1:4443/validate-x", "caBundle": "UEVN"})
        );
    }
}
