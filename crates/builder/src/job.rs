//! The Kaniko build Job (pure): W&B's arguments and defaults, hardened.
//!
//! Starting from the admin's `kaniko-config` template (at most one container; its values
//! win, its volumes, mounts, env and args are kept), the Job gets the executor arguments,
//! the context volume (PVC) or credentials (Azure storage key), the registry credentials
//! (a `kubernetes.io/dockerconfigjson` Secret, or the pod's ambient workload identity), a
//! security context, resources, `activeDeadlineSeconds`, `backoffLimit: 0` and a TTL.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, KeyToPath, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rlaunch_model::labels;

use crate::dockerfile::DOCKERFILE_NAME;
use crate::store::PVC_CONTEXT_MOUNT;
use crate::{Error, Result};

/// The executor image when the config names none: the last upstream Kaniko release
/// (upstream is archived; point `kaniko-image` at a maintained fork to move on).
pub const DEFAULT_KANIKO_IMAGE: &str = "gcr.io/kaniko-project/executor:v1.23.2";
/// Name of the build container (W&B's).
pub const BUILD_CONTAINER: &str = "wandb-container-build";
/// Annotation on the build Job: the image it pushes.
pub const IMAGE_ANNOTATION: &str = "rlaunch.dev/image";
/// Capabilities the executor keeps (it unpacks images and runs `RUN` steps as root).
const CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// How Kaniko authenticates to the destination registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PushCredentials {
    /// The pod's ambient identity (IRSA, GKE or Azure workload identity through the service
    /// account); Kaniko's built-in ECR, GCR/GAR and ACR helpers use it. For `*.azurecr.io`
    /// the pod gets `azure.workload.identity/use: "true"`.
    #[default]
    Ambient,
    /// A `kubernetes.io/dockerconfigjson` Secret in the build namespace, mounted as
    /// `/kaniko/.docker/config.json`.
    DockerConfigSecret(String),
}

/// The admin's settings for build Jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct KanikoSettings {
    /// Executor image (`kaniko-image`).
    pub image: String,
    /// Namespace of build Jobs (from config, never a hard-coded `wandb`).
    pub namespace: String,
    /// Service account of build pods (ambient identity); the namespace default without it.
    pub service_account: Option<String>,
    /// Job name prefix (`build-job-name`).
    pub job_name_prefix: String,
    /// Upper bound on one build.
    pub active_deadline_seconds: i64,
    /// How long Kubernetes keeps a finished build Job if the agent could not delete it.
    pub ttl_seconds_after_finished: i32,
    /// The build container's resources.
    pub resources: ResourceRequirements,
    /// Registry credentials.
    pub credentials: PushCredentials,
    /// Secret (key `password`, in the build namespace) holding the Azure storage account
    /// key, for an Azure Blob context store without workload identity.
    pub azure_storage_key_secret: Option<String>,
    /// Extra environment of the executor (`AWS_REGION`, `S3_ENDPOINT`, …).
    pub env: BTreeMap<String, String>,
    /// Kaniko layer cache in the destination repository (`--cache`).
    pub cache: bool,
    /// `kaniko-config`: a partial `batch/v1` Job the build Job starts from.
    pub template: Option<serde_json::Value>,
}

impl Default for KanikoSettings {
    fn default() -> Self {
        KanikoSettings {
            image: DEFAULT_KANIKO_IMAGE.to_owned(),
            namespace: "default".to_owned(),
            service_account: None,
            job_name_prefix: "wandb-launch-container-build".to_owned(),
            active_deadline_seconds: 1800,
            ttl_seconds_after_finished: 3600,
            resources: default_resources(),
            credentials: PushCredentials::Ambient,
            azure_storage_key_secret: None,
            env: BTreeMap::new(),
            cache: true,
            template: None,
        }
    }
}

/// 1 CPU and 2 GiB requested, 8 GiB at most.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), q("1")),
            ("memory".to_owned(), q("2Gi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_owned(), q("8Gi"))])),
        ..ResourceRequirements::default()
    }
}

/// Where Kaniko reads the context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobContext {
    /// `s3://…`, `gs://…` or `https://<account>.blob.core.windows.net/…`.
    Remote(String),
    /// `tar:///context/<id>.tgz` on this claim, mounted at `/context`.
    Pvc {
        /// The claim.
        claim: String,
        /// The `tar://` URI.
        uri: String,
    },
}

/// One build Job to render.
#[derive(Clone, Debug)]
pub struct JobInput<'a> {
    /// The admin's settings.
    pub settings: &'a KanikoSettings,
    /// The run the image is for.
    pub run_id: &'a str,
    /// The agent's stable identity (so a restarted agent finds its builds).
    pub agent_identity: Option<&'a str>,
    /// The context.
    pub context: &'a JobContext,
    /// `repository:tag` to push.
    pub image: &'a str,
    /// The repository (the layer cache's home).
    pub repository: &'a str,
}

/// `<prefix>-<run id>`, a DNS-1123 label of at most 63 characters.
pub fn job_name(prefix: &str, run_id: &str) -> String {
    rlaunch_model::names::dns_label(
        &format!("{prefix}-{run_id}"),
        rlaunch_model::names::MAX_LABEL,
    )
}

/// The build Job.
pub fn render(input: &JobInput<'_>) -> Result<Job> {
    let settings = input.settings;
    let mut job = template(settings)?;
    let name = job_name(&settings.job_name_prefix, input.run_id);
    metadata(&mut job, input, &name);
    let spec = job.spec.get_or_insert_with(Default::default);
    spec.backoff_limit.get_or_insert(0);
    spec.ttl_seconds_after_finished
        .get_or_insert(settings.ttl_seconds_after_finished);
    let pod_meta = spec.template.metadata.get_or_insert_with(Default::default);
    let pod_labels = pod_meta.labels.get_or_insert_with(Default::default);
    pod_labels.insert(labels::RUN_ID.to_owned(), input.run_id.to_owned());
    if matches!(settings.credentials, PushCredentials::Ambient) && is_acr(input.repository) {
        pod_labels.insert("azure.workload.identity/use".to_owned(), "true".to_owned());
    }
    let pod = spec.template.spec.get_or_insert_with(Default::default);
    pod.restart_policy.get_or_insert_with(|| "Never".to_owned());
    pod.active_deadline_seconds
        .get_or_insert(settings.active_deadline_seconds);
    if pod.service_account_name.is_none() {
        pod.service_account_name = settings.service_account.clone();
    }
    pod.automount_service_account_token.get_or_insert(false);
    pod.security_context
        .get_or_insert_with(|| PodSecurityContext {
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        });
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    let mut container = pod.containers.pop().unwrap_or_default();
    add_volumes(input, volumes, &mut container);
    fill_container(input, &mut container);
    if container.volume_mounts.as_ref().is_some_and(Vec::is_empty) {
        container.volume_mounts = None;
    }
    if container.env.as_ref().is_some_and(Vec::is_empty) {
        container.env = None;
    }
    if pod.volumes.as_ref().is_some_and(Vec::is_empty) {
        pod.volumes = None;
    }
    pod.containers = vec![container];
    Ok(job)
}

fn template(settings: &KanikoSettings) -> Result<Job> {
    let job: Job = match &settings.template {
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| Error::Template {
            problem: e.to_string(),
        })?,
        None => Job::default(),
    };
    let containers = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map_or(0, |p| p.containers.len());
    if containers > 1 {
        return Err(Error::Template {
            problem: format!(
                "it has {containers} containers; a build Job has one (keep one container entry)"
            ),
        });
    }
    Ok(job)
}

fn metadata(job: &mut Job, input: &JobInput<'_>, name: &str) {
    let meta = &mut job.metadata;
    meta.name = Some(name.to_owned());
    meta.namespace = Some(input.settings.namespace.clone());
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.insert(labels::RUN_ID.to_owned(), input.run_id.to_owned());
    labels.insert(labels::MONITOR.to_owned(), "true".to_owned());
    labels.insert(
        labels::CREATED_BY.to_owned(),
        labels::CREATED_BY_VALUE.to_owned(),
    );
    if let Some(identity) = input.agent_identity {
        labels.insert(
            labels::AGENT_IDENTITY.to_owned(),
            rlaunch_model::names::label_value(identity),
        );
    }
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(
        rlaunch_k8s_runner::ROLE_ANNOTATION.to_owned(),
        rlaunch_k8s_runner::WorkloadRole::ImageBuild
            .as_str()
            .to_owned(),
    );
    annotations.insert(IMAGE_ANNOTATION.to_owned(), input.image.to_owned());
}

fn add_volumes(input: &JobInput<'_>, volumes: &mut Vec<Volume>, container: &mut Container) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if let JobContext::Pvc { claim, .. } = input.context {
        volumes.push(Volume {
            name: "kaniko-pvc".to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(mount("kaniko-pvc", PVC_CONTEXT_MOUNT));
    }
    if let PushCredentials::DockerConfigSecret(secret) = &input.settings.credentials {
        volumes.push(Volume {
            name: "kaniko-docker-config".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: ".dockerconfigjson".to_owned(),
                    path: "config.json".to_owned(),
                    mode: None,
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("kaniko-docker-config", "/kaniko/.docker"));
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn fill_container(input: &JobInput<'_>, container: &mut Container) {
    let settings = input.settings;
    // Always this name: the builder reads the log of this container.
    container.name = BUILD_CONTAINER.to_owned();
    container
        .image
        .get_or_insert_with(|| settings.image.clone());
    container.args = Some(args(input, container.args.take().unwrap_or_default()));
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in &settings.env {
        if !env.iter().any(|e| &e.name == name) {
            env.push(EnvVar {
                name: name.clone(),
                value: Some(value.clone()),
                value_from: None,
            });
        }
    }
    if let Some(secret) = &settings.azure_storage_key_secret {
        env.push(EnvVar {
            name: "AZURE_STORAGE_ACCESS_KEY".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: "password".to_owned(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            }),
        });
    }
    container
        .resources
        .get_or_insert_with(|| settings.resources.clone());
    container
        .security_context
        .get_or_insert_with(|| SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: Some(CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            }),
            ..SecurityContext::default()
        });
}

/// W&B's defaults, then the template's `--flag=value` args override or add by flag name.
fn args(input: &JobInput<'_>, template: Vec<String>) -> Vec<String> {
    let context = match input.context {
        JobContext::Remote(uri) => uri.clone(),
        JobContext::Pvc { uri, .. } => uri.clone(),
    };
    let strip = |s: &str| s.trim_start_matches("https://").to_owned();
    let mut args: Vec<(String, String)> = vec![
        ("--context".into(), context),
        ("--dockerfile".into(), DOCKERFILE_NAME.into()),
        ("--destination".into(), strip(input.image)),
        ("--cache".into(), input.settings.cache.to_string()),
        ("--cache-repo".into(), strip(input.repository)),
        ("--snapshot-mode".into(), "redo".into()),
        ("--compressed-caching".into(), "false".into()),
    ];
    for arg in template {
        let (flag, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match args.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) => slot.1 = value.to_owned(),
            None => args.push((flag.to_owned(), value.to_owned())),
        }
    }
    args.into_iter()
        .map(|(flag, value)| match value.is_empty() {
            true => flag,
            false => format!("{flag}={value}"),
        })
        .collect()
}

fn is_acr(repository: &str) -> bool {
    repository
        .trim_start_matches("https://")
        .split('/')
        .next()
        .is_some_and(|host| host.ends_with(".azurecr.io"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(settings: &'a KanikoSettings, context: &'a JobContext) -> JobInput<'a> {
        JobInput {
            settings,
            run_id: "run1",
            agent_identity: Some("agent"),
            context,
            image: "r.example/team/x:abc",
            repository: "r.example/team/x",
        }
    }

    #[test]
    fn template_args_override_by_flag_and_add_new_ones() {
        let settings = KanikoSettings {
            template: Some(
                serde_json::json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "args": ["--cache=false", "--insecure", "--verbosity=debug"]}
                ]}}}}),
            ),
            ..KanikoSettings::default()
        };
        let context = JobContext::Remote("s3://b/run1.tgz".into());
        let job = render(&input(&settings, &context)).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--cache=false".to_owned()), "{args:?}");
        assert!(!args.contains(&"--cache=true".to_owned()), "{args:?}");
        assert!(args.contains(&"--insecure".to_owned()), "{args:?}");
        assert_eq!(pod.containers[0].name, BUILD_CONTAINER);
    }

    #[test]
    fn a_template_with_two_containers_is_refused() {
        let settings = KanikoSettings {
            template: Some(
                serde_json::json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "a"}, {"name": "b"}
                ]}}}}),
            ),
            ..KanikoSettings::default()
        };
        let context = JobContext::Remote("gs://b/x.tgz".into());
        let error = render(&input(&settings, &context)).unwrap_err();
        assert!(error.to_string().contains("kaniko-config"), "{error}");
    }

    #[test]
    fn job_names_are_dns_labels() {
        let name = job_name("Wandb_Launch.Build", &"X".repeat(80));
        assert!(rlaunch_model::names::is_dns_label(&name), "{name}");
        assert!(name.len() <= 63);
    }
}
