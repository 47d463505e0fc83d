//! The render as a sequence of named steps: merge, expand, check, resolve the namespace, the
//! API-key Secret, the workload, the additional services.

use serde_json::{Map, Value};

use rlaunch_model::{FieldError, RenderError, Result, RunSpec, json_kind, names};

use crate::agent_keys::{Extras, take_agent_keys};
use crate::context::RenderContext;
use crate::custom::render_custom;
use crate::env::{ApiKeyEnv, EnvInputs, JsonEnv};
use crate::job::render_job;
use crate::macros::{MacroExpander, MacroValues};
use crate::output::{AgentKeys, Layer, Provenance, Rendered, RenderedObject};
use crate::provenance::Tracker;
use crate::secret::api_key_secret;
use crate::service::render_service;
use crate::workload::{K8S, Plan, field_error};
use crate::{secure_mode, security};

/// Image used by [`validate`] when the run has none yet (it will be built after the ack).
const VALIDATION_IMAGE: &str = "validation.invalid/image-to-be-built:latest";

/// Renders one run: every object the agent would create, in creation order.
///
/// `queue_config` and the run spec's `resource_args.kubernetes` are merged as an RFC 7386
/// JSON merge patch, the run spec over the queue config: objects merge key by key, a list or
/// a scalar replaces, and a `null` in the run spec removes the queue config's key.
pub fn render(
    spec: &RunSpec,
    queue_config: Option<&Value>,
    ctx: &RenderContext,
) -> Result<Rendered> {
    let mut tracker = Tracker::new(ctx.explain);
    let mut warnings = Vec::new();
    let merged = merge_sections(spec, queue_config, &mut tracker, &mut warnings)?;
    let image_uri = ctx.image_uri.as_deref().or(spec.docker_image.as_deref());
    let (mut body, services) = expand_macros(spec, ctx, image_uri, merged, &mut warnings);
    tracker.record(&body, Layer::Macro);
    let (agent_keys, extras) = check_body(spec, ctx, &mut body, &services)?;
    let namespace = resolve_namespace(&body, &extras, ctx)?;
    let secret = api_key_secret(spec, ctx, &namespace);
    let env = env_inputs(spec, ctx, secret.as_ref());
    let plan = Plan {
        spec,
        ctx,
        namespace: &namespace,
        image_uri,
        gpu: ctx.gpu.as_ref().or(extras.gpu.as_ref()),
        env: &env,
        extras: &extras,
    };
    let workload = render_workload(&plan, &mut body, &mut tracker)?;
    let (objects, provenance) = assemble(&plan, secret, services, &agent_keys, workload, tracker)?;
    Ok(Rendered {
        namespace,
        objects,
        warnings,
        agent_keys,
        provenance,
    })
}

/// Runs every check of [`render`] on a queue item before the agent acknowledges it, so a
/// malformed item is failed at once instead of after a build. Returns the render's warnings.
///
/// The run's image may not exist yet (it is built after the ack): when neither the context
/// nor the run spec names one, a placeholder stands in, so only a missing image is not
/// reported. `ctx.run_id` may be provisional; what is derived from it is not kept.
pub fn validate(
    spec: &RunSpec,
    queue_config: Option<&Value>,
    ctx: &RenderContext,
) -> Result<Vec<String>> {
    let mut ctx = ctx.clone();
    ctx.explain = false;
    if ctx.image_uri.is_none() && spec.docker_image.is_none() {
        ctx.image_uri = Some(VALIDATION_IMAGE.to_owned());
    }
    render(spec, queue_config, &ctx).map(|rendered| rendered.warnings)
}

/// Step 1: the queue config, then the run spec's Kubernetes section merged over it.
fn merge_sections(
    spec: &RunSpec,
    queue_config: Option<&Value>,
    tracker: &mut Tracker,
    warnings: &mut Vec<String>,
) -> Result<Value> {
    let mut merged = match queue_config {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(other) => {
            return Err(field_error(
                "queue config",
                format!(
                    "must be a dictionary (a partial Kubernetes manifest), found {}",
                    json_kind(other)
                ),
                "write the queue config as a YAML mapping such as `spec: {template: {spec: {containers: [...]}}}`",
            ));
        }
    };
    tracker.record(&merged, Layer::QueueConfig);
    match spec.resource_args.get("kubernetes") {
        None | Some(Value::Null) => {}
        Some(section @ Value::Object(_)) => json_patch::merge(&mut merged, section),
        Some(other) => {
            return Err(field_error(
                format!("runSpec.{K8S}"),
                format!("must be a dictionary, found {}", json_kind(other)),
                "make resource_args.kubernetes a partial Kubernetes manifest (a mapping)",
            ));
        }
    }
    tracker.record(&merged, Layer::RunSpec);
    if merged.as_object().is_some_and(Map::is_empty) {
        warnings.push("no resource args specified: rendering a default batch/v1 Job".to_owned());
    }
    Ok(merged)
}

/// Step 2: macros, over the Kubernetes section and the non-empty additional services.
fn expand_macros(
    spec: &RunSpec,
    ctx: &RenderContext,
    image_uri: Option<&str>,
    mut merged: Value,
    warnings: &mut Vec<String>,
) -> (Value, Vec<(usize, Value)>) {
    let values = MacroValues {
        project_name: Some(&spec.project),
        entity_name: Some(&spec.entity),
        run_id: Some(&ctx.run_id),
        run_name: spec.name.as_deref(),
        image_uri,
        author: spec.author.as_deref(),
    };
    let mut expander = MacroExpander::new(values, &ctx.macro_env);
    expander.expand_value(&mut merged, K8S);
    let mut services = Vec::new();
    for (i, service) in spec.additional_services.iter().enumerate() {
        if service.config.is_empty() {
            continue;
        }
        let mut config = Value::Object(service.config.clone());
        expander.expand_value(&mut config, &service_path(i));
        services.push((i, config));
    }
    warnings.extend(expander.into_warnings());
    (merged, services)
}

fn service_path(index: usize) -> String {
    format!("runSpec.additional_services[{index}].config")
}

/// Step 3: agent-only keys out, then the refuse-list (and secure mode) over everything that
/// will be submitted. Every problem is reported at once.
fn check_body(
    spec: &RunSpec,
    ctx: &RenderContext,
    body: &mut Value,
    services: &[(usize, Value)],
) -> Result<(AgentKeys, Extras)> {
    let Value::Object(map) = body else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    let (agent_keys, extras, mut problems) = take_agent_keys(map);
    problems.extend(security::scan(body, K8S, &ctx.allowed_fields));
    for (i, config) in services {
        problems.extend(security::scan(
            config,
            &service_path(*i),
            &ctx.allowed_fields,
        ));
    }
    if ctx.secure_mode {
        problems.extend(secure_mode::check(body, spec));
    }
    if problems.is_empty() {
        Ok((agent_keys, extras))
    } else {
        Err(RenderError::many(problems))
    }
}

/// Step 4: `metadata.namespace`, the legacy top-level `namespace`, then the context default.
fn resolve_namespace(body: &Value, extras: &Extras, ctx: &RenderContext) -> Result<String> {
    let namespace = body
        .get("metadata")
        .and_then(|metadata| metadata.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .map(str::to_owned)
        .or(extras.namespace.clone())
        .unwrap_or_else(|| ctx.default_namespace.clone());
    if !names::is_dns_label(&namespace) {
        return Err(RenderError::one(FieldError::new(
            format!("{K8S}.metadata.namespace"),
            format!("`{namespace}` is not a valid namespace name"),
            "use lower-case letters, digits and '-', at most 63 characters",
        )));
    }
    Ok(namespace)
}

/// Step 5: what the W&B env block needs, the key Secret's name included.
fn env_inputs<'a>(
    spec: &'a RunSpec,
    ctx: &'a RenderContext,
    secret: Option<&RenderedObject>,
) -> EnvInputs<'a> {
    let api_key = match secret {
        Some(object) => ApiKeyEnv::FromSecret(
            object
                .manifest
                .get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        None => ApiKeyEnv::Absent,
    };
    EnvInputs {
        base_url: &ctx.base_url,
        api_key,
        run_id: &ctx.run_id,
        docker_image: spec.docker_image.as_deref(),
        queue_name: ctx.queue_name.as_deref(),
        queue_entity: ctx.queue_entity.as_deref(),
        trace_id: ctx.run_queue_item_id.as_deref(),
        json: JsonEnv::new(spec),
    }
}

/// Step 6: a batch Job (`batch/v1`, `batch/v1beta1` or no apiVersion) or a custom resource.
fn render_workload(
    plan: &Plan<'_>,
    body: &mut Value,
    tracker: &mut Tracker,
) -> Result<RenderedObject> {
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("batch/v1");
    if matches!(api_version, "batch/v1" | "batch/v1beta1") {
        render_job(plan, body, tracker)
    } else {
        render_custom(plan, body, tracker)
    }
}

/// Step 7: the objects in creation order, Secret, additional services (on both paths; W&B's
/// agent supports them for Jobs only), then the workload, each with its provenance.
fn assemble(
    plan: &Plan<'_>,
    secret: Option<RenderedObject>,
    services: Vec<(usize, Value)>,
    agent_keys: &AgentKeys,
    workload: RenderedObject,
    tracker: Tracker,
) -> Result<(Vec<RenderedObject>, Vec<Provenance>)> {
    let explain = plan.ctx.explain;
    let mut objects = Vec::with_capacity(2 + services.len());
    let mut provenance = Vec::new();
    // Without `explain` every provenance is empty and none is kept.
    let mut keep = |fields: Provenance| {
        if explain {
            provenance.push(fields);
        }
    };
    if let Some(secret) = secret {
        let mut fields = Tracker::new(explain);
        fields.record(&secret.manifest, Layer::AgentDefault);
        keep(fields.finish(&secret.manifest));
        objects.push(secret);
    }
    for (i, config) in services {
        let (object, fields) = render_service(plan, i, config, agent_keys)?;
        keep(fields);
        objects.push(object);
    }
    keep(tracker.finish(&workload.manifest));
    objects.push(workload);
    Ok((objects, provenance))
}
