//! The module tree of one library crate, from its files and their `mod`/`use` items, and
//! resolution of `use` paths (`crate::`, `self::`, `super::`, and paths relative to the
//! current module) to absolute module paths inside the crate.

use std::collections::{BTreeMap, BTreeSet};

use crate::syntax::{self, FileItems};

/// One file of the crate: its module path, its name for messages and its items.
#[derive(Debug, Clone)]
pub(crate) struct ModFile {
    pub(crate) module: Vec<String>,
    pub(crate) rel: String,
    pub(crate) items: FileItems,
}

impl ModFile {
    /// Parses `text` as the file of module `module`.
    pub(crate) fn parse(module: &[String], rel: &str, text: &str) -> ModFile {
        ModFile {
            module: module.to_vec(),
            rel: rel.to_owned(),
            items: syntax::items(text),
        }
    }
}

/// The modules of a crate.
#[derive(Debug, Clone)]
pub(crate) struct Crate {
    pub(crate) files: Vec<ModFile>,
    /// Every module path that exists: files and inline modules.
    known: BTreeSet<Vec<String>>,
    /// Modules declared `#[cfg(test)]` (and so everything inside them).
    test_only: BTreeSet<Vec<String>>,
    /// Names the crate root imports (`use error::Error;`) → the top-level module they
    /// come from, so `crate::Error` counts as an import of `error`.
    root_names: BTreeMap<String, String>,
}

impl Crate {
    /// The crate made of `files` (one of them with the empty module path, the root).
    pub(crate) fn new(files: Vec<ModFile>) -> Crate {
        let mut known: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
        let mut test_only = BTreeSet::new();
        for file in &files {
            for m in &file.items.mods {
                let mut path = file.module.clone();
                path.extend(m.inline.iter().cloned());
                path.push(m.name.clone());
                if m.test_only {
                    test_only.insert(path.clone());
                }
                known.insert(path);
            }
        }
        let mut krate = Crate {
            files,
            known,
            test_only,
            root_names: BTreeMap::new(),
        };
        krate.root_names = krate.collect_root_names();
        krate
    }

    fn collect_root_names(&self) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        for file in self.files.iter().filter(|f| f.module.is_empty()) {
            for decl in file.items.uses.iter().filter(|d| d.inline.is_empty()) {
                for path in &decl.paths {
                    let (Some(name), Some(abs)) = (&path.name, self.resolve(&[], &path.segments))
                    else {
                        continue;
                    };
                    if let Some(top) = abs.first().filter(|_| abs.len() > 1) {
                        names.insert(name.clone(), top.clone());
                    }
                }
            }
        }
        names
    }

    /// Whether `module` only exists in test builds (it or a parent is `#[cfg(test)]`).
    pub(crate) fn is_test_only(&self, module: &[String]) -> bool {
        (1..=module.len()).any(|n| self.test_only.contains(&module[..n]))
    }

    /// The absolute module path a `use` path written in module `scope` points into, or
    /// `None` if it leaves the crate (another crate, `std`).
    pub(crate) fn resolve(&self, scope: &[String], segments: &[String]) -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        match first.as_str() {
            "crate" => Some(rest.to_vec()),
            "self" => Some([scope, rest].concat()),
            "super" => {
                let mut base = scope.to_vec();
                base.pop()?;
                let mut rest = rest;
                while let Some(("super", more)) = rest.split_first().map(|(s, m)| (s.as_str(), m)) {
                    base.pop()?;
                    rest = more;
                }
                Some([base.as_slice(), rest].concat())
            }
            _ => {
                let mut candidate = scope.to_vec();
                candidate.push(first.clone());
                self.known
                    .contains(&candidate)
                    .then(|| [scope, segments].concat())
            }
        }
    }

    /// The top-level module an absolute path lands in (through the root's imports for
    /// `crate::Name`), if any.
    pub(crate) fn top_of(&self, abs: &[String]) -> Option<String> {
        let first = abs.first()?;
        if self.known.contains(std::slice::from_ref(first)) {
            return Some(first.clone());
        }
        self.root_names.get(first).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(path: &str) -> Vec<String> {
        path.split("::")
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn paths_resolve_against_the_module_tree() {
        let krate = Crate::new(vec![
            ModFile::parse(&[], "lib.rs", "mod a;\nmod b;\npub use b::Thing;"),
            ModFile::parse(&s("a"), "a.rs", "mod inner { }"),
            ModFile::parse(&s("b"), "b.rs", ""),
        ]);
        assert_eq!(krate.resolve(&s("a"), &s("crate::b::X")), Some(s("b::X")));
        assert_eq!(krate.resolve(&s("a"), &s("super::b::X")), Some(s("b::X")));
        assert_eq!(
            krate.resolve(&s("a"), &s("self::inner::X")),
            Some(s("a::inner::X"))
        );
        assert_eq!(
            krate.resolve(&s("a"), &s("inner::X")),
            Some(s("a::inner::X"))
        );
        assert_eq!(krate.resolve(&[], &s("b::X")), Some(s("b::X")));
        assert_eq!(krate.resolve(&s("a"), &s("serde::Serialize")), None);
        assert_eq!(krate.top_of(&s("Thing")), Some("b".to_owned()));
        assert_eq!(krate.top_of(&s("Other")), None);
    }
}
