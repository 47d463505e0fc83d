//! Two replicas with leader election: only the Lease holder pops; when it is killed
//! mid-burst the standby takes over, adopts what it left, and every item ends with exactly
//! one workload and exactly one terminal report.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::chaos::{poppers, readyz};
use common::{
    AgentProcess, eventually, image_item, jobs_by_item, queue, record_jobs, simulate_wandb_init,
};
use kube::api::Api;
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, ItemState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);
const ITEMS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_a_killed_leader_without_doubling_anything() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-ha").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let oom = json!({annotations::OUTCOME: outcome::OOM, annotations::RUN_SECONDS: "10"});
    fake.create_queue(queue("burst", &ns.name, oom)).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [burst]\nmax_jobs: 3\npoll_interval: 0.3\ninit_check_timeout: 5\ntarget_namespaces: [{ns}]\nidentity: ha-{ns}\nleader_election: true\nlease_namespace: {ns}\nlease_duration_seconds: 4\nrenew_deadline_seconds: 3\nretry_period_seconds: 1\n",
        ns = ns.name
    );
    let start = |pod: &'static str| {
        let (fake, kubeconfig, config) = (
            fake.clone(),
            cluster.kubeconfig_path().to_owned(),
            config.clone(),
        );
        async move {
            AgentProcess::start_with_env(
                &fake,
                &kubeconfig,
                &config,
                FAKE_API_KEY,
                &[("POD_NAME", pod)],
            )
            .await
        }
    };
    let (seen_jobs, recorder) = record_jobs(client.clone(), ns.name.clone());
    let a = start("agent-a").await?;
    let b = start("agent-b").await?;

    // One leads and polls, the other is a ready standby.
    let (leader_is_a, standby_body) = eventually("one leader and one standby", WAIT, || async {
        Ok(match (readyz(&a).await, readyz(&b).await) {
            (Some(x), Some(y)) if x.contains("polling") && y.contains("standby") => Some((true, y)),
            (Some(x), Some(y)) if y.contains("polling") && x.contains("standby") => {
                Some((false, x))
            }
            _ => None,
        })
    })
    .await?;
    assert!(standby_body.starts_with("standby"), "{standby_body}");
    let (mut leader, standby) = if leader_is_a { (a, b) } else { (b, a) };

    let items: Vec<String> = (0..ITEMS)
        .map(|_| fake.push_item(image_item("burst", "ha")).unwrap())
        .collect();
    // Mid-burst: the leader's three slots hold workloads, three items still wait.
    eventually("the leader to launch three workloads", WAIT, || async {
        let claimed = fake
            .items()
            .iter()
            .filter(|i| i.state == ItemState::Claimed)
            .count();
        let jobs: usize = jobs_by_item(&client, &ns.name)
            .await?
            .values()
            .map(BTreeSet::len)
            .sum();
        Ok((claimed == 3 && jobs == 3).then_some(()))
    })
    .await?;
    let before_kill = poppers(&fake);
    assert_eq!(
        before_kill.len(),
        1,
        "only the leader pops: {before_kill:?}"
    );
    leader.signal("KILL")?;
    leader.child.wait().await?;

    // The standby takes the Lease once it expires, adopts, and finishes the burst.
    eventually("the standby to lead", WAIT, || async {
        Ok(readyz(&standby).await.filter(|b| b.contains("polling")))
    })
    .await?;
    let done = eventually("every item to be reported", WAIT, || async {
        let all = fake.items();
        let ended = all
            .iter()
            .filter(|i| items.contains(&i.id) && i.state == ItemState::Failed)
            .count();
        Ok((ended == ITEMS).then_some(all))
    })
    .await;
    let all = match done {
        Ok(all) => all,
        Err(error) => panic!(
            "{error}\nitems: {:#?}\nlog:\n{}",
            fake.items(),
            standby.log_text()
        ),
    };
    recorder.abort();
    let jobs = seen_jobs.lock().unwrap().clone();
    for item in all.iter().filter(|i| items.contains(&i.id)) {
        assert_eq!(
            jobs.get(&item.id).map(BTreeSet::len),
            Some(1),
            "one workload for {}: {jobs:?}",
            item.id
        );
        let failure = item.failure.as_ref().unwrap();
        assert!(failure.message.contains("OOMKilled"), "{failure:?}");
        assert!(item.later_failures.is_empty(), "reported twice: {item:#?}");
        assert_eq!(item.ack_attempts, 1, "acked once: {item:#?}");
    }
    assert_eq!(
        jobs.values().map(BTreeSet::len).sum::<usize>(),
        ITEMS,
        "{jobs:?}"
    );
    let after = poppers(&fake);
    assert_eq!(
        after.len(),
        2,
        "the new leader registered and popped: {after:?}"
    );
    assert!(after.is_superset(&before_kill));
    let metrics = standby.http_get(standby.metrics_port, "/metrics").await?.1;
    assert!(
        metrics.contains("rlaunch_agent_runs_adopted_total 3"),
        "{metrics}"
    );

    let mut standby = standby;
    standby.signal("TERM")?;
    assert!(standby.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_its_lease_stops_silently_and_exits_non_zero() -> anyhow::Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};

    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-ha-lost").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let run = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "60"});
    fake.create_queue(queue("q", &ns.name, run)).unwrap();
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [q]\npoll_interval: 0.3\ntarget_namespaces: [{ns}]\nidentity: lost-{ns}\nleader_election: true\nlease_name: the-lease\nlease_namespace: {ns}\nlease_duration_seconds: 4\nrenew_deadline_seconds: 3\nretry_period_seconds: 1\n",
        ns = ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    eventually("the agent to lead", WAIT, || async {
        Ok(readyz(&agent).await.filter(|b| b.contains("polling")))
    })
    .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns.name);
    let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    ))?;
    let steal = json!({"spec": {
        "holderIdentity": "another-replica",
        "leaseDurationSeconds": 600,
        "acquireTime": now,
        "renewTime": now,
    }});
    leases
        .patch("the-lease", &PatchParams::default(), &Patch::Merge(&steal))
        .await?;
    let status = agent.child.wait().await?;
    let log = agent.log_text();
    assert!(
        !status.success(),
        "exits non-zero to restart as a standby\n{log}"
    );
    assert!(log.contains("lost the Lease"), "{log}");
    let statuses = fake
        .agents()
        .iter()
        .flat_map(|a| a.status_history.clone())
        .collect::<Vec<_>>();
    assert!(
        !statuses.iter().any(|s| s == "KILLED"),
        "a replica that lost the Lease sends nothing more: {statuses:?}"
    );
    ns.cleanup().await;
    Ok(())
}
