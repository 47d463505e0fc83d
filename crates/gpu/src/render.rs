//! Rendering helpers that add GPU scheduling settings to pod spec JSON.
//!
//! Every helper works on `serde_json::Value` because the render engine works on JSON
//! manifests. The rules are the same for all of them:
//!
//! - unknown fields are kept, and lists are appended to, never replaced;
//! - a user value is never overwritten: an equal value is left alone, a different one is an
//!   [`Error::Conflict`] naming the field (and container);
//! - applying a helper twice gives the same result as applying it once.

use serde_json::{Map, Value, json};

use crate::labels::{LABEL_VALUES, LabelFamily, Vendor, memory_threshold_mib};
use crate::validate::{path_key, quantity_text};
use crate::{Error, GpuRequest, QuantityValue, Result};

/// Name of the `/dev/shm` volume [`add_shm_volume`] adds.
pub const SHM_VOLUME_NAME: &str = "dshm";
/// The pod annotation Volcano reads the PodGroup name from.
pub const VOLCANO_GROUP_ANNOTATION: &str = "scheduling.k8s.io/group-name";
/// Volcano's scheduler name.
pub const VOLCANO_SCHEDULER: &str = "volcano";

/// Which label families [`add_node_affinity`] targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FamilyChoice {
    /// One family, chosen by the queue config.
    Only(LabelFamily),
    /// Every family that knows the product: one node selector term per family (terms are ORed),
    /// so the same pod spec schedules on GFD, ROCm, GKE and Karpenter nodes.
    Any,
}

/// Options for [`apply_gpu_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The container to put the GPUs on; `None` is the first container.
    pub container: Option<String>,
    /// Label families for product and memory affinity.
    pub families: FamilyChoice,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            container: None,
            families: FamilyChoice::Any,
        }
    }
}

/// Applies everything a GPU request implies: resources (limits and equal requests), GPU
/// tolerations, product/memory node affinity and the `/dev/shm` volume.
pub fn apply_gpu_request(
    pod_spec: &mut Value,
    request: &GpuRequest,
    options: &RenderOptions,
) -> Result<()> {
    set_gpu_resources(pod_spec, request, options.container.as_deref())?;
    add_gpu_tolerations(pod_spec, request)?;
    add_node_affinity(pod_spec, request, options.families)?;
    add_shm_volume(pod_spec, request, options.container.as_deref())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_object<'a>(value: &'a mut Value, field: &str) -> Result<&'a mut Map<String, Value>> {
    if value.is_null() {
        *value = Value::Object(Map::new());
    }
    let found = type_name(value);
    value.as_object_mut().ok_or_else(|| Error::WrongJsonType {
        field: field.to_owned(),
        expected: "an object",
        found,
    })
}

/// The object at `key` in `parent`, inserted empty when absent or null.
fn child_object<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a mut Map<String, Value>> {
    as_object(parent.entry(key).or_insert(Value::Null), field)
}

/// The array at `key` in `parent`, inserted empty when absent or null.
fn child_array<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a mut Vec<Value>> {
    let value = parent.entry(key).or_insert(Value::Null);
    if value.is_null() {
        *value = Value::Array(Vec::new());
    }
    let found = type_name(value);
    value.as_array_mut().ok_or_else(|| Error::WrongJsonType {
        field: field.to_owned(),
        expected: "an array",
        found,
    })
}

/// Sets `parent[key]` to `wanted` unless it already holds a different value.
fn set_if_absent(
    parent: &mut Map<String, Value>,
    key: &str,
    wanted: Value,
    field: &str,
    container: Option<&str>,
) -> Result<()> {
    match parent.get(key) {
        None | Some(Value::Null) => {
            parent.insert(key.to_owned(), wanted);
            Ok(())
        }
        Some(existing) if *existing == wanted => Ok(()),
        Some(existing) => Err(conflict(
            field,
            container,
            existing.to_string(),
            wanted.to_string(),
        )),
    }
}

fn conflict(field: &str, container: Option<&str>, existing: String, wanted: String) -> Error {
    Error::Conflict {
        field: field.to_owned(),
        container_note: container
            .map(|name| format!(" in container {name:?}"))
            .unwrap_or_default(),
        existing,
        wanted,
    }
}

/// The index and name of the container to change: the named one, or the first.
fn pick_container(pod_spec: &mut Value, container: Option<&str>) -> Result<(usize, String)> {
    let spec = as_object(pod_spec, "spec")?;
    let containers = child_array(spec, "containers", "containers")?;
    let name_of = |value: &Value| {
        value
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    match container {
        None if containers.is_empty() => Err(Error::NoContainer {
            field: "containers".to_owned(),
        }),
        None => Ok((0, containers.first().map(name_of).unwrap_or_default())),
        Some(wanted) => containers
            .iter()
            .position(|value| name_of(value) == wanted)
            .map(|index| (index, wanted.to_owned()))
            .ok_or_else(|| Error::ContainerNotFound {
                name: wanted.to_owned(),
                available: containers
                    .iter()
                    .map(name_of)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
    }
}

fn container_object(pod_spec: &mut Value, index: usize) -> Result<&mut Map<String, Value>> {
    let field = format!("containers[{index}]");
    let value = pod_spec
        .get_mut("containers")
        .and_then(|containers| containers.get_mut(index))
        .ok_or_else(|| Error::NoContainer {
            field: "containers".to_owned(),
        })?;
    as_object(value, &field)
}

/// Sets `limits` and an equal `requests` of the request's resource on the named container (or
/// the first). An existing equal quantity (`"4"`, `4`, `"4000m"`) is kept as written; a
/// different one is a conflict.
pub fn set_gpu_resources(
    pod_spec: &mut Value,
    request: &GpuRequest,
    container: Option<&str>,
) -> Result<()> {
    let (index, name) = pick_container(pod_spec, container)?;
    let wanted = QuantityValue::from_units(i64::from(request.count()));
    let container_value = container_object(pod_spec, index)?;
    let resources_field = format!("containers[{index}].resources");
    let resources = child_object(container_value, "resources", &resources_field)?;
    for section in ["limits", "requests"] {
        let section_field = format!("{resources_field}.{section}");
        let map = child_object(resources, section, &section_field)?;
        let field = format!("{section_field}.{}", path_key(request.resource()));
        match map.get(request.resource()) {
            None | Some(Value::Null) => {
                map.insert(
                    request.resource().to_owned(),
                    Value::String(request.count().to_string()),
                );
            }
            Some(existing) => {
                let same = quantity_text(existing)
                    .and_then(|text| QuantityValue::parse(&text).ok())
                    .is_some_and(|quantity| quantity == wanted);
                if !same {
                    return Err(conflict(
                        &field,
                        Some(&name),
                        existing.to_string(),
                        format!("\"{}\"", request.count()),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The tolerations [`add_gpu_tolerations`] adds for `vendor`: `<vendor resource>` `Exists`
/// `NoSchedule`. For NVIDIA this also tolerates GKE's `nvidia.com/gpu=present:NoSchedule`.
pub fn gpu_tolerations(vendor: Vendor) -> Vec<Value> {
    vec![json!({"key": vendor.default_resource(), "operator": "Exists", "effect": "NoSchedule"})]
}

/// Whether an existing toleration already tolerates every taint `wanted` (an `Exists`
/// toleration) tolerates.
fn covers(existing: &Value, wanted: &Value) -> bool {
    let text = |value: &Value, key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let operator_exists = text(existing, "operator") == "Exists";
    let key = text(existing, "key");
    let effect = text(existing, "effect");
    existing == wanted
        || (operator_exists
            && (key.is_empty() || key == text(wanted, "key"))
            && (effect.is_empty() || effect == text(wanted, "effect")))
}

/// Appends the vendor's GPU taint tolerations ([`gpu_tolerations`]) unless an existing
/// toleration already covers them.
pub fn add_gpu_tolerations(pod_spec: &mut Value, request: &GpuRequest) -> Result<()> {
    let spec = as_object(pod_spec, "spec")?;
    let tolerations = child_array(spec, "tolerations", "tolerations")?;
    for wanted in gpu_tolerations(request.vendor()) {
        if !tolerations.iter().any(|existing| covers(existing, &wanted)) {
            tolerations.push(wanted);
        }
    }
    Ok(())
}

/// The node selector terms (each a list of `matchExpressions`) that select nodes with the
/// requested product and memory in `family`, or `None` when the request names neither.
///
/// - product: `<product label> In <the product's known values>`, keeping only variants with at
///   least the memory minimum;
/// - memory minimum with a memory label: `<memory label> Gt <threshold MiB>`
///   ([`memory_threshold_mib`]);
/// - memory minimum without product or memory label: `In` every known value of the vendor
///   with enough memory.
pub fn family_requirements(
    request: &GpuRequest,
    family: LabelFamily,
) -> Result<Option<Vec<Value>>> {
    let min_memory = request.min_memory_gb();
    let mut expressions = Vec::new();
    let mut in_values = |values: Vec<&'static str>, product: String| -> Result<()> {
        if values.is_empty() {
            return Err(Error::NoVariantWithMemory {
                product,
                family: family.name().to_owned(),
                min_memory_gb: min_memory.unwrap_or_default(),
            });
        }
        expressions
            .push(json!({"key": family.product_label(), "operator": "In", "values": values}));
        Ok(())
    };
    let has_memory = |memory_gb: u32| min_memory.is_none_or(|min| memory_gb >= min);
    match request.product() {
        Some(product) => {
            if product.label_values(family).next().is_none() {
                let available: Vec<&str> = LabelFamily::ALL
                    .iter()
                    .filter(|other| product.label_values(**other).next().is_some())
                    .map(|other| other.name())
                    .collect();
                return Err(Error::ProductNotInFamily {
                    product: product.name().to_owned(),
                    family: family.name().to_owned(),
                    available: available.join(", "),
                });
            }
            let values = product
                .label_values(family)
                .filter(|entry| has_memory(entry.memory_gb))
                .map(|entry| entry.value)
                .collect();
            in_values(values, product.name().to_owned())?;
        }
        None if min_memory.is_some() && family.memory_label().is_none() => {
            let values = LABEL_VALUES
                .iter()
                .filter(|entry| {
                    entry.family == family && entry.product.vendor() == request.vendor()
                })
                .filter(|entry| has_memory(entry.memory_gb))
                .map(|entry| entry.value)
                .collect();
            in_values(values, "gpu".to_owned())?;
        }
        None => {}
    }
    if let (Some(min), Some(label)) = (min_memory, family.memory_label()) {
        expressions.push(json!({"key": label, "operator": "Gt", "values": [memory_threshold_mib(min).to_string()]}));
    }
    Ok((!expressions.is_empty()).then_some(expressions))
}

/// Adds required node affinity for the request's product and memory minimum.
///
/// Existing `nodeSelectorTerms` are ORed by Kubernetes, so the new requirements are ANDed into
/// each existing term (with [`FamilyChoice::Any`], each term is split into one term per
/// family). A term that already uses one of the families' label keys is left as the user wrote
/// it, which also makes the helper idempotent. Does nothing when the request names neither a
/// product nor a memory minimum.
pub fn add_node_affinity(
    pod_spec: &mut Value,
    request: &GpuRequest,
    families: FamilyChoice,
) -> Result<()> {
    let family_terms = requirements_per_family(request, families)?;
    if family_terms.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = family_terms
        .iter()
        .flat_map(|(family, _)| family.label_keys())
        .collect();
    let spec = as_object(pod_spec, "spec")?;
    let affinity = child_object(spec, "affinity", "affinity")?;
    let node_affinity = child_object(affinity, "nodeAffinity", "affinity.nodeAffinity")?;
    let required_field = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";
    let required = child_object(
        node_affinity,
        "requiredDuringSchedulingIgnoredDuringExecution",
        required_field,
    )?;
    let terms_field = format!("{required_field}.nodeSelectorTerms");
    let terms = child_array(required, "nodeSelectorTerms", &terms_field)?;
    if terms.is_empty() {
        terms.extend(
            family_terms
                .iter()
                .map(|(_, expressions)| json!({"matchExpressions": expressions})),
        );
        return Ok(());
    }
    let mut new_terms = Vec::with_capacity(terms.len() * family_terms.len());
    for (index, term) in terms.iter().enumerate() {
        let term_field = format!("{terms_field}[{index}]");
        new_terms.extend(and_into_term(term, &term_field, &family_terms, &keys)?);
    }
    *terms = new_terms;
    Ok(())
}

/// The requirements of each chosen family; with [`FamilyChoice::Any`], an error only when no
/// family can express the request.
fn requirements_per_family(
    request: &GpuRequest,
    families: FamilyChoice,
) -> Result<Vec<(LabelFamily, Vec<Value>)>> {
    let mut family_terms = Vec::new();
    match families {
        FamilyChoice::Only(family) => {
            if let Some(expressions) = family_requirements(request, family)? {
                family_terms.push((family, expressions));
            }
        }
        FamilyChoice::Any => {
            let mut first_error = None;
            for family in LabelFamily::ALL {
                match family_requirements(request, *family) {
                    Ok(Some(expressions)) => family_terms.push((*family, expressions)),
                    Ok(None) => {}
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            if family_terms.is_empty()
                && let Some(error) = first_error
            {
                return Err(error);
            }
        }
    }
    Ok(family_terms)
}

/// One existing term ANDed with each family's requirements (one term per family), or the term
/// unchanged when it already constrains one of the families' label keys.
fn and_into_term(
    term: &Value,
    term_field: &str,
    family_terms: &[(LabelFamily, Vec<Value>)],
    keys: &[&str],
) -> Result<Vec<Value>> {
    let existing = match term.get("matchExpressions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(expressions)) => expressions.clone(),
        Some(other) => {
            return Err(Error::WrongJsonType {
                field: format!("{term_field}.matchExpressions"),
                expected: "an array",
                found: type_name(other),
            });
        }
    };
    let constrained = existing.iter().any(|expression| {
        expression
            .get("key")
            .and_then(Value::as_str)
            .is_some_and(|key| keys.contains(&key))
    });
    if constrained {
        return Ok(vec![term.clone()]);
    }
    let mut terms = Vec::with_capacity(family_terms.len());
    for (_, expressions) in family_terms {
        let mut combined = term.clone();
        let mut all = existing.clone();
        all.extend(expressions.iter().cloned());
        as_object(&mut combined, term_field)?
            .insert("matchExpressions".to_owned(), Value::Array(all));
        terms.push(combined);
    }
    Ok(terms)
}

/// Adds a memory-backed `emptyDir` volume (`sizeLimit` = the request's shm size) mounted at
/// `/dev/shm` in the named container (or the first). Does nothing when the request has no shm
/// size or the container already mounts something at `/dev/shm`.
pub fn add_shm_volume(
    pod_spec: &mut Value,
    request: &GpuRequest,
    container: Option<&str>,
) -> Result<()> {
    let Some(size) = request.shm_size() else {
        return Ok(());
    };
    let (index, name) = pick_container(pod_spec, container)?;
    let mounts_field = format!("containers[{index}].volumeMounts");
    {
        let container_value = container_object(pod_spec, index)?;
        let mounts = child_array(container_value, "volumeMounts", &mounts_field)?;
        if mounts
            .iter()
            .any(|mount| mount.get("mountPath").and_then(Value::as_str) == Some("/dev/shm"))
        {
            return Ok(());
        }
    }
    let wanted_volume =
        json!({"name": SHM_VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": size}});
    let spec = as_object(pod_spec, "spec")?;
    let volumes = child_array(spec, "volumes", "volumes")?;
    match volumes
        .iter()
        .position(|volume| volume.get("name").and_then(Value::as_str) == Some(SHM_VOLUME_NAME))
    {
        None => volumes.push(wanted_volume),
        Some(position) => {
            let existing = &volumes[position];
            let memory_backed =
                existing.pointer("/emptyDir/medium").and_then(Value::as_str) == Some("Memory");
            if !memory_backed {
                return Err(conflict(
                    &format!("volumes[{position}]"),
                    Some(&name),
                    existing.to_string(),
                    wanted_volume.to_string(),
                ));
            }
        }
    }
    let container_value = container_object(pod_spec, index)?;
    child_array(container_value, "volumeMounts", &mounts_field)?
        .push(json!({"name": SHM_VOLUME_NAME, "mountPath": "/dev/shm"}));
    Ok(())
}

/// Sets `priorityClassName` on a pod spec.
pub fn set_priority_class(pod_spec: &mut Value, priority_class_name: &str) -> Result<()> {
    let spec = as_object(pod_spec, "spec")?;
    set_if_absent(
        spec,
        "priorityClassName",
        json!(priority_class_name),
        "priorityClassName",
        None,
    )
}

/// Puts a pod template (`{metadata, spec}`) in a Volcano gang: `spec.schedulerName: volcano`
/// and the `scheduling.k8s.io/group-name` annotation naming the PodGroup.
pub fn add_volcano_gang(pod_template: &mut Value, group_name: &str) -> Result<()> {
    let template = as_object(pod_template, "template")?;
    let spec = child_object(template, "spec", "spec")?;
    set_if_absent(
        spec,
        "schedulerName",
        json!(VOLCANO_SCHEDULER),
        "spec.schedulerName",
        None,
    )?;
    let metadata = child_object(template, "metadata", "metadata")?;
    let annotations = child_object(metadata, "annotations", "metadata.annotations")?;
    let field = format!(
        "metadata.annotations.{}",
        path_key(VOLCANO_GROUP_ANNOTATION)
    );
    set_if_absent(
        annotations,
        VOLCANO_GROUP_ANNOTATION,
        json!(group_name),
        &field,
        None,
    )
}

/// Sets `spec.minAvailable` on a Volcano Job (`batch.volcano.sh/v1alpha1`). With `None`, the
/// gang is every replica: the sum of `spec.tasks[].replicas`.
pub fn set_volcano_min_available(
    volcano_job: &mut Value,
    min_available: Option<u32>,
) -> Result<()> {
    let job = as_object(volcano_job, "job")?;
    let spec = child_object(job, "spec", "spec")?;
    let wanted = match min_available {
        Some(min_available) => u64::from(min_available),
        None => spec
            .get("tasks")
            .and_then(Value::as_array)
            .map(|tasks| {
                tasks
                    .iter()
                    .map(|task| task.get("replicas").and_then(Value::as_u64).unwrap_or(1))
                    .sum()
            })
            .unwrap_or(1),
    };
    set_if_absent(
        spec,
        "minAvailable",
        json!(wanted),
        "spec.minAvailable",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::GpuProduct;
    use crate::request::tests::any_request;
    use crate::{matches_node_affinity, validate_extended_resources};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn request(text: &str) -> GpuRequest {
        GpuRequest::parse(text).unwrap()
    }

    #[test]
    fn resources_go_on_the_first_or_named_container_and_keep_user_values() {
        let mut spec = json!({"containers": [
            {"name": "train", "resources": {"limits": {"cpu": "4"}}, "x-unknown": 1},
            {"name": "logger"}]});
        set_gpu_resources(&mut spec, &request("4xA100"), None).unwrap();
        assert_eq!(
            spec["containers"][0]["resources"]["limits"],
            json!({"cpu": "4", "nvidia.com/gpu": "4"})
        );
        assert_eq!(
            spec["containers"][0]["resources"]["requests"],
            json!({"nvidia.com/gpu": "4"})
        );
        assert_eq!(spec["containers"][0]["x-unknown"], 1);
        assert!(spec["containers"][1].get("resources").is_none());

        set_gpu_resources(&mut spec, &request("amd.com/gpu=2"), Some("logger")).unwrap();
        assert_eq!(
            spec["containers"][1]["resources"]["limits"]["amd.com/gpu"],
            "2"
        );
    }

    #[test]
    fn an_equal_user_quantity_is_kept_and_a_different_one_conflicts() {
        let mut spec = json!({"containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": "4000m"}}}]});
        set_gpu_resources(&mut spec, &request("4xH100"), None).unwrap();
        assert_eq!(
            spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "4000m"
        );

        let error = set_gpu_resources(&mut spec, &request("2xH100"), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                r#"containers[0].resources.limits."nvidia.com/gpu" in container "train""#
            ),
            "{error}"
        );
        assert!(error.contains("is already \"4000m\", not \"2\""), "{error}");
    }

    #[test]
    fn missing_containers_are_reported() {
        let error = set_gpu_resources(&mut json!({}), &request("H100"), None).unwrap_err();
        assert!(matches!(error, Error::NoContainer { .. }), "{error}");
        let error = set_gpu_resources(
            &mut json!({"containers": [{"name": "a"}]}),
            &request("H100"),
            Some("b"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("container \"b\" not found in containers (have: a)"),
            "{error}"
        );
        let error = set_gpu_resources(&mut json!({"containers": "nope"}), &request("H100"), None)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("containers is a string, expected an array"),
            "{error}"
        );
    }

    #[test]
    fn tolerations_are_appended_once() {
        let mut spec = json!({"containers": [{"name": "a"}], "tolerations": [{"key": "team", "operator": "Equal", "value": "ml"}]});
        add_gpu_tolerations(&mut spec, &request("H100")).unwrap();
        add_gpu_tolerations(&mut spec, &request("H100")).unwrap();
        assert_eq!(
            spec["tolerations"],
            json!([{"key": "team", "operator": "Equal", "value": "ml"},
                   {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
        );
        add_gpu_tolerations(&mut spec, &request("MI300X")).unwrap();
        assert_eq!(spec["tolerations"][2]["key"], "amd.com/gpu");

        let mut tolerate_all = json!({"tolerations": [{"operator": "Exists"}]});
        add_gpu_tolerations(&mut tolerate_all, &request("H100")).unwrap();
        assert_eq!(tolerate_all["tolerations"].as_array().unwrap().len(), 1);
    }

    fn terms(spec: &Value) -> Value {
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"].clone()
    }

    /// One row per label family: request → expected match expressions (or error text).
    #[test]
    fn label_family_table() {
        use LabelFamily::*;
        let in_ =
            |key: &str, values: &[&str]| json!({"key": key, "operator": "In", "values": values});
        let gt = |key: &str, value: &str| json!({"key": key, "operator": "Gt", "values": [value]});
        let gfd = "nvidia.com/gpu.product";
        let gfd_mem = "nvidia.com/gpu.memory";
        let gke = "cloud.google.com/gke-accelerator";
        let karpenter = "karpenter.k8s.aws/instance-gpu-name";
        let karpenter_mem = "karpenter.k8s.aws/instance-gpu-memory";
        let amd = "amd.com/gpu.product-name";
        type Expected<'a> = std::result::Result<Vec<Value>, &'a str>;
        let cases: Vec<(LabelFamily, &str, Expected)> = vec![
            (
                NvidiaGfd,
                "4xA100-80GB",
                Ok(vec![
                    in_(gfd, &["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"]),
                    gt(gfd_mem, "73727"),
                ]),
            ),
            (
                NvidiaGfd,
                "H100",
                Ok(vec![in_(
                    gfd,
                    &[
                        "NVIDIA-H100-80GB-HBM3",
                        "NVIDIA-H100-PCIe",
                        "NVIDIA-H100-NVL",
                    ],
                )]),
            ),
            (NvidiaGfd, "T4", Ok(vec![in_(gfd, &["Tesla-T4"])])),
            (
                NvidiaGfd,
                "nvidia.com/gpu=1,mem=24GB",
                Ok(vec![gt(gfd_mem, "22117")]),
            ),
            (
                NvidiaGfd,
                "MI300X",
                Err(
                    "gpu product MI300X has no known nvidia-gfd label value; choose another label family (amd-labeller)",
                ),
            ),
            (
                AmdLabeller,
                "8xMI300X",
                Ok(vec![in_(amd, &["AMD_Instinct_MI300X_OAM"])]),
            ),
            (
                AmdLabeller,
                "amd.com/gpu=1,mem=200GB",
                Ok(vec![in_(amd, &["AMD_Instinct_MI325_OAM"])]),
            ),
            (
                Gke,
                "A100",
                Ok(vec![in_(gke, &["nvidia-tesla-a100", "nvidia-a100-80gb"])]),
            ),
            (Gke, "A100-80GB", Ok(vec![in_(gke, &["nvidia-a100-80gb"])])),
            (Gke, "2xL4", Ok(vec![in_(gke, &["nvidia-l4"])])),
            (
                Gke,
                "nvidia.com/gpu=1,mem=100GB",
                Ok(vec![in_(gke, &["nvidia-b200", "nvidia-h200-141gb"])]),
            ),
            (
                Gke,
                "V100-32GB",
                Err("no known V100 variant in gke has at least 32GB"),
            ),
            (Gke, "L40S", Err("(nvidia-gfd, karpenter)")),
            (Karpenter, "2xA10G", Ok(vec![in_(karpenter, &["a10g"])])),
            (
                Karpenter,
                "A100-80GB",
                Ok(vec![in_(karpenter, &["a100"]), gt(karpenter_mem, "73727")]),
            ),
            (Karpenter, "nvidia.com/gpu=8", Ok(vec![])),
        ];
        for (family, text, expected) in cases {
            let got = family_requirements(&request(text), family);
            match (got, expected) {
                (Ok(got), Ok(expected)) => {
                    assert_eq!(got.unwrap_or_default(), expected, "{family} {text}")
                }
                (Err(error), Err(message)) => {
                    assert!(
                        error.to_string().contains(message),
                        "{family} {text}: {error}"
                    );
                }
                (got, expected) => panic!("{family} {text}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    /// Rendered affinity selects real-looking nodes of each family and rejects the wrong ones.
    #[test]
    fn rendered_affinity_matches_nodes_of_each_family() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let cases = [
            (
                "H100-80GB",
                labels(&[
                    ("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
                    ("nvidia.com/gpu.memory", "81559"),
                ]),
                true,
            ),
            (
                "A100-80GB",
                labels(&[
                    ("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"),
                    ("nvidia.com/gpu.memory", "40960"),
                ]),
                false,
            ),
            (
                "L4",
                labels(&[("cloud.google.com/gke-accelerator", "nvidia-l4")]),
                true,
            ),
            (
                "L4",
                labels(&[("cloud.google.com/gke-accelerator", "nvidia-tesla-t4")]),
                false,
            ),
            (
                "L4-24GB",
                labels(&[
                    ("karpenter.k8s.aws/instance-gpu-name", "l4"),
                    ("karpenter.k8s.aws/instance-gpu-memory", "22888"),
                ]),
                true,
            ),
            (
                "A10G",
                labels(&[
                    ("karpenter.k8s.aws/instance-gpu-name", "a10g"),
                    ("karpenter.k8s.aws/instance-gpu-memory", "22888"),
                ]),
                true,
            ),
            (
                "MI300X",
                labels(&[("amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM")]),
                true,
            ),
            (
                "MI300X",
                labels(&[("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3")]),
                false,
            ),
            ("H100", labels(&[]), false),
        ];
        for (text, node_labels, expected) in cases {
            let mut spec = json!({"containers": [{"name": "a"}]});
            add_node_affinity(&mut spec, &request(text), FamilyChoice::Any).unwrap();
            let typed: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(spec).unwrap();
            assert_eq!(
                matches_node_affinity(&typed, &node_labels, "n1"),
                expected,
                "{text} on {node_labels:?}"
            );
        }
    }

    #[test]
    fn any_family_emits_one_term_per_family_that_knows_the_product() {
        let mut spec = json!({"containers": [{"name": "a"}]});
        add_node_affinity(&mut spec, &request("A100"), FamilyChoice::Any).unwrap();
        let keys: Vec<String> = terms(&spec)
            .as_array()
            .unwrap()
            .iter()
            .map(|term| {
                term["matchExpressions"][0]["key"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            keys,
            [
                "nvidia.com/gpu.product",
                "cloud.google.com/gke-accelerator",
                "karpenter.k8s.aws/instance-gpu-name"
            ]
        );
    }

    #[test]
    fn user_terms_are_anded_not_widened_and_user_product_terms_are_kept() {
        let zone = json!({"key": "zone", "operator": "In", "values": ["a"]});
        let mine =
            json!({"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]});
        let mut spec = json!({"containers": [{"name": "a"}], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}],
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [zone.clone()]},
                {"matchExpressions": [mine.clone()]}]}}}});
        add_node_affinity(
            &mut spec,
            &request("T4"),
            FamilyChoice::Only(LabelFamily::NvidiaGfd),
        )
        .unwrap();
        let t4 = json!({"key": "nvidia.com/gpu.product", "operator": "In", "values": ["Tesla-T4"]});
        assert_eq!(
            terms(&spec),
            json!([{"matchExpressions": [zone, t4]}, {"matchExpressions": [mine]}])
        );
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
            json!([{"weight": 1}])
        );
    }

    #[test]
    fn requests_without_product_or_memory_add_no_affinity() {
        let mut spec = json!({"containers": [{"name": "a"}]});
        add_node_affinity(&mut spec, &request("nvidia.com/gpu=2"), FamilyChoice::Any).unwrap();
        assert!(spec.get("affinity").is_none());
    }

    #[test]
    fn shm_volume_is_added_once_and_user_mounts_win() {
        let mut spec = json!({"containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                               "volumes": [{"name": "data", "emptyDir": {}}]});
        let shm = request("2xL4,shm=16Gi");
        add_shm_volume(&mut spec, &shm, None).unwrap();
        add_shm_volume(&mut spec, &shm, None).unwrap();
        assert_eq!(
            spec["volumes"],
            json!([{"name": "data", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}])
        );
        assert_eq!(
            spec["containers"][0]["volumeMounts"],
            json!([{"name": "data", "mountPath": "/data"}, {"name": "dshm", "mountPath": "/dev/shm"}])
        );

        let mut user = json!({"containers": [{"name": "a", "volumeMounts": [{"name": "mine", "mountPath": "/dev/shm"}]}]});
        let before = user.clone();
        add_shm_volume(&mut user, &shm, None).unwrap();
        assert_eq!(user, before);

        let mut taken = json!({"containers": [{"name": "a"}], "volumes": [{"name": "dshm", "configMap": {"name": "x"}}]});
        let error = add_shm_volume(&mut taken, &shm, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("volumes[0] in container \"a\""), "{error}");
    }

    #[test]
    fn volcano_gang_and_priority() {
        let mut template =
            json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "a"}]}});
        add_volcano_gang(&mut template, "run-abc").unwrap();
        add_volcano_gang(&mut template, "run-abc").unwrap();
        assert_eq!(template["spec"]["schedulerName"], "volcano");
        assert_eq!(
            template["metadata"]["annotations"]["scheduling.k8s.io/group-name"],
            "run-abc"
        );
        assert_eq!(template["metadata"]["labels"]["app"], "x");
        let error = add_volcano_gang(&mut template, "run-other")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                r#"metadata.annotations."scheduling.k8s.io/group-name" is already "run-abc""#
            ),
            "{error}"
        );

        let mut other = json!({"spec": {"schedulerName": "kai-scheduler"}});
        assert!(
            add_volcano_gang(&mut other, "g")
                .unwrap_err()
                .to_string()
                .contains("spec.schedulerName")
        );

        let mut job = json!({"spec": {"tasks": [{"name": "master", "replicas": 1}, {"name": "worker", "replicas": 3}]}});
        set_volcano_min_available(&mut job, None).unwrap();
        assert_eq!(job["spec"]["minAvailable"], 4);
        assert!(set_volcano_min_available(&mut job, Some(2)).is_err());

        let mut spec = json!({"containers": []});
        set_priority_class(&mut spec, "training").unwrap();
        set_priority_class(&mut spec, "training").unwrap();
        assert_eq!(spec["priorityClassName"], "training");
        assert!(set_priority_class(&mut spec, "urgent").is_err());
    }

    fn any_pod_spec() -> impl Strategy<Value = Value> {
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(tolerations, affinity, resources)| {
            let mut spec = json!({"containers": [{"name": "train", "image": "x"}, {"name": "sidecar"}]});
            if tolerations {
                spec["tolerations"] = json!([{"key": "team", "operator": "Exists"}]);
            }
            if affinity {
                spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                                          {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}});
            }
            if resources {
                spec["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}});
            }
            spec
        })
    }

    proptest! {
        #[test]
        fn applying_twice_equals_applying_once_and_validates(
            request in any_request(),
            spec in any_pod_spec(),
            family in proptest::option::of(proptest::sample::select(LabelFamily::ALL.to_vec())),
        ) {
            let options = RenderOptions {
                container: None,
                families: family.map_or(FamilyChoice::Any, FamilyChoice::Only),
            };
            let mut once = spec.clone();
            if apply_gpu_request(&mut once, &request, &options).is_ok() {
                let mut twice = once.clone();
                apply_gpu_request(&mut twice, &request, &options).unwrap();
                prop_assert_eq!(&twice, &once);
                prop_assert!(validate_extended_resources(&once, "spec").is_empty());
                let count = request.count().to_string();
                prop_assert_eq!(once["containers"][0]["resources"]["limits"][request.resource()].as_str(), Some(count.as_str()));
                prop_assert_eq!(once["containers"][0]["image"].as_str(), Some("x"));
            } else {
                // Only affinity can fail on a well-formed spec: product absent or memory too large.
                let family_error = match options.families {
                    FamilyChoice::Only(family) => family_requirements(&request, family).is_err(),
                    FamilyChoice::Any => LabelFamily::ALL.iter().all(|family| family_requirements(&request, *family).is_err()),
                };
                prop_assert!(family_error);
            }
        }
    }

    #[test]
    fn every_product_is_in_some_family() {
        for product in GpuProduct::ALL {
            assert!(
                LabelFamily::ALL
                    .iter()
                    .any(|family| product.label_values(*family).next().is_some()),
                "{product}"
            );
        }
    }
}
