//! The workspace rules of ARCHITECTURE.md, checked: `cargo test` runs them (the test in
//! `tests/tidy.rs`), and so does `cargo xtask tidy`. They read `cargo metadata` (offline)
//! and source text only, so they take about a second and never build anything.
//!
//! | rule | fails when |
//! | --- | --- |
//! | `forbidden-dependency` | the W&B client reaches the render engine, the GPU crate, `k8s-openapi` or the runner through any chain of normal dependencies; the runner reaches the W&B client; a builder reaches the W&B client; the model reaches `k8s-openapi`; a pure crate reaches an IO runtime (tokio, reqwest, kube, …) |
//! | `pure-crate-io` | `rlaunch-model`, `rlaunch-render` or `rlaunch-gpu` calls or imports the file system, network, processes, threads, environment, terminal or clock |
//! | `module-cycle` | top-level modules of one crate import each other in a cycle |
//! | `pub-and-reexported` | a module is `pub` and its items are also re-exported (two public paths per type) |
//! | `lib-docs` | a `lib.rs` does not open with `//!` docs |
//! | `too-many-arguments` | a `too_many_arguments` allowance exists anywhere |
//! | `include-outside-package` | `include_str!`/`include_bytes!` reaches outside its package (it could not be published) |
//! | `publishing` | an embeddable crate lacks publishing metadata, a README opening with a Rust example, or the README as its crate docs; an internal crate is publishable |
//!
//! Every finding names the file and line and says what to do. Violations that exist today
//! are listed, with their crate, in the allow-list (`ALLOWED`); it can only shrink.

mod allow;
mod cycles;
mod deps;
mod error;
mod files;
mod finding;
mod modules;
mod publishing;
mod purity;
mod surface;
mod syntax;
mod workspace;

use std::fmt;
use std::path::Path;

pub use allow::Allowed;
pub use error::Error;
pub use finding::{Finding, Location, Rule};

use modules::{Crate, ModFile};
use workspace::{Package, Workspace};

/// What tidy found in a workspace.
#[derive(Debug, Clone)]
pub struct Report {
    /// Violations not on the allow-list: each fails tidy.
    pub findings: Vec<Finding>,
    /// Violations on the allow-list (tolerated for now).
    pub allowed: Vec<Finding>,
    /// Allow-list entries that match nothing any more: remove them.
    pub stale: Vec<Allowed>,
}

impl Report {
    /// No violation outside the allow-list and no stale entry.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.stale.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "tidy: {finding}")?;
        }
        for entry in &self.stale {
            writeln!(
                f,
                "tidy: allow-list entry {entry} matches nothing any more: remove it from \
                 `ALLOWED` in xtask/tidy/src/allow.rs"
            )?;
        }
        write!(
            f,
            "tidy: {} problem(s), {} stale allow-list entr(y/ies), {} tolerated violation(s) on the allow-list",
            self.findings.len(),
            self.stale.len(),
            self.allowed.len()
        )
    }
}

/// Runs every rule on the workspace at `root`.
pub fn check(root: &Path) -> Result<Report, Error> {
    let workspace = workspace::load(root)?;
    let findings = findings(&workspace)?;
    let (findings, allowed, stale) = allow::apply(findings, allow::ALLOWED);
    Ok(Report {
        findings,
        allowed,
        stale,
    })
}

/// Every finding of every rule, sorted, before the allow-list.
fn findings(workspace: &Workspace) -> Result<Vec<Finding>, Error> {
    let manifest = |name: &str| {
        workspace
            .packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.manifest_rel.clone())
    };
    let mut all = deps::check(&workspace.graph, &manifest);
    for package in &workspace.packages {
        all.extend(package_findings(package)?);
    }
    all.extend(clippy_config(workspace)?);
    all.sort();
    Ok(all)
}

fn package_findings(package: &Package) -> Result<Vec<Finding>, Error> {
    let name = package.name.as_str();
    let mut out = Vec::new();
    for file in &package.files {
        if deps::PURE.contains(&name) && file.module.is_some() {
            out.extend(purity::check(name, &file.rel, &file.text));
        }
        out.extend(files::too_many_arguments(name, &file.rel, &file.text));
        out.extend(files::includes_outside(
            name,
            &package.dir,
            &file.path,
            &file.rel,
            &file.text,
        ));
    }
    if let Some(lib) = package.lib_rs() {
        out.extend(files::lib_docs(name, &lib.rel, &lib.text));
        let krate = Crate::new(
            package
                .lib_files()
                .map(|(module, f)| ModFile::parse(module, &f.rel, &f.text))
                .collect(),
        );
        out.extend(cycles::check(name, &krate));
        out.extend(surface::check(name, &krate));
    }
    let readme_path = package.dir.join("README.md");
    let readme = match std::fs::read_to_string(&readme_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Read {
                path: readme_path,
                source,
            });
        }
    };
    out.extend(publishing::check(package, readme.as_deref()));
    Ok(out)
}

/// `clippy.toml` must not raise the argument limit instead of allowing it per function.
fn clippy_config(workspace: &Workspace) -> Result<Vec<Finding>, Error> {
    let path = workspace.root.join("clippy.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Read { path, source }),
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("too-many-arguments-threshold"))
        .map(|(n, _)| Finding {
            location: Location {
                file: "clippy.toml".to_owned(),
                line: n + 1,
            },
            rule: Rule::TooManyArguments,
            krate: "workspace".to_owned(),
            key: "clippy.toml".to_owned(),
            message: "raises clippy's argument limit for every crate: remove it and group \
                      arguments into structs"
                .to_owned(),
        })
        .collect())
}
