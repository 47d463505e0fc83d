//! Import cycles between the top-level modules of one crate: `a` imports from `b` (a `use`
//! of `crate::b::…`, `super::b::…`, or of a name the crate root re-exports from `b`, or
//! such a path written in code, like `crate::b::Item` in a signature) and
//! `b`, directly or through others, from `a`. A cycle means neither module can be read,
//! tested or moved alone; the fix is a module both depend on.

use std::collections::{BTreeMap, BTreeSet};

use crate::finding::{Finding, Location, Rule};
use crate::modules::Crate;

/// One import edge and where it is written (first occurrence).
#[derive(Debug, Clone)]
struct Edge {
    location: Location,
}

/// Findings, one per cycle (strongly connected set of modules), for the crate `krate`.
pub(crate) fn check(krate_name: &str, krate: &Crate) -> Vec<Finding> {
    let edges = edges(krate);
    let mut findings = Vec::new();
    for component in strongly_connected(&edges) {
        let Some(cycle) = shortest_cycle(&edges, &component) else {
            continue;
        };
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let edge = &edges[&w[0]][&w[1]];
                format!("`{}` imports `{}` at {}", w[0], w[1], edge.location)
            })
            .collect();
        let members: Vec<&str> = component.iter().map(String::as_str).collect();
        findings.push(Finding {
            location: edges[&cycle[0]][&cycle[1]].location.clone(),
            rule: Rule::ModuleCycle,
            krate: krate_name.to_owned(),
            key: members.join(","),
            message: format!(
                "import cycle between modules {}: {}; move what they share into a module \
                 both import (for example the data types), so the dependency points one way",
                members.join(", "),
                steps.join(", ")
            ),
        });
    }
    findings
}

fn edges(krate: &Crate) -> BTreeMap<String, BTreeMap<String, Edge>> {
    let mut edges: BTreeMap<String, BTreeMap<String, Edge>> = BTreeMap::new();
    for file in &krate.files {
        let Some(from) = file.module.first() else {
            continue;
        };
        if krate.is_test_only(&file.module) {
            continue;
        }
        // Tests may reach across modules; only what ships counts.
        let uses = file
            .items
            .uses
            .iter()
            .filter(|d| !d.test_only)
            .flat_map(|decl| {
                decl.paths
                    .iter()
                    .map(move |p| (&decl.inline, &p.segments, decl.line))
            });
        let code = file
            .items
            .paths
            .iter()
            .filter(|p| !p.test_only)
            .map(|p| (&p.inline, &p.segments, p.line));
        for (inline, segments, line) in uses.chain(code) {
            let scope = [file.module.as_slice(), inline.as_slice()].concat();
            let Some(abs) = krate.resolve(&scope, segments) else {
                continue;
            };
            let Some(to) = krate.top_of(&abs).filter(|to| to != from) else {
                continue;
            };
            let location = Location {
                file: file.rel.clone(),
                line,
            };
            let entry = edges.entry(from.clone()).or_default().entry(to);
            let edge = entry.or_insert_with(|| Edge {
                location: location.clone(),
            });
            if location < edge.location {
                edge.location = location;
            }
        }
    }
    edges
}

/// Components of more than one module (Tarjan's algorithm), each sorted.
fn strongly_connected(edges: &BTreeMap<String, BTreeMap<String, Edge>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, Edge>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flat_map(BTreeMap::keys) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.out.sort();
    state.out
}

/// A shortest cycle through the first module of `component`: `[a, b, …, a]`.
fn shortest_cycle(
    edges: &BTreeMap<String, BTreeMap<String, Edge>>,
    component: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let start = component.first()?;
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.as_str()]);
    while let Some(v) = queue.pop_front() {
        for w in edges.get(v).into_iter().flat_map(BTreeMap::keys) {
            if !component.contains(w) {
                continue;
            }
            if w == start {
                let mut cycle = vec![start.clone(), v.to_owned()];
                let mut at = v;
                while let Some(&p) = previous.get(at) {
                    cycle.push(p.to_owned());
                    at = p;
                }
                cycle.reverse();
                return Some(cycle);
            }
            if w != start && !previous.contains_key(w.as_str()) {
                previous.insert(w.as_str(), v);
                queue.push_back(w.as_str());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ModFile;

    fn krate(files: &[(&str, &str)]) -> Crate {
        Crate::new(
            files
                .iter()
                .map(|(module, text)| {
                    let path: Vec<String> = module
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                    let rel = if path.is_empty() {
                        "src/lib.rs".to_owned()
                    } else {
                        format!("src/{}.rs", path.join("/"))
                    };
                    ModFile::parse(&path, &rel, text)
                })
                .collect(),
        )
    }

    #[test]
    fn a_cycle_through_three_modules_is_reported_with_every_edge() {
        let krate = krate(&[
            (
                "",
                "mod admin;\nmod store;\nmod model;\npub use admin::Admin;",
            ),
            ("admin", "use crate::store::Store;"),
            ("store", "\n\nuse super::model::Item;"),
            ("model", "fn f(a: crate::Admin) {}"),
        ]);
        let findings = check("rlaunch-wandb-fake", &krate);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!(f.key, "admin,model,store");
        assert_eq!(f.location.to_string(), "src/admin.rs:1");
        assert!(
            f.message
                .contains("`store` imports `model` at src/store.rs:3"),
            "{}",
            f.message
        );
        assert!(
            f.message
                .contains("`model` imports `admin` at src/model.rs:1")
        );
    }

    #[test]
    fn one_way_imports_and_imports_from_tests_pass() {
        let krate = krate(&[
            (
                "",
                "mod a;\nmod b;\n#[cfg(test)]\nmod fixtures;\nuse a::A;\nuse b::B;",
            ),
            (
                "a",
                "use crate::b::B;\nmod tests { use super::*; use crate::a::A; }",
            ),
            (
                "b",
                "use std::fmt;\nfn f() { use self::inner::X; }\nmod inner {}\n\
                 #[cfg(test)]\nmod tests { use crate::a::A; }",
            ),
            ("fixtures", "use crate::a::A; use crate::b::B;"),
        ]);
        assert_eq!(check("x", &krate), []);
    }
}
