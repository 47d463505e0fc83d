//! The live pre-check reads the target namespace's ResourceQuotas and LimitRanges and agrees
//! with the API server's own admission (LimitRanger and ResourceQuota) on several shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use k8s_openapi::api::core::v1::{LimitRange, Pod, PodSpec, ResourceQuota};
use kube::api::{Api, PostParams};
use rlaunch_gpu::Verdict;
use rlaunch_k8s_runner::{Runner, RunnerConfig};
use serde_json::{Value, json};

fn pod_spec(limits: Value, requests: Option<Value>) -> Value {
    let mut resources = json!({"limits": limits});
    if let Some(requests) = requests {
        resources["requests"] = requests;
    }
    json!({
        "restartPolicy": "Never",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "main", "image": "registry.example/train:1", "resources": resources}],
    })
}

/// What the API server says when the pod is created: admitted, or refused with a message.
async fn admitted(pods: &Api<Pod>, name: &str, spec: &Value) -> anyhow::Result<Result<(), String>> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name,
            "annotations": {rlaunch_testkit::annotations::OUTCOME: "run-forever"}},
        "spec": spec,
    }))?;
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 422 => {
            Ok(Err(status.message))
        }
        Err(other) => Err(other.into()),
    }
}

#[tokio::test]
async fn the_precheck_agrees_with_quota_and_limit_range_admission() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("admit").await?;
    let client = cluster.client().await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "gpu-quota"},
                "spec": {"hard": {"requests.nvidia.com/gpu": "8"}},
            }))?,
        )
        .await?;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), &ns.name);
    ranges
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "bounds"},
                "spec": {"limits": [{"type": "Container",
                    "max": {"memory": "4Gi"}, "min": {"cpu": "50m"}}]},
            }))?,
        )
        .await?;
    // Admission judges against the status the quota controller fills in.
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        kube::runtime::wait::await_condition(
            quotas.clone(),
            "gpu-quota",
            |q: Option<&ResourceQuota>| {
                q.and_then(|q| q.status.as_ref())
                    .and_then(|s| s.hard.as_ref())
                    .is_some_and(|hard| !hard.is_empty())
            },
        ),
    )
    .await??;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let runner = Runner::new(client.clone(), RunnerConfig::default());
    // A pod holding 6 of the quota's 8 GPUs.
    let holder = pod_spec(
        json!({"cpu": "100m", "memory": "1Gi", "nvidia.com/gpu": "6"}),
        None,
    );
    admitted(&pods, "holder", &holder).await?.unwrap();
    let gpu = |n: u32| {
        pod_spec(
            json!({"cpu": "100m", "memory": "1Gi", "nvidia.com/gpu": n.to_string()}),
            None,
        )
    };
    let shapes: Vec<(&str, Value, Verdict)> = vec![
        ("fits-the-quota", gpu(2), Verdict::FitsNow),
        ("above-what-is-left", gpu(4), Verdict::FitsLater),
        ("above-the-hard-total", gpu(16), Verdict::NeverFits),
        (
            "above-the-memory-maximum",
            pod_spec(json!({"cpu": "100m", "memory": "8Gi"}), None),
            Verdict::NeverFits,
        ),
        (
            "below-the-cpu-minimum",
            pod_spec(
                json!({"cpu": "100m", "memory": "1Gi"}),
                Some(json!({"cpu": "10m"})),
            ),
            Verdict::NeverFits,
        ),
    ];
    let mut disagreements = Vec::new();
    for (name, spec, expected) in &shapes {
        let typed: PodSpec = serde_json::from_value(spec.clone())?;
        let check = runner.precheck(&ns.name, &[typed]).await?;
        let admission = admitted(&pods, name, spec).await?;
        // Admitted ⇔ the pre-check says it fits now; refused ⇔ later or never.
        let agrees = admission.is_ok() == (check.verdict == Verdict::FitsNow);
        if !agrees || check.verdict != *expected {
            disagreements.push(format!(
                "{name}: pre-check {:?} ({}), admission {admission:?}, expected {expected:?}",
                check.verdict, check.message
            ));
        }
        if admission.is_ok() {
            pods.delete(name, &Default::default()).await?;
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    ns.cleanup().await;
    Ok(())
}
