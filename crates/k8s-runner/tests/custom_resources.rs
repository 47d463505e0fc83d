//! Custom-resource workloads without their controllers: testkit installs the operators' own
//! CRDs (`rlaunch_testkit::crds`), so every rendered body and every status written here
//! passes the real schema. Only Volcano's status is written by the test (through the status
//! subresource, in the shape Volcano writes): its scheduler and controllers
//! (`volcano.sh/volcano`) are not served by the Go module proxy, so they cannot run here.
//! PyTorchJob and JobSet statuses come from their real controllers, in `operators.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{JobRun, config, rendered, setup, wait_status, wait_terminal};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use rlaunch_k8s_runner::{Error, RunHandle, RunState, Runner};
use serde_json::{Value, json};

fn run(namespace: &str, run_id: &str) -> JobRun {
    let mut run = JobRun::new(namespace, run_id);
    run.with_secret = false;
    run
}

fn volcano_spec(run: &JobRun) -> Value {
    json!({
        "minAvailable": 1,
        "schedulerName": "volcano",
        "tasks": [{"name": "worker", "replicas": 1, "template": run.pod_template()}],
    })
}

fn pytorch_spec(run: &JobRun) -> Value {
    json!({
        "pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "restartPolicy": "Never", "template": run.pod_template()}
        }
    })
}

fn jobset_spec(run: &JobRun) -> Value {
    json!({
        "replicatedJobs": [{
            "name": "workers",
            "replicas": 1,
            "template": {"spec": {"template": run.pod_template()}},
        }]
    })
}

async fn submit(
    runner: &Runner,
    run: &JobRun,
    (group, version, kind): (&str, &str, &str),
    name: &str,
    spec: Value,
) -> anyhow::Result<RunHandle> {
    let object = run.custom_object(group, version, kind, name, spec);
    Ok(runner
        .submit(&rendered(&run.namespace, vec![object]))
        .await?
        .handle)
}

fn resource(api: &rlaunch_render::ApiCoordinates) -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: api.group.clone(),
        version: api.version.clone(),
        api_version: api.api_version(),
        kind: api.kind.clone(),
        plural: api.plural.clone().unwrap(),
    }
}

async fn patch_status(
    client: &kube::Client,
    handle: &RunHandle,
    status: Value,
) -> anyhow::Result<()> {
    let run = handle.run();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &run.namespace, &resource(&run.api));
    api.patch_status(
        &run.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

async fn delete(client: &kube::Client, handle: &RunHandle) -> anyhow::Result<()> {
    let run = handle.run();
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &run.namespace, &resource(&run.api));
    api.delete(&run.name, &DeleteParams::background()).await?;
    Ok(())
}

const VOLCANO: (&str, &str, &str) = ("batch.volcano.sh", "v1alpha1", "Job");
const PYTORCH: (&str, &str, &str) = ("kubeflow.org", "v1", "PyTorchJob");
const JOBSET: (&str, &str, &str) = ("jobset.x-k8s.io", "v1alpha2", "JobSet");

fn is_queued(status: &rlaunch_k8s_runner::RunStatus) -> bool {
    matches!(status.state, RunState::Queued { .. })
}

#[tokio::test]
async fn volcano_job_phases_map_to_states() -> anyhow::Result<()> {
    let (client, ns) = setup("volcano").await?;
    let runner = Runner::new(client.clone(), config());
    let run = run(&ns.name, "volc0001");
    let mut handle = submit(&runner, &run, VOLCANO, "volcano-a", volcano_spec(&run)).await?;
    assert_eq!(
        handle.run().api.plural.as_deref(),
        Some("jobs"),
        "plural found by discovery"
    );
    patch_status(&client, &handle, json!({"state": {"phase": "Pending"}})).await?;
    wait_status(&mut handle, "queued (Pending)", is_queued).await?;
    patch_status(&client, &handle, json!({"state": {"phase": "Inqueue"}})).await?;
    patch_status(&client, &handle, json!({"state": {"phase": "Running"}})).await?;
    wait_status(&mut handle, "running", |s| s.state == RunState::Running).await?;
    patch_status(&client, &handle, json!({"state": {"phase": "Completed"}})).await?;
    assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);

    let mut failing = submit(&runner, &run, VOLCANO, "volcano-b", volcano_spec(&run)).await?;
    patch_status(
        &client,
        &failing,
        json!({"state": {"phase": "Failed", "reason": "PodFailed", "message": "task worker failed"}}),
    )
    .await?;
    let status = wait_terminal(&mut failing).await?;
    assert!(
        matches!(&status.state, RunState::Failed(f) if f.message.contains("task worker failed")),
        "{status:?}"
    );

    let mut deleted = submit(&runner, &run, VOLCANO, "volcano-c", volcano_spec(&run)).await?;
    patch_status(&client, &deleted, json!({"state": {"phase": "Running"}})).await?;
    wait_status(&mut deleted, "running", |s| s.state == RunState::Running).await?;
    delete(&client, &deleted).await?;
    let status = wait_terminal(&mut deleted).await?;
    assert!(
        matches!(status.state, RunState::Stopped { .. }),
        "{status:?}"
    );
    ns.cleanup().await;
    Ok(())
}

/// Deleting the workload stops the run, whatever its kind (no status involved: the real
/// controllers' statuses are exercised in `operators.rs`).
#[tokio::test]
async fn a_deleted_pytorchjob_or_jobset_stops_the_run() -> anyhow::Result<()> {
    let (client, ns) = setup("crdelete").await?;
    let runner = Runner::new(client.clone(), config());
    let run = run(&ns.name, "crde0001");
    for (kind, name, spec) in [
        (PYTORCH, "pytorch-b", pytorch_spec(&run)),
        (JOBSET, "jobset-b", jobset_spec(&run)),
    ] {
        let mut deleted = submit(&runner, &run, kind, name, spec).await?;
        delete(&client, &deleted).await?;
        let status = wait_terminal(&mut deleted).await?;
        assert!(
            matches!(status.state, RunState::Stopped { .. }),
            "{}: {status:?}",
            kind.2
        );
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_kind_the_cluster_does_not_serve_is_a_clear_error() -> anyhow::Result<()> {
    let (client, ns) = setup("noserve").await?;
    let runner = Runner::new(client, config());
    let run = run(&ns.name, "nose0001");
    let object = run.custom_object("example.invalid", "v1", "NoSuchJob", "x", json!({}));
    let error = runner
        .submit(&rendered(&ns.name, vec![object]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::KindNotServed { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "kind NoSuchJob in group example.invalid is not served by this cluster: is the CRD installed?"
    );
    ns.cleanup().await;
    Ok(())
}
