//! Live adapter for the schedulability pre-check: reads the cluster's nodes and pods and the
//! target namespace's ResourceQuotas and LimitRanges, and asks the pure
//! [`rlaunch_gpu::precheck()`] whether a rendered workload fits now, later or never.

use k8s_openapi::api::core::v1::{LimitRange, Node, Pod, PodSpec, ResourceQuota};
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::error::{Error, Result};

fn list_error(kind: &str, scope: &str, source: kube::Error) -> Error {
    Error::List {
        kind: kind.to_owned(),
        scope: scope.to_owned(),
        selector: String::new(),
        source: Box::new(source),
    }
}

/// Every node and every pod of the cluster: what the scheduler sees.
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
    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| list_error("ResourceQuota", &scope, e))?;
    let limit_ranges = Api::<LimitRange>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map_err(|e| list_error("LimitRange", &scope, e))?;
    Ok((quotas.items, limit_ranges.items))
}

/// Whether `wanted`, created in `namespace`, fits now, later or never.
pub(crate) async fn precheck(
    client: &Client,
    namespace: &str,
    wanted: &[PodSpec],
) -> Result<rlaunch_gpu::PreCheck> {
    let (nodes, pods) = cluster_capacity(client).await?;
    let (quotas, limit_ranges) = namespace_admission(client, namespace).await?;
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
