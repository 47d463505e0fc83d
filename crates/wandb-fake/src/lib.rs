//! A fake W&B server for tests: in-memory entities, projects, run queues and items, launch
//! agents, runs, uploaded files and artifacts, speaking the GraphQL that
//! `rlaunch-wandb-api` (and W&B's own launch agent) sends.
//!
//! Every GraphQL request is parsed and validated by async-graphql against
//! `rlaunch-wandb-api`'s `schema.graphql` ([`rlaunch_wandb_api::SCHEMA`], the file the client
//! is generated from) extended by the fake's `src/server.graphql` (what W&B's own agent
//! also sends for its bookkeeping run: `serverInfo`, `Entity.organization`, the full
//! `UpsertBucket`), so a document the schema does not allow fails with a GraphQL
//! validation error; the operation is taken from the document (W&B's agent sends an empty
//! `operationName`). Requests need HTTP basic auth with an accepted API key (401 otherwise).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState, NewItem, NewQueue};
//! use serde_json::json;
//!
//! let fake = FakeWandb::start().await?; // 127.0.0.1, a free port
//! fake.create_queue(NewQueue::new(FAKE_ENTITY, "gpu").with_kubernetes(json!({
//!     "spec": {"template": {"spec": {"containers": [{"name": "main"}]}}}
//! })))?;
//! let id = fake.push_item(NewItem::new(FAKE_ENTITY, "gpu", json!({
//!     "entity": FAKE_ENTITY, "project": "demo", "docker": {"docker_image": "busybox"},
//! })))?;
//! // ... point an agent at `fake.base_url` with `rlaunch_wandb_fake::FAKE_API_KEY` ...
//! let item = fake
//!     .wait_until(|fake| fake.item(&id).filter(|item| item.state != ItemState::Pending))
//!     .await;
//! # let _ = item; Ok(()) }
//! ```
//!
//! # Behaviour
//!
//! - **Items:** `PENDING` → (`popFromRunQueue`) `LEASED` → (`ackRunQueueItem`) `CLAIMED` →
//!   `FAILED` (`failRunQueueItem`) or `FINISHED` (its run reached `finished`, `failed`,
//!   `crashed`, `killed` or `preempted`). A leased item that is not acked returns to
//!   `PENDING` when its lease ([`FakeConfig::lease`], 60 s by default, as W&B) runs out.
//!   Pending items are served by priority (lower first, default 2), then age. An ack of an
//!   item that is not leased answers `success: false`. A second `failRunQueueItem` is kept
//!   in [`ItemView::later_failures`], so a test can tell an agent reported twice.
//! - **Queue config:** a pushed spec is applied over the queue's config as an RFC 7386 JSON
//!   merge patch (the spec wins; a `null` in the spec removes the key), then `resource` is
//!   set to the queue's. A pushed value that is not an object is stored as given, so a test
//!   can push a malformed spec. Pushes over GraphQL (`pushToRunQueueByName`, e.g. an agent
//!   requeueing a preempted run) keep their priority and template variables and are marked
//!   [`ItemOrigin::Graphql`].
//!   `project { runQueue(name) { runQueueItem(id) } }` answers an item's `createdAt` (its
//!   push, wall clock, seconds), priority and template variables.
//! - **Runs:** an ack creates the run `runName` in the spec's `entity`/`project` in state
//!   [`FakeConfig::acked_run_state`] (`pending` unless a test says otherwise; per project
//!   with [`FakeConfig::acked_run_states`]) if it does not exist; `RunState` and `RunStoppedStatus` read it; tests change it with
//!   [`FakeWandb::set_run_state`] and [`FakeWandb::stop_run`]. A workload's `upsertBucket`
//!   (what `wandb.init` sends) starts a `pending` run (`running`); a `state` it sends wins.
//! - **Agents:** `createLaunchAgent` gives the id and the name `launch-agent-N`; every
//!   `updateLaunchAgent` status is kept in order ([`AgentView::status_history`]); a
//!   `launchAgent` query, an `updateLaunchAgent` or a pop naming the agent is a heartbeat.
//! - **Files:** `createRunFiles` hands out upload URLs under `/_files/`; a `PUT` there
//!   stores the file (no API key: upload URLs carry their own authority).
//!   `POST /files/{entity}/{project}/{run}/file_stream` (W&B's SDK file stream) appends
//!   each body as a line to the run's file `file_stream.jsonl`.
//! - **Faults** ([`Fault`]): an HTTP status (with `Retry-After` and a body), a delay or a
//!   GraphQL error, for the next N requests of an operation (or of every operation, `*`)
//!   or for every such request during a time window (a 503 storm), or a connection closed
//!   without an answer before or after the operation ran ([`DropPoint`]). A revoked API key
//!   ([`FakeWandb::revoke_api_key`]) answers 401 from then on.
//! - **Journal:** every GraphQL request is kept ([`JournalEntry`]: operation, variables,
//!   headers without `Authorization`, status and GraphQL errors answered).
//! - Time (leases, windows, delays, the journal's clock) runs on tokio's clock, so tests
//!   that pause time see exact durations.
//!
//! What it never does: talk to a real W&B, persist anything, or check that a caller may see
//! an entity (every accepted key sees everything).
//!
//! # Admin API
//!
//! [`FakeWandb`] drives the fake in process. The same operations are JSON routes under
//! `/_admin/` for a fake run as a separate process (the `wandb-fake` binary; bodies and
//! answers are the serde form of the named types; errors are 4xx with `{"error": ...}`):
//!
//! | Route | Body → answer | In process |
//! |---|---|---|
//! | `POST /_admin/queues` | [`NewQueue`] → `{"id"}` | [`FakeWandb::create_queue`] |
//! | `POST /_admin/items` | [`NewItem`] → `{"id"}` | [`FakeWandb::push_item`] |
//! | `GET /_admin/items`, `GET /_admin/items/{id}` | → [`ItemView`]s, one [`ItemView`] | [`FakeWandb::items`], [`FakeWandb::item`] |
//! | `GET /_admin/agents` | → [`AgentView`]s | [`FakeWandb::agents`] |
//! | `POST /_admin/agents/stop-polling` | [`StopPolling`] → [`AgentView`] | [`FakeWandb::set_stop_polling`] |
//! | `POST /_admin/runs`, `GET /_admin/runs` | [`RunUpdate`] → [`RunView`]; → [`RunView`]s | [`FakeWandb::update_run`], [`FakeWandb::runs`] |
//! | `POST /_admin/entities` | [`NewEntity`] → `{}` | [`FakeWandb::set_entity`] |
//! | `POST /_admin/artifacts` | [`NewArtifact`] → `{"id"}` | [`FakeWandb::add_artifact`] |
//! | `POST /_admin/api-keys`, `DELETE /_admin/api-keys/{key}` | [`NewApiKey`] → `{}` | [`FakeWandb::add_api_key`], [`FakeWandb::revoke_api_key`] |
//! | `POST /_admin/faults`, `DELETE /_admin/faults` | [`Fault`] → `{}` | [`FakeWandb::inject_fault`], [`FakeWandb::clear_faults`] |
//! | `GET /_admin/journal`, `DELETE /_admin/journal` | → [`JournalEntry`]s | [`FakeWandb::journal`], [`FakeWandb::clear_journal`] |
//! | `GET /_admin/files` | → `{"entity/project/run/path": text}` | [`FakeWandb::files`] |
//! | `GET /_admin/changes?after=N&timeout_ms=T` | → `{"version"}` once the state changed after version `N` (long poll, 30 s default) | [`FakeWandb::wait_until`] |
//!
//! The binary: `wandb-fake --addr 127.0.0.1:0` serves on a free port and prints one line,
//! `wandb-fake listening on http://127.0.0.1:PORT`, on stdout once it accepts connections;
//! `--api-key`, `--lease-seconds` and `--acked-run-state` set [`FakeConfig`].
#![doc = include_str!("../README.md")]

mod admin;
mod artifacts;
mod connection;
mod error;
mod graphql;
mod handle;
mod ids;
mod model;
mod resolvers;
mod server;
mod shared;
mod store;

pub use error::{FakeError, StartError};
pub use handle::FakeWandb;
pub use model::{
    AgentView, DEFAULT_PROJECT, DropPoint, FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeUser, Fault,
    ItemOrigin, ItemReport, ItemState, ItemView, JournalEntry, NewApiKey, NewArtifact, NewEntity,
    NewItem, NewQueue, RunUpdate, RunView, StopPolling,
};
