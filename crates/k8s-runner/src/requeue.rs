//! What a preemption requeue needs, kept on the cluster so an adopted run can be requeued
//! after an agent restart: the run spec without any secret, and the resume count.
//!
//! It is an annotation on the workload ([`REQUEUE_ANNOTATION`]), not a per-run ConfigMap:
//! it is written in the same create as the workload (no second object, no extra RBAC, nothing
//! more to clean up, gone with the workload), and run specs are small. The record is bounded
//! to [`MAX_REQUEUE_BYTES`] (annotations share a 256 KiB budget per object); a larger one is
//! not kept, and [`crate::Submitted::requeue_kept`] says so.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Annotation holding a [`RequeueRecord`] as JSON.
pub const REQUEUE_ANNOTATION: &str = "rlaunch.dev/requeue";
/// Largest serialized [`RequeueRecord`] kept on a workload.
pub const MAX_REQUEUE_BYTES: usize = 64 * 1024;
/// Run-spec keys holding secrets, removed from the record wherever they appear.
const SECRET_KEYS: &[&str] = &["_wandb_api_key"];

/// What a preemption requeue needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequeueRecord {
    /// The popped run spec, without secrets.
    pub run_spec: Value,
    /// How many times the run was already resumed after a preemption.
    pub resume_count: u32,
    /// The item's priority, when the server told it (kept so the requeued item keeps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// The item's template variable values, when the server told them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_variables: Option<Value>,
}

impl RequeueRecord {
    /// A record of `run_spec` (secrets are removed here) and `resume_count`.
    pub fn new(run_spec: &Value, resume_count: u32) -> Self {
        let mut run_spec = run_spec.clone();
        strip_secrets(&mut run_spec);
        RequeueRecord {
            run_spec,
            resume_count,
            priority: None,
            template_variables: None,
        }
    }

    /// The annotation value, or `None` when it exceeds [`MAX_REQUEUE_BYTES`].
    pub(crate) fn to_annotation(&self) -> Option<String> {
        serde_json::to_string(self)
            .ok()
            .filter(|text| text.len() <= MAX_REQUEUE_BYTES)
    }

    /// Read back from the annotation value; `None` when absent or unreadable.
    pub(crate) fn from_annotation(text: Option<&String>) -> Option<Self> {
        serde_json::from_str(text?).ok()
    }
}

fn strip_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !SECRET_KEYS.contains(&key.as_str()));
            map.values_mut().for_each(strip_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_removed_and_the_size_is_bounded() {
        let spec = json!({"entity": "e", "_wandb_api_key": "k",
            "overrides": {"args": ["a"], "nested": {"_wandb_api_key": "k2"}}});
        let record = RequeueRecord::new(&spec, 2);
        let text = record.to_annotation().unwrap();
        assert!(!text.contains("_wandb_api_key"), "{text}");
        assert_eq!(RequeueRecord::from_annotation(Some(&text)), Some(record));
        let big = RequeueRecord::new(&json!({"blob": "x".repeat(MAX_REQUEUE_BYTES)}), 0);
        assert_eq!(big.to_annotation(), None);
    }

    #[test]
    fn priority_and_template_variables_round_trip_and_old_records_still_read() {
        let mut record = RequeueRecord::new(&json!({"entity": "e"}), 1);
        record.priority = Some(0);
        record.template_variables = Some(json!({"gpus": 2}));
        let text = record.to_annotation().unwrap();
        assert_eq!(RequeueRecord::from_annotation(Some(&text)), Some(record));
        let old = r#"{"runSpec":{"entity":"e"},"resumeCount":3}"#.to_owned();
        let read = RequeueRecord::from_annotation(Some(&old)).unwrap();
        assert_eq!((read.resume_count, read.priority), (3, None));
        assert_eq!(read.template_variables, None);
    }
}
