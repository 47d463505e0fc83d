//! Harness: the fake W&B, the testkit cluster and the real `launch-agent` as a child.

#![allow(dead_code)]

pub mod chaos;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, ItemState, NewItem, NewQueue};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Polls `check` every 100 ms until it returns `Some`, failing with `what` after `limit`
/// (a hang guard, not a timing assertion).
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A queue config putting pods in `namespace` with the kwok outcome `outcome`.
pub fn queue(name: &str, namespace: &str, annotations: Value) -> NewQueue {
    let mut queue = NewQueue::new(FAKE_ENTITY, name);
    queue.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": annotations}}}
    }}});
    queue
}

pub fn image_item(queue: &str, project: &str) -> NewItem {
    NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: "model-registry".to_owned(),
        queue: queue.to_owned(),
        run_spec: json!({
            "entity": FAKE_ENTITY,
            "project": project,
            "docker": {"docker_image": "registry.example/train:1"},
        }),
        priority: None,
    }
}

/// The running agent.
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
    pub health_port: u16,
    pub metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl AgentProcess {
    /// Starts `launch-agent` with `config_yaml` (health/metrics addresses appended).
    pub async fn start(
        fake: &FakeWandb,
        kubeconfig: &std::path::Path,
        config_yaml: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_key(fake, kubeconfig, config_yaml, FAKE_API_KEY).await
    }

    /// Like [`AgentProcess::start`] with another API key.
    pub async fn start_with_key(
        fake: &FakeWandb,
        kubeconfig: &std::path::Path,
        config_yaml: &str,
        api_key: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with_env(fake, kubeconfig, config_yaml, api_key, &[]).await
    }

    /// Like [`AgentProcess::start_with_key`] with extra environment variables.
    pub async fn start_with_env(
        fake: &FakeWandb,
        kubeconfig: &std::path::Path,
        config_yaml: &str,
        api_key: &str,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let health_port = free_port();
        let metrics_port = free_port();
        let config = dir.path().join("launch-config.yaml");
        std::fs::write(
            &config,
            format!(
                "{config_yaml}\nhealth_addr: 127.0.0.1:{health_port}\nmetrics_addr: 127.0.0.1:{metrics_port}\n"
            ),
        )?;
        let log = dir.path().join("agent.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_launch-agent"))
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("WANDB_API_KEY", api_key)
            .env("WANDB_BASE_URL", &fake.base_url)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start launch-agent")?;
        Ok(Self {
            child,
            log,
            health_port,
            metrics_port,
            _dir: dir,
        })
    }

    /// True once the process has ended (gone, or a zombie not yet waited for).
    pub fn has_exited(&self) -> bool {
        let Some(pid) = self.child.id() else {
            return true;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("agent already exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    pub async fn http_get(&self, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }
}

/// Acts as the W&B SDK inside each workload: marks every acked run as initialised
/// (except runs of the project `never-init`, whose workload "forgot" `wandb.init`).
pub fn simulate_wandb_init(fake: std::sync::Arc<FakeWandb>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for item in fake.items() {
                if item.state != ItemState::Claimed {
                    continue;
                }
                let (Some(run_id), Some(project)) = (
                    item.associated_run_id.clone(),
                    item.run_spec.get("project").and_then(Value::as_str),
                ) else {
                    continue;
                };
                if project == "never-init" {
                    continue;
                }
                let known = fake
                    .runs()
                    .into_iter()
                    .any(|r| r.name == run_id && r.state == "running");
                if !known {
                    fake.set_run_state(FAKE_ENTITY, project, &run_id, "running");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Jobs in `namespace` that are not terminal.
pub async fn active_jobs(client: &kube::Client, namespace: &str) -> anyhow::Result<usize> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let list = jobs.list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|job| {
            !job.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conditions| {
                    conditions.iter().any(|c| {
                        c.status == "True"
                            && matches!(
                                c.type_.as_str(),
                                "Complete" | "Failed" | "SuccessCriteriaMet" | "FailureTarget"
                            )
                    })
                })
        })
        .count())
}

/// Job uids per `rlaunch.dev/run-queue-item` annotation.
pub type Jobs = BTreeMap<String, BTreeSet<String>>;

/// Job uids per `rlaunch.dev/run-queue-item` annotation, as listed now.
pub async fn jobs_by_item(client: &kube::Client, ns: &str) -> anyhow::Result<Jobs> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let mut by_item = Jobs::new();
    for job in api.list(&ListParams::default()).await?.items {
        let item = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("rlaunch.dev/run-queue-item"))
            .cloned()
            .unwrap_or_default();
        by_item
            .entry(item)
            .or_default()
            .insert(job.metadata.uid.unwrap_or_default());
    }
    Ok(by_item)
}

/// Every Job ever seen, per item (sampled every 50 ms): the agent deletes a Job once it
/// is reported.
pub fn record_jobs(
    client: kube::Client,
    ns: String,
) -> (Arc<Mutex<Jobs>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Jobs::new()));
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(now) = jobs_by_item(&client, &ns).await {
                    let mut seen = seen.lock().unwrap();
                    for (item, uids) in now {
                        seen.entry(item).or_default().extend(uids);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    (seen, task)
}
