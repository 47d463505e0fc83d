//! Additional services: auxiliary objects (a database, a parameter server) created and awaited
//! before the workload, labelled for cleanup and given the run config and the API key.

use serde_json::{Map, Value, json};

use rlaunch_model::crd::known_plural;
use rlaunch_model::{Result, labels, names};

use crate::env::{ApiKeyEnv, api_key_entry};
use crate::output::{AgentKeys, ApiCoordinates, Layer, ObjectRole, Provenance, RenderedObject};
use crate::provenance::Tracker;
use crate::security;
use crate::walk::{
    append_list, containers_mut, for_each_pod_spec, for_each_pod_template, object_entry, set_label,
};
use crate::workload::{Plan, field_error};

/// Renders `additional_services[index].config` (already macro-expanded).
pub(crate) fn render_service(
    plan: &Plan<'_>,
    index: usize,
    mut config: Value,
    agent_keys: &AgentKeys,
) -> Result<(RenderedObject, Provenance)> {
    let path = format!("runSpec.additional_services[{index}].config");
    let mut tracker = Tracker::new(plan.ctx.explain);
    tracker.record(&config, Layer::RunSpec);
    let Some(object) = config.as_object_mut() else {
        return Err(field_error(
            &path,
            "must be a Kubernetes object",
            "use a mapping",
        ));
    };
    let api = coordinates(object, &path)?;
    name_service(object, &path, plan.namespace)?;
    let aux = names::auxiliary_label(&plan.spec.entity, &plan.spec.project, &plan.ctx.run_id);
    set_label(
        object,
        labels::RUN_ID,
        &names::label_value(&plan.ctx.run_id),
    );
    set_label(object, labels::CREATED_BY, labels::CREATED_BY_VALUE);
    set_label(object, labels::AUXILIARY_RESOURCE, &aux);
    if let Some(spec_value) = object.get_mut("spec") {
        for_each_pod_template(spec_value, &mut |template| {
            set_label(template, labels::AUXILIARY_RESOURCE, &aux)
        });
    }
    tracker.record(&config, Layer::AgentDefault);
    add_env(&mut config, plan);
    tracker.record(&config, Layer::WandbEnv);
    security::force_security_context(&mut config);
    tracker.record(&config, Layer::SecurityInjection);
    let fields = tracker.finish(&config);
    let role = ObjectRole::AdditionalService {
        wait_for_ready: agent_keys.wait_for_ready,
        wait_timeout_secs: agent_keys.wait_timeout_secs,
    };
    Ok((
        RenderedObject {
            role,
            api,
            manifest: config,
        },
        fields,
    ))
}

/// `apiVersion` and `kind` are required; the plural comes from the built-in table.
fn coordinates(object: &Map<String, Value>, path: &str) -> Result<ApiCoordinates> {
    let text = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(field_error(
            path,
            "an additional service needs apiVersion and kind",
            "set e.g. `apiVersion: v1` and `kind: Service`",
        ));
    }
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    Ok(ApiCoordinates {
        plural: known_plural(group, &kind).map(str::to_owned),
        group: group.to_owned(),
        version: version.to_owned(),
        kind,
    })
}

/// The object name made label-safe, and the run's namespace.
///
/// W&B's agent rewrites every string under any `name` key (env var names become
/// `wandb-config`); only the object name is made safe here.
fn name_service(object: &mut Map<String, Value>, path: &str, namespace: &str) -> Result<()> {
    let metadata = object_entry(object, "metadata").ok_or_else(|| {
        field_error(
            format!("{path}.metadata"),
            "must be a dictionary",
            "write metadata as a mapping",
        )
    })?;
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
    Ok(())
}

/// `WANDB_CONFIG` and, when the run has a key Secret, `WANDB_API_KEY` on every container.
fn add_env(config: &mut Value, plan: &Plan<'_>) {
    for_each_pod_spec(config, &mut |pod_spec| {
        for container in containers_mut(pod_spec) {
            let mut env: Vec<Value> = plan.env.json.config_entries().collect();
            if let ApiKeyEnv::FromSecret(secret) = &plan.env.api_key {
                env.push(api_key_entry(secret));
            }
            append_list(container, "env", env);
        }
    });
}
