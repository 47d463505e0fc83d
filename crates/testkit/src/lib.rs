//! A real Kubernetes control plane for integration tests, built from source.
//!
//! `testkit` builds etcd (from the `etcd-bin-vendored` crate), kube-apiserver,
//! kube-controller-manager, kube-scheduler (`k8s.io/kubernetes`) and kwok (`sigs.k8s.io/kwok`)
//! once per pinned version (see [`versions`]) into `$HOME/.cache/rlaunch/cluster/`, starts
//! them on loopback ports and fills the cluster with fake nodes: 2×8 A100-80GB, 2×8
//! H100-80GB (tainted `nvidia.com/gpu=present:NoSchedule`) and 2 CPU nodes. kwok drives
//! the pods the real scheduler binds to them through the phases a test asks for with pod
//! annotations (the contract is in [`annotations`]). The CRDs of Volcano Job, Kubeflow
//! PyTorchJob and JobSet are installed and Established.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rlaunch_testkit::Error> {
//! let cluster = rlaunch_testkit::cluster().await?;        // started once per test binary
//! let ns = cluster.namespace("runner").await?;     // unique, labelled namespace
//! let client = cluster.client().await?;            // a fresh kube::Client per test
//! # let _ = client;
//! ns.cleanup().await;
//! # Ok(()) }
//! ```
//!
//! - If `KUBECONFIG` is set, [`cluster()`] attaches to that cluster instead of starting
//!   one (e.g. the one `cargo xtask cluster up` started). Tests that restart or stop
//!   components call [`private_cluster()`], which always starts the process's own.
//! - Otherwise the first call builds the binaries if the cache is cold (measured 5 min on 2
//!   cores with empty Go caches; progress on stderr even under libtest's capture) and starts
//!   a private cluster in a temp dir under `/dev/shm` on free loopback ports (about 3 s).
//!   Its processes live in the process group of a small watchdog that kills them and
//!   removes the temp dir as soon as the test binary exits, however it exits.
//! - Failures to build or start are errors that name the step and show the last log
//!   lines; tests should propagate them (`?`) and fail, never skip.
//!
//! - [`real_node_cluster()`] adds a real node ([`node`]: kubelet + containerd + runc) for
//!   tests that need real containers; it needs root and `cargo xtask setup`, and starts in
//!   about 2 s more on a warm cache (cold: the kubelet build, 16 s once the control plane's
//!   GOCACHE is warm).
//!
//! - [`operator_cluster()`] adds the operators' real controllers ([`operators`]: the JobSet
//!   controller, the Kubeflow training-operator, Kueue's controller manager), each built
//!   from its Go module once and started beside this process's own cluster on the first
//!   call that names it; their webhooks are served on loopback with the cluster's PKI.
//!   Volcano's controllers are not served by the module proxy: Volcano tests write its
//!   status themselves, on the real schema.
//!
//! The same machinery backs `cargo xtask cluster build|up|down|status` (a long-lived
//! cluster in `$HOME/.cache/rlaunch/run/cluster`; `up` prints `export KUBECONFIG=…`).
//!
//! Cache layout (keep `$HOME/.cache/rlaunch` between CI runs): `cluster/<versions::cache_key()>/`
//! holds `bin/` and `stamp.json` (~340 MB); `go/` holds GOPATH/GOMODCACHE (~860 MB) and
//! GOCACHE (~3.3 GB), only needed to rebuild. The Go lock files of the build are
//! `assets/go/{k8s,kwok}/go.{mod,sum}`.
//!
//! Pod annotations understood by kwok (see [`annotations`] for all details):
//!
//! | annotation | meaning |
//! | --- | --- |
//! | `kwok.rlaunch.dev/outcome` | `succeed` (default for Job pods), `fail`, `oom`, `image-pull-backoff`, `err-image-pull`, `crash-loop`, `preempted`, `evicted`, `run-forever` (default for `restartPolicy: Always`) |
//! | `kwok.rlaunch.dev/run-seconds` | seconds before the outcome (default 1) |
//! | `kwok.rlaunch.dev/exit-code` | exit code for `fail` (default 1) |
//! | `kwok.rlaunch.dev/restart-count` | restart count for `crash-loop` (default 5) |
//! | `kwok.rlaunch.dev/message` | message on the failure |

#![allow(clippy::missing_errors_doc)]

pub mod annotations;
pub mod binaries;
pub mod control_plane;
pub mod crds;
pub mod node;
pub mod operators;
mod pki;
pub mod reference;
pub mod servers;
mod support;
pub mod versions;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use tokio::sync::OnceCell;

use control_plane::{ControlPlane, NodeSet, StartOptions, Supervision};

/// Label put on every namespace made by [`TestCluster::namespace`].
pub const NAMESPACE_LABEL: &str = "testkit.rlaunch.dev/namespace";

/// Everything that can go wrong while building, starting or using a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable Go toolchain.
    #[error(
        "cannot build the test control plane: no usable Go toolchain ({detail}); install Go >= 1.26 on PATH, or set KUBECONFIG to an existing cluster"
    )]
    GoMissing {
        /// What was found.
        detail: String,
    },
    /// A `go build` step failed.
    #[error("{what} failed after {secs}s; full log in {log}; last lines:\n{tail}")]
    BuildFailed {
        /// The step.
        what: String,
        /// Seconds spent.
        secs: u64,
        /// Build log.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// A built binary does not report the pinned version.
    #[error(
        "{binary} does not report {expected:?} (got {actual:?}); delete the cache dir and rebuild"
    )]
    VersionMismatch {
        /// The binary.
        binary: PathBuf,
        /// Expected text.
        expected: String,
        /// What it printed.
        actual: String,
    },
    /// A testkit environment variable holds a value it cannot use.
    #[error("{variable}={value:?} is not usable: {fix}")]
    BadEnv {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What to set instead.
        fix: &'static str,
    },
    /// File-system trouble.
    #[error("{what}: {path}")]
    Io {
        /// What was attempted.
        what: String,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate the {what} for the test cluster: {detail}")]
    Pki {
        /// Which item.
        what: &'static str,
        /// rcgen's message.
        detail: String,
    },
    /// A component could not be spawned.
    #[error("cannot start {component} from {binary}; rebuild with `cargo xtask cluster build`")]
    Spawn {
        /// Component name.
        component: String,
        /// Binary path.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A component exited while we waited for it.
    #[error("{component} exited during startup ({status}); last lines of {log}:\n{tail}")]
    Exited {
        /// Component name.
        component: String,
        /// Exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// A component did not become ready in time.
    #[error("{component} did not become ready within {secs}s; last lines of {log}:\n{tail}")]
    NotReady {
        /// Component name.
        component: String,
        /// The deadline.
        secs: u64,
        /// Its log file.
        log: PathBuf,
        /// Last lines of the log.
        tail: String,
    },
    /// The machine lacks something the real node needs.
    #[error("the real test node cannot start: {problem}; {fix}")]
    NodeHost {
        /// What is missing or wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// Waiting for a cluster object timed out.
    #[error("timed out after {secs}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        secs: u64,
    },
    /// The kubeconfig could not be used.
    #[error(
        "cannot use kubeconfig {path}; check the file (or unset KUBECONFIG to let testkit start a cluster)"
    )]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// An API call failed.
    #[error("kubernetes API call failed while {step}")]
    Kube {
        /// The step.
        step: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// Bundled or user YAML did not parse.
    #[error("invalid YAML in {what}")]
    Yaml {
        /// Which document.
        what: String,
        /// The cause.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// An operation that needs a cluster started by this process.
    #[error("{0}")]
    Unsupported(String),
    /// An earlier attempt in this process failed; the message is that failure.
    #[error("the test cluster failed to start earlier in this process: {0}")]
    StartFailed(String),
    /// W&B's reference agent could not be installed ([`reference::ensure_installed`]).
    #[error(
        "cannot install W&B's reference agent while {step}: {detail}\n(it is installed once from PyPI into ~/.cache/rlaunch/reference-venv; keep that directory cached)"
    )]
    ReferenceInstall {
        /// The step that failed.
        step: String,
        /// What it printed.
        detail: String,
    },
    /// A bug in testkit.
    #[error("internal testkit error: {0}")]
    Internal(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A cluster the tests of this process share.
#[derive(Debug)]
pub struct TestCluster {
    kubeconfig: PathBuf,
    plane: Option<ControlPlane>,
}

/// The cluster `KUBECONFIG` names, when it is set.
static ATTACHED: OnceCell<std::result::Result<TestCluster, String>> = OnceCell::const_new();
/// The cluster this process started (at most one per process).
static STARTED: OnceCell<std::result::Result<TestCluster, String>> = OnceCell::const_new();
/// The cluster with a real node this process started (at most one per process).
static STARTED_REAL: OnceCell<std::result::Result<TestCluster, String>> = OnceCell::const_new();
/// The cluster `KUBECONFIG` names, checked to have a real node.
static ATTACHED_REAL: OnceCell<std::result::Result<TestCluster, String>> = OnceCell::const_new();

/// The cluster of this test process: attached via `KUBECONFIG` if set, otherwise started
/// (and built if needed) on first use and torn down when the process exits.
pub async fn cluster() -> Result<&'static TestCluster> {
    match kubeconfig_from_env() {
        Some(kubeconfig) => shared(&ATTACHED, TestCluster::attach(&kubeconfig)).await,
        None => private_cluster().await,
    }
}

/// A cluster this process starts itself, even when `KUBECONFIG` is set: for tests that
/// restart or stop components, which must never disturb a cluster other tests share.
/// Without `KUBECONFIG` it is the same cluster [`cluster()`] returns.
pub async fn private_cluster() -> Result<&'static TestCluster> {
    shared(&STARTED, start(NodeSet::Kwok)).await
}

/// A cluster with a real node ([`node`]) beside the kwok nodes: the one `KUBECONFIG`
/// names if set (it must have been started with `cargo xtask cluster up --real-node`),
/// otherwise one this process starts (needs root and `cargo xtask setup`; about 10 s on a
/// warm cache). Use it only in tests that need real containers: its pods must tolerate
/// the node's taint ([`node::toleration`], [`node::node_selector`]).
pub async fn real_node_cluster() -> Result<&'static TestCluster> {
    match kubeconfig_from_env() {
        Some(kubeconfig) => shared(&ATTACHED_REAL, attach_real(kubeconfig)).await,
        None => shared(&STARTED_REAL, start(NodeSet::WithRealNode)).await,
    }
}

/// This process's own cluster ([`private_cluster()`], even when `KUBECONFIG` is set) with
/// the real controllers of `operators` running beside it ([`operators`]), each started on
/// the first call that names it (built first on a cold cache). A controller that cannot
/// start is an error with its log's last lines.
pub async fn operator_cluster(operators: &[operators::Operator]) -> Result<&'static TestCluster> {
    let cluster = private_cluster().await?;
    for operator in operators {
        operators::ensure_running(*operator, cluster).await?;
    }
    Ok(cluster)
}

async fn attach_real(kubeconfig: PathBuf) -> Result<TestCluster> {
    let cluster = TestCluster::attach(&kubeconfig).await?;
    cluster.real_node().await?;
    Ok(cluster)
}

async fn shared(
    cell: &'static OnceCell<std::result::Result<TestCluster, String>>,
    init: impl std::future::Future<Output = Result<TestCluster>>,
) -> Result<&'static TestCluster> {
    let cell = cell
        .get_or_init(|| async { init.await.map_err(|e| error_chain(&e)) })
        .await;
    cell.as_ref().map_err(|msg| Error::StartFailed(msg.clone()))
}

fn kubeconfig_from_env() -> Option<PathBuf> {
    std::env::var_os("KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(&format!("\ncaused by: {s}"));
        src = s.source();
    }
    out
}

/// Starts a private cluster in a temp dir (under `/dev/shm` when it exists).
async fn start(nodes: NodeSet) -> Result<TestCluster> {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let state_dir = base.join(format!(
        "rlaunch-testkit-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    let plane = ControlPlane::start(StartOptions {
        state_dir,
        supervision: Supervision::DieWithParent,
        nodes_yaml: None,
        nodes,
        controller_manager_qps: control_plane::controller_manager_qps()?,
    })
    .await?;
    Ok(TestCluster {
        kubeconfig: plane.kubeconfig.clone(),
        plane: Some(plane),
    })
}

pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{n:x}", nanos & 0xfffff)
}

impl TestCluster {
    /// A running cluster this process did not start, reached through `kubeconfig`; fails
    /// early, naming the file, if it cannot be reached.
    pub async fn attach(kubeconfig: &Path) -> Result<TestCluster> {
        let client = control_plane::client_from_kubeconfig(kubeconfig).await?;
        client
            .apiserver_version()
            .await
            .map_err(|source| Error::Kube {
                step: format!(
                    "reaching the cluster of the kubeconfig {}",
                    kubeconfig.display()
                ),
                source,
            })?;
        Ok(TestCluster {
            kubeconfig: kubeconfig.to_owned(),
            plane: None,
        })
    }

    /// A new client for this cluster. Make one per test: a client is bound to the tokio
    /// runtime it was made on, and each `#[tokio::test]` has its own.
    pub async fn client(&self) -> Result<kube::Client> {
        control_plane::client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The admin kubeconfig of this cluster.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The control plane, if this process started it (not when attached via `KUBECONFIG`).
    pub fn control_plane(&self) -> Option<&ControlPlane> {
        self.plane.as_ref()
    }

    /// Creates a unique namespace `<prefix>-<suffix>` labelled [`NAMESPACE_LABEL`] and
    /// waits until its `default` service account exists (Jobs cannot create pods before).
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let client = self.client().await?;
        let mut clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        clean = clean.trim_matches('-').to_owned();
        if clean.is_empty() {
            clean = "test".to_owned();
        }
        let name = format!("{clean}-{:x}-{}", std::process::id(), unique_suffix());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [
                        (NAMESPACE_LABEL.to_owned(), "true".to_owned()),
                        (
                            "testkit.rlaunch.dev/pid".to_owned(),
                            std::process::id().to_string(),
                        ),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| Error::Kube {
                step: format!("creating namespace {name}"),
                source,
            })?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(_)) = sas.get_opt("default").await {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: format!(
                        "service account default in namespace {name} (is kube-controller-manager running?)"
                    ),
                    secs: 60,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(TestNamespace { name, client })
    }

    /// How tests reach the cluster's real node (from the ConfigMap
    /// `kube-system/rlaunch-testkit-real-node` it publishes); an error saying how to start
    /// one if the cluster has none.
    pub async fn real_node(&self) -> Result<RealNodeInfo> {
        let client = self.client().await?;
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client, "kube-system");
        let cm = api
            .get_opt(node::INFO_CONFIG_MAP)
            .await
            .map_err(|source| Error::Kube {
                step: format!("reading kube-system/{}", node::INFO_CONFIG_MAP),
                source,
            })?;
        let data = cm.and_then(|cm| cm.data).ok_or_else(|| {
            Error::Unsupported(format!(
                "the cluster of {} has no real node; start one with `cargo xtask cluster up --real-node` or unset KUBECONFIG",
                self.kubeconfig.display()
            ))
        })?;
        let get = |key: &str| data.get(key).cloned().unwrap_or_default();
        Ok(RealNodeInfo {
            node: get("node"),
            registry_url: get("registry"),
            host_ip: get("hostIP"),
            dir: PathBuf::from(get("dir")),
        })
    }

    /// Stops kube-apiserver and starts it again on the same port and etcd; returns once it
    /// is ready. Only for clusters this process started ([`private_cluster()`]); an
    /// attached cluster refuses with [`Error::Unsupported`].
    pub async fn restart_apiserver(&self) -> Result<()> {
        match &self.plane {
            Some(p) => p.restart_apiserver().await,
            None => Err(Error::Unsupported(
                "restart_apiserver needs a cluster started by this process: use rlaunch_testkit::private_cluster(), which starts one even when KUBECONFIG is set"
                    .into(),
            )),
        }
    }

    /// Kills etcd (SIGKILL) and waits until it is gone: the API server stays up and
    /// fails every storage call until [`TestCluster::start_etcd`]. Only for clusters
    /// this process started ([`private_cluster()`]), never the shared one.
    pub async fn stop_etcd(&self) -> Result<()> {
        self.own_plane("stop_etcd")?.kill_etcd().await
    }

    /// Starts etcd again on the same ports and data dir; returns once etcd and the API
    /// server are ready, with kwok restarted (kwok, unlike a kubelet, does not list pods
    /// again after its watch broke). Only for [`private_cluster()`].
    pub async fn start_etcd(&self) -> Result<()> {
        self.own_plane("start_etcd")?.restart_etcd().await
    }

    fn own_plane(&self, what: &str) -> Result<&ControlPlane> {
        self.plane.as_ref().ok_or_else(|| {
            Error::Unsupported(format!(
                "{what} needs a cluster started by this process: use rlaunch_testkit::private_cluster()"
            ))
        })
    }
}

/// The real node of a cluster, as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealNodeInfo {
    /// The node's name ([`node::NODE_NAME`]).
    pub node: String,
    /// `http://127.0.0.1:<port>`: the registry behind `rlaunch.test/…` image names.
    pub registry_url: String,
    /// The node's IP, which its pods reach (servers for pods bind here or on `0.0.0.0`).
    pub host_ip: String,
    /// The node's directory: `logs/{kubelet,containerd}.log`, container logs in `pod-logs/`.
    pub dir: PathBuf,
}

impl RealNodeInfo {
    /// The last `lines` lines of the kubelet's and containerd's logs, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        ["kubelet", "containerd"]
            .iter()
            .map(|name| {
                let path = self.dir.join("logs").join(format!("{name}.log"));
                format!(
                    "--- {} ---\n{}",
                    path.display(),
                    support::log_tail(&path, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A namespace for one test; delete it with [`TestNamespace::cleanup`].
#[derive(Clone)]
pub struct TestNamespace {
    /// The namespace name.
    pub name: String,
    client: kube::Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (in the background; the namespace controller and kwok remove
    /// its contents). Errors are ignored: a private cluster is discarded anyway.
    pub async fn cleanup(self) {
        let _ = Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::background())
            .await;
    }
}

/// Maps an IO error on `path` to [`Error::Io`] naming what was attempted.
pub(crate) fn io_err(
    what: impl Into<String>,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let what = what.into();
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}
