//! Building the kubelet from the same `k8s.io/kubernetes` module as the control plane.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::binaries::{check_go, go_env, version_gate, version_ldflags};
use crate::servers::build::{self, Recipe, Step};
use crate::{Result, io_err, versions};

/// The wrapper module's lock files: the control plane's (`assets/go/k8s`) plus the
/// kubelet's `tool` line and the few modules only the kubelet imports.
const GO_MOD: &str = include_str!("../../assets/go/kubelet/go.mod");
const GO_SUM: &str = include_str!("../../assets/go/kubelet/go.sum");
/// Bump when the kubelet's build recipe changes.
const RECIPE: u32 = 1;

fn recipe() -> Recipe {
    Recipe {
        name: "kubelet",
        key: format!("kubelet-{}-r{RECIPE}", versions::KUBERNETES),
        outputs: &["bin/kubelet"],
        build: build_kubelet,
    }
}

/// `go build` of `k8s.io/kubernetes/cmd/kubelet` with the control plane's version
/// ldflags, static (`CGO_ENABLED=0`), then the `--version` gate.
fn build_kubelet(step: &Step<'_>) -> Result<()> {
    check_go()?;
    let module = step.work.join("module");
    let bin = step.staged.join("bin");
    for dir in [&module, &bin] {
        fs::create_dir_all(dir).map_err(io_err("cannot create the build directory", dir))?;
    }
    for (name, text) in [("go.mod", GO_MOD), ("go.sum", GO_SUM)] {
        let path = module.join(name);
        fs::write(&path, text).map_err(io_err("cannot write", &path))?;
    }
    let kubelet = bin.join("kubelet");
    let mut cmd = Command::new("go");
    go_env(&mut cmd);
    cmd.current_dir(&module)
        .args(["build", "-trimpath", "-ldflags", &version_ldflags(), "-o"])
        .arg(&kubelet)
        .arg("k8s.io/kubernetes/cmd/kubelet");
    build::run_logged(
        &format!("go build kubelet {}", versions::KUBERNETES),
        cmd,
        step.log,
    )?;
    version_gate(
        &kubelet,
        &["--version"],
        &format!("Kubernetes {}", versions::KUBERNETES),
    )
}

/// The kubelet binary, built into `$HOME/.cache/rlaunch/servers/kubelet-<version>-r<n>/`
/// the first time (blocking; lock file, complete or absent, progress on stderr).
pub fn ensure_kubelet() -> Result<PathBuf> {
    Ok(build::ensure(&recipe())?.join("bin").join("kubelet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubelet_lock_files_extend_the_control_planes() {
        let k8s = include_str!("../../assets/go/k8s/go.mod");
        assert!(GO_MOD.contains(&format!("k8s.io/kubernetes {}", versions::KUBERNETES)));
        assert!(GO_MOD.contains("k8s.io/kubernetes/cmd/kubelet"));
        // Every requirement of the control plane's module is required at the same version,
        // so the two builds share GOCACHE entries.
        for line in k8s
            .lines()
            .filter(|l| l.starts_with('\t') && l.contains(" v"))
        {
            assert!(GO_MOD.contains(line), "kubelet go.mod lacks {line:?}");
        }
    }
}
