//! A server process that dies with its handle or with the test process.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::binaries::tail_of;
use crate::{Error, Result, io_err};

// As the control plane's watchdog: `kill -s TERM 0` signals our own process group, which
// holds the server; the watchdog ignores TERM so it survives to remove the state dir.
const WATCHDOG: &str = r#"trap '' INT TERM HUP
read -r _ignored
kill -s TERM 0 2>/dev/null
sleep 1
rm -rf -- "$1"
kill -s KILL 0 2>/dev/null
"#;

/// A running server: its state directory (data and `server.log`) and the watchdog that
/// kills it and removes the directory when this handle is dropped or the process exits.
pub struct ServerProcess {
    name: String,
    dir: PathBuf,
    child: Child,
    watchdog: Watchdog,
}

/// Who ends the server.
enum Watchdog {
    /// The watchdog, when the handle drops or the process exits.
    Owned {
        /// Held open; its end tells the watchdog to kill the server.
        _pipe: (Child, ChildStdin),
    },
    /// Nobody: it outlives this process (`cargo xtask cluster up`); stop it by its pid.
    Detached,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn unique_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    base.join(format!("rlaunch-{name}-{}-{n}", std::process::id()))
}

fn spawn_watchdog(dir: &Path) -> Result<(Child, ChildStdin)> {
    crate::support::spawn_watchdog(
        WATCHDOG,
        "rlaunch-testkit-server-watchdog",
        &[dir.as_os_str()],
    )
}

impl ServerProcess {
    /// Starts `binary args…` with a fresh state directory as its working directory; `setup`
    /// may add environment variables or arguments that name the directory.
    pub fn spawn(
        name: &str,
        binary: &Path,
        args: &[&OsStr],
        setup: impl FnOnce(&mut Command, &Path),
    ) -> Result<ServerProcess> {
        let dir = unique_dir(name);
        fs::create_dir_all(&dir).map_err(io_err("cannot create the server directory", &dir))?;
        let watchdog = spawn_watchdog(&dir)?;
        let log = dir.join("server.log");
        let file = fs::File::create(&log).map_err(io_err("cannot create the log", &log))?;
        let file2 = file
            .try_clone()
            .map_err(io_err("cannot open the log", &log))?;
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(watchdog.0.id() as i32);
        setup(&mut cmd, &dir);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            component: name.to_owned(),
            binary: binary.to_owned(),
            source,
        })?;
        Ok(ServerProcess {
            name: name.to_owned(),
            dir,
            child,
            watchdog: Watchdog::Owned { _pipe: watchdog },
        })
    }

    /// Starts `binary args…` in its own process group with `dir` (created) as its working
    /// directory, outliving this process: nothing kills it, the caller records
    /// [`ServerProcess::pid`] and stops it.
    pub fn spawn_detached(
        name: &str,
        binary: &Path,
        args: &[&OsStr],
        dir: &Path,
    ) -> Result<ServerProcess> {
        fs::create_dir_all(dir).map_err(io_err("cannot create the server directory", dir))?;
        let log = dir.join("server.log");
        let file = fs::File::create(&log).map_err(io_err("cannot create the log", &log))?;
        let file2 = file
            .try_clone()
            .map_err(io_err("cannot open the log", &log))?;
        let child = Command::new(binary)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                component: name.to_owned(),
                binary: binary.to_owned(),
                source,
            })?;
        Ok(ServerProcess {
            name: name.to_owned(),
            dir: dir.to_owned(),
            child,
            watchdog: Watchdog::Detached,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The state directory (removed when the server stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's combined stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log_path(), lines)
    }

    fn exited_error(&mut self) -> Option<Error> {
        let status = self.child.try_wait().ok().flatten()?;
        Some(Error::Exited {
            component: self.name.clone(),
            status: status.to_string(),
            log: self.log_path(),
            tail: self.log_tail(30),
        })
    }

    /// Waits until `ready` returns a value, failing when the server exits or after `secs`.
    pub async fn wait_until<T, F, Fut>(&mut self, secs: u64, mut ready: F) -> Result<T>
    where
        F: FnMut(&ServerProcess) -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(value) = ready(self).await {
                return Ok(value);
            }
            if let Some(error) = self.exited_error() {
                return Err(error);
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    component: self.name.clone(),
                    secs,
                    log: self.log_path(),
                    tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the server accepts TCP connections on `127.0.0.1:port`.
    pub async fn wait_for_port(&mut self, port: u16, secs: u64) -> Result<()> {
        self.wait_until(secs, |_| async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.watchdog, Watchdog::Detached) {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Dropping the watchdog's stdin makes it remove the directory and exit.
    }
}

/// A free loopback port (the kernel's choice; the server binds it right after).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|source| Error::Io {
        what: "cannot find a free loopback port".into(),
        path: PathBuf::from("127.0.0.1:0"),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            what: "cannot find a free loopback port".into(),
            path: PathBuf::from("127.0.0.1:0"),
            source,
        })
}
