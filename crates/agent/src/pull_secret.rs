//! The run's image-pull Secret, `regcred-<run id>`: created by the agent (not the runner)
//! when the builder says the image needs registry credentials, labelled with the run and
//! the agent identity, and deleted with the run's cleanup after the report — for adopted
//! runs too. W&B's agent never deletes it; we do, and only a Secret that carries this run's
//! and this identity's labels (a user's Secret of the same name is never touched).

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use rlaunch_builder::PullCredentials;
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

#[cfg(test)]
mod tests {
    use super::*;

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
