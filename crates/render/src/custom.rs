//! The custom-resource path (Volcano Job, PyTorchJob, JobSet, …): coordinates, a required
//! name, pod specs found anywhere in the body, overrides and the W&B env on every container.

use serde_json::{Value, json};

use rlaunch_model::crd::known_plural;
use rlaunch_model::{FieldError, RenderError, Result, json_kind};

use crate::env::wandb_env;
use crate::output::{ApiCoordinates, Layer, ObjectRole, RenderedObject};
use crate::provenance::Tracker;
use crate::walk::{self, append_list, containers_mut, for_each_pod_spec, for_each_pod_template};
use crate::workload::{
    K8S, Plan, apply_gpu, check_user_name, field_error, finish_pods, label_workload,
};

/// Renders a custom resource from the user's body.
pub(crate) fn render_custom(
    plan: &Plan<'_>,
    body: &mut Value,
    tracker: &mut Tracker,
) -> Result<RenderedObject> {
    let api = coordinates(body, plan)?;
    let Some(object) = body.as_object_mut() else {
        return Err(field_error(K8S, "must be a dictionary", "use a mapping"));
    };
    if check_user_name(object, true)?.is_none() {
        return Err(field_error(
            format!("{K8S}.metadata.name"),
            format!("a {} needs metadata.name", api.kind),
            "set `metadata.name`, e.g. `train-${run_id}`, so every run gets its own object",
        ));
    }
    require_pod_specs(body, &api.kind)?;
    set_namespace(body, plan.namespace)?;
    if let Some(object) = body.as_object_mut() {
        label_workload(object, plan.ctx, plan.spec);
    }
    tracker.record(body, Layer::AgentDefault);

    if let Some(request) = plan.gpu {
        let mut result = Ok(());
        for_each_pod_template(body, &mut |template| {
            if let (Ok(()), Some(pod_spec)) = (&result, template.get_mut("spec")) {
                result = apply_gpu(pod_spec, request, &format!("{K8S}.spec"));
            }
        });
        result?;
        tracker.record(body, Layer::GpuRequest);
    }
    apply_overrides(body, plan);
    tracker.record(body, Layer::RunSpec);
    let mut first = true;
    for_each_pod_spec(body, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            append_list(container, "env", wandb_env(plan.spec, plan.env, first));
            first = false;
        }
    });
    tracker.record(body, Layer::WandbEnv);
    finish_pods(body, plan, tracker)?;
    Ok(RenderedObject {
        role: ObjectRole::Workload,
        api,
        manifest: std::mem::take(body),
    })
}

/// Group and version from `apiVersion` (overridable by the agent-only `group`/`version`
/// keys), the required `kind`, and the plural from the overrides or the CRD table.
fn coordinates(body: &Value, plan: &Plan<'_>) -> Result<ApiCoordinates> {
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some((group, version)) = api_version.split_once('/') else {
        return Err(field_error(
            format!("{K8S}.apiVersion"),
            format!(
                "`{api_version}` is a core API version; only batch/v1 Jobs and custom resources (group/version) can be launched"
            ),
            "use `batch/v1` for a Job or the group/version of a CRD such as `kubeflow.org/v1`",
        ));
    };
    let extras = plan.extras;
    let group = extras.group.clone().unwrap_or_else(|| group.to_owned());
    let version = extras.version.clone().unwrap_or_else(|| version.to_owned());
    let kind = match body.get("kind") {
        Some(Value::String(kind)) if !kind.is_empty() => kind.clone(),
        _ => {
            return Err(field_error(
                format!("{K8S}.kind"),
                "is required for a custom resource",
                format!("set `kind`, e.g. `PyTorchJob`, for apiVersion {api_version}"),
            ));
        }
    };
    let plural = extras
        .plural
        .clone()
        .or_else(|| {
            // The key is formatted only when there is a table to look it up in.
            let plurals = &plan.ctx.crd_plurals;
            (!plurals.is_empty())
                .then(|| plurals.get(&format!("{kind}.{group}")).cloned())
                .flatten()
        })
        .or_else(|| known_plural(&group, &kind).map(str::to_owned));
    Ok(ApiCoordinates {
        group,
        version,
        kind,
        plural,
    })
}

fn set_namespace(body: &mut Value, namespace: &str) -> Result<()> {
    let metadata = body
        .as_object_mut()
        .and_then(|object| walk::object_entry(object, "metadata"))
        .ok_or_else(|| {
            field_error(
                format!("{K8S}.metadata"),
                "must be a dictionary",
                "write metadata as a mapping",
            )
        })?;
    metadata.insert("namespace".to_owned(), json!(namespace));
    Ok(())
}

/// `overrides.entry_point` and `overrides.args` go to every container of every pod spec (the
/// job artifact's own entrypoint is not injected on this path, as in W&B's agent).
fn apply_overrides(body: &mut Value, plan: &Plan<'_>) {
    let overrides = &plan.spec.overrides;
    for_each_pod_spec(body, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            if let Some(entrypoint) = &overrides.entry_point {
                container.insert("command".to_owned(), json!(entrypoint));
            }
            if !overrides.args.is_empty() {
                container.insert("args".to_owned(), json!(overrides.args));
            }
        }
    });
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
                problems.extend(containers_without_image(containers, kind, path));
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

fn containers_without_image(
    containers: &[Value],
    kind: &str,
    path: &dyn Fn() -> String,
) -> Vec<FieldError> {
    let mut problems = Vec::new();
    for (i, container) in containers.iter().enumerate() {
        let image = container.get("image").and_then(Value::as_str);
        if image.is_none_or(str::is_empty) {
            problems.push(FieldError::new(
                format!("{}.containers[{i}].image", path()),
                format!(
                    "this {kind} container has no image (custom resources get no image injection)"
                ),
                "set `image: ${image_uri}` to run the run's image, or name an image",
            ));
        }
    }
    problems
}
