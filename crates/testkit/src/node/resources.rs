//! Host resources of one node: its bridge and its cgroup root. The teardown script
//! (`assets/node/teardown.sh`) removes both.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::config::Net;
use crate::{Error, Result, io_err};

fn ip(ip_bin: &Path, args: &[&str]) -> std::result::Result<(), String> {
    let out = Command::new(ip_bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", ip_bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn addresses_in_use(ip_bin: &Path) -> String {
    Command::new(ip_bin)
        .args(["-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Creates the node's bridge on the first free `10.88.<n>.0/24` (from a start that
/// depends on the process id, so concurrent test binaries rarely collide) with the
/// gateway address, and brings it up.
pub fn create_bridge(ip_bin: &Path) -> Result<Net> {
    let in_use = addresses_in_use(ip_bin);
    let start = u8::try_from(std::process::id() % 200).unwrap_or(0) + 20;
    let mut last_error = String::from("no free subnet");
    for i in 0..200u16 {
        let octet = u8::try_from((u16::from(start) + i) % 230 + 20).unwrap_or(20);
        let net = Net { octet };
        if in_use.contains(&format!("inet 10.88.{octet}.")) {
            continue;
        }
        let bridge = net.bridge();
        // `add` fails if another node took the name first: try the next subnet.
        if let Err(e) = ip(ip_bin, &["link", "add", "name", &bridge, "type", "bridge"]) {
            last_error = e;
            continue;
        }
        let cidr = format!("{}/24", net.gateway());
        let up = ip(ip_bin, &["addr", "add", &cidr, "dev", &bridge])
            .and_then(|()| ip(ip_bin, &["link", "set", &bridge, "up"]));
        if let Err(e) = up {
            let _ = ip(ip_bin, &["link", "delete", &bridge]);
            return Err(Error::NodeHost {
                problem: format!("cannot set up the node's bridge {bridge}: {e}"),
                fix: "check that the kernel has bridge support and that this process is root"
                    .into(),
            });
        }
        return Ok(net);
    }
    Err(Error::NodeHost {
        problem: format!("cannot create a bridge for the node: {last_error}"),
        fix: "remove leftover `rlt-*` bridges (`ip link delete rlt-<n>`)".into(),
    })
}

/// The cgroup v1 controller hierarchies (and the v2 one, if mounted) under `/sys/fs/cgroup`.
fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cgroup.procs").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Creates `/<name>` in every cgroup hierarchy (the kubelet requires its `cgroupRoot` to
/// exist); a new cpuset gets its parent's CPUs and memory nodes.
pub fn create_cgroup_root(name: &str) -> Result<()> {
    let all = hierarchies();
    if !all.iter().any(|h| h.ends_with("memory")) {
        return Err(Error::NodeHost {
            problem: "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory".into(),
            fix: "the real node is set up for cgroup v1 machines (the kind this project's CI uses)"
                .into(),
        });
    }
    for hierarchy in all {
        let dir = hierarchy.join(name);
        fs::create_dir_all(&dir).map_err(io_err("cannot create the node's cgroup", &dir))?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = hierarchy.join(file);
                let value = fs::read_to_string(&parent).map_err(io_err("cannot read", &parent))?;
                let child = dir.join(file);
                fs::write(&child, value.trim()).map_err(io_err("cannot write", &child))?;
            }
        }
    }
    Ok(())
}
