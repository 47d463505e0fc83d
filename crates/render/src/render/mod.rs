//! The render engine: run spec + queue config + context → the Kubernetes objects to create.

mod code_mount;
pub mod context;
pub mod output;
mod provenance;
mod walk;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::env::{ApiKeyEnv, EnvInputs, push_json_env, wandb_env};
use crate::macros::{MacroExpander, MacroValues};
use crate::security;
use rlaunch_model::crd::known_plural;
use rlaunch_model::labels;
use rlaunch_model::names;
use rlaunch_model::{FieldError, RenderError, Result};
use rlaunch_model::{RunSpec, json_kind};

use context::{ApiKeyMode, RenderContext};
use output::{AgentKeys, ApiCoordinates, Layer, ObjectRole, Rendered, RenderedObject};
use provenance::Tracker;
pub use walk::shell_quote;
use walk::{
    append_list, containers_mut, deep_merge, for_each_pod_spec, for_each_pod_template,
    object_entry, set_annotation, set_label,
};

/// Path prefix used in messages about the Kubernetes section.
const K8S: &str = "resource_args.kubernetes";

/// Keys the agent reads from `resource_args.kubernetes` and removes before submission.
///
/// Differs from the reference because it leaves all of these but `builder` in the submitted
/// body, where the API server rejects or silently drops them.
pub const AGENT_ONLY_KEYS: &[&str] = &[
    "configFile",
    "context",
    "namespace",
    "wait_for_ready",
    "wait_timeout",
    "group",
    "version",
    "builder",
    "plural",
    "gpu",
];

/// Placeholder written into the API-key Secret of dry renders.
pub const API_KEY_PLACEHOLDER: &str = "<api key: render with --api-key-env VAR to fill it>";

/// Renders one run: every object the agent would create, in creation order.
///
/// `queue_config` is merged *under* `resource_args.kubernetes` (the run spec wins), as when a
/// CI pipeline renders a queue's config against a sample run spec.
pub fn render(
    spec: &RunSpec,
    queue_config: Option<&Value>,
    ctx: &RenderContext,
) -> Result<Rendered> {
    let mut tracker = Tracker::new(ctx.explain);
    let mut warnings = Vec::new();

    // 1. The Kubernetes section: queue config, then the run spec over it.
    let mut merged = match queue_config {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(map)) => Value::Object(map.clone()),
        Some(other) => {
            return Err(RenderError::one(FieldError::new(
                "queue config",
                format!(
                    "must be a dictionary (a partial Kubernetes manifest), found {}",
                    json_kind(other)
                ),
                "write the queue config as a YAML mapping such as `spec: {template: {spec: {containers: [...]}}}`",
            )));
        }
    };
    tracker.record(&merged, Layer::QueueConfig);
    match spec.resource_args.get("kubernetes") {
        None | Some(Value::Null) => {}
        Some(section @ Value::Object(_)) => deep_merge(&mut merged, section.clone()),
        Some(other) => {
            return Err(RenderError::one(FieldError::new(
                format!("runSpec.{K8S}"),
                format!("must be a dictionary, found {}", json_kind(other)),
                "make resource_args.kubernetes a partial Kubernetes manifest (a mapping)",
            )));
        }
    }
    tracker.record(&merged, Layer::RunSpec);
    if merged.as_object().is_some_and(Map::is_empty) {
        warnings.push("no resource args specified: rendering a default batch/v1 Job".to_owned());
    }

    // 2. Macros, over the Kubernetes section and the additional services.
    let image_uri = ctx.image_uri.clone().or_else(|| spec.docker_image.clone());
    let macro_values = MacroValues {
        project_name: Some(spec.project.clone()),
        entity_name: Some(spec.entity.clone()),
        run_id: Some(ctx.run_id.clone()),
        run_name: spec.name.clone(),
        image_uri: image_uri.clone(),
        author: spec.author.clone(),
    };
    let mut expander = MacroExpander::new(&macro_values, &ctx.macro_env);
    expander.expand_value(&mut merged, K8S);
    let mut services: Vec<(usize, Value)> = Vec::new();
    for (i, service) in spec.additional_services.iter().enumerate() {
        if service.config.is_empty() {
            continue;
        }
        let mut config = Value::Object(service.config.clone());
        expander.expand_value(
            &mut config,
            &format!("runSpec.additional_services[{i}].config"),
        );
        services.push((i, config));
    }
    warnings.extend(expander.into_warnings());
    tracker.record(&merged, Layer::Macro);

    // 3. Agent-only keys out, then the security scan over everything that will be submitted.
    let Value::Object(mut body) = merged else {
        return Err(RenderError::one(FieldError::new(
            K8S,
            "must be a dictionary",
            "use a mapping",
        )));
    };
    let (agent_keys, extras, mut problems) = take_agent_keys(&mut body);
    let mut body = Value::Object(body);
    problems.extend(security::scan(&body, K8S, &ctx.allowed_fields));
    for (i, config) in &services {
        problems.extend(security::scan(
            config,
            &format!("runSpec.additional_services[{i}].config"),
            &ctx.allowed_fields,
        ));
    }
    if !problems.is_empty() {
        return Err(RenderError::many(problems));
    }

    // 4. Namespace: metadata.namespace, legacy top-level namespace, then the context default.
    let namespace = body
        .pointer("/metadata/namespace")
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

    // 5. The API-key Secret.
    let secret = api_key_secret(spec, ctx, &namespace);
    let api_key_env = match &secret {
        Some(object) => ApiKeyEnv::FromSecret(
            object
                .manifest
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        None => ApiKeyEnv::Absent,
    };
    let env_inputs = EnvInputs {
        base_url: &ctx.base_url,
        api_key: api_key_env,
        run_id: &ctx.run_id,
        docker_image: spec.docker_image.as_deref(),
        queue_name: ctx.queue_name.as_deref(),
        queue_entity: ctx.queue_entity.as_deref(),
        trace_id: ctx.run_queue_item_id.as_deref(),
    };

    // 6. The workload.
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("batch/v1")
        .to_owned();
    let is_job = matches!(api_version.as_str(), "batch/v1" | "batch/v1beta1");
    let gpu_request = ctx.gpu.as_ref().or(extras.gpu.as_ref());
    let workload = if is_job {
        render_job(
            spec,
            ctx,
            &mut body,
            &namespace,
            image_uri.as_deref(),
            gpu_request,
            &env_inputs,
            &mut tracker,
        )?
    } else {
        render_custom(
            spec,
            ctx,
            &mut body,
            &extras,
            &namespace,
            gpu_request,
            &env_inputs,
            &mut tracker,
        )?
    };

    // 7. Additional services (both paths; the reference supports them for Jobs only).
    let mut objects = Vec::new();
    let mut provenance = Vec::new();
    if let Some(secret) = secret {
        provenance.push(all_fields(
            &secret.manifest,
            Layer::AgentDefault,
            ctx.explain,
        ));
        objects.push(secret);
    }
    for (i, config) in services {
        let (object, fields) =
            render_service(spec, ctx, i, config, &namespace, &env_inputs, &agent_keys)?;
        provenance.push(fields);
        objects.push(object);
    }
    provenance.push(tracker.finish(&workload.manifest));
    objects.push(workload);
    if !ctx.explain {
        provenance.clear();
    }

    Ok(Rendered {
        namespace,
        objects,
        warnings,
        agent_keys,
        provenance,
    })
}

/// Agent-only values that are not part of [`AgentKeys`] but steer the render.
#[derive(Default)]
struct Extras {
    gpu: Option<rlaunch_gpu::GpuRequest>,
    namespace: Option<String>,
    group: Option<String>,
    version: Option<String>,
    plural: Option<String>,
}

fn take_agent_keys(body: &mut Map<String, Value>) -> (AgentKeys, Extras, Vec<FieldError>) {
    let mut problems = Vec::new();
    let string_key = |body: &mut Map<String, Value>,
                      key: &str,
                      problems: &mut Vec<FieldError>|
     -> Option<String> {
        match body.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                problems.push(FieldError::new(
                    format!("{K8S}.{key}"),
                    format!("must be a string, found {}", json_kind(&other)),
                    format!("set `{key}` to a string or remove it"),
                ));
                None
            }
        }
    };
    let config_file = string_key(body, "configFile", &mut problems);
    let context = string_key(body, "context", &mut problems);
    let namespace = string_key(body, "namespace", &mut problems);
    let group = string_key(body, "group", &mut problems);
    let version = string_key(body, "version", &mut problems);
    let plural = string_key(body, "plural", &mut problems);
    body.remove("builder");
    let gpu = match string_key(body, "gpu", &mut problems)
        .map(|text| text.parse::<rlaunch_gpu::GpuRequest>())
    {
        None => None,
        Some(Ok(request)) => Some(request),
        Some(Err(error)) => {
            problems.push(FieldError::new(
                format!("{K8S}.gpu"),
                error.to_string(),
                "write the request like `4xA100-80GB`, `H100`, `nvidia.com/gpu=2` or `2xL4,shm=16Gi`",
            ));
            None
        }
    };
    let wait_for_ready = match body.remove("wait_for_ready") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            problems.push(FieldError::new(
                format!("{K8S}.wait_for_ready"),
                format!("must be true or false, found {}", json_kind(&other)),
                "set `wait_for_ready: true` or `false`",
            ));
            true
        }
    };
    let wait_timeout_secs = match body.remove("wait_timeout") {
        None | Some(Value::Null) => 300,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(300),
        Some(other) => {
            problems.push(FieldError::new(
                format!("{K8S}.wait_timeout"),
                format!("must be a whole number of seconds, found {other}"),
                "set `wait_timeout` to seconds, e.g. 300",
            ));
            300
        }
    };
    (
        AgentKeys {
            config_file,
            context,
            wait_for_ready,
            wait_timeout_secs,
        },
        Extras {
            gpu,
            namespace,
            group,
            version,
            plural,
        },
        problems,
    )
}

fn api_key_secret(spec: &RunSpec, ctx: &RenderContext, namespace: &str) -> Option<RenderedObject> {
    let per_run_key = spec.api_key.as_ref().filter(|key| !key.is_empty());
    let data = match (&ctx.api_key, per_run_key) {
        (ApiKeyMode::None, _) => return None,
        (ApiKeyMode::Placeholder, _) => json!({"stringData": {"password": API_KEY_PLACEHOLDER}}),
        (ApiKeyMode::Agent(_), Some(key)) | (ApiKeyMode::Agent(key), None) => {
            if key.is_empty() {
                return None;
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.expose());
            json!({"data": {"password": encoded}})
        }
    };
    // Helm mode shares one Secret, but a run with its own key gets its own Secret: the
    // reference replaces the shared one, changing the key under concurrently running pods.
    let shared = ctx.release_name.is_some() && per_run_key.is_none();
    let name = names::api_key_secret_name(
        &ctx.run_id,
        if shared {
            ctx.release_name.as_deref()
        } else {
            None
        },
    );
    let mut manifest = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/basic-auth",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {labels::CREATED_BY: labels::CREATED_BY_VALUE},
        },
    });
    if let (Some(object), Value::Object(data)) = (manifest.as_object_mut(), data) {
        object.extend(data);
        if !shared {
            set_label(object, labels::RUN_ID, &names::label_value(&ctx.run_id));
        }
        if let Some(identity) = &ctx.agent_identity {
            set_label(
                object,
                labels::AGENT_IDENTITY,
                &names::label_value(identity),
            );
        }
    }
    Some(RenderedObject {
        role: ObjectRole::ApiKeySecret { shared },
        api: ApiCoordinates {
            group: String::new(),
            version: "v1".to_owned(),
            kind: "Secret".to_owned(),
            plural: Some("secrets".to_owned()),
        },
        manifest,
    })
}

/// Labels and annotations every workload carries, on the object and its pod templates.
fn label_workload(object: &mut Map<String, Value>, ctx: &RenderContext, spec: &RunSpec) {
    set_label(object, labels::RUN_ID, &names::label_value(&ctx.run_id));
    set_label(object, labels::MONITOR, "true");
    if let Some(agent) = &ctx.agent_name {
        set_label(object, labels::AGENT, &names::label_value(agent));
    }
    if let Some(identity) = &ctx.agent_identity {
        set_label(
            object,
            labels::AGENT_IDENTITY,
            &names::label_value(identity),
        );
    }
    if let Some(rqi) = &ctx.run_queue_item_id {
        set_annotation(object, labels::RUN_QUEUE_ITEM_ANNOTATION, rqi);
    }
    if let Some(queue) = &ctx.queue_name {
        set_annotation(object, labels::QUEUE_ANNOTATION, queue);
    }
    set_annotation(object, labels::ENTITY_ANNOTATION, &spec.entity);
    set_annotation(object, labels::PROJECT_ANNOTATION, &spec.project);
    let mut value = Value::Object(std::mem::take(object));
    {
        for_each_pod_template(&mut value, &mut |template| {
            set_label(template, labels::MONITOR, "true");
            set_label(template, labels::RUN_ID, &names::label_value(&ctx.run_id));
            if let Some(agent) = &ctx.agent_name {
                set_label(template, labels::AGENT, &names::label_value(agent));
            }
            if let Some(identity) = &ctx.agent_identity {
                set_label(
                    template,
                    labels::AGENT_IDENTITY,
                    &names::label_value(identity),
                );
            }
        });
    }
    if let Value::Object(map) = value {
        *object = map;
    }
}

fn field_error(
    path: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> RenderError {
    RenderError::one(FieldError::new(path, problem, fix))
}

fn check_user_name(object: &Map<String, Value>, subdomain_ok: bool) -> Result<Option<String>> {
    match object.get("metadata").and_then(|m| m.get("name")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) if name.is_empty() => Ok(None),
        Some(Value::String(name)) => {
            let valid = if subdomain_ok {
                names::is_dns_subdomain(name)
            } else {
                names::is_dns_label(name)
            };
            if valid {
                Ok(Some(name.clone()))
            } else {
                Err(field_error(
                    format!("{K8S}.metadata.name"),
                    format!("`{name}` is not a valid Kubernetes name"),
                    "use lower-case letters, digits and '-' (at most 63 characters, starting and ending \
                     with a letter or digit), e.g. `train-${run_id}`, or remove it to let the agent name the job",
                ))
            }
        }
        Some(other) => Err(field_error(
            format!("{K8S}.metadata.name"),
            format!("must be a string, found {}", json_kind(other)),
            "set metadata.name to a string or remove it",
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn render_job(
    spec: &RunSpec,
    ctx: &RenderContext,
    body: &mut Value,
    namespace: &str,
    image_uri: Option<&str>,
    gpu_request: Option<&rlaunch_gpu::GpuRequest>,
    env_inputs: &EnvInputs<'_>,
    tracker: &mut Tracker,
) -> Result<RenderedObject> {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job"});
    let (Some(job_map), Some(user)) = (job.as_object_mut(), body.as_object_mut()) else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    job_map.extend(std::mem::take(user));
    let user_name = check_user_name(job_map, false)?;

    // Job spec, pod template and pod spec, created where absent.
    let Some(job_spec) = object_entry(job_map, "spec") else {
        return Err(field_error(
            format!("{K8S}.spec"),
            "must be a dictionary",
            "write the Job spec as a mapping",
        ));
    };
    job_spec.entry("backoffLimit").or_insert(json!(0));
    job_spec
        .entry("ttlSecondsAfterFinished")
        .or_insert(json!(60));
    let Some(template) = object_entry(job_spec, "template") else {
        return Err(field_error(
            format!("{K8S}.spec.template"),
            "must be a dictionary",
            "write the pod template as a mapping",
        ));
    };
    let Some(pod_spec) = object_entry(template, "spec") else {
        return Err(field_error(
            format!("{K8S}.spec.template.spec"),
            "must be a dictionary",
            "write the pod spec as a mapping",
        ));
    };
    pod_spec.entry("restartPolicy").or_insert(json!("Never"));
    let containers = pod_spec.entry("containers").or_insert_with(|| json!([]));
    match containers {
        Value::Array(list) if list.is_empty() => list.push(json!({})),
        Value::Array(list) => {
            for (i, container) in list.iter().enumerate() {
                if !container.is_object() {
                    return Err(field_error(
                        format!("{K8S}.spec.template.spec.containers[{i}]"),
                        format!("must be a container object, found {}", json_kind(container)),
                        "write each container as a mapping with name, image, …",
                    ));
                }
            }
        }
        Value::Null => *containers = json!([{}]),
        other => {
            return Err(field_error(
                format!("{K8S}.spec.template.spec.containers"),
                format!("must be a list of containers, found {}", json_kind(other)),
                "write containers as a list, e.g. `containers: [{name: main}]`",
            ));
        }
    }
    for (i, container) in containers_mut(pod_spec).enumerate() {
        container
            .entry("name")
            .or_insert_with(|| json!(format!("launch{i}")));
        for key in ["env", "args", "command"] {
            if let Some(value) = container.get(key).filter(|v| !v.is_array() && !v.is_null()) {
                return Err(field_error(
                    format!("{K8S}.spec.template.spec.containers[{i}].{key}"),
                    format!("must be a list, found {}", json_kind(value)),
                    format!("write `{key}` as a list"),
                ));
            }
        }
    }
    if let Some(pull) = &ctx.pull_secret {
        let exists = pod_spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|list| {
                list.iter()
                    .any(|s| s.get("name").and_then(Value::as_str) == Some(pull))
            });
        // Differs from the reference because it replaces the user's imagePullSecrets.
        if !exists && !append_list(pod_spec, "imagePullSecrets", [json!({"name": pull})]) {
            return Err(field_error(
                format!("{K8S}.spec.template.spec.imagePullSecrets"),
                "must be a list",
                "write imagePullSecrets as a list of {name: …}",
            ));
        }
    }

    // Metadata: name, namespace, labels, annotations.
    let metadata = object_entry(job_map, "metadata").ok_or_else(|| {
        field_error(
            format!("{K8S}.metadata"),
            "must be a dictionary",
            "write metadata as a mapping",
        )
    })?;
    if user_name.is_none() {
        metadata.remove("name");
        match &ctx.run_queue_item_id {
            Some(rqi) => {
                metadata.remove("generateName");
                metadata.insert(
                    "name".to_owned(),
                    json!(names::workload_name(
                        &spec.entity,
                        &spec.project,
                        &ctx.run_id,
                        rqi
                    )),
                );
            }
            None => {
                metadata.insert(
                    "generateName".to_owned(),
                    json!(names::generate_name_prefix(&spec.entity, &spec.project)),
                );
            }
        }
    }
    metadata.insert("namespace".to_owned(), json!(namespace));
    label_workload(job_map, ctx, spec);
    tracker.record(&job, Layer::AgentDefault);

    if let Some(request) = gpu_request {
        let pod_spec = job.pointer_mut("/spec/template/spec").ok_or_else(|| {
            field_error(
                format!("{K8S}.spec.template.spec"),
                "is missing",
                "add a pod spec",
            )
        })?;
        apply_gpu(pod_spec, request, &format!("{K8S}.spec.template.spec"))?;
        tracker.record(&job, Layer::GpuRequest);
    }

    // Image, command and args: the run spec's choices, on the main container.
    let pod_spec = job_pod_spec(&mut job)?;
    let any_image = containers_mut(pod_spec).any(|c| {
        c.get("image")
            .and_then(Value::as_str)
            .is_some_and(|i| !i.is_empty())
    });
    if let Some(main) = containers_mut(pod_spec).next() {
        if let Some(image) = image_uri.filter(|_| spec.docker_image.is_some() || !any_image) {
            main.insert("image".to_owned(), json!(image));
        }
        if !spec.overrides.args.is_empty() {
            main.insert("args".to_owned(), json!(spec.overrides.args));
        }
        let entrypoint = spec
            .overrides
            .entry_point
            .as_ref()
            .or(ctx.job_entrypoint.as_ref());
        if let Some(entrypoint) = entrypoint {
            let has_command = main
                .get("command")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            if !has_command || spec.overrides.entry_point.is_some() {
                main.insert("command".to_owned(), json!(entrypoint));
            }
        }
    }
    for (i, container) in containers_mut(pod_spec).enumerate() {
        if container
            .get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let path = format!("{K8S}.spec.template.spec.containers[{i}].image");
            return Err(if i == 0 {
                field_error(
                    path,
                    "no image: the run spec has no docker image and the queue config sets none",
                    "set `docker.docker_image` in the run spec (or pass --image), or set the container's image in the queue config",
                )
            } else {
                field_error(
                    path,
                    "this sidecar has no image (the run's image goes to the first container only)",
                    "set `image` on this container in the queue config",
                )
            });
        }
    }
    tracker.record(&job, Layer::RunSpec);

    // W&B env on every container.
    for container in containers_mut(job_pod_spec(&mut job)?) {
        append_list(container, "env", wandb_env(spec, env_inputs, true));
    }
    tracker.record(&job, Layer::WandbEnv);

    if let Some(mount) = &ctx.code_mount {
        code_mount::apply(&mut job, mount, spec, &ctx.base_url)?;
        tracker.record(&job, Layer::AgentDefault);
    }
    security::force_security_context(&mut job);
    tracker.record(&job, Layer::SecurityInjection);
    validate_gpu_resources(&job)?;

    Ok(RenderedObject {
        role: ObjectRole::Workload,
        api: ApiCoordinates {
            group: "batch".to_owned(),
            version: "v1".to_owned(),
            kind: "Job".to_owned(),
            plural: Some("jobs".to_owned()),
        },
        manifest: job,
    })
}

fn job_pod_spec(job: &mut Value) -> Result<&mut Map<String, Value>> {
    job.pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            field_error(
                format!("{K8S}.spec.template.spec"),
                "is missing",
                "add a pod spec",
            )
        })
}

#[allow(clippy::too_many_arguments)]
fn render_custom(
    spec: &RunSpec,
    ctx: &RenderContext,
    body: &mut Value,
    extras: &Extras,
    namespace: &str,
    gpu_request: Option<&rlaunch_gpu::GpuRequest>,
    env_inputs: &EnvInputs<'_>,
    tracker: &mut Tracker,
) -> Result<RenderedObject> {
    let Some(object) = body.as_object_mut() else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let Some((group, version)) = api_version.split_once('/') else {
        return Err(field_error(
            format!("{K8S}.apiVersion"),
            format!(
                "`{api_version}` is a core API version; only batch/v1 Jobs and custom resources (group/version) can be launched"
            ),
            "use `batch/v1` for a Job or the group/version of a CRD such as `kubeflow.org/v1`",
        ));
    };
    let group = extras.group.clone().unwrap_or_else(|| group.to_owned());
    let version = extras.version.clone().unwrap_or_else(|| version.to_owned());
    let kind = match object.get("kind") {
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        _ => {
            return Err(field_error(
                format!("{K8S}.kind"),
                "is required for a custom resource",
                format!("set `kind`, e.g. `PyTorchJob`, for apiVersion {api_version}"),
            ));
        }
    };
    if check_user_name(object, true)?.is_none() {
        return Err(field_error(
            format!("{K8S}.metadata.name"),
            format!("a {kind} needs metadata.name"),
            "set `metadata.name`, e.g. `train-${run_id}`, so every run gets its own object",
        ));
    }
    require_pod_specs(body, &kind)?;
    let Some(object) = body.as_object_mut() else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    object_entry(object, "metadata")
        .ok_or_else(|| {
            field_error(
                format!("{K8S}.metadata"),
                "must be a dictionary",
                "write metadata as a mapping",
            )
        })?
        .insert("namespace".to_owned(), json!(namespace));
    label_workload(object, ctx, spec);
    tracker.record(body, Layer::AgentDefault);

    if let Some(request) = gpu_request {
        let mut result = Ok(());
        for_each_pod_template(body, &mut |template| {
            if let (Ok(()), Some(pod_spec)) = (&result, template.get_mut("spec")) {
                result = apply_gpu(pod_spec, request, &format!("{K8S}.spec"));
            }
        });
        result?;
        tracker.record(body, Layer::GpuRequest);
    }

    // Overrides of command and args go to every container of every pod template.
    let mut first = true;
    for_each_pod_spec(body, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            if let Some(entrypoint) = &spec.overrides.entry_point {
                container.insert("command".to_owned(), json!(entrypoint));
            }
            if !spec.overrides.args.is_empty() {
                container.insert("args".to_owned(), json!(spec.overrides.args));
            }
        }
    });
    tracker.record(body, Layer::RunSpec);
    for_each_pod_spec(body, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            append_list(container, "env", wandb_env(spec, env_inputs, first));
            first = false;
        }
    });
    tracker.record(body, Layer::WandbEnv);
    if let Some(mount) = &ctx.code_mount {
        code_mount::apply(body, mount, spec, &ctx.base_url)?;
        tracker.record(body, Layer::AgentDefault);
    }
    security::force_security_context(body);
    tracker.record(body, Layer::SecurityInjection);
    validate_gpu_resources(body)?;

    let plural = extras
        .plural
        .clone()
        .or_else(|| ctx.crd_plurals.get(&format!("{kind}.{group}")).cloned())
        .or_else(|| known_plural(&group, &kind).map(str::to_owned));
    Ok(RenderedObject {
        role: ObjectRole::Workload,
        api: ApiCoordinates {
            group,
            version,
            kind,
            plural,
        },
        manifest: std::mem::take(body),
    })
}

/// A custom resource reaches W&B only through its pods: the env, the API key, the labels and
/// the image go to pod specs (objects holding a `containers` list), wherever they sit in the
/// body. A body with none, a `containers` that is not a list, or a container without an image
/// is refused, so no workload is rendered that runs without reaching W&B.
fn require_pod_specs(body: &Value, kind: &str) -> Result<()> {
    let mut problems = Vec::new();
    let mut found = 0;
    walk::visit_objects(
        body,
        K8S,
        &mut |object, path| {
            match object.get("containers") {
            Some(Value::Array(containers)) => {
                found += 1;
                for (i, container) in containers.iter().enumerate() {
                    let image = container.get("image").and_then(Value::as_str);
                    if image.is_none_or(str::is_empty) {
                        problems.push(FieldError::new(
                            format!("{}.containers[{i}].image", path()),
                            format!("this {kind} container has no image (custom resources get no image injection)"),
                            "set `image: ${image_uri}` to run the run's image, or name an image",
                        ));
                    }
                }
            }
            Some(other) => problems.push(FieldError::new(
                format!("{}.containers", path()),
                format!("must be a list of containers, found {}", json_kind(other)),
                "write containers as a list, e.g. `containers: [{name: main, image: ${image_uri}}]`",
            )),
            None => {}
        }
        },
    );
    if found == 0 && problems.is_empty() {
        problems.push(FieldError::new(
            K8S,
            format!(
                "this {kind} has no pod template: no `template.spec.containers` list anywhere in the body, \
                 so its pods would get no W&B env, API key, labels or image"
            ),
            "put the pods in a pod template, e.g. `spec.template.spec.containers: [...]` \
             (a PyTorchJob: `spec.pytorchReplicaSpecs.Master.template.spec.containers`)",
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderError::many(problems))
    }
}

fn render_service(
    spec: &RunSpec,
    ctx: &RenderContext,
    index: usize,
    mut config: Value,
    namespace: &str,
    env_inputs: &EnvInputs<'_>,
    agent_keys: &AgentKeys,
) -> Result<(RenderedObject, output::Provenance)> {
    let path = format!("runSpec.additional_services[{index}].config");
    let mut tracker = Tracker::new(ctx.explain);
    tracker.record(&config, Layer::RunSpec);
    let Some(object) = config.as_object_mut() else {
        return Err(field_error(
            &path,
            "must be a Kubernetes object",
            "use a mapping",
        ));
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if api_version.is_empty() || kind.is_empty() {
        return Err(field_error(
            &path,
            "an additional service needs apiVersion and kind",
            "set e.g. `apiVersion: v1` and `kind: Service`",
        ));
    }
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let (group, version) = (group.to_owned(), version.to_owned());
    let metadata = object_entry(object, "metadata").ok_or_else(|| {
        field_error(
            format!("{path}.metadata"),
            "must be a dictionary",
            "write metadata as a mapping",
        )
    })?;
    // Differs from the reference because its sanitiser rewrites every string under any
    // `name` key (env var names become `wandb-config`); only the object name is made safe.
    let given = metadata
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = names::label_safe(given).ok_or_else(|| {
        field_error(
            format!("{path}.metadata.name"),
            "an additional service needs a name with at least one letter or digit",
            "set metadata.name, e.g. `db-${run_id}`",
        )
    })?;
    metadata.insert("name".to_owned(), json!(name));
    metadata.insert("namespace".to_owned(), json!(namespace));
    let aux = names::auxiliary_label(&spec.entity, &spec.project, &ctx.run_id);
    set_label(object, labels::RUN_ID, &names::label_value(&ctx.run_id));
    set_label(object, labels::CREATED_BY, labels::CREATED_BY_VALUE);
    set_label(object, labels::AUXILIARY_RESOURCE, &aux);
    tracker.record(&config, Layer::AgentDefault);
    if let Some(spec_value) = config.get_mut("spec") {
        for_each_pod_template(spec_value, &mut |template| {
            set_label(template, labels::AUXILIARY_RESOURCE, &aux)
        });
    }
    tracker.record(&config, Layer::AgentDefault);
    let run_config = spec
        .overrides
        .run_config
        .clone()
        .unwrap_or_else(|| json!({}));
    for_each_pod_spec(&mut config, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            let mut env = Vec::new();
            push_json_env(&mut env, "WANDB_CONFIG", &run_config);
            if let ApiKeyEnv::FromSecret(secret) = &env_inputs.api_key {
                env.push(json!({"name": "WANDB_API_KEY",
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}));
            }
            append_list(container, "env", env);
        }
    });
    tracker.record(&config, Layer::WandbEnv);
    security::force_security_context(&mut config);
    tracker.record(&config, Layer::SecurityInjection);
    let plural = known_plural(&group, &kind).map(str::to_owned);
    let fields = tracker.finish(&config);
    Ok((
        RenderedObject {
            role: ObjectRole::AdditionalService {
                wait_for_ready: agent_keys.wait_for_ready,
                wait_timeout_secs: agent_keys.wait_timeout_secs,
            },
            api: ApiCoordinates {
                group,
                version,
                kind,
                plural,
            },
            manifest: config,
        },
        fields,
    ))
}

fn all_fields(manifest: &Value, layer: Layer, enabled: bool) -> output::Provenance {
    let mut tracker = Tracker::new(enabled);
    tracker.record(manifest, layer);
    tracker.finish(manifest)
}

fn apply_gpu(pod_spec: &mut Value, request: &rlaunch_gpu::GpuRequest, path: &str) -> Result<()> {
    let options = rlaunch_gpu::RenderOptions::default();
    rlaunch_gpu::apply_gpu_request(pod_spec, request, &options).map_err(|error| {
        field_error(
            path,
            format!("gpu request `{request}` cannot be applied: {error}"),
            "remove the conflicting value from the queue config, or change the gpu request",
        )
    })
}

/// Kubernetes' extended-resource rules (integer GPUs, in limits, requests equal to limits),
/// checked on every pod spec so a bad queue config fails here rather than at the API server.
fn validate_gpu_resources(workload: &Value) -> Result<()> {
    let mut problems = Vec::new();
    walk::visit_pod_specs(workload, K8S, &mut |pod_spec, path| {
        for error in rlaunch_gpu::validate_extended_resources(pod_spec, path) {
            problems.push(FieldError::new(
                error.field,
                format!("container `{}`: {}", error.container, error.problem),
                error.fix,
            ));
        }
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RenderError::many(problems))
    }
}
