//! Rules about single files: `lib.rs` opens with docs; no `too_many_arguments`
//! allowances; `include_str!`/`include_bytes!` stay inside the package.

use std::path::{Component, Path, PathBuf};

use crate::finding::{Finding, Location, Rule};
use crate::syntax::{self, Tok};

/// `lib.rs` must open with `//!` docs saying what the crate is for.
pub(crate) fn lib_docs(krate: &str, rel: &str, text: &str) -> Option<Finding> {
    if text.trim_start().starts_with("//!") {
        return None;
    }
    Some(Finding {
        location: Location {
            file: rel.to_owned(),
            line: 1,
        },
        rule: Rule::LibDocs,
        krate: krate.to_owned(),
        key: "lib.rs".to_owned(),
        message: "lib.rs opens with `//!` docs saying what the crate is for (before any \
                  attribute or item)"
            .to_owned(),
    })
}

/// Every `too_many_arguments` allowance (`#[allow(clippy::too_many_arguments)]`,
/// `#[expect(…)]`) in a file.
pub(crate) fn too_many_arguments(krate: &str, rel: &str, text: &str) -> Vec<Finding> {
    let blanked = syntax::blank(text);
    let lines = syntax::Lines::new(text);
    let toks = syntax::tokens(&blanked);
    toks.windows(3)
        .filter(|w| {
            w[0].is_ident("clippy")
                && w[1].tok == Tok::PathSep
                && w[2].is_ident("too_many_arguments")
        })
        .map(|w| &w[2])
        .map(|t| Finding {
            location: Location {
                file: rel.to_owned(),
                line: lines.of(t.offset),
            },
            rule: Rule::TooManyArguments,
            krate: krate.to_owned(),
            key: rel.to_owned(),
            message: "a `too_many_arguments` allowance: group the arguments into a struct \
                      named after what they describe, and remove the allowance"
                .to_owned(),
        })
        .collect()
}

/// `include_str!("…")`/`include_bytes!("…")` of a file outside `package_dir`: `cargo
/// package` cannot ship it, so the published crate would not build.
pub(crate) fn includes_outside(
    krate: &str,
    package_dir: &Path,
    file: &Path,
    rel: &str,
    text: &str,
) -> Vec<Finding> {
    let blanked = syntax::blank(text);
    let lines = syntax::Lines::new(text);
    let toks = syntax::tokens(&blanked);
    let mut findings = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let is_include = t.is_ident("include_str") || t.is_ident("include_bytes");
        let called = toks.get(i + 1).is_some_and(|t| t.is_punct('!'))
            && toks.get(i + 2).is_some_and(|t| t.is_punct('('));
        if !(is_include && called) {
            continue;
        }
        let Some(literal) = toks
            .get(i + 2)
            .and_then(|open| string_after(text, open.offset))
        else {
            continue;
        };
        let base = file.parent().unwrap_or(package_dir);
        let target = normalize(&base.join(&literal));
        if target.starts_with(package_dir) {
            continue;
        }
        findings.push(Finding {
            location: Location {
                file: rel.to_owned(),
                line: lines.of(t.offset),
            },
            rule: Rule::IncludeOutsidePackage,
            krate: krate.to_owned(),
            key: literal.clone(),
            message: format!(
                "includes `{literal}`, which lies outside the package, so the published crate \
                 cannot build; keep the file inside the package (a copy checked by a test, or \
                 a symlink, which `cargo package` follows) or depend on the crate that owns it"
            ),
        });
    }
    findings
}

/// The plain string literal that follows `offset` (the `(` of a macro call), if the next
/// non-blank character opens one.
fn string_after(text: &str, offset: usize) -> Option<String> {
    let rest = text.get(offset + 1..)?.trim_start();
    let body = rest.strip_prefix('"')?;
    Some(body[..body.find('"')?].to_owned())
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lib_rs_without_docs_fails() {
        assert!(lib_docs("k", "src/lib.rs", "//! The crate.\nmod a;").is_none());
        let f = lib_docs("k", "src/lib.rs", "#![allow(x)]\n//! Late docs.\n");
        assert_eq!(
            f.map(|f| f.location.to_string()),
            Some("src/lib.rs:1".to_owned())
        );
        assert!(
            lib_docs(
                "k",
                "src/lib.rs",
                "/// Item docs are not crate docs.\nmod a;"
            )
            .is_some()
        );
    }

    #[test]
    fn too_many_arguments_allowances_fail_with_their_line() {
        let text = "fn a() {}\n#[allow(clippy::too_many_arguments)]\nfn b() {}\n// too_many_arguments in a comment\n#[expect(clippy::too_many_arguments)]\nfn c() {}";
        let lines: Vec<usize> = too_many_arguments("k", "src/x.rs", text)
            .iter()
            .map(|f| f.location.line)
            .collect();
        assert_eq!(lines, [2, 5]);
    }

    #[test]
    fn an_include_outside_the_package_fails() {
        let dir = Path::new("/w/crates/wandb-fake");
        let file = Path::new("/w/crates/wandb-fake/src/lib.rs");
        let text = "const A: &str = include_str!(\"../graphql/schema.graphql\");\n\
                    const B: &str = include_str!(\"../../wandb-api/graphql/schema.graphql\");\n\
                    const C: &[u8] = include_bytes!( \"../../../etc/x\" );\n\
                    // include_str!(\"../../nope\")";
        let findings = includes_outside("rlaunch-wandb-fake", dir, file, "src/lib.rs", text);
        let found: Vec<(usize, &str)> = findings
            .iter()
            .map(|f| (f.location.line, f.key.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (2, "../../wandb-api/graphql/schema.graphql"),
                (3, "../../../etc/x")
            ]
        );
    }
}
