//! A real Kaniko executor for the real node: built from the Go module proxy
//! (`github.com/chainguard-dev/kaniko`, the maintained fork) into the servers cache and
//! packed into a `FROM scratch` image, so a build Job's pod runs the real executor.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::binaries::{check_go, go_env};
use crate::servers::build::{self, Recipe, Step};
use crate::servers::{ImageFile, PushedImage, Registry, TestImage};
use crate::{Error, Result, io_err, versions};

/// Bump when the executor's build recipe changes.
const RECIPE: u32 = 1;
const MODULE: &str = "github.com/chainguard-dev/kaniko";

fn recipe() -> Recipe {
    Recipe {
        name: "kaniko",
        key: format!("kaniko-chainguard-{}-r{RECIPE}", versions::KANIKO),
        outputs: &["bin/executor"],
        build: build_executor,
    }
}

/// `go mod download` of the module at its exact version (the proxy serves no version
/// list, so `go install …@version` is refused), then `go build ./cmd/executor` inside it
/// with the module's own lock files, static.
fn build_executor(step: &Step<'_>) -> Result<()> {
    check_go()?;
    let module = format!("{MODULE}@{}", versions::KANIKO);
    let mut cmd = Command::new("go");
    go_env(&mut cmd);
    let out = cmd
        .current_dir(step.work)
        .args(["mod", "download", "-json", &module])
        .output()
        .map_err(|source| Error::Spawn {
            component: "go mod download (kaniko)".into(),
            binary: PathBuf::from("go"),
            source,
        })?;
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Internal(format!(
            "go mod download {module} answered no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    let Some(dir) = answer["Dir"].as_str().filter(|_| out.status.success()) else {
        return Err(Error::Internal(format!(
            "go mod download {module} failed: {answer}"
        )));
    };
    let bin = step.staged.join("bin");
    std::fs::create_dir_all(&bin).map_err(io_err("cannot create the build directory", &bin))?;
    let mut cmd = Command::new("go");
    go_env(&mut cmd);
    cmd.current_dir(dir)
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(bin.join("executor"))
        .arg("./cmd/executor");
    build::run_logged(
        &format!("go build kaniko executor {}", versions::KANIKO),
        cmd,
        step.log,
    )
}

/// The executor, built first if the cache is cold (about 2 minutes on a warm Go module
/// cache). Blocking.
pub fn ensure_executor() -> Result<PathBuf> {
    Ok(build::ensure(&recipe())?.join("bin").join("executor"))
}

/// The executor image: `/kaniko/executor` (the entrypoint) and an empty Docker config.
pub fn executor_image(executor: &Path) -> Result<TestImage> {
    let bytes = std::fs::read(executor).map_err(io_err("cannot read the executor", executor))?;
    Ok(TestImage::new("kaniko", "1")
        .with_file(ImageFile::executable("kaniko/executor", bytes))
        .with_file(ImageFile::new("kaniko/.docker/config.json", "{}\n"))
        .with_entrypoint(["/kaniko/executor"]))
}

/// Builds the executor if needed and pushes its image (`kaniko:1`) to `registry`.
pub async fn push_executor_image(registry: &Registry) -> Result<PushedImage> {
    let executor = tokio::task::spawn_blocking(ensure_executor)
        .await
        .map_err(|e| Error::Internal(format!("kaniko build task: {e}")))??;
    registry.push_image(&executor_image(&executor)?).await
}
