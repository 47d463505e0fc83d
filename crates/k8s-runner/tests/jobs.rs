//! Batch Job runs against the real test cluster: kwok stages drive the pods.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{JobRun, config, setup, wait_none, wait_object, wait_status, wait_terminal};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::wait::conditions;
use rlaunch_k8s_runner::{
    Error, FailureCause, ROLE_ANNOTATION, RequeueRecord, RunState, Runner, RunnerConfig,
    TrackerConfig, WarningChange, WorkloadRole,
};
use rlaunch_model::labels;
use rlaunch_testkit::annotations::{self, outcome};

async fn count<K>(client: &kube::Client, namespace: &str, selector: &str) -> anyhow::Result<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .len())
}

#[tokio::test]
async fn job_that_succeeds_is_finished_and_its_secret_is_cleaned_up() -> anyhow::Result<()> {
    let (client, ns) = setup("succeed").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "succ0001").outcome(outcome::SUCCEED);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    assert_eq!(status.state, RunState::Finished, "{status:?}");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    wait_object(
        secrets,
        &run.secret_name(),
        "the API-key secret to be deleted",
        conditions::is_deleted(""),
    )
    .await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn exit_code_one_fails_naming_the_container_and_code() -> anyhow::Result<()> {
    let (client, ns) = setup("exit1").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "exit0001")
        .outcome(outcome::FAIL)
        .annotation(annotations::EXIT_CODE, "1");
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(&failure.cause, FailureCause::ExitCode { container, code: 1, .. } if container == "main"),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("exited with code 1"),
        "{}",
        failure.message
    );
    assert!(status.diagnostics.is_some());
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn oom_killed_fails_naming_container_and_memory_limit() -> anyhow::Result<()> {
    let (client, ns) = setup("oom").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "oom00001").outcome(outcome::OOM);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(&failure.cause, FailureCause::OomKilled { container, memory_limit: Some(limit), .. }
            if container == "main" && limit == "1Gi"),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("memory limit 1Gi"),
        "{}",
        failure.message
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn image_pull_backoff_fails_after_the_grace_naming_the_image() -> anyhow::Result<()> {
    let (client, ns) = setup("pull").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "pull0001").outcome(outcome::IMAGE_PULL_BACKOFF);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(failure.cause, FailureCause::ImagePull { .. }),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("registry.example/rlaunch/train:1"),
        "{}",
        failure.message
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn crash_loop_back_off_fails() -> anyhow::Result<()> {
    let (client, ns) = setup("crash").await?;
    let runner = Runner::new(client, config());
    let mut run = JobRun::new(&ns.name, "crash001").outcome(outcome::CRASH_LOOP);
    run.restart_policy = "OnFailure";
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(failure.cause, FailureCause::CrashLoop { .. }),
        "{failure:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn unschedulable_gpu_request_warns_then_hits_the_start_timeout() -> anyhow::Result<()> {
    let (client, ns) = setup("gpu16").await?;
    let runner = Runner::new(
        client,
        RunnerConfig {
            tracker: TrackerConfig {
                start_timeout: Duration::from_secs(30),
                ..config().tracker
            },
            ..config()
        },
    );
    let mut run = JobRun::new(&ns.name, "gpu16001");
    run.gpus = 16;
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let warned = wait_status(&mut handle, "an Unschedulable warning", |status| {
        status.warnings.iter().any(|w| w.reason == "Unschedulable")
    })
    .await?;
    let warning = warned
        .warnings
        .iter()
        .find(|w| w.reason == "Unschedulable")
        .unwrap();
    assert!(warning.message.contains("nvidia.com/gpu"), "{warning:?}");
    // Read the changes after every status update until the run ends: the scheduler retries
    // the pod many times meanwhile, and the warning must still be raised exactly once.
    let mut changes = handle.warning_changes();
    let status = loop {
        match tokio::time::timeout(common::DEADLINE, handle.changed()).await? {
            Some(status) => {
                changes.extend(handle.warning_changes());
                if status.state.is_terminal() {
                    break status;
                }
            }
            None => break handle.status(),
        }
    };
    let raised = changes
        .iter()
        .filter(|c| matches!(c, WarningChange::Raised(w) if w.reason == "Unschedulable"))
        .count();
    assert_eq!(raised, 1, "raised once: {changes:?}");
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert_eq!(failure.cause, FailureCause::StartTimeout { after_secs: 30 });
    assert!(
        failure.message.contains("nvidia.com/gpu"),
        "{}",
        failure.message
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn preempted_pod_makes_the_run_preempted() -> anyhow::Result<()> {
    let (client, ns) = setup("preempt").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "pre00001").outcome(outcome::PREEMPTED);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    assert!(
        matches!(&status.state, RunState::Preempted { reason } if reason.contains("PreemptionByScheduler")),
        "{status:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn evicted_pod_makes_the_run_preempted() -> anyhow::Result<()> {
    let (client, ns) = setup("evict").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "evict001").outcome(outcome::EVICTED);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    assert!(
        matches!(&status.state, RunState::Preempted { reason } if reason.contains("EvictionByEvictionAPI")),
        "{status:?}"
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn cancel_removes_job_pods_and_secrets_and_a_second_cancel_is_fine() -> anyhow::Result<()> {
    let (client, ns) = setup("cancel").await?;
    // No terminal cleanup: what is gone afterwards, cancel removed.
    let runner = Runner::new(
        client.clone(),
        RunnerConfig {
            cleanup_on_terminal: false,
            ..config()
        },
    );
    let run = JobRun::new(&ns.name, "cancel01").outcome(outcome::RUN_FOREVER);
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    wait_status(&mut handle, "running", |s| s.state == RunState::Running).await?;
    let run_ref = handle.run().clone();
    runner.cancel(&run_ref).await?;
    runner.cancel(&run_ref).await?;
    let status = wait_terminal(&mut handle).await?;
    assert!(
        matches!(&status.state, RunState::Stopped { reason } if reason.contains("cancelled")),
        "{status:?}"
    );
    let selector = format!("{}={}", labels::RUN_ID, run.run_id);
    wait_none::<Job>(&client, &ns.name, &selector, "the Job to be gone").await?;
    wait_none::<Pod>(&client, &ns.name, &selector, "the pods to be gone").await?;
    wait_none::<Secret>(&client, &ns.name, &selector, "the Secret to be gone").await?;
    runner.cancel(&run_ref).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn submitting_the_same_run_twice_yields_one_job() -> anyhow::Result<()> {
    let (client, ns) = setup("twice").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "twice001").outcome(outcome::RUN_FOREVER);
    let first = runner.submit(&run.rendered()).await?;
    let second = runner.submit(&run.rendered()).await?;
    assert!(!first.adopted);
    assert!(second.adopted);
    assert_eq!(first.handle.run(), second.handle.run());
    let selector = format!("{}={}", labels::RUN_ID, run.run_id);
    assert_eq!(count::<Job>(&client, &ns.name, &selector).await?, 1);
    runner.cancel(first.handle.run()).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_name_taken_by_another_run_is_not_adopted() -> anyhow::Result<()> {
    let (client, ns) = setup("taken").await?;
    let runner = Runner::new(client, config());
    let mut run = JobRun::new(&ns.name, "taken001").outcome(outcome::RUN_FOREVER);
    run.with_secret = false;
    let first = runner.submit(&run.rendered()).await?;
    let mut other = run.clone();
    other.run_id = "other001".into();
    let mut rendered = other.rendered();
    // Same deterministic name, different run.
    rendered.objects[0].manifest["metadata"]["name"] = serde_json::json!(run.job_name());
    let error = runner.submit(&rendered).await.unwrap_err();
    assert!(matches!(error, Error::NameTaken { .. }), "{error}");
    runner.cancel(first.handle.run()).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn an_unlabelled_secret_with_other_data_is_a_clear_error_and_nothing_is_created()
-> anyhow::Result<()> {
    let (client, ns) = setup("secret").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "sec00001").outcome(outcome::RUN_FOREVER);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let foreign: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": run.secret_name()},
        "type": "kubernetes.io/basic-auth",
        "data": {"password": "b3RoZXI="},
    }))?;
    secrets.create(&PostParams::default(), &foreign).await?;
    let error = runner.submit(&run.rendered()).await.unwrap_err();
    assert!(matches!(error, Error::SecretConflict { .. }), "{error}");
    assert!(!error.is_transient());
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    assert!(jobs.get_opt(&run.job_name()).await?.is_none());
    // An agent-created secret with other data is replaced, and the run goes ahead.
    secrets
        .delete(&run.secret_name(), &Default::default())
        .await?;
    let mut ours = run.secret_object("old-key").manifest;
    ours["metadata"]["namespace"] = serde_json::Value::Null;
    secrets
        .create(&PostParams::default(), &serde_json::from_value(ours)?)
        .await?;
    let submitted = runner.submit(&run.rendered()).await?;
    assert!(!submitted.adopted);
    runner.cancel(submitted.handle.run()).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn list_in_flight_after_recreating_the_runner_returns_live_runs_with_states()
-> anyhow::Result<()> {
    let (client, ns) = setup("adopt").await?;
    let identity = format!("adopt-{}", ns.name);
    let mut running = JobRun::new(&ns.name, "adoptrun").outcome(outcome::RUN_FOREVER);
    running.identity = Some(identity.clone());
    let mut done = JobRun::new(&ns.name, "adoptfin").outcome(outcome::SUCCEED);
    done.identity = Some(identity.clone());
    let mut build = JobRun::new(&ns.name, "adoptbld").outcome(outcome::RUN_FOREVER);
    build.identity = Some(identity.clone());
    build.workload_annotations.push((
        ROLE_ANNOTATION,
        WorkloadRole::ImageBuild.as_str().to_owned(),
    ));
    let record = RequeueRecord::new(
        &serde_json::json!({"entity": "team", "_wandb_api_key": "secret-key"}),
        1,
    );
    {
        let runner = Runner::new(client.clone(), config());
        let submitted = runner
            .submit_requeueable(&running.rendered(), &record)
            .await?;
        assert!(submitted.requeue_kept);
        let mut handle = submitted.handle;
        runner.submit(&build.rendered()).await?;
        wait_status(&mut handle, "running", |s| s.state == RunState::Running).await?;
        // The runner is dropped right after submitting: the run finishes while it is "down".
        runner.submit(&done.rendered()).await?;
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    wait_object(
        jobs,
        &done.job_name(),
        "the second Job to complete",
        conditions::is_job_completed(),
    )
    .await?;
    let runner = Runner::new(client.clone(), config());
    let in_flight = runner
        .list_in_flight(&identity, std::slice::from_ref(&ns.name), &[])
        .await?;
    assert_eq!(in_flight.len(), 2, "{in_flight:?}");
    let find = |run_id: &str| {
        in_flight
            .iter()
            .find(|r| r.run.run_id == run_id)
            .unwrap_or_else(|| panic!("{run_id} not listed: {in_flight:?}"))
    };
    let live = find("adoptrun");
    assert_eq!(live.state, RunState::Running);
    assert_eq!(live.run.run_queue_item_id, running.run_queue_item_id);
    assert_eq!(live.run.role, WorkloadRole::Run);
    // The requeue record survived the restart, without the API key.
    assert_eq!(live.requeue.as_ref(), Some(&record));
    assert_eq!(record.run_spec, serde_json::json!({"entity": "team"}));
    let builds = runner
        .list_builds_in_flight(&identity, std::slice::from_ref(&ns.name))
        .await?;
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0].run.run_id, "adoptbld");
    assert_eq!(builds[0].run.role, WorkloadRole::ImageBuild);
    assert_eq!(find("adoptfin").state, RunState::Finished);
    let mut handle = runner.track(find("adoptfin").run.clone()).await;
    assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);
    let mut live_handle = runner.track(live.run.clone()).await;
    wait_status(&mut live_handle, "running", |s| {
        s.state == RunState::Running
    })
    .await?;
    runner.cancel(live_handle.run()).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn additional_services_are_awaited_before_the_job_and_removed_at_the_end()
-> anyhow::Result<()> {
    let (client, ns) = setup("aux").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "auxok001").outcome(outcome::SUCCEED);
    let mut rendered = run.rendered();
    let workload = rendered.objects.pop().unwrap();
    rendered
        .objects
        .extend(common::database(&run, outcome::RUN_FOREVER, 120));
    rendered.objects.push(workload);
    let mut handle = runner.submit(&rendered).await?.handle;
    // The Deployment was ready before the Job existed.
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), &ns.name);
    let deployment = deployments.get(&format!("db-{}", run.run_id)).await?;
    assert_eq!(
        deployment.status.and_then(|s| s.ready_replicas),
        Some(1),
        "waited for readiness"
    );
    assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);
    let selector = format!(
        "{},{}={}",
        labels::AUXILIARY_RESOURCE,
        labels::RUN_ID,
        run.run_id
    );
    let what = "additional services to be deleted";
    wait_none::<k8s_openapi::api::apps::v1::Deployment>(&client, &ns.name, &selector, what).await?;
    wait_none::<k8s_openapi::api::core::v1::Service>(&client, &ns.name, &selector, what).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_service_that_never_gets_ready_fails_the_submission_and_rolls_back() -> anyhow::Result<()>
{
    let (client, ns) = setup("auxbad").await?;
    let runner = Runner::new(client.clone(), config());
    let run = JobRun::new(&ns.name, "auxbad01").outcome(outcome::SUCCEED);
    let mut rendered = run.rendered();
    let workload = rendered.objects.pop().unwrap();
    rendered
        .objects
        .extend(common::database(&run, outcome::IMAGE_PULL_BACKOFF, 5));
    rendered.objects.push(workload);
    let error = runner.submit(&rendered).await.unwrap_err();
    assert!(matches!(error, Error::NotReady { .. }), "{error}");
    assert!(error.to_string().contains("within 5 seconds"), "{error}");
    let selector = format!("{}={}", labels::RUN_ID, run.run_id);
    assert_eq!(
        count::<Job>(&client, &ns.name, &selector).await?,
        0,
        "no Job created"
    );
    let what = "the secret and services of the failed submission to be deleted";
    wait_none::<Secret>(&client, &ns.name, &selector, what).await?;
    wait_none::<k8s_openapi::api::apps::v1::Deployment>(&client, &ns.name, &selector, what).await?;
    wait_none::<k8s_openapi::api::core::v1::Service>(&client, &ns.name, &selector, what).await?;
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_run_rendered_by_spec_runs_to_finished() -> anyhow::Result<()> {
    let (client, ns) = setup("render").await?;
    let runner = Runner::new(client.clone(), config());
    let run_spec = rlaunch_model::RunSpec::from_value(serde_json::json!({
        "entity": "team", "project": "proj", "name": "rendered",
        "docker": {"docker_image": "registry.example/rlaunch/train:1"},
        "resource_args": {"kubernetes": {
            "spec": {"template": {"metadata": {"annotations": {annotations::OUTCOME: outcome::SUCCEED}}}}
        }},
    }))?;
    let mut ctx = rlaunch_render::RenderContext::new("rend0001");
    ctx.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjE=".into());
    ctx.agent_identity = Some(common::IDENTITY.into());
    ctx.default_namespace = ns.name.clone();
    ctx.api_key =
        rlaunch_render::ApiKeyMode::Agent(rlaunch_model::ApiKey::new("rendered-key-0123456789"));
    let rendered = rlaunch_render::render(&run_spec, None, &ctx)?;
    let submitted = runner.submit(&rendered).await?;
    assert_eq!(
        submitted.handle.run().run_queue_item_id.as_deref(),
        Some("UnVuUXVldWVJdGVtOjE=")
    );
    // The W&B coordinates come back from the workload's annotations.
    assert_eq!(submitted.handle.run().entity.as_deref(), Some("team"));
    assert_eq!(submitted.handle.run().project.as_deref(), Some("proj"));
    assert_eq!(submitted.handle.run().role, WorkloadRole::Run);
    let mut handle = submitted.handle;
    let status = wait_terminal(&mut handle).await?;
    assert_eq!(status.state, RunState::Finished, "{status:?}");
    let selector = format!("{}={}", labels::RUN_ID, handle.run().run_id);
    wait_none::<Secret>(
        &client,
        &ns.name,
        &selector,
        "the rendered API-key secret to be deleted",
    )
    .await?;
    // Retrying the same render adopts the Job (deterministic name), never a second one.
    let again = runner.submit(&rendered).await?;
    assert!(again.adopted);
    assert_eq!(count::<Job>(&client, &ns.name, &selector).await?, 1);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_suspended_job_is_queued_and_runs_once_admitted() -> anyhow::Result<()> {
    let (client, ns) = setup("kueue").await?;
    let runner = Runner::new(
        client.clone(),
        RunnerConfig {
            tracker: TrackerConfig {
                start_timeout: Duration::from_secs(3),
                ..config().tracker
            },
            ..config()
        },
    );
    let run = JobRun::new(&ns.name, "kueue001").outcome(outcome::SUCCEED);
    let mut rendered = run.rendered();
    // What Kueue's webhook does: the Job is created suspended until admitted.
    rendered.objects.last_mut().unwrap().manifest["spec"]["suspend"] = serde_json::json!(true);
    let mut handle = runner.submit(&rendered).await?.handle;
    wait_status(&mut handle, "queued", |s| {
        matches!(s.state, RunState::Queued { .. })
    })
    .await?;
    // For twice the start timeout the run must stay queued: a change to another state (a
    // timeout failure) ends the wait at once and fails the test.
    let left_queue = async {
        loop {
            match handle.changed().await {
                Some(status) if matches!(status.state, RunState::Queued { .. }) => {}
                other => return other,
            }
        }
    };
    let change = tokio::time::timeout(Duration::from_secs(6), left_queue).await;
    assert!(change.is_err(), "a queued run left the queue: {change:?}");
    assert!(
        matches!(handle.status().state, RunState::Queued { .. }),
        "{:?}",
        handle.status()
    );
    // Admission: follow the run with a runner whose start timeout cannot race pod start-up.
    let run_ref = handle.run().clone();
    drop(handle);
    drop(runner);
    let runner = Runner::new(client.clone(), config());
    let mut handle = runner.track(run_ref).await;
    wait_status(&mut handle, "queued after re-tracking", |s| {
        matches!(s.state, RunState::Queued { .. })
    })
    .await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    jobs.patch(
        &run.job_name(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
    )
    .await?;
    assert_eq!(wait_terminal(&mut handle).await?.state, RunState::Finished);
    ns.cleanup().await;
    Ok(())
}
