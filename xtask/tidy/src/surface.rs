//! One public path per type: a module is either private with its items re-exported, or
//! public and not re-exported. `pub mod x;` next to `pub use x::Y;` gives `Y` two names.

use std::collections::{BTreeMap, BTreeSet};

use crate::finding::{Finding, Location, Rule};
use crate::modules::Crate;
use crate::syntax::Visibility;

/// Findings, one per module that is both public and re-exported from, for crate `krate`.
pub(crate) fn check(krate_name: &str, krate: &Crate) -> Vec<Finding> {
    let public = public_modules(krate);
    let mut reexports: BTreeMap<Vec<String>, Vec<(Location, String)>> = BTreeMap::new();
    for file in &krate.files {
        for decl in krate_uses(file, Visibility::Public) {
            let scope = [file.module.as_slice(), decl.inline.as_slice()].concat();
            for path in &decl.paths {
                let Some(abs) = krate.resolve(&scope, &path.segments) else {
                    continue;
                };
                let Some(module) = public
                    .keys()
                    .filter(|m| abs.len() > m.len() && abs.starts_with(m) && **m != scope)
                    .max_by_key(|m| m.len())
                else {
                    continue;
                };
                reexports.entry(module.clone()).or_default().push((
                    Location {
                        file: file.rel.clone(),
                        line: decl.line,
                    },
                    abs.join("::"),
                ));
            }
        }
    }
    reexports
        .into_iter()
        .map(|(module, uses)| {
            let name = module.join("::");
            let lines: BTreeSet<String> = uses.iter().map(|(l, _)| l.to_string()).collect();
            let items: Vec<&str> = uses.iter().map(|(_, item)| item.as_str()).collect();
            Finding {
                location: public[&module].clone(),
                rule: Rule::PubAndReexported,
                krate: krate_name.to_owned(),
                key: name.clone(),
                message: format!(
                    "module `{name}` is `pub` and also re-exported ({} at {}): each type gets \
                     two public paths; make it `mod {}` and keep the re-exports, or drop them",
                    items.join(", "),
                    lines.into_iter().collect::<Vec<_>>().join(", "),
                    module.last().map_or("", String::as_str),
                ),
            }
        })
        .collect()
}

fn krate_uses(
    file: &crate::modules::ModFile,
    visibility: Visibility,
) -> impl Iterator<Item = &crate::syntax::UseDecl> {
    file.items
        .uses
        .iter()
        .filter(move |d| d.visibility == visibility)
}

/// Modules reachable from outside (every ancestor declared `pub mod`), with where each
/// is declared.
fn public_modules(krate: &Crate) -> BTreeMap<Vec<String>, Location> {
    let mut declared: BTreeMap<Vec<String>, Location> = BTreeMap::new();
    for file in &krate.files {
        for m in file
            .items
            .mods
            .iter()
            .filter(|m| m.visibility == Visibility::Public)
        {
            let path = [
                file.module.as_slice(),
                m.inline.as_slice(),
                std::slice::from_ref(&m.name),
            ]
            .concat();
            declared.insert(
                path,
                Location {
                    file: file.rel.clone(),
                    line: m.line,
                },
            );
        }
    }
    let reachable: Vec<Vec<String>> = declared
        .keys()
        .filter(|path| (1..path.len()).all(|n| declared.contains_key(&path[..n])))
        .cloned()
        .collect();
    declared.retain(|path, _| reachable.contains(path));
    declared
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ModFile;

    #[test]
    fn a_pub_module_with_a_reexport_fails_naming_both_lines() {
        let krate = Crate::new(vec![
            ModFile::parse(
                &[],
                "src/lib.rs",
                "pub mod error;\nmod store;\npub use store::Store;\npub use error::{Error, Result};",
            ),
            ModFile::parse(&["error".to_owned()], "src/error.rs", ""),
            ModFile::parse(&["store".to_owned()], "src/store.rs", ""),
        ]);
        let findings = check("rlaunch-gpu", &krate);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].key, "error");
        assert_eq!(findings[0].location.to_string(), "src/lib.rs:1");
        assert!(
            findings[0]
                .message
                .contains("error::Error, error::Result at src/lib.rs:4"),
            "{}",
            findings[0].message
        );
    }

    #[test]
    fn private_modules_reexported_and_public_modules_alone_pass() {
        let krate = Crate::new(vec![
            ModFile::parse(
                &[],
                "src/lib.rs",
                "mod a;\npub mod b;\npub use a::A;\nuse b::B;",
            ),
            ModFile::parse(
                &["a".to_owned()],
                "src/a.rs",
                "pub mod inner;\npub use inner::X;",
            ),
            ModFile::parse(&["b".to_owned()], "src/b.rs", "pub(crate) use crate::a::A;"),
        ]);
        assert_eq!(check("x", &krate), []);
    }
}
