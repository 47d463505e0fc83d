//! The crate's one error type. Every variant names the step and the object (`ns/name`).

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The rendered run has no workload object.
    #[error("the rendered run has no workload (Job or custom resource) to submit")]
    NoWorkload,

    /// A rendered manifest could not be used as the object it claims to be.
    #[error("rendered {kind} {object} is malformed: {problem}")]
    MalformedManifest {
        /// Kind of the object.
        kind: String,
        /// `ns/name` (or `ns/<generateName>*`).
        object: String,
        /// What is wrong with it.
        problem: String,
    },

    /// The kind is not served by the apiserver (discovery found no such resource).
    #[error("kind {kind} in group {group} is not served by this cluster: is the CRD installed?")]
    KindNotServed {
        /// API group (empty for core).
        group: String,
        /// Kind.
        kind: String,
    },

    /// API discovery failed for another reason.
    #[error("failed to discover the resource for {kind} in group {group}")]
    Discovery {
        /// API group.
        group: String,
        /// Kind.
        kind: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },

    /// An API-key Secret with the same name exists, holds different data, and was not created
    /// by the agent: the agent will not overwrite it.
    #[error(
        "secret {object} already exists with different data and is not labelled \
         wandb.ai/created-by=launch-agent; delete or rename it"
    )]
    SecretConflict {
        /// `ns/name`.
        object: String,
    },

    /// The runner uses a pre-provisioned API-key Secret and creates none, but the run has
    /// its own API key (a per-run Secret).
    #[error(
        "secret {object} would hold the run's own API key, but this runner uses a \
         pre-provisioned API-key secret and creates no secrets; submit the run without its own \
         key, or configure the runner to create secrets (ApiKeySecrets::Create)"
    )]
    SecretCreationDisabled {
        /// `ns/name`.
        object: String,
    },

    /// An object with the workload's deterministic name exists but belongs to another run.
    #[error(
        "{kind} {object} already exists but belongs to another run (expected run id {run_id}); \
         it was not adopted"
    )]
    NameTaken {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// Run id we expected on it.
        run_id: String,
    },

    /// Creating an object failed.
    #[error("failed to create {kind} {object}")]
    Create {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },

    /// An additional service did not become ready in time.
    #[error("{kind} {object} was not ready within {timeout_secs} seconds")]
    NotReady {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// The configured timeout.
        timeout_secs: u64,
    },

    /// Reading an object failed.
    #[error("failed to read {kind} {object}")]
    Get {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },

    /// Listing objects failed.
    #[error("failed to list {kind} in {scope} ({selector})")]
    List {
        /// Kind.
        kind: String,
        /// Namespace, or `all namespaces`.
        scope: String,
        /// Label selector used.
        selector: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },

    /// The pre-check's watch of the cluster's nodes or pods failed before its first listing.
    #[error(
        "failed to watch {kind} in all namespaces for the pre-check (does the agent's \
         ClusterRole allow list and watch on them? or turn the pre-check off)"
    )]
    Watch {
        /// Kind.
        kind: String,
        /// Cause (shared: every pre-check waiting on the watch sees the same failure).
        #[source]
        source: std::sync::Arc<kube::runtime::watcher::Error>,
    },

    /// The pre-check's watch of the cluster's nodes or pods did not finish its first
    /// listing in time.
    #[error(
        "the pre-check's view of the cluster's {kind} was not loaded within {timeout_secs} \
         seconds (is the apiserver overloaded?)"
    )]
    ViewNotReady {
        /// Kind.
        kind: String,
        /// The deadline.
        timeout_secs: u64,
    },

    /// Deleting an object failed (404 is not an error).
    #[error("failed to delete {kind} {object}")]
    Delete {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },

    /// Replacing an object failed.
    #[error("failed to replace {kind} {object}")]
    Replace {
        /// Kind.
        kind: String,
        /// `ns/name`.
        object: String,
        /// Cause.
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    /// True when retrying the same call later may succeed (network trouble, 5xx, 429,
    /// conflicts, timeouts); false for problems in the input or the cluster's setup.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::NoWorkload
            | Error::MalformedManifest { .. }
            | Error::KindNotServed { .. }
            | Error::SecretConflict { .. }
            | Error::SecretCreationDisabled { .. }
            | Error::NameTaken { .. } => false,
            Error::NotReady { .. } | Error::ViewNotReady { .. } => true,
            Error::Watch { source, .. } => watch_error_is_transient(source),
            Error::Discovery { source, .. }
            | Error::Create { source, .. }
            | Error::Get { source, .. }
            | Error::List { source, .. }
            | Error::Delete { source, .. }
            | Error::Replace { source, .. } => kube_error_is_transient(source),
        }
    }

    /// Short stable name of the variant, for metric labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NoWorkload => "no_workload",
            Error::MalformedManifest { .. } => "malformed_manifest",
            Error::KindNotServed { .. } => "kind_not_served",
            Error::Discovery { .. } => "discovery",
            Error::SecretConflict { .. } => "secret_conflict",
            Error::SecretCreationDisabled { .. } => "secret_creation_disabled",
            Error::NameTaken { .. } => "name_taken",
            Error::Create { .. } => "create",
            Error::NotReady { .. } => "not_ready",
            Error::Get { .. } => "get",
            Error::List { .. } => "list",
            Error::Watch { .. } => "watch",
            Error::ViewNotReady { .. } => "view_not_ready",
            Error::Delete { .. } => "delete",
            Error::Replace { .. } => "replace",
        }
    }
}

/// Whether a client error is worth retrying.
pub(crate) fn kube_error_is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => {
            matches!(status.code, 408 | 409 | 429 | 500 | 502 | 503 | 504)
                || status.reason == "ServerTimeout"
                || status.reason == "Timeout"
                || status.reason == "TooManyRequests"
        }
        kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::FromUtf8(_) => true,
        _ => false,
    }
}

/// Whether a watcher error is worth retrying.
fn watch_error_is_transient(error: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as WatchError;
    match error {
        WatchError::InitialListFailed(source)
        | WatchError::WatchStartFailed(source)
        | WatchError::WatchFailed(source) => kube_error_is_transient(source),
        WatchError::WatchError(status) => matches!(status.code, 410 | 429 | 500..=504),
        WatchError::NoResourceVersion => false,
    }
}

/// `Some(status)` when the error is an API status error.
pub(crate) fn api_status(error: &kube::Error) -> Option<&kube::core::Status> {
    match error {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// True for a 404 API error.
pub(crate) fn is_not_found(error: &kube::Error) -> bool {
    // By code too: kube's `is_not_found` misses 404s whose reason is not a known one (the
    // plain-text "404 page not found" of an unknown API group).
    api_status(error).is_some_and(|status| status.code == 404 || status.is_not_found())
}

/// True for a 403: RBAC refused the call.
pub(crate) fn is_forbidden(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|status| status.code == 403)
}

/// True for a 404 meaning the resource type itself is not served (as opposed to a missing
/// namespace or object).
pub(crate) fn is_resource_not_served(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|status| {
        (status.code == 404 || status.is_not_found())
            && status
                .details
                .as_ref()
                .is_none_or(|details| details.name.is_empty() && details.kind != "namespaces")
    })
}

/// True for a 409 AlreadyExists API error.
pub(crate) fn is_already_exists(error: &kube::Error) -> bool {
    api_status(error).is_some_and(|status| status.is_already_exists() || status.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("boom", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn server_errors_are_transient_and_bad_input_is_not() {
        let create = |source| Error::Create {
            kind: "Job".into(),
            object: "ns/a".into(),
            source: Box::new(source),
        };
        assert!(create(api(503, "ServiceUnavailable")).is_transient());
        assert!(create(api(429, "TooManyRequests")).is_transient());
        assert!(!create(api(422, "Invalid")).is_transient());
        assert!(!create(api(403, "Forbidden")).is_transient());
        assert!(
            !Error::KindNotServed {
                group: "x".into(),
                kind: "Y".into()
            }
            .is_transient()
        );
    }

    #[test]
    fn not_served_message_tells_what_to_do() {
        let error = Error::KindNotServed {
            group: "batch.volcano.sh".into(),
            kind: "Job".into(),
        };
        assert_eq!(
            error.to_string(),
            "kind Job in group batch.volcano.sh is not served by this cluster: is the CRD installed?"
        );
        assert_eq!(error.kind(), "kind_not_served");
    }

    #[test]
    fn status_helpers_classify_codes() {
        assert!(is_not_found(&api(404, "NotFound")));
        assert!(is_already_exists(&api(409, "AlreadyExists")));
        assert!(!is_not_found(&api(409, "AlreadyExists")));
        assert!(is_resource_not_served(&api(404, "NotFound")));
        let missing_namespace = kube::Error::Api(
            kube::core::Status::failure("namespaces \"x\" not found", "NotFound")
                .with_code(404)
                .with_details(
                    serde_json::from_value(serde_json::json!({"name": "x", "kind": "namespaces"}))
                        .unwrap(),
                )
                .boxed(),
        );
        assert!(!is_resource_not_served(&missing_namespace));
    }
}
