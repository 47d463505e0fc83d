//! Logs and errors never contain the API key. Its own test binary: tracing's per-callsite
//! interest cache is process-wide, so a parallel test without a subscriber could disable
//! the callsites this test captures.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{client_for, config_for, exercise, start};
use rlaunch_wandb_api::Client;
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, Fault};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_never_contain_the_api_key() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (fake, client) = start().await;
    // Failures: retried 500s, a 429, a GraphQL error, a rejected ack, a server body that
    // echoes the key, and a client with a wrong key.
    fake.inject_fault(Fault {
        operation: "popFromRunQueue".to_owned(),
        count: 2,
        status: Some(500),
        body: Some(format!(
            r#"{{"errors":[{{"message":"bad key {FAKE_API_KEY}"}}]}}"#
        )),
        ..Fault::default()
    });
    fake.inject_fault(Fault {
        operation: "LaunchAgent".to_owned(),
        status: Some(429),
        retry_after: Some("0".to_owned()),
        ..Fault::default()
    });
    fake.inject_fault(Fault {
        operation: "EntityIsTeam".to_owned(),
        graphql_error: Some(format!("echo {FAKE_API_KEY}")),
        ..Fault::default()
    });
    fake.inject_fault(Fault {
        operation: "RunState".to_owned(),
        count: 2,
        status: Some(403),
        body: Some(format!("forbidden for key {FAKE_API_KEY}")),
        ..Fault::default()
    });
    exercise(&fake, &client).await;
    let mut errors = Vec::new();
    errors.push(format!("{:?}", client.entity_is_team(FAKE_ENTITY).await));
    errors.push(format!(
        "{:?}",
        client.ack_run_queue_item("nope", "x").await
    ));
    let wrong_key = "wrong-key-0000000000000000000000000000000";
    let wrong = Client::new(config_for(&fake, wrong_key)).unwrap();
    let unauthorized = wrong.viewer().await.unwrap_err();
    errors.push(format!("{unauthorized:?} {unauthorized}"));
    for error in [
        client.run_state(FAKE_ENTITY, "p", "r").await.unwrap_err(),
        client.entity_is_team("ghost").await.unwrap_err(),
    ] {
        errors.push(format!("{error:?} {error}"));
    }
    errors.push(format!("{client:?} {:?}", client_for(&fake)));
    drop(fake);

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying W&B request"),
        "the failures were logged"
    );
    assert!(logs.contains("popped run queue item"), "{logs}");
    for text in [&logs, &errors.join("\n")] {
        for secret in [FAKE_API_KEY, wrong_key, "per-run-secret-key-0123456789"] {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
        // Nor the basic-auth header value.
        for key in [FAKE_API_KEY, wrong_key] {
            use base64::Engine as _;
            let header = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
            assert!(!text.contains(&header), "auth header leaked");
        }
    }
}
