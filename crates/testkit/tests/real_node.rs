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
    // stdout and stderr reach the container log through separate pipes: their relative
    // order is not kept, so compare the lines as a set.
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["hello from exit-three", "to-stderr"], "{log:?}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn the_trainer_image_calls_the_fake_wandb_like_wandb_init_and_exits_with_its_code()
-> Result<()> {
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    let info = cluster.real_node().await?;
    // The fake listens on the node's bridge address, which the pod reaches.
    let listener = tokio::net::TcpListener::bind((info.host_ip.as_str(), 0)).await?;
    let fake = rlaunch_wandb_fake::FakeWandb::serve_on(listener, Default::default()).await?;
    let ns = cluster.namespace("trainer").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, ns.name());
    let mut pod = busybox_pod("trainer", "unused")?;
    let container = &mut pod.spec.as_mut().context("spec")?.containers[0];
    container.image = Some(images::reference(images::TRAINER));
    container.command = None;
    container.env = Some(serde_json::from_value(json!([
        {"name": "WANDB_BASE_URL", "value": fake.base_url},
        {"name": "WANDB_API_KEY", "value": rlaunch_wandb_fake::FAKE_API_KEY},
        {"name": "WANDB_ENTITY", "value": rlaunch_wandb_fake::FAKE_ENTITY},
        {"name": "WANDB_PROJECT", "value": "trainer-test"},
        {"name": "WANDB_RUN_ID", "value": "run0001"},
        {"name": "TRAINER_EXIT_CODE", "value": "4"},
    ]))?);
    pods.create(&PostParams::default(), &pod).await?;
    let waited = tokio::time::timeout(
        DEADLINE,
        await_condition(pods.clone(), "trainer", terminated),
    )
    .await;
    let Ok(pod) = waited else {
        bail!("the trainer did not terminate: {}", info.log_tails(40));
    };
    let pod = pod?.context("the pod vanished")?;
    let log = pods.logs("trainer", &LogParams::default()).await?;
    let code = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|cs| cs.into_iter().next())
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
        .map(|t| t.exit_code);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("trainer: step 3\n"), "{log}");
    assert!(log.contains("\"inserted\":true"), "{log}");
    let run = fake
        .run(rlaunch_wandb_fake::FAKE_ENTITY, "trainer-test", "run0001")
        .context("the trainer's wandb.init created no run in the fake")?;
    assert_eq!(run.state, "running", "{run:?}");
    ns.cleanup().await;
    Ok(())
}
