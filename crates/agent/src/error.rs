//! The agent's errors: configuration problems (fatal at start) and per-item failures
//! (reported to W&B, never fatal).

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A configuration that cannot be used. The agent does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path} (check the path and permissions)")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not YAML.
    #[error("launch agent config {path} is not valid YAML: {message}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key the agent does not know.
    #[error("{path}: unknown key `{key}`{}", nearest.as_ref().map(|n| format!(" (did you mean `{n}`?)")).unwrap_or_else(|| " (remove it; see the agent's docs for the valid keys)".to_owned()))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key, with its block (`builder.typ`).
        key: String,
        /// The closest valid key.
        nearest: Option<String>,
    },
    /// A value of the file that cannot be used.
    #[error("{path}: `{key}` {problem} (fix: {fix})")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// An environment variable that cannot be used.
    #[error("environment variable {name} {problem} (fix: {fix})")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A flag that cannot be used.
    #[error("flag {flag} {problem} (fix: {fix})")]
    Flag {
        /// The flag.
        flag: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// No queue to poll.
    #[error("no queue to poll{}: list them under `queues:` in the config file or pass `-q NAME`", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    NoQueues {
        /// The file, if any.
        path: Option<PathBuf>,
    },
    /// No API key.
    #[error("no W&B API key: set WANDB_API_KEY, or WANDB_API_KEY_FILE to a file holding it")]
    NoApiKey,
}

/// What can stop the agent as a whole (an item's failure never does).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The configured image builder cannot be used (its context store, destination…).
    #[error("the image builder cannot start: {0}")]
    Builder(#[source] rlaunch_builder::Error),
    /// The W&B client could not be built.
    #[error("cannot set up the W&B client")]
    WandbClient(#[source] rlaunch_wandb_api::Error),
    /// No Kubernetes client could be built.
    #[error(
        "cannot set up the Kubernetes client (is KUBECONFIG or the in-cluster service account available?)"
    )]
    KubeClient(#[source] kube::Error),
    /// Registration failed for a reason retrying cannot fix.
    #[error("cannot register the agent with W&B")]
    Register(#[source] rlaunch_wandb_api::Error),
    /// A configured queue does not exist.
    #[error(
        "queue(s) {missing} not found in {entity}/{project}; available: {available} (create them in the W&B UI or fix `queues`)"
    )]
    QueuesNotFound {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
        /// Missing names, comma-separated.
        missing: String,
        /// Existing names, comma-separated.
        available: String,
    },
    /// The health or metrics address could not be bound.
    #[error(
        "cannot listen on {addr} for {what} (is the port in use? set another with --{what}-addr)"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// `health` or `metrics`.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Lease for leader election cannot be read or created.
    #[error(
        "cannot use the Lease {namespace}/{name} for leader election: {source} (the agent needs create on leases and get/watch/update/patch on this one in coordination.k8s.io; run `launch-agent check`)"
    )]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// Why.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// This replica lost the Lease: it stopped at once and exits so it restarts as a standby.
    #[error(
        "lost the Lease {namespace}/{name} (renewal failed or another replica holds it): stopped without a word to W&B; workloads are left for the new leader; restarting as a standby"
    )]
    LeadershipLost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
    },
}
