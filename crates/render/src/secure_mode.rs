//! Secure mode: the agent admin locks the pod shape, so a submitter cannot change what runs
//! in the pod beyond the image's own entrypoint and its arguments.
//!
//! Like W&B's agent's `secure_mode`, it refuses `hostPID`, `hostIPC`, `hostNetwork`, init
//! containers, a container `command` and `overrides.entry_point`. Unlike it, every pod spec of
//! the workload is checked (a custom resource's replicas too, not only
//! `spec.template.spec`), a host namespace set to `false` is not refused (it is the default),
//! every refused field is named in one error, and the admin allow-list does not relax them.
//! The check runs on the merged, macro-expanded body, before the agent adds its own init
//! container (code mount) or entrypoint (the job artifact's, which stays allowed).

use serde_json::Value;

use rlaunch_model::{FieldError, RunSpec};

use crate::security::truthy;
use crate::walk::{join, visit_objects};
use crate::workload::K8S;

const FIX: &str = "remove it: this agent runs in secure mode, which locks host namespaces, \
                   init containers and the container command";

/// Every field secure mode refuses in `body` (the workload's section) and the run spec.
pub(crate) fn check(body: &Value, spec: &RunSpec) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if spec.overrides.entry_point.is_some() {
        problems.push(FieldError::new(
            "runSpec.overrides.entry_point",
            "overriding the entrypoint is not allowed in secure mode",
            FIX,
        ));
    }
    visit_objects(body, K8S, &mut |object, path| {
        let is_pod_spec = object.get("containers").is_some_and(Value::is_array)
            || object.get("initContainers").is_some();
        if is_pod_spec {
            problems.extend(check_pod_spec(object, &path()));
        }
    });
    problems
}

fn check_pod_spec(pod_spec: &Value, path: &str) -> Vec<FieldError> {
    let mut problems = Vec::new();
    for key in ["hostPID", "hostIPC", "hostNetwork"] {
        if pod_spec.get(key).is_some_and(truthy) {
            problems.push(FieldError::new(
                join(path, key),
                format!("`{key}` is not allowed in secure mode"),
                FIX,
            ));
        }
    }
    let init = pod_spec.get("initContainers");
    if init.is_some_and(|init| !init.is_null() && init.as_array().is_none_or(|l| !l.is_empty())) {
        problems.push(FieldError::new(
            join(path, "initContainers"),
            "init containers are not allowed in secure mode",
            FIX,
        ));
    }
    let containers = pod_spec.get("containers").and_then(Value::as_array);
    for (i, container) in containers.into_iter().flatten().enumerate() {
        let command = container.get("command");
        if command.is_some_and(|c| !c.is_null() && c.as_array().is_none_or(|l| !l.is_empty())) {
            problems.push(FieldError::new(
                format!("{}[{i}].command", join(path, "containers")),
                "setting a container command is not allowed in secure mode",
                FIX,
            ));
        }
    }
    problems
}
