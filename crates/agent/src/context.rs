//! What every step receives: the clients, the config, the store, metrics and health.

use std::sync::Arc;

use rlaunch_builder::Builder;
use rlaunch_k8s_runner::Runner;
use rlaunch_model::ApiKey;
use rlaunch_wandb_api::Client;

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::queues::QueueRef;
use crate::store::Store;

/// The agent's shared context (one per process, behind an `Arc`).
pub struct Context {
    /// The resolved config.
    pub config: Config,
    /// The agent's API key (given to runs without their own).
    pub api_key: ApiKey,
    /// W&B.
    pub wandb: Client,
    /// Kubernetes.
    pub runner: Runner,
    /// The image builder.
    pub builder: Arc<dyn Builder>,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub health: Health,
    /// Items in flight.
    pub store: Store,
}

/// Who the agent is, once registered.
#[derive(Clone, Debug)]
pub struct Registration {
    /// Server id of the launch agent.
    pub agent_id: String,
    /// Server-assigned name (also the run id of the agent's bookkeeping run).
    pub agent_name: String,
    /// Entity owning the queues.
    pub entity: String,
    /// Stable identity (see [`crate::identity()`]).
    pub identity: String,
    /// Queues polled, in configured order.
    pub queues: Vec<QueueRef>,
}
