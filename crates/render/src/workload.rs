//! What the Job, custom-resource and additional-service steps share: their inputs, labels,
//! name checks, the GPU request and the hardening every pod spec gets last.

use serde_json::{Map, Value};

use rlaunch_gpu::GpuRequest;
use rlaunch_model::{FieldError, RenderError, Result, RunSpec, json_kind, labels, names};

use crate::agent_keys::Extras;
use crate::code_mount;
use crate::context::RenderContext;
use crate::env::EnvInputs;
use crate::output::Layer;
use crate::provenance::Tracker;
use crate::security;
use crate::walk::{for_each_pod_template, set_annotations, set_labels};

/// Path prefix used in messages about the Kubernetes section (defined where the section is
/// first read).
pub(crate) use crate::agent_keys::K8S;

/// What the workload steps read, resolved by the first steps of the render.
pub(crate) struct Plan<'a> {
    pub(crate) spec: &'a RunSpec,
    pub(crate) ctx: &'a RenderContext,
    pub(crate) namespace: &'a str,
    /// The resolved image: the context's (built), else the run spec's.
    pub(crate) image_uri: Option<&'a str>,
    /// The context's GPU request, else the queue config's `gpu:` key.
    pub(crate) gpu: Option<&'a GpuRequest>,
    pub(crate) env: &'a EnvInputs<'a>,
    pub(crate) extras: &'a Extras,
}

pub(crate) fn field_error(
    path: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> RenderError {
    RenderError::one(FieldError::new(path, problem, fix))
}

/// The user's `metadata.name`, checked: a DNS-1123 label, or a subdomain when allowed.
pub(crate) fn check_user_name(
    object: &Map<String, Value>,
    subdomain_ok: bool,
) -> Result<Option<String>> {
    let name = match object.get("metadata").and_then(|m| m.get("name")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(name)) if name.is_empty() => return Ok(None),
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(field_error(
                format!("{K8S}.metadata.name"),
                format!("must be a string, found {}", json_kind(other)),
                "set metadata.name to a string or remove it",
            ));
        }
    };
    let valid = if subdomain_ok {
        names::is_dns_subdomain(name)
    } else {
        names::is_dns_label(name)
    };
    if !valid {
        return Err(field_error(
            format!("{K8S}.metadata.name"),
            format!("`{name}` is not a valid Kubernetes name"),
            "use lower-case letters, digits and '-' (at most 63 characters, starting and ending \
             with a letter or digit), e.g. `train-${run_id}`, or remove it to let the agent name the job",
        ));
    }
    Ok(Some(name.clone()))
}

/// Labels and annotations every workload carries, on the object and its pod templates.
pub(crate) fn label_workload(object: &mut Map<String, Value>, ctx: &RenderContext, spec: &RunSpec) {
    let pod_labels = PodLabels::new(ctx);
    pod_labels.set(object);
    let annotations = [
        (ctx.run_queue_item_id.as_deref()).map(|rqi| (labels::RUN_QUEUE_ITEM_ANNOTATION, rqi)),
        (ctx.queue_name.as_deref()).map(|queue| (labels::QUEUE_ANNOTATION, queue)),
        Some((labels::ENTITY_ANNOTATION, spec.entity.as_str())),
        Some((labels::PROJECT_ANNOTATION, spec.project.as_str())),
    ];
    set_annotations(object, annotations.into_iter().flatten());
    let mut value = Value::Object(std::mem::take(object));
    for_each_pod_template(&mut value, &mut |template| pod_labels.set(template));
    if let Value::Object(map) = value {
        *object = map;
    }
}

/// The labels the monitor selects on: run id, monitor, agent name and identity, made
/// label-safe once per workload rather than once per pod template.
struct PodLabels {
    run_id: String,
    agent: Option<String>,
    identity: Option<String>,
}

impl PodLabels {
    fn new(ctx: &RenderContext) -> Self {
        Self {
            run_id: names::label_value(&ctx.run_id),
            agent: ctx.agent_name.as_deref().map(names::label_value),
            identity: ctx.agent_identity.as_deref().map(names::label_value),
        }
    }

    fn set(&self, object: &mut Map<String, Value>) {
        let entries = [
            Some((labels::RUN_ID, self.run_id.as_str())),
            Some((labels::MONITOR, "true")),
            self.agent.as_deref().map(|agent| (labels::AGENT, agent)),
            self.identity
                .as_deref()
                .map(|identity| (labels::AGENT_IDENTITY, identity)),
        ];
        set_labels(object, entries.into_iter().flatten());
    }
}

/// Applies the GPU request to one pod spec.
pub(crate) fn apply_gpu(pod_spec: &mut Value, request: &GpuRequest, path: &str) -> Result<()> {
    let options = rlaunch_gpu::RenderOptions::default();
    rlaunch_gpu::apply_gpu_request(pod_spec, request, &options).map_err(|error| {
        field_error(
            path,
            format!("gpu request `{request}` cannot be applied: {error}"),
            "remove the conflicting value from the queue config, or change the gpu request",
        )
    })
}

/// The last steps of every workload: the code mount, the forced security context, and
/// Kubernetes' extended-resource rules on every pod spec.
pub(crate) fn finish_pods(
    workload: &mut Value,
    plan: &Plan<'_>,
    tracker: &mut Tracker,
) -> Result<()> {
    if let Some(mount) = &plan.ctx.code_mount {
        code_mount::apply(workload, mount, plan.spec, &plan.ctx.base_url)?;
        tracker.record(workload, Layer::AgentDefault);
    }
    let mut problems = Vec::new();
    security::force_security_context_and_visit(workload, K8S, &mut |pod_spec, path| {
        validate_gpu_resources(pod_spec, path, &mut problems);
    });
    tracker.record(workload, Layer::SecurityInjection);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderError::many(problems))
    }
}

/// Kubernetes' extended-resource rules (integer GPUs, in limits, requests equal to limits),
/// checked on every pod spec so a bad queue config fails here rather than at the API server.
fn validate_gpu_resources(
    pod_spec: &Value,
    path: &dyn Fn() -> String,
    problems: &mut Vec<FieldError>,
) {
    if !names_extended_resource(pod_spec) {
        return;
    }
    for error in rlaunch_gpu::validate_extended_resources(pod_spec, &path()) {
        problems.push(FieldError::new(
            error.field,
            format!("container `{}`: {}", error.container, error.problem),
            error.fix,
        ));
    }
}

/// Whether any container or init container of `pod_spec` names an extended resource in its
/// limits or requests: the others need no check, and no path formatted for one.
fn names_extended_resource(pod_spec: &Value) -> bool {
    let quantities = |container: &Value, section: &str| {
        container
            .get("resources")
            .and_then(|resources| resources.get(section))
            .and_then(Value::as_object)
            .is_some_and(|q| q.keys().any(|r| rlaunch_gpu::is_extended_resource(r)))
    };
    ["containers", "initContainers"].iter().any(|list| {
        pod_spec
            .get(list)
            .and_then(Value::as_array)
            .is_some_and(|containers| {
                containers
                    .iter()
                    .any(|c| quantities(c, "limits") || quantities(c, "requests"))
            })
    })
}
