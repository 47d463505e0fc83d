//! A fake W&B server for tests: in-memory entities, projects, run queues and items, launch
//! agents, runs, uploaded files and artifacts, speaking the GraphQL that `wandb-api` (and
//! the reference launch agent) sends.
//!
//! Every GraphQL request is parsed and validated by async-graphql against
//! `wandb-api`'s `graphql/schema.graphql` (the same file the client is generated from), so a
//! document the schema does not allow fails with a GraphQL validation error; the operation
//! is taken from the document (the reference sends an empty `operationName`). Requests need
//! HTTP basic auth with an accepted API key (401 otherwise).
//!
//! Item life cycle: `PENDING` → (`popFromRunQueue`) `LEASED` → (`ackRunQueueItem`) `CLAIMED`
//! → (`failRunQueueItem`) `FAILED`. A leased item that is not acked returns to `PENDING`
//! when its lease ([`FakeConfig::lease`], 60 s by default) runs out. Pending items are
//! served by priority (lower first, default 2), then age.
//!
//! Tests drive it through [`FakeWandb`] (typed, in-process); the `wandb-fake` binary serves
//! the same thing with a JSON admin API under `/_admin/` (see [`admin`]). Faults (HTTP status
//! with `Retry-After`, delay, GraphQL error) can be injected for the next N calls of an
//! operation, and every request is kept in a journal.
//!
//! What it never does: talk to a real W&B, persist anything, or check that a caller may
//! see an entity (every accepted key sees everything).
#![doc = include_str!("../README.md")]

pub mod admin;
mod graphql;
mod server;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use admin::{NewArtifact, NewEntity, NewItem, NewQueue, RunUpdate, StopPolling};
pub use store::{
    AgentView, FakeUser, Fault, ItemReport, ItemState, ItemView, JournalEntry, RunView,
};

use server::{App, lock};
use store::Store;

/// The schema the fake validates against: `wandb-api`'s.
pub const SCHEMA: &str = include_str!("../graphql/schema.graphql");

/// The API key [`FakeConfig::default`] accepts (40 characters, like a real key).
pub const FAKE_API_KEY: &str = "fake0000000000000000000000000000000000key";

/// The entity of the default user.
pub const FAKE_ENTITY: &str = "fake-entity";

/// The project queues live in unless told otherwise.
pub const DEFAULT_PROJECT: &str = "model-registry";

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Accepted API keys and the user each belongs to.
    pub api_keys: BTreeMap<String, FakeUser>,
    /// How long a popped, un-acked item stays leased.
    pub lease: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        let mut api_keys = BTreeMap::new();
        api_keys.insert(
            FAKE_API_KEY.to_owned(),
            FakeUser {
                username: "fake-user".to_owned(),
                entity: FAKE_ENTITY.to_owned(),
                teams: Vec::new(),
            },
        );
        Self {
            api_keys,
            lease: Duration::from_secs(60),
        }
    }
}

/// A running fake server, for tests. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeWandb {
    /// `http://127.0.0.1:<port>`; use as the client's base URL.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The schema file did not build into an executable schema.
    #[error("cannot build the fake's schema from schema.graphql: {0}")]
    Schema(String),
    /// Binding or serving failed.
    #[error("cannot listen for the fake W&B server")]
    Listen(#[from] std::io::Error),
}

impl FakeWandb {
    /// Starts a fake with [`FakeConfig::default`] on `127.0.0.1:0`.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts a fake with `config` on `127.0.0.1:0`.
    pub async fn start_with(config: FakeConfig) -> Result<Self, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve_on(listener, config).await
    }

    /// Serves on an already bound listener (the binary uses this).
    pub async fn serve_on(listener: TcpListener, config: FakeConfig) -> Result<Self, StartError> {
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let mut store = Store::new(&config);
        store.base_url = base_url.clone();
        let store = Arc::new(Mutex::new(store));
        let schema = graphql::build_schema(SCHEMA, store.clone())
            .map_err(|e| StartError::Schema(format!("{e:#}")))?;
        let app = server::router(App {
            store: store.clone(),
            schema,
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                tracing::error!(%error, "fake W&B server stopped");
            }
        });
        tracing::debug!(%base_url, "fake W&B server listening");
        Ok(Self {
            base_url,
            addr,
            store,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Waits until the server stops (it stops when this handle is dropped elsewhere; the
    /// binary waits here forever).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Creates a queue; returns its id.
    pub fn create_queue(&self, queue: NewQueue) -> Result<String, String> {
        admin::create_queue(&mut lock(&self.store), queue)
    }

    /// Pushes an item; returns its id.
    pub fn push_item(&self, item: NewItem) -> Result<String, String> {
        admin::push_item(&mut lock(&self.store), item)
    }

    /// All items, in push order (expired leases already returned).
    pub fn items(&self) -> Vec<ItemView> {
        admin::items(&mut lock(&self.store))
    }

    /// One item by id.
    pub fn item(&self, id: &str) -> Option<ItemView> {
        self.items().into_iter().find(|item| item.id == id)
    }

    /// All launch agents.
    pub fn agents(&self) -> Vec<AgentView> {
        admin::agents(&lock(&self.store))
    }

    /// Sets an agent's `stopPolling`.
    pub fn set_stop_polling(
        &self,
        agent_id: &str,
        stop_polling: bool,
    ) -> Result<AgentView, String> {
        admin::set_stop_polling(
            &mut lock(&self.store),
            StopPolling {
                agent_id: agent_id.to_owned(),
                stop_polling,
            },
        )
    }

    /// Creates or updates a run (state, stop flag).
    pub fn update_run(&self, update: RunUpdate) -> RunView {
        admin::update_run(&mut lock(&self.store), update)
    }

    /// Marks a run as stopped by a user.
    pub fn stop_run(&self, entity: &str, project: &str, name: &str) -> RunView {
        self.update_run(RunUpdate {
            entity: entity.to_owned(),
            project: project.to_owned(),
            name: name.to_owned(),
            state: None,
            stopped: Some(true),
        })
    }

    /// Sets a run's state (creating the run if needed).
    pub fn set_run_state(&self, entity: &str, project: &str, name: &str, state: &str) -> RunView {
        self.update_run(RunUpdate {
            entity: entity.to_owned(),
            project: project.to_owned(),
            name: name.to_owned(),
            state: Some(state.to_owned()),
            stopped: None,
        })
    }

    /// All runs.
    pub fn runs(&self) -> Vec<RunView> {
        admin::runs(&lock(&self.store))
    }

    /// Creates or changes an entity (team or not).
    pub fn set_entity(&self, name: &str, is_team: bool) {
        admin::set_entity(
            &mut lock(&self.store),
            NewEntity {
                name: name.to_owned(),
                is_team,
            },
        );
    }

    /// Adds a new artifact version; returns its id.
    pub fn add_artifact(&self, artifact: NewArtifact) -> String {
        admin::add_artifact(&mut lock(&self.store), artifact)
    }

    /// Injects a fault for the next `fault.count` requests of `fault.operation`.
    pub fn inject_fault(&self, fault: Fault) {
        lock(&self.store).faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.store).faults.clear();
    }

    /// Every GraphQL request so far, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.store).journal.clone()
    }

    /// The journal entries of one operation.
    pub fn journal_of(&self, operation: &str) -> Vec<JournalEntry> {
        self.journal()
            .into_iter()
            .filter(|entry| entry.operation.as_deref() == Some(operation))
            .collect()
    }

    /// Forgets the journal.
    pub fn clear_journal(&self) {
        lock(&self.store).journal.clear();
    }

    /// Uploaded files: `entity/project/run/path` → contents.
    pub fn files(&self) -> BTreeMap<String, String> {
        admin::files(&lock(&self.store))
    }
}

impl Drop for FakeWandb {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
