//! The JSON admin API under `/_admin/`, for tests and tools that run the fake as a separate
//! process (the crate docs list the routes). Each route is one call of the same store
//! operation [`crate::FakeWandb`] makes in process.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::FakeError;
use crate::model::{
    Fault, ItemOrigin, NewApiKey, NewArtifact, NewEntity, NewItem, NewQueue, RunUpdate, StopPolling,
};
use crate::shared::SharedStore;

/// The `/_admin/` routes over `store`.
pub(crate) fn router(store: SharedStore) -> Router {
    Router::new()
        .route("/_admin/queues", post(create_queue))
        .route("/_admin/items", post(push_item).get(items))
        .route("/_admin/items/{id}", get(item))
        .route("/_admin/agents", get(agents))
        .route("/_admin/agents/stop-polling", post(stop_polling))
        .route("/_admin/runs", post(update_run).get(runs))
        .route("/_admin/entities", post(set_entity))
        .route("/_admin/artifacts", post(add_artifact))
        .route("/_admin/api-keys", post(add_api_key))
        .route("/_admin/api-keys/{key}", delete(revoke_api_key))
        .route("/_admin/faults", post(add_fault).delete(clear_faults))
        .route("/_admin/journal", get(journal).delete(clear_journal))
        .route("/_admin/files", get(files))
        .route("/_admin/changes", get(changes))
        .with_state(store)
}

impl IntoResponse for FakeError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::QueueExists { .. } => StatusCode::CONFLICT,
            Self::QueueNotFound { .. }
            | Self::QueueIdNotFound { .. }
            | Self::AgentNotFound { .. }
            | Self::ItemNotFound { .. }
            | Self::RunNotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// `{"id": ...}`, the answer of routes that create something.
#[derive(Serialize)]
struct Created {
    id: String,
}

async fn create_queue(
    State(store): State<SharedStore>,
    Json(queue): Json<NewQueue>,
) -> Result<Json<Created>, FakeError> {
    let id = store.write().create_queue(queue)?;
    Ok(Json(Created { id }))
}

async fn push_item(
    State(store): State<SharedStore>,
    Json(item): Json<NewItem>,
) -> Result<Json<Created>, FakeError> {
    let (id, _) = store.write().push(item, None, ItemOrigin::Admin)?;
    Ok(Json(Created { id }))
}

async fn items(State(store): State<SharedStore>) -> Response {
    Json(store.read().item_views()).into_response()
}

async fn item(State(store): State<SharedStore>, Path(id): Path<String>) -> Response {
    let view = store.read().item_views().into_iter().find(|i| i.id == id);
    match view {
        Some(view) => Json(view).into_response(),
        None => FakeError::ItemNotFound { id }.into_response(),
    }
}

async fn agents(State(store): State<SharedStore>) -> Response {
    Json(store.read().agents.clone()).into_response()
}

async fn stop_polling(State(store): State<SharedStore>, Json(stop): Json<StopPolling>) -> Response {
    match store.write().set_stop_polling(stop) {
        Ok(view) => Json(view).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn update_run(State(store): State<SharedStore>, Json(update): Json<RunUpdate>) -> Response {
    Json(store.write().update_run(update)).into_response()
}

async fn runs(State(store): State<SharedStore>) -> Response {
    Json(store.read().run_views()).into_response()
}

async fn set_entity(State(store): State<SharedStore>, Json(entity): Json<NewEntity>) -> Response {
    store.write().teams.insert(entity.name, entity.is_team);
    Json(json!({})).into_response()
}

async fn add_artifact(
    State(store): State<SharedStore>,
    Json(artifact): Json<NewArtifact>,
) -> Json<Created> {
    let id = store.write().add_artifact(artifact);
    Json(Created { id })
}

async fn add_api_key(State(store): State<SharedStore>, Json(key): Json<NewApiKey>) -> Response {
    store.write().add_api_key(key);
    Json(json!({})).into_response()
}

async fn revoke_api_key(State(store): State<SharedStore>, Path(key): Path<String>) -> Response {
    store.write().keys.remove(&key);
    Json(json!({})).into_response()
}

async fn add_fault(State(store): State<SharedStore>, Json(fault): Json<Fault>) -> Response {
    store.write().add_fault(fault);
    Json(json!({})).into_response()
}

async fn clear_faults(State(store): State<SharedStore>) -> Response {
    store.write().faults.clear();
    Json(json!({})).into_response()
}

async fn journal(State(store): State<SharedStore>) -> Response {
    Json(store.read().journal.clone()).into_response()
}

async fn clear_journal(State(store): State<SharedStore>) -> Response {
    store.write().journal.clear();
    Json(json!({})).into_response()
}

async fn files(State(store): State<SharedStore>) -> Response {
    Json(store.read().file_texts()).into_response()
}

/// `GET /_admin/changes?after=N&timeout_ms=T`.
#[derive(Deserialize)]
struct ChangesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default = "default_changes_timeout")]
    timeout_ms: u64,
}

fn default_changes_timeout() -> u64 {
    30_000
}

/// Long poll: answers `{"version": V}` as soon as the state's change counter passes
/// `after` (at once if it already has), or with the current counter after `timeout_ms`.
/// A client waits for a condition by re-reading after each answer, without sleeping.
async fn changes(State(store): State<SharedStore>, Query(query): Query<ChangesQuery>) -> Response {
    let mut receiver = store.subscribe();
    let wait = receiver.wait_for(|version| *version > query.after);
    let _ = tokio::time::timeout(Duration::from_millis(query.timeout_ms), wait).await;
    let version = *receiver.borrow();
    Json(json!({"version": version})).into_response()
}
