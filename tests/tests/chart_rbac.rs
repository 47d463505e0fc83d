//! The chart's RBAC data file is generated from the runner's RBAC table
//! (`rlaunch_k8s_runner::rbac_rules()`) and the agent's own rules
//! (`rlaunch_agent::AGENT_RBAC_RULES`), so the Roles the chart grants are exactly the calls
//! the agent makes. This test is the generator: it renders the file from the table and
//! fails when the committed file differs; `RLAUNCH_REGENERATE=1 cargo test -p rlaunch-tests
//! --test chart_rbac` writes it (never in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::path::Path;

use rlaunch_k8s_runner::{RbacRule, rbac_rules};

const HEADER: &str = "\
# Every Kubernetes API call the launch agent's Kubernetes runner makes, as data. The chart's
# Roles (and the opt-in ClusterRole) are built from this list; nothing else grants the agent
# rights in a target namespace. GENERATED from `rlaunch_k8s_runner::rbac_rules()` and
# `rlaunch_agent::AGENT_RBAC_RULES` by
# `RLAUNCH_REGENERATE=1 cargo test -p rlaunch-tests --test chart_rbac`; do not edit by hand
# (group \"\" is the core group).
#
# need: Always             every agent
#       CreatedSecrets     rbac.jobSecrets: perRun (the agent creates the API-key Secret of a run)
#       AdditionalServices rbac.presets.auxiliaryResources (runs with additional services)
#       CustomWorkload     the preset naming the group (volcano, kubeflow, jobset, ray, leaderWorkerSet)
#       Precheck           rbac.precheck.enabled (the GPU pre-check reads every node and pod)
rules:
";

fn rule_yaml(rule: &RbacRule) -> String {
    let group = if rule.group.is_empty() {
        "\"\"".to_owned()
    } else {
        rule.group.to_owned()
    };
    let why = rule.why.split_whitespace().collect::<Vec<_>>().join(" ");
    // A JSON string is a valid YAML double-quoted scalar.
    let why = serde_json::to_string(&why).expect("a string serialises");
    format!(
        "  - group: {group}\n    resource: {}\n    verbs: [{}]\n    scope: {:?}\n    need: {:?}\n    why: {why}\n",
        rule.resource,
        rule.verbs.join(", "),
        rule.scope,
        rule.need,
    )
}

fn all_rules() -> Vec<RbacRule> {
    let mut rules = rbac_rules();
    rules.extend(rlaunch_agent::AGENT_RBAC_RULES.iter().cloned());
    rules
}

fn generated() -> String {
    let mut out = HEADER.to_owned();
    for rule in all_rules() {
        out.push_str(&rule_yaml(&rule));
    }
    out
}

#[test]
fn the_charts_rbac_file_is_generated_from_the_runners_table() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/launch-agent/files/rbac-rules.yaml");
    let want = generated();
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have == want {
        return;
    }
    if std::env::var_os("RLAUNCH_REGENERATE").is_some() && std::env::var_os("CI").is_none() {
        std::fs::write(&path, &want).expect("write the generated file");
        panic!(
            "{} was out of date and has been regenerated: review and commit it",
            path.display()
        );
    }
    panic!(
        "{} differs from the runner's and the agent's RBAC rules: run `RLAUNCH_REGENERATE=1 cargo test -p rlaunch-tests --test chart_rbac` and commit the result",
        path.display()
    );
}

#[test]
fn every_rule_parses_back_with_its_fields() {
    let parsed: serde_json::Value =
        serde_yaml_ng::from_str(&generated()).expect("the generated file is YAML");
    let rules = parsed["rules"].as_array().expect("a rules list");
    assert_eq!(rules.len(), all_rules().len());
    for (yaml, rule) in rules.iter().zip(all_rules()) {
        assert_eq!(yaml["group"], rule.group);
        assert_eq!(yaml["resource"], rule.resource);
        assert_eq!(yaml["verbs"], serde_json::json!(rule.verbs));
        assert_eq!(yaml["scope"], format!("{:?}", rule.scope));
        assert_eq!(yaml["need"], format!("{:?}", rule.need));
    }
}
