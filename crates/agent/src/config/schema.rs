//! The JSON schema of `launch-config.yaml`, derived with `schemars` from [`LaunchConfigFile`],
//! a typed mirror of what the file reader ([`super::file`]) accepts: the same keys (a unit test
//! checks them against the reader's key lists), the same value kinds (numbers where the reader
//! also takes numeric strings), no unknown keys. The Helm chart embeds it as the schema of its
//! `launchConfigObject` value (`cargo xtask chart` regenerates `values.schema.json`).

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::Value as Json;

/// A string, or a number the reader takes as its text (`entity: 1234`).
pub struct Text;

impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number"]})
    }
}

/// An integer, or a string holding one (W&B's agent parses with `int()`).
pub struct Integer;

impl JsonSchema for Integer {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Integer".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["integer", "string"], "pattern": "^\\s*-?[0-9]+\\s*$"})
    }
}

/// Seconds: a number of at least 0, or a string holding one.
pub struct Seconds;

impl JsonSchema for Seconds {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Seconds".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["number", "string"], "minimum": 0})
    }
}

/// The top level of `launch-config.yaml`. Every key may be absent or `null` (the reader
/// treats `null` as absent).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)] // a schema, never built
pub struct LaunchConfigFile {
    /// W&B entity (team or user) owning the queues.
    entity: Option<Text>,
    /// Queues to poll, round robin.
    #[schemars(inner(length(min = 1)))]
    queues: Option<Vec<String>>,
    /// Legacy single queue, appended to `queues`.
    queue: Option<String>,
    /// Runs at once: -1 unlimited, 0 never pops.
    #[schemars(range(min = -1))]
    max_jobs: Option<Integer>,
    /// Sweep schedulers at once: -1 unlimited.
    max_schedulers: Option<Integer>,
    /// W&B API URL (`WANDB_BASE_URL` wins).
    base_url: Option<Text>,
    /// W&B's cloud environment block, passed through.
    environment: Option<BTreeMap<String, Json>>,
    /// W&B's registry block, passed through.
    registry: Option<BTreeMap<String, Json>>,
    /// The image builder.
    builder: Option<Builder>,
    /// Log verbosity, 0–9 (larger is clamped).
    verbosity: Option<Integer>,
    /// Refuse host namespaces, init containers, commands and entry-point overrides.
    secure_mode: Option<bool>,
    /// Seconds a stopped run gets before its workload is deleted.
    stopped_run_timeout: Option<Seconds>,
    /// Stable agent identity (default: Helm release + namespace, or entity + queues).
    identity: Option<Text>,
    /// Seconds between polls of an idle queue.
    poll_interval: Option<Seconds>,
    /// Address of `/livez` and `/readyz` (`:8080`, `0.0.0.0:8080`).
    health_addr: Option<Text>,
    /// Address of `/metrics`.
    metrics_addr: Option<Text>,
    /// Namespaces runs may be launched into.
    target_namespaces: Option<Vec<String>>,
    /// Namespace of runs whose config names none.
    default_namespace: Option<Text>,
    /// perRun: the agent creates each run's API-key Secret; none: it is pre-provisioned.
    job_secrets: Option<JobSecretsMode>,
    /// Environment variables `${NAME}` macros may expand.
    allowed_macros: Option<Vec<String>>,
    /// Refused fields an admin allows (e.g. `serviceAccountName`).
    allowed_fields: Option<Vec<String>>,
    /// Seconds a run may stay pending before it fails (0 disables).
    start_timeout: Option<Seconds>,
    /// Seconds a run has to call `wandb.init`.
    init_check_timeout: Option<Seconds>,
    /// Seconds an image may fail to pull (or a container to be created) before the run fails.
    image_pull_grace: Option<Seconds>,
    /// Seconds items without a workload get at shutdown.
    shutdown_grace: Option<Seconds>,
    /// Requeue budgets.
    retries: Option<Retries>,
    /// The GPU pre-check before submitting (needs the chart's precheck ClusterRole).
    precheck: Option<bool>,
    /// Lease-based leader election between replicas.
    leader_election: Option<bool>,
    /// Lease name (default: derived from the identity).
    lease_name: Option<Text>,
    /// Lease namespace (default: the agent's).
    lease_namespace: Option<Text>,
    /// Lease duration in seconds.
    lease_duration_seconds: Option<Integer>,
    /// Renew deadline in seconds.
    renew_deadline_seconds: Option<Integer>,
    /// Retry period in seconds.
    retry_period_seconds: Option<Integer>,
}

/// `job_secrets` as the reader spells it.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum JobSecretsMode {
    #[schemars(rename = "perRun")]
    PerRun,
    #[schemars(rename = "per-run")]
    PerRunKebab,
    #[schemars(rename = "per_run")]
    PerRunSnake,
    #[schemars(rename = "none")]
    None,
}

/// The builder's type (`docker` is refused: no Docker daemon in a cluster).
#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum BuilderType {
    Noop,
    Kaniko,
}

/// The `builder` block: W&B's keys and ours.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields, rename_all = "kebab-case")]
#[allow(dead_code)]
struct Builder {
    /// noop (images as they are) or kaniko (in-cluster builds).
    r#type: Option<BuilderType>,
    /// Repository built images are pushed to.
    destination: Option<String>,
    /// Target platform of builds.
    platform: Option<String>,
    /// S3, GCS or Azure URI of build contexts.
    build_context_store: Option<String>,
    /// Name prefix of build Jobs.
    build_job_name: Option<String>,
    /// Secret with registry credentials (W&B's key).
    secret_name: Option<String>,
    /// Key in that Secret.
    secret_key: Option<String>,
    /// The Kaniko image.
    kaniko_image: Option<String>,
    /// A Job template merged into build Jobs.
    kaniko_config: Option<BTreeMap<String, Json>>,
    /// Registry credentials block (W&B's key), passed through.
    credentials: Option<Json>,
    /// `object_store` options of the context store (endpoint, region, …).
    build_context_options: Option<BTreeMap<String, String>>,
    /// Namespace of build Jobs.
    kaniko_namespace: Option<String>,
    /// ServiceAccount of build Jobs.
    kaniko_service_account: Option<String>,
    /// PVC for build contexts instead of a store.
    kaniko_pvc_name: Option<String>,
    /// Mount path of that PVC (default `/kaniko`).
    kaniko_pvc_mount_path: Option<String>,
    /// A dockerconfigjson Secret Kaniko pushes with.
    kaniko_docker_config_secret: Option<String>,
    /// The destination speaks plain HTTP.
    insecure_registry: Option<bool>,
    /// Keys of its own `builder` block a run spec may set (default none: a run spec
    /// setting one fails before the ack, naming it).
    run_spec_overrides: Option<Vec<RunSpecBuilderKey>>,
    /// A dockerconfigjson file (a mounted `kubernetes.io/dockerconfigjson` Secret) the
    /// existence check reads the destination's credentials from.
    registry_credentials_file: Option<String>,
}

/// A key of a run spec's `builder` block a run may be allowed to set.
#[derive(JsonSchema)]
#[schemars(rename_all = "kebab-case")]
#[allow(dead_code)]
enum RunSpecBuilderKey {
    Type,
    Destination,
    KanikoImage,
    BuildJobName,
}

/// The `retries` block.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct Retries {
    /// Times a preempted run is requeued.
    #[schemars(range(min = 0))]
    preemption: Option<u32>,
}

/// The JSON schema (draft-07, subschemas inlined so it can be embedded anywhere) of
/// `launch-config.yaml`.
pub fn launch_config_schema() -> Json {
    let settings = schemars::generate::SchemaSettings::draft07().with(|s| {
        s.inline_subschemas = true;
    });
    let schema = settings
        .into_generator()
        .into_root_schema_for::<LaunchConfigFile>();
    let mut json = schema.to_value();
    if let Some(map) = json.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
    }
    json
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn properties<'a>(schema: &'a Json, path: &[&str]) -> BTreeSet<&'a str> {
        let mut node = schema;
        for key in path {
            node = &node["properties"][key];
        }
        node["properties"]
            .as_object()
            .expect("an object schema")
            .keys()
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn the_schema_has_exactly_the_keys_the_reader_knows() {
        let schema = launch_config_schema();
        let top: BTreeSet<&str> = crate::config::file::REFERENCE_KEYS
            .iter()
            .chain(crate::config::file::OWN_KEYS)
            .copied()
            .collect();
        assert_eq!(properties(&schema, &[]), top);
        let builder: BTreeSet<&str> = crate::config::file::BUILDER_KEYS
            .iter()
            .chain(crate::config::kaniko::OWN_BUILDER_KEYS)
            .copied()
            .collect();
        assert_eq!(properties(&schema, &["builder"]), builder);
        let overridable: BTreeSet<&str> =
            schema["properties"]["builder"]["properties"]["run-spec-overrides"]["items"]["enum"]
                .as_array()
                .expect("an enum of keys")
                .iter()
                .filter_map(Json::as_str)
                .collect();
        let known: BTreeSet<&str> = crate::config::RUN_SPEC_BUILDER_KEYS
            .iter()
            .copied()
            .collect();
        assert_eq!(overridable, known);
        let retries: BTreeSet<&str> = crate::config::file::RETRY_KEYS.iter().copied().collect();
        assert_eq!(properties(&schema, &["retries"]), retries);
    }

    #[test]
    fn the_schema_refuses_unknown_keys_and_embeds_without_refs() {
        let schema = launch_config_schema();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["builder"]["additionalProperties"],
            false
        );
        let text = schema.to_string();
        assert!(!text.contains("$ref"), "{text}");
        assert!(!text.contains("$schema"), "{text}");
    }
}
