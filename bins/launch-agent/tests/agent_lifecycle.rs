//! Stop from the W&B UI and preemption requeue, through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually, image_item, queue, simulate_wandb_init};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState, NewItem};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

async fn jobs(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<Job>> {
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_from_the_ui_cancels_the_workload_once_without_failing_the_item()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-stop").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(queue(
        "forever",
        &ns.name,
        json!({annotations::OUTCOME: outcome::RUN_FOREVER}),
    ))
    .unwrap();
    let item = fake.push_item(image_item("forever", "stops")).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [forever]\npoll_interval: 0.3\nstopped_run_timeout: 1\ntarget_namespaces: [{}]\nidentity: stop-{}\n",
        ns.name, ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let run_id = eventually("the workload to run", WAIT, || async {
        let claimed = fake.item(&item).and_then(|i| i.associated_run_id);
        Ok(match claimed {
            Some(run_id) if !jobs(&client, &ns.name).await?.is_empty() => Some(run_id),
            _ => None,
        })
    })
    .await?;
    fake.stop_run(FAKE_ENTITY, "stops", &run_id);
    let gone = eventually("the workload to be cancelled", WAIT, || async {
        Ok(jobs(&client, &ns.name).await?.is_empty().then_some(()))
    })
    .await;
    if let Err(error) = gone {
        panic!("{error}\n{}", agent.log_text());
    }
    eventually("the agent to be idle", WAIT, || async {
        let (_, metrics) = agent.http_get(agent.metrics_port, "/metrics").await?;
        Ok(metrics
            .lines()
            .filter(|l| l.starts_with("rlaunch_agent_jobs{"))
            .all(|l| l.ends_with(" 0"))
            .then_some(()))
    })
    .await?;
    let item = fake.item(&item).unwrap();
    assert_eq!(
        item.state,
        ItemState::Claimed,
        "a user's stop is not a failure: {item:?}"
    );
    assert!(item.failure.is_none());
    let log = agent.log_text();
    assert_eq!(
        log.matches("workload cancelled after a stop request")
            .count(),
        1,
        "{log}"
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preempted_run_is_requeued_with_resume_until_the_budget_is_spent() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-preempt").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let preempted =
        json!({annotations::OUTCOME: outcome::PREEMPTED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("spot", &ns.name, preempted))
        .unwrap();
    let first = fake
        .push_item_with_template_variables(
            NewItem {
                priority: Some(0),
                ..image_item("spot", "preempt")
            },
            json!({"gpu_type": "a100"}),
        )
        .unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [spot]\npoll_interval: 0.3\nretries: {{preemption: 1}}\ntarget_namespaces: [{}]\nidentity: preempt-{}\n",
        ns.name, ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    // Watch the second attempt's Job for WANDB_RESUME while it exists.
    let resumed_env = {
        let (client, namespace) = (client.clone(), ns.name.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = jobs(&client, &namespace).await {
                    for job in list {
                        let text = serde_json::to_string(&job).unwrap_or_default();
                        if text.contains("WANDB_RESUME") {
                            return text;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let items = eventually(
        "the requeued attempt to fail after the budget",
        WAIT,
        || async {
            let items = fake.items();
            let done = items.len() == 2
                && items
                    .iter()
                    .any(|i| i.id != first && i.state == ItemState::Failed);
            Ok(done.then_some(items))
        },
    )
    .await;
    let items = match items {
        Ok(items) => items,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    let original = items.iter().find(|i| i.id == first).unwrap();
    assert!(
        original.failure.is_none(),
        "the preempted attempt is requeued, not failed: {original:?}"
    );
    let second = items.iter().find(|i| i.id != first).unwrap();
    assert_eq!(
        second.associated_run_id, original.associated_run_id,
        "same run id: the run resumes"
    );
    assert_eq!(second.run_spec["_resume_count"], 1);
    assert_eq!(
        (second.priority, &second.template_variables),
        (0, &Some(json!({"gpu_type": "a100"}))),
        "the requeued item keeps the original's priority and template variables"
    );
    let failure = second.failure.as_ref().unwrap();
    assert_eq!(failure.stage, "run");
    assert!(
        failure.message.contains("already been resumed 1 times"),
        "{}",
        failure.message
    );
    let job = tokio::time::timeout(WAIT, resumed_env).await??;
    assert!(
        job.contains("\"name\":\"WANDB_RESUME\",\"value\":\"allow\""),
        "{job}"
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}

/// Evicts (Eviction API: `DisruptionTarget` `EvictionByEvictionAPI`) the running pod of
/// the first attempt: the run is requeued under the same run id and the second attempt,
/// on a queue whose pods succeed, finishes; the old attempt's pod never fails the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_run_is_requeued_and_finishes_on_the_second_attempt() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-evict").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let ok = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "6"});
    fake.create_queue(queue("spot", &ns.name, ok)).unwrap();
    let first = fake.push_item(image_item("spot", "evict")).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [spot]\npoll_interval: 0.3\ninit_check_timeout: 5\ntarget_namespaces: [{0}]\nidentity: evict-{0}\n",
        ns.name
    );
    let (seen, recorder) = common::record_jobs(client.clone(), ns.name.clone());
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let running = eventually("the first attempt's pod running", WAIT, || async {
        let list = pods.list(&ListParams::default()).await?.items;
        Ok(list
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")))
    })
    .await?;
    let first_job = jobs(&client, &ns.name).await?[0].metadata.uid.clone();
    pods.evict(
        running.metadata.name.as_deref().unwrap(),
        &kube::api::EvictParams::default(),
    )
    .await?;
    let done = eventually("the second attempt to finish", WAIT, || async {
        let items = fake.items();
        let second = items.iter().find(|i| i.id != first).cloned();
        let finished = match &second {
            Some(second) => {
                let ran = seen.lock().unwrap().contains_key(&second.id);
                ran && second.state == ItemState::Claimed
                    && jobs(&client, &ns.name).await?.is_empty()
            }
            None => false,
        };
        Ok(finished.then_some(items))
    })
    .await;
    let items = match done {
        Ok(items) => items,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    let original = items.iter().find(|i| i.id == first).unwrap();
    let second = items.iter().find(|i| i.id != first).unwrap();
    assert!(
        original.failure.is_none(),
        "requeued, not failed: {original:#?}"
    );
    assert!(
        second.failure.is_none(),
        "the second attempt finished: {second:#?}"
    );
    assert_eq!(second.associated_run_id, original.associated_run_id);
    assert_eq!(second.run_spec["_resume_count"], 1);
    assert_eq!(items.len(), 2, "requeued once: {items:#?}");
    recorder.abort();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.get(&first).map(|uids| uids.len()), Some(1), "{seen:?}");
    assert_eq!(
        seen.get(&second.id).map(|uids| uids.len()),
        Some(1),
        "{seen:?}"
    );
    assert_ne!(seen.get(&first), seen.get(&second.id), "a new workload");
    assert!(first_job.is_some());
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_503s_never_ends_the_agent_and_the_queue_drains_after() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("agent-storm").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let quick = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("storm", &ns.name, quick)).unwrap();
    let pushed: Vec<String> = (0..3)
        .map(|_| fake.push_item(image_item("storm", "storm")).unwrap())
        .collect();
    let _sdk = simulate_wandb_init(fake.clone());
    // Every operation answers 503 for the first 12 requests, registration included.
    fake.inject_fault(rlaunch_wandb_fake::Fault {
        operation: "*".to_owned(),
        count: 12,
        status: Some(503),
        retry_after: Some("0".to_owned()),
        ..rlaunch_wandb_fake::Fault::default()
    });
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [storm]\nmax_jobs: 2\npoll_interval: 0.3\ntarget_namespaces: [{}]\nidentity: storm-{}\n",
        ns.name, ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let drained = eventually(
        "the queue to drain after the storm",
        Duration::from_secs(300),
        || async {
            anyhow::ensure!(
                !agent.has_exited(),
                "the agent exited during the storm:\n{}",
                agent.log_text()
            );
            let items = fake.items();
            Ok(pushed
                .iter()
                .all(|id| {
                    items.iter().any(|i| {
                        &i.id == id && i.state == ItemState::Claimed && i.failure.is_none()
                    })
                })
                .then_some(()))
        },
    )
    .await;
    if let Err(error) = drained {
        panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text());
    }
    let answered_503 = fake.journal().iter().filter(|e| e.status == 503).count();
    assert_eq!(answered_503, 12, "the storm happened");
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
