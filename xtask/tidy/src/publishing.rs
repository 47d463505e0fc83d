//! Crates other Rust tools can depend on are publishable and say what they are; crates that
//! only serve this repository are not.

use crate::finding::{Finding, Location, Rule};
use crate::workspace::{Manifest, Package};

/// The crates meant for embedding (published to crates.io).
pub(crate) const EMBEDDABLE: &[&str] = &[
    "rlaunch-model",
    "rlaunch-render",
    "rlaunch-gpu",
    "rlaunch-wandb-api",
    "rlaunch-wandb-fake",
    "rlaunch-k8s-runner",
    "rlaunch-builder",
    "rlaunch-agent",
];

/// Crates that only serve this repository and are never published.
pub(crate) const INTERNAL: &[&str] = &["rlaunch-testkit", "rlaunch-tests", "rlaunch-tidy", "xtask"];

/// The line after the `//!` block of `lib.rs` that makes the README the crate docs (and its
/// examples doc tests).
pub(crate) const README_AS_DOCS: &str = "#![doc = include_str!(\"../README.md\")]";

/// Findings for one package; `readme` is the text of its README, if it has one.
pub(crate) fn check(package: &Package, readme: Option<&str>) -> Vec<Finding> {
    let name = package.name.as_str();
    let mut gaps = Vec::new();
    if INTERNAL.contains(&name) && package.manifest.publish {
        gaps.push(gap(
            "publish",
            "set `publish = false`: it only serves this repository",
        ));
    }
    if EMBEDDABLE.contains(&name) {
        gaps.extend(manifest_gaps(&package.manifest));
        let lib = package
            .lib_rs()
            .map(|f| f.text.as_str())
            .unwrap_or_default();
        gaps.extend(docs_gaps(readme, lib));
    }
    findings(package, gaps)
}

fn gap(key: &str, fix: &str) -> (String, String) {
    (key.to_owned(), fix.to_owned())
}

/// What `Cargo.toml` of an embeddable crate lacks.
fn manifest_gaps(m: &Manifest) -> Vec<(String, String)> {
    let mut gaps = Vec::new();
    if !m.publish {
        gaps.push(gap(
            "publish",
            "set `publish = true`: other tools embed this crate",
        ));
    }
    for (key, value) in [
        ("description", &m.description),
        ("license", &m.license),
        ("repository", &m.repository),
    ] {
        if value.as_deref().is_none_or(str::is_empty) {
            gaps.push(gap(
                key,
                &format!("set `{key}` (or `{key}.workspace = true`)"),
            ));
        }
    }
    if m.readme.as_deref() != Some("README.md") {
        gaps.push(gap(
            "readme",
            "set `readme = \"README.md\"` and add the file",
        ));
    }
    if m.keywords.is_empty() || m.keywords.len() > 5 {
        gaps.push(gap("keywords", "set one to five `keywords`"));
    }
    if m.categories.is_empty() {
        gaps.push(gap("categories", "set `categories` from crates.io's list"));
    }
    if !m.docs_rs {
        gaps.push(gap("docs.rs", "add a `[package.metadata.docs.rs]` table"));
    }
    gaps
}

/// What the README and `lib.rs` of an embeddable crate lack.
fn docs_gaps(readme: Option<&str>, lib: &str) -> Vec<(String, String)> {
    let mut gaps = Vec::new();
    match readme {
        None => gaps.push(gap("README.md", "add README.md next to Cargo.toml")),
        Some(text) if !opens_with_rust_example(text) => gaps.push(gap(
            "README.md",
            "open README.md with a short ```rust (or ```no_run) example before any other code block",
        )),
        Some(_) => {}
    }
    if !lib.lines().any(|l| l.trim() == README_AS_DOCS) {
        gaps.push(gap(
            "lib.rs",
            &format!(
                "add `{README_AS_DOCS}` after the `//!` block of lib.rs, so the README's example is a doc test"
            ),
        ));
    }
    gaps
}

/// One finding per package listing every gap, so the allow-list and the output stay short.
fn findings(package: &Package, problems: Vec<(String, String)>) -> Vec<Finding> {
    if problems.is_empty() {
        return Vec::new();
    }
    let gaps: Vec<String> = problems
        .iter()
        .map(|(key, fix)| format!("{key}: {fix}"))
        .collect();
    vec![Finding {
        location: Location {
            file: package.manifest_rel.clone(),
            line: 1,
        },
        rule: Rule::Publishing,
        krate: package.name.clone(),
        key: package.manifest_rel.clone(),
        message: gaps.join("; "),
    }]
}

/// Whether the first fenced code block is Rust (a doc test): ```` ``` ````, ```` ```rust ````,
/// ```` ```no_run ````, ```` ```rust,no_run ````, …
fn opens_with_rust_example(text: &str) -> bool {
    let Some(fence) = text.lines().map(str::trim).find(|l| l.starts_with("```")) else {
        return false;
    };
    let info = fence.trim_start_matches('`');
    info.is_empty()
        || info.split(',').all(|tag| {
            matches!(
                tag.trim(),
                "rust" | "no_run" | "should_panic" | "edition2021" | "edition2024"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::SourceFile;

    fn package(name: &str, manifest: Manifest, lib: &str) -> Package {
        Package {
            name: name.to_owned(),
            dir: "/w/crates/x".into(),
            manifest_rel: "crates/x/Cargo.toml".to_owned(),
            manifest,
            files: vec![SourceFile {
                rel: "crates/x/src/lib.rs".to_owned(),
                path: "/w/crates/x/src/lib.rs".into(),
                module: Some(Vec::new()),
                text: lib.to_owned(),
            }],
        }
    }

    fn complete() -> Manifest {
        Manifest {
            publish: true,
            description: Some("d".into()),
            license: Some("Apache-2.0".into()),
            repository: Some("https://example.com".into()),
            readme: Some("README.md".into()),
            keywords: vec!["k".into()],
            categories: vec!["c".into()],
            docs_rs: true,
        }
    }

    const README: &str = "# x\n\n```rust,no_run\nfn main() {}\n```\n\n```sh\ncargo run\n```\n";
    const LIB: &str = "//! Docs.\n#![doc = include_str!(\"../README.md\")]\n";

    #[test]
    fn a_complete_embeddable_crate_passes() {
        let p = package("rlaunch-gpu", complete(), LIB);
        assert_eq!(check(&p, Some(README)), []);
    }

    #[test]
    fn an_unpublishable_embeddable_crate_fails_naming_each_gap() {
        let manifest = Manifest {
            publish: false,
            readme: None,
            docs_rs: false,
            ..complete()
        };
        let p = package("rlaunch-wandb-fake", manifest, "//! Docs.\n");
        let findings = check(&p, Some("# x\n```sh\nls\n```\n```rust\n```"));
        assert_eq!(findings.len(), 1);
        let gaps: Vec<&str> = findings[0]
            .message
            .split("; ")
            .filter_map(|gap| gap.split(':').next())
            .collect();
        assert_eq!(
            gaps,
            ["publish", "readme", "docs.rs", "README.md", "lib.rs"]
        );
        assert_eq!(findings[0].location.to_string(), "crates/x/Cargo.toml:1");
    }

    #[test]
    fn an_internal_crate_must_not_be_publishable() {
        let p = package("rlaunch-testkit", complete(), LIB);
        let messages: Vec<String> = check(&p, None).into_iter().map(|f| f.message).collect();
        assert_eq!(
            messages,
            ["publish: set `publish = false`: it only serves this repository"]
        );
    }
}
