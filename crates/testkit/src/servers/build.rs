//! Building a server once into `$HOME/.cache/rlaunch/servers/<key>/`, complete or absent.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::progress;
use crate::binaries::{cache_root, check_go, go_env, tail_of};
use crate::{Error, Result, io_err};

/// How to build one server.
pub(crate) struct Recipe {
    /// Short name, for the lock file and progress lines (`registry`).
    pub name: &'static str,
    /// Cache directory name; changes with every pinned version and recipe bump.
    pub key: String,
    /// Files that must exist under the installed directory for the cache to count.
    pub outputs: &'static [&'static str],
    /// Builds into `staged` (the future cache directory), logging to `log`.
    pub build: fn(&Step<'_>) -> Result<()>,
}

/// The directories of one build in progress.
pub(crate) struct Step<'a> {
    /// Scratch directory (removed after a successful build).
    pub work: &'a Path,
    /// What becomes the cache directory.
    pub staged: &'a Path,
    /// The build log.
    pub log: &'a Path,
}

fn servers_root() -> PathBuf {
    cache_root().join("servers")
}

fn cached(recipe: &Recipe) -> Option<PathBuf> {
    let dir = servers_root().join(&recipe.key);
    let stamp = fs::read_to_string(dir.join("stamp.json")).ok()?;
    (stamp.contains(&recipe.key) && recipe.outputs.iter().all(|o| dir.join(o).exists()))
        .then_some(dir)
}

/// The installed directory of `recipe`, built first if the cache is cold. Blocking; several
/// processes may call it at once (a lock file serialises them, losers reuse the result).
pub(crate) fn ensure(recipe: &Recipe) -> Result<PathBuf> {
    if let Some(dir) = cached(recipe) {
        return Ok(dir);
    }
    let root = servers_root();
    fs::create_dir_all(&root).map_err(io_err("cannot create the cache directory", &root))?;
    let lock_path = root.join(format!(".build-{}.lock", recipe.name));
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("cannot open the build lock", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            progress(&format!(
                "another process is building {}; waiting for its lock",
                recipe.name
            ));
            lock.lock()
                .map_err(io_err("cannot take the build lock", &lock_path))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(io_err("cannot take the build lock", &lock_path)(e));
        }
    }
    if let Some(dir) = cached(recipe) {
        return Ok(dir);
    }
    let result = build_locked(recipe, &root);
    drop(lock);
    result
}

fn build_locked(recipe: &Recipe, root: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    let work = root.join(format!(".tmp-{}-{}", recipe.key, std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let staged = work.join("out");
    fs::create_dir_all(&staged).map_err(io_err("cannot create the build directory", &staged))?;
    let log = work.join("build.log");
    progress(&format!("cold cache: building {} …", recipe.key));
    let step = Step {
        work: &work,
        staged: &staged,
        log: &log,
    };
    (recipe.build)(&step)?;
    let secs = started.elapsed().as_secs();
    let stamp = serde_json::json!({ "key": recipe.key, "build_seconds": secs });
    let stamp_path = staged.join("stamp.json");
    fs::write(&stamp_path, format!("{stamp:#}\n")).map_err(io_err("cannot write", &stamp_path))?;
    let dest = root.join(&recipe.key);
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(io_err("cannot remove the stale cache", &dest))?;
    }
    fs::rename(&staged, &dest).map_err(io_err("cannot publish the build", &dest))?;
    let _ = fs::remove_dir_all(&work);
    progress(&format!(
        "{} ready in {}m{:02}s at {}",
        recipe.key,
        secs / 60,
        secs % 60,
        dest.display()
    ));
    Ok(dest)
}

/// Runs `cmd` with its output appended to `log`; a failure is [`Error::BuildFailed`] with
/// the log's tail.
pub(crate) fn run_logged(what: &str, mut cmd: Command, log: &Path) -> Result<()> {
    let started = Instant::now();
    progress(&format!("{what} …"));
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("cannot open the build log", log))?;
    let file2 = file
        .try_clone()
        .map_err(io_err("cannot open the build log", log))?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
    let program = PathBuf::from(cmd.get_program());
    let status = cmd.status().map_err(|source| Error::Spawn {
        component: what.to_owned(),
        binary: program,
        source,
    })?;
    let secs = started.elapsed().as_secs();
    if status.success() {
        progress(&format!("{what}: done in {}m{:02}s", secs / 60, secs % 60));
        Ok(())
    } else {
        Err(Error::BuildFailed {
            what: what.to_owned(),
            secs,
            log: log.to_owned(),
            tail: tail_of(log, 30),
        })
    }
}

/// `go build` of `packages` from a module whose lock files are `go_mod`/`go_sum`, into
/// `<staged>/bin/`.
pub(crate) fn go_build(
    step: &Step<'_>,
    (go_mod, go_sum): (&str, &str),
    packages: &[&str],
) -> Result<()> {
    check_go()?;
    let module = step.work.join("module");
    let bin = step.staged.join("bin");
    for dir in [&module, &bin] {
        fs::create_dir_all(dir).map_err(io_err("cannot create the build directory", dir))?;
    }
    for (name, text) in [("go.mod", go_mod), ("go.sum", go_sum)] {
        let path = module.join(name);
        fs::write(&path, text).map_err(io_err("cannot write", &path))?;
    }
    let mut cmd = Command::new("go");
    go_env(&mut cmd);
    cmd.current_dir(&module)
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(format!("{}/", bin.display()))
        .args(packages);
    run_logged(&format!("go build {}", packages.join(" ")), cmd, step.log)
}
