//! HTTP transport: one `reqwest::Client`, GraphQL bodies, retries with backoff, and the
//! mapping of HTTP and GraphQL failures onto [`Error`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use backon::{ExponentialBuilder, Retryable};
use graphql_client::GraphQLQuery;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;

use crate::config::{ClientConfig, ProxyConfig};
use crate::error::{Error, Result};

/// Longest piece of a server body quoted in an error message.
const MAX_QUOTED_BODY: usize = 512;

/// How W&B's client sends an operation. Launch operations come from Python's
/// `LaunchApi` (empty `operationName`, `Use-Admin-Privileges: true`); the typed operations
/// come from wandb-core's genqlient client (named, no admin header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sender {
    /// Raw document from Python.
    LaunchApi,
    /// Typed wandb-core operation.
    Core,
}

/// A client for the W&B API. Cheap to clone; clones share the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) config: ClientConfig,
    pub(crate) base_url: Url,
    pub(crate) graphql_url: Url,
}

/// One failed attempt, before retry policy is applied.
#[derive(Debug)]
enum AttemptError {
    /// Non-2xx answer.
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
        message: String,
    },
    /// Connection, TLS, timeout, or body read failure.
    Transport(reqwest::Error),
    /// A transport failure after the request may have reached the server, in a call that
    /// must not be sent twice ([`Resend::OnlyIfUnsent`]).
    Unsure(reqwest::Error),
    /// The retry deadline passed: before the attempt could be sent, or while waiting for
    /// an answer (the attempt's timeout was cut to what was left of the deadline).
    DeadlinePassed,
}

impl AttemptError {
    /// A short description for the retry log line.
    fn summary(&self) -> String {
        match self {
            Self::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            Self::Transport(e) | Self::Unsure(e) => transport_summary(e),
            Self::DeadlinePassed => "retry deadline passed".to_owned(),
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => is_retryable_status(*status),
            Self::Transport(_) => true,
            Self::Unsure(_) | Self::DeadlinePassed => false,
        }
    }
}

/// Whether a request whose answer was lost may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Sending it twice has the effect of sending it once: reads, upserts, heartbeats, and
    /// calls the server refuses the second time in a way the caller handles (an ack).
    Always,
    /// A second copy would be a second effect (a second failure report): only an attempt
    /// that never connected is sent again; one that may have reached the server ends the
    /// call with [`Error::OutcomeUnknown`], for the caller to read the state and decide.
    OnlyIfUnsent,
}

/// W&B's client's policy (its Go HTTP layer, wandb-core): every 4xx/5xx is retried except
/// the ones that a retry cannot fix.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    let code = status.as_u16();
    if !(400..600).contains(&code) {
        return !status.is_success();
    }
    !matches!(code, 400 | 401 | 403 | 404 | 409 | 410 | 413 | 422 | 501)
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

impl Client {
    /// Builds a client: TLS with the system roots plus `extra_ca_file`, the chosen proxy, and
    /// gzip responses. Sends nothing.
    pub fn new(config: ClientConfig) -> Result<Self> {
        let base_url = parse_base_url(&config.base_url)?;
        let key = config.api_key.expose();
        if config.api_key.is_blank() {
            return Err(Error::InvalidConfig {
                reason: "the API key is empty; set WANDB_API_KEY".to_owned(),
            });
        }
        if key.trim() != key {
            // The key's bytes are never changed; a trailing newline from a file is trimmed by
            // whoever reads the file, so a key with whitespace is a configuration mistake.
            return Err(Error::InvalidConfig {
                reason: "the API key starts or ends with whitespace; remove it (a key read from \
                         a file must be trimmed by the reader)"
                    .to_owned(),
            });
        }
        let graphql_url = join(&base_url, "graphql")?;
        let http = http_client(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                base_url,
                graphql_url,
            }),
        })
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Sends one GraphQL operation (with retries) and decodes its `data`.
    pub(crate) async fn graphql<Q: GraphQLQuery>(
        &self,
        sender: Sender,
        variables: Q::Variables,
    ) -> Result<Q::ResponseData> {
        self.graphql_with::<Q>(sender, Resend::Always, variables)
            .await
    }

    /// [`Client::graphql`] with the rule for resending a request whose answer was lost.
    pub(crate) async fn graphql_with<Q: GraphQLQuery>(
        &self,
        sender: Sender,
        resend: Resend,
        variables: Q::Variables,
    ) -> Result<Q::ResponseData> {
        let body = Q::build_query(variables);
        let operation = body.operation_name;
        let mut json = serde_json::Map::new();
        json.insert("query".into(), Value::String(body.query.to_owned()));
        let sent_name = match sender {
            Sender::LaunchApi => "",
            Sender::Core => operation,
        };
        json.insert("operationName".into(), Value::String(sent_name.to_owned()));
        let variables =
            serde_json::to_value(&body.variables).map_err(|e| Error::InvalidResponse {
                operation,
                reason: format!("cannot encode variables: {e}"),
            })?;
        if !variables.is_null() {
            json.insert("variables".into(), variables);
        }
        let bytes =
            serde_json::to_vec(&Value::Object(json)).map_err(|e| Error::InvalidResponse {
                operation,
                reason: format!("cannot encode request: {e}"),
            })?;

        let url = self.inner.graphql_url.clone();
        let key = self.inner.config.api_key.clone();
        let response = self
            .send_with_retry(operation, &url, resend, |timeout| {
                let mut request = self
                    .inner
                    .http
                    .post(url.clone())
                    .basic_auth("api", Some(key.expose()))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .timeout(timeout)
                    .body(bytes.clone());
                if sender == Sender::LaunchApi {
                    request = request.header("Use-Admin-Privileges", "true");
                }
                request
            })
            .await?;
        decode_graphql::<Q::ResponseData>(operation, &response, &self.inner.config.api_key)
    }

    /// Sends a request built by `build` (given the attempt's timeout) until it succeeds, a
    /// non-retryable failure happens, or the retry deadline would pass. Returns the body of
    /// the 2xx answer.
    pub(crate) async fn send_with_retry(
        &self,
        operation: &'static str,
        url: &Url,
        resend: Resend,
        build: impl Fn(Duration) -> RequestBuilder,
    ) -> Result<Vec<u8>> {
        let config = &self.inner.config;
        let call = Call {
            operation,
            url: redact_url(url),
            resend,
            config,
            deadline: Instant::now() + config.retry_deadline,
            attempts: AtomicU32::new(0),
        };
        let result = (|| call.attempt(&build))
            .retry(backoff(config))
            .sleep(tokio::time::sleep)
            .when(AttemptError::is_retryable)
            .adjust(|error, backoff_wait| call.next_wait(error, backoff_wait))
            .notify(|error, wait| {
                let error = error.summary();
                tracing::warn!(operation, %error, wait = ?wait, "retrying W&B request");
            })
            .await;
        result.map_err(|error| call.into_error(error))
    }
}

/// Exponential backoff from `retry_min_wait`, doubling with jitter up to `retry_max_wait`;
/// the deadline, not a count, ends it.
fn backoff(config: &ClientConfig) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(config.retry_min_wait)
        .with_max_delay(config.retry_max_wait)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// One call of [`Client::send_with_retry`]: its attempts share the deadline and the count.
struct Call<'a> {
    operation: &'static str,
    /// The URL as it may appear in logs and errors.
    url: String,
    resend: Resend,
    config: &'a ClientConfig,
    deadline: Instant,
    attempts: AtomicU32,
}

impl Call<'_> {
    /// Sends one attempt, with a timeout cut to what is left of the deadline.
    async fn attempt(
        &self,
        build: &impl Fn(Duration) -> RequestBuilder,
    ) -> Result<Vec<u8>, AttemptError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(AttemptError::DeadlinePassed);
        }
        let number = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        let cut_by_deadline = remaining < self.config.timeout;
        // A timeout of an attempt that the deadline cut short is the deadline passing.
        let transport = |error: reqwest::Error| {
            if cut_by_deadline && error.is_timeout() {
                AttemptError::DeadlinePassed
            } else if self.resend == Resend::OnlyIfUnsent && !error.is_connect() {
                AttemptError::Unsure(error)
            } else {
                AttemptError::Transport(error)
            }
        };
        let operation = self.operation;
        tracing::debug!(operation, attempt = number, url = %self.url, "sending request");
        let timeout = self.config.timeout.min(remaining);
        let response = build(timeout).send().await.map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.failed(response, number).await);
        }
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(
            operation,
            attempt = number,
            status = status.as_u16(),
            "response"
        );
        Ok(body.to_vec())
    }

    /// The error of a non-2xx answer, with its `Retry-After` and redacted message.
    async fn failed(&self, response: reqwest::Response, number: u32) -> AttemptError {
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await.unwrap_or_default();
        let message = error_message(&body, &self.config.api_key);
        tracing::debug!(
            operation = self.operation,
            attempt = number,
            status = status.as_u16(),
            retry_after = ?retry_after,
            %message,
            "request failed"
        );
        AttemptError::Status {
            status,
            retry_after,
            message,
        }
    }

    /// The wait before the next attempt (`Retry-After` when the server sent one), or
    /// `None` to stop when it would end at or after the deadline.
    fn next_wait(&self, error: &AttemptError, backoff_wait: Option<Duration>) -> Option<Duration> {
        let wait = match error {
            AttemptError::Status {
                retry_after: Some(retry_after),
                ..
            } => *retry_after,
            _ => backoff_wait?,
        };
        if Instant::now() + wait >= self.deadline {
            tracing::debug!(operation = self.operation, wait = ?wait, "retry deadline reached, giving up");
            return None;
        }
        Some(wait)
    }

    /// The caller's error for the last failure.
    fn into_error(self, error: AttemptError) -> Error {
        let attempts = self.attempts.load(Ordering::Relaxed);
        let operation = self.operation;
        match error {
            AttemptError::Transport(source) => Error::Network {
                operation,
                url: self.url,
                attempts,
                source,
            },
            AttemptError::Unsure(source) => Error::OutcomeUnknown {
                operation,
                url: self.url,
                attempts,
                source,
            },
            AttemptError::Status {
                status, message, ..
            } => status_error(operation, self.url, status, attempts, message),
            AttemptError::DeadlinePassed => Error::DeadlineExceeded {
                operation,
                deadline: self.config.retry_deadline,
            },
        }
    }
}

fn status_error(
    operation: &'static str,
    url: String,
    status: StatusCode,
    attempts: u32,
    message: String,
) -> Error {
    let code = status.as_u16();
    match code {
        401 => Error::Unauthorized {
            operation,
            url,
            status: code,
        },
        403 => Error::Forbidden {
            operation,
            url,
            message,
        },
        404 => Error::NotFound {
            operation,
            url,
            message,
        },
        _ if is_retryable_status(status) => Error::ServerUnavailable {
            operation,
            url,
            status: code,
            attempts,
            message,
        },
        _ => Error::Rejected {
            operation,
            url,
            status: code,
            message,
        },
    }
}

fn transport_summary(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timeout".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "transport error".to_owned()
    }
}

/// The URL without query string or credentials, for messages (signed upload URLs carry
/// tokens in their query).
pub(crate) fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    let _ = url.set_username("");
    url.to_string()
}

fn parse_base_url(text: &str) -> Result<Url> {
    let base_url = Url::parse(text.trim_end_matches('/')).map_err(|e| Error::InvalidConfig {
        reason: format!(
            "base URL {text:?} is not a URL ({e}); set WANDB_BASE_URL to e.g. https://api.wandb.ai"
        ),
    })?;
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(Error::InvalidConfig {
            reason: format!("base URL {base_url} must start with http:// or https://"),
        });
    }
    Ok(base_url)
}

/// The HTTP client: user agent, gzip, default headers, the proxy choice and the extra CA
/// bundle (on top of the system roots).
fn http_client(config: &ClientConfig) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(config.user_agent.clone())
        .gzip(true)
        .default_headers(default_headers(config)?);
    builder = match &config.proxy {
        ProxyConfig::FromEnv => builder,
        ProxyConfig::None => builder.no_proxy(),
        ProxyConfig::Url(url) => {
            let proxy = reqwest::Proxy::all(url.as_str()).map_err(|e| Error::InvalidConfig {
                reason: format!("proxy URL {url:?} is invalid: {e}"),
            })?;
            builder.proxy(proxy)
        }
    };
    if let Some(path) = &config.extra_ca_file {
        builder = builder.tls_certs_merge(ca_bundle(path)?);
    }
    builder
        .build()
        .map_err(|source| Error::BuildHttpClient { source })
}

fn ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path).map_err(|source| Error::ReadCaBundle {
        path: path.to_owned(),
        source,
    })?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| Error::InvalidCaBundle {
            path: path.to_owned(),
            source: Some(source),
        })?;
    if certs.is_empty() {
        return Err(Error::InvalidCaBundle {
            path: path.to_owned(),
            source: None,
        });
    }
    Ok(certs)
}

pub(crate) fn join(base: &Url, path: &str) -> Result<Url> {
    let text = format!("{}/{}", base.as_str().trim_end_matches('/'), path);
    Url::parse(&text).map_err(|e| Error::InvalidConfig {
        reason: format!("cannot build URL {text}: {e}"),
    })
}

fn default_headers(config: &ClientConfig) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    let mut insert = |name: &str, value: &str| -> Result<()> {
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| Error::InvalidConfig {
                reason: format!("header name {name:?} is invalid: {e}"),
            })?;
        let header_value = HeaderValue::from_str(value).map_err(|e| Error::InvalidConfig {
            reason: format!("value of header {name} is invalid: {e}"),
        })?;
        headers.insert(header_name, header_value);
        Ok(())
    };
    insert(
        "X-Wandb-Username",
        config.username.as_deref().unwrap_or_default(),
    )?;
    insert(
        "X-Wandb-User-Email",
        config.user_email.as_deref().unwrap_or_default(),
    )?;
    for (name, value) in &config.extra_headers {
        if name.eq_ignore_ascii_case("authorization") {
            return Err(Error::InvalidConfig {
                reason:
                    "extra headers may not set Authorization; the API key is sent as basic auth"
                        .to_owned(),
            });
        }
        insert(name, value)?;
    }
    Ok(headers)
}

/// The message of a failed HTTP answer: `errors[].message` when the body is GraphQL JSON
/// (joined as `[a; b]` when several), else the body text, shortened and redacted.
pub(crate) fn error_message(body: &[u8], key: &rlaunch_model::ApiKey) -> String {
    let text = String::from_utf8_lossy(body);
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(value) => match graphql_error_messages(&value) {
            Some(messages) if messages.len() == 1 => messages.join(""),
            Some(messages) if !messages.is_empty() => format!("[{}]", messages.join("; ")),
            _ => text.trim().to_owned(),
        },
        Err(_) => text.trim().to_owned(),
    };
    let message = key.redact_in(&message);
    shorten(&message)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_QUOTED_BODY {
        return text.to_owned();
    }
    let cut: String = text.chars().take(MAX_QUOTED_BODY).collect();
    format!("{cut}…")
}

fn graphql_error_messages(value: &Value) -> Option<Vec<String>> {
    let errors = value.get("errors")?.as_array()?;
    Some(
        errors
            .iter()
            .map(|error| {
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)");
                let path = error
                    .get("path")
                    .and_then(Value::as_array)
                    .map(|path| {
                        path.iter()
                            .map(|p| match p {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect::<Vec<_>>()
                            .join(".")
                    })
                    .filter(|p| !p.is_empty());
                match path {
                    Some(path) => format!("{path}: {message}"),
                    None => message.to_owned(),
                }
            })
            .collect(),
    )
}

pub(crate) fn decode_graphql<T: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
    key: &rlaunch_model::ApiKey,
) -> Result<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| Error::InvalidResponse {
        operation,
        reason: format!("body is not JSON: {e}"),
    })?;
    if let Some(messages) = graphql_error_messages(&value)
        && !messages.is_empty()
    {
        return Err(Error::GraphQl {
            operation,
            messages: shorten(&key.redact_in(&messages.join("; "))),
        });
    }
    let data = match value {
        Value::Object(mut object) => object.remove("data").unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if data.is_null() {
        return Err(Error::InvalidResponse {
            operation,
            reason: "no `data` and no `errors` in the response".to_owned(),
        });
    }
    // serde quotes the offending value, which may be the key a broken server echoes.
    serde_json::from_value(data).map_err(|e| Error::InvalidResponse {
        operation,
        reason: shorten(&key.redact_in(&format!("`data` does not match the operation: {e}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(5));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(5)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_policy_matches_w_and_b_s_client() {
        for code in [429, 500, 502, 503, 504, 408] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 410, 413, 422, 501] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn error_bodies_are_redacted_and_joined() {
        let key = rlaunch_model::ApiKey::new("secret-key-0123456789");
        let body = br#"{"errors":[{"message":"bad key secret-key-0123456789"},{"message":"b"}]}"#;
        assert_eq!(error_message(body, &key), "[bad key [redacted]; b]");
        assert_eq!(
            error_message(b"plain secret-key-0123456789", &key),
            "plain [redacted]"
        );
    }

    #[test]
    fn an_answer_of_the_wrong_shape_never_repeats_the_key() {
        // Found by the `graphql` fuzz target: serde's message quotes the value it could
        // not read, and a broken server may echo the key in any field.
        let key = rlaunch_model::ApiKey::new("secret-key-0123456789");
        let body = br#"{"data": {"ackRunQueueItem": {"success": "secret-key-0123456789"}}}"#;
        type Ack = <crate::ops::AckRunQueueItem as GraphQLQuery>::ResponseData;
        let Err(error) = decode_graphql::<Ack>("ackRunQueueItem", body, &key) else {
            panic!("a string is not a boolean");
        };
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("secret-key"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
