//! The GPU pre-check agrees with the real kube-scheduler: for a set of request shapes on the
//! kwok GPU nodes, `FitsNow` ⇔ the pod is bound, and on an empty cluster `NeverFits` ⇔ the
//! pod stays Unschedulable. A filled cluster turns a fitting request into `FitsLater`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::api::{Api, DeleteParams, PostParams};
use rlaunch_gpu::{GpuRequest, RenderOptions, Verdict};
use rlaunch_k8s_runner::{Runner, RunnerConfig};
use rlaunch_tests::{Scheduled, wait_nodes_settled, wait_scheduled};
use serde_json::{Value, json};

/// Both tests compare against the cluster's free capacity, so they must not run at once.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn base_pod_spec() -> Value {
    json!({"restartPolicy": "Never", "containers": [{"name": "main", "image": "trainer:1",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]})
}

fn with_gpu(request: &str) -> Value {
    let mut pod_spec = base_pod_spec();
    let request: GpuRequest = request.parse().expect("valid request");
    rlaunch_gpu::apply_gpu_request(&mut pod_spec, &request, &RenderOptions::default())
        .expect("applies");
    pod_spec
}

fn raw(extra: Value) -> Value {
    let mut pod_spec = base_pod_spec();
    if let (Some(spec), Some(extra)) = (pod_spec.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            if key == "resources" {
                spec["containers"][0]["resources"] = value.clone();
            } else {
                spec.insert(key.clone(), value.clone());
            }
        }
    }
    pod_spec
}

fn gpu_toleration() -> Value {
    json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
}

async fn create_pod(pods: &Api<Pod>, name: &str, pod_spec: &Value, outcome: &str) -> Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {rlaunch_testkit::annotations::OUTCOME: outcome}},
        "spec": pod_spec,
    }))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating pod {name}"))?;
    Ok(())
}

async fn delete_and_wait(pods: &Api<Pod>, name: &str) -> Result<()> {
    pods.delete(name, &DeleteParams::background().grace_period(0))
        .await
        .ok();
    for _ in 0..150 {
        if pods.get_opt(name).await?.is_none() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("pod {name} was not deleted")
}

/// Pod shapes for the agreement check: GPU requests by grammar, raw limits, CPU, selectors.
fn shapes() -> Vec<(&'static str, Value)> {
    vec![
        ("2xa100", with_gpu("2xA100")),
        ("8xa100", with_gpu("8xA100-80GB")),
        ("16xa100", with_gpu("16xA100")),
        ("8xh100", with_gpu("8xH100")),
        ("4xh100-80gb-shm", with_gpu("4xH100-80GB,shm=64Gi")),
        ("1xl4", with_gpu("L4")),
        ("9xh100", with_gpu("9xH100")),
        (
            "any-gpu-no-toleration",
            raw(json!({"resources": {"limits": {"nvidia.com/gpu": "1"}}})),
        ),
        (
            "any-gpu-tolerated",
            raw(
                json!({"resources": {"limits": {"nvidia.com/gpu": "1"}}, "tolerations": gpu_toleration()}),
            ),
        ),
        (
            "cpu-small",
            raw(json!({"resources": {"requests": {"cpu": "2", "memory": "4Gi"}}})),
        ),
        (
            "cpu-too-big",
            raw(json!({"resources": {"requests": {"cpu": "500"}}})),
        ),
        (
            "amd",
            raw(
                json!({"resources": {"limits": {"amd.com/gpu": "1"}}, "tolerations": gpu_toleration()}),
            ),
        ),
        (
            "selector-miss",
            raw(json!({"nodeSelector": {"node.kubernetes.io/instance-type": "nope"}})),
        ),
        (
            "pinned-to-cpu-1",
            raw(json!({"nodeSelector": {"kubernetes.io/hostname": "cpu-1"}})),
        ),
    ]
}

/// Whether the scheduler binds each shape exactly when the pre-check says it fits now;
/// returns the disagreements and how many shapes were (bound, unschedulable).
async fn compare_with_scheduler(
    runner: &Runner,
    pods: &Api<Pod>,
    namespace: &str,
) -> Result<(Vec<String>, (u32, u32))> {
    let mut disagreements = Vec::new();
    let mut seen = (0, 0);
    for (name, pod_spec) in &shapes() {
        let typed: PodSpec = serde_json::from_value(pod_spec.clone())?;
        let check = runner.precheck(namespace, &[typed]).await?;
        create_pod(pods, name, pod_spec, "run-forever").await?;
        let scheduled = wait_scheduled(pods, name, Duration::from_secs(60)).await?;
        let agrees = matches!(
            (&check.verdict, &scheduled),
            (Verdict::FitsNow, Scheduled::Bound(_))
                | (Verdict::NeverFits, Scheduled::Unschedulable(_))
        );
        match scheduled {
            Scheduled::Bound(_) => seen.0 += 1,
            Scheduled::Unschedulable(_) => seen.1 += 1,
        }
        if !agrees {
            disagreements.push(format!(
                "{name}: precheck {:?} ({}), scheduler {scheduled:?}",
                check.verdict, check.message
            ));
        }
        delete_and_wait(pods, name).await?;
    }
    Ok((disagreements, seen))
}

/// Fills both A100 nodes: an A100 request that fits an empty cluster now fits only later,
/// and the scheduler keeps it pending for lack of GPUs.
async fn full_a100_nodes_mean_fits_later(
    runner: &Runner,
    pods: &Api<Pod>,
    namespace: &str,
) -> Result<()> {
    for i in 0..2 {
        let name = format!("filler-{i}");
        create_pod(pods, &name, &with_gpu("8xA100"), "run-forever").await?;
        assert!(matches!(
            wait_scheduled(pods, &name, Duration::from_secs(60)).await?,
            Scheduled::Bound(_)
        ));
    }
    let wanted: PodSpec = serde_json::from_value(with_gpu("4xA100"))?;
    let check = runner.precheck(namespace, &[wanted]).await?;
    assert_eq!(check.verdict, Verdict::FitsLater, "{}", check.message);
    create_pod(pods, "waits", &with_gpu("4xA100"), "run-forever").await?;
    match wait_scheduled(pods, "waits", Duration::from_secs(60)).await? {
        Scheduled::Unschedulable(message) => {
            assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}")
        }
        other => panic!("expected the scheduler to keep it pending, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn precheck_agrees_with_the_scheduler() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("precheck").await?;
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    wait_nodes_settled(&client, Duration::from_secs(60)).await?;
    // The live adapter the agent uses: lists nodes and pods, runs the pure pre-check.
    let runner = Runner::new(client.clone(), RunnerConfig::default());

    let (disagreements, seen) = compare_with_scheduler(&runner, &pods, ns.name()).await?;
    assert!(
        disagreements.is_empty(),
        "pre-check and scheduler disagree:\n{}",
        disagreements.join("\n")
    );
    assert!(
        seen.0 >= 5 && seen.1 >= 5,
        "shapes should cover both outcomes, got {seen:?}"
    );
    full_a100_nodes_mean_fits_later(&runner, &pods, ns.name()).await?;
    ns.cleanup().await;
    Ok(())
}

/// A rendered PyTorchJob gang (master + workers, `gpu: 8xH100` each) is checked as a whole:
/// two replicas fit the two H100 nodes, three never can.
#[tokio::test]
async fn rendered_gangs_are_checked_as_a_whole() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    wait_nodes_settled(&client, Duration::from_secs(60)).await?;
    let runner = Runner::new(client, RunnerConfig::default());
    let spec = rlaunch_model::RunSpec::from_value(
        json!({"entity": "e", "project": "p", "docker": {"docker_image": "img:1"}}),
    )?;
    let verdict = |workers: u64| {
        let queue = json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "gpu": "8xH100",
            "metadata": {"name": "ddp-${run_id}"},
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]}}},
                "Worker": {"replicas": workers, "template": {"spec": {"containers": [{"name": "pytorch", "image": "${image_uri}"}]}}}}}});
        let rendered = rlaunch_render::render(
            &spec,
            Some(&queue),
            &rlaunch_render::RenderContext::new("g1"),
        )
        .map_err(anyhow::Error::from)?;
        let workload = rendered.workload().context("a workload")?;
        Ok::<_, anyhow::Error>(rlaunch_k8s_runner::workload_pod_specs(&workload.manifest))
    };
    let fits = runner.precheck("default", &verdict(1)?).await?;
    assert_eq!(fits.verdict, Verdict::FitsNow, "{}", fits.message);
    let too_big = runner.precheck("default", &verdict(2)?).await?;
    assert_eq!(too_big.verdict, Verdict::NeverFits, "{}", too_big.message);
    assert!(
        too_big.message.contains("Insufficient nvidia.com/gpu"),
        "{}",
        too_big.message
    );
    Ok(())
}
