//! API coordinates of workloads, run references, and discovery.

use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use rlaunch_model::labels;
use rlaunch_render::ApiCoordinates;

use crate::error::{Error, Result, api_status};

/// What the runner needs of [`ApiCoordinates`], the one group/version/kind type it shares
/// with the render output.
pub(crate) trait Coordinates: Sized {
    /// `batch/v1` Job.
    fn batch_job() -> Self;
    /// From a resolved [`ApiResource`].
    fn from_api_resource(resource: &ApiResource) -> Self;
    /// True for `batch` Jobs (monitored as typed Jobs).
    fn is_batch_job(&self) -> bool;
    /// As a kube [`ApiResource`] for the dynamic API (the plural must be resolved).
    fn api_resource(&self) -> ApiResource;
    /// Stable key, `plural.group/version`.
    fn key(&self) -> String;
}

impl Coordinates for ApiCoordinates {
    fn batch_job() -> Self {
        ApiCoordinates {
            group: "batch".to_owned(),
            version: "v1".to_owned(),
            kind: "Job".to_owned(),
            plural: Some("jobs".to_owned()),
        }
    }

    fn from_api_resource(resource: &ApiResource) -> Self {
        ApiCoordinates {
            group: resource.group.clone(),
            version: resource.version.clone(),
            kind: resource.kind.clone(),
            plural: Some(resource.plural.clone()),
        }
    }

    fn is_batch_job(&self) -> bool {
        self.group == "batch" && self.kind == "Job"
    }

    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone().unwrap_or_default(),
        }
    }

    fn key(&self) -> String {
        format!(
            "{}.{}/{}",
            self.plural.as_deref().unwrap_or_default(),
            self.group,
            self.version
        )
    }
}

/// Annotation: what a workload is for, [`WorkloadRole::Run`] (`run`, the default when
/// absent) or [`WorkloadRole::ImageBuild`] (`image-build`, written by the image builder).
pub const ROLE_ANNOTATION: &str = "rlaunch.dev/role";
/// Annotation: the per-run objects a submission created beside the workload (its API-key
/// Secret, additional services), as JSON, so cleanup deletes exactly those by name, also
/// after a restart, and never lists or selects by run id.
pub const OWNED_OBJECTS_ANNOTATION: &str = "rlaunch.dev/owned-objects";

/// What a workload is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WorkloadRole {
    /// A W&B run.
    #[default]
    Run,
    /// An image build Job (Kaniko): never adopted as a run, never cleaned up with one.
    ImageBuild,
}

impl WorkloadRole {
    /// The [`ROLE_ANNOTATION`] value.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadRole::Run => "run",
            WorkloadRole::ImageBuild => "image-build",
        }
    }

    fn from_annotation(value: Option<&str>) -> Self {
        match value {
            Some("image-build") => WorkloadRole::ImageBuild,
            _ => WorkloadRole::Run,
        }
    }
}

/// An object a submission created beside the workload, deleted by name at cleanup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct OwnedObject {
    /// `group/version` (or `v1`).
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Resource plural.
    pub plural: String,
    /// Name (in the run's namespace).
    pub name: String,
}

impl OwnedObject {
    /// As a kube [`ApiResource`].
    pub(crate) fn api_resource(&self) -> ApiResource {
        let (group, version) = match self.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version.as_str()),
        };
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    pub(crate) fn from_resource(resource: &ApiResource, name: &str) -> Self {
        OwnedObject {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            plural: resource.plural.clone(),
            name: name.to_owned(),
        }
    }
}

/// Everything needed to find a submitted run again: its workload, run identity and the W&B
/// coordinates the agent reports to, all read from the workload's labels and annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    /// Namespace of the workload and all the run's objects.
    pub namespace: String,
    /// Workload name (its pods carry it in [`crate::WORKLOAD_LABEL`]).
    pub name: String,
    /// Workload kind.
    pub api: ApiCoordinates,
    /// Value of the `wandb.ai/run-id` label.
    pub run_id: String,
    /// The `rlaunch.dev/run-queue-item` annotation, when the workload has one.
    pub run_queue_item_id: Option<String>,
    /// The `rlaunch.dev/entity` annotation.
    pub entity: Option<String>,
    /// The `rlaunch.dev/project` annotation.
    pub project: Option<String>,
    /// The `rlaunch.dev/queue` annotation.
    pub queue: Option<String>,
    /// A run or an image build ([`ROLE_ANNOTATION`]).
    pub role: WorkloadRole,
    /// What cleanup deletes ([`OWNED_OBJECTS_ANNOTATION`]).
    pub owned: Vec<OwnedObject>,
    /// The workload's uid, when known.
    pub uid: Option<String>,
}

impl RunRef {
    /// `ns/name`.
    pub fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Build from a workload object read from the apiserver. `None` without a name,
    /// namespace or run-id label.
    pub fn from_object(api: &ApiCoordinates, object: &DynamicObject) -> Option<Self> {
        let metadata = &object.metadata;
        let annotation = |key: &str| {
            metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(key))
                .cloned()
        };
        let owned = annotation(OWNED_OBJECTS_ANNOTATION)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Some(RunRef {
            namespace: metadata.namespace.clone()?,
            name: metadata.name.clone()?,
            api: api.clone(),
            run_id: metadata.labels.as_ref()?.get(labels::RUN_ID)?.clone(),
            run_queue_item_id: annotation(labels::RUN_QUEUE_ITEM_ANNOTATION),
            entity: annotation(labels::ENTITY_ANNOTATION),
            project: annotation(labels::PROJECT_ANNOTATION),
            queue: annotation(labels::QUEUE_ANNOTATION),
            role: WorkloadRole::from_annotation(annotation(ROLE_ANNOTATION).as_deref()),
            owned,
            uid: metadata.uid.clone(),
        })
    }
}

/// Resolve group/version/kind to an [`ApiResource`], using `plural` when given and discovery
/// otherwise. A kind the cluster does not serve is [`Error::KindNotServed`].
pub(crate) async fn resolve(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: Option<&str>,
) -> Result<ApiResource> {
    if let Some(plural) = plural {
        return Ok(ApiCoordinates {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: Some(plural.to_owned()),
        }
        .api_resource());
    }
    discover(client, group, version, kind).await
}

/// Find the plural of group/version/kind through API discovery.
pub(crate) async fn discover(
    client: &Client,
    group: &str,
    version: &str,
    kind: &str,
) -> Result<ApiResource> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    match kube::discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _capabilities)) => Ok(resource),
        Err(error) if is_not_served(&error) => Err(Error::KindNotServed {
            group: group.to_owned(),
            kind: kind.to_owned(),
        }),
        Err(source) => Err(Error::Discovery {
            group: group.to_owned(),
            kind: kind.to_owned(),
            source: Box::new(source),
        }),
    }
}

/// Find the preferred version of `group`/`kind` through discovery.
pub(crate) async fn discover_preferred(
    client: &Client,
    group: &str,
    kind: &str,
) -> Result<ApiResource> {
    let not_served = || Error::KindNotServed {
        group: group.to_owned(),
        kind: kind.to_owned(),
    };
    match kube::discovery::group(client, group).await {
        Ok(api_group) => api_group
            .recommended_kind(kind)
            .map(|(resource, _)| resource)
            .ok_or_else(not_served),
        Err(error) if is_not_served(&error) => Err(not_served()),
        Err(source) => Err(Error::Discovery {
            group: group.to_owned(),
            kind: kind.to_owned(),
            source: Box::new(source),
        }),
    }
}

fn is_not_served(error: &kube::Error) -> bool {
    // An unknown group answers a plain-text "404 page not found", which kube reports with
    // code 404 and a non-standard reason: go by the code.
    matches!(error, kube::Error::Discovery(_))
        || api_status(error).is_some_and(|status| status.code == 404 || status.is_not_found())
}

/// `(group, kind)` of the workload CRDs the agent knows (see `rlaunch_model::crd::KNOWN_PLURALS`).
pub fn known_custom_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    rlaunch_model::crd::KNOWN_PLURALS
        .iter()
        .map(|(group, kind, _)| (*group, *kind))
}
