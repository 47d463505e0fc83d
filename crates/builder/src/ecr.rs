//! ECR's token flow: the ambient AWS identity signs `GetAuthorizationToken`, and the token
//! ECR answers is Basic auth for the registry — for the existence check and for the
//! image-pull Secret of runs whose image is in an ECR registry (`crate::EcrPullSecret`).
//!
//! No AWS SDK: the identity comes from `object_store`'s credential chain (the one the S3
//! context store already uses: environment keys, IRSA web identity, ECS/EKS Pod Identity,
//! instance metadata) and the request is signed with its SigV4 `AwsAuthorizer`, so ECR
//! costs no crate beyond what the S3 store compiles.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredentialProvider};
use object_store::client::HttpRequestBody;

use crate::{Error, Result};

/// The JSON 1.1 target of ECR's `GetAuthorizationToken`.
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// How long a token is reused: ECR's tokens last 12 hours, so one reused for up to an hour
/// still has 11 left when a run's pod pulls with it.
const TOKEN_REUSE: Duration = Duration::from_secs(3600);

/// Credentials for an ECR registry from the ambient AWS identity: one `GetAuthorizationToken`
/// an hour at most, shared by every clone (the existence checks and the runs' pull Secrets).
#[derive(Clone)]
pub struct EcrAuth {
    region: String,
    endpoint: String,
    credentials: AwsCredentialProvider,
    token: Arc<tokio::sync::Mutex<Option<Token>>>,
}

/// A token ECR answered, and when.
struct Token {
    fetched: Instant,
    username: String,
    password: String,
}

impl fmt::Debug for EcrAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcrAuth")
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EcrAuth {
    /// ECR in `region`, at `endpoint` (default `https://api.ecr.<region>.amazonaws.com`;
    /// the agent passes `AWS_ENDPOINT_URL_ECR`), signing with the ambient identity.
    /// `options` are `object_store` AWS keys on top of it (`aws_access_key_id`, …).
    pub fn new(
        region: &str,
        endpoint: Option<&str>,
        options: &BTreeMap<String, String>,
    ) -> Result<EcrAuth> {
        let bad = |problem: String| Error::RegistryAuth { problem };
        let mut builder = AmazonS3Builder::from_env()
            .with_region(region)
            .with_bucket_name("rlaunch-ecr-identity");
        for (key, value) in options {
            let parsed = key
                .parse()
                .map_err(|e| bad(format!("AWS option `{key}`: {e}")))?;
            builder = builder.with_config(parsed, value);
        }
        let s3 = builder
            .build()
            .map_err(|e| bad(format!("cannot read the AWS identity: {e}")))?;
        Ok(EcrAuth {
            region: region.to_owned(),
            endpoint: endpoint
                .map(|e| e.trim_end_matches('/').to_owned())
                .unwrap_or_else(|| format!("https://api.ecr.{region}.amazonaws.com")),
            credentials: s3.credentials().clone(),
            token: Arc::default(),
        })
    }

    /// The region of an ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com`,
    /// also `.amazonaws.com.cn`); `None` for any other registry.
    pub fn region_of(registry: &str) -> Option<&str> {
        let host = registry.split(':').next()?;
        let rest = host
            .strip_suffix(".amazonaws.com")
            .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
        let (account, rest) = rest.split_once(".dkr.ecr.")?;
        let account_ok = !account.is_empty() && account.bytes().all(|b| b.is_ascii_digit());
        let region_ok = !rest.is_empty() && !rest.contains('.');
        (account_ok && region_ok).then_some(rest)
    }

    /// The user name and password `GetAuthorizationToken` answers (`AWS`, a 12-hour token),
    /// asked again once the last answer is an hour old (concurrent callers wait for one
    /// answer). Errors never hold a credential.
    pub async fn basic(
        &self,
        http: &reqwest::Client,
    ) -> std::result::Result<(String, String), String> {
        let mut token = self.token.lock().await;
        if let Some(cached) = token.as_ref().filter(|t| t.fetched.elapsed() < TOKEN_REUSE) {
            return Ok((cached.username.clone(), cached.password.clone()));
        }
        let (username, password) = self.fetch(http).await?;
        *token = Some(Token {
            fetched: Instant::now(),
            username: username.clone(),
            password: password.clone(),
        });
        Ok((username, password))
    }

    async fn fetch(&self, http: &reqwest::Client) -> std::result::Result<(String, String), String> {
        let credential = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| format!("no AWS identity for ECR ({e}); give the agent an IAM role (IRSA or Pod Identity) or AWS keys"))?;
        let url = format!("{}/", self.endpoint);
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header("x-amz-target", TARGET)
            .body(HttpRequestBody::from(b"{}".to_vec()))
            .map_err(|e| format!("ECR request to {url}: {e}"))?;
        AwsAuthorizer::new(&credential, "ecr", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|e| format!("cannot sign the ECR request: {e}"))?;
        let response = http
            .post(&url)
            .headers(request.headers().clone())
            .body("{}")
            .send()
            .await
            .map_err(|e| format!("ECR GetAuthorizationToken at {url}: {e}"))?;
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| format!("ECR GetAuthorizationToken at {url} answered {status}: {e}"))?;
        if !status.is_success() {
            let kind = body.get("__type").and_then(|v| v.as_str()).unwrap_or("");
            return Err(format!(
                "ECR GetAuthorizationToken at {url} answered {status} {kind}; the agent's AWS identity needs ecr:GetAuthorizationToken"
            ));
        }
        token_pair(&body).ok_or_else(|| {
            format!("ECR GetAuthorizationToken at {url} answered no usable authorizationToken")
        })
    }
}

/// `authorizationData[0].authorizationToken`: base64 of `user:password`.
fn token_pair(body: &serde_json::Value) -> Option<(String, String)> {
    let token = body
        .pointer("/authorizationData/0/authorizationToken")?
        .as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_name_their_region() {
        assert_eq!(
            EcrAuth::region_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            EcrAuth::region_of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some("cn-north-1")
        );
        for other in [
            "ghcr.io",
            "127.0.0.1:5000",
            "x.dkr.ecr.us-east-1.amazonaws.com",
            "123.dkr.ecr.amazonaws.com",
            "europe-docker.pkg.dev",
        ] {
            assert_eq!(EcrAuth::region_of(other), None, "{other}");
        }
    }

    #[test]
    fn the_token_is_base64_of_user_and_password() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:s3cret:with:colons");
        let body = serde_json::json!({"authorizationData": [{"authorizationToken": token}]});
        assert_eq!(
            token_pair(&body),
            Some(("AWS".to_owned(), "s3cret:with:colons".to_owned()))
        );
        assert_eq!(
            token_pair(&serde_json::json!({"authorizationData": []})),
            None
        );
    }

    #[test]
    fn debug_shows_no_credentials() {
        let options = BTreeMap::from([
            ("aws_access_key_id".to_owned(), "AKIDEXAMPLE".to_owned()),
            (
                "aws_secret_access_key".to_owned(),
                "wJalrXUtnFEMI".to_owned(),
            ),
        ]);
        let auth = EcrAuth::new("us-east-1", None, &options).unwrap();
        let text = format!("{auth:?}");
        assert!(
            text.contains("https://api.ecr.us-east-1.amazonaws.com") && !text.contains("wJalr"),
            "{text}"
        );
    }
}
