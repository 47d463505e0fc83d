//! Agent-only keys: read from `resource_args.kubernetes`, then removed from the body.

use serde_json::{Map, Value};

use rlaunch_gpu::GpuRequest;
use rlaunch_model::{FieldError, json_kind};

use crate::output::AgentKeys;

/// Path prefix used in messages about the Kubernetes section.
pub(crate) const K8S: &str = "resource_args.kubernetes";

/// Keys the agent reads from `resource_args.kubernetes` and removes before submission.
///
/// W&B's agent leaves all of these but `builder` in the submitted body, where the API server
/// rejects or silently drops them; here every one is removed.
pub const AGENT_ONLY_KEYS: &[&str] = &[
    "configFile",
    "context",
    "namespace",
    "wait_for_ready",
    "wait_timeout",
    "group",
    "version",
    "builder",
    "plural",
    "gpu",
];

/// Agent-only values that are not part of [`AgentKeys`] but steer the render.
#[derive(Default)]
pub(crate) struct Extras {
    pub(crate) gpu: Option<GpuRequest>,
    pub(crate) namespace: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) plural: Option<String>,
}

/// Reads the agent-only keys, then removes every key of [`AGENT_ONLY_KEYS`] from `body`.
pub(crate) fn take_agent_keys(
    body: &mut Map<String, Value>,
) -> (AgentKeys, Extras, Vec<FieldError>) {
    let mut problems = Vec::new();
    let [config_file, context, namespace, group, version, plural, gpu] = [
        "configFile",
        "context",
        "namespace",
        "group",
        "version",
        "plural",
        "gpu",
    ]
    .map(|key| string_key(body, key, &mut problems));
    let agent_keys = AgentKeys {
        config_file,
        context,
        wait_for_ready: wait_for_ready(body.get("wait_for_ready"), &mut problems),
        wait_timeout_secs: wait_timeout(body.get("wait_timeout"), &mut problems),
    };
    let extras = Extras {
        gpu: gpu_key(gpu, &mut problems),
        namespace,
        group,
        version,
        plural,
    };
    for key in AGENT_ONLY_KEYS {
        body.remove(*key);
    }
    (agent_keys, extras, problems)
}

fn string_key(
    body: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<FieldError>,
) -> Option<String> {
    match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(FieldError::new(
                format!("{K8S}.{key}"),
                format!("must be a string, found {}", json_kind(other)),
                format!("set `{key}` to a string or remove it"),
            ));
            None
        }
    }
}

fn gpu_key(text: Option<String>, problems: &mut Vec<FieldError>) -> Option<GpuRequest> {
    match text?.parse::<GpuRequest>() {
        Ok(request) => Some(request),
        Err(error) => {
            problems.push(FieldError::new(
                format!("{K8S}.gpu"),
                error.to_string(),
                "write the request like `4xA100-80GB`, `H100`, `nvidia.com/gpu=2` or `2xL4,shm=16Gi`",
            ));
            None
        }
    }
}

fn wait_for_ready(value: Option<&Value>, problems: &mut Vec<FieldError>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            problems.push(FieldError::new(
                format!("{K8S}.wait_for_ready"),
                format!("must be true or false, found {}", json_kind(other)),
                "set `wait_for_ready: true` or `false`",
            ));
            true
        }
    }
}

fn wait_timeout(value: Option<&Value>, problems: &mut Vec<FieldError>) -> u64 {
    match value {
        None | Some(Value::Null) => 300,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(300),
        Some(other) => {
            problems.push(FieldError::new(
                format!("{K8S}.wait_timeout"),
                format!("must be a whole number of seconds, found {other}"),
                "set `wait_timeout` to seconds, e.g. 300",
            ));
            300
        }
    }
}
