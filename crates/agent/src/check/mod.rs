//! `launch-agent check`: config, credentials, queues and cluster access (reachability and
//! every RBAC rule of the runner's table, per watched namespace), as a report.

mod rbac;

pub use rbac::AGENT_RBAC_RULES;

use std::sync::Arc;

use rlaunch_builder::{Builder as _, EcrPullSecret, NoopBuilder};
use rlaunch_k8s_runner::{Runner, RunnerConfig};
use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{Client, ClientConfig, LAUNCH_PROJECT};

use crate::config::Config;
use crate::identity::identity;

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked.
    pub what: String,
    /// `Ok(detail)` or `Err(reason)`.
    pub result: Result<String, String>,
}

/// Runs every check and returns the report lines (the config itself already parsed).
pub async fn check(config: &Config, api_key: ApiKey) -> Vec<CheckLine> {
    let mut lines = vec![CheckLine {
        what: "config".to_owned(),
        result: Ok(match &config.source {
            Some(path) => format!("{} is valid", path.display()),
            None => "flags and environment are valid (no file)".to_owned(),
        }),
    }];
    let mut client_config = ClientConfig::new(config.base_url.clone(), api_key);
    client_config.extra_ca_file = config.extra_ca_file.clone();
    let (entity, wandb) = match Client::new(client_config) {
        Err(error) => {
            lines.push(line("W&B client", Err(error.to_string())));
            (None, None)
        }
        Ok(client) => (check_wandb(config, &client, &mut lines).await, Some(client)),
    };
    lines.extend(check_cluster(config, entity.as_deref()).await);
    lines.extend(check_builder(config, wandb).await);
    lines.extend(check_registry(config).await);
    lines
}

/// W&B's `registry: {type: ecr}` block: whether ECR gives the agent a token for its
/// registry, which the pull Secrets of the runs pulling from it need.
async fn check_registry(config: &Config) -> Option<CheckLine> {
    let result = match crate::pull_secret::registry_block_ecr(config) {
        Ok(None) => return None,
        Err(error) => Err(error.to_string()),
        Ok(Some((host, auth))) => {
            let pulls = EcrPullSecret::new(Arc::new(NoopBuilder), &host, auth);
            match pulls
                .pull_credentials(&format!("{host}/check:latest"))
                .await
            {
                Ok(_) => Ok(format!(
                    "ECR gives a token for {host}: runs pulling from it get an image-pull Secret"
                )),
                Err(error) => Err(error.to_string()),
            }
        }
    };
    Some(line("registry", result))
}

/// The builder's destination and context store (a bad bucket is named here).
async fn check_builder(config: &Config, wandb: Option<Client>) -> Option<CheckLine> {
    let (Some(wandb), Ok(kube)) = (wandb, kube::Client::try_default().await) else {
        return None;
    };
    let runner = Runner::new(kube, RunnerConfig::default());
    let result = crate::kaniko::check_line(config, &runner, &wandb).await?;
    Some(line("builder", result))
}

fn line(what: &str, result: Result<String, String>) -> CheckLine {
    CheckLine {
        what: what.to_owned(),
        result,
    }
}

async fn check_wandb(
    config: &Config,
    client: &Client,
    lines: &mut Vec<CheckLine>,
) -> Option<String> {
    let viewer = match client.viewer().await {
        Ok(viewer) => viewer,
        Err(error) => {
            lines.push(line("credentials", Err(error.to_string())));
            return None;
        }
    };
    lines.push(line(
        "credentials",
        Ok(format!(
            "API key accepted for user {}",
            viewer.username.as_deref().unwrap_or(&viewer.id)
        )),
    ));
    let Some(entity) = config.entity.clone().or(viewer.entity) else {
        lines.push(line(
            "entity",
            Err("no entity configured and the user has no default entity".to_owned()),
        ));
        return None;
    };
    match client.project_run_queues(&entity, LAUNCH_PROJECT).await {
        Ok(queues) => {
            for name in &config.queues {
                let found = queues.iter().any(|q| &q.name == name);
                lines.push(line(
                    &format!("queue {name}"),
                    if found {
                        Ok(format!("exists in {entity}/{LAUNCH_PROJECT}"))
                    } else {
                        Err(format!("not found in {entity}/{LAUNCH_PROJECT} (create it in the W&B UI or fix `queues`)"))
                    },
                ));
            }
        }
        Err(error) => lines.push(line("queues", Err(error.to_string()))),
    }
    Some(entity)
}

async fn check_cluster(config: &Config, entity: Option<&str>) -> Vec<CheckLine> {
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            return vec![line(
                "cluster",
                Err(format!("no Kubernetes client: {error}")),
            )];
        }
    };
    let runner = Runner::new(client.clone(), RunnerConfig::default());
    let served = runner.served_custom_kinds().await;
    let mut lines = vec![reachable(config, entity, &runner).await];
    lines.extend(rbac::check_rbac(&client, config, &served).await);
    lines
}

async fn reachable(config: &Config, entity: Option<&str>, runner: &Runner) -> CheckLine {
    let identity = identity(config, entity.unwrap_or("unknown"));
    match runner
        .list_in_flight(&identity, &config.watched_namespaces(), &[])
        .await
    {
        Ok(runs) => line(
            "cluster",
            Ok(format!(
                "reachable; {} run(s) of identity {identity} in flight",
                runs.len()
            )),
        ),
        Err(error) => line("cluster", Err(crate::pipeline::error_chain(&error))),
    }
}
