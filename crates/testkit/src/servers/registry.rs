//! An OCI registry (go-containerregistry's `registry`, in memory) and `crane` to push
//! small images into it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::build::{self, Recipe, Step};
use super::process::ServerProcess;
use crate::{Error, Result, io_err, versions};

const GO_MOD: &str = include_str!("../../assets/go/registry/go.mod");
const GO_SUM: &str = include_str!("../../assets/go/registry/go.sum");
/// Bump when the registry's build recipe changes.
const RECIPE: u32 = 1;

fn recipe() -> Recipe {
    Recipe {
        name: "registry",
        key: format!("registry-ggcr-{}-r{RECIPE}", versions::GO_CONTAINERREGISTRY),
        outputs: &["bin/registry", "bin/crane"],
        build: build_registry,
    }
}

fn build_registry(step: &Step<'_>) -> Result<()> {
    build::go_build(
        step,
        (GO_MOD, GO_SUM),
        &[
            "github.com/google/go-containerregistry/cmd/registry",
            "github.com/google/go-containerregistry/cmd/crane",
        ],
    )
}

/// A real OCI distribution registry on a loopback port, empty at start, speaking plain
/// HTTP without authentication (go-containerregistry's `registry`, which keeps everything
/// in memory). Stops when dropped.
#[derive(Debug)]
pub struct Registry {
    process: ServerProcess,
    port: u16,
    crane: PathBuf,
}

impl Registry {
    /// Builds the registry and `crane` if the cache is cold (about a minute), then starts a
    /// fresh registry on a free loopback port.
    pub async fn start() -> Result<Registry> {
        Registry::start_in(None).await
    }

    /// As [`Registry::start`], but the registry outlives this process (for `cargo xtask
    /// cluster up`), with its log in `dir`; stop it by [`ServerProcess::pid`].
    pub async fn start_detached(dir: &Path) -> Result<Registry> {
        Registry::start_in(Some(dir)).await
    }

    async fn start_in(detached: Option<&Path>) -> Result<Registry> {
        let dir = tokio::task::spawn_blocking(|| build::ensure(&recipe()))
            .await
            .map_err(|e| Error::Internal(format!("registry build task: {e}")))??;
        let binary = dir.join("bin").join("registry");
        let args: [&OsStr; 2] = ["-port".as_ref(), "0".as_ref()];
        let mut process = match detached {
            Some(state) => ServerProcess::spawn_detached("registry", &binary, &args, state)?,
            None => ServerProcess::spawn("registry", &binary, &args, |_, _| {})?,
        };
        // It logs `serving on port N` once it listens.
        let port = process
            .wait_until(30, |p| {
                let log = std::fs::read_to_string(p.log_path()).unwrap_or_default();
                async move { serving_port(&log) }
            })
            .await?;
        Ok(Registry {
            process,
            port,
            crane: dir.join("bin").join("crane"),
        })
    }

    /// `127.0.0.1:<port>`: the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on (loopback only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the base of the distribution API (`/v2/…`).
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Path of the `crane` binary built with the registry, for tests that need more of it.
    pub fn crane(&self) -> &Path {
        &self.crane
    }

    /// The server process (its log, for failure messages).
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }

    /// Pushes a one-layer `linux/amd64` image holding `image.files` under
    /// `<host>/<repository>:<tag>` and returns its reference and manifest digest.
    pub async fn push_image(&self, image: &TestImage) -> Result<PushedImage> {
        let reference = format!("{}/{}:{}", self.host(), image.repository, image.tag);
        let scratch = tempdir_for(&self.process, &image.repository)?;
        let layer = scratch.join("layer.tar");
        write_layer(&layer, &image.files)?;
        let layer_arg = layer.as_os_str().to_owned();
        self.crane_run(&[
            "append".as_ref(),
            "-f".as_ref(),
            layer_arg.as_os_str(),
            "-t".as_ref(),
            reference.as_ref(),
        ])
        .await?;
        let mut mutate: Vec<String> = vec![
            "mutate".into(),
            reference.clone(),
            "--set-platform".into(),
            "linux/amd64".into(),
            "-t".into(),
            reference.clone(),
        ];
        if !image.entrypoint.is_empty() {
            mutate.push(format!("--entrypoint={}", image.entrypoint.join(",")));
        }
        let mutate: Vec<&OsStr> = mutate.iter().map(OsStr::new).collect();
        self.crane_run(&mutate).await?;
        let digest = self
            .crane_run(&["digest".as_ref(), reference.as_ref()])
            .await?
            .trim()
            .to_owned();
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(PushedImage { reference, digest })
    }

    /// Runs `crane --insecure <args>` and returns its stdout.
    pub async fn crane_run(&self, args: &[&OsStr]) -> Result<String> {
        let out = tokio::process::Command::new(&self.crane)
            .arg("--insecure")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                component: "crane".into(),
                binary: self.crane.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(Error::Exited {
            component: format!(
                "crane {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            status: out.status.to_string(),
            log: self.process.log_path(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn serving_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|l| l.split_once("serving on port ").map(|(_, p)| p.trim()))
        .and_then(|p| p.parse().ok())
}

fn tempdir_for(process: &ServerProcess, repository: &str) -> Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clean: String = repository
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = process.dir().join(format!("push-{clean}-{n}"));
    std::fs::create_dir_all(&dir).map_err(io_err("cannot create a scratch directory", &dir))?;
    Ok(dir)
}

fn write_layer(path: &Path, files: &[ImageFile]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(io_err("cannot create the layer", path))?;
    let mut tar = tar::Builder::new(file);
    for f in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(f.contents.len() as u64);
        header.set_mode(f.mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, &f.path, f.contents.as_slice())
            .map_err(io_err("cannot write the layer", path))?;
    }
    tar.into_inner()
        .map_err(io_err("cannot finish the layer", path))?;
    Ok(())
}

/// An image to push: one layer with these files, and an entrypoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestImage {
    /// Repository path inside the registry (`team/trainer`).
    pub repository: String,
    /// Tag (`v1`).
    pub tag: String,
    /// Files of the single layer.
    pub files: Vec<ImageFile>,
    /// Entrypoint argv; empty leaves it unset.
    pub entrypoint: Vec<String>,
}

impl TestImage {
    /// An image with no files yet.
    pub fn new(repository: impl Into<String>, tag: impl Into<String>) -> TestImage {
        TestImage {
            repository: repository.into(),
            tag: tag.into(),
            files: Vec::new(),
            entrypoint: Vec::new(),
        }
    }

    /// Adds a file to the layer.
    pub fn with_file(mut self, file: ImageFile) -> TestImage {
        self.files.push(file);
        self
    }

    /// Sets the entrypoint.
    pub fn with_entrypoint<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = argv.into_iter().map(Into::into).collect();
        self
    }
}

/// A file in a [`TestImage`] layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageFile {
    /// Path inside the image, relative (`bin/hello`).
    pub path: String,
    /// Contents.
    pub contents: Vec<u8>,
    /// Unix mode (`0o644` by default, `0o755` for executables).
    pub mode: u32,
}

impl ImageFile {
    /// A regular file with mode 0644.
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> ImageFile {
        ImageFile {
            path: path.into().trim_start_matches('/').to_owned(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// An executable (mode 0755).
    pub fn executable(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> ImageFile {
        ImageFile {
            mode: 0o755,
            ..ImageFile::new(path, contents)
        }
    }
}

/// An image the registry now holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// `<host>/<repository>:<tag>`.
    pub reference: String,
    /// Manifest digest (`sha256:…`), as the registry's `Docker-Content-Digest` says.
    pub digest: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_serving_line() {
        assert_eq!(
            serving_port("2026/12/02 13:40:40 serving on port 45317\n"),
            Some(45317)
        );
        assert_eq!(serving_port("starting\n"), None);
    }

    #[test]
    fn the_lock_files_pin_the_registry_version() {
        assert!(GO_MOD.contains(&format!(
            "github.com/google/go-containerregistry {}",
            versions::GO_CONTAINERREGISTRY
        )));
    }
}
