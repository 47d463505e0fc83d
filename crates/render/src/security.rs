//! The manifest refuse-list and the forced container security context.
//!
//! The refuse-list is W&B's agent's: host namespaces, host paths and ports, service-account
//! tokens and names, any `securityContext`, bidirectional mount propagation and unconfined
//! AppArmor/seccomp annotations are refused anywhere in the body. Unlike W&B's agent, whose
//! list cannot be relaxed (workload identity needs `serviceAccountName`, some images need a
//! `securityContext`), an admin allow-list (agent config `allowed_fields`) permits named
//! fields, and an allowed container `securityContext` is kept, not overwritten
//! ([`force_security_context`]).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use rlaunch_model::FieldError;

use crate::walk::{Step, format_path, push_index};

/// Why each refused key is dangerous, for the error message.
fn reason(key: &str) -> &'static str {
    match key {
        "securityContext" => "it can run the container as root or with added privileges",
        "hostPath" => "it mounts a directory of the node into the pod",
        "serviceAccountToken" => "it projects a service-account token into the pod",
        "hostPID" | "hostIPC" | "hostNetwork" | "shareProcessNamespace" | "hostUsers" => {
            "it shares a namespace of the node or of other containers"
        }
        "serviceAccountName" | "serviceAccount" => {
            "it gives the workload the permissions of another service account"
        }
        "automountServiceAccountToken" => "it mounts the service-account token into the pod",
        "hostPort" => "it binds a port on the node",
        "mountPropagation" => "bidirectional propagation lets the pod change the node's mounts",
        _ => "it weakens the isolation of the workload",
    }
}

pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "1" | "true" | "yes"),
        _ => false,
    }
}

fn non_blank(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => items.iter().any(non_blank),
        _ => false,
    }
}

/// Depth a walk's trail is allocated for at once (a PyTorchJob's containers' env entries
/// are about ten levels deep).
const TRAIL: usize = 16;

/// Scans every object in `value` for refused keys; returns one error per refused field.
pub(crate) fn scan(value: &Value, path: &str, allowed: &BTreeSet<String>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    scan_into(
        value,
        path,
        &mut Vec::with_capacity(TRAIL),
        allowed,
        &mut errors,
    );
    errors
}

/// One level of [`scan`]; `trail` is the way from `root` to `value`, so the walk builds no
/// path per node (paths are only read for errors, see [`scan_path`]).
fn scan_into<'a>(
    value: &'a Value,
    root: &str,
    trail: &mut Vec<Step<'a>>,
    allowed: &BTreeSet<String>,
    errors: &mut Vec<FieldError>,
) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                trail.push(Step::Key(key));
                if refused(key, item) && !allowed.contains(key) {
                    errors.push(FieldError::new(
                        scan_path(root, trail),
                        format!("unsafe option `{key}` is not allowed: {}", reason(key)),
                        format!(
                            "remove it, or ask the agent admin to add `{key}` to `allowed_fields` in the agent config"
                        ),
                    ));
                }
                if let ("annotations", Value::Object(annotations)) = (key.as_str(), item) {
                    scan_annotations(annotations, &|| scan_path(root, trail), errors);
                }
                scan_into(item, root, trail, allowed, errors);
                trail.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                trail.push(Step::Index(i));
                scan_into(item, root, trail, allowed, errors);
                trail.pop();
            }
        }
        _ => {}
    }
}

/// The refuse-list's paths: `root.key[i]…`, keys never quoted.
fn scan_path(root: &str, trail: &[Step<'_>]) -> String {
    let mut path = root.to_owned();
    for step in trail {
        match step {
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(i) => push_index(&mut path, *i),
        }
    }
    path
}

fn refused(key: &str, value: &Value) -> bool {
    match key {
        "securityContext" | "hostPath" | "serviceAccountToken" => true,
        "hostPID"
        | "hostIPC"
        | "hostNetwork"
        | "shareProcessNamespace"
        | "hostUsers"
        | "automountServiceAccountToken"
        | "hostPort" => truthy(value),
        "serviceAccountName" | "serviceAccount" => non_blank(value),
        "mountPropagation" => value.as_str() == Some("Bidirectional"),
        _ => false,
    }
}

fn scan_annotations(
    annotations: &Map<String, Value>,
    path: &dyn Fn() -> String,
    errors: &mut Vec<FieldError>,
) {
    for (key, value) in annotations {
        let unconfined = value
            .as_str()
            .is_some_and(|v| contains_ignoring_case(v, "unconfined"));
        let profile_key =
            contains_ignoring_case(key, "apparmor") || contains_ignoring_case(key, "seccomp");
        if profile_key && unconfined {
            errors.push(FieldError::new(
                format!("{}.{key}", path()),
                "unsafe annotation: an unconfined AppArmor or seccomp profile is not allowed",
                "remove the annotation; the agent sets seccompProfile RuntimeDefault itself",
            ));
        }
    }
}

/// Whether `text` contains `needle` (lower-case ASCII), ignoring ASCII case, without
/// allocating a lower-cased copy.
fn contains_ignoring_case(text: &str, needle: &str) -> bool {
    text.as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The container security context the agent forces: no privilege escalation, every
/// capability dropped, the runtime's default seccomp profile.
fn restricted_container_context() -> Value {
    // Built directly: `json!` serializes every value through serde, once per container.
    // One `insert`: `Map::from_iter` collects into a vector first, then builds the map.
    let one = |key: &str, value: Value| {
        let mut map = Map::new();
        map.insert(key.to_owned(), value);
        Value::Object(map)
    };
    let mut context = Map::new();
    context.insert("allowPrivilegeEscalation".to_owned(), Value::Bool(false));
    let drop_all = Value::Array(vec![Value::String("ALL".to_owned())]);
    context.insert("capabilities".to_owned(), one("drop", drop_all));
    let runtime_default = Value::String("RuntimeDefault".to_owned());
    context.insert("seccompProfile".to_owned(), one("type", runtime_default));
    Value::Object(context)
}

/// Hardens every container, initContainer and ephemeralContainer of every pod spec anywhere
/// in `value` (a pod spec is any object holding one of those lists).
///
/// A container without a `securityContext` gets [`restricted_container_context`]. A container
/// that has one got it past the refuse-list only because the admin allowed the field, and
/// allowed means kept: the forced keys fill only what the user left unset (key by key, nested
/// objects included), so `capabilities: {add: [NET_ADMIN]}` keeps its `add` and gains
/// `drop: [ALL]`, and `allowPrivilegeEscalation: true` stays true. W&B's agent replaces the
/// whole context, silently undoing what the admin allowed.
pub(crate) fn force_security_context(value: &mut Value) {
    force_security_context_and_visit(value, "", &mut |_, _| {});
}

/// [`force_security_context`], calling `f` on each pod spec (an object holding a `containers`
/// list) once it is hardened, with a function formatting its path under `root`, in the same
/// walk: the checks that follow the hardening need not walk the workload again, and no path
/// is built unless one is read.
pub(crate) fn force_security_context_and_visit(
    value: &mut Value,
    root: &str,
    f: &mut impl FnMut(&Value, &dyn Fn() -> String),
) {
    harden_all(value, root, &mut Vec::with_capacity(TRAIL), f);
}

fn harden_all<'a>(
    value: &'a mut Value,
    root: &str,
    trail: &mut Vec<Step<'a>>,
    f: &mut impl FnMut(&Value, &dyn Fn() -> String),
) {
    match value {
        Value::Object(map) => {
            if harden_containers(map) {
                f(value, &|| format_path(root, trail));
            }
            let Value::Object(map) = value else { return };
            for (key, item) in map.iter_mut() {
                if item.is_object() || item.is_array() {
                    trail.push(Step::Key(key));
                    harden_all(item, root, trail, f);
                    trail.pop();
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                if item.is_object() || item.is_array() {
                    trail.push(Step::Index(i));
                    harden_all(item, root, trail, f);
                    trail.pop();
                }
            }
        }
        _ => {}
    }
}

/// Hardens the containers, init containers and ephemeral containers of `map`, in one pass
/// over its keys instead of a lookup per list. True when `map` is a pod spec (it holds a
/// `containers` list).
fn harden_containers(map: &mut Map<String, Value>) -> bool {
    let mut pod_spec = false;
    for (key, item) in map.iter_mut() {
        let Value::Array(containers) = item else {
            continue;
        };
        match key.as_str() {
            "containers" => pod_spec = true,
            "initContainers" | "ephemeralContainers" => {}
            _ => continue,
        }
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            harden(container);
        }
    }
    pod_spec
}

/// One container: the restricted context when it has none, else what it leaves unset.
fn harden(container: &mut Map<String, Value>) {
    match container.get_mut("securityContext") {
        None => {
            container.insert("securityContext".to_owned(), restricted_container_context());
        }
        Some(context @ Value::Null) => *context = restricted_container_context(),
        Some(context) => fill_unset(context, restricted_container_context()),
    }
}

/// Sets what `target` leaves unset (absent or null) from `defaults`, recursing into objects.
fn fill_unset(target: &mut Value, defaults: Value) {
    match (target, defaults) {
        (Value::Object(target), Value::Object(defaults)) => {
            for (key, default) in defaults {
                let slot = target.entry(key).or_insert(Value::Null);
                fill_unset(slot, default);
            }
        }
        (target @ Value::Null, default) => *target = default,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_refused_key_is_reported_with_its_path() {
        let doc = json!({"spec": {"template": {"metadata": {"annotations": {
            "container.apparmor.security.beta.kubernetes.io/c": "Unconfined"}},
            "spec": {
            "hostNetwork": true, "hostPID": "yes", "hostIPC": 0, "shareProcessNamespace": false,
            "hostUsers": "1", "serviceAccountName": " ", "serviceAccount": ["", "x"],
            "automountServiceAccountToken": 1, "securityContext": {},
            "volumes": [{"name": "v", "hostPath": {"path": "/"}},
                        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {}}]}}],
            "containers": [{"ports": [{"hostPort": 80}, {"hostPort": 0}],
                            "volumeMounts": [{"mountPropagation": "Bidirectional"},
                                             {"mountPropagation": "HostToContainer"}]}]}}}});
        let errors = scan(&doc, "k", &BTreeSet::new());
        let mut paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "k.spec.template.metadata.annotations.container.apparmor.security.beta.kubernetes.io/c",
                "k.spec.template.spec.automountServiceAccountToken",
                "k.spec.template.spec.containers[0].ports[0].hostPort",
                "k.spec.template.spec.containers[0].volumeMounts[0].mountPropagation",
                "k.spec.template.spec.hostNetwork",
                "k.spec.template.spec.hostPID",
                "k.spec.template.spec.hostUsers",
                "k.spec.template.spec.securityContext",
                "k.spec.template.spec.serviceAccount",
                "k.spec.template.spec.volumes[0].hostPath",
                "k.spec.template.spec.volumes[1].projected.sources[0].serviceAccountToken",
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| e.fix.contains("allowed_fields") || e.path.contains("annotations"))
        );
    }

    #[test]
    fn admin_allow_list_permits_named_fields() {
        let doc = json!({"spec": {"serviceAccountName": "trainer", "hostNetwork": true}});
        let allowed: BTreeSet<String> = ["serviceAccountName".to_owned()].into();
        let errors = scan(&doc, "k", &allowed);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "k.spec.hostNetwork");
    }

    #[test]
    fn forces_context_on_every_container_list_anywhere() {
        let mut doc = json!({"spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": {
            "containers": [{"name": "a"}],
            "initContainers": [{"name": "i", "securityContext": null}],
            "ephemeralContainers": [{"name": "e"}]}}}}}});
        force_security_context(&mut doc);
        let spec = &doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"];
        let restricted = json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        });
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            assert_eq!(spec[list][0]["securityContext"], restricted, "{list}");
        }
    }

    #[test]
    fn an_allowed_context_is_kept_and_only_filled_in() {
        let mut doc = json!({"containers": [{"name": "a", "securityContext": {
            "allowPrivilegeEscalation": true,
            "capabilities": {"add": ["NET_ADMIN"]},
            "runAsUser": 1000,
            "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}}]});
        force_security_context(&mut doc);
        assert_eq!(
            doc["containers"][0]["securityContext"],
            json!({
                "allowPrivilegeEscalation": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                "runAsUser": 1000,
                "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}
            })
        );
    }
}
