//! Resource amounts as the scheduler counts them: `cpu` in millicores, everything else in
//! units, summed per pod the way kube-scheduler does. Shared by the scheduler replay
//! (`precheck`) and the namespace admission check (`admission`), so neither imports the other
//! for it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::{QuantityValue, Result};

/// Amounts per resource: `cpu` in millicores, everything else in units (bytes for memory).
pub(crate) type Amounts = BTreeMap<String, i128>;

pub(crate) const CPU: &str = "cpu";
pub(crate) const MEMORY: &str = "memory";
pub(crate) const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub(crate) const PODS: &str = "pods";

pub(crate) fn amount(resource: &str, quantity: &Quantity) -> Result<i128> {
    let value = QuantityValue::from_k8s(quantity)?;
    Ok(if resource == CPU {
        value.milli_value()
    } else {
        value.value()
    })
}

pub(crate) fn amounts(list: Option<&BTreeMap<String, Quantity>>) -> Result<Amounts> {
    let mut result = Amounts::new();
    for (resource, quantity) in list.into_iter().flatten() {
        result.insert(resource.clone(), amount(resource, quantity)?);
    }
    Ok(result)
}

/// Requests of a container, with limits standing in for missing requests (apiserver defaulting).
fn container_requests(container: &Container) -> Result<Amounts> {
    let resources = container.resources.as_ref();
    let mut requests = amounts(resources.and_then(|r| r.requests.as_ref()))?;
    for (resource, limit) in amounts(resources.and_then(|r| r.limits.as_ref()))? {
        requests.entry(resource).or_insert(limit);
    }
    Ok(requests)
}

pub(crate) fn add_into(total: &mut Amounts, more: &Amounts) {
    for (resource, value) in more {
        *total.entry(resource.clone()).or_insert(0) += value;
    }
}

pub(crate) fn max_into(total: &mut Amounts, other: &Amounts) {
    for (resource, value) in other {
        let entry = total.entry(resource.clone()).or_insert(0);
        *entry = (*entry).max(*value);
    }
}

/// The scheduler's view of what a pod requests (see the module docs).
pub fn pod_requests(spec: &PodSpec) -> Result<BTreeMap<String, i128>> {
    let mut total = Amounts::new();
    for container in &spec.containers {
        add_into(&mut total, &container_requests(container)?);
    }
    let mut sidecars = Amounts::new();
    let mut init_peak = Amounts::new();
    for container in spec.init_containers.iter().flatten() {
        let requests = container_requests(container)?;
        if container.restart_policy.as_deref() == Some("Always") {
            add_into(&mut sidecars, &requests);
            max_into(&mut init_peak, &sidecars);
        } else {
            let mut during = requests;
            add_into(&mut during, &sidecars);
            max_into(&mut init_peak, &during);
        }
    }
    add_into(&mut total, &sidecars);
    max_into(&mut total, &init_peak);
    if let Some(pod_level) = spec.resources.as_ref() {
        let mut requests = amounts(pod_level.requests.as_ref())?;
        for (resource, limit) in amounts(pod_level.limits.as_ref())? {
            requests.entry(resource).or_insert(limit);
        }
        total.extend(requests);
    }
    add_into(&mut total, &amounts(spec.overhead.as_ref())?);
    Ok(total)
}

pub(crate) fn format_amount(resource: &str, value: i128) -> String {
    if resource == CPU {
        if value % 1000 == 0 {
            (value / 1000).to_string()
        } else {
            format!("{value}m")
        }
    } else if resource == MEMORY
        || resource == EPHEMERAL_STORAGE
        || resource.starts_with("hugepages-")
    {
        QuantityValue::from_units(i64::try_from(value).unwrap_or(i64::MAX)).to_string()
    } else {
        value.to_string()
    }
}
