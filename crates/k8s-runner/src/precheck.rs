//! Live adapter for the schedulability pre-check: reads the cluster's nodes and pods and the
//! target namespace's ResourceQuotas and LimitRanges, and asks the pure
//! [`rlaunch_gpu::precheck()`] whether a rendered workload fits now, later or never.
//!
//! Nodes and non-terminal pods come from a [`ClusterView`]: two reflectors a runner starts
//! on its first pre-check and shares with every later one, so a launch does not list the
//! whole cluster. Quotas and LimitRanges (small, per namespace, their `used` changing with
//! every launch) are listed per pre-check. A verdict other than `FitsNow` is recomputed
//! from fresh listings before it holds a run back: the view may be a few milliseconds
//! behind (a pod that just ended or was deleted), a listing is not.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{LimitRange, Node, Pod, PodSpec, ResourceQuota};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, Resource};
use rlaunch_gpu::Verdict;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// How long a pre-check waits for the view's first listing of nodes and pods.
const VIEW_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pods that hold resources: the scheduler ignores terminal ones, and so does the check.
const NON_TERMINAL_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

fn list_error(kind: &str, scope: &str, source: kube::Error) -> Error {
    Error::List {
        kind: kind.to_owned(),
        scope: scope.to_owned(),
        selector: String::new(),
        source: Box::new(source),
    }
}

/// The cluster's nodes and non-terminal pods, kept current by two watches that run until
/// the view is dropped.
pub(crate) struct ClusterView {
    nodes: Reflected<Node>,
    pods: Reflected<Pod>,
}

impl ClusterView {
    /// Starts both watches; they list, then follow changes, re-listing after errors.
    pub(crate) fn start(client: &Client) -> Self {
        let pods = watcher::Config::default().fields(NON_TERMINAL_PODS);
        ClusterView {
            nodes: Reflected::start(Api::all(client.clone()), watcher::Config::default()),
            pods: Reflected::start(Api::all(client.clone()), pods),
        }
    }

    /// Nodes and pods as last seen, once both were listed.
    async fn snapshot(&self) -> Result<(Vec<Node>, Vec<Pod>)> {
        let nodes = self.nodes.snapshot("Node").await?;
        let pods = self.pods.snapshot("Pod").await?;
        Ok((nodes, pods))
    }
}

/// One reflector: its store, whether its first listing is in, the watch's latest error
/// (cleared by the next event), its task.
struct Reflected<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    /// Set once the first listing is in the store. A `watch` wakes every waiting pre-check;
    /// kube-runtime's `Store::wait_until_ready` woke only the last of several concurrent
    /// waiters, so a burst of first launches waited out the 30-s timeout but one.
    listed: watch::Receiver<bool>,
    failure: watch::Receiver<Option<Arc<watcher::Error>>>,
    task: JoinHandle<()>,
}

impl<K> Reflected<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    fn start(api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store();
        let (report, failure) = watch::channel(None);
        let (mark_listed, listed) = watch::channel(false);
        let events = watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| object.meta_mut().managed_fields = None)
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    mark_listed.send_if_modified(|listed| !std::mem::replace(listed, true));
                }
                let error = event.err().map(Arc::new);
                report.send_if_modified(|last| {
                    let changed = last.is_some() || error.is_some();
                    *last = error;
                    changed
                });
            }
        });
        Reflected {
            store,
            listed,
            failure,
            task,
        }
    }

    /// The store's objects once it is ready; the watch's error if it fails first.
    async fn snapshot(&self, kind: &str) -> Result<Vec<K>> {
        let mut failure = self.failure.clone();
        let mut listed = self.listed.clone();
        let ready = async {
            tokio::select! {
                biased;
                ready = listed.wait_for(|listed| *listed) => ready.map(|_| ()).map_err(|_| not_ready(kind)),
                failed = failure.wait_for(Option::is_some) => Err(match failed {
                    Ok(failed) => watch_failed(kind, failed.clone()),
                    Err(_) => not_ready(kind),
                }),
            }
        };
        tokio::time::timeout(VIEW_READY_TIMEOUT, ready)
            .await
            .map_err(|_| not_ready(kind))??;
        Ok(self
            .store
            .state()
            .iter()
            .map(|object| (**object).clone())
            .collect())
    }
}

/// The view was not loaded within the deadline (or its watch stopped, which only happens
/// when the runner is dropped).
fn not_ready(kind: &str) -> Error {
    Error::ViewNotReady {
        kind: kind.to_owned(),
        timeout_secs: VIEW_READY_TIMEOUT.as_secs(),
    }
}

fn watch_failed(kind: &str, source: Option<Arc<watcher::Error>>) -> Error {
    match source {
        Some(source) => Error::Watch {
            kind: kind.to_owned(),
            source,
        },
        None => not_ready(kind),
    }
}

impl<K: Resource + 'static> Drop for Reflected<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every node and every pod of the cluster, listed now: what the scheduler sees.
async fn cluster_capacity(client: &Client) -> Result<(Vec<Node>, Vec<Pod>)> {
    let scope = "all namespaces";
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| list_error("Node", scope, e))?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| list_error("Pod", scope, e))?;
    Ok((nodes.items, pods.items))
}

/// The ResourceQuotas and LimitRanges of `namespace`: what admission sees.
async fn namespace_admission(
    client: &Client,
    namespace: &str,
) -> Result<(Vec<ResourceQuota>, Vec<LimitRange>)> {
    let scope = format!("namespace {namespace}");
    let quotas = async {
        Api::<ResourceQuota>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| list_error("ResourceQuota", &scope, e))
    };
    let limit_ranges = async {
        Api::<LimitRange>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| list_error("LimitRange", &scope, e))
    };
    // Concurrently: one round trip on the launch's path instead of two.
    let (quotas, limit_ranges) = tokio::try_join!(quotas, limit_ranges)?;
    Ok((quotas.items, limit_ranges.items))
}

/// Whether `wanted`, created in `namespace`, fits now, later or never: over `view`, and
/// over fresh listings when the view's verdict is not `FitsNow`.
pub(crate) async fn precheck(
    client: &Client,
    view: &ClusterView,
    namespace: &str,
    wanted: &[PodSpec],
) -> Result<rlaunch_gpu::PreCheck> {
    // Admission first: its round trip also gives the view time to catch up.
    let (quotas, limit_ranges) = namespace_admission(client, namespace).await?;
    let (nodes, pods) = view.snapshot().await?;
    let check = rlaunch_gpu::precheck(&nodes, &pods, &quotas, &limit_ranges, wanted);
    if check.verdict == Verdict::FitsNow {
        return Ok(check);
    }
    let (nodes, pods) = cluster_capacity(client).await?;
    Ok(rlaunch_gpu::precheck(
        &nodes,
        &pods,
        &quotas,
        &limit_ranges,
        wanted,
    ))
}

/// The pods a rendered workload will ask for: each pod template once per replica
/// (`replicas` beside the template, as in PyTorchJob replica specs and Volcano tasks, or a
/// Job's `parallelism`), so a gang is checked as a whole. Templates that do not parse as a
/// pod spec are skipped (the API server will report them).
pub fn workload_pod_specs(manifest: &Value) -> Vec<PodSpec> {
    let mut out = Vec::new();
    collect(manifest, 1, &mut out);
    out
}

fn collect(value: &Value, multiplier: u64, out: &mut Vec<PodSpec>) {
    match value {
        Value::Object(map) => {
            let here = map
                .get("replicas")
                .or_else(|| map.get("parallelism"))
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 1024);
            let pod_spec = map
                .get("template")
                .and_then(|template| template.get("spec"))
                .filter(|spec| spec.get("containers").is_some());
            if let Some(spec) = pod_spec {
                if let Ok(pod_spec) = serde_json::from_value::<PodSpec>(spec.clone()) {
                    let count = multiplier.saturating_mul(here).min(1024);
                    out.extend(std::iter::repeat_n(pod_spec, count as usize));
                }
                return;
            }
            for (key, item) in map {
                // Replica counts scale what sits below them (their template or spec).
                let scale = if key == "template" || key == "spec" {
                    here
                } else {
                    1
                };
                collect(item, multiplier.saturating_mul(scale), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, multiplier, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn containers() -> Value {
        json!({"containers": [{"name": "c", "image": "i"}]})
    }

    #[test]
    fn job_counts_parallelism_and_custom_resources_count_replicas() {
        let job =
            json!({"kind": "Job", "spec": {"parallelism": 3, "template": {"spec": containers()}}});
        assert_eq!(workload_pod_specs(&job).len(), 3);
        let pytorch = json!({"kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "template": {"spec": containers()}},
            "Worker": {"replicas": 4, "template": {"spec": containers()}}}}});
        assert_eq!(workload_pod_specs(&pytorch).len(), 5);
        let volcano = json!({"kind": "Job", "spec": {"tasks": [
            {"name": "m", "replicas": 1, "template": {"spec": containers()}},
            {"name": "w", "replicas": 2, "template": {"spec": containers()}}]}});
        assert_eq!(workload_pod_specs(&volcano).len(), 3);
        let jobset = json!({"kind": "JobSet", "spec": {"replicatedJobs": [
            {"name": "w", "replicas": 2, "template": {"spec": {"parallelism": 4,
                "template": {"spec": containers()}}}}]}});
        assert_eq!(workload_pod_specs(&jobset).len(), 8);
        let plain = json!({"kind": "Job", "spec": {"template": {"spec": containers()}}});
        assert_eq!(workload_pod_specs(&plain).len(), 1);
    }
}
