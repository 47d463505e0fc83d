//! Deleting a run's objects: the workload on cancel, and on every terminal state the per-run
//! API-key Secret and the additional services, by name. Errors are collected, never raised over the
//! run's outcome; a 404 is success.

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject};
use tracing::{info, warn};

use crate::api::{Coordinates, RunRef};
use crate::error::{Error, Result, is_not_found};

/// What a cleanup deleted and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// `Kind ns/name` of every object deleted.
    pub deleted: Vec<String>,
    /// One line per failure (already logged).
    pub errors: Vec<String>,
}

/// Delete the workload with background propagation (its pods go too). A missing workload
/// is fine, so cancel is idempotent.
pub(crate) async fn delete_workload(client: &Client, run: &RunRef) -> Result<bool> {
    let resource = run.api.api_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &run.namespace, &resource);
    match api.delete(&run.name, &DeleteParams::background()).await {
        Ok(_) => {
            info!(workload = %run.object(), kind = %run.api.kind, "workload deleted");
            Ok(true)
        }
        Err(error) if is_not_found(&error) => Ok(false),
        Err(source) => Err(Error::Delete {
            kind: run.api.kind.clone(),
            object: run.object(),
            source: Box::new(source),
        }),
    }
}

/// Delete the objects the run's submission created beside the workload (its per-run
/// API-key Secret and additional services, recorded on the workload in
/// [`crate::api::OWNED_OBJECTS_ANNOTATION`]), by name. The shared helm-mode Secret is never
/// recorded, so never deleted; nothing is listed, so nothing of another run or of an image
/// build is touched.
pub(crate) async fn cleanup_run(client: &Client, run: &RunRef) -> CleanupReport {
    let mut report = CleanupReport::default();
    for object in &run.owned {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &run.namespace, &object.api_resource());
        let label = format!("{} {}/{}", object.kind, run.namespace, object.name);
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => report.deleted.push(label),
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                let line = format!("failed to delete {label}: {error}");
                warn!("{line}");
                report.errors.push(line);
            }
        }
    }
    if !report.deleted.is_empty() {
        info!(run = %run.object(), deleted = ?report.deleted, "cleaned up run objects");
    }
    report
}
