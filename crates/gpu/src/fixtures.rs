//! Builders for synthetic nodes and pods, e.g. `node("gpu-1").gpus(8).build()`.

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use serde_json::{Value, json};

/// A synthetic node: ready, 32 CPU, 256Gi memory, 110 pods, no GPUs until [`NodeBuilder::gpus`].
pub(crate) struct NodeBuilder {
    value: Value,
}

pub(crate) fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        value: json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        }),
    }
}

impl NodeBuilder {
    pub(crate) fn gpus(self, count: u32) -> Self {
        self.allocatable("nvidia.com/gpu", &count.to_string())
    }

    pub(crate) fn allocatable(mut self, resource: &str, quantity: &str) -> Self {
        self.value["status"]["allocatable"][resource] = json!(quantity);
        self
    }

    pub(crate) fn label(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["labels"][key] = json!(value);
        self
    }

    pub(crate) fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let taints = &mut self.value["spec"]["taints"];
        if taints.is_null() {
            *taints = json!([]);
        }
        let mut taint = json!({"key": key, "effect": effect});
        if !value.is_empty() {
            taint["value"] = json!(value);
        }
        taints.as_array_mut().unwrap().push(taint);
        self
    }

    pub(crate) fn cordoned(mut self) -> Self {
        self.value["spec"]["unschedulable"] = json!(true);
        self
    }

    pub(crate) fn ready(mut self, status: &str) -> Self {
        self.value["status"]["conditions"][0]["status"] = json!(status);
        self
    }

    pub(crate) fn build(self) -> Node {
        serde_json::from_value(self.value).unwrap()
    }
}

/// A pod bound to `node` requesting `gpus` GPUs and 1 CPU, in `phase`.
pub(crate) fn running_pod(node: &str, gpus: u32, phase: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("running-{node}-{gpus}"), "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "main", "resources": {
            "limits": {"nvidia.com/gpu": gpus.to_string()},
            "requests": {"nvidia.com/gpu": gpus.to_string(), "cpu": "1"}}}]},
        "status": {"phase": phase}
    }))
    .unwrap()
}

/// A pod spec asking for `gpus` GPUs (limits only, as rendered) and tolerating the GPU taint.
pub(crate) fn gpu_pod(gpus: u32) -> PodSpec {
    pod_spec(json!({
        "containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    }))
}

pub(crate) fn pod_spec(value: Value) -> PodSpec {
    serde_json::from_value(value).unwrap()
}
