//! Chaos: kube-apiserver restarted mid-burst (SIGTERM, SIGKILL after 5 s, started again on
//! the same port and etcd). The agent's watches break and its calls fail while it is gone;
//! every item still ends with one workload and one terminal report. Part of `cargo xtask
//! chaos`; the seed picks after how many Jobs the restart comes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::chaos::{Scenario, burst_with_fault};

const SEED: u64 = 0xc4a0_5a01;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kube_apiserver_restarted_mid_burst_loses_and_doubles_nothing() -> anyhow::Result<()>
{
    let mut scenario = Scenario::start("apiserver-restart", SEED);
    burst_with_fault(&mut scenario, |cluster, log| async move {
        log.step("restarting kube-apiserver");
        cluster.restart_apiserver().await?;
        log.step("kube-apiserver ready again");
        Ok(())
    })
    .await
}
