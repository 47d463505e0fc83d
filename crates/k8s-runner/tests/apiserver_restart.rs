//! A watch survives an API-server restart (its own test binary: the restart would disturb
//! other tests sharing the cluster).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{JobRun, config, wait_status, wait_terminal};
use rlaunch_k8s_runner::{RunState, Runner};
use rlaunch_testkit::annotations::{self, outcome};

#[tokio::test]
async fn watch_survives_an_apiserver_restart_and_sees_the_terminal_state() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("restart").await?;
    let runner = Runner::new(client, config());
    let run = JobRun::new(&ns.name, "restart1")
        .outcome(outcome::SUCCEED)
        .annotation(annotations::RUN_SECONDS, "25");
    let mut handle = runner.submit(&run.rendered()).await?.handle;
    wait_status(&mut handle, "running", |s| s.state == RunState::Running).await?;
    cluster.restart_apiserver().await?;
    let status = wait_terminal(&mut handle).await?;
    assert_eq!(status.state, RunState::Finished, "{status:?}");
    ns.cleanup().await;
    Ok(())
}
