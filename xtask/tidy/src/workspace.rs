//! The workspace as the rules see it: packages from `cargo metadata` (run offline, deps
//! resolved for the host), the resolved graph of normal dependencies by package name, and
//! the source files of each package with their module paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::error::Error;

/// Normal (non-dev, non-build) dependency edges between package names, as resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct DepGraph {
    pub(crate) edges: BTreeMap<String, BTreeSet<String>>,
}

impl DepGraph {
    /// A graph from `(from, to)` pairs.
    #[cfg(test)]
    pub(crate) fn from_edges(edges: &[(&str, &str)]) -> DepGraph {
        let mut graph = DepGraph::default();
        for (from, to) in edges {
            graph
                .edges
                .entry((*from).to_owned())
                .or_default()
                .insert((*to).to_owned());
        }
        graph
    }

    /// The shortest chain of packages from `from` to `to` (both included), if any.
    pub(crate) fn path(&self, from: &str, to: &str) -> Option<Vec<String>> {
        let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        let mut seen = BTreeSet::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut chain = vec![to.to_owned()];
                let mut at = to;
                while let Some(&p) = previous.get(at) {
                    chain.push(p.to_owned());
                    at = p;
                }
                chain.reverse();
                return Some(chain);
            }
            for next in self.edges.get(node).into_iter().flatten() {
                if seen.insert(next.as_str()) {
                    previous.insert(next.as_str(), node);
                    queue.push_back(next.as_str());
                }
            }
        }
        None
    }
}

/// A Rust source file.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Path relative to the workspace root, `/`-separated (for messages).
    pub(crate) rel: String,
    /// Absolute path.
    pub(crate) path: PathBuf,
    /// Module path inside its crate (`[]` for the crate root); `None` outside `src/` of the
    /// library (tests, benches, binaries).
    pub(crate) module: Option<Vec<String>>,
    pub(crate) text: String,
}

/// The parts of a package's manifest the publishing rule reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Manifest {
    pub(crate) publish: bool,
    pub(crate) description: Option<String>,
    pub(crate) license: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) readme: Option<String>,
    pub(crate) keywords: Vec<String>,
    pub(crate) categories: Vec<String>,
    pub(crate) docs_rs: bool,
}

/// A workspace member.
#[derive(Debug, Clone)]
pub(crate) struct Package {
    pub(crate) name: String,
    /// The package directory.
    pub(crate) dir: PathBuf,
    /// `Cargo.toml`, relative to the workspace root.
    pub(crate) manifest_rel: String,
    pub(crate) manifest: Manifest,
    /// Every `.rs` file under `src/`, `tests/`, `benches/` and `examples/`.
    pub(crate) files: Vec<SourceFile>,
}

impl Package {
    /// The library root, if the package has a library.
    pub(crate) fn lib_rs(&self) -> Option<&SourceFile> {
        self.files
            .iter()
            .find(|f| f.module.as_ref().is_some_and(Vec::is_empty))
    }

    /// The files of the library crate with their module paths.
    pub(crate) fn lib_files(&self) -> impl Iterator<Item = (&[String], &SourceFile)> {
        self.files
            .iter()
            .filter_map(|f| Some((f.module.as_deref()?, f)))
    }
}

/// What the rules run on.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) packages: Vec<Package>,
    pub(crate) graph: DepGraph,
}

/// Reads the workspace at `root`: `cargo metadata` offline plus every source file.
pub(crate) fn load(root: &Path) -> Result<Workspace, Error> {
    let metadata = cargo_metadata(root)?;
    let root = metadata["workspace_root"]
        .as_str()
        .map_or_else(|| root.to_owned(), PathBuf::from);
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let all = metadata["packages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut packages = Vec::new();
    for package in all {
        if members.contains(package["id"].as_str().unwrap_or_default()) {
            packages.push(package_of(&root, package)?);
        }
    }
    packages.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Workspace {
        graph: graph_of(&metadata),
        root,
        packages,
    })
}

fn cargo_metadata(root: &Path) -> Result<Value, Error> {
    let host = host_triple()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let args = [
        "metadata",
        "--format-version=1",
        "--offline",
        "--filter-platform",
        host.as_str(),
    ];
    let stdout = run(
        Command::new(&cargo).args(args).current_dir(root),
        "cargo metadata",
    )?;
    serde_json::from_slice(&stdout).map_err(|e| Error::Metadata(e.to_string()))
}

fn host_triple() -> Result<String, Error> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let stdout = run(Command::new(rustc).arg("-vV"), "rustc -vV")?;
    String::from_utf8_lossy(&stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .ok_or_else(|| Error::Metadata("`rustc -vV` printed no `host:` line".to_owned()))
}

fn run(command: &mut Command, what: &str) -> Result<Vec<u8>, Error> {
    let output = command.output().map_err(|source| Error::Spawn {
        command: what.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::Command {
            command: what.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

fn graph_of(metadata: &Value) -> DepGraph {
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    let mut graph = DepGraph::default();
    let nodes = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten();
    for node in nodes {
        let Some(from) = node["id"].as_str().and_then(|id| names.get(id)) else {
            continue;
        };
        let entry = graph.edges.entry((*from).to_owned()).or_default();
        for dep in node["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null());
            if let Some(to) = dep["pkg"].as_str().and_then(|id| names.get(id))
                && normal
            {
                entry.insert((*to).to_owned());
            }
        }
    }
    graph
}

fn package_of(root: &Path, package: &Value) -> Result<Package, Error> {
    let manifest_path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
    let dir = manifest_path
        .parent()
        .map_or_else(|| root.to_owned(), Path::to_owned);
    let string = |key: &str| package[key].as_str().map(str::to_owned);
    let strings = |key: &str| -> Vec<String> {
        package[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let manifest = Manifest {
        // `publish = false` shows as `[]`; publishable anywhere shows as `null`.
        publish: !package["publish"].as_array().is_some_and(Vec::is_empty),
        description: string("description"),
        license: string("license"),
        repository: string("repository"),
        readme: string("readme"),
        keywords: strings("keywords"),
        categories: strings("categories"),
        docs_rs: package["metadata"]["docs"]["rs"].is_object(),
    };
    let lib_src = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "lib" || k == "proc-macro"))
        })
        .and_then(|t| t["src_path"].as_str())
        .map(PathBuf::from);
    let mut files = Vec::new();
    for sub in ["src", "tests", "benches", "examples"] {
        collect_rs(&dir.join(sub), &mut files)?;
    }
    let files = files
        .into_iter()
        .map(|path| source_file(root, &path, lib_src.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Package {
        name: string("name").unwrap_or_default(),
        manifest_rel: relative(root, &manifest_path),
        dir,
        manifest,
        files,
    })
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    if !dir.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_rs(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn source_file(root: &Path, path: &Path, lib_src: Option<&Path>) -> Result<SourceFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let module = lib_src.and_then(|lib| module_path(lib, path));
    Ok(SourceFile {
        rel: relative(root, path),
        path: path.to_owned(),
        module,
        text,
    })
}

/// The module path of `file` in the library rooted at `lib_rs`: `src/a/b.rs` and
/// `src/a/b/mod.rs` are `a::b`. `None` for files outside the library (`src/main.rs`,
/// `src/bin/`).
pub(crate) fn module_path(lib_rs: &Path, file: &Path) -> Option<Vec<String>> {
    if file == lib_rs {
        return Some(Vec::new());
    }
    let src = lib_rs.parent()?;
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    if parts.first().is_some_and(|p| p == "bin") || (parts.is_empty() && last == "main.rs") {
        return None;
    }
    let stem = last.strip_suffix(".rs")?;
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    Some(parts)
}

pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        let lib = Path::new("/w/c/src/lib.rs");
        let m = |f: &str| module_path(lib, Path::new(f));
        assert_eq!(m("/w/c/src/lib.rs"), Some(vec![]));
        assert_eq!(m("/w/c/src/a.rs"), Some(vec!["a".to_owned()]));
        assert_eq!(
            m("/w/c/src/a/b.rs"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(m("/w/c/src/a/mod.rs"), Some(vec!["a".to_owned()]));
        assert_eq!(m("/w/c/src/main.rs"), None);
        assert_eq!(m("/w/c/src/bin/x.rs"), None);
        assert_eq!(m("/w/c/tests/t.rs"), None);
    }

    #[test]
    fn dependency_paths_are_transitive_and_shortest() {
        let graph = DepGraph::from_edges(&[("a", "b"), ("b", "c"), ("a", "d"), ("d", "b")]);
        assert_eq!(
            graph.path("a", "c"),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(graph.path("c", "a"), None);
    }
}
