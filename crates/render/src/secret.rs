//! The API-key Secret: `kubernetes.io/basic-auth`, the key under `password`, as W&B's agent
//! writes it.

use base64::Engine as _;
use serde_json::{Value, json};

use rlaunch_model::{RunSpec, labels, names};

use crate::context::{ApiKeyMode, RenderContext};
use crate::output::{ApiCoordinates, ObjectRole, RenderedObject};
use crate::walk::set_label;

/// Placeholder written into the API-key Secret of dry renders.
pub const API_KEY_PLACEHOLDER: &str = "<api key: render with --api-key-env VAR to fill it>";

/// The Secret holding the key the workload gets, or `None` when there is no key.
pub(crate) fn api_key_secret(
    spec: &RunSpec,
    ctx: &RenderContext,
    namespace: &str,
) -> Option<RenderedObject> {
    let per_run_key = spec.api_key.as_ref();
    let data = match (&ctx.api_key, per_run_key) {
        (ApiKeyMode::None, _) => return None,
        (ApiKeyMode::Placeholder, _) => json!({"stringData": {"password": API_KEY_PLACEHOLDER}}),
        (ApiKeyMode::Agent(_), Some(key)) | (ApiKeyMode::Agent(key), None) => {
            if key.is_empty() {
                return None;
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.expose());
            json!({"data": {"password": encoded}})
        }
    };
    // Helm mode shares one Secret, but a run with its own key gets its own Secret: W&B's
    // agent replaces the shared one, changing the key under concurrently running pods.
    let shared = ctx.release_name.is_some() && per_run_key.is_none();
    let owner = ctx.release_name.as_deref().filter(|_| shared);
    let mut manifest = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {
            "name": names::api_key_secret_name(&ctx.run_id, owner),
            "namespace": namespace,
            "labels": {labels::CREATED_BY: labels::CREATED_BY_VALUE},
        },
    });
    if let (Some(object), Value::Object(data)) = (manifest.as_object_mut(), data) {
        object.extend(data);
        if !shared {
            set_label(object, labels::RUN_ID, &names::label_value(&ctx.run_id));
        }
        if let Some(identity) = &ctx.agent_identity {
            set_label(
                object,
                labels::AGENT_IDENTITY,
                &names::label_value(identity),
            );
        }
    }
    Some(RenderedObject {
        role: ObjectRole::ApiKeySecret { shared },
        api: ApiCoordinates {
            group: String::new(),
            version: "v1".to_owned(),
            kind: "Secret".to_owned(),
            plural: Some("secrets".to_owned()),
        },
        manifest,
    })
}
