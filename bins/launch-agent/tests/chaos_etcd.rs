//! Chaos: etcd killed (SIGKILL) mid-burst and left down for 20 s, then started again on
//! its data dir. kube-apiserver stays up but fails every read and write meanwhile; every
//! item still ends with one workload and one terminal report. Part of `cargo xtask chaos`;
//! the seed picks after how many Jobs etcd goes down.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::chaos::{Scenario, burst_with_fault};

const SEED: u64 = 0xc4a0_e7cd;
/// How long etcd stays down (the figure).
const DOWN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_etcd_stopped_for_20_s_loses_and_doubles_nothing() -> anyhow::Result<()> {
    let mut scenario = Scenario::start("etcd-down", SEED);
    burst_with_fault(&mut scenario, |cluster, log| async move {
        cluster.stop_etcd().await?;
        log.step(format!("etcd killed; down for {} s", DOWN.as_secs()));
        tokio::time::sleep(DOWN).await;
        cluster.start_etcd().await?;
        log.step("etcd started again on its data dir; kube-apiserver ready");
        Ok(())
    })
    .await
}
