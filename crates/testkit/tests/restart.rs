//! `restart_apiserver` in a test binary of its own (it would disturb the other tests of a
//! shared cluster): objects survive in etcd and the same kubeconfig works afterwards. It
//! uses `private_cluster()`, so it restarts a cluster of its own even when `KUBECONFIG`
//! names a shared one.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;

#[tokio::test]
async fn apiserver_restarts_on_the_same_port_and_keeps_data() -> Result<()> {
    let cluster = rlaunch_testkit::private_cluster().await?;
    assert!(
        cluster.control_plane().is_some(),
        "private_cluster() must start a cluster of this process"
    );
    let ns = cluster.namespace("restart").await?;
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await?, &ns.name);
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "before" }, "data": { "k": "v" }
    }))?;
    cms.create(&PostParams::default(), &cm).await?;

    cluster.restart_apiserver().await?;

    // A fresh client with the same kubeconfig reaches the restarted apiserver.
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await?, &ns.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    let back = loop {
        match cms.get("before").await {
            Ok(cm) => break cm,
            Err(e) if Instant::now() > deadline => {
                bail!("configmap not readable after restart: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    assert_eq!(
        back.data.unwrap_or_default().get("k").map(String::as_str),
        Some("v")
    );
    ns.cleanup().await;
    Ok(())
}
