//! Every Kubernetes API call the runner makes, as data: verb × group × resource × why. The
//! Helm chart's Role and ClusterRole are generated from [`rbac_rules`], the crate docs show
//! it as a table ([`rbac_markdown`]), and a cluster test records every request a full run
//! makes and checks each against it.
//!
//! API discovery (`GET /api`, `/apis/...` without a resource) is not listed: every
//! authenticated user may read it (the default `system:discovery` ClusterRole).

/// Where a rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RbacScope {
    /// In each target namespace (a namespaced Role).
    Namespace,
    /// Cluster-wide (a ClusterRole).
    Cluster,
}

/// When a rule is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RbacNeed {
    /// By every runner.
    Always,
    /// Only with [`crate::ApiKeySecrets::Create`]: a pre-provisioned API-key Secret needs none.
    CreatedSecrets,
    /// Only for runs with additional services of that kind.
    AdditionalServices,
    /// Only for custom-resource workloads of that kind.
    CustomWorkload,
    /// Only for [`crate::Runner::precheck`].
    Precheck,
}

/// One RBAC rule: the verbs the runner uses on one resource, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbacRule {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Resource plural, or `resource/subresource`.
    pub resource: &'static str,
    /// The verbs, in Kubernetes' spelling.
    pub verbs: &'static [&'static str],
    /// Namespace or cluster.
    pub scope: RbacScope,
    /// When it is needed.
    pub need: RbacNeed,
    /// Why.
    pub why: &'static str,
}

const WORKLOAD_VERBS: &[&str] = &["create", "get", "list", "watch", "delete"];
const WORKLOAD_WHY: &str = "submit the workload (get: adopt it on 409 and read it once when tracking); \
    list/watch: the monitor and adoption (label-selected); delete: cancel, or a failure the \
    agent declared (start timeout, image pull, crash-loop budget)";

/// Every rule the runner needs: the fixed ones, then one per known custom workload kind.
pub fn rbac_rules() -> Vec<RbacRule> {
    use RbacNeed::*;
    use RbacScope::*;
    let mut rules = vec![
        RbacRule {
            group: "batch",
            resource: "jobs",
            verbs: WORKLOAD_VERBS,
            scope: Namespace,
            need: Always,
            why: WORKLOAD_WHY,
        },
        RbacRule {
            group: "",
            resource: "pods",
            verbs: &["list", "watch"],
            scope: Namespace,
            need: Always,
            why: "the monitor (pods selected by rlaunch.dev/workload), failure diagnostics, adoption",
        },
        RbacRule {
            group: "",
            resource: "pods/log",
            verbs: &["get"],
            scope: Namespace,
            need: Always,
            why: "log tails in failure diagnostics; the builder's full log read",
        },
        RbacRule {
            group: "",
            resource: "events",
            verbs: &["list", "watch"],
            scope: Namespace,
            need: Always,
            why: "events of the workload and its pods in failure diagnostics; FailedCreate \
                  events (quota and limit-range refusals) while a run starts. The runner \
                  records no Events",
        },
        RbacRule {
            group: "",
            resource: "secrets",
            verbs: &["create", "get", "update", "delete"],
            scope: Namespace,
            need: CreatedSecrets,
            why: "create the API-key Secret; get/update: only for a per-run Secret that \
                  exists (same data: reuse; agent-created with other data: replace); delete: \
                  per-run Secrets at cleanup, by name",
        },
        RbacRule {
            group: "",
            resource: "services",
            verbs: &["create", "get", "delete"],
            scope: Namespace,
            need: AdditionalServices,
            why: "additional services (get: adopt on 409; delete: cleanup by name)",
        },
        RbacRule {
            group: "apps",
            resource: "deployments",
            verbs: &["create", "get", "delete"],
            scope: Namespace,
            need: AdditionalServices,
            why: "additional services (get: adopt on 409 and readiness; delete: cleanup by name)",
        },
        RbacRule {
            group: "",
            resource: "pods",
            verbs: &["create", "get", "delete"],
            scope: Namespace,
            need: AdditionalServices,
            why: "additional services that are bare pods (get: readiness)",
        },
        RbacRule {
            group: "discovery.k8s.io",
            resource: "endpointslices",
            verbs: &["list"],
            scope: Namespace,
            need: AdditionalServices,
            why: "readiness of an additional Service (a ready endpoint)",
        },
        RbacRule {
            group: "",
            resource: "resourcequotas",
            verbs: &["list"],
            scope: Namespace,
            need: Precheck,
            why: "the pre-check: what the namespace's quotas allow and have left",
        },
        RbacRule {
            group: "",
            resource: "limitranges",
            verbs: &["list"],
            scope: Namespace,
            need: Precheck,
            why: "the pre-check: the namespace's per-container and per-pod bounds and defaults",
        },
        RbacRule {
            group: "",
            resource: "nodes",
            verbs: &["list", "watch"],
            scope: Cluster,
            need: Precheck,
            why: "the GPU pre-check: capacity, labels and taints of every node (watched \
                  from the first pre-check on; listed again before a verdict that holds a \
                  run back)",
        },
        RbacRule {
            group: "",
            resource: "pods",
            verbs: &["list", "watch"],
            scope: Cluster,
            need: Precheck,
            why: "the GPU pre-check: what the pods of all namespaces already request (the \
                  non-terminal ones watched from the first pre-check on; listed again \
                  before a verdict that holds a run back)",
        },
    ];
    for (group, _kind, plural) in rlaunch_model::crd::KNOWN_PLURALS {
        rules.push(RbacRule {
            group,
            resource: plural,
            verbs: WORKLOAD_VERBS,
            scope: Namespace,
            need: CustomWorkload,
            why: WORKLOAD_WHY,
        });
    }
    rules
}

/// The rules as a Markdown table (the one in the crate docs).
pub fn rbac_markdown() -> String {
    let mut out = String::from(
        "| group | resource | verbs | scope | needed | why |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let fixed = rbac_rules()
        .into_iter()
        .filter(|rule| rule.need != RbacNeed::CustomWorkload);
    for rule in fixed {
        let group = if rule.group.is_empty() {
            "core"
        } else {
            rule.group
        };
        let why = rule.why.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| {group} | {} | {} | {:?} | {:?} | {why} |\n",
            rule.resource,
            rule.verbs.join(", "),
            rule.scope,
            rule.need,
        ));
    }
    out.push_str(&format!(
        "| each known workload CRD group | its plural | {} | Namespace | CustomWorkload | as for Jobs |\n",
        WORKLOAD_VERBS.join(", ")
    ));
    out
}

/// Whether `(verb, group, resource, scope)` is allowed by the rules.
pub fn rbac_allows(verb: &str, group: &str, resource: &str, scope: RbacScope) -> bool {
    rbac_rules().iter().any(|rule| {
        rule.group == group
            && rule.resource == resource
            && rule.scope == scope
            && rule.verbs.contains(&verb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in the crate docs is the data, rendered.
    #[test]
    fn the_crate_docs_show_the_table() {
        let docs: String = include_str!("lib.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//!"))
            .map(|line| line.strip_prefix(' ').unwrap_or(line))
            .collect::<Vec<_>>()
            .join("\n");
        let table = rbac_markdown();
        assert!(
            docs.contains(table.trim_end()),
            "update the RBAC table in lib.rs to:\n{table}"
        );
    }
}
