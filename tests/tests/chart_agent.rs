//! Proof that the chart's RBAC is enough, and no more than enough: after `helm install` on the
//! testkit cluster, the real `launch-agent` runs on the host with a token minted for the
//! chart's ServiceAccount (TokenRequest), the launch config and environment the chart rendered
//! (read back from the installed ConfigMap and Deployment), and must pop from `wandb-fake`,
//! launch, monitor, cancel and clean up a run in each of its two target namespaces with
//! exactly those permissions: no request of the agent may be refused.
//!
//! The binary is `launch-agent-under-chart`: `bins/launch-agent/src/main.rs` compiled by this
//! package (see `tests/Cargo.toml`), so it is always as fresh as the test itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Secret, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{
    FAKE_API_KEY, FAKE_ENTITY, FakeWandb, ItemState, ItemView, NewItem, NewQueue,
};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

mod chart_tools;
use chart_tools::helm_install;

const RELEASE: &str = "run";
/// A hang guard for each wait, not a timing assertion.
const WAIT: Duration = Duration::from_secs(240);
/// Where the chart mounts the launch config in the agent container.
const CONFIG_MOUNT: &str = "/home/launch_agent/.config/wandb/launch-config.yaml";

/// The two queues of one target namespace: runs that finish, runs that run until stopped.
fn queues_for(index: usize, namespace: &str) -> [NewQueue; 2] {
    let finish = json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "1"});
    let forever = json!({annotations::OUTCOME: outcome::RUN_FOREVER});
    [
        queue(&format!("finish-{index}"), namespace, finish),
        queue(&format!("stop-{index}"), namespace, forever),
    ]
}

fn queue(name: &str, namespace: &str, pod_annotations: Value) -> NewQueue {
    let mut queue = NewQueue::new(FAKE_ENTITY, name);
    queue.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": pod_annotations}}}
    }}});
    queue
}

fn item(queue: &str) -> NewItem {
    NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: "model-registry".to_owned(), // the project queues live in
        queue: queue.to_owned(),
        run_spec: json!({
            "entity": FAKE_ENTITY,
            "project": "chart",
            "docker": {"docker_image": "registry.example/train:1"},
        }),
        priority: None,
    }
}

/// The chart's values: the fake W&B, both target namespaces, the agent's queues.
fn values(fake: &FakeWandb, target: &str, queues: &[String]) -> String {
    let launch_config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [{}]\nmax_jobs: 4\npoll_interval: 0.3\nstopped_run_timeout: 1\ninit_check_timeout: 60\n",
        queues.join(", ")
    );
    let values = json!({
        "agent": {"apiKey": FAKE_API_KEY},
        "baseUrl": fake.base_url,
        "additionalTargetNamespaces": [target],
        "launchConfig": launch_config,
    });
    serde_yaml_ng::to_string(&values).unwrap()
}

/// A token for the chart's ServiceAccount, as the kubelet would project it.
async fn service_account_token(admin: &kube::Client, ns: &str, name: &str) -> Result<String> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("TokenRequest for {ns}/{name}"))?;
    answer
        .status
        .map(|s| s.token)
        .context("the TokenRequest has no status")
}

/// The admin kubeconfig's cluster with `token` as the only user, in namespace `ns` (what a
/// pod of the ServiceAccount sees in-cluster).
fn token_kubeconfig(admin_kubeconfig: &Path, token: &str, ns: &str) -> Result<String> {
    let text = std::fs::read_to_string(admin_kubeconfig)?;
    let admin: Value = serde_yaml_ng::from_str(&text)?;
    let cluster = admin["clusters"][0].clone();
    let cluster_name = cluster["name"].as_str().context("a named cluster")?;
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "chart-sa", "user": {"token": token}}],
        "contexts": [{"name": "chart-sa", "context":
            {"cluster": cluster_name, "user": "chart-sa", "namespace": ns}}],
        "current-context": "chart-sa",
    });
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// The agent container of the installed Deployment.
async fn agent_container(admin: &kube::Client, ns: &str) -> Result<(Container, String)> {
    let deployment = Api::<Deployment>::namespaced(admin.clone(), ns)
        .get(&format!("launch-agent-{RELEASE}"))
        .await?;
    let spec = deployment
        .spec
        .and_then(|s| s.template.spec)
        .context("the Deployment has a pod spec")?;
    let sa = spec
        .service_account_name
        .context("the pod names its ServiceAccount")?;
    let container = spec
        .containers
        .into_iter()
        .find(|c| c.name == "launch-agent")
        .context("no launch-agent container")?;
    Ok((container, sa))
}

/// The container's environment as the kubelet would resolve it in `ns` for ServiceAccount
/// `sa`: literal values, Secret and ConfigMap keys (read from the cluster) and field refs.
async fn resolve_env(
    admin: &kube::Client,
    ns: &str,
    sa: &str,
    env: &[EnvVar],
) -> Result<BTreeMap<String, String>> {
    let mut resolved = BTreeMap::new();
    for var in env {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => {
                if let Some(key) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(admin.clone(), ns)
                        .get(&key.name)
                        .await?;
                    let bytes = secret.data.and_then(|d| d.get(&key.key).cloned());
                    let bytes =
                        bytes.with_context(|| format!("{} has no {}", key.name, key.key))?;
                    String::from_utf8(bytes.0)?
                } else if let Some(key) = &from.config_map_key_ref {
                    let map = Api::<ConfigMap>::namespaced(admin.clone(), ns)
                        .get(&key.name)
                        .await?;
                    let data = map.data.and_then(|d| d.get(&key.key).cloned());
                    data.with_context(|| format!("{} has no {}", key.name, key.key))?
                } else if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "spec.serviceAccountName" => sa.to_owned(),
                        "metadata.namespace" => ns.to_owned(),
                        "metadata.name" => format!("launch-agent-{RELEASE}-host"),
                        other => bail!("env {} reads field {other}", var.name),
                    }
                } else {
                    bail!("env {} has a source this test does not resolve", var.name)
                }
            }
            (None, None) => String::new(),
        };
        resolved.insert(var.name.clone(), value);
    }
    Ok(resolved)
}

/// The agent, started as the chart's pod would start it, but on the host.
struct HostAgent {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl HostAgent {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True when `/metrics` answers and no run holds a slot.
    async fn idle(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).await
        else {
            return false;
        };
        let request = b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let mut response = String::new();
        if stream.write_all(request).await.is_err()
            || stream.read_to_string(&mut response).await.is_err()
        {
            return false;
        }
        let mut slots = response
            .lines()
            .filter(|l| l.starts_with("rlaunch_agent_jobs{"))
            .peekable();
        slots.peek().is_some() && slots.all(|l| l.ends_with(" 0"))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

async fn start_agent(admin: &kube::Client, kubeconfig: &Path, ns: &str) -> Result<HostAgent> {
    let (container, sa) = agent_container(admin, ns).await?;
    let dir = tempfile::tempdir()?;
    // The launch config as the chart rendered it, from the installed ConfigMap.
    let map = Api::<ConfigMap>::namespaced(admin.clone(), ns)
        .get(&format!("wandb-launch-configmap-{RELEASE}"))
        .await?;
    let launch_config = map
        .data
        .and_then(|d| d.get("launch-config.yaml").cloned())
        .context("the ConfigMap has no launch-config.yaml")?;
    let config = dir.path().join("launch-config.yaml");
    std::fs::write(&config, launch_config)?;
    let args: Vec<String> = container.args.clone().unwrap_or_default();
    assert!(args.iter().any(|a| a == CONFIG_MOUNT), "{args:?}");
    let args = args.into_iter().map(|a| {
        if a == CONFIG_MOUNT {
            config.display().to_string()
        } else {
            a
        }
    });
    let mut env = resolve_env(admin, ns, &sa, &container.env.unwrap_or_default()).await?;
    let token = service_account_token(admin, ns, &sa).await?;
    let own_kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&own_kubeconfig, token_kubeconfig(kubeconfig, &token, ns)?)?;
    // Host stand-ins for the pod's mounts and ports.
    env.insert("HOME".to_owned(), dir.path().display().to_string());
    let metrics_port = free_port();
    for (var, port) in [
        ("LAUNCH_AGENT_HEALTH_ADDR", free_port()),
        ("LAUNCH_AGENT_METRICS_ADDR", metrics_port),
    ] {
        assert!(env.contains_key(var), "the chart sets {var}");
        env.insert(var.to_owned(), format!("127.0.0.1:{port}"));
    }
    let log = dir.path().join("agent.log");
    let child = Command::new(env!("CARGO_BIN_EXE_launch-agent-under-chart"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .env("KUBECONFIG", &own_kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start launch-agent")?;
    Ok(HostAgent {
        child,
        log,
        metrics_port,
        _dir: dir,
    })
}

/// Acts as the W&B SDK inside each workload: marks every acked run as running.
fn simulate_wandb_init(fake: Arc<FakeWandb>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for item in fake.items() {
                let Some(run_id) = item.associated_run_id.as_deref() else {
                    continue;
                };
                let running = fake
                    .run(FAKE_ENTITY, "chart", run_id)
                    .is_some_and(|r| r.state == "running" || r.stopped);
                if item.state == ItemState::Claimed && !running {
                    fake.set_run_state(FAKE_ENTITY, "chart", run_id, "running");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Polls `check` every 200 ms until it returns `Some` (a hang guard of [`WAIT`]).
async fn eventually<T, F, Fut>(what: &str, agent: &HostAgent, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "gave up waiting for {what}; agent log:\n{}",
                agent.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn job_count(admin: &kube::Client, ns: &str) -> Result<usize> {
    let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
    Ok(jobs.list(&ListParams::default()).await?.items.len())
}

/// The run queue items of the Jobs in `ns`.
async fn job_items(admin: &kube::Client, ns: &str) -> Result<Vec<String>> {
    let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
    let list = jobs.list(&ListParams::default()).await?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|job| {
            let annotations = job.metadata.annotations?;
            annotations.get("rlaunch.dev/run-queue-item").cloned()
        })
        .collect())
}

fn find_item(items: &[ItemView], id: &str) -> ItemView {
    items.iter().find(|i| i.id == id).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_launches_and_cancels_runs_in_every_target_under_the_charts_service_account()
-> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let admin = cluster.client().await?;
    let agent_ns = cluster.namespace("chart-run-agent").await?;
    let target_ns = cluster.namespace("chart-run-target").await?;
    let targets = [agent_ns.name().to_owned(), target_ns.name().to_owned()];
    let fake = Arc::new(FakeWandb::start().await?);
    let mut queue_names = Vec::new();
    for (index, ns) in targets.iter().enumerate() {
        for queue in queues_for(index, ns) {
            queue_names.push(queue.name.clone());
            fake.create_queue(queue)?;
        }
    }
    let values = tempfile::NamedTempFile::new()?;
    std::fs::write(
        values.path(),
        self::values(&fake, &targets[1], &queue_names),
    )?;
    let kc = cluster.kubeconfig_path();
    helm_install(
        kc,
        RELEASE,
        &targets[0],
        &["-f", &values.path().display().to_string()],
    )?;
    let finishing: Vec<String> = (0..2)
        .map(|i| fake.push_item(item(&format!("finish-{i}"))))
        .collect::<Result<_, _>>()?;
    let stopping: Vec<String> = (0..2)
        .map(|i| fake.push_item(item(&format!("stop-{i}"))))
        .collect::<Result<_, _>>()?;
    let _sdk = simulate_wandb_init(fake.clone());
    let mut agent = start_agent(&admin, kc, &targets[0]).await?;

    // The stoppable runs are launched in both namespaces, then stopped from "the UI".
    let run_ids = eventually("a running workload in each target", &agent, || async {
        let mut launched = Vec::new();
        for ns in &targets {
            launched.extend(job_items(&admin, ns).await?);
        }
        let items = fake.items();
        let ids: Option<Vec<String>> = stopping
            .iter()
            .filter(|id| launched.contains(id))
            .map(|id| find_item(&items, id).associated_run_id)
            .collect();
        Ok(ids.filter(|ids| ids.len() == stopping.len()))
    })
    .await?;
    for run_id in &run_ids {
        fake.stop_run(FAKE_ENTITY, "chart", run_id);
    }
    eventually("every item to end and every Job to go", &agent, || async {
        anyhow::ensure!(
            agent.child.id().is_some(),
            "the agent exited:\n{}",
            agent.log_text()
        );
        let items = fake.items();
        let all_claimed = finishing
            .iter()
            .chain(&stopping)
            .all(|id| find_item(&items, id).state == ItemState::Claimed);
        let mut jobs = 0;
        for ns in &targets {
            jobs += job_count(&admin, ns).await?;
        }
        Ok((all_claimed && jobs == 0 && agent.idle().await).then_some(()))
    })
    .await?;
    let items = fake.items();
    for id in finishing.iter().chain(&stopping) {
        let item = find_item(&items, id);
        assert!(item.failure.is_none(), "{item:?}\n{}", agent.log_text());
    }
    agent.child.start_kill()?;
    agent.child.wait().await?;
    let log = agent.log_text();
    assert_eq!(
        log.matches("workload cancelled after a stop request")
            .count(),
        2,
        "{log}"
    );
    // A refused call reads `… is forbidden: User "system:serviceaccount:…" cannot …`
    // (reason Forbidden, code 403), whichever step made it; and no step may have given up
    // on a call (adoption's listing, the pre-check), refused or not.
    let lower = log.to_lowercase();
    assert!(
        !lower.contains("forbidden") && !lower.contains("code: 403"),
        "a request was refused:\n{log}"
    );
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        warnings.is_empty(),
        "the agent warned:\n{}",
        warnings.join("\n")
    );
    assert!(!log.contains(FAKE_API_KEY), "the API key reached the log");
    eprintln!("agent log:\n{log}");
    agent_ns.cleanup().await;
    target_ns.cleanup().await;
    Ok(())
}
