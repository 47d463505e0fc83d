//! HTTP routes W&B clients use: `/graphql` (auth, faults, journal, then async-graphql),
//! file uploads and downloads. The admin routes are in [`crate::admin`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_graphql::dynamic::Schema;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::connection::Connection;
use crate::model::{DropPoint, FakeUser, Fault, JournalEntry};
use crate::shared::SharedStore;
use crate::store::Store;

#[derive(Clone)]
pub(crate) struct App {
    pub store: SharedStore,
    pub schema: Schema,
}

/// Every route: GraphQL, files, artifacts and `/_admin/`.
pub(crate) fn router(app: App) -> Router {
    let admin = crate::admin::router(app.store.clone());
    Router::new()
        .route("/graphql", post(graphql))
        .route("/_files/{*path}", get(get_file).put(put_file))
        .route(
            "/files/{entity}/{project}/{run}/file_stream",
            post(file_stream),
        )
        .route("/_artifacts/{n}/manifest", get(get_manifest))
        .route("/_artifacts/{n}/files/{*path}", get(get_artifact_file))
        .with_state(app)
        .merge(admin)
}

fn authenticate(store: &Store, headers: &HeaderMap) -> Option<FakeUser> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (_, key) = decoded.split_once(':')?;
    store.keys.get(key).cloned()
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

/// A GraphQL request body, as far as the fake reads it.
struct GraphqlRequest {
    query: String,
    sent_name: Option<String>,
    variables: Option<Value>,
    operation: Option<String>,
}

impl GraphqlRequest {
    fn parse(body: &[u8]) -> Self {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let query = request
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let sent_name = request
            .get("operationName")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let operation = operation_of(&query, sent_name.as_deref());
        Self {
            query,
            sent_name,
            variables: request.get("variables").cloned(),
            operation,
        }
    }
}

/// Journals the request, authenticates it and takes the fault meant for it.
fn admit(
    store: &mut Store,
    request: &GraphqlRequest,
    headers: &HeaderMap,
) -> (Option<FakeUser>, Option<Fault>, u64) {
    store.expire_leases(tokio::time::Instant::now());
    let user = authenticate(store, headers);
    let fault = match (&user, &request.operation) {
        (Some(_), Some(operation)) => store.take_fault(operation),
        _ => None,
    };
    let seq = store.record(JournalEntry {
        seq: 0,
        at_ms: 0.0,
        operation: request.operation.clone(),
        operation_name_sent: request.sent_name.clone(),
        query: request.query.clone(),
        variables: request.variables.clone(),
        user: user.as_ref().map(|u| u.username.clone()),
        status: 200,
        errors: Vec::new(),
        headers: journal_headers(headers),
    });
    (user, fault, seq)
}

async fn graphql(
    State(app): State<App>,
    connection: Option<Extension<ConnectInfo<Connection>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = GraphqlRequest::parse(&body);
    let (user, fault, seq) = admit(&mut app.store.write(), &request, &headers);
    let answer = |status: StatusCode, errors: Vec<String>| {
        app.store
            .write()
            .record_answer(seq, status.as_u16(), errors);
    };
    let Some(user) = user else {
        tracing::debug!(operation = ?request.operation, "rejecting request without a valid API key");
        let message = "invalid API key: authentication required";
        answer(StatusCode::UNAUTHORIZED, vec![message.to_owned()]);
        return (StatusCode::UNAUTHORIZED, Json(error_body(message))).into_response();
    };
    let drop_point = fault.as_ref().and_then(|fault| fault.drop_connection);
    let connection = connection.map(|Extension(ConnectInfo(connection))| connection);
    if let Some(fault) = fault
        && let Some(response) = injected(&fault, &request, &answer).await
    {
        return response;
    }
    if drop_point == Some(DropPoint::BeforeExecuting) {
        return dropped(&app, seq, connection.as_ref());
    }
    let response = execute(&app, request, user, &answer).await;
    if drop_point == Some(DropPoint::AfterExecuting) {
        return dropped(&app, seq, connection.as_ref());
    }
    response
}

/// Closes the request's connection without an answer (journalled as status 0). The
/// response returned is never sent.
fn dropped(app: &App, seq: u64, connection: Option<&Connection>) -> Response {
    if let Some(connection) = connection {
        connection.drop_now();
    }
    let message = "connection dropped without an answer (injected fault)";
    app.store
        .write()
        .record_answer(seq, 0, vec![message.to_owned()]);
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// The answer a fault gives instead of executing, if any (a pure delay gives none).
async fn injected(
    fault: &Fault,
    request: &GraphqlRequest,
    answer: &impl Fn(StatusCode, Vec<String>),
) -> Option<Response> {
    tracing::debug!(operation = %fault.operation, status = ?fault.status, delay_ms = ?fault.delay_ms, drop = ?fault.drop_connection, "injecting fault");
    if let Some(delay) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fault.drop_connection.is_some() {
        return None;
    }
    if let Some(code) = fault.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        answer(status, Vec::new());
        let body = fault
            .body
            .clone()
            .unwrap_or_else(|| error_body(&format!("injected HTTP {code}")).to_string());
        let mut response = (status, body).into_response();
        if let Some(retry_after) = fault
            .retry_after
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        return Some(response);
    }
    let message = fault.graphql_error.clone()?;
    answer(StatusCode::OK, vec![message.clone()]);
    let path = request.operation.clone().unwrap_or_default();
    Some(
        Json(json!({
            "data": null,
            "errors": [{"message": message, "path": [path]}],
        }))
        .into_response(),
    )
}

async fn execute(
    app: &App,
    request: GraphqlRequest,
    user: FakeUser,
    answer: &impl Fn(StatusCode, Vec<String>),
) -> Response {
    let mut gql_request = async_graphql::Request::new(request.query).data(user);
    if let Some(name) = request.sent_name.filter(|name| !name.is_empty()) {
        gql_request = gql_request.operation_name(name);
    }
    if let Some(variables) = request.variables.filter(|v| !v.is_null()) {
        gql_request = gql_request.variables(async_graphql::Variables::from_json(variables));
    }
    let response = app.schema.execute(gql_request).await;
    if !response.errors.is_empty() {
        tracing::debug!(errors = ?response.errors, "GraphQL errors");
        let messages = response.errors.iter().map(|e| e.message.clone()).collect();
        answer(StatusCode::OK, messages);
    }
    Json(response).into_response()
}

/// Upload URLs carry their own authority (as signed storage URLs do): no API key needed.
async fn put_file(State(app): State<App>, Path(path): Path<String>, body: Bytes) -> StatusCode {
    app.store.write().files.insert(path, body.to_vec());
    StatusCode::OK
}

/// W&B's SDK streams a run's history, logs and summary here (`wandb.init`'s file stream):
/// each post is appended, one JSON body a line, to the run's file `file_stream.jsonl`.
async fn file_stream(
    State(app): State<App>,
    headers: HeaderMap,
    Path((entity, project, run)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let mut store = app.store.write();
    if authenticate(&store, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "authentication required").into_response();
    }
    let stream = store
        .files
        .entry(format!("{entity}/{project}/{run}/file_stream.jsonl"))
        .or_default();
    stream.extend_from_slice(&body);
    stream.push(b'\n');
    Json(json!({"exitcode": null, "limits": {}})).into_response()
}

fn bytes_or_404(
    app: &App,
    headers: &HeaderMap,
    find: impl Fn(&Store) -> Option<Vec<u8>>,
) -> Response {
    let store = app.store.read();
    if authenticate(&store, headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "authentication required").into_response();
    }
    match find(&store) {
        Some(bytes) => bytes.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn get_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    bytes_or_404(&app, &headers, |store| store.files.get(&path).cloned())
}

async fn get_manifest(State(app): State<App>, headers: HeaderMap, Path(n): Path<u64>) -> Response {
    bytes_or_404(&app, &headers, |store| {
        store
            .artifacts
            .manifest(n)
            .map(|manifest| manifest.to_string().into_bytes())
    })
}

async fn get_artifact_file(
    State(app): State<App>,
    headers: HeaderMap,
    Path((n, path)): Path<(u64, String)>,
) -> Response {
    bytes_or_404(&app, &headers, |store| {
        store.artifacts.file(n, &path).map(<[u8]>::to_vec)
    })
}
