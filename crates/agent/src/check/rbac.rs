//! The RBAC part of `launch-agent check`: every rule of the runner's table that applies to
//! this config, asked of the API server as one `SelfSubjectAccessReview` per verb, resource
//! and namespace — the API server's own answer for the credentials the agent runs with —
//! and, with leader election on, the Lease in the agent's own namespace.

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use rlaunch_k8s_runner::{RbacNeed, RbacRule, RbacScope};
use rlaunch_render::ApiCoordinates;

use super::{CheckLine, line};
use crate::config::{Config, JobSecrets, LeaderElection};

/// Where the missing permissions come from.
const FIX: &str = "grant it to the agent's ServiceAccount: the Helm chart's Role (and its ClusterRole for cluster-wide rules) has every rule; with a hand-written Role, add the verb";

/// What the agent itself (not the runner) calls: the launch intents (ConfigMaps) of
/// the agent. The Helm chart's RBAC data file is generated from these and the runner's table.
pub const AGENT_RBAC_RULES: &[RbacRule] = &[RbacRule {
    group: "",
    resource: "configmaps",
    verbs: &["create", "list", "delete"],
    scope: RbacScope::Namespace,
    need: RbacNeed::Always,
    why: "record launch intents: one before each ack, and deleted once the workload exists, so an item acked before a crash is failed on restart, never forgotten",
}];

/// One permission to ask about.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ask {
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    /// `None` for a cluster-wide rule.
    namespace: Option<String>,
    /// One object by name (`resourceNames`), or `None` for any.
    name: Option<String>,
    why: &'static str,
}

impl Ask {
    fn label(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        let object = match &self.name {
            Some(name) => format!(" of {name}"),
            None => String::new(),
        };
        match &self.namespace {
            Some(ns) => format!("{resource} {}{object} in namespace {ns}", self.verb),
            None => format!("{resource} {}{object} (cluster-wide)", self.verb),
        }
    }
}

/// Whether `rule` is needed by this config (pure). Custom workload rules apply for the
/// kinds the cluster serves; additional services depend on each run, so they are not
/// checked.
fn applies(rule: &RbacRule, config: &Config, served: &[ApiCoordinates]) -> bool {
    match rule.need {
        RbacNeed::Always => true,
        RbacNeed::CreatedSecrets => config.job_secrets == JobSecrets::PerRun,
        RbacNeed::Precheck => config.precheck,
        RbacNeed::CustomWorkload => served
            .iter()
            .any(|kind| kind.group == rule.group && kind.plural.as_deref() == Some(rule.resource)),
        RbacNeed::AdditionalServices => false,
    }
}

/// Every verb × resource × namespace to ask about (pure).
fn asks(rules: &[RbacRule], namespaces: &[String]) -> Vec<Ask> {
    let mut asks = Vec::new();
    for rule in rules {
        let scopes: Vec<Option<String>> = match rule.scope {
            RbacScope::Namespace => namespaces.iter().cloned().map(Some).collect(),
            RbacScope::Cluster => vec![None],
        };
        for namespace in scopes {
            for verb in rule.verbs {
                asks.push(Ask {
                    group: rule.group,
                    resource: rule.resource,
                    verb,
                    namespace: namespace.clone(),
                    name: None,
                    why: rule.why,
                });
            }
        }
    }
    asks
}

/// Why the agent needs the Lease.
const LEASE_WHY: &str =
    "hold the leader-election Lease (leader_election is on): only its holder polls and reports";

/// With leader election on, the calls the election makes (pure): `create` of a Lease in
/// the Lease's namespace, `get` and `patch` (server-side apply) of the one Lease. The
/// chart grants exactly these (plus `watch` and `update` on the named Lease). Not in
/// [`AGENT_RBAC_RULES`]: they are not per target namespace, and the chart adds them only
/// when it runs several replicas.
fn lease_asks(config: &Config) -> Vec<Ask> {
    let LeaderElection::On(settings) = &config.leader_election else {
        return Vec::new();
    };
    let name = settings
        .name
        .clone()
        .unwrap_or_else(|| crate::leader::default_lease_name(config));
    [
        ("create", None),
        ("get", Some(name.clone())),
        ("patch", Some(name)),
    ]
    .into_iter()
    .map(|(verb, name)| Ask {
        group: "coordination.k8s.io",
        resource: "leases",
        verb,
        namespace: Some(settings.namespace.clone()),
        name,
        why: LEASE_WHY,
    })
    .collect()
}

fn review(ask: &Ask) -> SelfSubjectAccessReview {
    let (resource, subresource) = match ask.resource.split_once('/') {
        Some((resource, sub)) => (resource, Some(sub.to_owned())),
        None => (ask.resource, None),
    };
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(ask.group.to_owned()),
                resource: Some(resource.to_owned()),
                subresource,
                verb: Some(ask.verb.to_owned()),
                namespace: ask.namespace.clone(),
                name: ask.name.clone(),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    }
}

/// One line per denied permission (with why the agent needs it and the fix), or one line
/// saying how many were allowed.
pub(crate) async fn check_rbac(
    client: &kube::Client,
    config: &Config,
    served: &[ApiCoordinates],
) -> Vec<CheckLine> {
    let rules: Vec<RbacRule> = rlaunch_k8s_runner::rbac_rules()
        .into_iter()
        .chain(AGENT_RBAC_RULES.iter().cloned())
        .filter(|rule| applies(rule, config, served))
        .collect();
    let namespaces = config.watched_namespaces();
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut lines = Vec::new();
    let mut allowed = 0;
    for ask in asks(&rules, &namespaces)
        .into_iter()
        .chain(lease_asks(config))
    {
        let what = format!("rbac {}", ask.label());
        match api.create(&PostParams::default(), &review(&ask)).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => allowed += 1,
            Ok(answer) => {
                let reason = answer
                    .status
                    .and_then(|s| s.reason)
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                lines.push(line(
                    &what,
                    Err(format!(
                        "denied{reason}; the agent needs it to {}; fix: {FIX}",
                        ask.why
                    )),
                ));
            }
            Err(error) => lines.push(line(
                &what,
                Err(format!(
                    "cannot ask the API server (SelfSubjectAccessReview): {error}"
                )),
            )),
        }
    }
    if lines.is_empty() {
        lines.push(line(
            "rbac",
            Ok(format!(
                "all {allowed} permissions the agent and its runner need are allowed in {}",
                namespaces.join(", ")
            )),
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cli::Flags;

    fn served(group: &str, plural: &str) -> ApiCoordinates {
        ApiCoordinates {
            group: group.to_owned(),
            version: "v1".to_owned(),
            kind: "K".to_owned(),
            plural: Some(plural.to_owned()),
        }
    }

    #[test]
    fn the_rules_that_apply_follow_the_config_and_the_served_kinds() {
        let flags = Flags {
            queues: vec!["q".to_owned()],
            ..Flags::default()
        };
        let mut config = Config::resolve(None, &BTreeMap::new(), &flags).unwrap();
        config.job_secrets = JobSecrets::None;
        config.precheck = false;
        let rules = rlaunch_k8s_runner::rbac_rules();
        let kept = |config: &Config, served: &[ApiCoordinates]| -> Vec<&str> {
            rules
                .iter()
                .filter(|r| applies(r, config, served))
                .map(|r| r.resource)
                .collect()
        };
        assert_eq!(kept(&config, &[]), ["jobs", "pods", "pods/log", "events"]);
        config.job_secrets = JobSecrets::PerRun;
        config.precheck = true;
        let volcano = served("batch.volcano.sh", "jobs");
        let all = kept(&config, std::slice::from_ref(&volcano));
        for resource in ["secrets", "resourcequotas", "limitranges", "nodes"] {
            assert!(all.contains(&resource), "{resource}: {all:?}");
        }
        assert_eq!(all.iter().filter(|r| **r == "jobs").count(), 2, "{all:?}");
    }

    #[test]
    fn one_ask_per_verb_and_namespace_and_per_verb_for_cluster_rules() {
        let rules: Vec<RbacRule> = rlaunch_k8s_runner::rbac_rules()
            .into_iter()
            .filter(|r| r.resource == "jobs" && r.group == "batch" || r.resource == "nodes")
            .collect();
        let asks = asks(&rules, &["a".to_owned(), "b".to_owned()]);
        assert_eq!(asks.len(), 5 * 2 + 2);
        assert_eq!(asks[4].label(), "jobs.batch delete in namespace a");
        assert_eq!(asks[10].label(), "nodes list (cluster-wide)");
        assert_eq!(asks[11].label(), "nodes watch (cluster-wide)");
        let log = review(&Ask {
            group: "",
            resource: "pods/log",
            verb: "get",
            namespace: Some("a".to_owned()),
            name: None,
            why: "",
        });
        let attributes = log.spec.resource_attributes.unwrap();
        assert_eq!(attributes.resource.as_deref(), Some("pods"));
        assert_eq!(attributes.subresource.as_deref(), Some("log"));
    }

    #[test]
    fn the_lease_is_asked_about_only_with_leader_election_and_by_name() {
        let flags = Flags {
            queues: vec!["q".to_owned()],
            ..Flags::default()
        };
        let mut config = Config::resolve(None, &BTreeMap::new(), &flags).unwrap();
        assert_eq!(lease_asks(&config), []);
        let env = BTreeMap::from([
            ("LAUNCH_AGENT_LEADER_ELECTION".to_owned(), "true".to_owned()),
            ("LAUNCH_AGENT_LEASE_NAME".to_owned(), "the-lease".to_owned()),
            ("POD_NAMESPACE".to_owned(), "agents".to_owned()),
        ]);
        config = Config::resolve(None, &env, &flags).unwrap();
        let labels: Vec<String> = lease_asks(&config).iter().map(Ask::label).collect();
        assert_eq!(
            labels,
            [
                "leases.coordination.k8s.io create in namespace agents",
                "leases.coordination.k8s.io get of the-lease in namespace agents",
                "leases.coordination.k8s.io patch of the-lease in namespace agents",
            ]
        );
        let get = review(&lease_asks(&config)[1]);
        let attributes = get.spec.resource_attributes.unwrap();
        assert_eq!(attributes.name.as_deref(), Some("the-lease"));
        assert_eq!(attributes.group.as_deref(), Some("coordination.k8s.io"));
    }
}
