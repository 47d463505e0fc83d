//! How to reach W&B: URL, credentials, TLS, proxy, timeouts and the retry budget.

use std::path::PathBuf;
use std::time::Duration;

use rlaunch_model::ApiKey;

/// The `User-Agent` sent when the caller does not choose one.
pub const DEFAULT_USER_AGENT: &str = concat!("rlaunch-agent/", env!("CARGO_PKG_VERSION"));

/// Which proxy the client uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxyConfig {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` from the environment (the
    /// behaviour of W&B's agent, and the default).
    #[default]
    FromEnv,
    /// No proxy, whatever the environment says.
    None,
    /// This proxy URL for every request.
    Url(String),
}

/// Everything [`crate::Client::new`] needs.
///
/// Build it with [`ClientConfig::new`] and override fields; the defaults follow the
/// W&B's client (30 s per attempt, waits from 2 s doubling up to 60 s).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the W&B server, e.g. `https://api.wandb.ai` (`WANDB_BASE_URL`). GraphQL is
    /// posted to `{base_url}/graphql`.
    pub base_url: String,
    /// The API key, sent as HTTP basic auth `api:<key>`.
    pub api_key: ApiKey,
    /// Timeout of one HTTP attempt.
    pub timeout: Duration,
    /// Total time one call may spend, retries and waits included. When the next wait would
    /// end after it, the last error is returned; an attempt still waiting for its answer
    /// when it passes ends the call with [`crate::Error::DeadlineExceeded`].
    pub retry_deadline: Duration,
    /// First retry wait; later waits double, with jitter, up to `retry_max_wait`.
    pub retry_min_wait: Duration,
    /// Longest wait between two attempts (a `Retry-After` can ask for more; the deadline
    /// still applies).
    pub retry_max_wait: Duration,
    /// A PEM bundle of CA certificates trusted in addition to the system roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Proxy selection.
    pub proxy: ProxyConfig,
    /// `User-Agent` header.
    pub user_agent: String,
    /// `X-Wandb-Username` (W&B's client sends it, empty unless `WANDB_USERNAME` is set).
    pub username: Option<String>,
    /// `X-Wandb-User-Email` (empty unless `WANDB_USER_EMAIL` is set).
    pub user_email: Option<String>,
    /// Extra headers (`WANDB__EXTRA_HTTP_HEADERS`), added to every GraphQL request.
    pub extra_headers: Vec<(String, String)>,
}

impl ClientConfig {
    /// A configuration with W&B's client's defaults.
    pub fn new(base_url: impl Into<String>, api_key: ApiKey) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            timeout: Duration::from_secs(30),
            retry_deadline: Duration::from_secs(60),
            retry_min_wait: Duration::from_secs(2),
            retry_max_wait: Duration::from_secs(60),
            extra_ca_file: None,
            proxy: ProxyConfig::default(),
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            username: None,
            user_email: None,
            extra_headers: Vec::new(),
        }
    }
}
