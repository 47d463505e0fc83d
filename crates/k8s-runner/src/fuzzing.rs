//! Entry points for the fuzz targets in `fuzz/` (hidden; not part of the API): the pure
//! classification of Pods, Jobs and custom resources the monitor and adoption rely on.

use serde_json::Value;

pub use crate::classify::{
    Blocked, CustomKind, PodFacts, WorkloadSignal, classify_custom, classify_failed_create,
    classify_job, classify_pod,
};

/// What the monitor and adoption conclude from a workload object read from the API server
/// as JSON, or `None` when the JSON is not an object the client could have read.
pub fn classify_object(
    api: &rlaunch_render::ApiCoordinates,
    object: Value,
) -> Option<WorkloadSignal> {
    let object: kube::api::DynamicObject = serde_json::from_value(object).ok()?;
    Some(crate::classify::classify_workload(api, &object))
}
