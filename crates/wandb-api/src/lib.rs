//! Typed async client for the W&B GraphQL API, limited to what a launch agent needs.
//!
//! This crate is the only place that knows GraphQL shapes: the documents live in
//! `graphql/*.graphql`, checked at compile time against `graphql/schema.graphql` (the exact
//! subset of the W&B schema they use; the fake server in `wandb-fake` validates against the
//! same file). Callers see plain Rust types and [`rlaunch_model::RunSpec`].
//!
//! What it does: the transport (`POST {base_url}/graphql`, basic auth `api:<key>`, the
//! headers W&B's client sends, system TLS roots plus an optional CA bundle, proxy from the
//! environment, per-attempt timeout), retries of 5xx/429/network failures with exponential
//! backoff, jitter and `Retry-After` under a caller-set deadline, and one method per
//! operation on [`Client`]. Failures are one [`Error`] enum with
//! [`Error::is_transient`] and [`Error::kind`].
//!
//! What it never does: agent policy (which queue to poll, when to ack or fail, how often to
//! heartbeat), Kubernetes, or logging the API key (errors and logs redact server bodies that
//! echo it; the key is only ever written into the `Authorization` header).
//!
//! A popped item whose `runSpec` does not parse is still returned, as
//! [`PoppedItem::Malformed`] with its id, so the agent can fail it instead of losing it.
//!
//! ```no_run
//! # async fn demo() -> rlaunch_wandb_api::Result<()> {
//! use rlaunch_wandb_api::{Client, ClientConfig, PoppedItem};
//! let client = Client::new(ClientConfig::new("https://api.wandb.ai", rlaunch_model::ApiKey::new("key")))?;
//! let viewer = client.viewer().await?;
//! if let Some(PoppedItem::Valid(item)) = client
//!     .pop_from_run_queue("my-entity", "model-registry", "k8s-queue", None)
//!     .await?
//! {
//!     client.ack_run_queue_item(&item.id, "abcd1234").await?;
//! }
//! # let _ = viewer; Ok(()) }
//! ```
#![doc = include_str!("../README.md")]

mod config;
mod error;
mod files;
/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod ops;
mod transport;
mod types;

pub use config::{ClientConfig, DEFAULT_USER_AGENT, ProxyConfig};
pub use error::{Error, Result};
pub use files::RunFile;
pub use transport::Client;
pub use types::{
    AgentStatus, Artifact, ArtifactEntry, FailureStage, LaunchAgent, NewLaunchAgent, PoppedItem,
    PushRequest, PushedItem, QueueAccess, QueueItemInfo, RunQueue, RunQueueItem, Viewer,
    parse_timestamp,
};

/// The schema the operations are written against (also used by the fake server).
pub const SCHEMA: &str = include_str!("../graphql/schema.graphql");

/// The project W&B's agent keeps its queues in.
pub const LAUNCH_PROJECT: &str = "model-registry";
