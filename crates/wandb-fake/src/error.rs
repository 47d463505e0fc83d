//! The fake's errors: [`FakeError`] for operations on its state (a GraphQL error, or an
//! admin API 4xx), [`StartError`] for starting the server.

/// An operation on the fake's state was refused. Over GraphQL it becomes an `errors[]`
/// entry with this message; over the admin API a 4xx with `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// A queue of that name exists already.
    #[error("run queue {queue} already exists in {entity}/{project}")]
    QueueExists {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// Queue name.
        queue: String,
    },
    /// No queue of that name.
    #[error("run queue {queue} not found in {entity}/{project} (create it first)")]
    QueueNotFound {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// Queue name.
        queue: String,
    },
    /// No queue with that id.
    #[error("run queue {id} not found (use an id from ProjectRunQueues)")]
    QueueIdNotFound {
        /// The id asked for.
        id: String,
    },
    /// No launch agent with that id.
    #[error("launch agent {id} not found")]
    AgentNotFound {
        /// The id asked for.
        id: String,
    },
    /// No run queue item with that id.
    #[error("run queue item {id} not found")]
    ItemNotFound {
        /// The id asked for.
        id: String,
    },
    /// No run of that name.
    #[error("run {entity}/{project}/{run} not found (upsert it first)")]
    RunNotFound {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// Run name.
        run: String,
    },
    /// A required input field is missing or not a string.
    #[error("{field} is required")]
    MissingInput {
        /// The input field.
        field: &'static str,
    },
    /// A `runSpec` string that is not JSON.
    #[error("runSpec is not valid JSON: {reason}")]
    InvalidRunSpec {
        /// The parse error.
        reason: String,
    },
    /// A field of `schema.graphql` the fake does not implement.
    #[error("the fake has no resolver for {owner}.{field}")]
    NoResolver {
        /// The type.
        owner: String,
        /// The field.
        field: String,
    },
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
