//! `builder: {type: kaniko}`: the Kaniko builder built from the config's options
//! ([`KanikoOptions`]), checked at start-up and by `launch-agent check`, and the code
//! fetcher that downloads code artifacts through W&B.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use futures::future::BoxFuture;
use rlaunch_builder::{
    CodeFetcher, ContextStore, ImageRef, KanikoBuilder, KanikoConfig, KanikoSettings,
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
    let kaniko = builder(
        options,
        &namespace,
        config.identity.clone(),
        runner.clone(),
        wandb.clone(),
    )
    .map_err(crate::error::Error::Builder)?;
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
