//! Every operation against the fake W&B, and the queue semantics the agent relies on.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{PROJECT, QUEUE, image_spec, push, start, start_with};
use rlaunch_wandb_api::{
    AgentStatus, Error, FailureStage, NewLaunchAgent, PoppedItem, PushRequest, QueueAccess, RunFile,
};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeConfig, ItemState, NewArtifact, NewQueue};
use serde_json::json;

fn new_agent(queue_ids: Vec<String>) -> NewLaunchAgent {
    NewLaunchAgent {
        entity: FAKE_ENTITY.to_owned(),
        project: PROJECT.to_owned(),
        queue_ids,
        hostname: "test-host".to_owned(),
        agent_config: Some(json!({"max_jobs": 1, "queues": [QUEUE]})),
        version: Some("rlaunch@0.1.0".to_owned()),
    }
}

#[tokio::test]
async fn viewer_names_the_key_owner() {
    let (_fake, client) = start().await;
    let viewer = client.viewer().await.unwrap();
    assert_eq!(viewer.entity.as_deref(), Some(FAKE_ENTITY));
    assert_eq!(viewer.username.as_deref(), Some("fake-user"));
}

#[tokio::test]
async fn agent_registration_flow() {
    let (fake, client) = start().await;
    let queues = client
        .project_run_queues(FAKE_ENTITY, PROJECT)
        .await
        .unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].name, QUEUE);
    assert_eq!(queues[0].access, QueueAccess::Project);

    let missing = client
        .project_run_queues(FAKE_ENTITY, "nope")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::ProjectNotFound { .. }),
        "{missing:?}"
    );

    let default_id = client
        .create_run_queue(
            FAKE_ENTITY,
            "other-project",
            "default",
            QueueAccess::Project,
        )
        .await
        .unwrap();
    let other = client
        .project_run_queues(FAKE_ENTITY, "other-project")
        .await
        .unwrap();
    assert_eq!(other[0].id, default_id);
    let duplicate = client
        .create_run_queue(
            FAKE_ENTITY,
            "other-project",
            "default",
            QueueAccess::Project,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, Error::QueueNotCreated { .. }),
        "{duplicate:?}"
    );

    let agent_id = client
        .create_launch_agent(&new_agent(vec![queues[0].id.clone()]))
        .await
        .unwrap();
    assert!(!client.entity_is_team(FAKE_ENTITY).await.unwrap());
    fake.set_entity("a-team", true);
    assert!(client.entity_is_team("a-team").await.unwrap());
    let no_entity = client.entity_is_team("ghost").await.unwrap_err();
    assert!(
        matches!(no_entity, Error::EntityNotFound { .. }),
        "{no_entity:?}"
    );

    let agent = client.launch_agent(&agent_id).await.unwrap();
    assert_eq!(agent.id, agent_id);
    assert!(!agent.name.is_empty());
    assert_eq!(agent.run_queue_ids, vec![queues[0].id.clone()]);
    assert!(!agent.stop_polling);

    assert!(
        client
            .update_launch_agent(&agent_id, AgentStatus::Polling)
            .await
            .unwrap()
    );
    assert_eq!(fake.agents()[0].status.as_deref(), Some("POLLING"));
    assert_eq!(
        fake.agents()[0].agent_config.as_deref(),
        Some(r#"{"max_jobs":1,"queues":["k8s-queue"]}"#)
    );

    fake.set_stop_polling(&agent_id, true).unwrap();
    assert!(client.launch_agent(&agent_id).await.unwrap().stop_polling);

    let gone = client
        .launch_agent("TGF1bmNoQWdlbnQ6OTk5")
        .await
        .unwrap_err();
    assert!(
        matches!(gone, Error::LaunchAgentNotFound { .. }),
        "{gone:?}"
    );
    assert!(
        !client
            .update_launch_agent("nope", AgentStatus::Killed)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn queues_decode_whatever_access_and_creator_the_server_sends() {
    let mut config = FakeConfig::default();
    config.extra_enum_values.insert(
        "RunQueueAccessType".to_owned(),
        vec!["RESTRICTED".to_owned()],
    );
    let (fake, client) = start_with(config).await;
    fake.create_queue(NewQueue {
        access: "RESTRICTED".to_owned(),
        created_by: Some(json!(42)),
        ..NewQueue::new(FAKE_ENTITY, "newer-server-queue")
    })
    .unwrap();
    fake.create_queue(NewQueue {
        access: "USER".to_owned(),
        created_by: Some(json!("alice")),
        ..NewQueue::new(FAKE_ENTITY, "user-queue")
    })
    .unwrap();
    let queues = client
        .project_run_queues(FAKE_ENTITY, PROJECT)
        .await
        .unwrap();
    let by_name = |name: &str| queues.iter().find(|q| q.name == name).unwrap().clone();
    let newer = by_name("newer-server-queue");
    assert_eq!(newer.access, QueueAccess::Unknown("RESTRICTED".to_owned()));
    assert_eq!(newer.created_by.as_deref(), Some("42"));
    let user = by_name("user-queue");
    assert_eq!(user.access, QueueAccess::User);
    assert_eq!(user.created_by.as_deref(), Some("alice"));
    assert_eq!(by_name(QUEUE).created_by, None);
}

#[tokio::test]
async fn empty_queue_pops_nothing() {
    let (_fake, client) = start().await;
    let popped = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(popped, None);
}

#[tokio::test]
async fn pop_merges_the_queue_config_and_ack_claims() {
    let (fake, client) = start().await;
    let item_id = push(&fake, image_spec(), None);
    let popped = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, Some("agent-1"))
        .await
        .unwrap()
        .unwrap();
    let PoppedItem::Valid(item) = popped else {
        panic!("expected a valid item, got {popped:?}");
    };
    assert_eq!(item.id, item_id);
    assert_eq!(item.run_spec.resource, "kubernetes");
    assert_eq!(item.run_spec.docker_image.as_deref(), Some("busybox:1.36"));
    assert_eq!(
        item.run_spec.resource_args["kubernetes"]["metadata"]["labels"]["team"],
        "ml"
    );
    assert_eq!(fake.item(&item_id).unwrap().state, ItemState::Leased);

    client
        .ack_run_queue_item(&item_id, "rezuv9bt")
        .await
        .unwrap();
    let stored = fake.item(&item_id).unwrap();
    assert_eq!(stored.state, ItemState::Claimed);
    assert_eq!(stored.associated_run_id.as_deref(), Some("rezuv9bt"));
}

#[tokio::test]
async fn priority_orders_pops() {
    let (fake, client) = start().await;
    let low = push(&fake, image_spec(), Some(3));
    let critical = push(&fake, image_spec(), Some(0));
    let first = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap()
        .unwrap();
    let second = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id(), critical);
    assert_eq!(second.id(), low);
}

/// On paused time: the lease runs on the fake's tokio clock, so the pop "during" the lease
/// is at most microseconds after the first however loaded the machine is.
#[tokio::test(start_paused = true)]
async fn unacked_item_returns_after_the_lease() {
    let config = FakeConfig {
        lease: Duration::from_secs(60),
        ..FakeConfig::default()
    };
    let (fake, client) = start_with(config).await;
    let item_id = push(&fake, image_spec(), None);
    let first = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(first.as_ref().map(PoppedItem::id), Some(item_id.as_str()));
    let during = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(during, None, "a leased item must not be popped twice");

    tokio::time::sleep(Duration::from_secs(59)).await;
    let still = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(still, None, "the lease lasts 60 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(again.as_ref().map(PoppedItem::id), Some(item_id.as_str()));
    assert_eq!(fake.item(&item_id).unwrap().pop_count, 2);
}

#[tokio::test]
async fn ack_of_an_acked_item_is_a_typed_error() {
    let (fake, client) = start().await;
    let item_id = push(&fake, image_spec(), None);
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    client
        .ack_run_queue_item(&item_id, "run00001")
        .await
        .unwrap();
    let error = client
        .ack_run_queue_item(&item_id, "run00002")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::AckRejected { item_id: id } if id == &item_id),
        "{error:?}"
    );
    assert_eq!(error.kind(), "ack_rejected");
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains("already been acknowledged"),
        "{error}"
    );
}

#[tokio::test]
async fn fail_stores_stage_message_and_uploaded_files() {
    let (fake, client) = start().await;
    let item_id = push(&fake, image_spec(), None);
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();

    client
        .upsert_run(
            FAKE_ENTITY,
            PROJECT,
            "launch-agent-9",
            Some("sweep-controller"),
        )
        .await
        .unwrap();
    let error_path = format!("{item_id}/error/error.log");
    let paths = client
        .upload_run_files(
            FAKE_ENTITY,
            PROJECT,
            "launch-agent-9",
            &[RunFile {
                path: error_path.clone(),
                contents: b"Traceback: boom\n".to_vec(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(paths, vec![error_path.clone()]);
    assert_eq!(
        fake.files()[&format!("{FAKE_ENTITY}/{PROJECT}/launch-agent-9/{error_path}")],
        "Traceback: boom\n"
    );

    client
        .update_run_queue_item_warning(&item_id, FailureStage::Kubernetes, "pod pending", &[])
        .await
        .unwrap();
    client
        .fail_run_queue_item(&item_id, FailureStage::Build, "kaniko failed", &paths)
        .await
        .unwrap();
    let stored = fake.item(&item_id).unwrap();
    assert_eq!(stored.state, ItemState::Failed);
    let failure = stored.failure.unwrap();
    assert_eq!(failure.stage, "build");
    assert_eq!(failure.message, "kaniko failed");
    assert_eq!(failure.file_paths, vec![error_path]);
    assert_eq!(stored.warnings[0].stage, "Kubernetes");

    let unknown = client
        .fail_run_queue_item("nope", FailureStage::Agent, "x", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, Error::MutationRejected { .. }),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn run_stopped_and_run_state() {
    let (fake, client) = start().await;
    assert!(
        !client
            .run_stopped(FAKE_ENTITY, "launch-test", "abc")
            .await
            .unwrap()
    );
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, "launch-test", "abc")
            .await
            .unwrap(),
        None
    );

    let item_id = push(&fake, image_spec(), None);
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    client.ack_run_queue_item(&item_id, "abc").await.unwrap();
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, "launch-test", "abc")
            .await
            .unwrap()
            .as_deref(),
        Some("pending")
    );
    fake.set_run_state(FAKE_ENTITY, "launch-test", "abc", "running");
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, "launch-test", "abc")
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );
    fake.stop_run(FAKE_ENTITY, "launch-test", "abc");
    assert!(
        client
            .run_stopped(FAKE_ENTITY, "launch-test", "abc")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn push_by_name_returns_the_merged_spec_as_json() {
    let (fake, client) = start().await;
    let pushed = client
        .push_to_run_queue_by_name(&PushRequest {
            entity: FAKE_ENTITY.to_owned(),
            project: PROJECT.to_owned(),
            queue: QUEUE.to_owned(),
            run_spec: json!({"entity": FAKE_ENTITY, "project": "p", "docker": {"docker_image": "x"}}),
            priority: Some(1),
            template_variables: None,
        })
        .await
        .unwrap()
        .unwrap();
    let spec = pushed.run_spec.unwrap();
    assert_eq!(spec["resource"], "kubernetes");
    assert_eq!(
        spec["resource_args"]["kubernetes"]["metadata"]["labels"]["team"],
        "ml"
    );
    assert_eq!(fake.item(&pushed.id).unwrap().priority, 1);

    let missing = client
        .push_to_run_queue_by_name(&PushRequest {
            entity: FAKE_ENTITY.to_owned(),
            project: PROJECT.to_owned(),
            queue: "no-such-queue".to_owned(),
            run_spec: json!({}),
            priority: None,
            template_variables: None,
        })
        .await
        .unwrap();
    assert_eq!(missing, None);
}

#[tokio::test]
async fn item_info_tells_state_run_id_creation_priority_and_template_variables() {
    let (fake, client) = start().await;
    let before = std::time::SystemTime::now() - Duration::from_secs(2);
    let id = fake
        .push_item_with_template_variables(
            rlaunch_wandb_fake::NewItem {
                priority: Some(0),
                ..rlaunch_wandb_fake::NewItem::new(FAKE_ENTITY, QUEUE, image_spec())
            },
            json!({"gpus": 2}),
        )
        .unwrap();
    let info = client
        .run_queue_item_info(FAKE_ENTITY, PROJECT, QUEUE, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.state.as_deref(), Some("PENDING"));
    assert_eq!(info.associated_run_id, None);
    assert_eq!(info.priority, Some(0));
    assert_eq!(info.template_variables, Some(json!({"gpus": 2})));
    let created = info.created_at.unwrap();
    assert!(created >= before && created <= std::time::SystemTime::now() + Duration::from_secs(2));
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    client.ack_run_queue_item(&id, "run1").await.unwrap();
    let info = client
        .run_queue_item_info(FAKE_ENTITY, PROJECT, QUEUE, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.state.as_deref(), Some("CLAIMED"));
    assert_eq!(info.associated_run_id.as_deref(), Some("run1"));
    let missing = client
        .run_queue_item_info(FAKE_ENTITY, PROJECT, "no-such-queue", &id)
        .await
        .unwrap();
    assert_eq!(missing, None);
}

/// A server that refuses the optional fields (`createdAt`, `priority`,
/// `templateVariableValues`) still tells the state and run id: the client asks again for
/// the fields W&B's own client reads.
#[tokio::test]
async fn item_info_falls_back_to_state_when_the_optional_fields_are_refused() {
    let (fake, client) = start().await;
    let id = push(&fake, image_spec(), Some(1));
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    client.ack_run_queue_item(&id, "run7").await.unwrap();
    fake.inject_fault(rlaunch_wandb_fake::Fault {
        operation: "RunQueueItemInfo".to_owned(),
        graphql_error: Some("Cannot query field \"priority\" on type \"RunQueueItem\"".to_owned()),
        ..rlaunch_wandb_fake::Fault::default()
    });
    let info = client
        .run_queue_item_info(FAKE_ENTITY, PROJECT, QUEUE, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.state.as_deref(), Some("CLAIMED"));
    assert_eq!(info.associated_run_id.as_deref(), Some("run7"));
    assert_eq!((info.priority, info.created_at), (None, None));
    assert_eq!(info.template_variables, None);
    let fallback = fake.journal_of("RunQueueItemState");
    assert_eq!(fallback.len(), 1, "one fallback request");
    assert!(fallback[0].errors.is_empty(), "{:?}", fallback[0].errors);
    assert!(!fallback[0].query.contains("priority"));
}

#[tokio::test]
async fn malformed_run_spec_comes_back_with_its_id() {
    let (fake, client) = start().await;
    let no_entity = push(
        &fake,
        json!({"project": "p", "_wandb_api_key": "per-run-secret-key-0123456789"}),
        Some(0),
    );
    let broken_text = push(&fake, json!("{\"entity\": "), Some(1));

    let first = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap()
        .unwrap();
    match &first {
        PoppedItem::Malformed { id, error, raw } => {
            assert_eq!(id, &no_entity);
            assert!(error.to_string().contains("entity"), "{error}");
            assert!(!raw.to_string().contains("per-run-secret"), "{raw}");
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    assert!(!format!("{first:?}").contains("per-run-secret"));

    let second = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap()
        .unwrap();
    match &second {
        PoppedItem::Malformed { id, error, .. } => {
            assert_eq!(id, &broken_text);
            assert!(error.to_string().contains("not valid JSON"), "{error}");
        }
        other => panic!("expected malformed, got {other:?}"),
    }
    // The agent can fail it with the message.
    client
        .fail_run_queue_item(
            second.id(),
            FailureStage::Agent,
            &match &second {
                PoppedItem::Malformed { error, .. } => error.to_string(),
                PoppedItem::Valid(_) => unreachable!(),
            },
            &[],
        )
        .await
        .unwrap();
    assert_eq!(fake.item(&broken_text).unwrap().state, ItemState::Failed);
}

#[tokio::test]
async fn job_artifact_files_can_be_fetched() {
    let (fake, client) = start().await;
    let mut files = BTreeMap::new();
    files.insert(
        "wandb-job.json".to_owned(),
        r#"{"source_type": "image", "source": {"image": "busybox:1.36"}}"#.to_owned(),
    );
    files.insert(
        "requirements.frozen.txt".to_owned(),
        "numpy==2.0\n".to_owned(),
    );
    fake.add_artifact(NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "launch-test".to_owned(),
        name: "job-busybox".to_owned(),
        aliases: vec![],
        files,
    });
    let artifact = client
        .artifact(FAKE_ENTITY, "launch-test", "job-busybox:latest")
        .await
        .unwrap();
    assert_eq!(artifact.version_index, Some(0));
    let paths: Vec<&str> = artifact.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["requirements.frozen.txt", "wandb-job.json"]);
    let downloaded = client
        .download_artifact_files(&artifact, &["wandb-job.json"])
        .await
        .unwrap();
    assert_eq!(downloaded.len(), 1);
    assert!(String::from_utf8_lossy(&downloaded[0].1).contains("busybox:1.36"));
    let everything = client.download_artifact_by_id(&artifact.id).await.unwrap();
    let paths: Vec<&str> = everything.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["requirements.frozen.txt", "wandb-job.json"]);
    assert_eq!(everything[0].1, b"numpy==2.0\n");

    let missing = client
        .artifact(FAKE_ENTITY, "launch-test", "job-nope:latest")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, Error::ArtifactNotFound { .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn the_fake_rejects_documents_the_schema_does_not_allow() {
    let (fake, _client) = start().await;
    let http = reqwest::Client::new();
    let response: serde_json::Value = http
        .post(format!("{}/graphql", fake.base_url))
        .basic_auth("api", Some(rlaunch_wandb_fake::FAKE_API_KEY))
        .json(&json!({
            "query": "query Bad { viewer { id notAField } }",
            "operationName": "",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = response["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("notAField"), "{message}");
    assert!(response["data"].is_null(), "{response}");
    let entry = &fake.journal()[0];
    assert_eq!(entry.operation.as_deref(), Some("Bad"));
    assert_eq!(entry.errors.len(), 1, "the journal keeps the rejection");
    assert!(entry.errors[0].contains("notAField"), "{:?}", entry.errors);
}
