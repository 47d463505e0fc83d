//! The fake's public data: what tests and the admin API send in (`New*`, [`RunUpdate`],
//! [`StopPolling`], [`Fault`]) and what they read back (`*View`, [`JournalEntry`]). All of it
//! is plain serde data; the JSON of the admin API is exactly these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::time::Duration;

/// The API key [`FakeConfig::default`] accepts (40 characters, like a real key).
pub const FAKE_API_KEY: &str = "fake0000000000000000000000000000000000key";

/// The entity of the default user.
pub const FAKE_ENTITY: &str = "fake-entity";

/// The project queues live in unless told otherwise (W&B's agent keeps its queues there).
pub const DEFAULT_PROJECT: &str = "model-registry";

fn default_project() -> String {
    DEFAULT_PROJECT.to_owned()
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

fn one() -> u32 {
    1
}

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Accepted API keys and the user each belongs to.
    pub api_keys: BTreeMap<String, FakeUser>,
    /// How long a popped, un-acked item stays leased.
    pub lease: Duration,
    /// Values the server's enums have beyond `schema.graphql` (enum name → values), to
    /// imitate a newer W&B whose answers hold values the client was not compiled with,
    /// e.g. `RunQueueAccessType` → `["RESTRICTED"]`.
    pub extra_enum_values: BTreeMap<String, Vec<String>>,
    /// The state of the run an ack creates (default `pending`: the run has not called
    /// `wandb.init`). End-to-end tests whose workloads never call `wandb.init` set
    /// `running`, so an agent's "did the run start?" check passes; a run that exists
    /// already (a resumed run) keeps its state.
    pub acked_run_state: String,
    /// `acked_run_state` per target project, for the projects that differ (e.g. a project
    /// whose workloads "forget" `wandb.init` stays `pending` while the others run).
    pub acked_run_states: BTreeMap<String, String>,
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
            extra_enum_values: BTreeMap::new(),
            acked_run_state: "pending".to_owned(),
            acked_run_states: BTreeMap::new(),
        }
    }
}

/// A user of the fake: what an accepted API key maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeUser {
    /// Username.
    pub username: String,
    /// Default entity.
    pub entity: String,
    /// Teams the user belongs to.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// `POST /_admin/queues`: a run queue and its config.
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
    /// Queue config, applied under every pushed spec (the spec wins), e.g.
    /// `{"resource_args": {"kubernetes": {"spec": {"template": ...}}}}`.
    #[serde(default = "default_config")]
    pub config: Value,
    /// `PROJECT` or `USER`; any other text is served as given, to imitate a server whose
    /// schema has access modes the client does not know (declare it in
    /// [`crate::FakeConfig::extra_enum_values`]).
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

    /// The same queue with `resource_args.kubernetes` set to `template` (a Job, or a
    /// custom resource).
    pub fn with_kubernetes(mut self, template: Value) -> Self {
        self.config = json!({"resource_args": {"kubernetes": template}});
        self
    }
}

/// `POST /_admin/items`: pushes a spec the way a user's `wandb launch --queue` would.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewItem {
    /// Queue entity.
    pub entity: String,
    /// Queue project (default `model-registry`).
    #[serde(default = "default_project")]
    pub project: String,
    /// Queue name.
    pub queue: String,
    /// The spec. An object gets the queue config applied under it; anything else (e.g. a
    /// string of broken JSON) is stored and popped as given.
    pub run_spec: Value,
    /// Priority, lower first (default 2).
    #[serde(default)]
    pub priority: Option<i64>,
}

impl NewItem {
    /// An item for `entity/model-registry/queue` with the default priority.
    pub fn new(entity: impl Into<String>, queue: impl Into<String>, run_spec: Value) -> Self {
        Self {
            entity: entity.into(),
            project: default_project(),
            queue: queue.into(),
            run_spec,
            priority: None,
        }
    }
}

/// `POST /_admin/agents/stop-polling`: what a user's "stop agent" button does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopPolling {
    /// Agent id.
    pub agent_id: String,
    /// New value of `stopPolling` (default true).
    #[serde(default = "yes")]
    pub stop_polling: bool,
}

/// `POST /_admin/runs`: create or update a run (its state, or a user's stop request).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUpdate {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run name (id).
    pub name: String,
    /// New state, if any (`pending`, `running`, `finished`, `failed`, `crashed`, ...).
    #[serde(default)]
    pub state: Option<String>,
    /// New stop flag, if any (what the W&B UI's stop button sets).
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

/// `POST /_admin/api-keys`: accept one more API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// The key.
    pub key: String,
    /// Whose it is.
    pub user: FakeUser,
}

/// Run queue item states, as the fake names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemState {
    /// Waiting to be popped.
    Pending,
    /// Popped, not acked; returns to `Pending` when the lease runs out.
    Leased,
    /// Acked by an agent.
    Claimed,
    /// Failed with `failRunQueueItem`.
    Failed,
    /// Claimed, and its run reached a terminal state (`finished`, `failed`, `crashed`,
    /// `killed`, `preempted`).
    Finished,
}

/// How an item got into its queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "via")]
pub enum ItemOrigin {
    /// Through the admin API or [`crate::FakeWandb::push_item`].
    Admin,
    /// Through `pushToRunQueueByName` (e.g. an agent requeueing a preempted run).
    Graphql {
        /// The user of the API key that pushed it.
        user: String,
    },
}

/// A failure or warning recorded against an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemReport {
    /// Stage string (`agent`, `build`, `run`, `Kubernetes`).
    pub stage: String,
    /// Message.
    pub message: String,
    /// `filePaths` sent (absent → empty): paths inside the reporting agent's run.
    pub file_paths: Vec<String>,
}

/// An item as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemView {
    /// Opaque id (`base64("RunQueueItem:N")`).
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Queue entity.
    pub entity: String,
    /// Queue project.
    pub project: String,
    /// Current state (a lease that ran out shows as `PENDING`).
    pub state: ItemState,
    /// Priority (lower is served first).
    pub priority: i64,
    /// The stored spec (queue config applied).
    pub run_spec: Value,
    /// Template variable values given at push, if any.
    pub template_variables: Option<Value>,
    /// How it was pushed.
    pub origin: ItemOrigin,
    /// How many times it was popped.
    pub pop_count: u32,
    /// Agent that leased it last.
    pub leased_by: Option<String>,
    /// `runName` given at ack.
    pub associated_run_id: Option<String>,
    /// How many `ackRunQueueItem` calls named it, accepted or not (an agent that restarts
    /// between pop and ack, or acks twice, shows here).
    pub ack_attempts: u32,
    /// The failure, when failed (the first one: a second `failRunQueueItem` is recorded
    /// in `later_failures`).
    pub failure: Option<ItemReport>,
    /// `failRunQueueItem` calls after the first (an agent that reports twice).
    pub later_failures: Vec<ItemReport>,
    /// Warnings, in order.
    pub warnings: Vec<ItemReport>,
}

/// A launch agent as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// Opaque id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Queue ids.
    pub run_queues: Vec<String>,
    /// Hostname.
    pub hostname: String,
    /// `agentConfig` as sent.
    pub agent_config: Option<String>,
    /// `version` as sent.
    pub version: Option<String>,
    /// Last status.
    pub status: Option<String>,
    /// Every status set, in order (`POLLING`, `RUNNING`, `KILLED`, ...).
    pub status_history: Vec<String>,
    /// Stop flag.
    pub stop_polling: bool,
    /// Last heartbeat (RFC 3339): any `launchAgent` query, `updateLaunchAgent` or pop that
    /// names the agent.
    pub heartbeat_at: Option<String>,
    /// How many heartbeats so far.
    pub heartbeats: u64,
}

/// A run as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run name (id).
    pub name: String,
    /// State (`pending`, `running`, `finished`, ...).
    pub state: String,
    /// Stop requested.
    pub stopped: bool,
}

/// A fault to inject: for the next `count` matching requests, or for every matching
/// request during `for_ms` milliseconds from injection. `Default` is one use of nothing
/// (set at least one of `status`, `delay_ms`, `graphql_error`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Operation name as written in the document (`popFromRunQueue`, `Viewer`, ...), or `*`
    /// for every GraphQL request.
    pub operation: String,
    /// How many requests it applies to (ignored when `for_ms` is set).
    #[serde(default = "one")]
    pub count: u32,
    /// Apply to every matching request for this long instead of `count` times (a storm).
    #[serde(default)]
    pub for_ms: Option<u64>,
    /// Answer with this HTTP status instead of executing.
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` header value to send with `status`.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Wait this long (milliseconds) before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer 200 with this GraphQL error instead of executing.
    #[serde(default)]
    pub graphql_error: Option<String>,
    /// Body of the `status` answer (default: a GraphQL error body naming the fault).
    #[serde(default)]
    pub body: Option<String>,
    /// Close the connection without answering, before or after running the operation
    /// (after any `delay_ms`; `status` and `graphql_error` are then ignored).
    #[serde(default)]
    pub drop_connection: Option<DropPoint>,
}

/// When a [`Fault`] closes the connection without an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPoint {
    /// Before running the operation: nothing happened, the client may simply retry.
    BeforeExecuting,
    /// After running it: the operation took effect (an ack acked, a failure recorded)
    /// but the client never hears so, and a retry meets the changed state.
    AfterExecuting,
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            operation: "*".to_owned(),
            count: 1,
            for_ms: None,
            status: None,
            retry_after: None,
            delay_ms: None,
            graphql_error: None,
            body: None,
            drop_connection: None,
        }
    }
}

impl Fault {
    /// HTTP `status` for the next `count` requests of `operation` (`*` for all).
    pub fn http(operation: impl Into<String>, status: u16, count: u32) -> Self {
        Self {
            operation: operation.into(),
            count,
            status: Some(status),
            ..Self::default()
        }
    }

    /// Closes the connection of the next `count` requests of `operation` (`*` for all)
    /// without an answer, at `point`.
    pub fn drop_connection(operation: impl Into<String>, point: DropPoint, count: u32) -> Self {
        Self {
            operation: operation.into(),
            count,
            drop_connection: Some(point),
            ..Self::default()
        }
    }

    /// HTTP `status` for every request of `operation` (`*` for all) during `for_ms`.
    pub fn storm(operation: impl Into<String>, status: u16, for_ms: u64) -> Self {
        Self {
            operation: operation.into(),
            for_ms: Some(for_ms),
            status: Some(status),
            ..Self::default()
        }
    }
}

/// One GraphQL request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// Milliseconds since the fake started, on tokio's clock (so a test that pauses time
    /// sees exact gaps).
    pub at_ms: f64,
    /// Operation executed (from the document; `None` if the document did not parse).
    pub operation: Option<String>,
    /// `operationName` as sent.
    pub operation_name_sent: Option<String>,
    /// The document text.
    pub query: String,
    /// The variables as sent (`None` when omitted).
    pub variables: Option<Value>,
    /// User the basic-auth key belongs to; `None` when rejected.
    pub user: Option<String>,
    /// HTTP status answered; 0 when an injected fault dropped the connection instead.
    pub status: u16,
    /// The GraphQL `errors[].message` values answered (validation, resolver or injected
    /// errors); empty when the operation succeeded.
    pub errors: Vec<String>,
    /// Request headers, names lower-cased, without `authorization`.
    pub headers: BTreeMap<String, String>,
}
