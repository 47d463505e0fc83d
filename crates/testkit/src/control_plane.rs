//! Starting, probing, restarting and stopping the five processes of a test cluster.

use crate::io_err;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::binaries::{self, Binaries};
use crate::node::{NodeOptions, RealNode};
use crate::pki;
use crate::support::free_ports;
pub use crate::support::{Supervision, client_from_kubeconfig, log_tail};
use crate::{Error, Result};

/// The kwok configuration (stages implementing [`crate::annotations`]).
pub const KWOK_STAGES: &str = include_str!("../assets/kwok/stages.yaml");
/// The default fake nodes: 2×8 A100, 2×8 H100, 2 CPU nodes.
pub const DEFAULT_NODES: &str = include_str!("../assets/nodes.yaml");
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Name of the state file in the state dir.
pub const STATE_FILE: &str = "cluster.json";

/// What to start.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Directory for certs, etcd data, logs, kubeconfig, PID files. Created if missing.
    pub state_dir: PathBuf,
    /// See [`Supervision`].
    pub supervision: Supervision,
    /// Multi-document YAML of Nodes; `None` means [`DEFAULT_NODES`].
    pub nodes_yaml: Option<String>,
    /// Whether a real node joins the kwok nodes.
    pub nodes: NodeSet,
    /// kube-controller-manager's client rate (`--kube-api-qps`; the burst is twice that):
    /// [`controller_manager_qps`] unless a caller wants another.
    pub controller_manager_qps: u32,
}

/// kube-controller-manager's client rate in the test clusters. Upstream's default, 20
/// requests/s (burst 30), makes the controller manager the bottleneck of every drain of
/// short Jobs: each Job costs it about six writes (the pod, Job status updates, the pod's
/// tracking finalizer, the garbage collection of its pod), so about 3 Jobs/s, whichever
/// agent submits them (`cargo xtask bench agent`). The test clusters run it at 200 so that
/// the agents, not the controller manager, are measured.
pub const CONTROLLER_MANAGER_QPS: u32 = 200;

/// Environment variable that sets [`StartOptions::controller_manager_qps`] for the clusters
/// testkit and `cargo xtask cluster up` start (e.g. `20` to measure at upstream's default).
pub const CONTROLLER_MANAGER_QPS_ENV: &str = "RLAUNCH_TESTKIT_KCM_QPS";

/// [`CONTROLLER_MANAGER_QPS`], or the value of [`CONTROLLER_MANAGER_QPS_ENV`] when set.
pub fn controller_manager_qps() -> Result<u32> {
    std::env::var_os(CONTROLLER_MANAGER_QPS_ENV)
        .map_or(Ok(CONTROLLER_MANAGER_QPS), |value| parse_qps(&value))
}

fn parse_qps(value: &std::ffi::OsStr) -> Result<u32> {
    value
        .to_str()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|qps| *qps > 0)
        .ok_or_else(|| Error::BadEnv {
            variable: CONTROLLER_MANAGER_QPS_ENV,
            value: value.to_string_lossy().into_owned(),
            fix: "give a positive whole number of requests per second (e.g. 20, upstream's \
                  default), or unset it",
        })
}

/// Which nodes a cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeSet {
    /// Only the kwok nodes (starts in seconds, needs nothing from the machine).
    #[default]
    Kwok,
    /// The kwok nodes and a real one ([`crate::node`]): kubelet, containerd and runc
    /// running real containers; needs root and the packages of `cargo xtask setup`.
    /// kwok then manages only the nodes annotated `kwok.x-k8s.io/node: fake`.
    WithRealNode,
}

/// Written to `<state_dir>/cluster.json`: what `down` and `up` need to know.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// PID per component name.
    pub pids: BTreeMap<String, u32>,
    /// Binary path per component name (checked against `/proc/<pid>/exe` before killing).
    pub binaries: BTreeMap<String, PathBuf>,
}

struct Proc {
    name: String,
    child: Child,
    args: Vec<String>,
}

/// A running control plane started by this process.
pub struct ControlPlane {
    /// The state dir.
    pub state_dir: PathBuf,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    binaries: Binaries,
    supervision: Supervision,
    pgid: Option<i32>,
    procs: Mutex<Vec<Proc>>,
    // Held open for the life of the process; EOF tells the watchdog to tear down.
    _watchdog: Option<(Child, ChildStdin)>,
    real_node: Option<RealNode>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("state_dir", &self.state_dir)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn kubeconfig_yaml(server: &str, pki: &pki::Pki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: rlaunch-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: rlaunch-test-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: rlaunch-test\n  context:\n    cluster: rlaunch-test\n    user: rlaunch-test-admin\n    namespace: default\ncurrent-context: rlaunch-test\n",
        ca = b64(&pki.ca_pem),
        cert = b64(&pki.admin_cert_pem),
        key = b64(&pki.admin_key_pem),
    )
}

// POSIX sh (dash has no `kill -- -PGID`): `kill -s SIG 0` signals our own process group,
// which holds every component; the watchdog ignores TERM so it survives to clean up.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
read -r _ignored
kill -s TERM 0 2>/dev/null
sleep 2
rm -rf -- "$1"
kill -s KILL 0 2>/dev/null
"#;

/// A kube client for `url` without credentials and without server-cert verification
/// (health endpoints of kcm/scheduler with their self-signed certs; plain-http etcd).
fn probe_client(url: &str) -> Option<kube::Client> {
    let uri: http::Uri = url.parse().ok()?;
    let mut config = kube::Config::new(uri);
    config.accept_invalid_certs = true;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).ok()
}

async fn get_text(client: &kube::Client, path: &str) -> Option<String> {
    let req = http::Request::get(path).body(Vec::new()).ok()?;
    client.request_text(req).await.ok()
}

/// Loopback ports of one cluster, chosen free at start.
#[derive(Debug, Clone, Copy)]
struct Ports {
    etcd: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
    scheduler: u16,
}

impl Ports {
    fn free() -> Result<Ports> {
        let p = free_ports(5)?;
        Ok(Ports {
            etcd: p[0],
            etcd_peer: p[1],
            apiserver: p[2],
            controller_manager: p[3],
            scheduler: p[4],
        })
    }
}

/// The state dir, filled: certificates, ports, kubeconfig and kwok configuration.
struct Prepared {
    dir: PathBuf,
    pki: pki::Pki,
    ports: Ports,
    server: String,
    kubeconfig: PathBuf,
    kwok_config: PathBuf,
    controller_manager_qps: u32,
}

impl Prepared {
    /// Creates the state dir's layout and writes what the components read.
    fn write(dir: &Path, controller_manager_qps: u32) -> Result<Prepared> {
        for sub in ["logs", "pki", "etcd"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err("cannot create the state dir", &p))?;
        }
        let pki = pki::generate(&dir.join("pki"))?;
        let ports = Ports::free()?;
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let kubeconfig = dir.join("kubeconfig");
        fs::write(&kubeconfig, kubeconfig_yaml(&server, &pki))
            .map_err(io_err("cannot write", &kubeconfig))?;
        let kwok_config = dir.join("kwok.yaml");
        fs::write(&kwok_config, KWOK_STAGES).map_err(io_err("cannot write", &kwok_config))?;
        Ok(Prepared {
            dir: dir.to_owned(),
            pki,
            ports,
            server,
            kubeconfig,
            kwok_config,
            controller_manager_qps,
        })
    }

    fn path(&self, sub: &str) -> String {
        self.dir.join(sub).display().to_string()
    }

    fn etcd_args(&self) -> Vec<String> {
        let Ports {
            etcd, etcd_peer, ..
        } = self.ports;
        vec![
            "--name=node0".into(),
            format!("--data-dir={}", self.path("etcd")),
            format!("--listen-client-urls=http://127.0.0.1:{etcd}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=node0=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync=true".into(),
            "--quota-backend-bytes=8589934592".into(),
            "--auto-compaction-retention=1".into(),
            "--log-level=warn".into(),
        ]
    }

    fn apiserver_args(&self) -> Vec<String> {
        let pki = &self.pki;
        let p = |p: &Path| p.display().to_string();
        vec![
            format!("--etcd-servers=http://127.0.0.1:{}", self.ports.etcd),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.ports.apiserver),
            format!("--tls-cert-file={}", p(&pki.apiserver_cert)),
            format!("--tls-private-key-file={}", p(&pki.apiserver_key)),
            format!("--client-ca-file={}", p(&pki.ca_cert)),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(&pki.sa_pub)),
            format!("--service-account-signing-key-file={}", p(&pki.sa_key)),
            "--authorization-mode=RBAC".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--endpoint-reconciler-type=none".into(),
            "--allow-privileged=true".into(),
            // The real node's name does not resolve; its InternalIP does (logs, exec).
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--cert-dir={}", self.path("apiserver-certs")),
            "--profiling=false".into(),
            "--v=1".into(),
        ]
    }

    /// Flags kube-controller-manager and kube-scheduler share: the admin kubeconfig for
    /// everything, loopback, no leader election.
    fn component_args(&self, port: u16, cert_dir: &str) -> Vec<String> {
        let kc = self.kubeconfig.display();
        vec![
            format!("--kubeconfig={kc}"),
            format!("--authentication-kubeconfig={kc}"),
            format!("--authorization-kubeconfig={kc}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", self.path(cert_dir)),
            "--leader-elect=false".into(),
            "--v=1".into(),
        ]
    }

    fn controller_manager_args(&self) -> Vec<String> {
        let mut args = self.component_args(self.ports.controller_manager, "kcm-certs");
        args.extend([
            format!("--root-ca-file={}", self.pki.ca_cert.display()),
            format!(
                "--service-account-private-key-file={}",
                self.pki.sa_key.display()
            ),
            "--use-service-account-credentials=false".into(),
            "--controllers=*".into(),
            "--concurrent-job-syncs=10".into(),
            format!("--kube-api-qps={}", self.controller_manager_qps),
            format!("--kube-api-burst={}", 2 * self.controller_manager_qps),
        ]);
        args
    }

    fn scheduler_args(&self) -> Vec<String> {
        self.component_args(self.ports.scheduler, "scheduler-certs")
    }

    fn kwok_args(&self, nodes: NodeSet) -> Vec<String> {
        let managed = match nodes {
            NodeSet::Kwok => "--manage-all-nodes=true",
            // Never the real node: only the fake ones (every node of `assets/nodes.yaml`).
            NodeSet::WithRealNode => {
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake"
            }
        };
        vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--config={}", self.kwok_config.display()),
            managed.into(),
            "--cidr=10.244.0.0/16".into(),
            "--node-ip=10.240.0.1".into(),
            "--node-lease-duration-seconds=40".into(),
        ]
    }
}

/// The `sh` watchdog of [`Supervision::DieWithParent`] (none when detached), with the pipe
/// whose end tells it to tear the cluster down.
fn spawn_watchdog(supervision: Supervision, dir: &Path) -> Result<Option<(Child, ChildStdin)>> {
    if supervision == Supervision::Detached {
        return Ok(None);
    }
    crate::support::spawn_watchdog(WATCHDOG, "rlaunch-testkit-watchdog", &[dir.as_os_str()])
        .map(Some)
}

/// Whether a health endpoint of a component answers (any body: kcm and the scheduler
/// serve self-signed certificates and need no credentials for it).
async fn health_answers(url: &str, path: &str) -> bool {
    match probe_client(url) {
        Some(client) => get_text(&client, path).await.is_some(),
        None => false,
    }
}

impl ControlPlane {
    /// Builds the binaries if needed, then starts etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler and kwok, and waits until the cluster is
    /// usable (CRDs established, nodes Ready, `default` service account present).
    pub async fn start(opts: StartOptions) -> Result<ControlPlane> {
        let started = Instant::now();
        let elapsed = || started.elapsed().as_secs_f32();
        let binaries = tokio::task::spawn_blocking(binaries::ensure_built)
            .await
            .map_err(|e| Error::Internal(format!("build task panicked: {e}")))??;
        let prepared = Prepared::write(&opts.state_dir, opts.controller_manager_qps)?;
        let watchdog = spawn_watchdog(opts.supervision, &prepared.dir)?;
        let mut cp = ControlPlane {
            state_dir: prepared.dir.clone(),
            kubeconfig: prepared.kubeconfig.clone(),
            server: prepared.server.clone(),
            binaries,
            supervision: opts.supervision,
            pgid: watchdog
                .as_ref()
                .and_then(|(c, _)| i32::try_from(c.id()).ok()),
            procs: Mutex::new(Vec::new()),
            _watchdog: watchdog,
            real_node: None,
        };
        cp.start_etcd(&prepared).await?;
        say(&format!("testkit cluster: etcd ready ({:.1}s)", elapsed()));
        cp.start_apiserver(&prepared).await?;
        say(&format!(
            "testkit cluster: kube-apiserver ready on {} ({:.1}s)",
            cp.server,
            elapsed()
        ));
        cp.start_controllers(&prepared, opts.nodes).await?;
        let nodes = cp.settle(opts.nodes_yaml.as_deref()).await?;
        if opts.nodes == NodeSet::WithRealNode {
            cp.real_node = Some(
                RealNode::start(NodeOptions {
                    dir: node_dir(&opts.state_dir, opts.supervision),
                    kubeconfig: cp.kubeconfig.clone(),
                    supervision: opts.supervision,
                })
                .await?,
            );
        }
        say(&format!(
            "testkit cluster: ready with {nodes} nodes in {:.1}s (state dir {})",
            elapsed(),
            cp.state_dir.display()
        ));
        Ok(cp)
    }

    /// Step 1: etcd, until `/readyz` answers.
    async fn start_etcd(&self, prepared: &Prepared) -> Result<()> {
        self.spawn("etcd", prepared.etcd_args())?;
        let url = format!("http://127.0.0.1:{}", prepared.ports.etcd);
        self.wait_ready("etcd", || health_answers(&url, "/readyz"))
            .await
    }

    /// Step 2: kube-apiserver on etcd, until `/readyz` says ok.
    async fn start_apiserver(&self, prepared: &Prepared) -> Result<()> {
        self.spawn("kube-apiserver", prepared.apiserver_args())?;
        self.wait_apiserver().await
    }

    /// Step 3: kube-controller-manager, kube-scheduler and kwok; records the PIDs in the
    /// state file, then waits for the two health endpoints.
    async fn start_controllers(&self, prepared: &Prepared, nodes: NodeSet) -> Result<()> {
        self.spawn(
            "kube-controller-manager",
            prepared.controller_manager_args(),
        )?;
        self.spawn("kube-scheduler", prepared.scheduler_args())?;
        self.spawn("kwok", prepared.kwok_args(nodes))?;
        self.write_state()?;
        let kcm = format!("https://127.0.0.1:{}", prepared.ports.controller_manager);
        self.wait_ready("kube-controller-manager", || {
            health_answers(&kcm, "/healthz")
        })
        .await?;
        let scheduler = format!("https://127.0.0.1:{}", prepared.ports.scheduler);
        self.wait_ready("kube-scheduler", || health_answers(&scheduler, "/readyz"))
            .await
    }

    /// Step 4, semantic readiness: the CRDs are Established, every node kwok manages is
    /// Ready and the `default` service account exists. Returns the number of nodes.
    async fn settle(&self, nodes_yaml: Option<&str>) -> Result<usize> {
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        install_crds(&client).await?;
        let names = create_nodes(&client, nodes_yaml.unwrap_or(DEFAULT_NODES)).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        self.wait_ready("kwok", || all_nodes_ready(&nodes, &names))
            .await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
        self.wait_ready("kube-controller-manager", || async {
            sas.get_opt("default").await.ok().flatten().is_some()
        })
        .await?;
        Ok(names.len())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{name}.log"))
    }

    fn spawn_child(&self, name: &str, args: &[String]) -> Result<Child> {
        let log = self.log_path(name);
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err("cannot open the log", &log))?;
        let file2 = file
            .try_clone()
            .map_err(io_err("cannot open the log", &log))?;
        let binary = self.binaries.path(name);
        let mut cmd = Command::new(&binary);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(self.pgid.unwrap_or(0));
        cmd.spawn().map_err(|source| Error::Spawn {
            component: name.to_owned(),
            binary,
            source,
        })
    }

    fn spawn(&self, name: &str, args: Vec<String>) -> Result<()> {
        let child = self.spawn_child(name, &args)?;
        self.lock_procs().push(Proc {
            name: name.to_owned(),
            child,
            args,
        });
        Ok(())
    }

    fn lock_procs(&self) -> std::sync::MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> Result<()> {
        let procs = self.lock_procs();
        let state = StateFile {
            server: self.server.clone(),
            kubeconfig: self.kubeconfig.clone(),
            pids: procs
                .iter()
                .map(|p| (p.name.clone(), p.child.id()))
                .collect(),
            binaries: procs
                .iter()
                .map(|p| (p.name.clone(), self.binaries.path(&p.name)))
                .collect(),
        };
        drop(procs);
        let path = self.state_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| Error::Internal(format!("cannot serialise the state file: {e}")))?;
        fs::write(&path, text).map_err(io_err("cannot write", &path))
    }

    /// `Some(status)` if the named component has exited.
    fn exited(&self, name: &str) -> Option<String> {
        let mut procs = self.lock_procs();
        let p = procs.iter_mut().find(|p| p.name == name)?;
        match p.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot query its status: {e}")),
        }
    }

    async fn wait_ready<F, Fut>(&self, component: &str, mut probe: F) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exited(component) {
                return Err(Error::Exited {
                    component: component.to_owned(),
                    status,
                    log: self.log_path(component),
                    tail: log_tail(&self.log_path(component), 25),
                });
            }
            if probe().await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: component.to_owned(),
                    secs: READY_TIMEOUT.as_secs(),
                    log: self.log_path(component),
                    tail: log_tail(&self.log_path(component), 25),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_apiserver(&self) -> Result<()> {
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        self.wait_ready("kube-apiserver", || {
            let client = client.clone();
            async move { matches!(get_text(&client, "/readyz").await.as_deref(), Some("ok")) }
        })
        .await
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL after 5 s: its graceful shutdown takes ~10 s) and starts it again with
    /// the same flags, port and etcd; returns when `/readyz` is ok again.
    pub async fn restart_apiserver(&self) -> Result<()> {
        let (pid, args) = {
            let procs = self.lock_procs();
            let p = procs
                .iter()
                .find(|p| p.name == "kube-apiserver")
                .ok_or_else(|| Error::Internal("kube-apiserver was never started".into()))?;
            (p.child.id(), p.args.clone())
        };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.exited("kube-apiserver").is_some() {
                break;
            }
            if Instant::now() > deadline {
                let mut procs = self.lock_procs();
                if let Some(p) = procs.iter_mut().find(|p| p.name == "kube-apiserver") {
                    let _ = p.child.kill();
                    let _ = p.child.wait();
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let child = self.spawn_child("kube-apiserver", &args)?;
        {
            let mut procs = self.lock_procs();
            if let Some(p) = procs.iter_mut().find(|p| p.name == "kube-apiserver") {
                p.child = child;
            }
        }
        self.write_state()?;
        self.wait_apiserver().await
    }

    /// Kills etcd with SIGKILL (a crash: no flush, no goodbye to its clients) and waits
    /// until it is gone; kube-apiserver keeps running and fails its storage calls.
    pub async fn kill_etcd(&self) -> Result<()> {
        let mut procs = self.lock_procs();
        let p = procs
            .iter_mut()
            .find(|p| p.name == "etcd")
            .ok_or_else(|| Error::Internal("etcd was never started".into()))?;
        let _ = p.child.kill();
        p.child
            .wait()
            .map(drop)
            .map_err(|e| Error::Internal(format!("cannot wait for the killed etcd: {e}")))
    }

    /// Starts etcd again with the same flags, ports and data dir after
    /// [`ControlPlane::kill_etcd`]; returns once etcd and kube-apiserver are ready, with
    /// kwok restarted (it does not re-list pods after its watch broke).
    pub async fn restart_etcd(&self) -> Result<()> {
        let args = {
            let procs = self.lock_procs();
            let p = procs
                .iter()
                .find(|p| p.name == "etcd")
                .ok_or_else(|| Error::Internal("etcd was never started".into()))?;
            p.args.clone()
        };
        let url = args
            .iter()
            .find_map(|a| a.strip_prefix("--listen-client-urls="))
            .unwrap_or_default()
            .to_owned();
        let child = self.spawn_child("etcd", &args)?;
        if let Some(p) = self.lock_procs().iter_mut().find(|p| p.name == "etcd") {
            p.child = child;
        }
        self.write_state()?;
        self.wait_ready("etcd", || health_answers(&url, "/readyz"))
            .await?;
        self.wait_apiserver().await?;
        // kwok plays the kubelets, and does not list pods again after its watch broke: a
        // pod bound just before etcd died would stay Pending forever. A kubelet re-syncs;
        // restarting kwok does the same.
        self.respawn("kwok")
    }

    /// Kills a component (SIGKILL) and starts it again with the same flags.
    fn respawn(&self, name: &str) -> Result<()> {
        let args = {
            let mut procs = self.lock_procs();
            let p = procs
                .iter_mut()
                .find(|p| p.name == name)
                .ok_or_else(|| Error::Internal(format!("{name} was never started")))?;
            let _ = p.child.kill();
            let _ = p.child.wait();
            p.args.clone()
        };
        let child = self.spawn_child(name, &args)?;
        if let Some(p) = self.lock_procs().iter_mut().find(|p| p.name == name) {
            p.child = child;
        }
        self.write_state()
    }

    /// The real node, if started with [`NodeSet::WithRealNode`].
    pub fn real_node(&self) -> Option<&RealNode> {
        self.real_node.as_ref()
    }

    /// Whether this plane's processes die with the starting process.
    pub fn supervision(&self) -> Supervision {
        self.supervision
    }
}

/// Where the real node of a cluster lives: next to a detached cluster's state dir (so
/// `down` finds it), else a fresh directory on disk (not `/dev/shm`: containerd's
/// snapshots and the kubelet's volumes go there).
pub fn node_dir(state_dir: &Path, supervision: Supervision) -> PathBuf {
    match supervision {
        Supervision::Detached => state_dir
            .parent()
            .map_or_else(|| PathBuf::from("/var/tmp"), Path::to_owned)
            .join("rlaunch-node"),
        Supervision::DieWithParent => PathBuf::from("/var/tmp").join(format!(
            "rlaunch-node-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        )),
    }
}

/// A progress line on the real stderr (visible under libtest's output capture).
fn say(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

async fn all_nodes_ready(nodes: &Api<Node>, names: &[String]) -> bool {
    for name in names {
        match nodes.get(name).await {
            Ok(node) if is_node_ready(&node) => {}
            _ => return false,
        }
    }
    true
}

fn is_node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Applies the operators' CRDs ([`crate::crds`], server-side apply) and waits until each
/// is Established.
pub async fn install_crds(client: &kube::Client) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("rlaunch-testkit").force();
    let manifests = tokio::task::spawn_blocking(crate::crds::manifests)
        .await
        .map_err(|e| Error::Internal(format!("CRD task panicked: {e}")))??;
    for (name, yaml) in &manifests {
        let crd: CustomResourceDefinition =
            serde_yaml_ng::from_str(yaml).map_err(|source| Error::Yaml {
                what: format!("the CRD {name}"),
                source,
            })?;
        api.patch(name, &pp, &Patch::Apply(&crd))
            .await
            .map_err(|source| Error::Kube {
                step: format!("applying CRD {name}"),
                source,
            })?;
    }
    let deadline = Instant::now() + READY_TIMEOUT;
    for (name, _) in &manifests {
        loop {
            let crd = api.get(name).await.map_err(|source| Error::Kube {
                step: format!("reading CRD {name}"),
                source,
            })?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!("CRD {name} to become Established"),
                    secs: READY_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Creates the Nodes of a multi-document YAML (status included); existing ones are kept.
pub async fn create_nodes(client: &kube::Client, yaml: &str) -> Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut names = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value = serde_yaml_ng::Value::deserialize(doc).map_err(|source| Error::Yaml {
            what: "node list".into(),
            source,
        })?;
        if value.is_null() {
            continue;
        }
        let node: Node = serde_yaml_ng::from_value(value).map_err(|source| Error::Yaml {
            what: "node list".into(),
            source,
        })?;
        let name = node.metadata.name.clone().ok_or_else(|| {
            Error::Internal("a node in the node list has no metadata.name".into())
        })?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(source) => {
                return Err(Error::Kube {
                    step: format!("creating node {name}"),
                    source,
                });
            }
        }
        // The apiserver may drop status on create; make sure capacity is there for the scheduler.
        if let Some(status) = &node.status {
            let patch = serde_json::json!({ "status": {
                "capacity": status.capacity, "allocatable": status.allocatable } });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Kube {
                    step: format!("setting the status of node {name}"),
                    source,
                })?;
        }
        names.push(name);
    }
    Ok(names)
}

fn pid_alive_with(pid: u32, binary: &Path) -> bool {
    let Ok(exe) = fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A replaced binary shows as "<path> (deleted)".
    let exe = exe.to_string_lossy().replace(" (deleted)", "");
    Path::new(&exe) == binary
        || binary
            .file_name()
            .is_some_and(|n| Path::new(&exe).file_name() == Some(n))
}

/// Reads the state file of a (possibly running) cluster.
pub fn read_state(state_dir: &Path) -> Option<StateFile> {
    let text = fs::read_to_string(state_dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Components of the cluster in `state_dir` that are still running, as (name, pid).
pub fn running_components(state_dir: &Path) -> Vec<(String, u32)> {
    let Some(state) = read_state(state_dir) else {
        return Vec::new();
    };
    state
        .pids
        .iter()
        .filter(|(name, pid)| {
            state
                .binaries
                .get(*name)
                .is_some_and(|b| pid_alive_with(**pid, b))
        })
        .map(|(n, p)| (n.clone(), *p))
        .collect()
}

/// Stops the processes recorded in `state_dir` (SIGTERM, SIGKILL after 5 s) and removes
/// the directory. Only PIDs whose executable is the recorded binary are signalled.
pub fn down(state_dir: &Path) -> Result<Vec<(String, u32)>> {
    let running = running_components(state_dir);
    for (_, pid) in &running {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !running_components(state_dir).is_empty() {
        std::thread::sleep(Duration::from_millis(100));
    }
    for (_, pid) in running_components(state_dir) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    if state_dir.exists() {
        fs::remove_dir_all(state_dir).map_err(io_err("cannot remove the state dir", state_dir))?;
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_manager_rate_is_a_positive_number_or_an_error_naming_the_variable() {
        assert_eq!(parse_qps("20".as_ref()).ok(), Some(20));
        assert_eq!(parse_qps(" 150 ".as_ref()).ok(), Some(150));
        for bad in ["0", "-5", "fast", ""] {
            let message = parse_qps(bad.as_ref()).err().map(|e| e.to_string());
            assert!(
                message.as_deref().is_some_and(
                    |m| m.contains(CONTROLLER_MANAGER_QPS_ENV) && m.contains("e.g. 20")
                ),
                "{bad:?}: {message:?}"
            );
        }
    }

    #[test]
    fn bundled_assets_parse() {
        let mut stages = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(KWOK_STAGES) {
            let v = serde_yaml_ng::Value::deserialize(doc).expect("stage yaml");
            if !v.is_null() {
                assert_eq!(v["kind"].as_str(), Some("Stage"));
                stages += 1;
            }
        }
        assert!(stages >= 10, "{stages} stages");
        let mut gpu_nodes = 0;
        for doc in serde_yaml_ng::Deserializer::from_str(DEFAULT_NODES) {
            let v = serde_yaml_ng::Value::deserialize(doc).expect("node yaml");
            let node: Node = serde_yaml_ng::from_value(v).expect("node");
            let labels = node.metadata.labels.unwrap_or_default();
            assert_eq!(labels.get("type").map(String::as_str), Some("kwok"));
            if labels.contains_key("nvidia.com/gpu.product") {
                gpu_nodes += 1;
            }
        }
        assert_eq!(gpu_nodes, 4);
    }
}
