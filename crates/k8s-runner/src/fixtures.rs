//! Typed status fixtures for unit tests: builders over k8s-openapi types.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// A pod of run `abc` with one container `main` (memory limit 1Gi).
pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        value: json!({
            "metadata": {"name": name, "labels": {"wandb.ai/run-id": "abc", "job-name": "job"}},
            "spec": {"containers": [{
                "name": "main",
                "image": "registry.example/train:1",
                "resources": {"limits": {"memory": "1Gi"}}
            }]},
            "status": {"phase": "Pending", "conditions": [], "containerStatuses": []}
        }),
    }
}

pub struct PodBuilder {
    value: Value,
}

impl PodBuilder {
    pub fn phase(mut self, phase: &str) -> Self {
        self.value["status"]["phase"] = json!(phase);
        self
    }

    pub fn condition(mut self, type_: &str, status: &str, reason: &str, message: &str) -> Self {
        if let Some(conditions) = self.value["status"]["conditions"].as_array_mut() {
            conditions.push(json!({
                "type": type_, "status": status, "reason": reason, "message": message
            }));
        }
        self
    }

    pub fn container_state(mut self, state: Value, last_state: Value) -> Self {
        if let Some(statuses) = self.value["status"]["containerStatuses"].as_array_mut() {
            statuses.push(json!({
                "name": "main",
                "image": "registry.example/train:1",
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": state,
                "lastState": last_state
            }));
        }
        self
    }

    pub fn waiting(self, reason: &str) -> Self {
        self.container_state(
            json!({"waiting": {"reason": reason, "message": format!("{reason} message")}}),
            json!({}),
        )
    }

    pub fn terminated(self, reason: &str, exit_code: i32) -> Self {
        self.container_state(
            json!({"terminated": {"reason": reason, "exitCode": exit_code}}),
            json!({}),
        )
    }

    /// Sets `restartCount` of the last container status.
    pub fn restarts(mut self, count: i32) -> Self {
        if let Some(last) = self.value["status"]["containerStatuses"]
            .as_array_mut()
            .and_then(|statuses| statuses.last_mut())
        {
            last["restartCount"] = json!(count);
        }
        self
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.value).unwrap()
    }
}

/// A Job with the given `spec` additions and conditions `(type, status, reason, message)`.
pub fn job(suspend: bool, ready: i32, conditions: &[(&str, &str, &str, &str)]) -> Job {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(t, s, r, m)| json!({"type": t, "status": s, "reason": r, "message": m}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "job"},
        "spec": {"suspend": suspend, "template": {"spec": {"containers": []}}},
        "status": {"ready": ready, "conditions": conditions}
    }))
    .unwrap()
}
