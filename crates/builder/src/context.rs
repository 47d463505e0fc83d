//! The build context: the job's code and a Dockerfile in a fresh directory, archived as a
//! deterministic `.tgz` whose content hash is the image tag.

use std::fs;
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};

use futures::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::dockerfile::{self, DOCKERFILE_NAME, Dependencies, Generated};
use crate::git;
use crate::request::{BuildRequest, JobSource};
use crate::{Error, Result};

/// Hex characters of the content hash kept as the image tag (W&B's agent keeps 8).
pub const TAG_LENGTH: usize = 16;
/// Version of the hashing scheme; bump when what goes into the hash changes.
const HASH_SCHEME: &[u8] = b"rlaunch-build-context-v1\0";

/// Downloads a W&B code artifact (the agent implements it with its W&B client, so this
/// crate never talks to W&B).
pub trait CodeFetcher: Send + Sync {
    /// Writes every file of `artifact` (`entity/project/name:alias`) under `dest`.
    fn fetch_artifact<'a>(
        &'a self,
        artifact: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, std::result::Result<(), String>>;
}

/// An assembled context: the directory, its archive and the tag. Removed when dropped.
#[derive(Debug)]
pub struct BuildContext {
    dir: tempfile::TempDir,
    /// Content hash of the context (code + Dockerfile), [`TAG_LENGTH`] hex characters.
    pub tag: String,
    /// The Dockerfile, as it is in the context.
    pub dockerfile: String,
    /// The job's entrypoint rewritten for the image, when the context is the entrypoint's
    /// directory (a `Dockerfile.wandb` next to it: `python src/train.py` runs as
    /// `python train.py`); `None` keeps the job's.
    pub entrypoint: Option<Vec<String>>,
}

impl BuildContext {
    /// The context directory (what Kaniko sees as `/`-relative context root).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    /// The gzipped tar of [`BuildContext::root`].
    pub fn archive(&self) -> PathBuf {
        self.dir.path().join("context.tgz")
    }
}

/// Gets the code, writes the Dockerfile, archives and hashes the context under `work_dir`.
///
/// The Dockerfile, first match wins (W&B's order): the run spec's or the job's Dockerfile
/// (the whole code is the context); a `Dockerfile.wandb` next to the entrypoint file (that
/// directory is the context and the entrypoint is rewritten to the file's name); else a
/// generated one (the code goes under `src/`).
pub async fn assemble(
    request: &BuildRequest,
    fetcher: &dyn CodeFetcher,
    work_dir: &Path,
) -> Result<BuildContext> {
    let run_id = request.run_id.as_str();
    let dir = tempfile::Builder::new()
        .prefix("rlaunch-build-")
        .tempdir_in(work_dir)
        .map_err(io_error(run_id, "create the build directory", work_dir))?;
    let root = dir.path().join("context");
    let code = dir.path().join("code");
    fs::create_dir_all(&code).map_err(io_error(run_id, "create the code directory", &code))?;
    fetch_code(request, fetcher, &code).await?;
    remove_git_dir(run_id, &code)?;
    let mut entrypoint = None;
    let dockerfile = match (dockerfile_asked(request), beside_entrypoint(request, &code)) {
        (Some(path), _) => {
            move_dir(run_id, &code, &root)?;
            given_dockerfile(run_id, &root, path)?
        }
        (None, Some((entry_dir, rewritten))) => {
            move_dir(run_id, &code.join(&entry_dir), &root)?;
            entrypoint = Some(rewritten);
            given_dockerfile(run_id, &root, DOCKERFILE_NAME)?
        }
        (None, None) => {
            fs::create_dir_all(&root).map_err(io_error(
                run_id,
                "create the context directory",
                &root,
            ))?;
            move_dir(run_id, &code, &root.join("src"))?;
            generated_dockerfile(request, &root.join("src"))?
        }
    };
    let target = root.join(DOCKERFILE_NAME);
    fs::write(&target, &dockerfile).map_err(io_error(run_id, "write the Dockerfile", &target))?;
    let archive = dir.path().join("context.tgz");
    let (root_c, archive_c) = (root.clone(), archive.clone());
    let digest = tokio::task::spawn_blocking(move || write_archive(&root_c, &archive_c))
        .await
        .map_err(|e| Error::Internal(format!("archive task: {e}")))?
        .map_err(io_error(run_id, "archive the build context", &archive))?;
    Ok(BuildContext {
        dir,
        tag: digest[..TAG_LENGTH].to_owned(),
        dockerfile,
        entrypoint,
    })
}

fn move_dir(run_id: &str, from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(io_error(run_id, "move the code into the context", from))
}

/// The entrypoint's directory (relative to the code root) when a `Dockerfile.wandb` is
/// there, with the entrypoint rewritten to run the file by its name from that directory.
/// The entry file is the argument after a `python…`, `bash` or `sh` interpreter.
fn beside_entrypoint(request: &BuildRequest, code: &Path) -> Option<(PathBuf, Vec<String>)> {
    let entrypoint = request.details.entrypoint.as_ref()?;
    let interpreter = Path::new(entrypoint.first()?).file_name()?.to_str()?;
    let known = interpreter.starts_with("python") || matches!(interpreter, "bash" | "sh");
    let file = Path::new(entrypoint.get(1).filter(|_| known)?);
    let inside = file
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let entry_dir = file.parent()?.to_owned();
    if !inside || !code.join(&entry_dir).join(DOCKERFILE_NAME).is_file() {
        return None;
    }
    let mut rewritten = entrypoint.clone();
    rewritten[1] = file.file_name()?.to_str()?.to_owned();
    Some((entry_dir, rewritten))
}

/// The Dockerfile the run asks for: the run spec's override, else the job's.
pub fn dockerfile_asked(request: &BuildRequest) -> Option<&str> {
    let job = match &request.source {
        JobSource::Artifact { dockerfile, .. } | JobSource::Repo { dockerfile, .. } => {
            dockerfile.as_deref()
        }
        JobSource::Image { .. } => None,
    };
    request.details.dockerfile_override.as_deref().or(job)
}

async fn fetch_code(request: &BuildRequest, fetcher: &dyn CodeFetcher, code: &Path) -> Result<()> {
    match &request.source {
        JobSource::Image { .. } => Ok(()),
        JobSource::Artifact { artifact, .. } => fetcher
            .fetch_artifact(artifact, code)
            .await
            .map_err(|reason| Error::FetchCode {
                run_id: request.run_id.clone(),
                artifact: artifact.clone(),
                reason,
            }),
        JobSource::Repo { remote, commit, .. } => {
            let details = &request.details;
            let checkout = git::Checkout {
                run_id: &request.run_id,
                remote,
                commit,
                credentials: details.git_credentials.as_ref(),
            };
            checkout.run(code).await?;
            if let Some(patch) = &details.diff_patch {
                checkout.apply_patch(code, patch).await?;
            }
            Ok(())
        }
    }
}

fn remove_git_dir(run_id: &str, code: &Path) -> Result<()> {
    let git_dir = code.join(".git");
    if git_dir.exists() {
        fs::remove_dir_all(&git_dir).map_err(io_error(run_id, "remove .git", &git_dir))?;
    }
    Ok(())
}

fn given_dockerfile(run_id: &str, code: &Path, path: &str) -> Result<String> {
    let relative = Path::new(path);
    let inside = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    let missing = || Error::DockerfileMissing {
        run_id: run_id.to_owned(),
        path: path.to_owned(),
    };
    if !inside {
        return Err(missing());
    }
    fs::read_to_string(code.join(relative)).map_err(|_| missing())
}

fn generated_dockerfile(request: &BuildRequest, code: &Path) -> Result<String> {
    let details = &request.details;
    let python = dockerfile::python_minor(&request.run_id, details.python_version.as_deref())?;
    let dependencies = Dependencies::detect(|file| code.join(file).is_file());
    Ok(dockerfile::generate(&Generated {
        python,
        dependencies,
        entrypoint: details.entrypoint.clone(),
    }))
}

fn io_error<'a>(
    run_id: &'a str,
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Context {
        run_id: run_id.to_owned(),
        what,
        path: path.to_owned(),
        source,
    }
}

/// Writes `root` as a gzipped tar to `archive` and returns the SHA-256 (hex) of the
/// uncompressed tar. Entries are sorted, with mtime 0, owner 0 and mode 0644/0755, so the
/// bytes — and the hash — depend on the paths, contents and executable bits only.
pub fn write_archive(root: &Path, archive: &Path) -> io::Result<String> {
    let file = fs::File::create(archive)?;
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(file, flate2::Compression::default());
    let mut hashing = HashingWriter {
        inner: gzip,
        hasher: Sha256::new(),
    };
    hashing.hasher.update(HASH_SCHEME);
    {
        let mut tar = tar::Builder::new(&mut hashing);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        for relative in sorted_entries(root)? {
            append(&mut tar, root, &relative)?;
        }
        tar.finish()?;
    }
    let HashingWriter { inner, hasher } = hashing;
    inner.finish()?.sync_all()?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, root: &Path, relative: &Path) -> io::Result<()> {
    let path = root.join(relative);
    let meta = fs::symlink_metadata(&path)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
    header.set_mtime(0);
    if meta.file_type().is_symlink() {
        let target = fs::read_link(&path)?;
        header.set_size(0);
        tar.append_link(&mut header, relative, target)
    } else if meta.is_dir() {
        header.set_size(0);
        tar.append_data(&mut header, relative, io::empty())
    } else {
        let file = fs::File::open(&path)?;
        tar.append_data(&mut header, relative, file)
    }
}

/// Every path under `root`, relative, sorted byte-wise, directories before their contents
/// (symbolic links are entries, never followed).
fn sorted_entries(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut children: Vec<PathBuf> = fs::read_dir(root.join(relative))?
        .map(|entry| entry.map(|e| relative.join(e.file_name())))
        .collect::<io::Result<_>>()?;
    children.sort();
    for child in children {
        let is_dir = fs::symlink_metadata(root.join(&child))?.is_dir();
        out.push(child.clone());
        if is_dir {
            walk(root, &child, out)?;
        }
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn hash(dir: &Path) -> String {
        let out = tempfile::tempdir().unwrap();
        write_archive(dir, &out.path().join("a.tgz")).unwrap()
    }

    #[test]
    fn entries_are_sorted_with_directories_before_their_contents() {
        let dir = tree(&[
            ("b.txt", ""),
            ("a/z.txt", ""),
            ("a/b/c.txt", ""),
            ("a0", ""),
        ]);
        let entries: Vec<String> = sorted_entries(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            entries,
            ["a", "a/b", "a/b/c.txt", "a/z.txt", "a0", "b.txt"],
            "{entries:?}"
        );
    }

    #[test]
    fn the_hash_depends_on_contents_and_paths_not_on_times() {
        let one = tree(&[
            ("src/train.py", "print(1)\n"),
            ("Dockerfile.wandb", "FROM x\n"),
        ]);
        let two = tree(&[
            ("src/train.py", "print(1)\n"),
            ("Dockerfile.wandb", "FROM x\n"),
        ]);
        let file = fs::File::options()
            .write(true)
            .open(two.path().join("src/train.py"))
            .unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(hash(one.path()), hash(two.path()));
        let other = tree(&[
            ("src/train.py", "print(2)\n"),
            ("Dockerfile.wandb", "FROM x\n"),
        ]);
        assert_ne!(hash(one.path()), hash(other.path()));
        let moved = tree(&[
            ("src/main.py", "print(1)\n"),
            ("Dockerfile.wandb", "FROM x\n"),
        ]);
        assert_ne!(hash(one.path()), hash(moved.path()));
    }

    #[test]
    fn the_archive_unpacks_to_the_context() {
        let dir = tree(&[
            ("src/train.py", "print(1)\n"),
            ("Dockerfile.wandb", "FROM x\n"),
        ]);
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("a.tgz");
        write_archive(dir.path(), &archive).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
            fs::File::open(&archive).unwrap(),
        ));
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile.wandb", "src", "src/train.py"]);
    }
}
