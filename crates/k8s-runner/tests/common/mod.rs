//! Shared helpers for the cluster tests: hand-built `Rendered` runs and polling.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use rlaunch_k8s_runner::{RunHandle, RunStatus, RunnerConfig, TrackerConfig};
use rlaunch_model::labels;
use rlaunch_render::{ApiCoordinates, ObjectRole, Rendered, RenderedObject};
use serde_json::{Value, json};

/// Generous deadline for anything the cluster has to do.
pub const DEADLINE: Duration = Duration::from_secs(180);

pub const IDENTITY: &str = "runner-tests";

/// Runner settings for tests: short grace periods, fast ticks.
/// The test cluster's client and a fresh namespace named after `prefix`.
pub async fn setup(prefix: &str) -> anyhow::Result<(kube::Client, rlaunch_testkit::TestNamespace)> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(prefix).await?;
    Ok((client, namespace))
}

pub fn config() -> RunnerConfig {
    RunnerConfig {
        tracker: TrackerConfig {
            start_timeout: Duration::from_secs(600),
            image_pull_grace: Duration::from_secs(5),
            verdict_settle: Duration::from_secs(2),
            crash_loop_budget: None,
        },
        readiness_poll: Duration::from_millis(500),
        ..RunnerConfig::default()
    }
}

/// What to put into a test run.
#[derive(Clone, Debug)]
pub struct JobRun {
    pub namespace: String,
    pub run_id: String,
    pub run_queue_item_id: Option<String>,
    /// kwok annotations for the pod template.
    pub pod_annotations: Vec<(&'static str, String)>,
    pub gpus: u32,
    pub restart_policy: &'static str,
    pub with_secret: bool,
    pub identity: Option<String>,
    /// Workload name; `run-<run id>` when unset.
    pub name: Option<String>,
    pub backoff_limit: i32,
    pub ttl_seconds_after_finished: i64,
    /// Extra annotations on the workload.
    pub workload_annotations: Vec<(&'static str, String)>,
}

impl JobRun {
    pub fn new(namespace: &str, run_id: &str) -> Self {
        JobRun {
            namespace: namespace.to_owned(),
            run_id: run_id.to_owned(),
            run_queue_item_id: Some(format!("UnVuUXVldWVJdGVtOi{run_id}")),
            pod_annotations: Vec::new(),
            gpus: 0,
            restart_policy: "Never",
            with_secret: true,
            identity: Some(IDENTITY.to_owned()),
            name: None,
            backoff_limit: 0,
            ttl_seconds_after_finished: 600,
            workload_annotations: Vec::new(),
        }
    }

    pub fn outcome(mut self, outcome: &str) -> Self {
        self.pod_annotations
            .push((rlaunch_testkit::annotations::OUTCOME, outcome.to_owned()));
        self
    }

    pub fn annotation(mut self, key: &'static str, value: &str) -> Self {
        self.pod_annotations.push((key, value.to_owned()));
        self
    }

    pub fn secret_name(&self) -> String {
        format!("wandb-api-key-{}", self.run_id)
    }

    pub fn job_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("run-{}", self.run_id))
    }

    fn workload_labels(&self) -> Value {
        let mut labels = json!({
            labels::RUN_ID: self.run_id,
            labels::MONITOR: "true",
        });
        if let Some(identity) = &self.identity {
            labels[labels::AGENT_IDENTITY] = json!(rlaunch_model::names::label_value(identity));
        }
        labels
    }

    fn workload_annotations(&self) -> Value {
        let mut annotations = match &self.run_queue_item_id {
            Some(rqi) => json!({ labels::RUN_QUEUE_ITEM_ANNOTATION: rqi }),
            None => json!({}),
        };
        for (key, value) in &self.workload_annotations {
            annotations[*key] = json!(value);
        }
        annotations
    }

    pub fn pod_template(&self) -> Value {
        let annotations: serde_json::Map<String, Value> = self
            .pod_annotations
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let mut limits = json!({"cpu": "100m", "memory": "1Gi"});
        let mut spec = json!({
            "restartPolicy": self.restart_policy,
            "containers": [{
                "name": "main",
                "image": "registry.example/rlaunch/train:1",
                "resources": {"limits": limits.clone()},
            }],
        });
        if self.gpus > 0 {
            limits["nvidia.com/gpu"] = json!(self.gpus.to_string());
            spec["containers"][0]["resources"]["limits"] = limits;
            spec["tolerations"] = json!([{
                "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"
            }]);
        }
        if self.with_secret {
            spec["containers"][0]["env"] = json!([{
                "name": "WANDB_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": self.secret_name(), "key": "password"}},
            }]);
        }
        json!({
            "metadata": {
                "labels": {labels::RUN_ID: self.run_id, labels::MONITOR: "true"},
                "annotations": annotations,
            },
            "spec": spec,
        })
    }

    pub fn secret_object(&self, key: &str) -> RenderedObject {
        RenderedObject {
            role: ObjectRole::ApiKeySecret { shared: false },
            api: ApiCoordinates {
                group: String::new(),
                version: "v1".into(),
                kind: "Secret".into(),
                plural: Some("secrets".into()),
            },
            manifest: json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/basic-auth",
                "metadata": {
                    "name": self.secret_name(),
                    "namespace": self.namespace,
                    "labels": {
                        labels::CREATED_BY: labels::CREATED_BY_VALUE,
                        labels::RUN_ID: self.run_id,
                    },
                },
                "data": {"password": base64::engine::general_purpose::STANDARD.encode(key)},
            }),
        }
    }

    pub fn job_object(&self) -> RenderedObject {
        let mut metadata = json!({
            "namespace": self.namespace,
            "labels": self.workload_labels(),
            "annotations": self.workload_annotations(),
        });
        if self.run_queue_item_id.is_some() {
            metadata["name"] = json!(self.job_name());
        } else {
            metadata["generateName"] = json!("run-");
        }
        RenderedObject {
            role: ObjectRole::Workload,
            api: ApiCoordinates {
                group: "batch".into(),
                version: "v1".into(),
                kind: "Job".into(),
                plural: Some("jobs".into()),
            },
            manifest: json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": metadata,
                "spec": {
                    "backoffLimit": self.backoff_limit,
                    "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                    "template": self.pod_template(),
                },
            }),
        }
    }

    /// A custom resource workload with the run's labels; `plural: None` forces discovery.
    pub fn custom_object(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        name: &str,
        spec: Value,
    ) -> RenderedObject {
        RenderedObject {
            role: ObjectRole::Workload,
            api: ApiCoordinates {
                group: group.into(),
                version: version.into(),
                kind: kind.into(),
                plural: None,
            },
            manifest: json!({
                "apiVersion": format!("{group}/{version}"),
                "kind": kind,
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": self.workload_labels(),
                    "annotations": self.workload_annotations(),
                },
                "spec": spec,
            }),
        }
    }

    pub fn rendered(&self) -> Rendered {
        let mut objects = Vec::new();
        if self.with_secret {
            objects.push(self.secret_object("test-api-key-0123456789"));
        }
        objects.push(self.job_object());
        rendered(&self.namespace, objects)
    }
}

pub fn rendered(namespace: &str, objects: Vec<RenderedObject>) -> Rendered {
    Rendered {
        namespace: namespace.to_owned(),
        objects,
        warnings: Vec::new(),
        agent_keys: Default::default(),
        provenance: Vec::new(),
    }
}

/// Wait until `check` holds for the handle's status, or fail with the last status.
pub async fn wait_status(
    handle: &mut RunHandle,
    what: &str,
    check: impl Fn(&RunStatus) -> bool,
) -> anyhow::Result<RunStatus> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let status = handle.status();
        if check(&status) {
            return Ok(status);
        }
        if status.state.is_terminal() {
            bail!("run became terminal without {what}: {status:?}");
        }
        match tokio::time::timeout_at(deadline, handle.changed()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                let status = handle.status();
                if check(&status) {
                    return Ok(status);
                }
                bail!("monitor stopped before {what}: {status:?}");
            }
            Err(_) => bail!("timed out waiting for {what}; last status {status:?}"),
        }
    }
}

/// Wait for a terminal status.
pub async fn wait_terminal(handle: &mut RunHandle) -> anyhow::Result<RunStatus> {
    tokio::time::timeout(DEADLINE, handle.wait_terminal())
        .await
        .with_context(|| {
            format!(
                "timed out waiting for a terminal state: {:?}",
                handle.status()
            )
        })
}

/// Wait until no object of kind `K` matching `selector` is left in `namespace`, driven by a
/// watch (every change re-checks; nothing polls).
pub async fn wait_none<K>(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
    what: &str,
) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), namespace);
    let mut stream = watcher::watcher(api, watcher::Config::default().labels(selector)).boxed();
    let mut names = std::collections::BTreeSet::new();
    let mut initial = std::collections::BTreeSet::new();
    let mut listed = false;
    let wait = async {
        while let Some(event) = stream.next().await {
            match event? {
                Event::Init => initial.clear(),
                Event::InitApply(object) => {
                    initial.insert(kube::ResourceExt::name_any(&object));
                }
                Event::InitDone => {
                    names = std::mem::take(&mut initial);
                    listed = true;
                }
                Event::Apply(object) => {
                    names.insert(kube::ResourceExt::name_any(&object));
                }
                Event::Delete(object) => {
                    names.remove(&kube::ResourceExt::name_any(&object));
                }
            }
            if listed && names.is_empty() {
                return anyhow::Ok(());
            }
        }
        bail!("the watch ended")
    };
    tokio::time::timeout(DEADLINE, wait)
        .await
        .with_context(|| format!("timed out waiting for {what}"))??;
    Ok(())
}

/// Wait until the named object satisfies `condition`, driven by a watch.
pub async fn wait_object<K>(
    api: kube::Api<K>,
    name: &str,
    what: &str,
    condition: impl kube::runtime::wait::Condition<K>,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(
        DEADLINE,
        kube::runtime::wait::await_condition(api, name, condition),
    )
    .await
    .with_context(|| format!("timed out waiting for {what}"))??;
    Ok(())
}

/// An additional service of `run`, labelled as the render engine labels them.
pub fn aux_object(
    run: &JobRun,
    (group, version, kind, plural): (&str, &str, &str, &str),
    mut manifest: Value,
    wait_timeout_secs: u64,
) -> RenderedObject {
    let aux = format!("aux-{}", run.run_id);
    manifest["metadata"]["namespace"] = json!(run.namespace);
    manifest["metadata"]["labels"] = json!({
        labels::RUN_ID: run.run_id,
        labels::CREATED_BY: labels::CREATED_BY_VALUE,
        labels::AUXILIARY_RESOURCE: aux,
    });
    if manifest.pointer("/spec/template/metadata/labels").is_some() {
        manifest["spec"]["template"]["metadata"]["labels"][labels::AUXILIARY_RESOURCE] = json!(aux);
    }
    RenderedObject {
        role: ObjectRole::AdditionalService {
            wait_for_ready: true,
            wait_timeout_secs,
        },
        api: ApiCoordinates {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: Some(plural.into()),
        },
        manifest,
    }
}

/// A one-replica Deployment plus a Service selecting it.
pub fn database(run: &JobRun, pod_outcome: &str, wait_timeout_secs: u64) -> Vec<RenderedObject> {
    let app = format!("db-{}", run.run_id);
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {
                    "labels": {"app": app},
                    "annotations": {rlaunch_testkit::annotations::OUTCOME: pod_outcome},
                },
                "spec": {"containers": [{"name": "db", "image": "registry.example/postgres:16"}]},
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app},
        "spec": {"selector": {"app": app}, "ports": [{"port": 5432}]},
    });
    vec![
        aux_object(
            run,
            ("apps", "v1", "Deployment", "deployments"),
            deployment,
            wait_timeout_secs,
        ),
        aux_object(
            run,
            ("", "v1", "Service", "services"),
            service,
            wait_timeout_secs,
        ),
    ]
}
