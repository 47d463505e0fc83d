//! Properties of the runner's classification of Pods, Jobs and custom resources.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use rlaunch_k8s_runner::fuzzing::{
    CustomKind, WorkloadSignal, classify_custom, classify_failed_create, classify_job,
    classify_object, classify_pod,
};
use rlaunch_render::ApiCoordinates;
use serde_json::Value;

/// Workload kinds an input may be classified as (the first byte picks one).
const KINDS: &[(&str, &str, &str)] = &[
    ("batch", "v1", "Job"),
    ("batch.volcano.sh", "v1alpha1", "Job"),
    ("kubeflow.org", "v1", "PyTorchJob"),
    ("jobset.x-k8s.io", "v1alpha2", "JobSet"),
    ("example.com", "v1", "Training"),
];

/// Runs one input: `[kind] object-json`. Kind past the workload kinds means a Pod; the
/// last means a `FailedCreate` event message.
pub fn run(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let choice = usize::from(kind) % (KINDS.len() + 2);
    if choice == KINDS.len() + 1 {
        return failed_create(text);
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    match KINDS.get(choice) {
        Some(&(group, version, kind)) => workload(group, version, kind, value),
        None => pod(value),
    }
}

fn workload(group: &str, version: &str, kind: &str, mut value: Value) {
    if let Some(map) = value.as_object_mut() {
        let api_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    let api = ApiCoordinates {
        group: group.to_owned(),
        version: version.to_owned(),
        kind: kind.to_owned(),
        plural: None,
    };
    let Some(signal) = classify_object(&api, value.clone()) else {
        return;
    };
    if group == "batch" {
        // The monitor and adoption read a Job the same way the typed classification does.
        if let Ok(job) = serde_json::from_value::<Job>(value.clone()) {
            assert_eq!(
                signal,
                classify_job(&job),
                "two readings of one Job disagree"
            );
            check_job(&job, &signal);
        }
    } else {
        assert_eq!(signal, classify_custom(CustomKind::of(group, kind), &value));
        if value.get("status").is_none() {
            assert_eq!(signal, WorkloadSignal::Pending, "no status, yet {signal:?}");
        }
    }
}

/// A Job is finished or failed only when a condition says so.
fn check_job(job: &Job, signal: &WorkloadSignal) {
    let conditions = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let says = |types: &[&str]| {
        conditions
            .iter()
            .any(|c| c.status == "True" && types.contains(&c.type_.as_str()))
    };
    match signal {
        WorkloadSignal::Finished => assert!(says(&["Complete", "SuccessCriteriaMet"])),
        WorkloadSignal::Failed { .. } => assert!(says(&["Failed", "FailureTarget"])),
        _ => {}
    }
}

fn pod(value: Value) {
    let Ok(pod) = serde_json::from_value::<Pod>(value) else {
        return;
    };
    let facts = classify_pod(&pod);
    let names: Vec<&str> = pod
        .status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|cs| cs.name.as_str())
        .collect();
    if let Some(blocked) = &facts.blocked {
        let key = blocked.key();
        let container = key.split_once('/').map_or("", |(_, c)| c);
        assert!(
            names.contains(&container),
            "blocked {key:?} names no container of the pod"
        );
    }
    if facts.terminated_failure.is_some() {
        assert!(
            !names.is_empty(),
            "a terminated failure without a container status"
        );
    }
    let _ = facts.is_running();
}

fn failed_create(message: &str) {
    let (reason, refusal) = classify_failed_create(message);
    assert!(["ExceededQuota", "LimitRange", "FailedCreate"].contains(&reason));
    assert!(
        message.contains(&refusal),
        "{refusal:?} is not part of {message:?}"
    );
}
