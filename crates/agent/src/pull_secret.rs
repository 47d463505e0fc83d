//! The run's image-pull Secret, `regcred-<run id>`: created by the agent (not the runner)
//! when the builder says the image needs registry credentials, labelled with the run and
//! the agent identity, and deleted with the run's cleanup after the report — for adopted
//! runs too. W&B's agent never deletes it; we do, and only a Secret that carries this run's
//! and this identity's labels (a user's Secret of the same name is never touched).
//!
//! Besides the builder's own credentials, W&B's deprecated `registry: {type: ecr, uri}`
//! block gives every run whose image is in that ECR registry a Secret with an ECR token
//! ([`with_registry_block`]), as W&B's agent does. Unlike it, runs whose image is in another
//! registry get none (W&B's agent makes one for every run). A `gcr` block gives none here
//! (W&B's agent fetches a Google token; the nodes' own credentials pull instead, said once
//! at start-up); `acr` gives none in both.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use rlaunch_builder::{Builder, EcrAuth, EcrPullSecret, PullCredentials};
use rlaunch_model::{labels, names};

/// The Secret's name for `run_id`.
pub(crate) fn secret_name(run_id: &str) -> String {
    let name = format!("regcred-{run_id}");
    if names::is_dns_label(&name) {
        name
    } else {
        format!("regcred-{}", names::stable_hash(run_id))
    }
}

fn labels_of(run_id: &str, identity: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::RUN_ID.to_owned(), names::label_value(run_id)),
        (labels::AGENT_IDENTITY.to_owned(), identity.to_owned()),
    ])
}

/// The Secret (pure): `kubernetes.io/dockerconfigjson` with one registry.
pub(crate) fn manifest(
    namespace: &str,
    run_id: &str,
    identity: &str,
    credentials: &PullCredentials,
) -> Secret {
    let engine = base64::engine::general_purpose::STANDARD;
    let auth = engine.encode(format!("{}:{}", credentials.username, credentials.password));
    let config = serde_json::json!({"auths": {credentials.registry.as_str(): {"auth": auth}}});
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(run_id)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels_of(run_id, identity)),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/dockerconfigjson".to_owned()),
        data: Some(BTreeMap::from([(
            ".dockerconfigjson".to_owned(),
            ByteString(config.to_string().into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// Whether `secret` is this run's, created by this identity.
fn is_ours(secret: &Secret, run_id: &str, identity: &str) -> bool {
    let wanted = labels_of(run_id, identity);
    secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|have| wanted.iter().all(|(k, v)| have.get(k) == Some(v)))
}

/// Creates the Secret and returns its name. One that exists is reused only if it is this
/// run's (a retried item); another object of that name is an error.
pub(crate) async fn create(
    client: &kube::Client,
    secret: &Secret,
    run_id: &str,
    identity: &str,
) -> Result<String, String> {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), secret).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(response)) if response.code == 409 => match api.get(&name).await {
            Ok(existing) if is_ours(&existing, run_id, identity) => Ok(name),
            Ok(_) => Err(format!(
                "a Secret `{namespace}/{name}` exists that the agent did not create for this run; delete or rename it"
            )),
            Err(error) => Err(format!(
                "cannot read the existing Secret `{namespace}/{name}`: {error}"
            )),
        },
        Err(error) => Err(format!(
            "creating the image pull Secret `{namespace}/{name}` failed: {error}"
        )),
    }
}

/// Deletes the run's Secret if there is one and it is ours. Errors are logged only: the
/// outcome is already reported.
pub(crate) async fn remove(client: &kube::Client, namespace: &str, run_id: &str, identity: &str) {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let name = secret_name(run_id);
    match api.get_opt(&name).await {
        Ok(Some(secret)) if is_ours(&secret, run_id, identity) => {
            if let Err(error) = api.delete(&name, &DeleteParams::background()).await {
                tracing::warn!(run_id, secret = %name, error = %error, "cannot delete the image pull Secret");
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::debug!(run_id, secret = %name, error = %error, "cannot look for an image pull Secret");
        }
    }
}

/// `builder`, wrapped so that runs pulling from the ECR registry of W&B's `registry:
/// {type: ecr}` block get an ECR token as their pull Secret; as it is without such a block.
pub(crate) fn with_registry_block(
    config: &crate::config::Config,
    builder: Arc<dyn Builder>,
) -> Result<Arc<dyn Builder>, rlaunch_builder::Error> {
    let Some((host, auth)) = registry_block_ecr(config)? else {
        return Ok(builder);
    };
    tracing::info!(registry = %host, "runs pulling from this ECR registry get an image-pull Secret with an ECR token (`registry.type: ecr`)");
    Ok(Arc::new(EcrPullSecret::new(builder, &host, auth)))
}

/// The ECR host of W&B's `registry: {type: ecr}` block and its token flow, or `None`
/// without such a block.
pub(crate) fn registry_block_ecr(
    config: &crate::config::Config,
) -> Result<Option<(String, EcrAuth)>, rlaunch_builder::Error> {
    let destination = match &config.builder {
        crate::config::BuilderChoice::Kaniko(options) => Some(options.destination.as_str()),
        _ => None,
    };
    let Some((host, region)) = ecr_pull_registry(config.registry.as_ref(), destination)
        .map_err(|problem| rlaunch_builder::Error::RegistryAuth { problem })?
    else {
        return Ok(None);
    };
    let auth = EcrAuth::new(&region, config.ecr_endpoint.as_deref(), &BTreeMap::new())?;
    Ok(Some((host, auth)))
}

/// The ECR host and region whose runs get pull Secrets (pure): from `registry.uri` (its
/// host), else from an ECR destination of the Kaniko builder; the region from
/// `registry.region`, else from the host. `None` without a `type: ecr` block.
fn ecr_pull_registry(
    registry: Option<&serde_json::Value>,
    destination: Option<&str>,
) -> Result<Option<(String, String)>, String> {
    let text = |key: &str| registry.and_then(|r| r.get(key)).and_then(|v| v.as_str());
    match text("type") {
        Some("ecr") => {}
        Some("gcr") => {
            tracing::warn!(
                "`registry.type: gcr`: this agent gives runs no image-pull Secret (W&B's agent makes one from a Google token); the nodes' own credentials pull the image"
            );
            return Ok(None);
        }
        _ => return Ok(None),
    }
    let host_of = |uri: &str| {
        let rest = uri.trim_start_matches("https://");
        rest.split('/').next().unwrap_or(rest).to_owned()
    };
    let host = match (text("uri"), destination) {
        (Some(uri), _) => host_of(uri),
        (None, Some(destination)) if EcrAuth::region_of(&host_of(destination)).is_some() => {
            host_of(destination)
        }
        (None, _) => {
            tracing::warn!(
                "`registry.type: ecr` without `registry.uri` (and no ECR destination): runs get no image-pull Secret; set `registry.uri` to the ECR repository"
            );
            return Ok(None);
        }
    };
    let region = text("region")
        .map(str::to_owned)
        .or_else(|| EcrAuth::region_of(&host).map(str::to_owned))
        .ok_or_else(|| {
            format!(
                "`registry.uri` host {host} is not an ECR host (`<account>.dkr.ecr.<region>.amazonaws.com`) and `registry.region` is missing: fix the uri or set the region"
            )
        })?;
    Ok(Some((host, region)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecr_registry_block_names_the_host_and_region_runs_pull_with() {
        let pull = |block: serde_json::Value, destination: Option<&str>| {
            ecr_pull_registry(Some(&block), destination)
        };
        let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let expected = Ok(Some((host.to_owned(), "eu-west-1".to_owned())));
        let uri = format!("{host}/team/trainer");
        assert_eq!(
            pull(serde_json::json!({"type": "ecr", "uri": uri}), None),
            expected
        );
        let https = format!("https://{host}/team");
        assert_eq!(
            pull(serde_json::json!({"type": "ecr", "uri": https}), None),
            expected
        );
        let destination = format!("{host}/built");
        assert_eq!(
            pull(
                serde_json::json!({"type": "ecr", "region": "eu-west-1"}),
                Some(&destination)
            ),
            expected
        );
        assert_eq!(
            pull(
                serde_json::json!({"type": "ecr", "uri": "r.example/x", "region": "us-east-2"}),
                None
            ),
            Ok(Some(("r.example".to_owned(), "us-east-2".to_owned())))
        );
        let error = pull(
            serde_json::json!({"type": "ecr", "uri": "r.example/x"}),
            None,
        )
        .unwrap_err();
        assert!(
            error.contains("registry.region") && error.contains("r.example"),
            "{error}"
        );
        for none in [
            serde_json::json!({"type": "ecr"}),
            serde_json::json!({"type": "gcr", "uri": "us-docker.pkg.dev/p/r"}),
            serde_json::json!({"type": "acr", "uri": "team.azurecr.io/x"}),
            serde_json::json!({}),
        ] {
            assert_eq!(
                pull(none.clone(), Some("ghcr.io/team/x")),
                Ok(None),
                "{none}"
            );
        }
        assert_eq!(ecr_pull_registry(None, Some(&destination)), Ok(None));
    }

    #[test]
    fn the_secret_is_a_labelled_docker_config_for_one_registry() {
        let credentials = PullCredentials {
            registry: "r.example".to_owned(),
            username: "AWS".to_owned(),
            password: "token".to_owned(),
        };
        let secret = manifest("ml", "abc123", "prod", &credentials);
        assert_eq!(secret.metadata.name.as_deref(), Some("regcred-abc123"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        assert!(is_ours(&secret, "abc123", "prod"));
        assert!(!is_ours(&secret, "other", "prod"));
        assert!(!is_ours(&secret, "abc123", "another-agent"));
        let data = &secret.data.unwrap()[".dockerconfigjson"].0;
        let config: serde_json::Value = serde_json::from_slice(data).unwrap();
        assert_eq!(config["auths"]["r.example"]["auth"], "QVdTOnRva2Vu");
        assert_eq!(
            secret_name("Not_DNS"),
            format!("regcred-{}", names::stable_hash("Not_DNS"))
        );
    }
}
