//! Checks made before an item is acked (pure): secure mode and the target namespaces.

use std::collections::BTreeSet;

use rlaunch_model::RunSpec;
use serde_json::Value;

/// Secure mode: no host namespaces, init containers or container commands in the pod
/// spec, and no entrypoint override. Returns every violation.
pub(crate) fn secure_mode(spec: &RunSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = spec
        .resource_args
        .get("kubernetes")
        .and_then(|k| k.pointer("/spec/template/spec"));
    if let Some(Value::Object(pod)) = pod {
        for key in ["hostPID", "hostIPC", "hostNetwork", "initContainers"] {
            if pod.contains_key(key) {
                problems.push(format!(
                    "resource_args.kubernetes.spec.template.spec.{key}: the agent runs in secure mode and locks this key; remove it from the queue config or run spec"
                ));
            }
        }
        if let Some(Value::Array(containers)) = pod.get("containers") {
            for (i, container) in containers.iter().enumerate() {
                if container.get("command").is_some() {
                    problems.push(format!(
                        "resource_args.kubernetes.spec.template.spec.containers[{i}].command: the agent runs in secure mode and locks container commands; remove it"
                    ));
                }
            }
        }
    }
    if spec
        .overrides
        .entry_point
        .as_ref()
        .is_some_and(|entry| !entry.is_empty())
    {
        problems.push(
            "overrides.entry_point: the agent runs in secure mode and does not accept entrypoint overrides; push the job without one".to_owned(),
        );
    }
    problems
}

/// `Some(problem)` when `namespace` is not one the agent may use.
pub(crate) fn target_namespace(namespace: &str, targets: &BTreeSet<String>) -> Option<String> {
    if targets.is_empty() || targets.contains(namespace) {
        return None;
    }
    Some(format!(
        "the workload would go to namespace `{namespace}`, which is not one of the agent's target namespaces ({}): set `metadata.namespace` in the queue config to one of them, or ask the agent admin to add it",
        targets.iter().cloned().collect::<Vec<_>>().join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_mode_names_every_locked_key() {
        let spec = RunSpec::from_json(
            r#"{"entity":"e","project":"p","resource":"kubernetes",
                "overrides":{"entry_point":["python","x.py"]},
                "resource_args":{"kubernetes":{"spec":{"template":{"spec":{
                    "hostNetwork":true,"containers":[{"command":["sh"]}]}}}}}}"#,
        )
        .unwrap();
        let problems = secure_mode(&spec);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("hostNetwork"));
        assert!(problems[1].contains("containers[0].command"));
        assert!(problems[2].contains("overrides.entry_point"));
    }

    #[test]
    fn namespaces_outside_the_targets_are_refused_with_the_list() {
        let targets: BTreeSet<String> = ["ml".to_owned()].into();
        assert_eq!(target_namespace("ml", &targets), None);
        assert_eq!(target_namespace("any", &BTreeSet::new()), None);
        let problem = target_namespace("kube-system", &targets).unwrap();
        assert!(
            problem.contains("`kube-system`") && problem.contains("(ml)"),
            "{problem}"
        );
    }
}
