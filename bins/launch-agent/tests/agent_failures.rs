//! Each failure class reaches W&B as `failRunQueueItem` with its stage and a message
//! naming the cause; `stopPolling` ends the agent with `KILLED` and exit 0.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually, image_item, queue, simulate_wandb_init};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_class_is_reported_with_its_stage_and_cause() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("agent-failures").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let oom = json!({annotations::OUTCOME: outcome::OOM, annotations::RUN_SECONDS: "1"});
    let exit3 = json!({annotations::OUTCOME: outcome::FAIL, annotations::EXIT_CODE: "3", annotations::RUN_SECONDS: "1"});
    let succeed = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "1"});
    fake.create_queue(queue("oom", &ns.name, oom)).unwrap();
    fake.create_queue(queue("exit", &ns.name, exit3)).unwrap();
    fake.create_queue(queue("ok", &ns.name, succeed.clone()))
        .unwrap();
    let mut huge = queue("huge", &ns.name, succeed);
    huge.config["resource_args"]["kubernetes"]["spec"]["template"]["spec"] = json!({
        "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "64"}}}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    });
    fake.create_queue(huge).unwrap();
    let oom_item = fake.push_item(image_item("oom", "failures")).unwrap();
    let exit_item = fake.push_item(image_item("exit", "failures")).unwrap();
    let huge_item = fake.push_item(image_item("huge", "failures")).unwrap();
    let no_init_item = fake.push_item(image_item("ok", "never-init")).unwrap();
    let ok_item = fake.push_item(image_item("ok", "failures")).unwrap();
    // A job that needs a Dockerfile built, with the no-op builder: a `build` failure.
    fake.add_artifact(rlaunch_wandb_fake::NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "failures".to_owned(),
        name: "job-dockerfile".to_owned(),
        aliases: Vec::new(),
        files: std::collections::BTreeMap::from([(
            "wandb-job.json".to_owned(),
            json!({"source_type": "repo", "source": {"git": {"remote": "https://git.example/r.git", "commit": "abc"}, "dockerfile": "Dockerfile.train", "entrypoint": ["python", "train.py"]}}).to_string(),
        )]),
    });
    let mut build = image_item("ok", "failures");
    build.run_spec = json!({"entity": FAKE_ENTITY, "project": "failures", "job": format!("{FAKE_ENTITY}/failures/job-dockerfile:latest")});
    let build_item = fake.push_item(build).unwrap();
    // The run spec's own `builder` block, which this agent's config does not let runs
    // set: failed before the ack, naming the key and the agent setting.
    let mut own_builder = image_item("ok", "failures");
    own_builder.run_spec["builder"] = json!({"type": "kaniko"});
    let own_builder_item = fake.push_item(own_builder).unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [oom, exit, huge, ok]\nmax_jobs: -1\npoll_interval: 0.3\ninit_check_timeout: 3\ntarget_namespaces: [{}]\nidentity: failures-{}\n",
        ns.name, ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let failing = [
        &oom_item,
        &exit_item,
        &huge_item,
        &no_init_item,
        &build_item,
        &own_builder_item,
    ];
    let done = eventually(
        "every failing item to be failed",
        Duration::from_secs(240),
        || async {
            let items = fake.items();
            let all = failing.iter().all(|id| {
                items
                    .iter()
                    .any(|i| &i.id == *id && i.state == ItemState::Failed)
            });
            Ok(all.then_some(items))
        },
    )
    .await;
    let items = match done {
        Ok(items) => items,
        Err(error) => panic!(
            "{error}\nitems: {:#?}\nagent log:\n{}",
            fake.items(),
            agent.log_text()
        ),
    };
    let failure = |id: &str| {
        items
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .failure
            .clone()
            .unwrap()
    };

    let oom = failure(&oom_item);
    assert_eq!(oom.stage, "run");
    assert!(oom.message.contains("OOMKilled"), "{}", oom.message);
    let exit = failure(&exit_item);
    assert_eq!(exit.stage, "run");
    assert!(exit.message.contains("code 3"), "{}", exit.message);
    let huge = failure(&huge_item);
    assert_eq!(huge.stage, "agent");
    assert!(
        huge.message.contains("never be scheduled") && huge.message.contains("nvidia.com/gpu"),
        "{}",
        huge.message
    );
    let no_init = failure(&no_init_item);
    assert_eq!(no_init.stage, "run");
    assert!(
        no_init.message.contains("failed to call wandb.init"),
        "{}",
        no_init.message
    );
    let build = failure(&build_item);
    assert_eq!(build.stage, "build");
    assert!(
        build.message.contains("Dockerfile.train") && build.message.contains("builder"),
        "{}",
        build.message
    );
    let own_builder = failure(&own_builder_item);
    assert_eq!(own_builder.stage, "agent");
    assert!(
        own_builder.message.contains("`builder.type`")
            && own_builder.message.contains("builder.run-spec-overrides"),
        "{}",
        own_builder.message
    );
    let unacked = items.iter().find(|i| i.id == own_builder_item).unwrap();
    assert_eq!(
        unacked.ack_attempts, 0,
        "failed before the ack: {unacked:#?}"
    );
    // User errors are never retried: one ack each, nothing requeued.
    for id in [&oom_item, &exit_item] {
        let item = items.iter().find(|i| &i.id == id).unwrap();
        assert_eq!(item.ack_attempts, 1, "{item:#?}");
    }
    assert_eq!(items.len(), 7, "nothing was requeued: {items:#?}");
    let files = fake.files();
    let oom_file = files
        .iter()
        .find(|(path, _)| path.ends_with(&format!("{oom_item}/error/error.log")))
        .map(|(_, text)| text.clone())
        .expect("the OOM error file was uploaded");
    assert!(
        oom_file.contains("reason:") && oom_file.contains("OOMKilled"),
        "{oom_file}"
    );
    assert!(!oom_file.contains(rlaunch_wandb_fake::FAKE_API_KEY));
    let ok = items.iter().find(|i| i.id == ok_item).unwrap();
    assert!(ok.failure.is_none(), "{ok:?}");

    let agent_id = fake.agents()[0].id.clone();
    fake.set_stop_polling(&agent_id, true).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(60), agent.child.wait()).await??;
    assert!(exit.success(), "{exit:?}\n{}", agent.log_text());
    assert_eq!(fake.agents()[0].status.as_deref(), Some("KILLED"));
    ns.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_api_key_stops_polling_and_fails_readyz_without_exiting() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(rlaunch_wandb_fake::NewQueue::new(FAKE_ENTITY, "q"))
        .unwrap();
    let mut agent = AgentProcess::start_with_key(
        &fake,
        cluster.kubeconfig_path(),
        "entity: fake-entity\nqueues: [q]\npoll_interval: 0.2\n",
        "wrong-key-0000000000000000000000000000000",
    )
    .await?;
    let body = eventually(
        "readyz to explain the refused key",
        Duration::from_secs(60),
        || async {
            Ok(match agent.http_get(agent.health_port, "/readyz").await {
                Ok((503, body)) if body.contains("not polling") => Some(body),
                _ => None,
            })
        },
    )
    .await?;
    assert!(body.contains("API key"), "{body}");
    assert!(!body.contains("wrong-key"), "{body}");
    assert!(
        fake.journal_of("popFromRunQueue").is_empty(),
        "never pops without a valid key"
    );
    let (live, _) = agent.http_get(agent.health_port, "/livez").await?;
    assert_eq!(live, 200, "alive, not crash-looping");
    agent.signal("TERM")?;
    let exit = tokio::time::timeout(Duration::from_secs(60), agent.child.wait()).await??;
    assert!(exit.success(), "{exit:?}\n{}", agent.log_text());
    let log = agent.log_text();
    assert!(
        log.matches("W&B refuses the API key").count() == 1,
        "one clear line:\n{log}"
    );
    Ok(())
}
