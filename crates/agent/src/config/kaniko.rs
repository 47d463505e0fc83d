//! The `builder` block of `type: kaniko`: read and validated when the config loads, so a
//! malformed store or destination fails at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rlaunch_builder::{StoreUri, check_destination};
use serde_yaml_ng::{Mapping, Value};

use crate::error::ConfigError;

/// Keys of the `builder` block the Kaniko builder reads beyond W&B's.
pub(crate) const OWN_BUILDER_KEYS: &[&str] = &[
    "build-context-options",
    "kaniko-namespace",
    "kaniko-service-account",
    "kaniko-pvc-name",
    "kaniko-pvc-mount-path",
    "kaniko-docker-config-secret",
    "insecure-registry",
    "run-spec-overrides",
    "registry-credentials-file",
];

/// Keys of a run spec's own `builder` block a run may set, when the agent config lists
/// them in `builder.run-spec-overrides` (none by default).
pub const RUN_SPEC_BUILDER_KEYS: &[&str] =
    &["type", "destination", "kaniko-image", "build-job-name"];

/// `builder.run-spec-overrides`: which keys of the run spec's `builder` block a run may
/// set (each one of [`RUN_SPEC_BUILDER_KEYS`]).
pub(crate) fn run_spec_overrides(
    path: &Path,
    block: &Mapping,
) -> Result<std::collections::BTreeSet<String>, ConfigError> {
    let key = "builder.run-spec-overrides";
    let invalid = |problem: String| ConfigError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        problem,
        fix: format!(
            "list keys a run spec may set in its `builder` block, from: {}",
            RUN_SPEC_BUILDER_KEYS.join(", ")
        ),
    };
    let items = match block.get("run-spec-overrides") {
        None | Some(Value::Null) => return Ok(Default::default()),
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(invalid("must be a list of keys".to_owned())),
    };
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(name) if RUN_SPEC_BUILDER_KEYS.contains(&name) => Ok(name.to_owned()),
            Some(name) => Err(invalid(format!("`{name}` is not a key a run may set"))),
            None => Err(invalid("must be a list of strings".to_owned())),
        })
        .collect()
}

/// The Kaniko builder's options, as the config file gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KanikoOptions {
    /// `destination`: the repository images are pushed to.
    pub destination: String,
    /// `build-context-store` (an S3, GCS or Azure URI), unless a PVC is used.
    pub store: Option<String>,
    /// `build-context-options`: `object_store` options (endpoint, region, …).
    pub store_options: BTreeMap<String, String>,
    /// `kaniko-pvc-name` and `kaniko-pvc-mount-path` (default `/kaniko`).
    pub pvc: Option<(String, PathBuf)>,
    /// `build-job-name`.
    pub job_name: Option<String>,
    /// `kaniko-image`.
    pub image: Option<String>,
    /// `kaniko-config`, as JSON.
    pub template: Option<serde_json::Value>,
    /// `kaniko-namespace` (default: the agent's namespace, else `default`).
    pub namespace: Option<String>,
    /// `kaniko-service-account`.
    pub service_account: Option<String>,
    /// `kaniko-docker-config-secret`: a `kubernetes.io/dockerconfigjson` Secret.
    pub docker_config_secret: Option<String>,
    /// `insecure-registry`: the destination speaks plain HTTP.
    pub insecure_registry: bool,
    /// `registry-credentials-file`: a dockerconfigjson file (a mounted
    /// `kubernetes.io/dockerconfigjson` Secret) with the destination's credentials, read
    /// by the existence check. It must name the destination.
    pub registry_credentials_file: Option<PathBuf>,
    /// The push Secret as mounted into the agent (`LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE`,
    /// which the Helm chart sets): the existence check's credentials when it has an entry
    /// for the destination and `registry-credentials-file` is unset; without such an entry
    /// (a Secret of `credHelpers` only) the check falls through to the next source.
    pub mounted_push_config: Option<PathBuf>,
}

/// Reads and validates the `builder` block of `type: kaniko`.
pub(crate) fn options(path: &Path, block: &Mapping) -> Result<KanikoOptions, ConfigError> {
    let invalid = |key: &str, problem: String, fix: &str| ConfigError::Invalid {
        path: path.to_owned(),
        key: format!("builder.{key}"),
        problem,
        fix: fix.to_owned(),
    };
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match block.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(key, "must be a string".into(), "quote the value")),
        }
    };
    let destination = text("destination")?.unwrap_or_default();
    check_destination(&destination).map_err(|e| {
        let e = problem_of(e);
        invalid(
            "destination",
            e.to_string(),
            "write host/repository, e.g. 123.dkr.ecr.us-east-1.amazonaws.com/trainer",
        )
    })?;
    let store = text("build-context-store")?.filter(|s| !s.is_empty());
    if let Some(uri) = &store {
        StoreUri::parse(uri).map_err(|e| {
            let e = problem_of(e);
            invalid("build-context-store", e.to_string(), "write s3://bucket[/prefix], gs://bucket[/prefix] or https://<account>.blob.core.windows.net/<container>")
        })?;
    }
    let pvc = text("kaniko-pvc-name")?.map(|claim| {
        let mount = text("kaniko-pvc-mount-path").ok().flatten();
        (
            claim,
            PathBuf::from(mount.unwrap_or_else(|| "/kaniko".to_owned())),
        )
    });
    if store.is_none() && pvc.is_none() {
        return Err(invalid(
            "build-context-store",
            "is missing: the Kaniko builder needs somewhere to put build contexts".into(),
            "set it to an s3, gs or Azure blob URI, or set `kaniko-pvc-name`",
        ));
    }
    let store_options = match block.get("build-context-options") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => serde_yaml_ng::from_value(value.clone()).map_err(|e| {
            invalid(
                "build-context-options",
                e.to_string(),
                "write a mapping of string options",
            )
        })?,
    };
    let template = match block.get("kaniko-config") {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::to_value(value).map_err(|e| {
            invalid(
                "kaniko-config",
                e.to_string(),
                "write a partial batch/v1 Job",
            )
        })?),
    };
    let insecure_registry = match block.get("insecure-registry") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(invalid(
                "insecure-registry",
                "must be true or false".into(),
                "write true or false",
            ));
        }
    };
    Ok(KanikoOptions {
        destination,
        store,
        store_options,
        pvc,
        job_name: text("build-job-name")?,
        image: text("kaniko-image")?,
        template,
        namespace: text("kaniko-namespace")?,
        service_account: text("kaniko-service-account")?,
        docker_config_secret: text("kaniko-docker-config-secret")?,
        insecure_registry,
        registry_credentials_file: text("registry-credentials-file")?.map(PathBuf::from),
        mounted_push_config: None,
    })
}

/// The problem a builder config error names, without the key (the config error adds it).
fn problem_of(error: rlaunch_builder::Error) -> String {
    match error {
        rlaunch_builder::Error::Destination { problem, .. }
        | rlaunch_builder::Error::StoreConfig { problem, .. } => problem,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KanikoOptions, ConfigError> {
        let map: Mapping = serde_yaml_ng::from_str(text).unwrap();
        options(Path::new("launch-config.yaml"), &map)
    }

    #[test]
    fn a_complete_block_parses() {
        let options = parse(
            "type: kaniko\ndestination: r.example/team/trainer\nbuild-context-store: s3://ctx/builds\nbuild-context-options: {aws_region: eu-west-1}\nkaniko-config: {spec: {backoffLimit: 0}}\n",
        )
        .unwrap();
        assert_eq!(options.store.as_deref(), Some("s3://ctx/builds"));
        assert_eq!(options.store_options["aws_region"], "eu-west-1");
        assert!(options.template.is_some());
    }

    #[test]
    fn run_spec_overrides_list_known_keys_only() {
        let block = |text: &str| serde_yaml_ng::from_str::<Mapping>(text).unwrap();
        let path = Path::new("launch-config.yaml");
        let keys =
            run_spec_overrides(path, &block("run-spec-overrides: [type, destination]")).unwrap();
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            ["destination", "type"]
        );
        assert!(
            run_spec_overrides(path, &block("type: noop"))
                .unwrap()
                .is_empty()
        );
        let error =
            run_spec_overrides(path, &block("run-spec-overrides: [kaniko-config]")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("builder.run-spec-overrides") && text.contains("kaniko-config"),
            "{text}"
        );
    }

    #[test]
    fn a_malformed_store_or_destination_is_a_config_error() {
        let error = parse("destination: r.example/x\nbuild-context-store: s3:/oops\n").unwrap_err();
        assert!(
            error.to_string().contains("builder.build-context-store"),
            "{error}"
        );
        let error =
            parse("destination: r.example/x:latest\nbuild-context-store: s3://b\n").unwrap_err();
        assert!(error.to_string().contains("builder.destination"), "{error}");
        let error = parse("destination: r.example/x\n").unwrap_err();
        assert!(error.to_string().contains("kaniko-pvc-name"), "{error}");
        parse("destination: r.example/x\nkaniko-pvc-name: ctx\n").unwrap();
    }
}
