//! Validation of a rendered pod spec against Kubernetes' extended-resource rules.
//!
//! The apiserver rejects a pod whose extended resources (anything with a domain outside
//! `kubernetes.io`, such as `nvidia.com/gpu`) are fractional, are requested without a limit,
//! or are requested at a value different from the limit. Checking before submit lets the agent
//! fail the run with the field path instead of a webhook-style rejection.

use std::fmt;

use serde_json::{Map, Value};

use crate::QuantityValue;

/// One problem in a pod spec, with the container and the full field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// The container's `name` (or `#<index>` when it has none).
    pub container: String,
    /// Full path, e.g. `spec.template.spec.containers[0].resources.requests."nvidia.com/gpu"`.
    pub field: String,
    /// What is wrong, lower-case.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (container {:?}): {}; {}",
            self.field, self.container, self.problem, self.fix
        )
    }
}

/// Whether `resource` is an extended resource: a domain-qualified name outside the
/// `kubernetes.io` domains (so `nvidia.com/gpu` is, `cpu` and `hugepages-2Mi` are not).
pub fn is_extended_resource(resource: &str) -> bool {
    match resource.split_once('/') {
        Some((domain, _)) => {
            domain != "kubernetes.io"
                && !domain.ends_with(".kubernetes.io")
                && !resource.starts_with("requests.")
        }
        None => false,
    }
}

/// Joins a path prefix and a field.
pub(crate) fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// A map key as it appears in a field path: bare when it is an identifier, quoted otherwise.
pub(crate) fn path_key(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// The text of a quantity in JSON: a string, or a number as written.
pub(crate) fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Checks every container and init container of `pod_spec` (a PodSpec JSON object) against
/// the extended-resource rules: quantities are whole numbers, present in `limits`, and equal in
/// `requests` when requests are given. Paths start with `path_prefix`, e.g.
/// `spec.template.spec` for a Job. Returns every problem; empty means valid.
///
/// ```
/// let pod_spec = serde_json::json!({"containers": [{"name": "train", "resources": {
///     "requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "4"}}}]});
/// let errors = rlaunch_gpu::validate_extended_resources(&pod_spec, "spec.template.spec");
/// assert_eq!(errors[0].field, r#"spec.template.spec.containers[0].resources.requests."nvidia.com/gpu""#);
/// ```
pub fn validate_extended_resources(pod_spec: &Value, path_prefix: &str) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    for list in ["containers", "initContainers"] {
        let Some(containers) = pod_spec.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (index, container) in containers.iter().enumerate() {
            // Most containers have no extended resource: skip them before formatting a path.
            if !has_extended_resource(container) {
                continue;
            }
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{index}"), str::to_owned);
            let base = join_path(path_prefix, &format!("{list}[{index}].resources"));
            check_container(container, &name, &base, &mut errors);
        }
    }
    errors
}

/// Whether the container's `resources.limits` or `resources.requests` names an extended
/// resource.
fn has_extended_resource(container: &Value) -> bool {
    let Some(resources) = container.get("resources") else {
        return false;
    };
    ["limits", "requests"].iter().any(|section| {
        resources
            .get(section)
            .and_then(Value::as_object)
            .is_some_and(|quantities| quantities.keys().any(|r| is_extended_resource(r)))
    })
}

fn check_container(container: &Value, name: &str, base: &str, errors: &mut Vec<ValidationError>) {
    let resources = container.get("resources");
    let section = |key: &str| {
        resources
            .and_then(|r| r.get(key))
            .and_then(Value::as_object)
    };
    let mut checker = Checker { name, base, errors };
    let (limits, requests) = (section("limits"), section("requests"));
    if let Some(limits) = limits {
        checker.requests_equal_limits(limits, requests);
    }
    if let Some(requests) = requests {
        checker.requests_have_limits(requests, limits);
    }
}

/// The checks of one container's resources, collecting errors.
struct Checker<'a> {
    name: &'a str,
    base: &'a str,
    errors: &'a mut Vec<ValidationError>,
}

impl Checker<'_> {
    fn push(&mut self, field: String, problem: String, fix: String) {
        self.errors.push(ValidationError {
            container: self.name.to_owned(),
            field,
            problem,
            fix,
        });
    }

    /// Every extended limit is a whole number, and its request (if any) equals it.
    fn requests_equal_limits(
        &mut self,
        limits: &Map<String, Value>,
        requests: Option<&Map<String, Value>>,
    ) {
        for (resource, value) in limits.iter().filter(|(r, _)| is_extended_resource(r)) {
            let limit = self.whole("limits", resource, value);
            let Some(request_value) = requests.and_then(|requests| requests.get(resource)) else {
                continue;
            };
            let request = self.whole("requests", resource, request_value);
            if let (Some((limit_text, limit)), Some((request_text, request))) = (limit, request)
                && limit != request
            {
                self.push(
                    format!("{}.requests.{}", self.base, path_key(resource)),
                    format!(
                        "request {request_text:?} differs from limit {limit_text:?}; extended resources cannot be overcommitted"
                    ),
                    format!("set requests.{resource} to {limit_text:?} like the limit, or drop it"),
                );
            }
        }
    }

    /// Every extended request has a limit.
    fn requests_have_limits(
        &mut self,
        requests: &Map<String, Value>,
        limits: Option<&Map<String, Value>>,
    ) {
        for (resource, value) in requests.iter().filter(|(r, _)| is_extended_resource(r)) {
            if limits.is_some_and(|limits| limits.contains_key(resource)) {
                continue;
            }
            let request = self.whole("requests", resource, value);
            let text = request.map_or_else(|| "1".to_owned(), |(text, _)| text);
            self.push(
                format!("{}.limits.{}", self.base, path_key(resource)),
                format!(
                    "{resource} is requested but has no limit; extended resources must be set in limits"
                ),
                format!("add limits.{resource}: {text:?} (requests may then be dropped)"),
            );
        }
    }

    /// The quantity at `section.resource`, if it is a whole, non-negative number.
    fn whole(
        &mut self,
        section: &str,
        resource: &str,
        value: &Value,
    ) -> Option<(String, QuantityValue)> {
        let base = self.base;
        // Formatted only for a problem: most quantities are valid.
        let field = || format!("{base}.{section}.{}", path_key(resource));
        let whole_number = || "write a whole number such as \"1\"".to_owned();
        let Some(text) = quantity_text(value) else {
            self.push(
                field(),
                format!("{value} is not a quantity"),
                whole_number(),
            );
            return None;
        };
        match QuantityValue::parse(&text) {
            Err(error) => {
                self.push(field(), error.to_string(), whole_number());
                None
            }
            Ok(quantity) if !quantity.is_integer() || quantity.is_negative() => {
                self.push(
                    field(),
                    format!(
                        "{text:?} is not a whole number; extended resources such as {resource} cannot be split"
                    ),
                    format!(
                        "request a whole number of {resource}, e.g. \"{}\"",
                        quantity.value().max(1)
                    ),
                );
                None
            }
            Ok(quantity) => Some((text, quantity)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(pod_spec: &Value) -> Vec<String> {
        validate_extended_resources(pod_spec, "spec.template.spec")
            .into_iter()
            .map(|error| error.field)
            .collect()
    }

    #[test]
    fn limit_equal_to_request_is_valid() {
        let pod_spec = json!({"containers": [{"name": "train", "resources": {
            "limits": {"nvidia.com/gpu": "4", "cpu": "500m"},
            "requests": {"nvidia.com/gpu": 4, "cpu": "250m"}}}]});
        assert_eq!(fields(&pod_spec), Vec::<String>::new());
    }

    #[test]
    fn limits_only_is_valid_and_cpu_fractions_are_ignored() {
        let pod_spec = json!({"containers": [{"name": "train", "resources": {
            "limits": {"nvidia.com/gpu": "1", "cpu": "1.5", "hugepages-2Mi": "1Mi"}}}]});
        assert!(fields(&pod_spec).is_empty());
    }

    #[test]
    fn request_differing_from_limit_names_the_request() {
        let pod_spec = json!({"containers": [{"name": "sidecar"}, {"name": "train", "resources": {
            "limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": "2"}}}]});
        let errors = validate_extended_resources(&pod_spec, "spec.template.spec");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].container, "train");
        assert_eq!(
            errors[0].field,
            r#"spec.template.spec.containers[1].resources.requests."nvidia.com/gpu""#
        );
        assert!(
            errors[0].to_string().contains("differs from limit \"4\""),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn request_without_limit_names_the_missing_limit() {
        let pod_spec = json!({"initContainers": [{"name": "warmup", "resources": {
            "requests": {"amd.com/gpu": "1"}}}], "containers": []});
        let errors = validate_extended_resources(&pod_spec, "");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].field,
            r#"initContainers[0].resources.limits."amd.com/gpu""#
        );
        assert_eq!(errors[0].container, "warmup");
        assert!(
            errors[0].fix.contains("add limits.amd.com/gpu: \"1\""),
            "{}",
            errors[0].fix
        );
    }

    #[test]
    fn fractional_and_malformed_quantities_are_reported() {
        let pod_spec = json!({"containers": [{"resources": {
            "limits": {"nvidia.com/gpu": "500m", "nvidia.com/mig-1g.10gb": "x", "amd.com/gpu": 1.5}}}]});
        let mut got = fields(&pod_spec);
        got.sort();
        assert_eq!(
            got,
            [
                r#"spec.template.spec.containers[0].resources.limits."amd.com/gpu""#,
                r#"spec.template.spec.containers[0].resources.limits."nvidia.com/gpu""#,
                r#"spec.template.spec.containers[0].resources.limits."nvidia.com/mig-1g.10gb""#,
            ]
        );
        let errors = validate_extended_resources(&pod_spec, "");
        assert!(errors.iter().all(|error| error.container == "#0"));
    }

    #[test]
    fn extended_resource_names() {
        assert!(is_extended_resource("nvidia.com/gpu"));
        assert!(is_extended_resource("example.com/foo"));
        assert!(!is_extended_resource("cpu"));
        assert!(!is_extended_resource("hugepages-1Gi"));
        assert!(!is_extended_resource("kubernetes.io/something"));
        assert!(!is_extended_resource("foo.kubernetes.io/bar"));
    }
}
