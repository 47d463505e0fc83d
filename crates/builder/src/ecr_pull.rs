//! Pull credentials for runs whose image is in one ECR registry: a decorator over any
//! [`Builder`] that answers [`Builder::pull_credentials`] with an ECR token.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::{
    BuildReport, BuildRequest, Builder, Built, EcrAuth, Error, ImageRef, PullCredentials, Result,
};

/// A builder whose runs pull from one ECR registry with a token: for an image in
/// `registry`, [`Builder::pull_credentials`] answers the `AWS` user and a fresh token from
/// `GetAuthorizationToken` (valid 12 hours, longer than the pull), so the agent gives the
/// run a `regcred-<run id>` Secret — what W&B's agent does for its `registry: {type: ecr}`
/// block. Every other image, and building, are the inner builder's.
pub struct EcrPullSecret {
    inner: Arc<dyn Builder>,
    registry: String,
    auth: EcrAuth,
    http: reqwest::Client,
}

impl EcrPullSecret {
    /// Wraps `inner`; `registry` is the ECR host (`<account>.dkr.ecr.<region>.amazonaws.com`).
    pub fn new(inner: Arc<dyn Builder>, registry: &str, auth: EcrAuth) -> EcrPullSecret {
        EcrPullSecret {
            inner,
            registry: registry.to_owned(),
            auth,
            http: reqwest::Client::new(),
        }
    }

    async fn credentials(&self, image: &str) -> Result<Option<PullCredentials>> {
        if let Some(credentials) = self.inner.pull_credentials(image).await? {
            return Ok(Some(credentials));
        }
        let in_registry = ImageRef::parse(image).is_some_and(|i| i.registry == self.registry);
        if !in_registry {
            return Ok(None);
        }
        let (username, password) =
            self.auth
                .basic(&self.http)
                .await
                .map_err(|problem| Error::RegistryAuth {
                    problem: format!("pull credentials for {image}: {problem}"),
                })?;
        Ok(Some(PullCredentials {
            registry: self.registry.clone(),
            username,
            password,
        }))
    }
}

impl Builder for EcrPullSecret {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn build<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<Built>> {
        self.inner.build(request)
    }

    fn build_report<'a>(&'a self, request: &'a BuildRequest) -> BoxFuture<'a, Result<BuildReport>> {
        self.inner.build_report(request)
    }

    fn pull_credentials<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<PullCredentials>>> {
        Box::pin(self.credentials(image))
    }
}
