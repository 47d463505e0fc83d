//! HTTP routes: `/graphql` (auth, faults, journal, then async-graphql), file uploads and
//! downloads, and the JSON admin API under `/_admin/`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_graphql::dynamic::Schema;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::admin::{self, NewArtifact, NewEntity, NewItem, NewQueue, RunUpdate, StopPolling};
use crate::graphql::AuthUser;
use crate::store::{Fault, JournalEntry, Store};

#[derive(Clone)]
pub(crate) struct App {
    pub store: Arc<Mutex<Store>>,
    pub schema: Schema,
}

pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/graphql", post(graphql))
        .route("/_files/{*path}", get(get_file).put(put_file))
        .route("/_artifacts/{n}/manifest", get(get_manifest))
        .route("/_artifacts/{n}/files/{*path}", get(get_artifact_file))
        .route("/_admin/queues", post(admin_create_queue))
        .route("/_admin/items", post(admin_push_item).get(admin_items))
        .route("/_admin/agents", get(admin_agents))
        .route("/_admin/agents/stop-polling", post(admin_stop_polling))
        .route("/_admin/runs", post(admin_update_run).get(admin_runs))
        .route("/_admin/entities", post(admin_entity))
        .route("/_admin/artifacts", post(admin_artifact))
        .route(
            "/_admin/faults",
            post(admin_fault).delete(admin_clear_faults),
        )
        .route(
            "/_admin/journal",
            get(admin_journal).delete(admin_clear_journal),
        )
        .route("/_admin/files", get(admin_files))
        .with_state(app)
}

fn authenticate(store: &Store, headers: &HeaderMap) -> Option<AuthUser> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, key) = decoded.split_once(':')?;
    let user = store.keys.get(key)?;
    Some(AuthUser {
        username: user.username.clone(),
        entity: user.entity.clone(),
        teams: user.teams.clone(),
    })
}

fn error_body(message: &str) -> Value {
    json!({"errors": [{"message": message}]})
}

fn journal_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| *name != header::AUTHORIZATION && *name != header::COOKIE)
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The operation a document holds: the one named by `operationName` when non-empty, else
/// the document's only operation.
fn operation_of(query: &str, sent: Option<&str>) -> Option<String> {
    if let Some(name) = sent.filter(|name| !name.is_empty()) {
        return Some(name.to_owned());
    }
    let document = async_graphql::parser::parse_query(query).ok()?;
    let mut operations = document.operations.iter();
    let (name, _) = operations.next()?;
    if operations.next().is_some() {
        return None;
    }
    name.map(|name| name.to_string())
}

async fn graphql(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let sent_name = request
        .get("operationName")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let variables = request.get("variables").cloned();
    let operation = operation_of(&query, sent_name.as_deref());

    let (user, fault, seq) = {
        let mut store = lock(&app.store);
        let now = tokio::time::Instant::now();
        store.expire_leases(now);
        let user = authenticate(&store, &headers);
        let fault = match (&user, &operation) {
            (Some(_), Some(operation)) => store.take_fault(operation),
            _ => None,
        };
        store.journal_seq += 1;
        let seq = store.journal_seq;
        let entry = JournalEntry {
            seq,
            at_ms: store.elapsed_ms(),
            operation: operation.clone(),
            operation_name_sent: sent_name.clone(),
            query: query.clone(),
            variables: variables.clone(),
            user: user.as_ref().map(|u| u.username.clone()),
            status: 200,
            errors: Vec::new(),
            headers: journal_headers(&headers),
        };
        store.journal.push(entry);
        (user, fault, seq)
    };
    let record = |status: StatusCode, errors: Vec<String>| {
        let mut store = lock(&app.store);
        if let Some(entry) = store.journal.iter_mut().find(|e| e.seq == seq) {
            entry.status = status.as_u16();
            entry.errors = errors;
        }
    };

    let Some(user) = user else {
        tracing::debug!(?operation, "rejecting request without a valid API key");
        record(
            StatusCode::UNAUTHORIZED,
            vec!["invalid API key: authentication required".to_owned()],
        );
        return (
            StatusCode::UNAUTHORIZED,
            Json(error_body("invalid API key: authentication required")),
        )
            .into_response();
    };

    if let Some(fault) = fault {
        tracing::debug!(operation = %fault.operation, status = ?fault.status, delay_ms = ?fault.delay_ms, "injecting fault");
        if let Some(delay) = fault.delay_ms {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if let Some(code) = fault.status {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            record(status, Vec::new());
            let body = fault
                .body
                .clone()
                .unwrap_or_else(|| error_body(&format!("injected HTTP {code}")).to_string());
            let mut response = (status, body).into_response();
            if let Some(retry_after) = fault
                .retry_after
                .as_deref()
                .and_then(|v| axum::http::HeaderValue::from_str(v).ok())
            {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, retry_after);
            }
            return response;
        }
        if let Some(message) = fault.graphql_error {
            record(StatusCode::OK, vec![message.clone()]);
            let path = operation.clone().unwrap_or_default();
            return Json(json!({
                "data": null,
                "errors": [{"message": message, "path": [path]}],
            }))
            .into_response();
        }
    }

    let mut gql_request = async_graphql::Request::new(query).data(user);
    if let Some(name) = sent_name.filter(|name| !name.is_empty()) {
        gql_request = gql_request.operation_name(name);
    }
    if let Some(variables) = variables.filter(|v| !v.is_null()) {
        gql_request = gql_request.variables(async_graphql::Variables::from_json(variables));
    }
    let response = app.schema.execute(gql_request).await;
    if !response.errors.is_empty() {
        tracing::debug!(errors = ?response.errors, "GraphQL errors");
        let messages = response.errors.iter().map(|e| e.message.clone()).collect();
        record(StatusCode::OK, messages);
    }
    Json(response).into_response()
}

async fn put_file(State(app): State<App>, Path(path): Path<String>, body: Bytes) -> StatusCode {
    lock(&app.store).files.insert(path, body.to_vec());
    StatusCode::OK
}

fn is_authenticated(app: &App, headers: &HeaderMap) -> bool {
    authenticate(&lock(&app.store), headers).is_some()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "authentication required").into_response()
}

async fn get_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    if !is_authenticated(&app, &headers) {
        return unauthorized();
    }
    match lock(&app.store).files.get(&path) {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_manifest(State(app): State<App>, headers: HeaderMap, Path(n): Path<u64>) -> Response {
    if !is_authenticated(&app, &headers) {
        return unauthorized();
    }
    match lock(&app.store).manifest(n) {
        Some(manifest) => Json(manifest).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_artifact_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path((n, path)): Path<(u64, String)>,
) -> Response {
    if !is_authenticated(&app, &headers) {
        return unauthorized();
    }
    let store = lock(&app.store);
    match store
        .artifacts
        .iter()
        .find(|a| a.n == n)
        .and_then(|a| a.files.get(&path))
    {
        Some(bytes) => bytes.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn admin_result<T: serde::Serialize>(result: Result<T, String>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(message) => (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response(),
    }
}

async fn admin_create_queue(State(app): State<App>, Json(queue): Json<NewQueue>) -> Response {
    admin_result(admin::create_queue(&mut lock(&app.store), queue).map(|id| json!({"id": id})))
}

async fn admin_push_item(State(app): State<App>, Json(item): Json<NewItem>) -> Response {
    admin_result(admin::push_item(&mut lock(&app.store), item).map(|id| json!({"id": id})))
}

async fn admin_items(State(app): State<App>) -> Response {
    Json(admin::items(&mut lock(&app.store))).into_response()
}

async fn admin_agents(State(app): State<App>) -> Response {
    Json(admin::agents(&lock(&app.store))).into_response()
}

async fn admin_stop_polling(State(app): State<App>, Json(stop): Json<StopPolling>) -> Response {
    admin_result(admin::set_stop_polling(&mut lock(&app.store), stop))
}

async fn admin_update_run(State(app): State<App>, Json(update): Json<RunUpdate>) -> Response {
    Json(admin::update_run(&mut lock(&app.store), update)).into_response()
}

async fn admin_runs(State(app): State<App>) -> Response {
    Json(admin::runs(&lock(&app.store))).into_response()
}

async fn admin_entity(State(app): State<App>, Json(entity): Json<NewEntity>) -> Response {
    admin::set_entity(&mut lock(&app.store), entity);
    Json(json!({})).into_response()
}

async fn admin_artifact(State(app): State<App>, Json(artifact): Json<NewArtifact>) -> Response {
    let id = admin::add_artifact(&mut lock(&app.store), artifact);
    Json(json!({"id": id})).into_response()
}

async fn admin_fault(State(app): State<App>, Json(fault): Json<Fault>) -> Response {
    lock(&app.store).faults.push(fault);
    Json(json!({})).into_response()
}

async fn admin_clear_faults(State(app): State<App>) -> Response {
    lock(&app.store).faults.clear();
    Json(json!({})).into_response()
}

async fn admin_journal(State(app): State<App>) -> Response {
    Json(lock(&app.store).journal.clone()).into_response()
}

async fn admin_clear_journal(State(app): State<App>) -> Response {
    lock(&app.store).journal.clear();
    Json(json!({})).into_response()
}

async fn admin_files(State(app): State<App>) -> Response {
    Json(admin::files(&lock(&app.store))).into_response()
}
