//! Deleting a run's objects: the workload on cancel, and on every terminal state the per-run
//! API-key Secret and the additional services. Errors are collected, never raised over the
//! run's outcome; a 404 is success.

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::{Client, ResourceExt};
use rlaunch_model::labels;
use tracing::{info, warn};

use crate::api::RunRef;
use crate::error::{Error, Result, is_not_found};

/// What a cleanup deleted and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// `Kind ns/name` of every object deleted.
    pub deleted: Vec<String>,
    /// One line per failure (already logged).
    pub errors: Vec<String>,
}

/// Kinds additional services may have, searched by the auxiliary-resource label.
fn auxiliary_kinds() -> Vec<ApiResource> {
    let kind = |group: &str, version: &str, kind: &str, plural: &str| ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    };
    vec![
        kind("", "v1", "Service", "services"),
        kind("apps", "v1", "Deployment", "deployments"),
        kind("apps", "v1", "StatefulSet", "statefulsets"),
        kind("", "v1", "Pod", "pods"),
        kind("batch", "v1", "Job", "jobs"),
        kind("", "v1", "Secret", "secrets"),
        kind("", "v1", "ConfigMap", "configmaps"),
        kind(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
    ]
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

async fn delete_selected(
    client: &Client,
    namespace: &str,
    resource: &ApiResource,
    selector: &str,
    report: &mut CleanupReport,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let list = match api.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list,
        Err(error) if is_not_found(&error) => return,
        Err(error) => {
            let line = format!(
                "failed to list {} in {namespace} ({selector}): {error}",
                resource.plural
            );
            warn!("{line}");
            report.errors.push(line);
            return;
        }
    };
    for object in list.items {
        let name = object.name_any();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => report
                .deleted
                .push(format!("{} {namespace}/{name}", resource.kind)),
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                let line = format!(
                    "failed to delete {} {namespace}/{name}: {error}",
                    resource.kind
                );
                warn!("{line}");
                report.errors.push(line);
            }
        }
    }
}

/// Delete the run's own Secrets (per-run API key, pull secret: labelled with the run id and
/// `created-by=launch-agent`; the shared helm-mode Secret has no run-id label and is never
/// touched) and its additional services (labelled `wandb.ai/auxiliary-resource`).
pub(crate) async fn cleanup_run(client: &Client, run: &RunRef) -> CleanupReport {
    let mut report = CleanupReport::default();
    let secrets = ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&());
    let secret_selector = format!(
        "{}={},{}={}",
        labels::RUN_ID,
        run.run_id,
        labels::CREATED_BY,
        labels::CREATED_BY_VALUE
    );
    delete_selected(
        client,
        &run.namespace,
        &secrets,
        &secret_selector,
        &mut report,
    )
    .await;
    let aux_selector = format!(
        "{},{}={}",
        labels::AUXILIARY_RESOURCE,
        labels::RUN_ID,
        run.run_id
    );
    for resource in auxiliary_kinds() {
        delete_selected(
            client,
            &run.namespace,
            &resource,
            &aux_selector,
            &mut report,
        )
        .await;
    }
    if !report.deleted.is_empty() {
        info!(run = %run.object(), deleted = ?report.deleted, "cleaned up run objects");
    }
    report
}
