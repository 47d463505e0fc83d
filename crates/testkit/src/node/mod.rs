//! A real node beside the kwok nodes: the kubelet (built from the same `k8s.io/kubernetes`
//! module as the control plane) on containerd and runc (Debian packages), with a CNI
//! bridge, running real containers from images of a local OCI registry.
//!
//! Start it with the cluster option [`crate::control_plane::NodeSet::WithRealNode`] (tests:
//! [`crate::real_node_cluster()`]; by hand: `cargo xtask cluster up --real-node`). What it
//! needs from the machine is in [`host`]: root, cgroup v1 (the kubelet runs with
//! `failCgroupV1: false`) and the packages `cargo xtask setup` installs.
//!
//! - The node is named [`NODE_NAME`], labelled and tainted `rlaunch.dev/real-node=true`
//!   (`NoSchedule`): pods reach it with [`toleration`] and [`node_selector`]; everything
//!   else keeps landing on the kwok nodes and stays scripted by kwok's Stages.
//! - Images are pulled as `rlaunch.test/<name>:<tag>` ([`images::reference`]); containerd
//!   maps that host to the node's registry (a `hosts.toml`). The node pushes a pause image
//!   and `busybox:1` (`/bin/sh`, every busybox applet) at start.
//! - Its InternalIP is the bridge's gateway `10.88.<n>.1`, which pods also reach: a server
//!   for pods listens there or on `0.0.0.0` ([`RealNode::host_ip`]).
//! - Teardown (`assets/node/teardown.sh`, run by a watchdog when the test process exits,
//!   or by [`down`]) kills the containers, the shims, unmounts, removes the cgroups, the
//!   bridge and the directory.

mod build;
mod config;
pub mod host;
pub mod images;
pub mod kaniko;
mod resources;

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use serde::{Deserialize, Serialize};

pub use build::ensure_kubelet;
pub use config::{MIRROR_HOST, NODE_LABEL, NODE_TAINT};

use crate::servers::Registry;
use crate::support::{Supervision, client_from_kubeconfig, free_ports, log_tail};
use crate::{Error, Result, io_err};
use config::{KubeletPorts, Layout, Net};

/// The real node's name.
pub const NODE_NAME: &str = "real-node-0";
/// The ConfigMap (in `kube-system`) that tells tests attaching through `KUBECONFIG` about
/// the node: `node`, `registry` (the URL images are pushed to), `mirror`, `hostIP`, `dir`.
pub const INFO_CONFIG_MAP: &str = "rlaunch-testkit-real-node";
const TEARDOWN: &str = include_str!("../../assets/node/teardown.sh");
const STATE_FILE: &str = "node.json";
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The toleration of the real node's taint, for pod specs.
pub fn toleration() -> serde_json::Value {
    serde_json::json!({ "key": NODE_TAINT, "operator": "Equal", "value": "true", "effect": "NoSchedule" })
}

/// The node selector that picks the real node, for pod specs.
pub fn node_selector() -> serde_json::Value {
    serde_json::json!({ NODE_LABEL: "true" })
}

/// What a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The node's directory; its name must start with `rlaunch-node` (the teardown refuses
    /// any other). Created; removed at teardown.
    pub dir: PathBuf,
    /// The admin kubeconfig of the control plane the kubelet registers with.
    pub kubeconfig: PathBuf,
    /// Whether the node dies with the starting process.
    pub supervision: Supervision,
}

/// Written to `<dir>/node.json`: what [`down`] needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct NodeState {
    cgroup_root: String,
    bridge: String,
    pids: Vec<u32>,
}

/// A running real node.
pub struct RealNode {
    layout: Layout,
    net: Net,
    registry: Registry,
    procs: Mutex<Vec<(String, Child)>>,
    _watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for RealNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealNode")
            .field("dir", &self.layout.dir)
            .field("net", &self.net)
            .finish_non_exhaustive()
    }
}

fn say(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "testkit real node: {msg}");
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(io_err("cannot write", path))
}

/// The watchdog of [`Supervision::DieWithParent`]: on EOF it signals its process group
/// (containerd, kubelet), then runs the teardown.
fn spawn_watchdog(dir: &Path, cgroup_root: &str, bridge: &str) -> Result<(Child, ChildStdin)> {
    let script = format!(
        "trap '' INT TERM HUP\nread -r _ignored\nkill -s TERM 0 2>/dev/null\nsleep 1\n{TEARDOWN}\nkill -s KILL 0 2>/dev/null\n"
    );
    crate::support::spawn_watchdog(
        &script,
        "rlaunch-testkit-node-watchdog",
        &[dir.as_os_str(), cgroup_root.as_ref(), bridge.as_ref()],
    )
}

impl RealNode {
    /// Checks the host, builds the kubelet if the cache is cold, starts the registry (with
    /// the base images), containerd and the kubelet, and waits until the node is Ready.
    pub async fn start(opts: NodeOptions) -> Result<RealNode> {
        let started = Instant::now();
        let tools = host::check()?;
        let kubelet = tokio::task::spawn_blocking(build::ensure_kubelet)
            .await
            .map_err(|e| Error::Internal(format!("kubelet build task: {e}")))??;
        let registry = match opts.supervision {
            Supervision::DieWithParent => Registry::start().await?,
            Supervision::Detached => Registry::start_detached(&opts.dir.join("registry")).await?,
        };
        images::push_base_images(&registry, &tools.busybox).await?;
        say(&format!(
            "registry with base images at {} ({:.1}s)",
            registry.url(),
            started.elapsed().as_secs_f32()
        ));
        let layout = Layout {
            dir: opts.dir.clone(),
        };
        for dir in layout.dirs() {
            fs::create_dir_all(&dir).map_err(io_err("cannot create the node directory", &dir))?;
        }
        let cgroup_root = format!(
            "rlaunch-node-{}-{}",
            std::process::id(),
            crate::unique_suffix()
        );
        let net = resources::create_bridge(&tools.ip)?;
        // From here on the teardown owns the bridge and the cgroups.
        let watchdog = match opts.supervision {
            Supervision::DieWithParent => {
                Some(spawn_watchdog(&layout.dir, &cgroup_root, &net.bridge())?)
            }
            Supervision::Detached => None,
        };
        let node = RealNode {
            layout,
            net,
            registry,
            procs: Mutex::new(Vec::new()),
            _watchdog: watchdog,
        };
        node.write_state(&cgroup_root)?;
        resources::create_cgroup_root(&cgroup_root)?;
        node.write_configs(&tools, &cgroup_root)?;
        node.start_containerd(&tools.containerd).await?;
        say(&format!(
            "containerd ready ({:.1}s)",
            started.elapsed().as_secs_f32()
        ));
        let args = config::kubelet_args(&node.layout, &node.net, NODE_NAME, &opts.kubeconfig);
        node.spawn("kubelet", &kubelet, &args, opts.supervision)?;
        node.write_state(&cgroup_root)?;
        node.wait_node_ready(&opts.kubeconfig).await?;
        node.publish_info(&opts.kubeconfig).await?;
        say(&format!(
            "{NODE_NAME} Ready at {} in {:.1}s (dir {})",
            node.net.gateway(),
            started.elapsed().as_secs_f32(),
            node.layout.dir.display()
        ));
        Ok(node)
    }

    fn write_configs(&self, tools: &host::HostTools, cgroup_root: &str) -> Result<()> {
        let layout = &self.layout;
        let sandbox = images::reference(images::PAUSE);
        write(
            &layout.dir.join("containerd.toml"),
            &config::containerd_toml(layout, &tools.cni_bin_dir, &sandbox),
        )?;
        write(
            &layout.certs_d().join(MIRROR_HOST).join("hosts.toml"),
            &config::hosts_toml(&self.registry.url()),
        )?;
        write(
            &layout.cni_conf_dir().join("10-rlaunch.conflist"),
            &config::cni_conflist(&self.net, layout),
        )?;
        let ports = free_ports(2)?;
        let ports = KubeletPorts {
            api: ports[0],
            healthz: ports[1],
        };
        write(
            &layout.dir.join("kubelet.json"),
            &config::kubelet_config(layout, &self.net, ports, &format!("/{cgroup_root}")),
        )
    }

    fn write_state(&self, cgroup_root: &str) -> Result<()> {
        let state = NodeState {
            cgroup_root: cgroup_root.to_owned(),
            bridge: self.net.bridge(),
            pids: self
                .lock_procs()
                .iter()
                .map(|(_, c)| c.id())
                .chain([self.registry.process().pid()])
                .collect(),
        };
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| Error::Internal(format!("cannot serialise the node state: {e}")))?;
        write(&self.layout.dir.join(STATE_FILE), &text)
    }

    fn lock_procs(&self) -> std::sync::MutexGuard<'_, Vec<(String, Child)>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.layout.logs().join(format!("{name}.log"))
    }

    fn spawn(
        &self,
        name: &str,
        binary: &Path,
        args: &[String],
        supervision: Supervision,
    ) -> Result<()> {
        let log = self.log_path(name);
        let file = fs::File::create(&log).map_err(io_err("cannot create the log", &log))?;
        let file2 = file
            .try_clone()
            .map_err(io_err("cannot open the log", &log))?;
        let pgid = match (supervision, &self._watchdog) {
            (Supervision::DieWithParent, Some((w, _))) => i32::try_from(w.id()).unwrap_or(0),
            _ => 0,
        };
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(pgid)
            .spawn()
            .map_err(|source| Error::Spawn {
                component: name.to_owned(),
                binary: binary.to_owned(),
                source,
            })?;
        self.lock_procs().push((name.to_owned(), child));
        Ok(())
    }

    /// The error for a component that exited or did not get ready, with its log's tail.
    fn failure(&self, name: &str, secs: u64) -> Option<Error> {
        let mut procs = self.lock_procs();
        let (_, child) = procs.iter_mut().find(|(n, _)| n == name)?;
        let log = self.log_path(name);
        let tail = log_tail(&log, 30);
        Some(match child.try_wait() {
            Ok(Some(status)) => Error::Exited {
                component: name.to_owned(),
                status: status.to_string(),
                log,
                tail,
            },
            _ => Error::NotReady {
                component: name.to_owned(),
                secs,
                log,
                tail,
            },
        })
    }

    /// The error for a component that has exited, if it has.
    fn exited(&self, name: &str) -> Option<Error> {
        let has_exited = {
            let mut procs = self.lock_procs();
            let (_, child) = procs.iter_mut().find(|(n, _)| n == name)?;
            matches!(child.try_wait(), Ok(Some(_)))
        };
        if has_exited {
            self.failure(name, 0)
        } else {
            None
        }
    }

    async fn start_containerd(&self, containerd: &Path) -> Result<()> {
        let config = self.layout.dir.join("containerd.toml");
        let args = vec![format!("--config={}", config.display())];
        self.spawn("containerd", containerd, &args, Supervision::DieWithParent)?;
        let socket = self.layout.socket();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.exited("containerd") {
                return Err(e);
            }
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self
                    .failure("containerd", 30)
                    .unwrap_or_else(|| Error::Internal("containerd vanished".into())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_node_ready(&self, kubeconfig: &Path) -> Result<()> {
        let client = client_from_kubeconfig(kubeconfig).await?;
        let nodes: Api<Node> = Api::all(client);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for name in ["containerd", "kubelet"] {
                if let Some(e) = self.exited(name) {
                    return Err(e);
                }
            }
            if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await
                && node_is_ready(&node)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self
                    .failure("kubelet", READY_TIMEOUT.as_secs())
                    .unwrap_or_else(|| Error::Internal("kubelet vanished".into())));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn publish_info(&self, kubeconfig: &Path) -> Result<()> {
        let client = client_from_kubeconfig(kubeconfig).await?;
        let api: Api<ConfigMap> = Api::namespaced(client, "kube-system");
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(INFO_CONFIG_MAP.into()),
                ..ObjectMeta::default()
            },
            data: Some(
                [
                    ("node".to_owned(), NODE_NAME.to_owned()),
                    ("registry".to_owned(), self.registry.url()),
                    ("mirror".to_owned(), MIRROR_HOST.to_owned()),
                    ("hostIP".to_owned(), self.net.gateway()),
                    ("dir".to_owned(), self.layout.dir.display().to_string()),
                ]
                .into(),
            ),
            ..ConfigMap::default()
        };
        api.patch(
            INFO_CONFIG_MAP,
            &PatchParams::apply("rlaunch-testkit").force(),
            &Patch::Apply(&cm),
        )
        .await
        .map_err(|source| Error::Kube {
            step: format!("publishing kube-system/{INFO_CONFIG_MAP}"),
            source,
        })?;
        Ok(())
    }

    /// The node's registry: push images with [`Registry::push_image`] and name them in pods
    /// as [`images::reference`]`("<repository>:<tag>")`.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The node's IP on its bridge, which pods reach (bind servers for pods here or on
    /// `0.0.0.0`).
    pub fn host_ip(&self) -> String {
        self.net.gateway()
    }

    /// The node's directory (logs in `logs/`, container logs in `pod-logs/`).
    pub fn dir(&self) -> &Path {
        &self.layout.dir
    }
}

/// Lets the node in `node_dir` pull from `host` (`<ip>:<port>`, e.g. a registry a test
/// exposes on [`RealNode::host_ip`] through [`crate::servers::TcpForward`]) over plain
/// HTTP: a containerd `hosts.toml` for that host, read at the next pull.
pub fn trust_plain_http_registry(node_dir: &Path, host: &str) -> Result<()> {
    let layout = Layout {
        dir: node_dir.to_owned(),
    };
    let dir = layout.certs_d().join(host);
    fs::create_dir_all(&dir).map_err(io_err("cannot create the registry's hosts dir", &dir))?;
    write(
        &dir.join("hosts.toml"),
        &config::hosts_toml(&format!("http://{host}")),
    )
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Stops a node started [`Supervision::Detached`] in `dir`: its processes, containers,
/// mounts, cgroups, bridge and the directory. Returns whether there was one.
pub fn down(dir: &Path) -> Result<bool> {
    let Ok(text) = fs::read_to_string(dir.join(STATE_FILE)) else {
        return Ok(false);
    };
    let state: NodeState = serde_json::from_str(&text).map_err(|e| {
        Error::Internal(format!(
            "unreadable {}: {e}",
            dir.join(STATE_FILE).display()
        ))
    })?;
    for pid in &state.pids {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = Command::new("sh")
        .arg("-c")
        .arg(TEARDOWN)
        .arg("rlaunch-testkit-node-teardown")
        .arg(dir)
        .arg(&state.cgroup_root)
        .arg(&state.bridge)
        .status()
        .map_err(|source| Error::Spawn {
            component: "node teardown (sh)".into(),
            binary: PathBuf::from("sh"),
            source,
        })?;
    if status.success() && !dir.exists() {
        Ok(true)
    } else {
        Err(Error::Internal(format!(
            "the node teardown of {} did not finish ({status})",
            dir.display()
        )))
    }
}
