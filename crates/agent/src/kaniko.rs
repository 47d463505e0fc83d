//! `builder: {type: kaniko}`: the Kaniko builder built from the config's options
//! ([`KanikoOptions`]), checked at start-up and by `launch-agent check`, and the code
//! fetcher that downloads code artifacts through W&B.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use futures::future::BoxFuture;
use rlaunch_builder::{
    CodeFetcher, ContextStore, EcrAuth, ImageRef, KanikoBuilder, KanikoConfig, KanikoSettings,
    PushCredentials, RegistryAuth, RegistryClient,
};
use rlaunch_k8s_runner::Runner;
use rlaunch_wandb_api::Client;

use crate::config::KanikoOptions;

/// The Kaniko builder when the config asks for one, checked (destination, context store
/// reachable): a bad store stops the agent at start-up, naming the bucket.
pub(crate) async fn configured(
    config: &crate::config::Config,
    runner: &Runner,
    wandb: &Client,
) -> Result<Option<std::sync::Arc<dyn rlaunch_builder::Builder>>, crate::error::Error> {
    let crate::config::BuilderChoice::Kaniko(options) = &config.builder else {
        return Ok(None);
    };
    let namespace = config
        .pod_namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let auth = registry_auth(
        options,
        config.registry.as_ref(),
        config.ecr_endpoint.as_deref(),
    )
    .map_err(crate::error::Error::Builder)?;
    let kaniko = builder(
        options,
        &namespace,
        config.identity.clone(),
        runner.clone(),
        wandb.clone(),
    )
    .map_err(crate::error::Error::Builder)?
    .with_registry_auth(auth);
    kaniko.check().await.map_err(crate::error::Error::Builder)?;
    Ok(Some(std::sync::Arc::new(kaniko)))
}

/// The `launch-agent check` line of the builder: `None` for the no-op builder.
pub(crate) async fn check_line(
    config: &crate::config::Config,
    runner: &Runner,
    wandb: &Client,
) -> Option<Result<String, String>> {
    match configured(config, runner, wandb).await {
        Ok(None) => None,
        Ok(Some(_)) => Some(Ok(
            "kaniko: destination and build context store are usable".to_owned()
        )),
        Err(error) => Some(Err(match error {
            crate::error::Error::Builder(inner) => inner.to_string(),
            other => other.to_string(),
        })),
    }
}

/// The builder, with its context store connected (not yet checked: see
/// [`KanikoBuilder::check`]).
pub(crate) fn builder(
    options: &KanikoOptions,
    namespace: &str,
    identity: Option<String>,
    runner: Runner,
    wandb: Client,
) -> Result<KanikoBuilder, rlaunch_builder::Error> {
    let store = match (&options.store, &options.pvc) {
        (Some(uri), _) => ContextStore::object(uri, &options.store_options)?,
        (None, Some((claim, mount))) => ContextStore::pvc(claim.clone(), mount.clone()),
        (None, None) => {
            return Err(rlaunch_builder::Error::StoreConfig {
                store: String::new(),
                problem: "is missing".to_owned(),
            });
        }
    };
    let defaults = KanikoSettings::default();
    let env = ["aws_region", "region"]
        .iter()
        .find_map(|k| options.store_options.get(*k))
        .map(|region| BTreeMap::from([("AWS_REGION".to_owned(), region.clone())]))
        .unwrap_or_default();
    let job = KanikoSettings {
        image: options.image.clone().unwrap_or(defaults.image),
        namespace: options
            .namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned()),
        service_account: options.service_account.clone(),
        job_name_prefix: options.job_name.clone().unwrap_or(defaults.job_name_prefix),
        credentials: match &options.docker_config_secret {
            Some(secret) => PushCredentials::DockerConfigSecret(secret.clone()),
            None => PushCredentials::Ambient,
        },
        env,
        template: options.template.clone(),
        ..KanikoSettings::default()
    };
    let insecure = match (
        options.insecure_registry,
        ImageRef::parse(&format!("{}:x", options.destination)),
    ) {
        (true, Some(image)) => vec![image.registry],
        _ => Vec::new(),
    };
    let config = KanikoConfig {
        destination: options.destination.clone(),
        store,
        job,
        registry: RegistryClient::new(RegistryAuth::Anonymous, insecure),
        agent_identity: identity,
        work_dir: std::env::temp_dir(),
        log_limit_bytes: rlaunch_builder::DEFAULT_LOG_LIMIT,
    };
    Ok(KanikoBuilder::new(
        config,
        runner,
        std::sync::Arc::new(WandbCode(wandb)),
    ))
}

/// The existence check's credentials for the destination, first found of: the
/// `registry-credentials-file` (a dockerconfigjson, e.g. a mounted
/// `kubernetes.io/dockerconfigjson` Secret), which must name the destination; the push
/// Secret the chart mounts (`LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE`), when it names the
/// destination; an ECR token from the ambient AWS identity when the destination is an ECR
/// host or W&B's `registry` block says `type: ecr` (its `region`); else anonymous.
pub(crate) fn registry_auth(
    options: &KanikoOptions,
    registry: Option<&serde_json::Value>,
    ecr_endpoint: Option<&str>,
) -> Result<RegistryAuth, rlaunch_builder::Error> {
    let bad = |problem: String| rlaunch_builder::Error::RegistryAuth { problem };
    let host = ImageRef::parse(&format!("{}:x", options.destination))
        .map(|image| image.registry)
        .unwrap_or_default();
    if let Some(path) = &options.registry_credentials_file {
        let name = "`builder.registry-credentials-file`";
        return docker_config_auth(name, path, &host)?.ok_or_else(|| {
            let shown = path.display();
            bad(format!(
                "{name} {shown} has no credentials for {host}: add an `auths` entry for it"
            ))
        });
    }
    if let Some(path) = &options.mounted_push_config {
        match docker_config_auth("LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE", path, &host)? {
            Some(auth) => return Ok(auth),
            None => tracing::info!(
                file = %path.display(),
                %host,
                "the mounted push Secret has no `auths` entry for the destination; the image-exists check uses the next credentials source"
            ),
        }
    }
    let text = |key: &str| registry.and_then(|r| r.get(key)).and_then(|v| v.as_str());
    let region = match (EcrAuth::region_of(&host), text("type")) {
        (Some(region), _) => region.to_owned(),
        (None, Some("ecr")) => text("region").map(str::to_owned).ok_or_else(|| {
            bad(
                "`registry.type` is `ecr` but `registry.region` is missing: set the ECR region"
                    .to_owned(),
            )
        })?,
        _ => return Ok(RegistryAuth::Anonymous),
    };
    EcrAuth::new(&region, ecr_endpoint, &BTreeMap::new()).map(RegistryAuth::Ecr)
}

/// The destination's credentials in the dockerconfigjson file `path` (which `name` names),
/// or `None` when it has no entry for `host`.
fn docker_config_auth(
    name: &str,
    path: &Path,
    host: &str,
) -> Result<Option<RegistryAuth>, rlaunch_builder::Error> {
    let bad = |problem: String| rlaunch_builder::Error::RegistryAuth { problem };
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(format!(
            "{name} {shown} cannot be read ({e}): mount the dockerconfigjson Secret there"
        ))
    })?;
    RegistryAuth::from_docker_config(&text, host)
        .map_err(|problem| bad(format!("{name} {shown} {problem}")))
}

/// Downloads code artifacts with the agent's W&B client.
struct WandbCode(Client);

impl CodeFetcher for WandbCode {
    fn fetch_artifact<'a>(
        &'a self,
        artifact: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut parts = artifact.splitn(3, '/');
            let (Some(entity), Some(project), Some(name)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("{artifact} is not entity/project/name:alias"));
            };
            let resolved = self
                .0
                .artifact(entity, project, name)
                .await
                .map_err(|e| e.to_string())?;
            let paths: Vec<&str> = resolved.entries.iter().map(|e| e.path.as_str()).collect();
            let files = self
                .0
                .download_artifact_files(&resolved, &paths)
                .await
                .map_err(|e| e.to_string())?;
            for (path, contents) in files {
                let relative = Path::new(&path);
                if !relative
                    .components()
                    .all(|c| matches!(c, Component::Normal(_)))
                {
                    return Err(format!("the artifact has a file outside its root: {path}"));
                }
                let target = dest.join(relative);
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tokio::fs::write(&target, contents)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(destination: &str, file: Option<&Path>) -> KanikoOptions {
        KanikoOptions {
            destination: destination.to_owned(),
            store: None,
            store_options: BTreeMap::new(),
            pvc: Some(("ctx".to_owned(), "/kaniko".into())),
            job_name: None,
            image: None,
            template: None,
            namespace: None,
            service_account: None,
            docker_config_secret: None,
            insecure_registry: false,
            registry_credentials_file: file.map(Path::to_owned),
            mounted_push_config: None,
        }
    }

    /// Writes `dir/name`: a dockerconfigjson with `user`'s credentials for `r.example`.
    fn docker_config(dir: &Path, name: &str, user: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        let config =
            format!(r#"{{"auths":{{"r.example":{{"username":"{user}","password":"pw"}}}}}}"#);
        std::fs::write(&path, config).unwrap();
        path
    }

    #[test]
    fn the_credentials_file_wins_and_must_name_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = docker_config(dir.path(), "config.json", "robot");
        let auth = registry_auth(&options("r.example/team/x", Some(&path)), None, None).unwrap();
        assert!(matches!(auth, RegistryAuth::Basic { username, .. } if username == "robot"));
        let error = registry_auth(&options("other.example/team/x", Some(&path)), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("registry-credentials-file") && error.contains("other.example"),
            "{error}"
        );
        let missing = dir.path().join("absent.json");
        let error = registry_auth(&options("r.example/team/x", Some(&missing)), None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("absent.json"), "{error}");
    }

    #[test]
    fn the_mounted_push_secret_is_used_when_it_names_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let push = docker_config(dir.path(), "push.json", "pusher");
        let mounted = |destination: &str, file: Option<&Path>| KanikoOptions {
            mounted_push_config: Some(push.clone()),
            ..options(destination, file)
        };
        let auth = registry_auth(&mounted("r.example/team/x", None), None, None).unwrap();
        assert!(matches!(auth, RegistryAuth::Basic { username, .. } if username == "pusher"));
        // No entry for the destination (e.g. `credHelpers` only): the next source, not an error.
        let ecr = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainer";
        assert!(matches!(
            registry_auth(&mounted(ecr, None), None, None).unwrap(),
            RegistryAuth::Ecr(_)
        ));
        assert!(matches!(
            registry_auth(&mounted("other.example/x", None), None, None).unwrap(),
            RegistryAuth::Anonymous
        ));
        // The launch config's own file wins.
        let own = docker_config(dir.path(), "own.json", "reader");
        let auth = registry_auth(&mounted("r.example/team/x", Some(&own)), None, None).unwrap();
        assert!(matches!(auth, RegistryAuth::Basic { username, .. } if username == "reader"));
        // A mounted file that is not a dockerconfigjson is an error naming the variable.
        std::fs::write(&push, "not json").unwrap();
        let error = registry_auth(&mounted("r.example/team/x", None), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE") && !error.contains("pw"),
            "{error}"
        );
    }

    #[test]
    fn ecr_destinations_or_registry_type_ecr_use_the_token_flow() {
        let ecr = options("123456789012.dkr.ecr.eu-west-1.amazonaws.com/trainer", None);
        assert!(matches!(
            registry_auth(&ecr, None, None).unwrap(),
            RegistryAuth::Ecr(_)
        ));
        let plain = options("r.example/team/x", None);
        let block = serde_json::json!({"type": "ecr", "region": "us-east-1"});
        assert!(matches!(
            registry_auth(&plain, Some(&block), Some("http://127.0.0.1:9")).unwrap(),
            RegistryAuth::Ecr(_)
        ));
        let no_region = serde_json::json!({"type": "ecr"});
        let error = registry_auth(&plain, Some(&no_region), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("registry.region"), "{error}");
        assert!(matches!(
            registry_auth(&plain, None, None).unwrap(),
            RegistryAuth::Anonymous
        ));
    }
}
