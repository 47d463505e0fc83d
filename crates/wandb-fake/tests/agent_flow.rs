//! What an end-to-end agent test drives and observes, through the real client: queues with a
//! Kubernetes template, priorities, acks, failures with files, agent status and heartbeats,
//! stop requests, run states, requeues, and faults.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{
    AgentStatus, Client, ClientConfig, Error, FailureStage, NewLaunchAgent, PoppedItem,
    PushRequest, RunFile,
};
use rlaunch_wandb_fake::{
    DEFAULT_PROJECT, DropPoint, FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeWandb, Fault,
    ItemOrigin, ItemState, NewItem, NewQueue,
};
use serde_json::{Value, json};

const QUEUE: &str = "gpu-queue";

fn client(fake: &FakeWandb) -> Client {
    let mut config = ClientConfig::new(fake.base_url.clone(), ApiKey::new(FAKE_API_KEY));
    config.retry_deadline = Duration::from_secs(60);
    config.retry_min_wait = Duration::from_millis(100);
    config.retry_max_wait = Duration::from_secs(5);
    Client::new(config).unwrap()
}

fn job_template() -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}}},
    })
}

fn spec(run_id: Option<&str>) -> Value {
    let mut spec = json!({
        "entity": FAKE_ENTITY,
        "project": "target-project",
        "docker": {"docker_image": "busybox:1.36"},
    });
    if let Some(run_id) = run_id {
        spec["run_id"] = json!(run_id);
    }
    spec
}

async fn start(config: FakeConfig) -> (FakeWandb, Client) {
    let fake = FakeWandb::start_with(config).await.unwrap();
    fake.create_queue(NewQueue::new(FAKE_ENTITY, QUEUE).with_kubernetes(job_template()))
        .unwrap();
    let client = client(&fake);
    (fake, client)
}

async fn register(fake: &FakeWandb, client: &Client) -> String {
    let queues = client
        .project_run_queues(FAKE_ENTITY, DEFAULT_PROJECT)
        .await
        .unwrap();
    client
        .create_launch_agent(&NewLaunchAgent {
            entity: FAKE_ENTITY.to_owned(),
            project: DEFAULT_PROJECT.to_owned(),
            queue_ids: queues.into_iter().map(|q| q.id).collect(),
            hostname: "test".to_owned(),
            agent_config: None,
            version: None,
        })
        .await
        .unwrap();
    fake.agents()[0].id.clone()
}

/// A default fake with a registered agent that has popped one pushed item: the fake, the
/// client and the item's id.
async fn popped_item() -> (FakeWandb, Client, String) {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    pop(&client, &agent_id).await.unwrap();
    (fake, client, id)
}

async fn pop(client: &Client, agent_id: &str) -> Option<PoppedItem> {
    client
        .pop_from_run_queue(FAKE_ENTITY, DEFAULT_PROJECT, QUEUE, Some(agent_id))
        .await
        .unwrap()
}

#[tokio::test]
async fn items_pop_by_priority_with_the_queue_template_applied() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let low = fake
        .push_item(NewItem {
            priority: Some(3),
            ..NewItem::new(FAKE_ENTITY, QUEUE, spec(None))
        })
        .unwrap();
    let high = fake
        .push_item(NewItem {
            priority: Some(0),
            ..NewItem::new(FAKE_ENTITY, QUEUE, spec(None))
        })
        .unwrap();
    let Some(PoppedItem::Valid(first)) = pop(&client, &agent_id).await else {
        panic!("expected a valid item");
    };
    assert_eq!(first.id, high);
    assert_eq!(first.run_spec.resource, "kubernetes");
    assert_eq!(
        first.run_spec.resource_args["kubernetes"],
        job_template(),
        "the queue's template reaches the agent"
    );
    assert_eq!(pop(&client, &agent_id).await.unwrap().id(), low);
    let leased = fake.item(&high).unwrap();
    assert_eq!(leased.state, ItemState::Leased);
    assert_eq!(leased.leased_by.as_deref(), Some(agent_id.as_str()));
    assert_eq!(leased.origin, ItemOrigin::Admin);
}

#[tokio::test]
async fn a_failure_is_seen_with_stage_message_and_its_uploaded_files() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let agent_name = fake.agent(&agent_id).unwrap().name;
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    pop(&client, &agent_id).await.unwrap();
    client
        .upsert_run(FAKE_ENTITY, DEFAULT_PROJECT, &agent_name, None)
        .await
        .unwrap();
    let path = format!("{id}/error/error.log");
    let paths = client
        .upload_run_files(
            FAKE_ENTITY,
            DEFAULT_PROJECT,
            &agent_name,
            &[RunFile {
                path: path.clone(),
                contents: b"OOMKilled: limit 1Gi\n".to_vec(),
            }],
        )
        .await
        .unwrap();
    client
        .fail_run_queue_item(
            &id,
            FailureStage::Run,
            "container main was OOMKilled",
            &paths,
        )
        .await
        .unwrap();
    let item = fake.item(&id).unwrap();
    assert_eq!(item.state, ItemState::Failed);
    let failure = item.failure.unwrap();
    assert_eq!(failure.stage, "run");
    assert_eq!(failure.message, "container main was OOMKilled");
    assert_eq!(
        fake.failure_files(&id).get(&path).map(String::as_str),
        Some("OOMKilled: limit 1Gi\n")
    );
    assert!(item.later_failures.is_empty());

    client
        .fail_run_queue_item(&id, FailureStage::Agent, "reported again", &[])
        .await
        .unwrap();
    let item = fake.item(&id).unwrap();
    assert_eq!(
        item.failure.unwrap().message,
        "container main was OOMKilled"
    );
    assert_eq!(item.later_failures.len(), 1, "a second report is visible");
}

#[tokio::test]
async fn agent_status_heartbeats_and_stop_polling_are_observable() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let before = fake.agent(&agent_id).unwrap().heartbeats;
    for status in [
        AgentStatus::Polling,
        AgentStatus::Running,
        AgentStatus::Polling,
    ] {
        assert!(client.update_launch_agent(&agent_id, status).await.unwrap());
    }
    client.launch_agent(&agent_id).await.unwrap();
    pop(&client, &agent_id).await;
    let agent = fake.agent(&agent_id).unwrap();
    assert_eq!(agent.status_history, ["POLLING", "RUNNING", "POLLING"]);
    assert_eq!(agent.status.as_deref(), Some("POLLING"));
    assert_eq!(
        agent.heartbeats,
        before + 5,
        "three updates, one launchAgent query and one pop"
    );

    fake.set_stop_polling(&agent_id, true).unwrap();
    assert!(client.launch_agent(&agent_id).await.unwrap().stop_polling);
    client
        .update_launch_agent(&agent_id, AgentStatus::Killed)
        .await
        .unwrap();
    let killed = fake
        .wait_until(|fake| {
            fake.agent(&agent_id)
                .filter(|agent| agent.status.as_deref() == Some("KILLED"))
        })
        .await;
    assert_eq!(
        killed.status_history.last().map(String::as_str),
        Some("KILLED")
    );
}

#[tokio::test]
async fn runs_start_finish_and_stop_on_the_target_project() {
    let mut config = FakeConfig {
        acked_run_state: "running".to_owned(),
        ..FakeConfig::default()
    };
    config
        .acked_run_states
        .insert("never-init".to_owned(), "pending".to_owned());
    let (fake, client) = start(config).await;
    let agent_id = register(&fake, &client).await;
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    pop(&client, &agent_id).await.unwrap();
    client.ack_run_queue_item(&id, "run00001").await.unwrap();
    let state = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .run_state(FAKE_ENTITY, "target-project", "run00001")
                .await
                .unwrap()
        }
    };
    assert_eq!(state(&client).await.as_deref(), Some("running"));
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, DEFAULT_PROJECT, "run00001")
            .await
            .unwrap(),
        None,
        "the run lives in the spec's project, not the queue's"
    );
    assert_eq!(fake.item(&id).unwrap().state, ItemState::Claimed);

    assert!(
        !client
            .run_stopped(FAKE_ENTITY, "target-project", "run00001")
            .await
            .unwrap()
    );
    fake.stop_run(FAKE_ENTITY, "target-project", "run00001");
    assert!(
        client
            .run_stopped(FAKE_ENTITY, "target-project", "run00001")
            .await
            .unwrap()
    );

    fake.set_run_state(FAKE_ENTITY, "target-project", "run00001", "finished");
    assert_eq!(fake.item(&id).unwrap().state, ItemState::Finished);
    assert_eq!(state(&client).await.as_deref(), Some("finished"));

    let mut forgetful = spec(None);
    forgetful["project"] = json!("never-init");
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, forgetful))
        .unwrap();
    pop(&client, &agent_id).await.unwrap();
    client.ack_run_queue_item(&id, "run00002").await.unwrap();
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, "never-init", "run00002")
            .await
            .unwrap()
            .as_deref(),
        Some("pending"),
        "a project listed in acked_run_states gets its own state"
    );
}

/// `upsertBucket` as `wandb.init` sends it (the SDK's document, not our client's).
async fn sdk_upsert_bucket(fake: &FakeWandb, run: &str, state: Option<&str>) -> Value {
    let mut variables = json!({"name": run, "project": "target-project", "entity": FAKE_ENTITY});
    if let Some(state) = state {
        variables["state"] = json!(state);
    }
    let body = json!({
        "query": "mutation UpsertBucket($name: String, $project: String, $entity: String, $state: String) { upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, state: $state}) { bucket { id name } inserted } }",
        "variables": variables,
    });
    reqwest::Client::new()
        .post(format!("{}/graphql", fake.base_url))
        .basic_auth("api", Some(FAKE_API_KEY))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn wandb_init_starts_a_pending_run_and_a_sent_state_wins() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    pop(&client, &agent_id).await.unwrap();
    client.ack_run_queue_item(&id, "run00003").await.unwrap();
    let state = || async {
        client
            .run_state(FAKE_ENTITY, "target-project", "run00003")
            .await
            .unwrap()
    };
    assert_eq!(
        state().await.as_deref(),
        Some("pending"),
        "acked, not inited"
    );
    let answer = sdk_upsert_bucket(&fake, "run00003", None).await;
    assert_eq!(
        answer["data"]["upsertBucket"]["inserted"],
        json!(false),
        "{answer}"
    );
    assert_eq!(state().await.as_deref(), Some("running"));
    sdk_upsert_bucket(&fake, "run00003", Some("crashed")).await;
    assert_eq!(state().await.as_deref(), Some("crashed"));
    sdk_upsert_bucket(&fake, "run00003", None).await;
    assert_eq!(
        state().await.as_deref(),
        Some("crashed"),
        "only a pending run is started"
    );
}

#[tokio::test]
async fn a_requeue_keeps_run_id_priority_and_template_variables() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let first = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(Some("resume01"))))
        .unwrap();
    let Some(PoppedItem::Valid(item)) = pop(&client, &agent_id).await else {
        panic!("expected a valid item");
    };
    client.ack_run_queue_item(&first, "resume01").await.unwrap();
    fake.set_run_state(FAKE_ENTITY, "target-project", "resume01", "running");

    let mut requeued = Value::Object(item.run_spec.as_raw().clone());
    requeued["_resume_count"] = json!(1);
    let pushed = client
        .push_to_run_queue_by_name(&PushRequest {
            entity: FAKE_ENTITY.to_owned(),
            project: DEFAULT_PROJECT.to_owned(),
            queue: QUEUE.to_owned(),
            run_spec: requeued,
            priority: Some(1),
            template_variables: Some(json!({"gpus": 2})),
        })
        .await
        .unwrap()
        .unwrap();
    let second = fake.item(&pushed.id).unwrap();
    assert_eq!(
        second.origin,
        ItemOrigin::Graphql {
            user: "fake-user".to_owned()
        }
    );
    assert_eq!(second.priority, 1);
    assert_eq!(second.template_variables, Some(json!({"gpus": 2})));
    assert_eq!(second.run_spec["run_id"], "resume01");
    assert_eq!(second.run_spec["_resume_count"], 1);
    assert_eq!(
        second.run_spec["resource_args"]["kubernetes"],
        job_template()
    );

    let Some(PoppedItem::Valid(again)) = pop(&client, &agent_id).await else {
        panic!("expected the requeued item");
    };
    assert_eq!(again.id, pushed.id);
    client
        .ack_run_queue_item(&again.id, "resume01")
        .await
        .unwrap();
    assert_eq!(
        fake.run(FAKE_ENTITY, "target-project", "resume01")
            .unwrap()
            .state,
        "running",
        "a resumed run keeps its state"
    );
    let same_run: Vec<_> = fake
        .items()
        .into_iter()
        .filter(|item| item.associated_run_id.as_deref() == Some("resume01"))
        .collect();
    assert_eq!(same_run.len(), 2);
}

#[tokio::test]
async fn acks_are_counted_and_a_second_ack_is_refused() {
    let (fake, client, id) = popped_item().await;
    client.ack_run_queue_item(&id, "once0001").await.unwrap();
    let again = client
        .ack_run_queue_item(&id, "once0001")
        .await
        .unwrap_err();
    assert!(matches!(again, Error::AckRejected { .. }), "{again:?}");
    assert_eq!(fake.item(&id).unwrap().ack_attempts, 2);
}

/// A connection dropped before the operation: nothing happened, the client's retry acks.
#[tokio::test]
async fn a_connection_dropped_before_executing_changes_nothing_and_the_retry_acks() {
    let (fake, client, id) = popped_item().await;
    fake.inject_fault(Fault::drop_connection(
        "ackRunQueueItem",
        DropPoint::BeforeExecuting,
        1,
    ));
    client.ack_run_queue_item(&id, "drop0001").await.unwrap();
    let acks = fake.journal_of("ackRunQueueItem");
    assert_eq!(
        acks.iter().map(|e| e.status).collect::<Vec<_>>(),
        [0, 200],
        "{acks:#?}"
    );
    let item = fake.item(&id).unwrap();
    assert_eq!(item.state, ItemState::Claimed);
    assert_eq!(item.ack_attempts, 1, "the dropped request never ran");
}

/// A connection dropped after the operation: the ack took effect, the client never heard
/// so, and its retry meets a claimed item (`success: false`).
#[tokio::test]
async fn a_connection_dropped_after_executing_acks_and_the_retry_is_refused() {
    let (fake, client, id) = popped_item().await;
    fake.inject_fault(Fault::drop_connection(
        "ackRunQueueItem",
        DropPoint::AfterExecuting,
        1,
    ));
    let error = client
        .ack_run_queue_item(&id, "drop0002")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::AckRejected { .. }), "{error:?}");
    let item = fake.item(&id).unwrap();
    assert_eq!(item.state, ItemState::Claimed);
    assert_eq!(item.associated_run_id.as_deref(), Some("drop0002"));
    assert_eq!(item.ack_attempts, 2);
    assert_eq!(fake.journal_of("ackRunQueueItem")[0].status, 0);
}

/// A failure report is never sent twice by the client: dropped after it ran, the call
/// ends unsure and the item shows one failure (a resend would add a second).
#[tokio::test]
async fn a_failure_report_dropped_after_executing_is_not_resent() {
    let (fake, client, id) = popped_item().await;
    client.ack_run_queue_item(&id, "drop0003").await.unwrap();
    fake.inject_fault(Fault::drop_connection(
        "failRunQueueItem",
        DropPoint::AfterExecuting,
        1,
    ));
    let error = client
        .fail_run_queue_item(&id, FailureStage::Run, "exit code 3", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::OutcomeUnknown { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(
        !error.is_transient(),
        "callers must read the state, not retry blindly"
    );
    let item = fake.item(&id).unwrap();
    assert_eq!(item.state, ItemState::Failed);
    assert!(item.later_failures.is_empty(), "{item:#?}");
    assert_eq!(fake.journal_of("failRunQueueItem").len(), 1);
}

/// Dropped before it ran, the report is unsure too (the client cannot tell the two
/// apart): nothing took effect, so the caller's check finds the item not failed.
#[tokio::test]
async fn a_failure_report_dropped_before_executing_changes_nothing() {
    let (fake, client, id) = popped_item().await;
    client.ack_run_queue_item(&id, "drop0004").await.unwrap();
    fake.inject_fault(Fault::drop_connection(
        "failRunQueueItem",
        DropPoint::BeforeExecuting,
        1,
    ));
    let error = client
        .fail_run_queue_item(&id, FailureStage::Run, "exit code 3", &[])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::OutcomeUnknown { .. }), "{error:?}");
    assert_eq!(fake.item(&id).unwrap().state, ItemState::Claimed);
    client
        .fail_run_queue_item(&id, FailureStage::Run, "exit code 3", &[])
        .await
        .unwrap();
    let item = fake.item(&id).unwrap();
    assert_eq!(item.state, ItemState::Failed);
    assert!(item.later_failures.is_empty(), "{item:#?}");
}

#[tokio::test]
async fn a_changed_queue_config_applies_to_items_pushed_after_it() {
    let (fake, _client) = start(FakeConfig::default()).await;
    let before = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    let broken = json!({"resource_args": {"kubernetes": {"spec": "not an object"}}});
    fake.set_queue_config(FAKE_ENTITY, DEFAULT_PROJECT, QUEUE, broken)
        .unwrap();
    let after = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    let kubernetes =
        |id: &str| fake.item(id).unwrap().run_spec["resource_args"]["kubernetes"]["spec"].clone();
    assert!(kubernetes(&before).is_object());
    assert_eq!(kubernetes(&after), json!("not an object"));
    let missing = fake.set_queue_config(FAKE_ENTITY, DEFAULT_PROJECT, "nope", json!({}));
    assert!(missing.is_err());
}

/// On paused time: a five-minute 503 storm passes in no real time.
#[tokio::test(start_paused = true)]
async fn a_storm_of_503s_lasts_its_window_then_the_server_answers() {
    let (fake, client) = start(FakeConfig::default()).await;
    fake.inject_fault(Fault::storm("*", 503, 300_000));
    let error = client.viewer().await.unwrap_err();
    assert!(
        matches!(error, Error::ServerUnavailable { status: 503, .. }),
        "{error:?}"
    );
    let storm_requests = fake.journal().len();
    assert!(
        storm_requests > 3,
        "retried through the storm: {storm_requests}"
    );
    tokio::time::sleep(Duration::from_secs(300)).await;
    client.viewer().await.unwrap();
    assert!(fake.journal().iter().rev().skip(1).all(|e| e.status == 503));
}

#[tokio::test]
async fn a_revoked_key_is_rejected_from_then_on() {
    let (fake, client) = start(FakeConfig::default()).await;
    client.viewer().await.unwrap();
    fake.revoke_api_key(FAKE_API_KEY);
    for _ in 0..2 {
        let error = client.viewer().await.unwrap_err();
        assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    }
    fake.add_api_key(
        "another-key-0000000000000000000000000000",
        rlaunch_wandb_fake::FakeUser {
            username: "other".to_owned(),
            entity: "other-entity".to_owned(),
            teams: vec!["a-team".to_owned()],
        },
    );
    let mut config = ClientConfig::new(
        fake.base_url.clone(),
        ApiKey::new("another-key-0000000000000000000000000000"),
    );
    config.retry_deadline = Duration::from_secs(1);
    let other = Client::new(config).unwrap();
    let viewer = other.viewer().await.unwrap();
    assert_eq!(viewer.username.as_deref(), Some("other"));
    assert!(other.entity_is_team("a-team").await.unwrap());
}

#[tokio::test]
async fn wait_until_wakes_on_the_change_it_waits_for() {
    let (fake, client) = start(FakeConfig::default()).await;
    let agent_id = register(&fake, &client).await;
    let id = fake
        .push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    let popper = {
        let client = client.clone();
        let agent_id = agent_id.clone();
        tokio::spawn(async move {
            pop(&client, &agent_id).await.unwrap();
        })
    };
    let leased = tokio::time::timeout(
        Duration::from_secs(30),
        fake.wait_until(|fake| {
            fake.item(&id)
                .filter(|item| item.state == ItemState::Leased)
        }),
    )
    .await
    .expect("the pop is seen");
    assert_eq!(leased.pop_count, 1);
    popper.await.unwrap();
}

#[tokio::test]
async fn the_changes_long_poll_answers_when_the_state_changes() {
    let (fake, _client) = start(FakeConfig::default()).await;
    let http = reqwest::Client::new();
    let now: Value = http
        .get(format!("{}/_admin/changes?timeout_ms=0", fake.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let version = now["version"].as_u64().unwrap();
    let waiting = tokio::spawn({
        let url = format!("{}/_admin/changes?after={version}", fake.base_url);
        async move {
            let answer: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            answer["version"].as_u64().unwrap()
        }
    });
    // Whether the poll arrives before or after the push, it answers with a later version.
    fake.push_item(NewItem::new(FAKE_ENTITY, QUEUE, spec(None)))
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the long poll answers after the push")
        .unwrap();
    assert!(answered > version, "{answered} > {version}");
}
