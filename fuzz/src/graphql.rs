//! Properties of the W&B client's response decoders on arbitrary server answers.

use std::time::{Duration, SystemTime};

use rlaunch_model::{API_KEY_FIELD, ApiKey};
use rlaunch_wandb_api::PoppedItem;
use rlaunch_wandb_api::fuzzing::{Decoded, decode_response, failed_answer_message, retry_after};
use serde_json::Value;

/// The agent's key; a server may echo it, the client must never repeat it.
pub const AGENT_KEY: &str = "fuzz-agent-key-7c1e9a2b4d6f8h0j";

/// Runs one input: `[operation] body`. The body is decoded as that operation's answer and,
/// as the body of a failed answer, turned into an error message; its first line is also
/// read as a `Retry-After` value.
pub fn run(data: &[u8]) {
    let Some((&operation, body)) = data.split_first() else {
        return;
    };
    let key = ApiKey::new(AGENT_KEY);
    match decode_response(usize::from(operation), body, &key) {
        Ok(Decoded::Popped(item)) => popped(&item, body),
        Ok(Decoded::Data | Decoded::Empty) => {}
        Err(error) => {
            let text = format!("{error} {error:?}");
            assert!(
                !text.contains(AGENT_KEY),
                "an error repeats the API key: {text}"
            );
            let _ = (error.is_transient(), error.kind());
        }
    }
    let message = failed_answer_message(body, &key);
    assert!(
        !message.contains(AGENT_KEY),
        "a failed answer's message repeats the key: {message}"
    );
    assert!(
        message.chars().count() <= 513,
        "message not shortened: {} chars",
        message.len()
    );
    let first_line = String::from_utf8_lossy(body);
    let first_line = first_line.lines().next().unwrap_or_default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = retry_after(first_line, now);
}

/// A popped item keeps its id, and never shows the run's own key.
fn popped(item: &PoppedItem, body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        panic!("decoded a body that is not JSON");
    };
    let payload = &value["data"]["popFromRunQueue"];
    assert_eq!(
        Some(item.id()),
        payload["runQueueItemId"].as_str(),
        "the item id changed"
    );
    let spec = match &payload["runSpec"] {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        other => other.clone(),
    };
    let Some(run_key) = spec.get(API_KEY_FIELD).and_then(Value::as_str) else {
        return;
    };
    let mut rest = spec.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove(API_KEY_FIELD);
    }
    if run_key.len() < 8 || rest.to_string().contains(run_key) || item.id().contains(run_key) {
        return;
    }
    let shown = format!("{item:?}");
    assert!(
        !shown.contains(run_key),
        "the popped item shows the run's key: {shown}"
    );
    if let PoppedItem::Malformed { error, .. } = item {
        let text = error.to_string();
        assert!(
            !text.contains(run_key),
            "the spec error shows the run's key: {text}"
        );
    }
}
