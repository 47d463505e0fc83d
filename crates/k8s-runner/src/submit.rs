//! Creating what the render engine produced: Secrets, additional services (then waiting for
//! them), then the workload. Idempotent on retry; rolls back what it created on failure.

use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use rlaunch_model::labels;
use rlaunch_render::{ObjectRole, Rendered, RenderedObject};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::api::{Coordinates, OWNED_OBJECTS_ANNOTATION, OwnedObject, RunRef, resolve};
use crate::attribution::prepare_workload;
use crate::error::{Error, Result, is_already_exists, is_not_found, is_resource_not_served};
use crate::requeue::{REQUEUE_ANNOTATION, RequeueRecord};
use rlaunch_render::ApiCoordinates;

/// How the runner treats API-key Secrets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiKeySecrets {
    /// Create every rendered API-key Secret. The shared helm-mode Secret is created when
    /// missing; if it exists (409) it is used as it is, without reading it. A per-run Secret
    /// that exists is read and compared (W&B's agent's conflict rules).
    #[default]
    Create,
    /// The shared API-key Secret is provisioned beforehand (by the Helm chart): the runner
    /// creates, reads and deletes no Secret at all, so it needs no RBAC on Secrets. A run
    /// whose spec carries its own API key (a per-run Secret) is refused with
    /// [`Error::SecretCreationDisabled`].
    PreProvisioned,
}

/// How a submission ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Submission {
    /// The workload, to track, cancel and clean up.
    pub run: RunRef,
    /// True when the workload already existed (a retried submit) and was adopted.
    pub adopted: bool,
    /// Whether the requeue record was kept on the workload.
    pub requeue_kept: bool,
}

/// An object this submission created, for rollback.
struct Created {
    resource: ApiResource,
    namespace: String,
    name: String,
}

fn object_label(manifest: &Value, namespace: &str) -> String {
    let metadata = manifest.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            metadata
                .and_then(|m| m.get("generateName"))
                .and_then(Value::as_str)
                .map(|prefix| format!("{prefix}*"))
        })
        .unwrap_or_else(|| "<unnamed>".to_owned());
    format!("{namespace}/{name}")
}

fn manifest_label<'a>(manifest: &'a Value, key: &str) -> Option<&'a str> {
    manifest
        .pointer("/metadata/labels")
        .and_then(|labels| labels.get(key))
        .and_then(Value::as_str)
}

fn manifest_annotation<'a>(manifest: &'a Value, key: &str) -> Option<&'a str> {
    manifest
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(key))
        .and_then(Value::as_str)
}

fn to_dynamic(object: &RenderedObject, namespace: &str) -> Result<DynamicObject> {
    serde_json::from_value(object.manifest.clone()).map_err(|error| Error::MalformedManifest {
        kind: object.api.kind.clone(),
        object: object_label(&object.manifest, namespace),
        problem: error.to_string(),
    })
}

pub(crate) struct Submitter<'a> {
    pub client: &'a Client,
    pub readiness_poll: Duration,
    pub api_key_secrets: ApiKeySecrets,
}

impl Submitter<'_> {
    pub async fn submit(
        &self,
        rendered: &Rendered,
        requeue: Option<&RequeueRecord>,
    ) -> Result<Submission> {
        let namespace = rendered.namespace.as_str();
        let workload = rendered.workload().ok_or(Error::NoWorkload)?;
        let mut created: Vec<Created> = Vec::new();
        let result = self
            .submit_inner(rendered, namespace, workload, requeue, &mut created)
            .await;
        if result.is_err() {
            self.rollback(&created).await;
        }
        result
    }

    async fn submit_inner(
        &self,
        rendered: &Rendered,
        namespace: &str,
        workload: &RenderedObject,
        requeue: Option<&RequeueRecord>,
        created: &mut Vec<Created>,
    ) -> Result<Submission> {
        let mut owned = Vec::new();
        for object in &rendered.objects {
            if let ObjectRole::ApiKeySecret { shared } = object.role {
                self.secret(object, namespace, shared, created, &mut owned)
                    .await?;
            }
        }
        let services: Vec<&RenderedObject> = rendered
            .objects
            .iter()
            .filter(|o| matches!(o.role, ObjectRole::AdditionalService { .. }))
            .collect();
        let results = join_all(
            services
                .iter()
                .map(|object| self.create_service(object, namespace)),
        )
        .await;
        let mut first_error = None;
        let mut to_wait = Vec::new();
        for (object, result) in services.iter().zip(results) {
            match result {
                Ok((resource, name, newly_created)) => {
                    owned.push(OwnedObject::from_resource(&resource, &name));
                    if newly_created {
                        created.push(Created {
                            resource: resource.clone(),
                            namespace: namespace.to_owned(),
                            name: name.clone(),
                        });
                    }
                    if let ObjectRole::AdditionalService {
                        wait_for_ready: true,
                        wait_timeout_secs,
                    } = object.role
                    {
                        to_wait.push((resource, name, wait_timeout_secs));
                    }
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let waits =
            join_all(to_wait.iter().map(|(resource, name, timeout)| {
                self.wait_ready(resource, namespace, name, *timeout)
            }))
            .await;
        for result in waits {
            result?;
        }
        let mut prepared = workload.clone();
        let requeue_kept = match requeue.map(|record| (record, record.to_annotation())) {
            Some((_, Some(text))) => {
                set_annotation(&mut prepared.manifest, REQUEUE_ANNOTATION, &text);
                true
            }
            Some((record, None)) => {
                warn!(
                    run_spec_bytes = record.run_spec.to_string().len(),
                    "the run spec is too large to keep for a requeue after a restart"
                );
                false
            }
            None => false,
        };
        let mut submission = self.create_workload(&prepared, namespace, &owned).await?;
        submission.requeue_kept = requeue_kept && !submission.adopted;
        Ok(submission)
    }

    /// Handle one rendered API-key Secret according to [`ApiKeySecrets`].
    async fn secret(
        &self,
        object: &RenderedObject,
        namespace: &str,
        shared: bool,
        created: &mut Vec<Created>,
        owned: &mut Vec<OwnedObject>,
    ) -> Result<()> {
        match (self.api_key_secrets, shared) {
            (ApiKeySecrets::PreProvisioned, true) => return Ok(()),
            (ApiKeySecrets::PreProvisioned, false) => {
                return Err(Error::SecretCreationDisabled {
                    object: object_label(&object.manifest, namespace),
                });
            }
            (ApiKeySecrets::Create, _) => {}
        }
        let secret_resource = ApiResource::erase::<Secret>(&());
        let Some((name, newly_created)) = self.ensure_secret(object, namespace, shared).await?
        else {
            return Ok(());
        };
        // A shared Secret is never rolled back: another run may already use it.
        if newly_created && !shared {
            created.push(Created {
                resource: secret_resource.clone(),
                namespace: namespace.to_owned(),
                name: name.clone(),
            });
        }
        if !shared {
            owned.push(OwnedObject::from_resource(&secret_resource, &name));
        }
        Ok(())
    }

    /// Create the API-key Secret, applying W&B's agent's 409 rules (except for the shared
    /// Secret, which is used as it is). Returns its name and whether this call created it (so
    /// a failed submission can delete it); `None` for an existing shared Secret.
    async fn ensure_secret(
        &self,
        object: &RenderedObject,
        namespace: &str,
        shared: bool,
    ) -> Result<Option<(String, bool)>> {
        let label = object_label(&object.manifest, namespace);
        let secret: Secret = serde_json::from_value(object.manifest.clone()).map_err(|error| {
            Error::MalformedManifest {
                kind: "Secret".to_owned(),
                object: label.clone(),
                problem: error.to_string(),
            }
        })?;
        let name = secret.name_any();
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => return Ok(Some((name, true))),
            Err(error) if is_already_exists(&error) && shared => {
                info!(secret = %label, "using the existing shared API-key secret");
                return Ok(None);
            }
            Err(error) if is_already_exists(&error) => {}
            Err(source) => {
                return Err(Error::Create {
                    kind: "Secret".to_owned(),
                    object: label,
                    source: Box::new(source),
                });
            }
        }
        let existing = api.get(&name).await.map_err(|source| Error::Get {
            kind: "Secret".to_owned(),
            object: label.clone(),
            source: Box::new(source),
        })?;
        if existing.data == secret.data && existing.type_ == secret.type_ {
            info!(secret = %label, "reusing existing API-key secret with the same data");
            return Ok(Some((name, false)));
        }
        let ours = existing
            .labels()
            .get(labels::CREATED_BY)
            .is_some_and(|v| v == labels::CREATED_BY_VALUE);
        if !ours {
            return Err(Error::SecretConflict { object: label });
        }
        // Replace in place (with the read resourceVersion), so there is no window in which
        // the Secret is missing for pods that start meanwhile.
        let mut replacement = secret.clone();
        replacement.metadata.resource_version = existing.metadata.resource_version.clone();
        api.replace(&name, &PostParams::default(), &replacement)
            .await
            .map_err(|source| Error::Replace {
                kind: "Secret".to_owned(),
                object: label.clone(),
                source: Box::new(source),
            })?;
        info!(secret = %label, "replaced agent-created API-key secret holding other data");
        Ok(Some((name, false)))
    }

    async fn create_service(
        &self,
        object: &RenderedObject,
        namespace: &str,
    ) -> Result<(ApiResource, String, bool)> {
        let coordinates = &object.api;
        let resource = resolve_object(self.client, object).await?;
        let body = to_dynamic(object, namespace)?;
        let label = object_label(&object.manifest, namespace);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        match api.create(&PostParams::default(), &body).await {
            Ok(created) => Ok((resource, created.name_any(), true)),
            Err(error) if is_already_exists(&error) => {
                let name = body.name_any();
                let existing = api.get(&name).await.map_err(|source| Error::Get {
                    kind: coordinates.kind.clone(),
                    object: label.clone(),
                    source: Box::new(source),
                })?;
                let expected = manifest_label(&object.manifest, labels::RUN_ID);
                if expected.is_some()
                    && existing.labels().get(labels::RUN_ID).map(String::as_str) == expected
                {
                    Ok((resource, name, false))
                } else {
                    Err(Error::NameTaken {
                        kind: coordinates.kind.clone(),
                        object: label,
                        run_id: expected.unwrap_or_default().to_owned(),
                    })
                }
            }
            Err(error) if is_resource_not_served(&error) => Err(Error::KindNotServed {
                group: coordinates.group.clone(),
                kind: coordinates.kind.clone(),
            }),
            Err(source) => Err(Error::Create {
                kind: coordinates.kind.clone(),
                object: label,
                source: Box::new(source),
            }),
        }
    }

    async fn wait_ready(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        timeout_secs: u64,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        loop {
            match self.is_ready(resource, namespace, name).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(error) => {
                    warn!(object = %format!("{namespace}/{name}"), error = %error, "readiness check failed; retrying");
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    kind: resource.kind.clone(),
                    object: format!("{namespace}/{name}"),
                    timeout_secs,
                });
            }
            tokio::time::sleep(self.readiness_poll).await;
        }
    }

    async fn is_ready(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> std::result::Result<bool, kube::Error> {
        let client = self.client.clone();
        match (resource.group.as_str(), resource.kind.as_str()) {
            ("apps", "Deployment") => {
                let deployment = Api::<Deployment>::namespaced(client, namespace)
                    .get(name)
                    .await?;
                let wanted = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1);
                let ready = deployment
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                Ok(ready >= wanted)
            }
            ("", "Service") => {
                let slices = Api::<EndpointSlice>::namespaced(client, namespace)
                    .list(
                        &ListParams::default()
                            .labels(&format!("kubernetes.io/service-name={name}")),
                    )
                    .await?;
                Ok(slices.items.iter().any(|slice| {
                    slice.endpoints.iter().any(|endpoint| {
                        !endpoint.addresses.is_empty()
                            && endpoint
                                .conditions
                                .as_ref()
                                .and_then(|c| c.ready)
                                .unwrap_or(true)
                    })
                }))
            }
            ("", "Pod") => {
                let pod = Api::<Pod>::namespaced(client, namespace).get(name).await?;
                let status = pod.status.as_ref();
                let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                let all_ready = status
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|statuses| {
                        !statuses.is_empty() && statuses.iter().all(|c| c.ready)
                    });
                Ok(running && all_ready)
            }
            _ => Ok(true),
        }
    }

    async fn create_workload(
        &self,
        object: &RenderedObject,
        namespace: &str,
        owned: &[OwnedObject],
    ) -> Result<Submission> {
        let coordinates = &object.api;
        let resource = resolve_object(self.client, object).await?;
        let api_kind = ApiCoordinates::from_api_resource(&resource);
        let mut prepared = object.clone();
        prepare_workload(&mut prepared.manifest);
        if !owned.is_empty() {
            set_annotation(
                &mut prepared.manifest,
                OWNED_OBJECTS_ANNOTATION,
                &serde_json::to_string(owned).unwrap_or_default(),
            );
        }
        let object = &prepared;
        let body = to_dynamic(object, namespace)?;
        let label = object_label(&object.manifest, namespace);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let run_ref = |created: &DynamicObject| {
            RunRef::from_object(&api_kind, created).ok_or_else(|| Error::MalformedManifest {
                kind: coordinates.kind.clone(),
                object: label.clone(),
                problem: format!("the workload has no {} label", labels::RUN_ID),
            })
        };
        match api.create(&PostParams::default(), &body).await {
            Ok(created) => {
                info!(workload = %format!("{namespace}/{}", created.name_any()), kind = %coordinates.kind, "workload created");
                Ok(Submission {
                    run: run_ref(&created)?,
                    adopted: false,
                    requeue_kept: false,
                })
            }
            Err(error) if is_already_exists(&error) => {
                let name = body.name_any();
                let existing = api.get(&name).await.map_err(|source| Error::Get {
                    kind: coordinates.kind.clone(),
                    object: label.clone(),
                    source: Box::new(source),
                })?;
                let expected_run = manifest_label(&object.manifest, labels::RUN_ID);
                let expected_rqi =
                    manifest_annotation(&object.manifest, labels::RUN_QUEUE_ITEM_ANNOTATION);
                let same_run = expected_run.is_some()
                    && existing.labels().get(labels::RUN_ID).map(String::as_str) == expected_run;
                let same_rqi = expected_rqi.is_none_or(|rqi| {
                    existing
                        .annotations()
                        .get(labels::RUN_QUEUE_ITEM_ANNOTATION)
                        .map(String::as_str)
                        == Some(rqi)
                });
                if !(same_run && same_rqi) {
                    return Err(Error::NameTaken {
                        kind: coordinates.kind.clone(),
                        object: label,
                        run_id: expected_run.unwrap_or_default().to_owned(),
                    });
                }
                info!(workload = %label, "workload already exists for this run; adopting it");
                Ok(Submission {
                    run: run_ref(&existing)?,
                    adopted: true,
                    requeue_kept: false,
                })
            }
            Err(error) if is_resource_not_served(&error) => Err(Error::KindNotServed {
                group: coordinates.group.clone(),
                kind: coordinates.kind.clone(),
            }),
            Err(source) => Err(Error::Create {
                kind: coordinates.kind.clone(),
                object: label,
                source: Box::new(source),
            }),
        }
    }

    async fn rollback(&self, created: &[Created]) {
        for object in created.iter().rev() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &object.namespace, &object.resource);
            match api.delete(&object.name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(error) if is_not_found(&error) => {}
                Err(error) => warn!(
                    object = %format!("{}/{}", object.namespace, object.name),
                    kind = %object.resource.kind,
                    error = %error,
                    "failed to delete an object of a failed submission"
                ),
            }
        }
    }
}

/// The API resource of a rendered object: its plural from the render, else from discovery.
async fn resolve_object(client: &kube::Client, object: &RenderedObject) -> Result<ApiResource> {
    let api = &object.api;
    resolve(
        client,
        &api.group,
        &api.version,
        &api.kind,
        api.plural.as_deref(),
    )
    .await
}

/// Set `metadata.annotations[key]` of a manifest.
pub(crate) fn set_annotation(manifest: &mut Value, key: &str, value: &str) {
    let Some(metadata) = manifest
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| serde_json::json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}
