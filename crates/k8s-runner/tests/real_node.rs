//! The runner against the real kubelet: Jobs whose pods run real containers on the test
//! cluster's real node (kubelet + containerd + runc), so every outcome classified here is
//! one the kubelet wrote, not a kwok Stage: a clean exit, a real exit code, a memory-cgroup
//! OOM kill, an image missing from the registry, and logs read back through the API server.

mod common;

use common::{JobRun, config, wait_terminal};
use rlaunch_k8s_runner::{FailureCause, RunState, RunStatus, Runner};
use rlaunch_render::{ObjectRole, Rendered};
use rlaunch_testkit::node::{self, images};
use serde_json::json;

/// `run` as a Job whose single container runs `script` in busybox on the real node.
fn real(run: &JobRun, image: &str, script: &str, memory: &str) -> Rendered {
    let mut rendered = run.rendered();
    for object in &mut rendered.objects {
        if object.role != ObjectRole::Workload {
            continue;
        }
        let spec = &mut object.manifest["spec"]["template"]["spec"];
        spec["nodeSelector"] = node::node_selector();
        spec["tolerations"] = json!([node::toleration()]);
        let container = &mut spec["containers"][0];
        container["image"] = json!(image);
        container["command"] = json!(["/bin/sh", "-c", script]);
        container["resources"] = json!({"limits": {"cpu": "200m", "memory": memory}});
    }
    rendered
}

fn busybox() -> String {
    images::reference(images::BUSYBOX)
}

async fn setup(prefix: &str) -> anyhow::Result<(kube::Client, rlaunch_testkit::TestNamespace)> {
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    Ok((cluster.client().await?, cluster.namespace(prefix).await?))
}

fn failure(status: &RunStatus) -> &rlaunch_k8s_runner::Failure {
    match &status.state {
        RunState::Failed(failure) => {
            eprintln!(
                "classified: {:?}\nmessage: {}",
                failure.cause, failure.message
            );
            failure
        }
        other => panic!("expected failed, got {other:?} ({status:?})"),
    }
}

#[tokio::test]
async fn a_container_that_exits_zero_finishes_and_its_log_reads_back() -> anyhow::Result<()> {
    let (client, ns) = setup("real-ok").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "realok01");
    let script = "echo step 1; echo step 2; echo done";
    let submitted = runner
        .submit(&real(&run, &busybox(), script, "64Mi"))
        .await?;
    let mut handle = submitted.handle;
    let status = wait_terminal(&mut handle).await?;
    assert_eq!(status.state, RunState::Finished, "{status:?}");
    let logs = runner.read_log(handle.run(), "main", 64 * 1024).await?;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].tail, "step 1\nstep 2\ndone\n");
    assert!(!logs[0].truncated);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn exit_three_fails_with_the_real_exit_code_and_the_last_log_lines() -> anyhow::Result<()> {
    let (client, ns) = setup("real-exit").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "realex01");
    let script = "for i in 1 2 3; do echo line $i; done; echo bad input >&2; exit 3";
    let mut handle = runner
        .submit(&real(&run, &busybox(), script, "64Mi"))
        .await?
        .handle;
    let status = wait_terminal(&mut handle).await?;
    let failure = failure(&status);
    assert!(
        matches!(&failure.cause, FailureCause::ExitCode { container, code: 3, .. } if container == "main"),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("exited with code 3"),
        "{}",
        failure.message
    );
    let diagnostics = status
        .diagnostics
        .as_ref()
        .expect("diagnostics of a failed run");
    let log = diagnostics
        .logs
        .iter()
        .find(|l| l.container == "main")
        .expect("main's log");
    // stdout and stderr reach the CRI log through separate pipes: their relative order
    // is not kept, the order within each stream is.
    let stdout: Vec<&str> = log.tail.lines().filter(|l| l.starts_with("line")).collect();
    assert_eq!(stdout, ["line 1", "line 2", "line 3"], "{}", log.tail);
    assert!(log.tail.lines().any(|l| l == "bad input"), "{}", log.tail);
    assert_eq!(log.tail.lines().count(), 4, "{}", log.tail);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn allocating_past_the_memory_limit_is_a_real_oom_kill() -> anyhow::Result<()> {
    let (client, ns) = setup("real-oom").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "realoom1");
    // The string doubles until the memory cgroup's limit kills the shell.
    let script = "echo allocating; x=0123456789abcdef; while true; do x=$x$x; done";
    let mut handle = runner
        .submit(&real(&run, &busybox(), script, "32Mi"))
        .await?
        .handle;
    let status = wait_terminal(&mut handle).await?;
    let failure = failure(&status);
    assert!(
        matches!(&failure.cause, FailureCause::OomKilled { container, memory_limit: Some(limit), .. }
            if container == "main" && limit == "32Mi"),
        "{failure:?}"
    );
    assert!(
        failure.message.contains("memory limit 32Mi"),
        "{}",
        failure.message
    );
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn an_image_missing_from_the_registry_fails_as_an_image_pull_naming_it() -> anyhow::Result<()>
{
    let (client, ns) = setup("real-pull").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "realpul1");
    let missing = images::reference("no-such-image:1");
    let mut handle = runner
        .submit(&real(&run, &missing, "true", "64Mi"))
        .await?
        .handle;
    let status = wait_terminal(&mut handle).await?;
    let failure = failure(&status);
    assert!(
        matches!(&failure.cause, FailureCause::ImagePull { container, image, .. }
            if container == "main" && image == &missing),
        "{failure:?}"
    );
    assert!(failure.message.contains(&missing), "{}", failure.message);
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn a_crash_looping_container_is_classified_from_the_kubelets_real_back_off()
-> anyhow::Result<()> {
    let (client, ns) = setup("real-crash").await?;
    let runner = Runner::new(client, config());
    let mut run = JobRun::new(&ns.name, "realcra1");
    run.restart_policy = "OnFailure";
    run.backoff_limit = 2;
    let script = "echo crashing; exit 1";
    let mut handle = runner
        .submit(&real(&run, &busybox(), script, "64Mi"))
        .await?
        .handle;
    let status = wait_terminal(&mut handle).await?;
    let failure = failure(&status);
    assert!(
        matches!(&failure.cause, FailureCause::CrashLoop { container, last_exit_code: Some(1), .. }
            if container == "main"),
        "{failure:?}"
    );
    ns.cleanup().await;
    Ok(())
}
