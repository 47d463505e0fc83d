//! Property tests over generated run specs: every valid spec (Jobs, PyTorchJobs, Volcano Jobs,
//! JobSets, with additional services) renders, every name and label the agent generates is
//! valid for Kubernetes, equal input renders equal output, and arbitrary JSON never panics.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rlaunch_model::names::{is_dns_label, is_dns_subdomain, is_label_value};
use rlaunch_model::{ApiKey, RunSpec};
use rlaunch_render::{ApiKeyMode, RenderContext, render};
use serde_json::{Value, json};

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.\\- ]{1,80}",
        "\\PC{1,40}",
        Just("Team42".to_owned()),
    ]
}

/// The workload shapes the generator covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    DefaultJob,
    Job,
    PyTorchJob,
    VolcanoJob,
    JobSet,
}

const SHAPES: [Shape; 5] = [
    Shape::DefaultJob,
    Shape::Job,
    Shape::PyTorchJob,
    Shape::VolcanoJob,
    Shape::JobSet,
];

/// Containers of a pod spec: the first may rely on the run's image, the others carry their own.
fn containers() -> impl Strategy<Value = Vec<Value>> {
    let main = prop_oneof![
        Just(json!({})),
        Just(json!({"name": "main", "image": "img:1"})),
        Just(
            json!({"env": [{"name": "A", "value": "${run_id}"}], "args": ["--lr", "${run_name}"]})
        ),
    ];
    let sidecar = prop_oneof![
        Just(json!({"image": "side:2", "args": ["x"]})),
        Just(
            json!({"name": "proxy", "image": "envoy:1", "env": [{"name": "B", "value": "${project_name}"}]})
        ),
    ];
    (main, prop::collection::vec(sidecar, 0..3)).prop_map(|(main, mut rest)| {
        rest.insert(0, main);
        rest
    })
}

/// A custom resource's pods name their image (`${image_uri}` or a fixed one).
fn cr_containers() -> impl Strategy<Value = Vec<Value>> {
    containers().prop_map(|mut list| {
        for container in &mut list {
            if container.get("image").is_none() {
                container["image"] = json!("${image_uri}");
            }
        }
        list
    })
}

fn pod(containers: Vec<Value>) -> Value {
    json!({"spec": {"containers": containers}})
}

fn k8s_section() -> impl Strategy<Value = (Shape, Value)> {
    let shape = prop::sample::select(SHAPES.to_vec());
    let namespace = prop::option::of("[a-z]([a-z0-9-]{0,18}[a-z0-9])?");
    let user_name = prop::option::of("[a-z]([a-z0-9-]{0,20}[a-z0-9])?");
    (
        shape,
        containers(),
        cr_containers(),
        cr_containers(),
        namespace,
        user_name,
    )
        .prop_map(|(shape, job_pods, first, second, namespace, user_name)| {
            let cr_name = user_name.clone().unwrap_or_else(|| "train".to_owned());
            let mut section = match shape {
                Shape::DefaultJob => json!({}),
                Shape::Job => {
                    let mut job = json!({"spec": {"template": pod(job_pods)}});
                    if let Some(name) = user_name {
                        job["metadata"] = json!({"name": name});
                    }
                    job
                }
                Shape::PyTorchJob => json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                    "metadata": {"name": cr_name}, "spec": {"pytorchReplicaSpecs": {
                        "Master": {"replicas": 1, "template": pod(first)},
                        "Worker": {"replicas": 2, "template": pod(second)}}}}),
                Shape::VolcanoJob => {
                    json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
                    "metadata": {"name": cr_name}, "spec": {"minAvailable": 2, "tasks": [
                        {"name": "master", "replicas": 1, "template": pod(first)},
                        {"name": "worker", "replicas": 1, "template": pod(second)}]}})
                }
                Shape::JobSet => json!({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                    "metadata": {"name": cr_name}, "spec": {"replicatedJobs": [
                        {"name": "a", "template": {"spec": {"template": pod(first)}}}]}}),
            };
            if let (Some(ns), Some(map)) = (namespace, section.as_object_mut()) {
                map.insert("namespace".into(), json!(ns));
            }
            (shape, section)
        })
}

/// Additional services: a Service, a Deployment with pods, a ConfigMap, or an empty config.
fn services() -> impl Strategy<Value = Vec<Value>> {
    let name = "[a-zA-Z][a-zA-Z0-9_.-]{0,30}";
    let service = (0u8..4, name).prop_map(|(kind, name)| match kind {
        0 => json!({"name": "svc", "config": {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name}, "spec": {"ports": [{"port": 6379}]}}}),
        1 => json!({"config": {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": format!("{name}-${{run_id}}")}, "spec": {"template": {"spec": {
                "containers": [{"name": "db", "image": "redis:7", "env": [{"name": "MY_VAR", "value": "1"}]}]}}}}}),
        2 => json!({"config": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name}, "data": {"k": "${entity_name}"}}}),
        _ => json!({"name": "skipped", "config": {}}),
    });
    prop::collection::vec(service, 0..3)
}

/// Valid run specs and contexts: every one must render.
fn inputs() -> impl Strategy<Value = (Shape, Value, RenderContext)> {
    let ids = (
        "[a-z0-9]{1,12}|\\PC{1,20}",
        prop::option::of(any_text()),
        prop::option::of(any_text()),
        prop::option::of(any_text()),
    );
    (any_text(), any_text(), k8s_section(), services(), ids, any::<bool>()).prop_map(
        |(entity, project, (shape, k8s), services, (run_id, rqi, agent, release), image_in_spec)| {
            let mut spec = json!({"entity": entity, "project": project, "resource_args": {"kubernetes": k8s},
                "overrides": {"run_config": {"lr": 0.1}}, "additional_services": services});
            let mut ctx = RenderContext::new(run_id);
            if image_in_spec {
                spec["docker"] = json!({"docker_image": "repo/img:1"});
            } else {
                // A built image goes to the main container only when no container names one
                // (W&B's agent's rule), so with sidecars the main container names its own.
                ctx.image_uri = Some("registry.example/built:abc".to_owned());
                let pods = spec.pointer_mut("/resource_args/kubernetes/spec/template/spec/containers");
                if let Some(Value::Array(list)) = pods
                    && list.len() > 1
                    && list[0].get("image").is_none()
                {
                    list[0]["image"] = json!("main:1");
                }
            }
            ctx.run_queue_item_id = rqi;
            ctx.agent_name = agent.clone();
            ctx.agent_identity = agent;
            ctx.release_name = release;
            ctx.api_key = ApiKeyMode::Agent(ApiKey::new("key-0123456789"));
            (shape, spec, ctx)
        },
    )
}

fn our_labels(object: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    collect_labels(object, &mut out);
    out.retain(|(k, _)| k.starts_with("wandb.ai/") || k.starts_with("rlaunch.dev/"));
    out
}

fn collect_labels(value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(labels)) = map.get("metadata").and_then(|m| m.get("labels")) {
                for (k, v) in labels {
                    out.push((k.clone(), v.as_str().unwrap_or("<not a string>").to_owned()));
                }
            }
            map.values().for_each(|v| collect_labels(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_labels(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn valid_input_renders_with_valid_names_and_labels((shape, raw, ctx) in inputs()) {
        let spec = RunSpec::from_value(raw).expect("the generator makes valid run specs");
        let rendered = render(&spec, None, &ctx);
        prop_assert!(rendered.is_ok(), "{shape:?}: {}", rendered.err().map(|e| e.to_string()).unwrap_or_default());
        let rendered = rendered.expect("checked");
        prop_assert!(is_dns_label(&rendered.namespace));
        let workload = rendered.workload().expect("a workload");
        prop_assert_eq!(workload.api.kind == "Job" && workload.api.group == "batch",
            matches!(shape, Shape::DefaultJob | Shape::Job));
        for object in &rendered.objects {
            let metadata = &object.manifest["metadata"];
            prop_assert_eq!(metadata["namespace"].as_str(), Some(rendered.namespace.as_str()));
            if let Some(name) = metadata["name"].as_str() {
                let ok = if object.api.kind == "Job" { is_dns_label(name) } else { is_dns_subdomain(name) };
                prop_assert!(ok, "invalid name {name:?}");
            } else {
                let prefix = metadata["generateName"].as_str().expect("a name or a generateName");
                prop_assert!(prefix.len() <= 58 && is_dns_label(prefix.trim_end_matches('-')), "{prefix:?}");
            }
            for (key, value) in our_labels(&object.manifest) {
                prop_assert!(is_label_value(&value), "label {key}={value:?}");
            }
        }
    }

    #[test]
    fn equal_input_renders_equal_output((_shape, raw, ctx) in inputs()) {
        let spec = RunSpec::from_value(raw).expect("the generator makes valid run specs");
        let first = render(&spec, None, &ctx);
        let second = render(&spec.clone(), None, &ctx.clone());
        prop_assert!(first.is_ok());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn arbitrary_json_never_panics(raw in any_json(3)) {
        if let Ok(spec) = RunSpec::from_value(raw.clone()) {
            let _ = render(&spec, Some(&raw), &RenderContext::new("r"));
        }
    }
}

fn any_json(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("entity".to_owned()),
            Just("project".to_owned()),
            Just("resource_args".to_owned()),
            Just("kubernetes".to_owned()),
            Just("spec".to_owned()),
            Just("template".to_owned()),
            Just("containers".to_owned()),
            Just("metadata".to_owned()),
            Just("name".to_owned()),
            Just("apiVersion".to_owned()),
            Just("overrides".to_owned()),
            Just("args".to_owned()),
            Just("additional_services".to_owned()),
            Just("config".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn generator_covers_every_shape_and_additional_services() {
    // Guards the properties above against a generator that stops covering a path.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut shapes = Vec::new();
    let mut with_services = 0;
    for _ in 0..200 {
        let (shape, raw, _) = inputs().new_tree(&mut runner).expect("generates").current();
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
        let services = raw["additional_services"].as_array().map_or(0, Vec::len);
        with_services += usize::from(services > 0);
    }
    assert_eq!(shapes.len(), SHAPES.len(), "covered only {shapes:?}");
    assert!(
        with_services >= 50,
        "only {with_services}/200 specs have additional services"
    );
}
