//! The namespace half of the pre-check: what the API server's LimitRanger and ResourceQuota
//! admission plugins do when the workload's pods are created in the target namespace.
//!
//! LimitRanger first fills each container's unset limits and requests from the `Container`
//! items' `default` and `defaultRequest` (which themselves default to `max`, then `default`,
//! then `min`, as the API server stores them), then refuses a container (or, for `Pod` items,
//! a pod's sum) outside `min`/`max` or above `maxLimitRequestRatio`. ResourceQuota then
//! charges each pod its requests and limits (`requests.cpu` or `cpu`, `limits.memory`,
//! `requests.nvidia.com/gpu`, `pods`, …) against every quota whose scopes match it, and
//! refuses a quota that constrains cpu or memory when a container leaves them unset.
//!
//! A gang is charged whole. Above a LimitRange bound or a quota's `hard` total the run never
//! fits; above what a quota has left (`hard` − `status.used`) it fits later. Quota scopes
//! `Terminating`, `NotTerminating`, `BestEffort`, `NotBestEffort` and `PriorityClass` are
//! matched; a quota with a scope not modelled here (`CrossNamespacePodAffinity`,
//! `VolumeAttributesClass`) is skipped.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, PodSpec, ResourceQuota, ResourceRequirements,
    ScopedResourceSelectorRequirement,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::Result;
use crate::amounts::{Amounts, add_into, amounts, format_amount, max_into, pod_requests};

type Resources = BTreeMap<String, Quantity>;

/// What admission says about the wanted pods.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Every pod is admitted with the quota left now.
    Admitted,
    /// Admitted once the namespace's running pods release quota; one line per quota.
    Later(Vec<String>),
    /// Never admitted as written; one line per LimitRange bound or quota exceeded.
    Never(Vec<String>),
}

/// The pod specs as the API server admits them: a container's unset requests taken from its
/// own limits (API defaulting), then LimitRanger's defaults for what is still unset.
pub(crate) fn with_defaults(limit_ranges: &[LimitRange], wanted: &[PodSpec]) -> Vec<PodSpec> {
    let items: Vec<LimitRangeItem> = container_items(limit_ranges)
        .map(|(_, item)| stored_defaults(item))
        .collect();
    let mut wanted = wanted.to_vec();
    for spec in &mut wanted {
        let init = spec.init_containers.iter_mut().flatten();
        for container in spec.containers.iter_mut().chain(init) {
            fill_defaults(container, &items);
        }
    }
    wanted
}

/// LimitRanger's and ResourceQuota's verdict on `wanted` (already [`with_defaults`]).
pub(crate) fn check(
    quotas: &[ResourceQuota],
    limit_ranges: &[LimitRange],
    wanted: &[PodSpec],
) -> Result<Admission> {
    let mut never = limit_range_violations(limit_ranges, wanted)?;
    let mut later = Vec::new();
    for quota in quotas {
        let name = quota.metadata.name.as_deref().unwrap_or("(unnamed)");
        let pods: Vec<&PodSpec> = wanted.iter().filter(|pod| in_scope(quota, pod)).collect();
        if pods.is_empty() {
            continue;
        }
        never.extend(unspecified(quota, name, &pods));
        let hard = quota_amounts(quota.spec.as_ref().and_then(|s| s.hard.as_ref()))?;
        let used = quota_amounts(quota.status.as_ref().and_then(|s| s.used.as_ref()))?;
        let charged = charge(&pods)?;
        for (key, limit) in &hard {
            let Some(&requested) = charged.get(key).filter(|wanted| **wanted > 0) else {
                continue;
            };
            let used = used.get(key).copied().unwrap_or(0);
            let show = |value| format!("{key}={}", format_amount(base_resource(key), value));
            if requested > *limit {
                never.push(format!(
                    "ResourceQuota {name}: the run requests {}, above the quota's hard limit {}",
                    show(requested),
                    show(*limit)
                ));
            } else if used + requested > *limit {
                later.push(format!(
                    "ResourceQuota {name}: the run requests {}, but only {} of {} are left ({} used)",
                    show(requested),
                    format_amount(base_resource(key), (*limit - used).max(0)),
                    format_amount(base_resource(key), *limit),
                    format_amount(base_resource(key), used)
                ));
            }
        }
    }
    Ok(match (never.is_empty(), later.is_empty()) {
        (false, _) => Admission::Never(never),
        (true, false) => Admission::Later(later),
        (true, true) => Admission::Admitted,
    })
}

fn container_items(
    limit_ranges: &[LimitRange],
) -> impl Iterator<Item = (&str, &LimitRangeItem)> + '_ {
    limit_items(limit_ranges).filter(|(_, item)| item.type_ == "Container")
}

fn limit_items(limit_ranges: &[LimitRange]) -> impl Iterator<Item = (&str, &LimitRangeItem)> + '_ {
    limit_ranges.iter().flat_map(|range| {
        let name = range.metadata.name.as_deref().unwrap_or("(unnamed)");
        range
            .spec
            .iter()
            .flat_map(|spec| spec.limits.iter())
            .map(move |item| (name, item))
    })
}

/// A `Container` item as the API server stores it: `default` from `max`, `defaultRequest`
/// from `default`, then from `min`.
fn stored_defaults(item: &LimitRangeItem) -> LimitRangeItem {
    let mut item = item.clone();
    let mut default = item.default.take().unwrap_or_default();
    for (key, value) in item.max.iter().flatten() {
        default.entry(key.clone()).or_insert_with(|| value.clone());
    }
    let mut request = item.default_request.take().unwrap_or_default();
    for (key, value) in default.iter().chain(item.min.iter().flatten()) {
        request.entry(key.clone()).or_insert_with(|| value.clone());
    }
    item.default = Some(default);
    item.default_request = Some(request);
    item
}

/// API defaulting (a request from the container's own limit), then LimitRanger's defaults.
fn fill_defaults(container: &mut Container, items: &[LimitRangeItem]) {
    let resources = container
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let limits = resources.limits.get_or_insert_with(Resources::new);
    let requests = resources.requests.get_or_insert_with(Resources::new);
    for (key, limit) in limits.iter() {
        requests.entry(key.clone()).or_insert_with(|| limit.clone());
    }
    for item in items {
        for (key, value) in item.default.iter().flatten() {
            limits.entry(key.clone()).or_insert_with(|| value.clone());
        }
        for (key, value) in item.default_request.iter().flatten() {
            requests.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
}

/// Every container and pod outside a LimitRange's bounds, in LimitRanger's words.
fn limit_range_violations(limit_ranges: &[LimitRange], wanted: &[PodSpec]) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (name, item) in limit_items(limit_ranges) {
        for (index, spec) in wanted.iter().enumerate() {
            if item.type_ == "Pod" {
                let (requests, limits) = pod_totals(spec)?;
                for problem in bounds(item, "Pod", &requests, &limits)? {
                    lines.push(format!("LimitRange {name}: {problem} (pod {index})"));
                }
            }
            if item.type_ != "Container" {
                continue;
            }
            let init = spec.init_containers.iter().flatten();
            for container in spec.containers.iter().chain(init) {
                let resources = container.resources.as_ref();
                let requests = amounts(resources.and_then(|r| r.requests.as_ref()))?;
                let limits = amounts(resources.and_then(|r| r.limits.as_ref()))?;
                for problem in bounds(item, "Container", &requests, &limits)? {
                    lines.push(format!(
                        "LimitRange {name}: {problem} (pod {index}, container {})",
                        container.name
                    ));
                }
            }
        }
    }
    Ok(lines)
}

/// A pod's requests (the scheduler's sum) and limits (containers summed, init peak).
fn pod_totals(spec: &PodSpec) -> Result<(Amounts, Amounts)> {
    let mut limits = Amounts::new();
    for container in &spec.containers {
        add_into(
            &mut limits,
            &amounts(container.resources.as_ref().and_then(|r| r.limits.as_ref()))?,
        );
    }
    for container in spec.init_containers.iter().flatten() {
        max_into(
            &mut limits,
            &amounts(container.resources.as_ref().and_then(|r| r.limits.as_ref()))?,
        );
    }
    Ok((pod_requests(spec)?, limits))
}

/// `min`, `max` and `maxLimitRequestRatio` of one item against requests and limits.
fn bounds(
    item: &LimitRangeItem,
    kind: &str,
    requests: &Amounts,
    limits: &Amounts,
) -> Result<Vec<String>> {
    // As in LimitRanger, the first failing check of a bound is its one message.
    let mut problems = Vec::new();
    for (key, min) in amounts(item.min.as_ref())? {
        let show = |value| format_amount(&key, value);
        let head = format!("minimum {key} usage per {kind} is {}", show(min));
        let (request, limit) = (requests.get(&key), limits.get(&key));
        match (request, limit) {
            (None, _) => problems.push(format!("{head}.  No request is specified")),
            (Some(request), _) if *request < min => {
                problems.push(format!("{head}, but request is {}", show(*request)));
            }
            (_, Some(limit)) if *limit < min => {
                problems.push(format!("{head}, but limit is {}", show(*limit)));
            }
            _ => {}
        }
    }
    for (key, max) in amounts(item.max.as_ref())? {
        let show = |value| format_amount(&key, value);
        let head = format!("maximum {key} usage per {kind} is {}", show(max));
        match (limits.get(&key), requests.get(&key)) {
            (None, _) => problems.push(format!("{head}.  No limit is specified")),
            (Some(limit), _) if *limit > max => {
                problems.push(format!("{head}, but limit is {}", show(*limit)));
            }
            (_, Some(request)) if *request > max => {
                problems.push(format!("{head}, but request is {}", show(*request)));
            }
            _ => {}
        }
    }
    for (key, ratio) in item.max_limit_request_ratio.iter().flatten() {
        let ratio = crate::QuantityValue::from_k8s(ratio)?.milli_value();
        if let (Some(limit), Some(request)) = (limits.get(key), requests.get(key))
            && *request > 0
            && limit * 1000 > ratio * request
        {
            problems.push(format!(
                "{key} max limit to request ratio per {kind} is {}, but provided ratio is {:.6}",
                format_amount("cpu", ratio),
                *limit as f64 / *request as f64
            ));
        }
    }
    Ok(problems)
}

/// Whether every scope of the quota matches the pod.
fn in_scope(quota: &ResourceQuota, pod: &PodSpec) -> bool {
    let Some(spec) = quota.spec.as_ref() else {
        return true;
    };
    let scopes = spec
        .scopes
        .iter()
        .flatten()
        .map(|scope| (scope.as_str(), None));
    let selected = spec
        .scope_selector
        .iter()
        .flat_map(|selector| selector.match_expressions.iter().flatten())
        .map(|requirement| (requirement.scope_name.as_str(), Some(requirement)));
    scopes
        .chain(selected)
        .all(|(scope, requirement)| scope_matches(scope, requirement, pod))
}

fn scope_matches(
    scope: &str,
    requirement: Option<&ScopedResourceSelectorRequirement>,
    pod: &PodSpec,
) -> bool {
    let best_effort = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .all(|c| {
            c.resources.as_ref().is_none_or(|r| {
                r.requests.as_ref().is_none_or(BTreeMap::is_empty)
                    && r.limits.as_ref().is_none_or(BTreeMap::is_empty)
            })
        });
    match scope {
        "Terminating" => pod.active_deadline_seconds.is_some(),
        "NotTerminating" => pod.active_deadline_seconds.is_none(),
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = pod.priority_class_name.as_deref();
            let values = requirement
                .and_then(|r| r.values.as_deref())
                .unwrap_or_default();
            match requirement.map(|r| r.operator.as_str()) {
                None | Some("Exists") => class.is_some(),
                Some("DoesNotExist") => class.is_none(),
                Some("In") => class.is_some_and(|c| values.iter().any(|v| v == c)),
                Some("NotIn") => class.is_none_or(|c| !values.iter().any(|v| v == c)),
                Some(_) => false,
            }
        }
        _ => false,
    }
}

/// `requests.cpu` for `cpu`, the resource itself for `limits.x` and `requests.x`.
fn base_resource(key: &str) -> &str {
    key.strip_prefix("requests.")
        .or_else(|| key.strip_prefix("limits."))
        .unwrap_or(key)
}

/// The quota's amounts keyed as the pods are charged: `cpu` becomes `requests.cpu`,
/// `count/pods` becomes `pods`; keys this check does not charge are dropped.
fn quota_amounts(list: Option<&Resources>) -> Result<Amounts> {
    let mut result = Amounts::new();
    for (key, quantity) in list.into_iter().flatten() {
        let key = match key.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => format!("requests.{key}"),
            "count/pods" | "pods" => "pods".to_owned(),
            other if other.starts_with("requests.") || other.starts_with("limits.") => {
                other.to_owned()
            }
            _ => continue,
        };
        let value = crate::QuantityValue::from_k8s(quantity)?;
        let value = if base_resource(&key) == "cpu" {
            value.milli_value()
        } else {
            value.value()
        };
        result.insert(key, value);
    }
    Ok(result)
}

/// What the pods are charged: `requests.<r>`, `limits.<r>` and `pods`.
fn charge(pods: &[&PodSpec]) -> Result<Amounts> {
    let mut total = Amounts::new();
    for pod in pods {
        let (requests, limits) = pod_totals(pod)?;
        let mut charged: Amounts = requests
            .into_iter()
            .map(|(k, v)| (format!("requests.{k}"), v))
            .collect();
        charged.extend(limits.into_iter().map(|(k, v)| (format!("limits.{k}"), v)));
        charged.insert("pods".to_owned(), 1);
        add_into(&mut total, &charged);
    }
    Ok(total)
}

/// A quota on cpu or memory refuses a container that leaves it unset, naming the containers.
fn unspecified(quota: &ResourceQuota, name: &str, pods: &[&PodSpec]) -> Vec<String> {
    let hard = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    let mut lines = Vec::new();
    for key in hard.into_iter().flatten().map(|(key, _)| key.as_str()) {
        let (field, resource) = match key {
            "cpu" | "memory" => ("requests", key),
            "requests.cpu" | "requests.memory" | "limits.cpu" | "limits.memory" => {
                key.split_once('.').unwrap_or(("requests", key))
            }
            _ => continue,
        };
        let missing: Vec<&str> = pods
            .iter()
            .flat_map(|pod| {
                pod.containers
                    .iter()
                    .chain(pod.init_containers.iter().flatten())
            })
            .filter(|c| {
                let r = c.resources.as_ref();
                let list = if field == "limits" {
                    r.and_then(|r| r.limits.as_ref())
                } else {
                    r.and_then(|r| r.requests.as_ref())
                };
                list.is_none_or(|list| !list.contains_key(resource))
            })
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            lines.push(format!(
                "ResourceQuota {name}: must specify {field}.{resource} for: {} (the quota constrains it; set it, or have a LimitRange default it)",
                missing.join(",")
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{LimitRange, PodSpec, ResourceQuota};
    use serde_json::{Value, json};

    use crate::fixtures::{gpu_pod, node, pod_spec, running_pod};
    use crate::{PreCheck, Verdict, precheck};

    fn limit_range(name: &str, limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"limits": limits}}))
            .unwrap()
    }

    fn quota(name: &str, spec: Value, used: Value) -> ResourceQuota {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": spec, "status": {"used": used}}),
        )
        .unwrap()
    }

    fn gpu_nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
        vec![node("g1").gpus(8).build(), node("g2").gpus(8).build()]
    }

    fn check(quotas: &[ResourceQuota], limits: &[LimitRange], wanted: &[PodSpec]) -> PreCheck {
        precheck(&gpu_nodes(), &[], quotas, limits, wanted)
    }

    #[test]
    fn above_a_container_maximum_never_fits() {
        let limits = [limit_range(
            "gpu-limits",
            json!([{"type": "Container", "max": {"nvidia.com/gpu": "4"}}]),
        )];
        let result = check(&[], &limits, &[gpu_pod(8)]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.message,
            "LimitRange gpu-limits: maximum nvidia.com/gpu usage per Container is 4, but limit is 8 (pod 0, container train)"
        );
        assert_eq!(check(&[], &limits, &[gpu_pod(4)]).verdict, Verdict::FitsNow);
    }

    #[test]
    fn above_a_pod_maximum_or_below_a_minimum_never_fits() {
        let limits = [limit_range(
            "pod-cpu",
            json!([
            {"type": "Pod", "max": {"cpu": "2"}},
            {"type": "Container", "min": {"memory": "1Gi"}}]),
        )];
        let container = |name: &str| {
            json!({"name": name, "resources": {
            "limits": {"cpu": "1500m", "memory": "512Mi"}}})
        };
        let wanted = pod_spec(json!({"containers": [container("a"), container("b")]}));
        let result = check(&[], &limits, &[wanted]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.reasons,
            [
                "LimitRange pod-cpu: maximum cpu usage per Pod is 2, but limit is 3 (pod 0)",
                "LimitRange pod-cpu: minimum memory usage per Container is 1Gi, but request is 512Mi (pod 0, container a)",
                "LimitRange pod-cpu: minimum memory usage per Container is 1Gi, but request is 512Mi (pod 0, container b)",
            ]
        );
    }

    #[test]
    fn a_gang_above_the_quotas_hard_total_never_fits() {
        let quotas = [quota(
            "gpu-quota",
            json!({"hard": {"requests.nvidia.com/gpu": "8"}}),
            json!({"requests.nvidia.com/gpu": "0"}),
        )];
        let result = check(&quotas, &[], &[gpu_pod(8), gpu_pod(8)]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.message,
            "ResourceQuota gpu-quota: the run requests requests.nvidia.com/gpu=16, above the quota's hard limit requests.nvidia.com/gpu=8"
        );
        assert!(result.placements.is_empty());
        assert_eq!(check(&quotas, &[], &[gpu_pod(8)]).verdict, Verdict::FitsNow);
    }

    #[test]
    fn above_what_the_quota_has_left_fits_later() {
        let quotas = [quota(
            "team",
            json!({"hard": {"requests.nvidia.com/gpu": "8", "pods": "10"}}),
            json!({"requests.nvidia.com/gpu": "6", "pods": "3"}),
        )];
        let result = check(&quotas, &[], &[gpu_pod(4)]);
        assert_eq!(result.verdict, Verdict::FitsLater);
        assert_eq!(
            result.message,
            "ResourceQuota team: the run requests requests.nvidia.com/gpu=4, but only 2 of 8 are left (6 used)"
        );
        assert_eq!(check(&quotas, &[], &[gpu_pod(2)]).verdict, Verdict::FitsNow);

        // The scheduler's worse verdict wins, and the quota's reason is kept beside it.
        let roomy = [quota(
            "team",
            json!({"hard": {"requests.nvidia.com/gpu": "32"}}),
            json!({"requests.nvidia.com/gpu": "30"}),
        )];
        let result = check(&roomy, &[], &[gpu_pod(16)]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.message,
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        );
        assert!(
            result
                .reasons
                .last()
                .is_some_and(|r| r.contains("only 2 of 32 are left")),
            "{:?}",
            result.reasons
        );
    }

    #[test]
    fn fits_later_on_both_counts_keeps_both_reasons() {
        let quotas = [quota(
            "team",
            json!({"hard": {"requests.nvidia.com/gpu": "16"}}),
            json!({"requests.nvidia.com/gpu": "14"}),
        )];
        let pods = [
            running_pod("g1", 8, "Running"),
            running_pod("g2", 6, "Running"),
        ];
        let result = precheck(&gpu_nodes(), &pods, &quotas, &[], &[gpu_pod(4)]);
        assert_eq!(result.verdict, Verdict::FitsLater);
        assert_eq!(
            result.message,
            "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
        );
        assert!(result.summary.ends_with("ResourceQuota team: the run requests requests.nvidia.com/gpu=4, but only 2 of 16 are left (14 used)"), "{}", result.summary);
    }

    #[test]
    fn a_cpu_quota_needs_the_field_set_or_defaulted_by_a_limit_range() {
        let quotas = [quota(
            "compute",
            json!({"hard": {"limits.cpu": "64", "cpu": "32"}}),
            json!({"limits.cpu": "0", "requests.cpu": "0"}),
        )];
        let result = check(&quotas, &[], &[gpu_pod(1)]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.reasons,
            [
                "ResourceQuota compute: must specify requests.cpu for: train (the quota constrains it; set it, or have a LimitRange default it)",
                "ResourceQuota compute: must specify limits.cpu for: train (the quota constrains it; set it, or have a LimitRange default it)",
            ]
        );
        let defaults = [limit_range(
            "defaults",
            json!([{"type": "Container", "default": {"cpu": "2"}}]),
        )];
        assert_eq!(
            check(&quotas, &defaults, &[gpu_pod(1)]).verdict,
            Verdict::FitsNow
        );
        // The defaults count for scheduling too: 40 CPUs requested by default fit no 32-CPU node.
        let big = [limit_range(
            "big",
            json!([{"type": "Container", "defaultRequest": {"cpu": "40"}}]),
        )];
        let result = check(&[], &big, &[gpu_pod(1)]);
        assert_eq!(result.verdict, Verdict::NeverFits);
        assert_eq!(
            result.message,
            "0/2 nodes are available: 2 Insufficient cpu."
        );
    }

    #[test]
    fn init_containers_must_specify_what_the_quota_constrains_too() {
        let quotas = [quota(
            "compute",
            json!({"hard": {"requests.memory": "64Gi"}}),
            json!({}),
        )];
        let wanted = pod_spec(json!({
            "initContainers": [{"name": "fetch"}],
            "containers": [{"name": "train", "resources": {"requests": {"memory": "1Gi"}}}]}));
        assert_eq!(
            check(&quotas, &[], &[wanted]).reasons,
            [
                "ResourceQuota compute: must specify requests.memory for: fetch (the quota constrains it; set it, or have a LimitRange default it)"
            ]
        );
    }

    #[test]
    fn quotas_apply_only_to_pods_in_their_scopes() {
        let best_effort = quota(
            "be",
            json!({"hard": {"pods": "0"}, "scopes": ["BestEffort"]}),
            json!({}),
        );
        assert_eq!(
            check(&[best_effort], &[], &[gpu_pod(1)]).verdict,
            Verdict::FitsNow
        );
        let high = quota(
            "high",
            json!({"hard": {"requests.nvidia.com/gpu": "2"},
            "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
            json!({}),
        );
        assert_eq!(
            check(std::slice::from_ref(&high), &[], &[gpu_pod(4)]).verdict,
            Verdict::FitsNow
        );
        let mut urgent = gpu_pod(4);
        urgent.priority_class_name = Some("high".to_owned());
        assert_eq!(check(&[high], &[], &[urgent]).verdict, Verdict::NeverFits);
    }
}
