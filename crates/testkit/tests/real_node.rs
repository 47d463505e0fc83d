//! The real node: kubelet + containerd + runc run a busybox pod from the node's registry;
//! its real exit code and its log come back through the API server.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use rlaunch_testkit::node::{self, images};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);

fn busybox_pod(name: &str, script: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": node::node_selector(),
            "tolerations": [node::toleration()],
            "containers": [{
                "name": "main",
                "image": images::reference(images::BUSYBOX),
                "command": ["/bin/sh", "-c", script],
                "resources": { "limits": { "cpu": "100m", "memory": "64Mi" } },
            }],
        },
    }))?)
}

/// The pod reached a terminal phase (the kubelet writes the container's termination first).
fn terminated(pod: Option<&Pod>) -> bool {
    pod.and_then(|p| p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

#[tokio::test]
async fn a_busybox_pod_runs_for_real_and_reports_its_exit_code_and_log() -> Result<()> {
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    let info = cluster.real_node().await?;
    assert_eq!(info.node, node::NODE_NAME);
    let ns = cluster.namespace("real-node").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, ns.name());
    pods.create(
        &PostParams::default(),
        &busybox_pod(
            "exit-three",
            "echo hello from $(hostname); echo to-stderr >&2; exit 3",
        )?,
    )
    .await?;
    let waited = tokio::time::timeout(
        DEADLINE,
        await_condition(pods.clone(), "exit-three", terminated),
    )
    .await;
    let Ok(pod) = waited else {
        let pod = pods.get("exit-three").await?;
        bail!(
            "the pod did not terminate within {DEADLINE:?}: {:?}\n{}",
            pod.status,
            info.log_tails(40)
        );
    };
    let pod = pod?.context("the pod vanished")?;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node::NODE_NAME)
    );
    let container = &status.container_statuses.unwrap_or_default()[0];
    let term = container
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .context("terminated")?;
    assert_eq!(term.exit_code, 3);
    assert_eq!(term.reason.as_deref(), Some("Error"));
    assert!(container.image_id.contains("sha256:"), "{container:?}");
    let log = pods.logs("exit-three", &LogParams::default()).await?;
    assert_eq!(log, "hello from exit-three\nto-stderr\n");
    ns.cleanup().await;
    Ok(())
}
