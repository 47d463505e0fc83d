//! Which pods belong to which workload.
//!
//! A run id alone cannot tell attempts apart: a preemption requeue keeps the run id while the
//! old workload lives on until its TTL, so its evicted pods would feed the new attempt. The
//! runner therefore stamps every pod template of the workload it creates with
//! [`WORKLOAD_LABEL`] set to the workload's name (unique in its namespace, DNS-1123 and at
//! most 63 characters, so always a valid label value), and selects pods by that label
//! alone. It works the same for every kind (batch Job, JobSet's child Jobs, Volcano tasks,
//! Kubeflow replicas), without following owner chains through intermediate objects.

use rlaunch_model::labels;
use serde_json::{Value, json};

use crate::api::RunRef;

/// Label on every pod template of a workload the runner created: the workload's name.
pub const WORKLOAD_LABEL: &str = "rlaunch.dev/workload";

/// Set [`WORKLOAD_LABEL`] on every pod template (any `template` whose `spec` has
/// `containers`) in `manifest`.
pub(crate) fn stamp_pod_templates(manifest: &mut Value, workload: &str) {
    match manifest {
        Value::Object(map) => {
            if let Some(template) = map.get_mut("template")
                && template.pointer("/spec/containers").is_some()
                && let Some(template) = template.as_object_mut()
            {
                let metadata = template.entry("metadata").or_insert_with(|| json!({}));
                if let Some(metadata) = metadata.as_object_mut() {
                    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
                    if let Some(labels) = labels.as_object_mut() {
                        labels.insert(WORKLOAD_LABEL.to_owned(), json!(workload));
                    }
                }
            }
            map.values_mut()
                .for_each(|item| stamp_pod_templates(item, workload));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| stamp_pod_templates(item, workload)),
        _ => {}
    }
}

/// Label selector of the pods of `run`.
pub(crate) fn pod_selector(run: &RunRef) -> String {
    format!("{WORKLOAD_LABEL}={}", run.name)
}

/// The workload a pod belongs to, from its labels.
pub(crate) fn workload_of(pod_labels: &std::collections::BTreeMap<String, String>) -> Option<&str> {
    pod_labels.get(WORKLOAD_LABEL).map(String::as_str)
}

/// A name for a workload that only has `generateName`, so its pods can be labelled before
/// the API server names it: the prefix plus five random characters, as the API server does.
pub(crate) fn name_from_prefix(prefix: &str, run_id: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(run_id.as_bytes());
    let mut value = hasher.finish();
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut suffix = String::new();
    for _ in 0..5 {
        let index = usize::try_from(value % ALPHABET.len() as u64).unwrap_or(0);
        suffix.push(char::from(ALPHABET[index]));
        value /= ALPHABET.len() as u64;
    }
    let mut prefix = prefix.to_owned();
    prefix.truncate(63 - suffix.len());
    format!("{prefix}{suffix}")
}

/// Give a workload manifest a name (if it only has `generateName`) and label its pod
/// templates; returns the name.
pub(crate) fn prepare_workload(manifest: &mut Value) -> Option<String> {
    let metadata = manifest.get_mut("metadata")?.as_object_mut()?;
    let name = match metadata.get("name").and_then(Value::as_str) {
        Some(name) => name.to_owned(),
        None => {
            let prefix = metadata.get("generateName").and_then(Value::as_str)?;
            let run_id = metadata
                .get("labels")
                .and_then(|l| l.get(labels::RUN_ID))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = name_from_prefix(prefix, run_id);
            metadata.remove("generateName");
            metadata.insert("name".to_owned(), json!(name));
            name
        }
    };
    stamp_pod_templates(manifest, &name);
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_template_is_stamped_and_generate_name_becomes_a_name() {
        let mut manifest = json!({
            "metadata": {"generateName": "run-ent-proj-", "labels": {labels::RUN_ID: "abc"}},
            "spec": {"replicatedJobs": [{"template": {"spec": {"template": {
                "spec": {"containers": [{"name": "c"}]}}}}}],
                "tasks": [{"template": {"metadata": {"labels": {"x": "y"}},
                    "spec": {"containers": []}}}]}
        });
        let name = prepare_workload(&mut manifest).unwrap();
        assert!(name.starts_with("run-ent-proj-") && name.len() == "run-ent-proj-".len() + 5);
        assert_eq!(manifest["metadata"]["name"], json!(name));
        assert!(manifest["metadata"].get("generateName").is_none());
        let inner = &manifest["spec"]["replicatedJobs"][0]["template"]["spec"]["template"];
        assert_eq!(inner["metadata"]["labels"][WORKLOAD_LABEL], json!(name));
        let task = &manifest["spec"]["tasks"][0]["template"]["metadata"]["labels"];
        assert_eq!(task, &json!({"x": "y", WORKLOAD_LABEL: name}));
        // The JobSet's Job template has no containers: not a pod template.
        assert!(
            manifest["spec"]["replicatedJobs"][0]["template"]
                .get("metadata")
                .is_none()
        );
    }
}
