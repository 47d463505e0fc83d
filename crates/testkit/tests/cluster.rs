//! The test cluster against itself: fake GPU nodes, a GPU Job scheduled by the real
//! scheduler and completed by kwok, an unschedulable request, every scripted failure, the CRDs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use rlaunch_testkit::annotations::{self, outcome};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `check` until it returns `Some`, or fails with the last observation.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::from("(nothing observed)");
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(observed) => last = observed,
        }
        if Instant::now() > deadline {
            bail!("{what}: not reached within {DEADLINE:?}; last observed: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn gpu_toleration() -> serde_json::Value {
    json!([{ "key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule" }])
}

#[tokio::test]
async fn nodes_advertise_gpus_and_are_ready() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let nodes: Api<Node> = Api::all(cluster.client().await?);
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await?;
    let mut gpus_by_product: BTreeMap<String, u32> = BTreeMap::new();
    for node in &list.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let status = node.status.as_ref().context("node without status")?;
        let ready = status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        assert!(ready, "node {name} is not Ready");
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if let Some(product) = labels.get("nvidia.com/gpu.product") {
            let gpus: u32 = status
                .allocatable
                .as_ref()
                .and_then(|a| a.get("nvidia.com/gpu"))
                .context("GPU node without allocatable nvidia.com/gpu")?
                .0
                .parse()?;
            assert_eq!(gpus, 8, "node {name}");
            assert_eq!(
                labels.get("nvidia.com/gpu.count").map(String::as_str),
                Some("8")
            );
            assert!(labels.contains_key("nvidia.com/gpu.memory"), "node {name}");
            assert!(labels.contains_key("accelerator"), "node {name}");
            assert!(
                labels.contains_key("node.kubernetes.io/instance-type"),
                "node {name}"
            );
            let tainted = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| {
                    ts.iter().any(|t| {
                        t.key == "nvidia.com/gpu"
                            && t.value.as_deref() == Some("present")
                            && t.effect == "NoSchedule"
                    })
                });
            assert!(tainted, "GPU node {name} lacks the nvidia.com/gpu taint");
            *gpus_by_product.entry(product.clone()).or_default() += gpus;
        }
    }
    assert_eq!(gpus_by_product.get("NVIDIA-A100-SXM4-80GB"), Some(&16));
    assert_eq!(gpus_by_product.get("NVIDIA-H100-80GB-HBM3"), Some(&16));
    assert!(
        list.items.len() >= 6,
        "expected 6 default nodes, got {}",
        list.items.len()
    );
    Ok(())
}

/// A Job asking for 2 GPUs on an A100 node, running 2 s.
fn a100_job() -> Result<Job> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "train" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": { "annotations": { annotations::RUN_SECONDS: "2" } },
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": gpu_toleration(),
                    "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{ "matchExpressions": [{
                            "key": "nvidia.com/gpu.product", "operator": "In",
                            "values": ["NVIDIA-A100-SXM4-80GB"] }] }] } } },
                    "containers": [{
                        "name": "main", "image": "example.invalid/train:1",
                        "resources": { "limits": { "nvidia.com/gpu": "2" } }
                    }]
                }
            }
        }
    }))?)
}

/// Waits for the Job's `Complete` condition; a `Failed` one ends the wait with the conditions.
async fn wait_complete(jobs: &Api<Job>, name: &str) -> Result<()> {
    eventually(&format!("job {name} Complete"), || {
        let jobs = jobs.clone();
        async move {
            let job = jobs.get(name).await.map_err(|e| e.to_string())?;
            let conds = job.status.and_then(|s| s.conditions).unwrap_or_default();
            if conds
                .iter()
                .any(|c| c.type_ == "Failed" && c.status == "True")
            {
                return Err(format!("job failed: {conds:?}"));
            }
            Ok(conds
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
                .then_some(()))
        }
    })
    .await
}

#[tokio::test]
async fn gpu_job_is_scheduled_on_a100_and_completes() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("gpu-job").await?;
    let client = cluster.client().await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    jobs.create(&PostParams::default(), &a100_job()?).await?;
    wait_complete(&jobs, "train").await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let list = pods
        .list(&ListParams::default().labels("job-name=train"))
        .await?;
    assert_eq!(list.items.len(), 1, "one pod expected");
    let pod = &list.items[0];
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .context("pod not bound")?;
    let node = Api::<Node>::all(client).get(&node_name).await?;
    let product = node
        .metadata
        .labels
        .unwrap_or_default()
        .get("nvidia.com/gpu.product")
        .cloned();
    assert_eq!(
        product.as_deref(),
        Some("NVIDIA-A100-SXM4-80GB"),
        "bound to {node_name}"
    );
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    assert_eq!(phase.as_deref(), Some("Succeeded"));
    // The terminated state keeps the start time of the running state (run-seconds = 2).
    let term = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .context("no terminated state")?;
    assert_eq!(term.exit_code, 0);
    let (started, finished) = (
        term.started_at.context("no startedAt")?,
        term.finished_at.context("no finishedAt")?,
    );
    assert!(
        started.0 < finished.0,
        "startedAt {started:?} finishedAt {finished:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn sixteen_gpus_stay_unschedulable() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("too-big").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, &ns.name);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "huge" },
        "spec": {
            "restartPolicy": "Never",
            "tolerations": gpu_toleration(),
            "containers": [{
                "name": "main", "image": "example.invalid/train:1",
                "resources": { "limits": { "nvidia.com/gpu": "16" } }
            }]
        }
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let message = eventually("PodScheduled=False/Unschedulable", || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("huge").await.map_err(|e| e.to_string())?;
            let conds = pod.status.and_then(|s| s.conditions).unwrap_or_default();
            Ok(conds
                .iter()
                .find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
                .map(|c| c.message.clone().unwrap_or_default()))
        }
    })
    .await?;
    assert!(
        message.contains("Insufficient nvidia.com/gpu"),
        "unexpected scheduler message: {message}"
    );
    let pod = pods.get("huge").await?;
    assert!(
        pod.spec.and_then(|s| s.node_name).is_none(),
        "must not be bound"
    );
    ns.cleanup().await;
    Ok(())
}

/// What a pod with a given outcome must show.
struct Expect {
    outcome: &'static str,
    extra: &'static [(&'static str, &'static str)],
    phase: &'static str,
    check: fn(&Pod) -> Result<(), String>,
}

fn container_state(pod: &Pod) -> Result<k8s_openapi::api::core::v1::ContainerState, String> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.clone())
        .ok_or_else(|| "no container state yet".to_owned())
}

fn waiting_reason(pod: &Pod, want: &str) -> Result<(), String> {
    let state = container_state(pod)?;
    let reason = state.waiting.and_then(|w| w.reason);
    if reason.as_deref() == Some(want) && state.running.is_none() {
        Ok(())
    } else {
        Err(format!("waiting reason {reason:?}, want {want}"))
    }
}

/// The first container's waiting message starts with `want(image, pod)`: the real
/// kubelet's wording (checked against it on the real node), which kwok's Stages copy.
fn waiting_message(pod: &Pod, want: impl Fn(&str, &str) -> String) -> Result<(), String> {
    let image = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let meta = &pod.metadata;
    let pod_ref = format!(
        "{}_{}({})",
        meta.name.as_deref().unwrap_or_default(),
        meta.namespace.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default()
    );
    let message = container_state(pod)?
        .waiting
        .and_then(|w| w.message)
        .unwrap_or_default();
    let want = want(&image, &pod_ref);
    if message.starts_with(&want) {
        Ok(())
    } else {
        Err(format!(
            "waiting message {message:?}, want it to start with {want:?}"
        ))
    }
}

fn terminated(pod: &Pod, code: i32, want: &str) -> Result<(), String> {
    let state = container_state(pod)?;
    match state.terminated {
        Some(t) if t.exit_code == code && t.reason.as_deref() == Some(want) => Ok(()),
        other => Err(format!(
            "terminated {other:?}, want exit {code} reason {want}"
        )),
    }
}

fn disruption(pod: &Pod, want: &str) -> Result<(), String> {
    let conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let found = conds.iter().any(|c| {
        c.type_ == "DisruptionTarget" && c.status == "True" && c.reason.as_deref() == Some(want)
    });
    if found {
        Ok(())
    } else {
        Err(format!("no DisruptionTarget/{want} in {conds:?}"))
    }
}

/// One pod per outcome annotation, with the phase and container state kwok must show.
fn outcome_cases() -> [Expect; 9] {
    [
        Expect {
            outcome: outcome::IMAGE_PULL_BACKOFF,
            extra: &[],
            phase: "Pending",
            check: |p| {
                waiting_reason(p, "ImagePullBackOff")?;
                waiting_message(p, |image, _| {
                    format!(
                        "Back-off pulling image \"{image}\": ErrImagePull: rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\""
                    )
                })
            },
        },
        Expect {
            outcome: outcome::ERR_IMAGE_PULL,
            extra: &[],
            phase: "Pending",
            check: |p| {
                waiting_reason(p, "ErrImagePull")?;
                waiting_message(p, |image, _| {
                    format!(
                        "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\""
                    )
                })
            },
        },
        Expect {
            outcome: outcome::CRASH_LOOP,
            extra: &[(annotations::RESTART_COUNT, "4")],
            phase: "Running",
            check: |p| {
                waiting_reason(p, "CrashLoopBackOff")?;
                waiting_message(p, |_, pod| {
                    format!("back-off 5m0s restarting failed container=main pod={pod}")
                })?;
                let status = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| cs.first())
                    .ok_or("no container status")?;
                if status.restart_count == 4 {
                    Ok(())
                } else {
                    Err(format!("restartCount {}", status.restart_count))
                }
            },
        },
        Expect {
            outcome: outcome::OOM,
            extra: &[],
            phase: "Failed",
            check: |p| terminated(p, 137, "OOMKilled"),
        },
        Expect {
            outcome: outcome::FAIL,
            extra: &[(annotations::EXIT_CODE, "3")],
            phase: "Failed",
            check: |p| terminated(p, 3, "Error"),
        },
        Expect {
            outcome: outcome::PREEMPTED,
            extra: &[],
            phase: "Failed",
            check: |p| disruption(p, "PreemptionByScheduler"),
        },
        Expect {
            outcome: outcome::EVICTED,
            extra: &[],
            phase: "Failed",
            check: |p| disruption(p, "EvictionByEvictionAPI"),
        },
        Expect {
            outcome: outcome::SUCCEED,
            extra: &[],
            phase: "Succeeded",
            check: |p| terminated(p, 0, "Completed"),
        },
        Expect {
            outcome: outcome::RUN_FOREVER,
            extra: &[],
            phase: "Running",
            check: |p| match container_state(p)?.running {
                Some(_) => Ok(()),
                None => Err("not running".into()),
            },
        },
    ]
}

/// The pod of one case: its outcome (and extra) annotations on a plain `Never` pod.
fn outcome_pod(case: &Expect) -> Result<Pod> {
    let mut ann = serde_json::Map::new();
    ann.insert(annotations::OUTCOME.into(), json!(case.outcome));
    for (k, v) in case.extra {
        ann.insert((*k).into(), json!(v));
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": case.outcome, "annotations": ann },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "main", "image": "example.invalid/train:1" }]
        }
    }))?)
}

/// Waits for the kubelet-like events kwok records for the waiting outcomes.
async fn wait_for_kubelet_events(events: &Api<Event>) -> Result<()> {
    for (pod, reason) in [
        (outcome::IMAGE_PULL_BACKOFF, "BackOff"),
        (outcome::ERR_IMAGE_PULL, "Failed"),
        (outcome::CRASH_LOOP, "BackOff"),
    ] {
        eventually(&format!("event {reason} for pod {pod}"), || {
            let events = events.clone();
            async move {
                let list = events
                    .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
                    .await
                    .map_err(|e| e.to_string())?;
                let reasons: Vec<_> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
                if reasons.iter().any(|r| r == reason) {
                    Ok(Some(()))
                } else {
                    Err(format!("reasons {reasons:?}"))
                }
            }
        })
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn every_failure_outcome_shows_in_pod_status() -> Result<()> {
    let cases = outcome_cases();
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("outcomes").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, &ns.name);
    for case in &cases {
        pods.create(&PostParams::default(), &outcome_pod(case)?)
            .await?;
    }
    for case in &cases {
        eventually(&format!("outcome {}", case.outcome), || {
            let pods = pods.clone();
            async move {
                let pod = pods.get(case.outcome).await.map_err(|e| e.to_string())?;
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                if phase.as_deref() != Some(case.phase) {
                    return Err(format!("phase {phase:?}, want {}", case.phase));
                }
                (case.check)(&pod)?;
                Ok(Some(()))
            }
        })
        .await?;
    }
    // The kubelet-like events are there too.
    wait_for_kubelet_events(&Api::namespaced(cluster.client().await?, &ns.name)).await?;
    // Outcomes are final: a second look after the default delay still shows them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for case in &cases {
        let pod = pods.get(case.outcome).await?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(
            phase.as_deref(),
            Some(case.phase),
            "outcome {}",
            case.outcome
        );
        if let Err(e) = (case.check)(&pod) {
            bail!("outcome {} changed later: {e}", case.outcome);
        }
    }
    ns.cleanup().await;
    Ok(())
}

/// One operator CRD the cluster installs, with a status the real schema keeps.
struct CrdCase {
    name: &'static str,
    gvk: GroupVersionKind,
    spec: serde_json::Value,
    /// A spec the real schema refuses (a field of the wrong type).
    wrong_spec: serde_json::Value,
    status: serde_json::Value,
    /// Where the kept status shows, and what it holds.
    kept: (&'static str, &'static str),
}

fn crd_cases() -> [CrdCase; 3] {
    let jobset_condition = json!({"type": "Completed", "status": "True", "reason": "AllJobsCompleted",
        "message": "jobs completed", "lastTransitionTime": "2026-01-01T00:00:00Z"});
    [
        CrdCase {
            name: "jobs.batch.volcano.sh",
            gvk: GroupVersionKind::gvk("batch.volcano.sh", "v1alpha1", "Job"),
            spec: json!({"minAvailable": 1, "tasks": []}),
            wrong_spec: json!({"minAvailable": "one"}),
            status: json!({"state": {"phase": "Running"}}),
            kept: ("/status/state/phase", "Running"),
        },
        CrdCase {
            name: "pytorchjobs.kubeflow.org",
            gvk: GroupVersionKind::gvk("kubeflow.org", "v1", "PyTorchJob"),
            spec: json!({"pytorchReplicaSpecs": {}}),
            wrong_spec: json!({"pytorchReplicaSpecs": "master"}),
            status: json!({"conditions": [{"type": "Running", "status": "True"}], "replicaStatuses": {}}),
            kept: ("/status/conditions/0/type", "Running"),
        },
        CrdCase {
            name: "jobsets.jobset.x-k8s.io",
            gvk: GroupVersionKind::gvk("jobset.x-k8s.io", "v1alpha2", "JobSet"),
            spec: json!({"replicatedJobs": []}),
            wrong_spec: json!({"replicatedJobs": "trainers"}),
            status: json!({"conditions": [jobset_condition]}),
            kept: ("/status/conditions/0/reason", "AllJobsCompleted"),
        },
    ]
}

/// The operators' own CRDs are installed: Established, with a status subresource, a schema
/// that refuses a wrongly typed spec, keeps the status the operator writes and prunes a
/// status field the operator never writes (the hand-written preserve-unknown CRDs kept it).
#[tokio::test]
async fn operator_crds_validate_with_their_real_schemas() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ns = cluster.namespace("crds").await?;
    for case in crd_cases() {
        let name = case.name;
        let crd = crds.get(name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} not Established");
        assert_eq!(crd.spec.scope, "Namespaced");
        let ar = ApiResource::from_gvk(&case.gvk);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &ar);
        let mut wrong = DynamicObject::new("wrong", &ar);
        wrong.data = json!({ "spec": case.wrong_spec });
        match api.create(&PostParams::default(), &wrong).await {
            Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{name}: {status:?}"),
            other => panic!("{name}: a wrongly typed spec was not refused: {other:?}"),
        }
        let mut obj = DynamicObject::new("sample", &ar);
        obj.data = json!({ "spec": case.spec });
        api.create(&PostParams::default(), &obj).await?;
        let mut status = case.status;
        status["madeUpByTheTest"] = json!("pruned");
        api.patch_status(
            "sample",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .with_context(|| format!("status subresource of {name}"))?;
        let back = api.get("sample").await?;
        let (pointer, want) = case.kept;
        assert_eq!(
            back.data.pointer(pointer),
            Some(&json!(want)),
            "{name}: {:?}",
            back.data
        );
        assert!(
            back.data["status"].get("madeUpByTheTest").is_none(),
            "{name} kept an unknown field"
        );
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn an_attached_cluster_refuses_to_restart_its_apiserver() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let attached = rlaunch_testkit::TestCluster::attach(cluster.kubeconfig_path()).await?;
    assert!(attached.control_plane().is_none());
    let err = attached.restart_apiserver().await;
    match err {
        Err(rlaunch_testkit::Error::Unsupported(msg)) => {
            assert!(msg.contains("private_cluster()"), "{msg}");
        }
        other => bail!("an attached cluster must refuse to restart, got {other:?}"),
    }
    // The attached handle reaches the same cluster.
    let nodes: Api<Node> = Api::all(attached.client().await?);
    assert!(!nodes.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test]
async fn attaching_to_a_missing_kubeconfig_names_the_file() {
    let missing = std::path::Path::new("/nonexistent/rlaunch-testkit/kubeconfig");
    let err = rlaunch_testkit::TestCluster::attach(missing)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/rlaunch-testkit/kubeconfig"),
        "{err}"
    );
}
