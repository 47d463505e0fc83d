//! What the machine must provide for the real node, and the idempotent setup that
//! installs it (Debian packages, as root).
//!
//! Chosen: containerd 1.6 and runc 1.1 from Debian, not containerd v2 from the Go proxy —
//! the packages install in seconds, the kubelet 1.35 accepts containerd 1.6's CRI
//! (`runtime.v1`), and nothing has to be compiled. CNI plugins and `busybox-static`
//! (the static binary inside the test images) come from Debian too.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// The Debian packages the real node needs.
pub const DEBIAN_PACKAGES: [&str; 4] = [
    "containerd",
    "runc",
    "busybox-static",
    "containernetworking-plugins",
];

/// How to fix a machine that lacks something.
const FIX: &str = "run `cargo xtask setup` as root (it installs the Debian packages containerd, \
                   runc, busybox-static and containernetworking-plugins)";

/// Paths of the host tools the node runs.
#[derive(Clone, Debug)]
pub struct HostTools {
    /// `containerd`.
    pub containerd: PathBuf,
    /// `runc` (containerd's shim finds it on `PATH`; checked here so a missing one is named).
    pub runc: PathBuf,
    /// The directory of the CNI plugins (`bridge`, `host-local`, `loopback`).
    pub cni_bin_dir: PathBuf,
    /// The static busybox copied into the test images.
    pub busybox: PathBuf,
    /// `ip`, to create the node's bridge.
    pub ip: PathBuf,
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective uid).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn missing(problem: String) -> Error {
    Error::NodeHost {
        problem,
        fix: FIX.to_owned(),
    }
}

/// Checks that this process is root and every host tool is installed.
pub fn check() -> Result<HostTools> {
    if !is_root() {
        return Err(Error::NodeHost {
            problem: "the real node runs containerd, runc and the kubelet, which need root, \
                      and this process is not root"
                .into(),
            fix: "run the real-node tests as root (CI does); the kwok-only cluster needs no root"
                .into(),
        });
    }
    let find = |what: &str, candidates: &[&str]| {
        first_existing(candidates).ok_or_else(|| {
            missing(format!(
                "{what} is not installed (looked at {candidates:?})"
            ))
        })
    };
    let cni_bridge = find(
        "the CNI bridge plugin",
        &["/usr/lib/cni/bridge", "/opt/cni/bin/bridge"],
    )?;
    let tools = HostTools {
        containerd: find(
            "containerd",
            &["/usr/bin/containerd", "/usr/local/bin/containerd"],
        )?,
        runc: find(
            "runc",
            &["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"],
        )?,
        cni_bin_dir: cni_bridge
            .parent()
            .map_or_else(PathBuf::new, Path::to_owned),
        busybox: find("busybox-static", &["/bin/busybox", "/usr/bin/busybox"])?,
        ip: find(
            "ip (iproute2)",
            &["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"],
        )?,
    };
    for plugin in ["host-local", "loopback"] {
        if !tools.cni_bin_dir.join(plugin).is_file() {
            return Err(missing(format!(
                "the CNI plugin {plugin} is missing from {}",
                tools.cni_bin_dir.display()
            )));
        }
    }
    Ok(tools)
}

/// What [`install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Setup {
    /// Everything was there already.
    AlreadyInstalled,
    /// These packages were installed with `apt-get`.
    Installed(Vec<String>),
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_get(args: &[&str]) -> Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            component: "apt-get".into(),
            binary: PathBuf::from("apt-get"),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
    Err(Error::NodeHost {
        problem: format!(
            "`apt-get {}` failed ({}): {}",
            args.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ),
        fix: "check the machine's apt sources; the packages are in Debian 12 (bookworm)".into(),
    })
}

/// Installs the missing [`DEBIAN_PACKAGES`] (idempotent: nothing runs when all are
/// installed). Needs root; `apt-get update` runs only when a first install attempt fails.
pub fn install() -> Result<Setup> {
    let wanted: Vec<String> = DEBIAN_PACKAGES
        .iter()
        .filter(|p| !dpkg_installed(p))
        .map(|p| (*p).to_owned())
        .collect();
    if wanted.is_empty() {
        return Ok(Setup::AlreadyInstalled);
    }
    if !is_root() {
        return Err(Error::NodeHost {
            problem: format!(
                "the packages {} are missing and this process is not root",
                wanted.join(", ")
            ),
            fix: "run `cargo xtask setup` as root".into(),
        });
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(wanted.iter().map(String::as_str));
    if apt_get(&args).is_err() {
        apt_get(&["update"])?;
        apt_get(&args)?;
    }
    Ok(Setup::Installed(wanted))
}
