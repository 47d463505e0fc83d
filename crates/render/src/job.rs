//! The batch Job path: W&B's agent's Job defaults, names, image and entrypoint placement,
//! the W&B env on every container.

use serde_json::{Map, Value, json};

use rlaunch_model::{Result, json_kind, names};

use crate::env::wandb_env;
use crate::output::{ApiCoordinates, Layer, ObjectRole, RenderedObject};
use crate::provenance::Tracker;
use crate::walk::{append_list, append_to_each, containers_mut, entry_or, object_entry};
use crate::workload::{
    K8S, Plan, apply_gpu, check_user_name, field_error, finish_pods, label_workload,
};

const POD_SPEC: &str = "resource_args.kubernetes.spec.template.spec";

/// Renders the Job: the user's body over `{apiVersion: batch/v1, kind: Job}`, then each step.
pub(crate) fn render_job(
    plan: &Plan<'_>,
    body: &mut Value,
    tracker: &mut Tracker,
) -> Result<RenderedObject> {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job"});
    let (Some(job_map), Some(user)) = (job.as_object_mut(), body.as_object_mut()) else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    job_map.extend(std::mem::take(user));
    let user_name = check_user_name(job_map, false)?;
    let pod_spec = job_defaults(job_map)?;
    check_containers(pod_spec)?;
    append_pull_secret(pod_spec, plan)?;
    name_job(job_map, user_name.is_some(), plan)?;
    label_workload(job_map, plan.ctx, plan.spec);
    tracker.record(&job, Layer::AgentDefault);

    if let Some(request) = plan.gpu {
        let pod_spec = pod_spec_mut(&mut job).ok_or_else(missing_pod_spec)?;
        apply_gpu(pod_spec, request, POD_SPEC)?;
        tracker.record(&job, Layer::GpuRequest);
    }
    let pod_spec = job_pod_spec(&mut job)?;
    place_image_and_entrypoint(pod_spec, plan);
    require_images(pod_spec)?;
    tracker.record(&job, Layer::RunSpec);

    let env = wandb_env(plan.spec, plan.env, true);
    append_to_each(containers_mut(job_pod_spec(&mut job)?), "env", env);
    tracker.record(&job, Layer::WandbEnv);
    finish_pods(&mut job, plan, tracker)?;
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

/// Job and pod defaults (user values win), creating the spec, template and pod spec where
/// absent; returns the pod spec.
fn job_defaults(job: &mut Map<String, Value>) -> Result<&mut Map<String, Value>> {
    let not_a_mapping = |path: &str, what: &str| {
        field_error(
            format!("{K8S}.{path}"),
            "must be a dictionary",
            format!("write the {what} as a mapping"),
        )
    };
    let job_spec = object_entry(job, "spec").ok_or_else(|| not_a_mapping("spec", "Job spec"))?;
    entry_or(job_spec, "backoffLimit", || json!(0));
    entry_or(job_spec, "ttlSecondsAfterFinished", || json!(60));
    let template = object_entry(job_spec, "template")
        .ok_or_else(|| not_a_mapping("spec.template", "pod template"))?;
    let pod_spec = object_entry(template, "spec")
        .ok_or_else(|| not_a_mapping("spec.template.spec", "pod spec"))?;
    entry_or(pod_spec, "restartPolicy", || json!("Never"));
    Ok(pod_spec)
}

/// One empty container when there is none; every container an object with list-valued
/// `env`, `args` and `command`, named `launch<i>` when unnamed.
fn check_containers(pod_spec: &mut Map<String, Value>) -> Result<()> {
    let containers = entry_or(pod_spec, "containers", || json!([]));
    match containers {
        Value::Array(list) if list.is_empty() => list.push(json!({})),
        Value::Array(list) => {
            if let Some((i, container)) = list.iter().enumerate().find(|(_, c)| !c.is_object()) {
                return Err(field_error(
                    format!("{POD_SPEC}.containers[{i}]"),
                    format!("must be a container object, found {}", json_kind(container)),
                    "write each container as a mapping with name, image, …",
                ));
            }
        }
        Value::Null => *containers = json!([{}]),
        other => {
            return Err(field_error(
                format!("{POD_SPEC}.containers"),
                format!("must be a list of containers, found {}", json_kind(other)),
                "write containers as a list, e.g. `containers: [{name: main}]`",
            ));
        }
    }
    for (i, container) in containers_mut(pod_spec).enumerate() {
        entry_or(container, "name", || json!(format!("launch{i}")));
        for key in ["env", "args", "command"] {
            if let Some(value) = container.get(key).filter(|v| !v.is_array() && !v.is_null()) {
                return Err(field_error(
                    format!("{POD_SPEC}.containers[{i}].{key}"),
                    format!("must be a list, found {}", json_kind(value)),
                    format!("write `{key}` as a list"),
                ));
            }
        }
    }
    Ok(())
}

/// Appends the agent's pull Secret; W&B's agent replaces the user's `imagePullSecrets`.
fn append_pull_secret(pod_spec: &mut Map<String, Value>, plan: &Plan<'_>) -> Result<()> {
    let Some(pull) = &plan.ctx.pull_secret else {
        return Ok(());
    };
    let exists = pod_spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .any(|s| s.get("name").and_then(Value::as_str) == Some(pull))
        });
    if !exists && !append_list(pod_spec, "imagePullSecrets", [json!({"name": pull})]) {
        return Err(field_error(
            format!("{POD_SPEC}.imagePullSecrets"),
            "must be a list",
            "write imagePullSecrets as a list of {name: …}",
        ));
    }
    Ok(())
}

/// The user's name, else a deterministic one per run queue item, else `generateName`; the
/// namespace always the resolved one.
fn name_job(job: &mut Map<String, Value>, user_named: bool, plan: &Plan<'_>) -> Result<()> {
    let metadata = object_entry(job, "metadata").ok_or_else(|| {
        field_error(
            format!("{K8S}.metadata"),
            "must be a dictionary",
            "write metadata as a mapping",
        )
    })?;
    let (spec, ctx) = (plan.spec, plan.ctx);
    if !user_named {
        metadata.remove("name");
        match &ctx.run_queue_item_id {
            Some(rqi) => {
                metadata.remove("generateName");
                let name = names::workload_name(&spec.entity, &spec.project, &ctx.run_id, rqi);
                metadata.insert("name".to_owned(), Value::String(name));
            }
            None => {
                let prefix = names::generate_name_prefix(&spec.entity, &spec.project);
                metadata.insert("generateName".to_owned(), Value::String(prefix));
            }
        }
    }
    metadata.insert("namespace".to_owned(), json!(plan.namespace));
    Ok(())
}

/// The run's image, `overrides.args` and entrypoint, on the main (first) container only.
fn place_image_and_entrypoint(pod_spec: &mut Map<String, Value>, plan: &Plan<'_>) {
    let spec = plan.spec;
    let any_image = containers_mut(pod_spec).any(|c| {
        c.get("image")
            .and_then(Value::as_str)
            .is_some_and(|i| !i.is_empty())
    });
    let Some(main) = containers_mut(pod_spec).next() else {
        return;
    };
    if let Some(image) = plan
        .image_uri
        .filter(|_| spec.docker_image.is_some() || !any_image)
    {
        main.insert("image".to_owned(), json!(image));
    }
    if !spec.overrides.args.is_empty() {
        main.insert("args".to_owned(), json!(spec.overrides.args));
    }
    let override_entrypoint = spec.overrides.entry_point.as_ref();
    if let Some(entrypoint) = override_entrypoint.or(plan.ctx.job_entrypoint.as_ref()) {
        let has_command = main
            .get("command")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        if !has_command || override_entrypoint.is_some() {
            main.insert("command".to_owned(), json!(entrypoint));
        }
    }
}

/// Every container needs an image; the message says which one and where it should come from.
fn require_images(pod_spec: &mut Map<String, Value>) -> Result<()> {
    for (i, container) in containers_mut(pod_spec).enumerate() {
        let image = container.get("image").and_then(Value::as_str);
        if image.is_some_and(|image| !image.is_empty()) {
            continue;
        }
        let path = format!("{POD_SPEC}.containers[{i}].image");
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
    Ok(())
}

fn missing_pod_spec() -> rlaunch_model::RenderError {
    field_error(POD_SPEC, "is missing", "add a pod spec")
}

fn job_pod_spec(job: &mut Value) -> Result<&mut Map<String, Value>> {
    pod_spec_mut(job)
        .and_then(Value::as_object_mut)
        .ok_or_else(missing_pod_spec)
}

/// `spec.template.spec`, looked up key by key (a JSON pointer allocates per segment).
fn pod_spec_mut(job: &mut Value) -> Option<&mut Value> {
    job.get_mut("spec")?.get_mut("template")?.get_mut("spec")
}
