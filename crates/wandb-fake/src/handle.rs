//! [`FakeWandb`]: a running fake server and the typed, in-process way to drive it.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::connection::{Connection, DroppableListener};
use crate::error::{FakeError, StartError};
use crate::graphql;
use crate::model::{
    AgentView, FakeConfig, FakeUser, Fault, ItemOrigin, ItemView, JournalEntry, NewApiKey,
    NewArtifact, NewEntity, NewItem, NewQueue, RunUpdate, RunView, StopPolling,
};
use crate::server::{self, App};
use crate::shared::SharedStore;
use crate::store::Store;

/// A running fake server. Dropping it stops the server.
///
/// Every method is one admin operation (the same as the `/_admin/` route of the crate
/// docs). Reads see the state at the call; [`FakeWandb::wait_until`] waits, without
/// polling, until a condition on that state holds.
#[derive(Debug)]
pub struct FakeWandb {
    /// `http://127.0.0.1:<port>`; use as the client's base URL.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    store: SharedStore,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeWandb {
    /// Starts a fake with [`FakeConfig::default`] on `127.0.0.1:0` (a free port).
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts a fake with `config` on `127.0.0.1:0` (a free port).
    pub async fn start_with(config: FakeConfig) -> Result<Self, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve_on(listener, config).await
    }

    /// Serves on an already bound listener (the binary uses this).
    pub async fn serve_on(listener: TcpListener, config: FakeConfig) -> Result<Self, StartError> {
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let store = SharedStore::new(Store::new(&config, base_url.clone()));
        let schema = graphql::build_schema(
            rlaunch_wandb_api::SCHEMA,
            graphql::SERVER_EXTENSIONS,
            &config.extra_enum_values,
            store.clone(),
        )
        .map_err(|e| StartError::Schema(format!("{e:#}")))?;
        let app = server::router(App {
            store: store.clone(),
            schema,
        })
        .into_make_service_with_connect_info::<Connection>();
        let listener = DroppableListener(listener);
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

    /// Waits until the server stops (the binary waits here until it is killed).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until `check` returns `Some`, re-checking after every change of the fake's
    /// state (each GraphQL request, upload or admin call), and returns its value. It never
    /// polls on a timer; bound it with `tokio::time::timeout`.
    ///
    /// ```no_run
    /// # async fn demo(fake: &rlaunch_wandb_fake::FakeWandb, id: &str) {
    /// use rlaunch_wandb_fake::ItemState;
    /// let failed = fake
    ///     .wait_until(|fake| fake.item(id).filter(|item| item.state == ItemState::Failed))
    ///     .await;
    /// # let _ = failed; }
    /// ```
    pub async fn wait_until<T>(&self, mut check: impl FnMut(&Self) -> Option<T>) -> T {
        let mut changes = self.store.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(value) = check(self) {
                return value;
            }
            if changes.changed().await.is_err() {
                // The sender lives as long as `self`; this cannot happen.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Creates a queue; returns its id.
    pub fn create_queue(&self, queue: NewQueue) -> Result<String, FakeError> {
        self.store.write().create_queue(queue)
    }

    /// Replaces the config of the queue `entity/project/queue` (an admin editing it in the
    /// UI, say into something malformed mid-run). Like W&B, the fake applies a queue's
    /// config when an item is pushed, so items pushed from now on get the new one and
    /// items already pushed keep theirs. In process only (no admin route).
    pub fn set_queue_config(
        &self,
        entity: &str,
        project: &str,
        queue: &str,
        config: serde_json::Value,
    ) -> Result<(), FakeError> {
        self.store
            .write()
            .set_queue_config(entity, project, queue, config)
    }

    /// Pushes an item (as a user would); returns its id.
    pub fn push_item(&self, item: NewItem) -> Result<String, FakeError> {
        let (id, _) = self.store.write().push(item, None, ItemOrigin::Admin)?;
        Ok(id)
    }

    /// Pushes an item with template variable values (as the UI does for a queue with
    /// template variables); returns its id.
    pub fn push_item_with_template_variables(
        &self,
        item: NewItem,
        template_variables: serde_json::Value,
    ) -> Result<String, FakeError> {
        let (id, _) = self
            .store
            .write()
            .push(item, Some(template_variables), ItemOrigin::Admin)?;
        Ok(id)
    }

    /// All items, in push order.
    pub fn items(&self) -> Vec<ItemView> {
        self.store.read().item_views()
    }

    /// One item by id.
    pub fn item(&self, id: &str) -> Option<ItemView> {
        self.items().into_iter().find(|item| item.id == id)
    }

    /// The uploaded files an item's failure points at (`filePaths`, which are relative to
    /// the reporting agent's run): path as reported → contents. Empty when the item has
    /// not failed or named no files.
    pub fn failure_files(&self, item_id: &str) -> BTreeMap<String, String> {
        let Some(failure) = self.item(item_id).and_then(|item| item.failure) else {
            return BTreeMap::new();
        };
        let files = self.files();
        failure
            .file_paths
            .iter()
            .filter_map(|path| {
                let suffix = format!("/{path}");
                files
                    .iter()
                    .find(|(key, _)| key.ends_with(&suffix))
                    .map(|(_, contents)| (path.clone(), contents.clone()))
            })
            .collect()
    }

    /// All launch agents, in registration order.
    pub fn agents(&self) -> Vec<AgentView> {
        self.store.read().agents.clone()
    }

    /// One launch agent by id.
    pub fn agent(&self, id: &str) -> Option<AgentView> {
        self.agents().into_iter().find(|agent| agent.id == id)
    }

    /// Sets an agent's `stopPolling` (a user pressing "stop" on the agent).
    pub fn set_stop_polling(
        &self,
        agent_id: &str,
        stop_polling: bool,
    ) -> Result<AgentView, FakeError> {
        self.store.write().set_stop_polling(StopPolling {
            agent_id: agent_id.to_owned(),
            stop_polling,
        })
    }

    /// Creates or updates a run (state, stop flag).
    pub fn update_run(&self, update: RunUpdate) -> RunView {
        self.store.write().update_run(update)
    }

    /// Marks a run as stopped by a user (what the W&B UI's stop button does).
    pub fn stop_run(&self, entity: &str, project: &str, name: &str) -> RunView {
        self.update_run(RunUpdate {
            entity: entity.to_owned(),
            project: project.to_owned(),
            name: name.to_owned(),
            state: None,
            stopped: Some(true),
        })
    }

    /// Sets a run's state (creating the run if needed), e.g. `running` when the workload
    /// "called `wandb.init`".
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
        self.store.read().run_views()
    }

    /// One run, if it exists.
    pub fn run(&self, entity: &str, project: &str, name: &str) -> Option<RunView> {
        self.runs()
            .into_iter()
            .find(|run| run.entity == entity && run.project == project && run.name == name)
    }

    /// Creates or changes an entity (team or not).
    pub fn set_entity(&self, name: &str, is_team: bool) {
        let entity = NewEntity {
            name: name.to_owned(),
            is_team,
        };
        self.store.write().teams.insert(entity.name, entity.is_team);
    }

    /// Adds a new artifact version; returns its id.
    pub fn add_artifact(&self, artifact: NewArtifact) -> String {
        self.store.write().add_artifact(artifact)
    }

    /// Accepts one more API key, for `user`.
    pub fn add_api_key(&self, key: &str, user: FakeUser) {
        self.store.write().add_api_key(NewApiKey {
            key: key.to_owned(),
            user,
        });
    }

    /// Stops accepting an API key: every later request with it is a 401 (a revoked key).
    pub fn revoke_api_key(&self, key: &str) {
        self.store.write().keys.remove(key);
    }

    /// Injects a fault: for the next `fault.count` requests of `fault.operation`, or for
    /// every one during `fault.for_ms`.
    pub fn inject_fault(&self, fault: Fault) {
        self.store.write().add_fault(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.store.write().faults.clear();
    }

    /// Every GraphQL request so far, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.store.read().journal.clone()
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
        self.store.write().journal.clear();
    }

    /// Uploaded files: `entity/project/run/path` → contents.
    pub fn files(&self) -> BTreeMap<String, String> {
        self.store.read().file_texts()
    }
}

impl Drop for FakeWandb {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
