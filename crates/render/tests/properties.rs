//! Property tests over generated run specs: rendering never panics, every name and label the
//! agent generates is valid for Kubernetes, and equal input renders equal output.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rlaunch_model::names::{is_dns_label, is_dns_subdomain, is_label_value};
use rlaunch_model::{ApiKey, RunSpec};
use rlaunch_render::{ApiKeyMode, RenderContext, render};
use serde_json::{Value, json};

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.\\- ]{0,80}",
        "\\PC{0,40}",
        Just(String::new()),
        Just("Team42".to_owned()),
    ]
}

fn k8s_section() -> impl Strategy<Value = Value> {
    let containers = prop::collection::vec(
        prop_oneof![
            Just(json!({})),
            Just(json!({"name": "main", "image": "img:1"})),
            Just(json!({"image": "side:2", "args": ["x"]})),
            Just(json!({"env": [{"name": "A", "value": "${run_id}"}]})),
        ],
        0..4,
    );
    (containers, 0u8..8, any_text(), prop::option::of("[a-z0-9-]{1,20}"))
        .prop_map(|(containers, shape, text, ns)| {
            let pod = json!({"spec": {"template": {"spec": {"containers": containers.clone()}}}});
            let mut section = match shape {
                0 => json!({}),
                1 | 5 | 6 | 7 => pod,
                2 => json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp-${run_id}"},
                    "spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": {"containers": containers}}}}}}),
                3 => json!({"metadata": {"name": text}}),
                _ => json!({"apiVersion": text, "kind": "X", "metadata": {"name": "x"}}),
            };
            if let (Some(ns), Some(map)) = (ns, section.as_object_mut()) {
                map.insert("namespace".into(), json!(ns));
            }
            section
        })
}

fn inputs() -> impl Strategy<Value = (Value, RenderContext)> {
    (
        "[a-zA-Z0-9_.\\- ]{1,80}|\\PC{1,40}",
        "[a-zA-Z0-9_.\\- ]{1,80}|\\PC{1,40}",
        k8s_section(),
        "[a-z0-9]{1,12}|\\PC{1,20}",
        prop::option::of(any_text()),
        prop::option::of(any_text()),
        prop::option::of(any_text()),
        any::<bool>(),
    )
        .prop_map(|(entity, project, k8s, run_id, rqi, agent, release, with_image)| {
            let mut spec = json!({"entity": entity, "project": project, "resource_args": {"kubernetes": k8s},
                "overrides": {"run_config": {"lr": 0.1}}});
            if with_image {
                spec["docker"] = json!({"docker_image": "repo/img:1"});
            }
            let mut ctx = RenderContext::new(run_id);
            ctx.run_queue_item_id = rqi;
            ctx.agent_name = agent.clone();
            ctx.agent_identity = agent;
            ctx.release_name = release;
            ctx.api_key = ApiKeyMode::Agent(ApiKey::new("key-0123456789"));
            (spec, ctx)
        })
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
    fn render_never_panics_and_generated_names_are_valid((raw, ctx) in inputs()) {
        let Ok(spec) = RunSpec::from_value(raw) else { return Ok(()); };
        let Ok(rendered) = render(&spec, None, &ctx) else { return Ok(()); };
        prop_assert!(is_dns_label(&rendered.namespace));
        for object in &rendered.objects {
            let metadata = &object.manifest["metadata"];
            if let Some(name) = metadata["name"].as_str() {
                let ok = if object.api.kind == "Job" { is_dns_label(name) } else { is_dns_subdomain(name) };
                prop_assert!(ok, "invalid name {name:?}");
            }
            if let Some(prefix) = metadata["generateName"].as_str() {
                prop_assert!(prefix.len() <= 58 && is_dns_label(prefix.trim_end_matches('-')), "{prefix:?}");
            }
            for (key, value) in our_labels(&object.manifest) {
                prop_assert!(is_label_value(&value), "label {key}={value:?}");
            }
        }
    }

    #[test]
    fn equal_input_renders_equal_output((raw, ctx) in inputs()) {
        let Ok(spec) = RunSpec::from_value(raw) else { return Ok(()); };
        let first = render(&spec, None, &ctx);
        let second = render(&spec.clone(), None, &ctx.clone());
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
fn generator_mostly_produces_renderable_specs() {
    // Guards the properties above against a generator that only makes invalid input.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut rendered = 0;
    for _ in 0..200 {
        let (raw, ctx) = inputs().new_tree(&mut runner).expect("generates").current();
        if let Ok(spec) = RunSpec::from_value(raw) {
            rendered += usize::from(render(&spec, None, &ctx).is_ok());
        }
    }
    assert!(rendered >= 60, "only {rendered}/200 generated specs render");
}
