//! Retries, deadlines, auth failures and headers, observed through the fake's journal.
//!
//! Tests about waits run on paused tokio time: the client's deadline, its backoff sleeps,
//! the fake's delays and its journal clock all use it, so gaps are exact and a loaded
//! machine cannot change the outcome.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::{PROJECT, QUEUE, client_for, config_for, start};
use rlaunch_wandb_api::{Client, Error};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, Fault};

fn attempts_of(error: &Error) -> u32 {
    match error {
        Error::ServerUnavailable { attempts, .. } | Error::Network { attempts, .. } => *attempts,
        other => panic!("no attempt count in {other:?}"),
    }
}

fn fault(operation: &str, count: u32, status: u16) -> Fault {
    Fault {
        operation: operation.to_owned(),
        count,
        status: Some(status),
        ..Fault::default()
    }
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (fake, client) = start().await;
    fake.inject_fault(fault("popFromRunQueue", 3, 500));
    let popped = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    assert_eq!(popped, None);
    let statuses: Vec<u16> = fake
        .journal_of("popFromRunQueue")
        .iter()
        .map(|entry| entry.status)
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let (fake, client) = start().await;
    fake.inject_fault(Fault {
        retry_after: Some("2".to_owned()),
        ..fault("LaunchAgent", 1, 429)
    });
    let error = client
        .launch_agent("TGF1bmNoQWdlbnQ6OTk5")
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::LaunchAgentNotFound { .. }),
        "{error:?}"
    );
    let journal = fake.journal_of("LaunchAgent");
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].status, 429);
    let gap_ms = journal[1].at_ms - journal[0].at_ms;
    assert_eq!(
        gap_ms.round(),
        2000.0,
        "the second attempt must come when Retry-After says (it came {gap_ms} ms after the 429)"
    );
}

#[tokio::test]
async fn rejected_key_is_a_helpful_error_and_not_retried() {
    let (fake, _client) = start().await;
    let wrong_key = "wrong-key-0000000000000000000000000000000";
    let client = Client::new(config_for(&fake, wrong_key)).unwrap();
    let error = client.viewer().await.unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.is_transient());
    assert_eq!(error.kind(), "unauthorized");
    let message = error.to_string();
    assert!(message.contains("API key rejected by"), "{message}");
    assert!(message.contains("(401)"), "{message}");
    assert!(message.contains("WANDB_API_KEY"), "{message}");
    assert!(message.contains(&fake.base_url), "{message}");
    assert!(!message.contains(wrong_key));
    let journal = fake.journal();
    assert_eq!(journal.len(), 1, "401 must not be retried: {journal:#?}");
    assert_eq!(journal[0].status, 401);
    assert_eq!(journal[0].user, None);
}

#[tokio::test]
async fn forbidden_and_not_found_are_not_retried() {
    let (fake, client) = start().await;
    fake.inject_fault(fault("EntityIsTeam", 1, 403));
    let forbidden = client.entity_is_team(FAKE_ENTITY).await.unwrap_err();
    assert!(
        matches!(forbidden, Error::Forbidden { .. }),
        "{forbidden:?}"
    );
    fake.inject_fault(fault("EntityIsTeam", 1, 404));
    let not_found = client.entity_is_team(FAKE_ENTITY).await.unwrap_err();
    assert!(matches!(not_found, Error::NotFound { .. }), "{not_found:?}");
    fake.inject_fault(fault("EntityIsTeam", 1, 400));
    let bad = client.entity_is_team(FAKE_ENTITY).await.unwrap_err();
    assert!(
        matches!(bad, Error::Rejected { status: 400, .. }),
        "{bad:?}"
    );
    assert_eq!(fake.journal_of("EntityIsTeam").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_bounds_a_persistent_503() {
    let (fake, _client) = start().await;
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.retry_deadline = Duration::from_millis(1500);
    config.retry_min_wait = Duration::from_millis(100);
    config.retry_max_wait = Duration::from_millis(400);
    let client = Client::new(config).unwrap();
    fake.inject_fault(fault("popFromRunQueue", 1000, 503));
    let started = Instant::now();
    let error = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(1500),
        "gave up after {elapsed:?}, past the 1.5 s deadline"
    );
    match &error {
        Error::ServerUnavailable {
            status: 503,
            attempts,
            ..
        } => assert!(*attempts >= 2, "only {attempts} attempt(s)"),
        other => panic!("expected ServerUnavailable, got {other:?}"),
    }
    assert!(error.is_transient());
    assert_eq!(error.kind(), "server_unavailable");
    let journal = fake.journal_of("popFromRunQueue");
    assert_eq!(journal.len() as u32, attempts_of(&error));
    let last = journal.last().unwrap().at_ms - journal[0].at_ms;
    assert!(
        last < 1500.0,
        "an attempt was sent after the deadline ({last} ms)"
    );
    // Waits double from 100 ms (with up to 100 % jitter) up to 400 ms: at least three
    // attempts fit in 1.5 s.
    assert!(journal.len() >= 3, "only {} attempts", journal.len());
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_after_the_deadline_is_deadline_exceeded() {
    let (fake, _client) = start().await;
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.timeout = Duration::from_secs(30);
    config.retry_deadline = Duration::from_secs(5);
    let client = Client::new(config).unwrap();
    fake.inject_fault(Fault {
        delay_ms: Some(60_000),
        ..fault("LaunchAgent", 1, 200)
    });
    let error = client
        .launch_agent("TGF1bmNoQWdlbnQ6OTk5")
        .await
        .unwrap_err();
    match &error {
        Error::DeadlineExceeded {
            operation: "LaunchAgent",
            deadline,
        } => assert_eq!(*deadline, Duration::from_secs(5)),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert!(error.is_transient());
    assert_eq!(error.kind(), "deadline_exceeded");
    assert_eq!(
        fake.journal_of("LaunchAgent").len(),
        1,
        "not retried after the deadline"
    );

    // A deadline that has already passed sends nothing.
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.retry_deadline = Duration::ZERO;
    let client = Client::new(config).unwrap();
    let error = client.viewer().await.unwrap_err();
    assert!(matches!(error, Error::DeadlineExceeded { .. }), "{error:?}");
    assert!(fake.journal_of("Viewer").is_empty());
}

#[tokio::test]
async fn graphql_errors_are_final_and_typed() {
    let (fake, client) = start().await;
    fake.inject_fault(Fault {
        operation: "popFromRunQueue".to_owned(),
        graphql_error: Some("injected resolver failure".to_owned()),
        ..Fault::default()
    });
    let error = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::GraphQl { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "W&B rejected popFromRunQueue: popFromRunQueue: injected resolver failure"
    );
    assert_eq!(fake.journal_of("popFromRunQueue").len(), 1);

    // A resolver error (unknown queue) is a GraphQL error too.
    let unknown = client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, "no-such-queue", None)
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::GraphQl { .. }), "{unknown:?}");
}

#[tokio::test]
async fn unreachable_server_is_a_transient_network_error() {
    let (fake, _client) = start().await;
    let mut config = config_for(&fake, FAKE_API_KEY);
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.base_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    config.retry_deadline = Duration::from_millis(300);
    let client = Client::new(config).unwrap();
    let error = client.viewer().await.unwrap_err();
    assert!(matches!(error, Error::Network { .. }), "{error:?}");
    assert!(error.is_transient());
    assert!(attempts_of(&error) >= 2, "connection failures are retried");
}

#[tokio::test]
async fn headers_follow_the_reference_client() {
    let (fake, client) = start().await;
    client.viewer().await.unwrap();
    client
        .pop_from_run_queue(FAKE_ENTITY, PROJECT, QUEUE, None)
        .await
        .unwrap();
    let journal = fake.journal();
    let viewer = &journal[0];
    let pop = &journal[1];
    assert_eq!(viewer.operation_name_sent.as_deref(), Some("Viewer"));
    assert_eq!(
        viewer.variables, None,
        "typed operations omit empty variables"
    );
    assert_eq!(pop.operation_name_sent.as_deref(), Some(""));
    assert_eq!(pop.operation.as_deref(), Some("popFromRunQueue"));
    for entry in [viewer, pop] {
        assert_eq!(entry.headers["user-agent"], "wandb-api-tests");
        assert_eq!(entry.headers["content-type"], "application/json");
        assert_eq!(entry.headers["x-wandb-username"], "");
        assert_eq!(entry.headers["x-wandb-user-email"], "");
        assert!(entry.headers["accept-encoding"].contains("gzip"));
        assert!(!entry.headers.contains_key("authorization"));
        assert_eq!(entry.user.as_deref(), Some("fake-user"));
    }
    assert_eq!(pop.headers["use-admin-privileges"], "true");
    assert!(!viewer.headers.contains_key("use-admin-privileges"));
}

#[tokio::test]
async fn invalid_configuration_is_rejected_up_front() {
    let (fake, _client) = start().await;
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.base_url = "api.wandb.ai".to_owned();
    let error = Client::new(config).unwrap_err();
    assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");

    let empty = Client::new(config_for(&fake, "  ")).unwrap_err();
    assert!(empty.to_string().contains("WANDB_API_KEY"), "{empty}");
    let newline = Client::new(config_for(&fake, &format!("{FAKE_API_KEY}\n"))).unwrap_err();
    assert!(newline.to_string().contains("whitespace"), "{newline}");
    assert!(!newline.to_string().contains(FAKE_API_KEY), "{newline}");

    let dir = tempfile::tempdir().unwrap();
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.extra_ca_file = Some(dir.path().join("missing.pem"));
    let missing = Client::new(config).unwrap_err();
    assert!(matches!(missing, Error::ReadCaBundle { .. }), "{missing:?}");

    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let mut config = config_for(&fake, FAKE_API_KEY);
    config.extra_ca_file = Some(not_pem);
    let invalid = Client::new(config).unwrap_err();
    assert!(
        matches!(invalid, Error::InvalidCaBundle { .. }),
        "{invalid:?}"
    );
    let _ = client_for(&fake);
}
