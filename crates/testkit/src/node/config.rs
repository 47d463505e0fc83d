//! The configuration files of the real node, rendered from its layout (pure).

use std::path::{Path, PathBuf};

/// Host name under which the test images are pulled (`rlaunch.test/busybox:1`);
/// containerd maps it to the node's registry with a `hosts.toml`.
pub const MIRROR_HOST: &str = "rlaunch.test";
/// Label on the real node (value `true`).
pub const NODE_LABEL: &str = "rlaunch.dev/real-node";
/// The real node's taint key (`rlaunch.dev/real-node=true:NoSchedule`): only pods that
/// tolerate it run real containers, so kwok-scripted pods never land there.
pub const NODE_TAINT: &str = "rlaunch.dev/real-node";

/// Where everything of one node lives.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The node's directory (removed at teardown).
    pub dir: PathBuf,
}

impl Layout {
    fn at(&self, sub: &str) -> PathBuf {
        self.dir.join(sub)
    }
    /// containerd's persistent root (images, snapshots).
    pub fn containerd_root(&self) -> PathBuf {
        self.at("containerd/root")
    }
    /// containerd's state dir (sockets of shims, netns mounts).
    pub fn containerd_state(&self) -> PathBuf {
        self.at("containerd/state")
    }
    /// containerd's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.at("containerd/containerd.sock")
    }
    /// The `hosts.toml` tree (`certs.d/<host>/hosts.toml`).
    pub fn certs_d(&self) -> PathBuf {
        self.at("containerd/certs.d")
    }
    /// CNI network configuration.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.at("cni/net.d")
    }
    /// host-local IPAM leases.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.at("cni/ipam")
    }
    /// The kubelet's `--root-dir`.
    pub fn kubelet_root(&self) -> PathBuf {
        self.at("kubelet")
    }
    /// Container logs (`podLogsDir`).
    pub fn pod_logs(&self) -> PathBuf {
        self.at("pod-logs")
    }
    /// Process logs.
    pub fn logs(&self) -> PathBuf {
        self.at("logs")
    }
    /// Every directory to create before starting.
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![
            self.containerd_root(),
            self.containerd_state(),
            self.certs_d().join(MIRROR_HOST),
            self.cni_conf_dir(),
            self.cni_ipam_dir(),
            self.kubelet_root(),
            self.pod_logs(),
            self.logs(),
        ]
    }
}

/// The node's bridge network: `10.88.<octet>.0/24`, the bridge holding `.1`, which is
/// also the node's InternalIP (the kubelet refuses loopback addresses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    /// Third octet of the subnet.
    pub octet: u8,
}

impl Net {
    /// The bridge's name (`rlt-<octet>`, at most 15 bytes).
    pub fn bridge(&self) -> String {
        format!("rlt-{}", self.octet)
    }
    /// `10.88.<octet>.1`: the bridge, the node IP and the pods' gateway.
    pub fn gateway(&self) -> String {
        format!("10.88.{}.1", self.octet)
    }
    /// `10.88.<octet>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.88.{}.0/24", self.octet)
    }
}

/// Ports the kubelet listens on (on the node IP).
#[derive(Clone, Copy, Debug)]
pub struct KubeletPorts {
    /// The kubelet API (logs, exec), reached by kube-apiserver.
    pub api: u16,
    /// `/healthz` on loopback.
    pub healthz: u16,
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// containerd 1.6's `config.toml` (version 2).
pub fn containerd_toml(layout: &Layout, cni_bin_dir: &Path, sandbox_image: &str) -> String {
    let sock = p(&layout.socket());
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  netns_mounts_under_state_dir = true
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which sandboxed machines (this one)
  # drop: runc would fail with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
        root = p(&layout.containerd_root()),
        state = p(&layout.containerd_state()),
        cni = p(cni_bin_dir),
        cni_conf = p(&layout.cni_conf_dir()),
        certs = p(&layout.certs_d()),
    )
}

/// `certs.d/rlaunch.test/hosts.toml`: pull `rlaunch.test/…` from the registry over
/// plain HTTP.
pub fn hosts_toml(registry_url: &str) -> String {
    format!(
        "server = \"{registry_url}\"\n\n[host.\"{registry_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    )
}

/// The CNI network: a bridge with host-local addresses, no masquerading.
pub fn cni_conflist(net: &Net, layout: &Layout) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": net.bridge(),
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge(),
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": p(&layout.cni_ipam_dir()),
                    "ranges": [[{ "subnet": net.subnet(), "gateway": net.gateway() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "loopback" }
        ]
    })
    .to_string()
}

/// The `KubeletConfiguration`: cgroup v1 allowed, cgroupfs driver, pods under
/// `cgroup_root`, anonymous access to the kubelet API (loopback-only test cluster).
pub fn kubelet_config(
    layout: &Layout,
    net: &Net,
    ports: KubeletPorts,
    cgroup_root: &str,
) -> String {
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": false,
        "failSwapOn": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "address": net.gateway(),
        "port": ports.api,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        "containerRuntimeEndpoint": format!("unix://{}", p(&layout.socket())),
        "podLogsDir": p(&layout.pod_logs()),
        "authentication": {
            "anonymous": { "enabled": true },
            "webhook": { "enabled": false }
        },
        "authorization": { "mode": "AlwaysAllow" },
        "registerNode": true,
        "registerWithTaints": [{ "key": NODE_TAINT, "value": "true", "effect": "NoSchedule" }],
        "nodeStatusUpdateFrequency": "2s",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "5s",
        "fileCheckFrequency": "5s",
        "serializeImagePulls": false,
        "maxPods": 30,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%"
        },
        "shutdownGracePeriod": "0s",
        "kubeAPIQPS": 50,
        "kubeAPIBurst": 100
    })
    .to_string()
}

/// The kubelet's flags.
pub fn kubelet_args(layout: &Layout, net: &Net, name: &str, kubeconfig: &Path) -> Vec<String> {
    vec![
        format!("--config={}", p(&layout.dir.join("kubelet.json"))),
        format!("--kubeconfig={}", p(kubeconfig)),
        format!("--root-dir={}", p(&layout.kubelet_root())),
        format!("--cert-dir={}", p(&layout.kubelet_root().join("pki"))),
        format!("--hostname-override={name}"),
        format!("--node-ip={}", net.gateway()),
        format!("--node-labels={NODE_LABEL}=true"),
        "--v=2".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_names_fit_the_kernel_limits() {
        let net = Net { octet: 254 };
        assert!(net.bridge().len() <= 15);
        assert_eq!(net.gateway(), "10.88.254.1");
        assert_eq!(net.subnet(), "10.88.254.0/24");
    }

    #[test]
    fn configs_name_the_layout() {
        let layout = Layout {
            dir: PathBuf::from("/n"),
        };
        let toml = containerd_toml(&layout, Path::new("/usr/lib/cni"), "rlaunch.test/pause:1");
        assert!(toml.contains("address = \"/n/containerd/containerd.sock\""));
        assert!(toml.contains("config_path = \"/n/containerd/certs.d\""));
        let kubelet: serde_json::Value = serde_json::from_str(&kubelet_config(
            &layout,
            &Net { octet: 7 },
            KubeletPorts { api: 1, healthz: 2 },
            "/rlaunch-x",
        ))
        .unwrap_or_default();
        assert_eq!(kubelet["failCgroupV1"], false);
        assert_eq!(kubelet["address"], "10.88.7.1");
        assert_eq!(
            kubelet["containerRuntimeEndpoint"],
            "unix:///n/containerd/containerd.sock"
        );
        assert!(hosts_toml("http://127.0.0.1:5").contains("server = \"http://127.0.0.1:5\""));
    }
}
