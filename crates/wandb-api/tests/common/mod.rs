//! Shared set-up: a fake W&B and a client with short retry waits.

#![allow(dead_code, reason = "each test binary uses a subset")]
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{
    AgentStatus, Client, ClientConfig, FailureStage, NewLaunchAgent, PushRequest, QueueAccess,
    RunFile,
};
use rlaunch_wandb_fake::{
    FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeWandb, NewArtifact, NewItem, NewQueue,
};
use serde_json::{Value, json};

pub const QUEUE: &str = "k8s-queue";
pub const PROJECT: &str = "model-registry";

pub fn config_for(fake: &FakeWandb, key: &str) -> ClientConfig {
    let mut config = ClientConfig::new(fake.base_url.clone(), ApiKey::new(key));
    config.timeout = Duration::from_secs(10);
    config.retry_deadline = Duration::from_secs(20);
    config.retry_min_wait = Duration::from_millis(20);
    config.retry_max_wait = Duration::from_millis(200);
    config.user_agent = "wandb-api-tests".to_owned();
    config
}

pub fn client_for(fake: &FakeWandb) -> Client {
    Client::new(config_for(fake, FAKE_API_KEY)).unwrap()
}

pub async fn start() -> (FakeWandb, Client) {
    start_with(FakeConfig::default()).await
}

pub async fn start_with(config: FakeConfig) -> (FakeWandb, Client) {
    let fake = FakeWandb::start_with(config).await.unwrap();
    fake.create_queue(NewQueue {
        config: json!({"resource_args": {"kubernetes": {"metadata": {"labels": {"team": "ml"}}}}}),
        ..NewQueue::new(FAKE_ENTITY, QUEUE)
    })
    .unwrap();
    let client = client_for(&fake);
    (fake, client)
}

pub fn image_spec() -> Value {
    json!({
        "entity": FAKE_ENTITY,
        "project": "launch-test",
        "docker": {"docker_image": "busybox:1.36"},
        "overrides": {"entry_point": ["sh", "-c", "echo hi"]},
        "_wandb_api_key": "per-run-secret-key-0123456789",
    })
}

pub fn push(fake: &FakeWandb, run_spec: Value, priority: Option<i64>) -> String {
    fake.push_item(NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: PROJECT.to_owned(),
        queue: QUEUE.to_owned(),
        run_spec,
        priority,
    })
    .unwrap()
}

/// Runs every operation once, the agent's way round. Failures are ignored: the point is the
/// traffic.
pub async fn exercise(fake: &FakeWandb, client: &Client) {
    let item_id = push(fake, image_spec(), None);
    let _ = client.viewer().await;
    let queues = client
        .project_run_queues(FAKE_ENTITY, PROJECT)
        .await
        .unwrap_or_default();
    let _ = client
        .create_run_queue(
            FAKE_ENTITY,
            "other-project",
            "default",
            QueueAccess::Project,
        )
        .await;
    let agent_id = client
        .create_launch_agent(&NewLaunchAgent {
            entity: FAKE_ENTITY.to_owned(),
            project: PROJECT.to_owned(),
            queue_ids: queues.iter().map(|q| q.id.clone()).collect(),
            hostname: "test-host".to_owned(),
            agent_config: Some(json!({"entity": FAKE_ENTITY, "max_jobs": 1, "queues": [QUEUE]})),
            version: Some("rlaunch@0.1.0".to_owned()),
        })
        .await
        .unwrap_or_default();
    let _ = client.entity_is_team(FAKE_ENTITY).await;
    let agent_name = client
        .launch_agent(&agent_id)
        .await
        .map(|agent| agent.name)
        .unwrap_or_default();
    let _ = client
        .update_launch_agent(&agent_id, AgentStatus::Polling)
        .await;
    let _ = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, Some(&agent_id))
        .await;
    let _ = client.ack_run_queue_item(&item_id, "rezuv9bt").await;
    let _ = client
        .run_queue_item_info(FAKE_ENTITY, PROJECT, QUEUE, &item_id)
        .await;
    let _ = client
        .update_run_queue_item_warning(&item_id, FailureStage::Kubernetes, "pod pending", &[])
        .await;
    let _ = client
        .run_stopped(FAKE_ENTITY, "launch-test", "rezuv9bt")
        .await;
    let _ = client
        .run_state(FAKE_ENTITY, "launch-test", "rezuv9bt")
        .await;
    let _ = client
        .upsert_run(FAKE_ENTITY, PROJECT, &agent_name, Some("sweep-controller"))
        .await;
    let paths = client
        .upload_run_files(
            FAKE_ENTITY,
            PROJECT,
            &agent_name,
            &[RunFile {
                path: format!("{item_id}/error/error.log"),
                contents: b"boom".to_vec(),
            }],
        )
        .await
        .unwrap_or_default();
    let _ = client
        .fail_run_queue_item(
            &item_id,
            FailureStage::Run,
            "never called wandb.init",
            &paths,
        )
        .await;
    let _ = client
        .fail_run_queue_item(&item_id, FailureStage::Agent, "no files", &[])
        .await;
    let _ = client
        .push_to_run_queue_by_name(&PushRequest {
            entity: FAKE_ENTITY.to_owned(),
            project: PROJECT.to_owned(),
            queue: QUEUE.to_owned(),
            run_spec: json!({"entity": FAKE_ENTITY, "project": "launch-test", "docker": {"docker_image": "busybox:1.36"}}),
            priority: Some(2),
            template_variables: None,
        })
        .await;
    fake.add_artifact(NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "launch-test".to_owned(),
        name: "job-busybox".to_owned(),
        aliases: vec![],
        files: [("wandb-job.json".to_owned(), "{}".to_owned())].into(),
    });
    if let Ok(artifact) = client
        .artifact(FAKE_ENTITY, "launch-test", "job-busybox:latest")
        .await
    {
        let _ = client
            .download_artifact_files(&artifact, &["wandb-job.json"])
            .await;
    }
    let _ = client
        .update_launch_agent(&agent_id, AgentStatus::Killed)
        .await;
}
