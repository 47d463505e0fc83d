//! The one error type of this crate. Every message says what failed and what to do about it,
//! and none of them can contain the API key: server text is passed through
//! [`rlaunch_model::ApiKey::redact_in`] before it is stored.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to W&B.
///
/// Decide about retrying with [`Error::is_transient`]; label metrics and log fields with
/// [`Error::kind`]. The transport has already retried transient failures until the
/// caller's retry deadline when one of them comes back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client configuration cannot be used.
    #[error("invalid W&B client configuration: {reason}")]
    InvalidConfig {
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// The extra CA bundle file could not be read.
    #[error("cannot read CA bundle {path} (check the path given as the extra CA file)")]
    ReadCaBundle {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },

    /// The extra CA bundle file is not a PEM bundle.
    #[error(
        "CA bundle {path} holds no usable PEM certificate (expected `-----BEGIN CERTIFICATE-----` blocks)"
    )]
    InvalidCaBundle {
        /// The file.
        path: PathBuf,
        /// The parse failure, if any.
        #[source]
        source: Option<reqwest::Error>,
    },

    /// The HTTP client could not be built (TLS or proxy setup).
    #[error("cannot build the HTTP client (check the proxy settings and CA bundle)")]
    BuildHttpClient {
        /// The underlying failure.
        #[source]
        source: reqwest::Error,
    },

    /// 401: the server does not accept the API key.
    #[error("API key rejected by {url} ({status}) during {operation}: check WANDB_API_KEY")]
    Unauthorized {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that answered.
        url: String,
        /// The HTTP status.
        status: u16,
    },

    /// 403: the key is valid but may not do this.
    #[error(
        "{url} refused {operation} (403 forbidden): {message} (does the API key's user have access to this entity and project?)"
    )]
    Forbidden {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that answered.
        url: String,
        /// The server's message, redacted.
        message: String,
    },

    /// 404: wrong base URL, or the object does not exist.
    #[error("{url} answered 404 not found to {operation}: {message} (is the W&B base URL right?)")]
    NotFound {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that answered.
        url: String,
        /// The server's message, redacted.
        message: String,
    },

    /// Another HTTP status that retrying cannot fix (400, 409, 413, 422, 501, ...).
    #[error(
        "{url} rejected {operation} with HTTP {status}: {message} (not retried; the request or server version is incompatible)"
    )]
    Rejected {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that answered.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message, redacted.
        message: String,
    },

    /// A retryable HTTP status (5xx, 429, ...) that was still failing when retries stopped.
    #[error(
        "{url} answered HTTP {status} to {operation} after {attempts} attempt(s): {message} (the W&B server is unavailable or overloaded; try again later)"
    )]
    ServerUnavailable {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that answered.
        url: String,
        /// The HTTP status.
        status: u16,
        /// How many requests were sent.
        attempts: u32,
        /// The server's message, redacted.
        message: String,
    },

    /// Connection, TLS or timeout failure that was still failing when retries stopped.
    #[error(
        "cannot reach {url} for {operation} after {attempts} attempt(s) (check the network, proxy and CA settings)"
    )]
    Network {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// The URL that was tried.
        url: String,
        /// How many requests were sent.
        attempts: u32,
        /// The last transport failure.
        #[source]
        source: reqwest::Error,
    },

    /// The connection broke after a request that must not be sent twice may have reached
    /// the server: it may or may not have taken effect. Never resent by the client; read
    /// the state it changes (for `failRunQueueItem`, the item's state) before sending it again.
    #[error(
        "the connection to {url} broke during {operation} after {attempts} attempt(s); it may or may not have taken effect (read the state it changes before sending it again)"
    )]
    OutcomeUnknown {
        /// The GraphQL operation.
        operation: &'static str,
        /// The URL that was tried.
        url: String,
        /// How many requests were sent.
        attempts: u32,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered 200 with GraphQL `errors`. Never retried.
    #[error("W&B rejected {operation}: {messages}")]
    GraphQl {
        /// The GraphQL operation.
        operation: &'static str,
        /// The `errors[].message` values joined with `; `, redacted.
        messages: String,
    },

    /// The response body is not what the operation's schema promises.
    #[error(
        "unexpected response to {operation}: {reason} (is this a W&B server of a supported version?)"
    )]
    InvalidResponse {
        /// The GraphQL operation or file step.
        operation: &'static str,
        /// What was wrong.
        reason: String,
    },

    /// `project` was null in `ProjectRunQueues`.
    #[error(
        "error fetching run queues for {entity}/{project}: check that you have access to this entity and project"
    )]
    ProjectNotFound {
        /// The entity asked for.
        entity: String,
        /// The project asked for.
        project: String,
    },

    /// `entity` was null in `EntityIsTeam`.
    #[error(
        "entity {entity} not found: check the configured entity and that the API key's user belongs to it"
    )]
    EntityNotFound {
        /// The entity asked for.
        entity: String,
    },

    /// `launchAgent` was null.
    #[error(
        "launch agent {agent_id} not found on the server (was it deleted? restart the agent to register again)"
    )]
    LaunchAgentNotFound {
        /// The agent id asked for.
        agent_id: String,
    },

    /// `createRunQueue` did not give a queue id.
    #[error(
        "unable to create run queue {queue} in {entity}/{project} (check that the API key may create queues there)"
    )]
    QueueNotCreated {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// Queue name.
        queue: String,
    },

    /// `createLaunchAgent` did not give an agent id.
    #[error(
        "W&B did not register the launch agent for {entity}/{project} (no launchAgentId returned)"
    )]
    AgentNotRegistered {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
    },

    /// `ackRunQueueItem` answered `success: false`.
    #[error(
        "error acking run queue item {item_id}: item may have already been acknowledged by another process"
    )]
    AckRejected {
        /// The item.
        item_id: String,
    },

    /// A mutation about an item or agent answered `success: false`.
    #[error("W&B answered success=false to {operation} for {target} (does it still exist?)")]
    MutationRejected {
        /// The operation.
        operation: &'static str,
        /// The item or agent id.
        target: String,
    },

    /// `createRunFiles` did not hand out an upload URL for a file.
    #[error("W&B gave no upload URL for {file} of run {run}")]
    NoUploadUrl {
        /// The file path inside the run.
        file: String,
        /// The run (`entity/project/run`).
        run: String,
    },

    /// The artifact does not exist or is not visible.
    #[error("artifact {name} not found in {entity}/{project} (check the job name and alias)")]
    ArtifactNotFound {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// `name:alias`.
        name: String,
    },

    /// The artifact's manifest cannot be used.
    #[error("manifest of artifact {name} is unusable: {reason}")]
    InvalidManifest {
        /// `name:alias`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The retry deadline ([`crate::ClientConfig::retry_deadline`]) passed while waiting
    /// for an answer, or before the request could be sent at all. A server that answers
    /// with errors until the deadline is [`Error::ServerUnavailable`] instead.
    #[error(
        "W&B did not answer {operation} within the retry deadline of {deadline:?} (the server is slow or unreachable; try again later, or raise the retry deadline)"
    )]
    DeadlineExceeded {
        /// The operation.
        operation: &'static str,
        /// The deadline the caller set.
        deadline: Duration,
    },
}

impl Error {
    /// True when trying again later may succeed (server overloaded or unreachable). Every
    /// other error needs a change of configuration, input or server state.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ServerUnavailable { .. } | Self::Network { .. } | Self::DeadlineExceeded { .. }
        )
    }

    /// A short stable name, for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "invalid_config",
            Self::ReadCaBundle { .. } => "read_ca_bundle",
            Self::InvalidCaBundle { .. } => "invalid_ca_bundle",
            Self::BuildHttpClient { .. } => "build_http_client",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::ServerUnavailable { .. } => "server_unavailable",
            Self::Network { .. } => "network",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::GraphQl { .. } => "graphql",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::ProjectNotFound { .. } => "project_not_found",
            Self::EntityNotFound { .. } => "entity_not_found",
            Self::LaunchAgentNotFound { .. } => "launch_agent_not_found",
            Self::QueueNotCreated { .. } => "queue_not_created",
            Self::AgentNotRegistered { .. } => "agent_not_registered",
            Self::AckRejected { .. } => "ack_rejected",
            Self::MutationRejected { .. } => "mutation_rejected",
            Self::NoUploadUrl { .. } => "no_upload_url",
            Self::ArtifactNotFound { .. } => "artifact_not_found",
            Self::InvalidManifest { .. } => "invalid_manifest",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
        }
    }
}
