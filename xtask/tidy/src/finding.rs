//! What a rule reports: the rule, the crate, a stable key for the allow-list, where, and
//! what to do about it.

use std::fmt;

/// The rules tidy checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A crate depends, directly or through other crates, on one it must not.
    ForbiddenDependency,
    /// A pure crate (model, render, gpu) touches IO, the environment or the clock.
    PureCrateIo,
    /// Top-level modules of one crate import each other in a cycle.
    ModuleCycle,
    /// A module is `pub` and its items are also re-exported: two public paths per type.
    PubAndReexported,
    /// A `lib.rs` does not open with `//!` docs saying what the crate is for.
    LibDocs,
    /// A `too_many_arguments` allowance: pass a struct instead.
    TooManyArguments,
    /// `include_str!`/`include_bytes!` of a file outside the package: it cannot be published.
    IncludeOutsidePackage,
    /// A crate meant for embedding lacks what publishing it needs, or one that is not
    /// meant for it is publishable.
    Publishing,
}

impl Rule {
    /// The rule's short name, as printed and as used in the allow-list.
    pub fn name(self) -> &'static str {
        match self {
            Rule::ForbiddenDependency => "forbidden-dependency",
            Rule::PureCrateIo => "pure-crate-io",
            Rule::ModuleCycle => "module-cycle",
            Rule::PubAndReexported => "pub-and-reexported",
            Rule::LibDocs => "lib-docs",
            Rule::TooManyArguments => "too-many-arguments",
            Rule::IncludeOutsidePackage => "include-outside-package",
            Rule::Publishing => "publishing",
        }
    }
}

/// A file and 1-based line, relative to the workspace root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    /// Path relative to the workspace root, `/`-separated.
    pub file: String,
    /// 1-based line.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One violation of a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Where to look first.
    pub location: Location,
    /// Which rule.
    pub rule: Rule,
    /// The package it is in.
    pub krate: String,
    /// What the allow-list matches on (a module, a dependency, a file): stable across edits
    /// that only move lines.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: [{}] {}: {}",
            self.location,
            self.rule.name(),
            self.krate,
            self.message
        )
    }
}
