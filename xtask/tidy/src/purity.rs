//! Pure crates in their source: no file system, network, processes, threads, environment,
//! terminal or clock — neither called by path (`std::fs::read`, `Instant::now()`) nor
//! imported (`use std::{env, fs}`). Comments and string literals do not count.

use crate::finding::{Finding, Location, Rule};
use crate::syntax::{self, Tok};

/// Modules whose use is IO: imported or called by path.
const IO_PATHS: &[&str] = &[
    "std::fs",
    "std::env",
    "std::net",
    "std::process",
    "std::thread",
    "std::io::stdin",
    "std::io::stdout",
    "std::io::stderr",
    "tokio",
];

/// Calls that read the clock, and macros that print.
const IO_CALLS: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "OffsetDateTime::now_utc",
    "println!",
    "eprintln!",
    "print!",
    "eprint!",
    "dbg!",
];

/// Findings for one source file `rel` of the pure crate `krate`.
pub(crate) fn check(krate: &str, rel: &str, text: &str) -> Vec<Finding> {
    let finding = |line: usize, what: &str, verb: &str| Finding {
        location: Location {
            file: rel.to_owned(),
            line,
        },
        rule: Rule::PureCrateIo,
        krate: krate.to_owned(),
        key: format!("{rel}: {what}"),
        message: format!(
            "pure crate {verb} `{what}`: take the value as an argument (the caller reads the \
             file, the environment or the clock) or move the code out of the pure crates"
        ),
    };
    let mut findings: Vec<Finding> = written_paths(text)
        .into_iter()
        .map(|(line, needle)| finding(line, needle, "uses"))
        .collect();
    for (line, path) in imported_paths(text) {
        // `use std::fs;` is already reported as written; this catches `use std::{fs}`.
        let reported = findings
            .iter()
            .any(|f| f.location.line == line && f.key.ends_with(path));
        if !reported {
            findings.push(finding(line, path, "imports"));
        }
    }
    findings.sort();
    findings
}

/// `(line, needle)` for every IO path or call written out in code.
fn written_paths(text: &str) -> Vec<(usize, &'static str)> {
    let blanked = syntax::blank(text);
    let lines = syntax::Lines::new(text);
    let toks = syntax::tokens(&blanked);
    let mut found = Vec::new();
    for needle in IO_PATHS.iter().chain(IO_CALLS) {
        let pattern = pattern_of(needle);
        for start in 0..toks.len() {
            let matches = pattern
                .iter()
                .enumerate()
                .all(|(k, p)| toks.get(start + k).is_some_and(|t| &t.tok == p));
            if matches {
                found.push((lines.of(toks[start].offset), *needle));
            }
        }
    }
    found
}

/// `(line, IO module)` for every `use` that imports from an IO module.
fn imported_paths(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for decl in syntax::items(text).uses {
        for path in &decl.paths {
            let joined = path.segments.join("::");
            let hit = IO_PATHS
                .iter()
                .find(|p| joined == **p || joined.starts_with(&format!("{p}::")));
            if let Some(p) = hit {
                found.push((decl.line, *p));
            }
        }
    }
    found
}

/// `"std::fs"` → `[std, ::, fs]`; `"println!"` → `[println, !]`.
fn pattern_of(needle: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    for (i, part) in needle.split("::").enumerate() {
        if i > 0 {
            out.push(Tok::PathSep);
        }
        match part.strip_suffix('!') {
            Some(name) => {
                out.push(Tok::Ident(name.to_owned()));
                out.push(Tok::Punct('!'));
            }
            None => out.push(Tok::Ident(part.to_owned())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(text: &str) -> Vec<(usize, String)> {
        check("rlaunch-render", "src/x.rs", text)
            .into_iter()
            .map(|f| {
                (
                    f.location.line,
                    f.key.trim_start_matches("src/x.rs: ").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn io_env_and_clock_fail_with_their_line() {
        let text = "use std::{collections::BTreeMap, env, fs::File};\n\
                    fn f() { let t = std::time::Instant::now(); }\n\
                    fn g() -> String { std::env::var(\"HOME\").unwrap_or_default() }\n\
                    fn h() { println!(\"hi\"); }";
        assert_eq!(
            whats(text),
            [
                (1, "std::env".to_owned()),
                (1, "std::fs".to_owned()),
                (2, "Instant::now".to_owned()),
                (3, "std::env".to_owned()),
                (4, "println!".to_owned()),
            ]
        );
    }

    #[test]
    fn comments_strings_and_types_pass() {
        let text = "// std::fs is not used here\n\
                    /// Call `Instant::now()` in the caller.\n\
                    fn f(now: std::time::Instant) -> &'static str { \"std::env\" }\n\
                    fn g() -> String { format!(\"x\") }";
        assert_eq!(whats(text), []);
    }
}
