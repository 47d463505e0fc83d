//! A killed agent's runs are adopted by the next one with the same identity: they count
//! against `max_jobs`, they are reported with their real queue, outcomes reached while no
//! agent ran are reported once, and a run preempted while no agent ran is requeued once.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{AgentProcess, active_jobs, eventually, image_item, queue, simulate_wandb_init};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

async fn jobs(client: &kube::Client, namespace: &str) -> anyhow::Result<usize> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items.len())
}

fn adopted(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with("rlaunch_agent_runs_adopted_total "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

async fn ready(agent: &AgentProcess) -> anyhow::Result<String> {
    eventually("the agent to be ready", WAIT, || async {
        Ok(match agent.http_get(agent.health_port, "/readyz").await {
            Ok((200, _)) => Some(agent.http_get(agent.metrics_port, "/metrics").await?.1),
            _ => None,
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_counts_and_reports_what_it_left() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-restart").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let slow = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "8"});
    let oom = json!({annotations::OUTCOME: outcome::OOM, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("slow", &ns.name, slow)).unwrap();
    let spot = json!({annotations::OUTCOME: outcome::PREEMPTED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("oom", &ns.name, oom)).unwrap();
    fake.create_queue(queue("spot", &ns.name, spot)).unwrap();
    let slow_item = fake.push_item(image_item("slow", "restart")).unwrap();
    let oom_item = fake.push_item(image_item("oom", "restart")).unwrap();
    let spot_item = fake.push_item(image_item("spot", "restart")).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = |max_jobs: i64| {
        format!(
            "entity: {FAKE_ENTITY}\nqueues: [slow, oom, spot]\nmax_jobs: {max_jobs}\npoll_interval: 0.3\ninit_check_timeout: 5\nretries: {{preemption: 1}}\ntarget_namespaces: [{}]\nidentity: restart-{}\n",
            ns.name, ns.name
        )
    };

    // The first agent creates the three workloads, then dies without a word.
    let mut first = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config(3)).await?;
    eventually("the three workloads to exist", WAIT, || async {
        let claimed = fake
            .items()
            .iter()
            .filter(|i| i.state == ItemState::Claimed)
            .count();
        Ok((claimed == 3 && jobs(&client, &ns.name).await? == 3).then_some(()))
    })
    .await?;
    first.signal("KILL")?;
    first.child.wait().await?;
    eventually(
        "the OOM and preempted Jobs to fail while no agent runs",
        WAIT,
        || async { Ok((active_jobs(&client, &ns.name).await? <= 1).then_some(())) },
    )
    .await?;
    let third = fake.push_item(image_item("slow", "restart")).unwrap();

    // The second agent (max_jobs 1) adopts all three: the running one holds the only slot.
    let max_active = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (client, namespace, max_active) = (client.clone(), ns.name.clone(), max_active.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(active) = active_jobs(&client, &namespace).await {
                    max_active.fetch_max(active, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut second = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config(1)).await?;
    let metrics = ready(&second).await?;
    assert_eq!(
        adopted(&metrics),
        Some(3),
        "{metrics}\n{}",
        second.log_text()
    );
    let outcome = eventually("every item to end", WAIT, || async {
        let items = fake.items();
        let oom_failed = items
            .iter()
            .any(|i| i.id == oom_item && i.state == ItemState::Failed);
        let third_claimed = items
            .iter()
            .any(|i| i.id == third && i.state == ItemState::Claimed);
        // The requeued attempt of the preempted run is preempted again: over the budget.
        let resumed_failed = items
            .iter()
            .any(|i| i.run_spec["_resume_count"] == 1 && i.state == ItemState::Failed);
        let idle =
            active_jobs(&client, &ns.name).await? == 0 && jobs(&client, &ns.name).await? == 0;
        Ok((oom_failed && third_claimed && resumed_failed && idle).then_some(items))
    })
    .await;
    sampler.abort();
    let items = match outcome {
        Ok(items) => items,
        Err(error) => panic!(
            "{error}\nitems: {:#?}\nlog:\n{}",
            fake.items(),
            second.log_text()
        ),
    };
    assert!(
        max_active.load(Ordering::SeqCst) <= 1,
        "adopted runs count against max_jobs"
    );
    let oom = items
        .iter()
        .find(|i| i.id == oom_item)
        .unwrap()
        .failure
        .clone()
        .unwrap();
    assert_eq!(oom.stage, "run");
    assert!(oom.message.contains("OOMKilled"), "{}", oom.message);
    assert!(
        items
            .iter()
            .find(|i| i.id == slow_item)
            .unwrap()
            .failure
            .is_none()
    );
    // Preempted while no agent ran: requeued once, under the same run id, with resume.
    let spot_original = items.iter().find(|i| i.id == spot_item).unwrap();
    assert!(
        spot_original.failure.is_none(),
        "the preempted run is requeued, not failed: {spot_original:?}"
    );
    let attempts: Vec<_> = items
        .iter()
        .filter(|i| i.associated_run_id == spot_original.associated_run_id)
        .collect();
    assert_eq!(attempts.len(), 2, "requeued exactly once: {attempts:#?}");
    let resumed = attempts.iter().find(|i| i.id != spot_item).unwrap();
    assert_eq!(resumed.run_spec["_resume_count"], 1);
    assert_eq!(resumed.queue, "spot", "requeued to the run's own queue");
    // Adopted runs are reported under their real queue, not a placeholder.
    let metrics = second.http_get(second.metrics_port, "/metrics").await?.1;
    for line in [
        "rlaunch_agent_items_failed_total{queue=\"oom\",stage=\"run\"} 1",
        "rlaunch_agent_items_requeued_total{queue=\"spot\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(!metrics.contains("unknown queue"), "{metrics}");
    second.signal("TERM")?;
    assert!(second.child.wait().await?.success());

    // A third start finds nothing left: each outcome was reported exactly once.
    let mut third_agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config(1)).await?;
    let metrics = ready(&third_agent).await?;
    assert_eq!(adopted(&metrics), Some(0), "{metrics}");
    let reports = fake
        .journal_of("failRunQueueItem")
        .iter()
        .filter(|e| {
            e.variables
                .as_ref()
                .is_some_and(|v| v["runQueueItemId"] == oom_item.as_str())
        })
        .count();
    assert_eq!(reports, 1, "the OOM outcome is reported once");
    third_agent.signal("TERM")?;
    assert!(third_agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
