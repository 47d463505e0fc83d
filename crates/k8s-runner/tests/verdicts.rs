//! Verdicts the agent depends on, against the real test cluster: attribution of pods to
//! their attempt, failures that race the workload's deletion, crash loops Kubernetes is
//! still retrying.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{JobRun, config, wait_status, wait_terminal};
use rlaunch_k8s_runner::{FailureCause, RunState, Runner, RunnerConfig, TrackerConfig};
use rlaunch_testkit::annotations::{self, outcome};

async fn setup(prefix: &str) -> anyhow::Result<(kube::Client, rlaunch_testkit::TestNamespace)> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let namespace = cluster.namespace(prefix).await?;
    Ok((client, namespace))
}

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
