//! What the control plane and the real node share: how processes are supervised, free
//! loopback ports, log tails and clients from a kubeconfig.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// How the processes relate to the process that starts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervision {
    /// Each process in its own process group; they outlive the starter and are stopped by
    /// [`crate::control_plane::down`] (used by `cargo xtask cluster up`).
    Detached,
    /// All processes in the process group of a small `sh` watchdog that reads a pipe held
    /// by the starter. When the starter exits (however it exits) the pipe closes and the
    /// watchdog kills the group and removes the state dir. Used by test binaries.
    DieWithParent,
}

/// The last `max` lines of a log file.
pub fn log_tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(32 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max)..].join("\n")
}

/// Loopback ports the cluster's components listen on: below the kernel's ephemeral range
/// (32768–60999 on Linux), so an outgoing connection of another process — or of this very
/// cluster, between choosing a port and its component binding it — can never take one.
/// Candidates are random, so concurrent clusters rarely pick the same one; each is checked
/// free by binding it, and all are held at once so they are distinct.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    use std::hash::{BuildHasher, Hasher};
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let span = u64::from(PORT_RANGE.end - PORT_RANGE.start);
    let mut attempts = 0u32;
    while ports.len() < n {
        attempts += 1;
        if attempts > 2_000 {
            return Err(Error::Io {
                what: format!("cannot find {n} free loopback ports in {PORT_RANGE:?}"),
                path: PathBuf::from("127.0.0.1"),
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            });
        }
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempts);
        let offset = u16::try_from(hasher.finish() % span).unwrap_or(0);
        let port = PORT_RANGE.start + offset;
        if ports.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
            ports.push(port);
        }
    }
    Ok(ports)
}

/// A kube client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|source| Error::Kubeconfig {
                path: path.to_owned(),
                source,
            })?;
    kube::Client::try_from(config).map_err(|source| Error::Kube {
        step: "building a client from the kubeconfig".into(),
        source,
    })
}

/// Starts `sh -c script name args…` in its own process group with a piped stdin: the
/// watchdog that tears down what a test started when the test process dies (its stdin
/// closes). `name` is `$0` of the script and names it in errors.
pub(crate) fn spawn_watchdog(
    script: &str,
    name: &str,
    args: &[&std::ffi::OsStr],
) -> Result<(std::process::Child, std::process::ChildStdin)> {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(name)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            component: format!("{name} (sh)"),
            binary: PathBuf::from("sh"),
            source,
        })?;
    match child.stdin.take() {
        Some(stdin) => Ok((child, stdin)),
        None => Err(Error::Internal(format!("{name}: stdin missing"))),
    }
}
