//! Building the control-plane binaries from source into a per-version cache.
//!
//! Layout: `$HOME/.cache/rlaunch/cluster/<versions::cache_key()>/{bin/,stamp.json}` and
//! `$HOME/.cache/rlaunch/go/` (GOPATH with the module cache, and GOCACHE) so CI can cache
//! both. A build goes to a temporary sibling directory which is renamed into place when
//! every binary passed its `--version` gate, so a cache directory is either complete or absent.

use crate::io_err;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::versions;
use crate::{Error, Result};

const K8S_GO_MOD: &str = include_str!("../assets/go/k8s/go.mod");
const K8S_GO_SUM: &str = include_str!("../assets/go/k8s/go.sum");
const KWOK_GO_MOD: &str = include_str!("../assets/go/kwok/go.mod");
const KWOK_GO_SUM: &str = include_str!("../assets/go/kwok/go.sum");

/// Names of the binaries in the cache's `bin/` directory.
pub const BINARIES: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

/// Paths of a complete set of cached binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `bin/` directory holding every binary.
    pub dir: PathBuf,
}

impl Binaries {
    /// Path of one binary by name (see [`BINARIES`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `$HOME/.cache/rlaunch` (or `/tmp/.cache/rlaunch` without `HOME`).
pub fn cache_root() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("rlaunch")
}

/// The directory the binaries of the pinned versions live in.
pub fn install_dir() -> PathBuf {
    cache_root().join("cluster").join(versions::cache_key())
}

/// Progress line on the real stderr: written to the handle, not with `eprintln!`, so
/// libtest's output capture does not hide a 30-minute cold build.
pub(crate) fn progress(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "testkit cluster build: {msg}");
}

/// Returns the cached binaries if a complete build of the pinned versions exists.
pub fn cached() -> Option<Binaries> {
    let dir = install_dir();
    let stamp = dir.join("stamp.json");
    let text = fs::read_to_string(&stamp).ok()?;
    if !text.contains(&versions::cache_key()) {
        return None;
    }
    let bin = dir.join("bin");
    BINARIES
        .iter()
        .all(|b| bin.join(b).is_file())
        .then_some(Binaries { dir: bin })
}

/// Builds (or finds in the cache) every binary of the pinned versions.
///
/// Blocking; measured 4m58s cold (empty module cache and GOCACHE, 2 cores) and
/// milliseconds warm. Progress goes to stderr.
/// Several processes may call it at once: a lock file serialises them and the losers
/// find the winner's result.
pub fn ensure_built() -> Result<Binaries> {
    if let Some(b) = cached() {
        return Ok(b);
    }
    let root = cache_root().join("cluster");
    fs::create_dir_all(&root).map_err(io_err("cannot create the cache directory", &root))?;
    let lock_path = root.join(".build.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("cannot open the build lock", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            progress("another process is building; waiting for its build lock");
            lock.lock()
                .map_err(io_err("cannot take the build lock", &lock_path))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(io_err("cannot take the build lock", &lock_path)(e));
        }
    }
    // Someone else may have finished while we waited.
    if let Some(b) = cached() {
        return Ok(b);
    }
    let result = build_locked(&root);
    drop(lock);
    result
}

pub(crate) fn go_env(cmd: &mut Command) {
    let go = cache_root().join("go");
    cmd.env("GOPATH", &go)
        .env("GOMODCACHE", go.join("pkg").join("mod"))
        .env("GOCACHE", go.join("cache"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod -modcacherw")
        .env("CGO_ENABLED", "0")
        .env_remove("GOWORK")
        .env_remove("GOBIN");
}

pub(crate) fn check_go() -> Result<String> {
    let mut cmd = Command::new("go");
    cmd.args(["env", "GOVERSION"]);
    go_env(&mut cmd);
    let out = cmd.output().map_err(|e| Error::GoMissing {
        detail: e.to_string(),
    })?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let minor = version
        .strip_prefix("go1.")
        .and_then(|rest| rest.split(['.', '-', 'r']).next())
        .and_then(|m| m.parse::<u32>().ok());
    match minor {
        Some(m) if m >= versions::GO_MIN_MINOR => Ok(version),
        _ => Err(Error::GoMissing {
            detail: format!(
                "`go env GOVERSION` printed {version:?}; go1.{} or newer is required",
                versions::GO_MIN_MINOR
            ),
        }),
    }
}

pub(crate) fn tail_of(path: &Path, max: usize) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max)..].join("\n")
}

/// Runs a Go command with output to `log`, turning failure into [`Error::BuildFailed`].
fn run_logged(what: &str, mut cmd: Command, log: &Path) -> Result<()> {
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
    go_env(&mut cmd);
    cmd.stdin(Stdio::null()).stdout(file).stderr(file2);
    let status = cmd.status().map_err(|e| Error::GoMissing {
        detail: e.to_string(),
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

pub(crate) fn version_ldflags() -> String {
    let mut flags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push_str(&format!(
            " -X {pkg}.gitVersion={v} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
             -X {pkg}.gitTreeState=clean -X {pkg}.gitCommit=release-{v} -X {pkg}.buildDate={date}",
            v = versions::KUBERNETES,
            minor = versions::KUBERNETES_MINOR,
            date = versions::KUBERNETES_BUILD_DATE,
        ));
    }
    flags
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(io_err("cannot write", path))
}

pub(crate) fn version_gate(bin: &Path, args: &[&str], expect: &str) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(io_err("cannot run the freshly built binary", bin))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains(expect) {
        Ok(())
    } else {
        Err(Error::VersionMismatch {
            binary: bin.to_owned(),
            expected: expect.to_owned(),
            actual: text.trim().to_owned(),
        })
    }
}

/// The control-plane components built from `k8s.io/kubernetes`.
const KUBE_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The directories of one build: a work dir next to the cache, the Go modules inside it,
/// and the staged result that is renamed into the cache when complete.
struct BuildDirs {
    work: PathBuf,
    staged: PathBuf,
    bin: PathBuf,
    k8s: PathBuf,
    kwok: PathBuf,
    log: PathBuf,
}

impl BuildDirs {
    fn create(root: &Path, key: &str) -> Result<BuildDirs> {
        let work = root.join(format!(".tmp-{key}-{}", std::process::id()));
        if work.exists() {
            let _ = fs::remove_dir_all(&work);
        }
        let staged = work.join("out");
        let dirs = BuildDirs {
            bin: staged.join("bin"),
            k8s: work.join("k8s"),
            kwok: work.join("kwok"),
            log: work.join("build.log"),
            staged,
            work,
        };
        for d in [&dirs.bin, &dirs.k8s, &dirs.kwok] {
            fs::create_dir_all(d).map_err(io_err("cannot create the build directory", d))?;
        }
        Ok(dirs)
    }
}

fn build_locked(root: &Path) -> Result<Binaries> {
    let total = Instant::now();
    let go_version = check_go()?;
    let key = versions::cache_key();
    progress(&format!(
        "cold cache: building {key} with {go_version} (about 5 min and ~850 MB of Go modules on a \
         2-core machine the first time; GOPATH/GOCACHE in {})",
        cache_root().join("go").display()
    ));
    let dirs = BuildDirs::create(root, &key)?;
    let result = build_kubernetes(&dirs)
        .and_then(|()| build_kwok(&dirs))
        .and_then(|()| copy_etcd(&dirs))
        .and_then(|()| check_versions(&dirs.bin))
        .and_then(|()| {
            let stamp = serde_json::json!({
                "key": key,
                "kubernetes": versions::KUBERNETES,
                "kwok": versions::KWOK,
                "etcd": versions::ETCD,
                "go": go_version,
                "build_seconds": total.elapsed().as_secs(),
            });
            install(&dirs, &stamp)
        });
    match &result {
        Ok(b) => {
            let secs = total.elapsed().as_secs();
            progress(&format!(
                "all binaries ready in {}m{:02}s at {}",
                secs / 60,
                secs % 60,
                b.dir.display()
            ));
            let _ = fs::remove_dir_all(&dirs.work);
        }
        Err(_) => progress(&format!(
            "build failed; work dir kept at {}",
            dirs.work.display()
        )),
    }
    result
}

/// kube-apiserver, kube-controller-manager and kube-scheduler from k8s.io/kubernetes.
fn build_kubernetes(dirs: &BuildDirs) -> Result<()> {
    write(&dirs.k8s.join("go.mod"), K8S_GO_MOD)?;
    write(&dirs.k8s.join("go.sum"), K8S_GO_SUM)?;
    for name in KUBE_COMPONENTS {
        let mut cmd = Command::new("go");
        cmd.current_dir(&dirs.k8s)
            .args(["build", "-trimpath", "-ldflags", &version_ldflags(), "-o"])
            .arg(dirs.bin.join(name))
            .arg(format!("k8s.io/kubernetes/cmd/{name}"));
        run_logged(
            &format!("go build {name} {}", versions::KUBERNETES),
            cmd,
            &dirs.log,
        )?;
    }
    Ok(())
}

fn build_kwok(dirs: &BuildDirs) -> Result<()> {
    write(&dirs.kwok.join("go.mod"), KWOK_GO_MOD)?;
    write(&dirs.kwok.join("go.sum"), KWOK_GO_SUM)?;
    let mut cmd = Command::new("go");
    cmd.current_dir(&dirs.kwok)
        .args(["build", "-trimpath", "-ldflags", "-s -w", "-o"])
        .arg(dirs.bin.join("kwok"))
        .arg("sigs.k8s.io/kwok/cmd/kwok");
    run_logged(&format!("go build kwok {}", versions::KWOK), cmd, &dirs.log)
}

/// etcd, prebuilt by the etcd-bin-vendored crate; copied so the cache is self-contained.
fn copy_etcd(dirs: &BuildDirs) -> Result<()> {
    let etcd_src = etcd_bin_vendored_linux_amd64::etcd_bin_path()
        .map_err(|never| match never {})?
        .to_owned();
    progress(&format!(
        "copying etcd {} from {}",
        versions::ETCD,
        etcd_src.display()
    ));
    fs::copy(&etcd_src, dirs.bin.join("etcd")).map_err(io_err("cannot copy etcd", &etcd_src))?;
    Ok(())
}

/// Every binary reports the pinned version.
fn check_versions(bin: &Path) -> Result<()> {
    let kube_version = format!("Kubernetes {}", versions::KUBERNETES);
    for name in KUBE_COMPONENTS {
        version_gate(&bin.join(name), &["--version"], &kube_version)?;
    }
    version_gate(
        &bin.join("etcd"),
        &["--version"],
        &format!("etcd Version: {}", versions::ETCD),
    )?;
    version_gate(
        &bin.join("kwok"),
        &["--version"],
        versions::KWOK.trim_start_matches('v'),
    )
}

/// Writes the stamp and renames the staged build into the cache, so a cache directory is
/// either complete or absent.
fn install(dirs: &BuildDirs, stamp: &serde_json::Value) -> Result<Binaries> {
    write(&dirs.staged.join("stamp.json"), &format!("{stamp:#}\n"))?;
    let dest = install_dir();
    if dest.exists() {
        // An incomplete earlier result (no stamp): replace it.
        fs::remove_dir_all(&dest).map_err(io_err("cannot remove the stale cache", &dest))?;
    }
    fs::rename(&dirs.staged, &dest).map_err(io_err("cannot publish the build", &dest))?;
    Ok(Binaries {
        dir: dest.join("bin"),
    })
}

/// One line naming the pinned versions, for progress output.
pub fn describe() -> String {
    format!(
        "kubernetes {}, kwok {}, etcd {}",
        versions::KUBERNETES,
        versions::KWOK,
        versions::ETCD
    )
}
