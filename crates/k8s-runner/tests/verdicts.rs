//! Verdicts the agent depends on, against the real test cluster: attribution of pods to
//! their attempt, failures that race the workload's deletion, crash loops Kubernetes is
//! still retrying.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{JobRun, config, setup, wait_status, wait_terminal};
use rlaunch_k8s_runner::{FailureCause, RunState, Runner, RunnerConfig, TrackerConfig};
use rlaunch_testkit::annotations::{self, outcome};

/// A preemption requeue keeps the run id: the old attempt's evicted pod must not make the
/// new attempt's real failure look like a preemption, nor feed its diagnostics.
#[tokio::test]
async fn two_attempts_of_one_run_each_see_only_their_own_pods() -> anyhow::Result<()> {
    let (client, ns) = setup("attempts").await?;
    let runner = Runner::new(client.clone(), config());
    let mut first = JobRun::new(&ns.name, "attempt1").outcome(outcome::PREEMPTED);
    first.name = Some("run-attempt1-a".into());
    first.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjE=".into());
    let mut handle = runner.submit(&first.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    assert!(
        matches!(status.state, RunState::Preempted { .. }),
        "{status:?}"
    );
    // The old Job and its preempted pod live on (TTL 600 s) while the requeued attempt runs.
    let mut second = JobRun::new(&ns.name, "attempt1")
        .outcome(outcome::FAIL)
        .annotation(annotations::EXIT_CODE, "3");
    second.name = Some("run-attempt1-b".into());
    second.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjI=".into());
    let mut handle = runner.submit(&second.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("the second attempt failed for real, got {status:?}");
    };
    assert!(
        matches!(failure.cause, FailureCause::ExitCode { code: 3, .. }),
        "{failure:?}"
    );
    let diagnostics = status.diagnostics.expect("diagnostics of a failed run");
    // kwok serves no container logs; the events name the pods the diagnostics looked at.
    assert!(
        diagnostics
            .events
            .iter()
            .any(|e| e.contains("pod/run-attempt1-b")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics
            .logs
            .iter()
            .all(|log| log.pod.starts_with("run-attempt1-b")),
        "{diagnostics:?}"
    );
    assert!(
        diagnostics.events.iter().all(|e| !e.contains("attempt1-a")),
        "{diagnostics:?}"
    );
    let again = runner.diagnostics(handle.run()).await;
    assert!(
        again
            .logs
            .iter()
            .all(|log| log.pod.starts_with("run-attempt1-b")),
        "{again:?}"
    );
    // Adoption agrees: each attempt keeps its own verdict.
    let in_flight = Runner::new(client.clone(), config())
        .list_in_flight(common::IDENTITY, std::slice::from_ref(&ns.name), &[])
        .await?;
    let state_of = |name: &str| {
        in_flight
            .iter()
            .find(|r| r.run.name == name)
            .map(|r| r.state.clone())
            .unwrap_or_else(|| panic!("{name} not listed: {in_flight:?}"))
    };
    assert!(
        matches!(state_of("run-attempt1-a"), RunState::Preempted { .. }),
        "{in_flight:?}"
    );
    assert!(
        matches!(state_of("run-attempt1-b"), RunState::Failed(_)),
        "{in_flight:?}"
    );
    ns.cleanup().await;
    Ok(())
}

/// `ttlSecondsAfterFinished: 0` deletes a failed Job within the verdict's settle time: the
/// failure seen before the deletion wins over "stopped".
#[tokio::test]
async fn a_failed_job_deleted_at_once_is_reported_failed() -> anyhow::Result<()> {
    let (client, ns) = setup("ttl0").await?;
    let runner = Runner::new(
        client,
        RunnerConfig {
            tracker: TrackerConfig {
                verdict_settle: Duration::from_secs(30),
                ..config().tracker
            },
            ..config()
        },
    );
    let mut run = JobRun::new(&ns.name, "ttlzero1")
        .outcome(outcome::FAIL)
        .annotation(annotations::EXIT_CODE, "7");
    run.ttl_seconds_after_finished = 0;
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(failure.cause, FailureCause::ExitCode { code: 7, .. }),
        "{failure:?}"
    );
    ns.cleanup().await;
    Ok(())
}

/// With `restartPolicy: OnFailure` and restarts left under `backoffLimit`, Kubernetes is
/// still retrying: a warning, not a failure, until the admin's crash-loop budget runs out.
#[tokio::test]
async fn a_crash_loop_kubernetes_still_retries_warns_then_fails_after_the_budget()
-> anyhow::Result<()> {
    let (client, ns) = setup("crashwarn").await?;
    let runner = Runner::new(
        client,
        RunnerConfig {
            tracker: TrackerConfig {
                crash_loop_budget: Some(Duration::from_secs(8)),
                ..config().tracker
            },
            ..config()
        },
    );
    let mut run = JobRun::new(&ns.name, "crashwrn")
        .outcome(outcome::CRASH_LOOP)
        .annotation(annotations::RESTART_COUNT, "2");
    run.restart_policy = "OnFailure";
    run.backoff_limit = 10;
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let warned = wait_status(&mut handle, "a CrashLoopBackOff warning", |status| {
        status
            .warnings
            .iter()
            .any(|w| w.reason == "CrashLoopBackOff")
    })
    .await?;
    assert!(!warned.state.is_terminal(), "{warned:?}");
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

async fn refused_run(
    client: &kube::Client,
    ns: &rlaunch_testkit::TestNamespace,
    run: JobRun,
    expected_reason: &str,
    expected: &[&str],
) -> anyhow::Result<()> {
    let runner = Runner::new(
        client.clone(),
        RunnerConfig {
            tracker: TrackerConfig {
                start_timeout: Duration::from_secs(15),
                ..config().tracker
            },
            ..config()
        },
    );
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    let warned = wait_status(&mut handle, "a refusal warning", |status| {
        status.warnings.iter().any(|w| w.reason == expected_reason)
    })
    .await?;
    let warning = warned
        .warnings
        .iter()
        .find(|w| w.reason == expected_reason)
        .unwrap();
    for text in expected {
        assert!(warning.message.contains(text), "{text}: {warning:?}");
    }
    let status = wait_terminal(&mut handle).await?;
    let RunState::Failed(failure) = &status.state else {
        panic!("expected failed, got {status:?}");
    };
    assert!(
        matches!(&failure.cause, FailureCause::PodsRefused { message } if message == &warning.message),
        "{failure:?}"
    );
    assert!(failure.message.contains(expected[0]), "{}", failure.message);
    let _ = ns;
    Ok(())
}

/// A ResourceQuota refuses the Job's pods: a warning naming the quota and the numbers, then a
/// failure with that reason at the start timeout (not "did not start").
#[tokio::test]
async fn pods_refused_by_a_resource_quota_warn_and_fail_with_the_quota() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let (client, ns) = setup("quota").await?;
    let quotas: kube::Api<ResourceQuota> = kube::Api::namespaced(client.clone(), &ns.name);
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gpu-quota"},
        "spec": {"hard": {"requests.nvidia.com/gpu": "8"}},
    }))?;
    quotas.create(&Default::default(), &quota).await?;
    // Admission judges against the status the quota controller fills in.
    common::wait_object(
        quotas,
        "gpu-quota",
        "the quota's status",
        |quota: Option<&ResourceQuota>| {
            quota
                .and_then(|q| q.status.as_ref())
                .and_then(|s| s.hard.as_ref())
                .is_some_and(|hard| !hard.is_empty())
        },
    )
    .await?;
    let mut run = JobRun::new(&ns.name, "quota001");
    run.gpus = 16;
    refused_run(
        &client,
        &ns,
        run,
        "ExceededQuota",
        &["exceeded quota: gpu-quota", "requests.nvidia.com/gpu=16"],
    )
    .await?;
    ns.cleanup().await;
    Ok(())
}

/// A LimitRange refuses the Job's pods (memory limit above the per-container maximum).
#[tokio::test]
async fn pods_refused_by_a_limit_range_warn_and_fail_with_the_maximum() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::LimitRange;
    let (client, ns) = setup("limits").await?;
    let ranges: kube::Api<LimitRange> = kube::Api::namespaced(client.clone(), &ns.name);
    let range: LimitRange = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "small"},
        "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]},
    }))?;
    ranges.create(&Default::default(), &range).await?;
    let run = JobRun::new(&ns.name, "limits01");
    refused_run(
        &client,
        &ns,
        run,
        "LimitRange",
        &["maximum memory usage per Container is 512Mi", "1Gi"],
    )
    .await?;
    ns.cleanup().await;
    Ok(())
}
