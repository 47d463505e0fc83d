//! Shared helpers of the cross-crate integration tests in `tests/tests/`: the behaviour that
//! only shows when several crates meet a real API server (GPU pre-check against the real
//! kube-scheduler, render → submit → watch, agent against the fake W&B).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

/// Where the scheduler put a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// Bound to this node.
    Bound(String),
    /// `PodScheduled=False` with reason `Unschedulable`; the scheduler's message.
    Unschedulable(String),
}

/// Waits until the scheduler has decided about `name`: bound, or marked unschedulable.
pub async fn wait_scheduled(pods: &Api<Pod>, name: &str, deadline: Duration) -> Result<Scheduled> {
    let started = Instant::now();
    loop {
        let pod = pods
            .get(name)
            .await
            .with_context(|| format!("reading pod {name}"))?;
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            return Ok(Scheduled::Bound(node));
        }
        let unschedulable = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            });
        if let Some(condition) = unschedulable {
            return Ok(Scheduled::Unschedulable(
                condition.message.clone().unwrap_or_default(),
            ));
        }
        if started.elapsed() > deadline {
            bail!("pod {name} was neither bound nor marked unschedulable within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every node and every pod of the cluster: the inventory the GPU pre-check reads.
pub async fn inventory(client: &kube::Client) -> Result<(Vec<Node>, Vec<Pod>)> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing nodes")?;
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing pods")?;
    Ok((nodes.items, pods.items))
}

/// Waits until every node is `Ready` and carries no `not-ready`/`unreachable` taint, so a
/// comparison with the scheduler does not race the node lifecycle controller at startup.
pub async fn wait_nodes_settled(client: &kube::Client, deadline: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let (nodes, _) = inventory(client).await?;
        let settled = !nodes.is_empty()
            && nodes.iter().all(|node| {
                let ready = node
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                let transient_taint = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|t| {
                        t.key == "node.kubernetes.io/not-ready"
                            || t.key == "node.kubernetes.io/unreachable"
                    });
                ready && !transient_taint
            });
        if settled {
            return Ok(());
        }
        if started.elapsed() > deadline {
            bail!("nodes did not become Ready without transient taints within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
