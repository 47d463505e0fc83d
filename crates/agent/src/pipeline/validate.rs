//! Checks made before an item is acked (pure): the render crate's own validation (every
//! check of a render, secure mode included, each problem with its field path) and the
//! agent's target namespaces.

use std::collections::BTreeSet;

use rlaunch_model::RunSpec;
use rlaunch_render::RenderContext;
use serde_json::Value;

/// Every problem that would make the item fail after the ack, found before it.
/// `render_ctx.secure_mode` decides whether secure mode is checked.
pub(crate) fn before_ack(
    spec: &RunSpec,
    render_ctx: &RenderContext,
    targets: &BTreeSet<String>,
) -> Result<String, String> {
    if spec.resource != "kubernetes" {
        return Err(format!(
            "the run asks for resource `{}`, but this agent runs only `kubernetes` (push it to a Kubernetes queue)",
            spec.resource
        ));
    }
    rlaunch_render::validate(spec, None, render_ctx)
        .map_err(|e| format!("invalid queue config or run spec: {e}"))?;
    let namespace = namespace_of(spec, &render_ctx.default_namespace);
    match target_namespace(&namespace, targets) {
        Some(problem) => Err(problem),
        None => Ok(namespace),
    }
}

/// The namespace the render will choose: `metadata.namespace` of the Kubernetes section
/// (the queue config is already merged into it), the legacy top-level `namespace`, then the
/// agent's default — the render's own order. (`rlaunch_render::validate` does not return
/// it; the rendered namespace is checked again after the ack.)
fn namespace_of(spec: &RunSpec, default: &str) -> String {
    let section = spec.resource_args.get("kubernetes");
    let named = |pointer: &str| {
        section
            .and_then(|s| s.pointer(pointer))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(str::to_owned)
    };
    named("/metadata/namespace")
        .or_else(|| named("/namespace"))
        .unwrap_or_else(|| default.to_owned())
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

    fn secure_ctx() -> RenderContext {
        let mut ctx = RenderContext::new("run1");
        ctx.secure_mode = true;
        ctx.default_namespace = "ml".to_owned();
        ctx
    }

    #[test]
    fn secure_mode_names_every_locked_field_path() {
        let spec = RunSpec::from_json(
            r#"{"entity":"e","project":"p","resource":"kubernetes",
                "overrides":{"entry_point":["python","x.py"]},
                "resource_args":{"kubernetes":{"spec":{"template":{"spec":{
                    "hostNetwork":true,"containers":[{"command":["sh"]}]}}}}}}"#,
        )
        .unwrap();
        let problem = before_ack(&spec, &secure_ctx(), &BTreeSet::new()).unwrap_err();
        for path in [
            "runSpec.overrides.entry_point",
            "spec.template.spec.hostNetwork",
            "spec.template.spec.containers[0].command",
        ] {
            assert!(problem.contains(path), "{path} missing: {problem}");
        }
        let unlocked = RunSpec::from_json(
            r#"{"entity":"e","project":"p","resource":"kubernetes",
                "overrides":{"entry_point":["python","x.py"]},
                "resource_args":{"kubernetes":{"spec":{"template":{"spec":{
                    "containers":[{"command":["sh"]}]}}}}}}"#,
        )
        .unwrap();
        let mut open = secure_ctx();
        open.secure_mode = false;
        assert_eq!(
            before_ack(&unlocked, &open, &BTreeSet::new()),
            Ok("ml".to_owned())
        );
        assert!(before_ack(&unlocked, &secure_ctx(), &BTreeSet::new()).is_err());
    }

    #[test]
    fn a_malformed_queue_config_fails_with_its_field() {
        let spec = RunSpec::from_json(
            r#"{"entity":"e","project":"p","resource":"kubernetes",
                "resource_args":{"kubernetes":{"metadata":{"name":"Not_A_Name"}}}}"#,
        )
        .unwrap();
        let problem = before_ack(&spec, &secure_ctx(), &BTreeSet::new()).unwrap_err();
        assert!(problem.contains("metadata.name"), "{problem}");
    }

    #[test]
    fn the_namespace_follows_the_renders_order_and_is_checked() {
        let targets: BTreeSet<String> = ["ml".to_owned()].into();
        let spec = |k8s: &str| {
            RunSpec::from_json(&format!(
                r#"{{"entity":"e","project":"p","resource":"kubernetes","resource_args":{{"kubernetes":{k8s}}}}}"#
            ))
            .unwrap()
        };
        assert_eq!(
            before_ack(&spec("{}"), &secure_ctx(), &targets),
            Ok("ml".to_owned())
        );
        let legacy = before_ack(&spec(r#"{"namespace":"other"}"#), &secure_ctx(), &targets);
        assert!(legacy.unwrap_err().contains("`other`"));
        let both = spec(r#"{"namespace":"other","metadata":{"namespace":"ml"}}"#);
        assert_eq!(
            before_ack(&both, &secure_ctx(), &targets),
            Ok("ml".to_owned())
        );
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
