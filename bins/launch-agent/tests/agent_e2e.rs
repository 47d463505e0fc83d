//! The real `launch-agent` binary against the fake W&B and the testkit cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{AgentProcess, active_jobs, eventually, image_item, queue, simulate_wandb_init};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState, NewItem};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_items_on_two_queues_finish_under_max_jobs_and_sigterm_exits_cleanly()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-e2e").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let succeed = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "2"});
    fake.create_queue(queue("queue-a", &ns.name, succeed.clone()))
        .unwrap();
    // queue-b's runs each take one GPU, for the GPU-seconds metric.
    let mut gpu_queue = queue("queue-b", &ns.name, succeed);
    gpu_queue.config["resource_args"]["kubernetes"]["spec"]["template"]["spec"] = json!({
        "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    });
    fake.create_queue(gpu_queue).unwrap();
    let mut bad = queue("queue-bad", &ns.name, json!({}));
    bad.config["resource_args"]["kubernetes"]["spec"]["template"]["spec"] =
        json!({"hostNetwork": true});
    fake.create_queue(bad).unwrap();
    let mut good = Vec::new();
    for i in 0..50 {
        let name = if i % 2 == 0 { "queue-a" } else { "queue-b" };
        good.push(fake.push_item(image_item(name, "e2e")).unwrap());
    }
    let bad_config_item = fake.push_item(image_item("queue-bad", "e2e")).unwrap();
    let malformed_item = fake
        .push_item(NewItem {
            run_spec: json!("{not json"),
            ..image_item("queue-a", "e2e")
        })
        .unwrap();
    let _sdk = simulate_wandb_init(fake.clone());

    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [queue-a, queue-b, queue-bad]\nmax_jobs: 10\npoll_interval: 0.3\ninit_check_timeout: 30\ntarget_namespaces: [{ns}]\nidentity: e2e-{ns}\n",
        ns = ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;

    // Sample the cluster while the agent works.
    let max_seen = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (client, namespace, max_seen) = (client.clone(), ns.name.clone(), max_seen.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(active) = active_jobs(&client, &namespace).await {
                    max_seen.fetch_max(active, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let outcome = eventually("every item to reach its end", WAIT, || async {
        anyhow::ensure!(!agent.has_exited(), "the agent exited early");
        let items = fake.items();
        let good_done = good.iter().all(|id| {
            items
                .iter()
                .any(|i| &i.id == id && i.state == ItemState::Claimed && i.failure.is_none())
        });
        let bad_done = [&bad_config_item, &malformed_item].iter().all(|id| {
            items
                .iter()
                .any(|i| &i.id == *id && i.state == ItemState::Failed)
        });
        let complete = active_jobs(&client, &ns.name).await? == 0;
        let Ok((_, metrics)) = agent.http_get(agent.metrics_port, "/metrics").await else {
            return Ok(None);
        };
        let idle = metrics
            .lines()
            .filter(|l| l.starts_with("rlaunch_agent_jobs{"))
            .all(|l| l.ends_with(" 0"));
        Ok((good_done && bad_done && complete && idle).then_some(metrics))
    })
    .await;
    sampler.abort();
    let metrics = match outcome {
        Ok(metrics) => metrics,
        Err(error) => panic!(
            "{error}\nitems: {:#?}\nagent log:\n{}",
            fake.items(),
            agent.log_text()
        ),
    };

    assert!(
        max_seen.load(Ordering::SeqCst) <= 10,
        "saw {} active Jobs with max_jobs 10",
        max_seen.load(Ordering::SeqCst)
    );
    assert!(
        max_seen.load(Ordering::SeqCst) >= 2,
        "jobs ran concurrently"
    );
    let items = fake.items();
    for name in ["queue-a", "queue-b"] {
        assert!(
            items
                .iter()
                .filter(|i| i.queue == name && i.state == ItemState::Claimed)
                .count()
                == 25,
            "{name} served"
        );
    }
    let bad = items.iter().find(|i| i.id == bad_config_item).unwrap();
    let failure = bad.failure.as_ref().unwrap();
    assert_eq!(failure.stage, "agent");
    assert!(
        failure.message.contains("hostNetwork"),
        "{}",
        failure.message
    );
    assert!(
        bad.associated_run_id.is_none(),
        "a bad config fails before ack"
    );
    assert_eq!(
        failure.file_paths,
        vec![format!("{bad_config_item}/error/error.log")]
    );
    let malformed = items.iter().find(|i| i.id == malformed_item).unwrap();
    assert_eq!(malformed.failure.as_ref().unwrap().stage, "agent");
    assert!(
        metrics.contains("rlaunch_agent_items_acked_total{queue=\"queue-a\"} 25"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rlaunch_agent_items_failed_total{queue=\"queue-bad\",stage=\"agent\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rlaunch_agent_pop_to_created_seconds_count{queue=\"queue-b\"} 25"),
        "{metrics}"
    );
    for step in [
        "queue_wait",
        "pop_to_created",
        "created_to_scheduled",
        "scheduled_to_running",
    ] {
        let count = format!("rlaunch_agent_{step}_seconds_count{{queue=\"queue-a\"}}");
        assert!(metrics.contains(&count), "time to GPU: {count}\n{metrics}");
    }
    assert!(
        metrics.contains("rlaunch_agent_queue_wait_seconds_count{queue=\"queue-b\"} 25"),
        "{metrics}"
    );
    let gpu_seconds = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(&format!(
                "rlaunch_agent_gpu_seconds_total{{queue=\"queue-b\",entity=\"{FAKE_ENTITY}\"}} "
            ))
        })
        .and_then(|value| value.parse::<f64>().ok());
    assert!(
        gpu_seconds.is_some_and(|s| s > 0.0),
        "the GPU queue's runs used GPU-seconds: {gpu_seconds:?}\n{metrics}"
    );
    assert!(
        !metrics.contains("rlaunch_agent_gpu_seconds_total{queue=\"queue-a\""),
        "queue-a's runs request no GPU\n{metrics}"
    );
    let (status, body) = agent.http_get(agent.health_port, "/readyz").await?;
    assert_eq!(status, 200, "{body}");
    let log = agent.log_text();
    assert!(
        !log.contains(rlaunch_wandb_fake::FAKE_API_KEY),
        "the API key never reaches the log"
    );

    agent.signal("TERM")?;
    let exit = tokio::time::timeout(Duration::from_secs(60), agent.child.wait()).await??;
    assert!(exit.success(), "exit status {exit:?}\n{}", agent.log_text());
    let agents = fake.agents();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].status.as_deref(), Some("KILLED"));
    eprintln!("agent log:\n{}", agent.log_text());
    ns.cleanup().await;
    Ok(())
}
