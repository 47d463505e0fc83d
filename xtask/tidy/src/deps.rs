//! Forbidden dependencies, followed through the resolved graph: a crate must not reach
//! these packages through any chain of normal dependencies.

use crate::finding::{Finding, Location, Rule};
use crate::workspace::DepGraph;

/// Crates that never do IO, read the environment or the clock.
pub(crate) const PURE: &[&str] = &["rlaunch-model", "rlaunch-render", "rlaunch-gpu"];

/// IO runtimes and clients a pure crate must not reach.
const IO_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "kube",
    "kube-client",
    "axum",
    "graphql_client",
    "mio",
    "socket2",
];

/// `(crate, must not reach, why)`.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    (
        "rlaunch-wandb-api",
        "rlaunch-render",
        "the W&B client depends on the model only, so tools can use it without the render engine",
    ),
    (
        "rlaunch-wandb-api",
        "rlaunch-gpu",
        "the W&B client depends on the model only, not the GPU helpers",
    ),
    (
        "rlaunch-wandb-api",
        "k8s-openapi",
        "the W&B client knows nothing of Kubernetes",
    ),
    (
        "rlaunch-wandb-api",
        "rlaunch-k8s-runner",
        "only the agent composes the W&B client and the runner",
    ),
    (
        "rlaunch-k8s-runner",
        "rlaunch-wandb-api",
        "the runner never talks to W&B; only the agent composes the two",
    ),
    (
        "rlaunch-builder",
        "rlaunch-wandb-api",
        "builders get what they need from the agent, not from W&B",
    ),
    (
        "rlaunch-model",
        "k8s-openapi",
        "the model stays small so the W&B client can depend on it",
    ),
];

/// Every forbidden chain in `graph`; `manifest` names the `Cargo.toml` of a package.
pub(crate) fn check(graph: &DepGraph, manifest: &dyn Fn(&str) -> Option<String>) -> Vec<Finding> {
    let pure_rules = PURE.iter().flat_map(|p| {
        IO_CRATES.iter().map(move |io| {
            (
                *p,
                *io,
                "pure crates never touch IO: move it into the runner, the W&B client or the agent",
            )
        })
    });
    let mut findings = Vec::new();
    for (from, to, why) in FORBIDDEN.iter().copied().chain(pure_rules) {
        let Some(chain) = graph.path(from, to) else {
            continue;
        };
        findings.push(Finding {
            location: Location {
                file: manifest(from).unwrap_or_else(|| format!("{from}/Cargo.toml")),
                line: 1,
            },
            rule: Rule::ForbiddenDependency,
            krate: from.to_owned(),
            key: to.to_owned(),
            message: format!(
                "must not depend on `{to}`, even through other crates ({why}); it does through {}; \
                 remove the dependency or move the code (`cargo tree -p {from} -i {to} -e normal` shows every path)",
                chain.join(" → ")
            ),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transitive_edge_to_the_render_engine_or_k8s_openapi_fails() {
        let graph = DepGraph::from_edges(&[
            ("rlaunch-wandb-api", "rlaunch-model"),
            ("rlaunch-model", "k8s-openapi"),
            ("rlaunch-wandb-api", "helper"),
            ("helper", "rlaunch-render"),
        ]);
        let findings = check(&graph, &|_| None);
        let keys: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.krate.as_str(), f.key.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("rlaunch-wandb-api", "rlaunch-render"),
                ("rlaunch-wandb-api", "k8s-openapi"),
                ("rlaunch-model", "k8s-openapi"),
            ]
        );
        assert!(
            findings[1]
                .message
                .contains("rlaunch-wandb-api → rlaunch-model → k8s-openapi"),
            "{}",
            findings[1].message
        );
    }

    #[test]
    fn the_runner_and_the_client_never_meet_and_pure_crates_reach_no_runtime() {
        let graph = DepGraph::from_edges(&[
            ("rlaunch-k8s-runner", "rlaunch-wandb-api"),
            ("rlaunch-gpu", "something"),
            ("something", "tokio"),
        ]);
        let keys: Vec<String> = check(&graph, &|_| None)
            .iter()
            .map(|f| format!("{} -> {}", f.krate, f.key))
            .collect();
        assert_eq!(
            keys,
            [
                "rlaunch-k8s-runner -> rlaunch-wandb-api",
                "rlaunch-gpu -> tokio"
            ]
        );
    }

    #[test]
    fn a_clean_graph_passes() {
        let graph = DepGraph::from_edges(&[
            ("rlaunch-wandb-api", "rlaunch-model"),
            ("rlaunch-render", "k8s-openapi"),
            ("rlaunch-k8s-runner", "rlaunch-render"),
            ("rlaunch-k8s-runner", "tokio"),
        ]);
        assert_eq!(check(&graph, &|_| None), []);
    }
}
