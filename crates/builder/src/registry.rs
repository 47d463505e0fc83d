//! Does a tag exist? The OCI distribution API's `HEAD /v2/<name>/manifests/<tag>`,
//! anonymous or with credentials, following the registry's `Bearer` token challenge.

use std::fmt;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

use crate::ecr::EcrAuth;
use crate::{Error, Result};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// An image reference split for the distribution API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` (`docker.io` is spoken to as `registry-1.docker.io`).
    pub registry: String,
    /// Repository path (`team/trainer`).
    pub repository: String,
    /// Tag.
    pub tag: String,
}

impl ImageRef {
    /// Parses `host/repo:tag` (a reference without a registry host is Docker Hub's).
    pub fn parse(reference: &str) -> Option<ImageRef> {
        let reference = reference.trim_start_matches("https://");
        let (name, tag) = reference.rsplit_once(':')?;
        if tag.contains('/') || tag.is_empty() {
            return None;
        }
        let (first, rest) = name.split_once('/')?;
        let is_host = first.contains('.') || first.contains(':') || first == "localhost";
        let (registry, repository) = if is_host {
            (first.to_owned(), rest.to_owned())
        } else {
            ("docker.io".to_owned(), name.to_owned())
        };
        (!repository.is_empty()).then(|| ImageRef {
            registry,
            repository,
            tag: tag.to_owned(),
        })
    }

    fn api_host(&self) -> &str {
        match self.registry.as_str() {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        }
    }
}

/// How to authenticate to the destination registry for the existence check.
#[derive(Clone, Default)]
pub enum RegistryAuth {
    /// No credentials (public registries, or a token the registry hands out anonymously).
    #[default]
    Anonymous,
    /// User name and password (or token), sent as Basic or exchanged for a Bearer token.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// ECR: a token from `GetAuthorizationToken`, signed with the ambient AWS identity,
    /// fetched for each check.
    Ecr(EcrAuth),
}

impl RegistryAuth {
    /// The credentials for `registry` (`host[:port]`) in a dockerconfigjson file (what a
    /// `kubernetes.io/dockerconfigjson` Secret holds under `.dockerconfigjson`, or
    /// `~/.docker/config.json`): `auths.<registry>.auth` (base64 `user:password`) or its
    /// `username` and `password`. Keys may carry a scheme or path
    /// (`https://index.docker.io/v1/`). `Ok(None)` when the file has none for `registry`.
    pub fn from_docker_config(
        text: &str,
        registry: &str,
    ) -> std::result::Result<Option<RegistryAuth>, String> {
        let config: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
        let auths = match config.get("auths") {
            Some(serde_json::Value::Object(auths)) => auths,
            None => return Ok(None),
            Some(_) => return Err("has an `auths` that is not an object".to_owned()),
        };
        let wanted = docker_config_host(registry);
        let Some(entry) = auths
            .iter()
            .find(|(key, _)| docker_config_host(key) == wanted)
            .map(|(_, entry)| entry)
        else {
            return Ok(None);
        };
        let text = |key: &str| {
            entry
                .get(key)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
        };
        if let Some(auth) = text("auth") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| format!("has an `auth` for {registry} that is not base64 text"))?;
            let (username, password) = decoded
                .split_once(':')
                .ok_or_else(|| format!("has an `auth` for {registry} without `user:password`"))?;
            return Ok(Some(RegistryAuth::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        match (text("username"), text("password")) {
            (Some(username), Some(password)) => Ok(Some(RegistryAuth::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            })),
            _ => Err(format!(
                "has an entry for {registry} with neither `auth` nor `username` and `password`"
            )),
        }
    }
}

/// The registry host a dockerconfig key names (`https://index.docker.io/v1/` →
/// `docker.io`).
fn docker_config_host(key: &str) -> &str {
    let bare = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            RegistryAuth::Ecr(ecr) => ecr.fmt(f),
        }
    }
}

/// Asks registries whether a tag exists.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    auth: RegistryAuth,
    /// Registries spoken to over plain HTTP (`host:port`).
    insecure: Vec<String>,
}

impl RegistryClient {
    /// A client with these credentials; `insecure` lists the registries that speak plain
    /// HTTP (test or in-cluster registries).
    pub fn new(auth: RegistryAuth, insecure: Vec<String>) -> RegistryClient {
        RegistryClient {
            http: reqwest::Client::new(),
            auth,
            insecure,
        }
    }

    /// The same client with other credentials.
    pub fn with_auth(mut self, auth: RegistryAuth) -> RegistryClient {
        self.auth = auth;
        self
    }

    /// True when `reference`'s manifest exists, false when the registry says 404.
    pub async fn exists(&self, reference: &str) -> Result<bool> {
        let image = ImageRef::parse(reference).ok_or_else(|| Error::Registry {
            image: reference.to_owned(),
            problem: "not of the form host/repository:tag".to_owned(),
        })?;
        let scheme = if self.insecure.contains(&image.registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{}/v2/{}/manifests/{}",
            image.api_host(),
            image.repository,
            image.tag
        );
        let failed = |problem: String| Error::Registry {
            image: reference.to_owned(),
            problem,
        };
        let basic = self.basic_header().await.map_err(&failed)?;
        let first = self.head(&url, basic.clone()).await.map_err(&failed)?;
        let response = match first.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = first
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let token = self
                    .bearer_token(&challenge, basic)
                    .await
                    .map_err(&failed)?;
                self.head(&url, Some(format!("Bearer {token}")))
                    .await
                    .map_err(&failed)?
            }
            _ => first,
        };
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(failed(format!(
                "HEAD {url} answered {status}; check the registry credentials"
            ))),
        }
    }

    async fn head(
        &self,
        url: &str,
        authorization: Option<String>,
    ) -> std::result::Result<reqwest::Response, String> {
        let mut request = self.http.head(url).header(ACCEPT, MANIFEST_TYPES);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await.map_err(|e| format!("HEAD {url}: {e}"))
    }

    /// The `Authorization: Basic …` value of the configured credentials (an ECR token is
    /// fetched here), `None` for anonymous checks.
    async fn basic_header(&self) -> std::result::Result<Option<String>, String> {
        let (username, password) = match &self.auth {
            RegistryAuth::Anonymous => return Ok(None),
            RegistryAuth::Basic { username, password } => (username.clone(), password.clone()),
            RegistryAuth::Ecr(ecr) => ecr.basic(&self.http).await?,
        };
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Ok(Some(format!("Basic {encoded}")))
    }

    /// The token flow of the distribution spec: GET `realm?service=…&scope=…`.
    async fn bearer_token(
        &self,
        challenge: &str,
        basic: Option<String>,
    ) -> std::result::Result<String, String> {
        let params = parse_challenge(challenge)
            .ok_or_else(|| format!("unauthorized, and no Bearer challenge ({challenge:?})"))?;
        let mut request = self.http.get(&params.realm);
        let query: Vec<(&str, &str)> = [("service", &params.service), ("scope", &params.scope)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect();
        request = request.query(&query);
        if let Some(value) = basic {
            request = request.header(AUTHORIZATION, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("token request to {}: {e}", params.realm))?;
        if !response.status().is_success() {
            return Err(format!(
                "token request to {} answered {}; check the registry credentials",
                params.realm,
                response.status()
            ));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("token response of {}: {e}", params.realm))?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("token response of {} has no token", params.realm))
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
    scope: Option<String>,
}

/// `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim().strip_prefix("Bearer ")?;
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for part in split_params(rest) {
        let (key, value) = part.split_once('=')?;
        let value = value.trim().trim_matches('"').to_owned();
        match key.trim() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge {
        realm: realm?,
        service,
        scope,
    })
}

/// Splits on commas outside quotes (scopes contain commas: `repository:x:pull,push`).
fn split_params(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_registry_repository_and_tag() {
        assert_eq!(
            ImageRef::parse("127.0.0.1:5000/team/trainer:abc").unwrap(),
            ImageRef {
                registry: "127.0.0.1:5000".into(),
                repository: "team/trainer".into(),
                tag: "abc".into()
            }
        );
        let hub = ImageRef::parse("team/trainer:1").unwrap();
        assert_eq!(
            (hub.registry.as_str(), hub.api_host()),
            ("docker.io", "registry-1.docker.io")
        );
        assert!(ImageRef::parse("127.0.0.1:5000/team/trainer").is_none());
        assert!(ImageRef::parse("trainer:1").is_none());
    }

    #[test]
    fn bearer_challenges_keep_commas_inside_quotes() {
        let challenge = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/x:pull,push""#,
        )
        .unwrap();
        assert_eq!(challenge.realm, "https://auth.example/token");
        assert_eq!(challenge.service.as_deref(), Some("registry.example"));
        assert_eq!(
            challenge.scope.as_deref(),
            Some("repository:team/x:pull,push")
        );
        assert!(parse_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let auth = RegistryAuth::Basic {
            username: "robot".into(),
            password: "hunter2".into(),
        };
        let text = format!("{auth:?}");
        assert!(
            text.contains("robot") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
