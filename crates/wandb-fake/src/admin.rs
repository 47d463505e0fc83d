//! Admin operations, shared by the `/_admin/` routes and the typed [`crate::FakeWandb`]
//! methods.

use std::collections::BTreeMap;
use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::{AgentView, ItemView, RunView, Store};

fn default_project() -> String {
    crate::DEFAULT_PROJECT.to_owned()
}

fn default_resource() -> String {
    "kubernetes".to_owned()
}

fn default_access() -> String {
    "PROJECT".to_owned()
}

fn default_config() -> Value {
    json!({})
}

fn yes() -> bool {
    true
}

/// `POST /_admin/queues`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewQueue {
    /// Entity.
    pub entity: String,
    /// Project (default `model-registry`).
    #[serde(default = "default_project")]
    pub project: String,
    /// Queue name.
    pub name: String,
    /// Resource type (default `kubernetes`); set as the popped spec's `resource`.
    #[serde(default = "default_resource")]
    pub resource: String,
    /// Queue config merged under pushed specs, e.g. `{"resource_args": {"kubernetes": {...}}}`.
    #[serde(default = "default_config")]
    pub config: Value,
    /// `PROJECT` or `USER`; any other text is served as given, to imitate a server whose
    /// schema has access modes the client does not know.
    #[serde(default = "default_access")]
    pub access: String,
    /// `createdBy` as the server reports it: a user name, or a number as some servers send
    /// (default: none).
    #[serde(default)]
    pub created_by: Option<Value>,
}

impl NewQueue {
    /// A `kubernetes` queue with an empty config in `entity/model-registry`.
    pub fn new(entity: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            entity: entity.into(),
            project: default_project(),
            name: name.into(),
            resource: default_resource(),
            config: default_config(),
            access: default_access(),
            created_by: None,
        }
    }
}

/// `POST /_admin/items`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// Queue entity.
    pub entity: String,
    /// Queue project (default `model-registry`).
    #[serde(default = "default_project")]
    pub project: String,
    /// Queue name.
    pub queue: String,
    /// The spec. An object gets the queue config merged under it; anything else (e.g. a
    /// string of broken JSON) is stored and popped as given.
    pub run_spec: Value,
    /// Priority, lower first (default 2).
    #[serde(default)]
    pub priority: Option<i64>,
}

/// `POST /_admin/agents/stop-polling`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopPolling {
    /// Agent id.
    pub agent_id: String,
    /// New value of `stopPolling` (default true).
    #[serde(default = "yes")]
    pub stop_polling: bool,
}

/// `POST /_admin/runs`: create or update a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUpdate {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run name (id).
    pub name: String,
    /// New state, if any.
    #[serde(default)]
    pub state: Option<String>,
    /// New stop flag, if any.
    #[serde(default)]
    pub stopped: Option<bool>,
}

/// `POST /_admin/entities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEntity {
    /// Entity name.
    pub name: String,
    /// Whether it is a team.
    #[serde(default)]
    pub is_team: bool,
}

/// `POST /_admin/artifacts`: a new version of an artifact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewArtifact {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Collection name (without alias), e.g. `job-foo`.
    pub name: String,
    /// Extra aliases (`latest` and `vN` always resolve).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Files: path → text contents.
    pub files: BTreeMap<String, String>,
}

pub(crate) fn create_queue(store: &mut Store, queue: NewQueue) -> Result<String, String> {
    store.create_queue(queue)
}

pub(crate) fn push_item(store: &mut Store, item: NewItem) -> Result<String, String> {
    store
        .push(
            &item.entity,
            &item.project,
            &item.queue,
            item.run_spec,
            item.priority,
        )
        .map(|(id, _)| id)
}

pub(crate) fn items(store: &mut Store) -> Vec<ItemView> {
    store.expire_leases(Instant::now());
    store
        .items
        .iter()
        .map(|item| store.item_view(item))
        .collect()
}

pub(crate) fn agents(store: &Store) -> Vec<AgentView> {
    store
        .agents
        .iter()
        .map(|agent| agent.view.clone())
        .collect()
}

pub(crate) fn set_stop_polling(store: &mut Store, stop: StopPolling) -> Result<AgentView, String> {
    let agent = store
        .agent_mut(&stop.agent_id)
        .ok_or_else(|| format!("launch agent {} not found", stop.agent_id))?;
    agent.stop_polling = stop.stop_polling;
    Ok(agent.clone())
}

pub(crate) fn update_run(store: &mut Store, update: RunUpdate) -> RunView {
    store.upsert_run(
        &update.entity,
        &update.project,
        &update.name,
        update.state.as_deref(),
    );
    let key = (update.entity, update.project, update.name);
    if let (Some(stopped), Some(run)) = (update.stopped, store.runs.get_mut(&key)) {
        run.stopped = stopped;
    }
    run_view(store, &key)
}

fn run_view(store: &Store, key: &(String, String, String)) -> RunView {
    let (state, stopped) = store
        .runs
        .get(key)
        .map(|run| (run.state.clone(), run.stopped))
        .unwrap_or_default();
    RunView {
        entity: key.0.clone(),
        project: key.1.clone(),
        name: key.2.clone(),
        state,
        stopped,
    }
}

pub(crate) fn runs(store: &Store) -> Vec<RunView> {
    store.runs.keys().map(|key| run_view(store, key)).collect()
}

pub(crate) fn set_entity(store: &mut Store, entity: NewEntity) {
    store.teams.insert(entity.name, entity.is_team);
}

pub(crate) fn add_artifact(store: &mut Store, artifact: NewArtifact) -> String {
    store.add_artifact(
        &artifact.entity,
        &artifact.project,
        &artifact.name,
        artifact.aliases,
        artifact
            .files
            .into_iter()
            .map(|(path, text)| (path, text.into_bytes()))
            .collect(),
    )
}

/// Uploaded files: `entity/project/run/path` → contents (lossy UTF-8).
pub(crate) fn files(store: &Store) -> BTreeMap<String, String> {
    store
        .files
        .iter()
        .map(|(path, bytes)| (path.clone(), String::from_utf8_lossy(bytes).into_owned()))
        .collect()
}
