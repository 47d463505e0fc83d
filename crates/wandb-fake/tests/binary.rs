//! The `wandb-fake` binary as a test starts it: a child process on a free port, driven over
//! the admin API, stopped with SIGTERM.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::Stdio;
use std::time::Duration;

use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{Client, ClientConfig, PoppedItem};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, ItemState, ItemView};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on port 0 and reads its base URL from the line it prints.
async fn spawn(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wandb-fake"))
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.unwrap();
    let base_url = line
        .trim()
        .strip_prefix("wandb-fake listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, base_url)
}

async fn admin(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_child_process_serves_graphql_and_the_admin_api_and_stops_on_sigterm() {
    let (mut child, base_url) = spawn(&["--acked-run-state", "running"]).await;
    let http = reqwest::Client::new();
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    let (status, created) = admin(
        &http,
        post.clone(),
        format!("{base_url}/_admin/queues"),
        Some(json!({"entity": FAKE_ENTITY, "name": "q", "config": {"resource_args": {"kubernetes": {"kind": "Job"}}}})),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let (status, duplicate) = admin(
        &http,
        post.clone(),
        format!("{base_url}/_admin/queues"),
        Some(json!({"entity": FAKE_ENTITY, "name": "q"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        duplicate["error"],
        "run queue q already exists in fake-entity/model-registry"
    );
    let (_, version) = admin(
        &http,
        get.clone(),
        format!("{base_url}/_admin/changes?timeout_ms=0"),
        None,
    )
    .await;
    let version = version["version"].as_u64().unwrap();

    let (status, pushed) = admin(
        &http,
        post.clone(),
        format!("{base_url}/_admin/items"),
        Some(json!({"entity": FAKE_ENTITY, "queue": "q", "priority": 1, "run_spec": {"entity": FAKE_ENTITY, "project": "p", "docker": {"docker_image": "busybox"}}})),
    )
    .await;
    assert_eq!(status, 200, "{pushed}");
    let id = pushed["id"].as_str().unwrap().to_owned();
    let (_, changed) = admin(
        &http,
        get.clone(),
        format!("{base_url}/_admin/changes?after={version}&timeout_ms=30000"),
        None,
    )
    .await;
    assert!(changed["version"].as_u64().unwrap() > version, "{changed}");

    let client = Client::new(ClientConfig::new(
        base_url.clone(),
        ApiKey::new(FAKE_API_KEY),
    ))
    .unwrap();
    let popped = client
        .pop_from_run_queue(FAKE_ENTITY, "model-registry", "q", None)
        .await
        .unwrap();
    let Some(PoppedItem::Valid(item)) = popped else {
        panic!("expected the pushed item, got {popped:?}");
    };
    assert_eq!(item.id, id);
    assert_eq!(item.run_spec.resource_args["kubernetes"]["kind"], "Job");
    client.ack_run_queue_item(&id, "child001").await.unwrap();
    assert_eq!(
        client
            .run_state(FAKE_ENTITY, "p", "child001")
            .await
            .unwrap()
            .as_deref(),
        Some("running")
    );

    let (status, view) = admin(
        &http,
        get.clone(),
        format!("{base_url}/_admin/items/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let view: ItemView = serde_json::from_value(view).unwrap();
    assert_eq!(view.state, ItemState::Claimed);
    assert_eq!(view.priority, 1);
    let (status, missing) = admin(&http, get, format!("{base_url}/_admin/items/nope"), None).await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"], "run queue item nope not found");

    let (status, _) = admin(
        &http,
        reqwest::Method::POST,
        format!("{base_url}/_admin/faults"),
        Some(json!({"operation": "Viewer", "status": 401})),
    )
    .await;
    assert_eq!(status, 200);
    let error = client.viewer().await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized", "{error:?}");
    client.viewer().await.unwrap();

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the fake exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[tokio::test]
async fn a_bad_flag_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_wandb-fake"))
        .args(["--addr", "127.0.0.1:0", "--lease-seconds", "0"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--lease-seconds must be a positive number"),
        "{stderr}"
    );
}

#[tokio::test]
async fn api_keys_given_on_the_command_line_replace_the_built_in_one() {
    let key = "cli-key-000000000000000000000000000000000";
    let (_child, base_url) = spawn(&["--api-key", &format!("{key}=alice:team-a")]).await;
    let client = Client::new(ClientConfig::new(base_url.clone(), ApiKey::new(key))).unwrap();
    let viewer = client.viewer().await.unwrap();
    assert_eq!(viewer.username.as_deref(), Some("alice"));
    assert_eq!(viewer.entity.as_deref(), Some("team-a"));
    let builtin = Client::new(ClientConfig::new(base_url, ApiKey::new(FAKE_API_KEY))).unwrap();
    let error = builtin.viewer().await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized", "{error:?}");
}
