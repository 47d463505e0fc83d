//! Custom-resource workloads on the operators' real controllers (`rlaunch_testkit::operators`):
//! the runner submits, the real JobSet controller / Kubeflow training-operator / Kueue
//! controller manager act, kwok runs the pods they create, and the runner's verdict comes
//! from the status those controllers write. Nothing here patches a status. (Volcano's
//! controllers are not served by the Go module proxy: its tests, in `custom_resources.rs`,
//! still write the status themselves, on the real schema.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{JobRun, config, rendered, wait_status, wait_terminal};
use kube::api::{Api, DynamicObject, ListParams};
use rlaunch_k8s_runner::{RunHandle, RunState, Runner};
use rlaunch_testkit::annotations;
use rlaunch_testkit::operators::{self, Operator};
use serde_json::{Value, json};

const JOBSET: (&str, &str, &str) = ("jobset.x-k8s.io", "v1alpha2", "JobSet");

/// The cluster with `operator` running, a client and a fresh namespace.
async fn setup(
    operator: Operator,
    prefix: &str,
) -> anyhow::Result<(kube::Client, rlaunch_testkit::TestNamespace)> {
    let cluster = rlaunch_testkit::operator_cluster(&[operator]).await?;
    Ok((cluster.client().await?, cluster.namespace(prefix).await?))
}

/// The last lines of `operator`'s log, appended to failure messages.
fn log_of(operator: Operator) -> String {
    operators::running(operator).map_or_else(
        || format!("({} is not running)", operator.name()),
        |p| format!("--- {} ---\n{}", p.log_path().display(), p.log_tail(30)),
    )
}

fn run(namespace: &str, run_id: &str, run_seconds: &str) -> JobRun {
    let mut run = JobRun::new(namespace, run_id).annotation(annotations::RUN_SECONDS, run_seconds);
    run.with_secret = false;
    run
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

fn dynamic_api(
    client: &kube::Client,
    namespace: &str,
    (group, version, kind): (&str, &str, &str),
    plural: &str,
) -> Api<DynamicObject> {
    let resource = kube::api::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn true_condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

#[tokio::test]
async fn a_jobset_of_two_replicated_jobs_finishes_from_the_jobset_controllers_status()
-> anyhow::Result<()> {
    let (client, ns) = setup(Operator::JobSet, "jobset-real").await?;
    let runner = Runner::new(client.clone(), config());
    let run = run(&ns.name, "jsre0001", "3");
    let spec = json!({
        "replicatedJobs": [
            {"name": "driver", "replicas": 1,
             "template": {"spec": {"backoffLimit": 0, "template": run.pod_template()}}},
            {"name": "workers", "replicas": 2,
             "template": {"spec": {"backoffLimit": 0, "parallelism": 2, "completions": 2,
                                   "template": run.pod_template()}}},
        ]
    });
    let mut handle = submit(&runner, &run, JOBSET, "train", spec).await?;
    let running = wait_status(&mut handle, "running", |s| s.state == RunState::Running).await;
    running.map_err(|e| e.context(log_of(Operator::JobSet)))?;
    let status = wait_terminal(&mut handle).await?;
    assert_eq!(
        status.state,
        RunState::Finished,
        "{status:?}\n{}",
        log_of(Operator::JobSet)
    );

    // The verdict came from the controller: it created the child Jobs (3 of them) and wrote
    // `Completed` with its own reason.
    let jobsets = dynamic_api(&client, &ns.name, JOBSET, "jobsets");
    let jobset = jobsets.get("train").await?;
    let completed = true_condition(&jobset, "Completed").expect("a Completed condition");
    assert_eq!(completed["reason"], "AllJobsCompleted", "{jobset:?}");
    assert_eq!(jobset.data["status"]["terminalState"], "Completed");
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(client.clone(), &ns.name);
    let children = jobs
        .list(&ListParams::default().labels("jobset.sigs.k8s.io/jobset-name=train"))
        .await?;
    assert_eq!(children.items.len(), 3, "driver-0, workers-0, workers-1");
    ns.cleanup().await;
    Ok(())
}

const PYTORCH: (&str, &str, &str) = ("kubeflow.org", "v1", "PyTorchJob");

/// The seeds' PyTorchJob (`examples/queue-configs/pytorchjob.yaml`: a Master and 2
/// Workers, 4 GPUs each) rendered for `run_id` into `namespace`, every pod scripted by
/// `kwok` annotations per replica type.
fn rendered_pytorchjob(
    namespace: &str,
    run_id: &str,
    pod_annotations: &[(&str, Value)],
) -> anyhow::Result<rlaunch_render::Rendered> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/queue-configs/pytorchjob.yaml"
    );
    let mut queue: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path)?)?;
    queue["metadata"]["namespace"] = json!(namespace);
    for (replica, annotations) in pod_annotations {
        let template = &mut queue["spec"]["pytorchReplicaSpecs"][replica]["template"];
        template["metadata"] = json!({ "annotations": annotations });
        // The test cluster's GPU nodes carry the GPU operator's taint.
        template["spec"]["tolerations"] =
            json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]);
    }
    let run_spec = rlaunch_model::RunSpec::from_value(json!({
        "entity": "team", "project": "proj", "name": "ddp",
        "docker": {"docker_image": "registry.example/rlaunch/train:1"},
        "resource_args": {"kubernetes": {}},
    }))?;
    let mut ctx = rlaunch_render::RenderContext::new(run_id);
    ctx.run_queue_item_id = Some(format!("UnVuUXVldWVJdGVtOi{run_id}"));
    ctx.agent_identity = Some(common::IDENTITY.into());
    ctx.default_namespace = namespace.to_owned();
    ctx.api_key =
        rlaunch_render::ApiKeyMode::Agent(rlaunch_model::ApiKey::new("pytorch-key-0123456789"));
    Ok(rlaunch_render::render(&run_spec, Some(&queue), &ctx)?)
}

fn pytorchjob_of(client: &kube::Client, handle: &RunHandle) -> Api<DynamicObject> {
    dynamic_api(client, &handle.run().namespace, PYTORCH, "pytorchjobs")
}

#[tokio::test]
async fn a_rendered_pytorchjob_runs_and_finishes_on_the_training_operators_conditions()
-> anyhow::Result<()> {
    let (client, ns) = setup(Operator::TrainingOperator, "pytorch-real").await?;
    let runner = Runner::new(client.clone(), config());
    let slow = json!({ annotations::RUN_SECONDS: "4" });
    let rendered = rendered_pytorchjob(
        &ns.name,
        "ptre0001",
        &[("Master", slow.clone()), ("Worker", slow)],
    )?;
    let mut handle = runner.submit(&rendered).await?.handle;
    let running = wait_status(&mut handle, "running", |s| s.state == RunState::Running).await;
    running.map_err(|e| e.context(log_of(Operator::TrainingOperator)))?;
    let status = wait_terminal(&mut handle).await?;
    let log = log_of(Operator::TrainingOperator);
    assert_eq!(status.state, RunState::Finished, "{status:?}\n{log}");
    // The operator made the pods (a Master and 2 Workers) and wrote the conditions.
    let job = pytorchjob_of(&client, &handle)
        .get(&handle.run().name)
        .await?;
    let succeeded = true_condition(&job, "Succeeded").expect("a Succeeded condition");
    assert_eq!(succeeded["reason"], "PyTorchJobSucceeded", "{job:?}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns.name);
    let selector = format!("training.kubeflow.org/job-name={}", handle.run().name);
    let made = pods.list(&ListParams::default().labels(&selector)).await?;
    assert_eq!(made.items.len(), 3, "{log}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_failed_pytorch_worker_fails_the_run_with_the_training_operators_reason()
-> anyhow::Result<()> {
    let (client, ns) = setup(Operator::TrainingOperator, "pytorch-fail").await?;
    let runner = Runner::new(client.clone(), config());
    let master = json!({ annotations::OUTCOME: annotations::outcome::RUN_FOREVER });
    let worker =
        json!({ annotations::OUTCOME: annotations::outcome::FAIL, annotations::EXIT_CODE: "3" });
    let mut rendered = rendered_pytorchjob(
        &ns.name,
        "ptfa0001",
        &[("Master", master), ("Worker", worker)],
    )?;
    // A worker that exits non-zero is not restarted: the operator marks the job failed.
    let workload = rendered.objects.last_mut().expect("the workload");
    workload.manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = json!("Never");
    let mut handle = runner.submit(&rendered).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let log = log_of(Operator::TrainingOperator);
    let job = pytorchjob_of(&client, &handle)
        .get(&handle.run().name)
        .await?;
    let failed = true_condition(&job, "Failed")
        .unwrap_or_else(|| panic!("no Failed condition: {job:?}\n{log}"));
    assert_eq!(failed["reason"], "PyTorchJobFailed", "{job:?}");
    let operator_message = failed["message"].as_str().unwrap_or_default().to_owned();
    match &status.state {
        RunState::Failed(failure) => assert!(
            failure.message.contains(&operator_message),
            "the run's failure {failure:?} does not carry the operator's message {operator_message:?}"
        ),
        other => panic!("not failed: {other:?}\n{log}"),
    }
    ns.cleanup().await;
    Ok(())
}

const KUEUE_API: &str = "kueue.x-k8s.io/v1beta2";

/// Creates a Kueue object (`kind` in `kueue.x-k8s.io/v1beta2`) from its body.
async fn create_kueue_object(
    client: &kube::Client,
    namespace: Option<&str>,
    (kind, plural): (&str, &str),
    body: Value,
) -> anyhow::Result<()> {
    let resource = kube::api::ApiResource {
        group: "kueue.x-k8s.io".into(),
        version: "v1beta2".into(),
        api_version: KUEUE_API.into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let object: DynamicObject = serde_json::from_value(body)?;
    api.create(&kube::api::PostParams::default(), &object)
        .await?;
    Ok(())
}

/// A ClusterQueue with `cpu` of nominal quota for `namespace` only, and its LocalQueue `lq`.
async fn kueue_queues(client: &kube::Client, namespace: &str, cpu: &str) -> anyhow::Result<()> {
    let flavor = format!("flavor-{namespace}");
    let cluster_queue = format!("cq-{namespace}");
    create_kueue_object(
        client,
        None,
        ("ResourceFlavor", "resourceflavors"),
        json!({
            "apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": flavor},
        }),
    )
    .await?;
    create_kueue_object(client, None, ("ClusterQueue", "clusterqueues"), json!({
        "apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [{
                "name": flavor,
                "resources": [{"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "64Gi"}],
            }]}],
        },
    }))
    .await?;
    create_kueue_object(
        client,
        Some(namespace),
        ("LocalQueue", "localqueues"),
        json!({
            "apiVersion": KUEUE_API, "kind": "LocalQueue",
            "metadata": {"name": "lq", "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue},
        }),
    )
    .await
}

/// `run`'s Job in the LocalQueue `lq`, asking for `cpu`.
fn queued_job(run: &JobRun, cpu: &str) -> rlaunch_render::Rendered {
    let mut rendered = run.rendered();
    let manifest = &mut rendered.objects.last_mut().expect("the Job").manifest;
    manifest["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = json!("lq");
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": cpu, "memory": "1Gi"}, "limits": {"cpu": cpu, "memory": "1Gi"}});
    rendered
}

#[tokio::test]
async fn a_job_kueue_cannot_admit_is_queued_with_kueues_message_then_runs_when_quota_frees()
-> anyhow::Result<()> {
    let (client, ns) = setup(Operator::Kueue, "kueue-real").await?;
    kueue_queues(&client, &ns.name, "1").await?;
    let runner = Runner::new(client.clone(), config());
    // The holder takes the whole quota and runs until deleted.
    let holder = JobRun::new(&ns.name, "kuho0001").outcome(annotations::outcome::RUN_FOREVER);
    let mut holding = runner.submit(&queued_job(&holder, "1")).await?.handle;
    let admitted = wait_status(&mut holding, "the holder running", |s| {
        s.state == RunState::Running
    })
    .await;
    admitted.map_err(|e| e.context(log_of(Operator::Kueue)))?;
    // The second Job does not fit: Kueue's webhook suspended it, its scheduler says why.
    let waiting = JobRun::new(&ns.name, "kuwa0001")
        .outcome(annotations::outcome::SUCCEED)
        .annotation(annotations::RUN_SECONDS, "4");
    let mut handle = runner.submit(&queued_job(&waiting, "600m")).await?.handle;
    let queued = wait_status(&mut handle, "queued with Kueue's message", |s| {
        matches!(&s.state, RunState::Queued { reason } if reason.contains("insufficient unused quota for cpu"))
    })
    .await;
    let queued = queued.map_err(|e| e.context(log_of(Operator::Kueue)))?;
    let RunState::Queued { reason } = &queued.state else {
        unreachable!()
    };
    assert!(
        reason.contains("600m more needed") || reason.contains("more needed"),
        "{reason}"
    );
    // Freeing the quota admits it: Kueue unsuspends the Job and kwok runs it.
    runner.cancel(holding.run()).await?;
    let running = wait_status(&mut handle, "running once admitted", |s| {
        s.state == RunState::Running
    })
    .await;
    running.map_err(|e| e.context(log_of(Operator::Kueue)))?;
    assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);
    ns.cleanup().await;
    Ok(())
}
