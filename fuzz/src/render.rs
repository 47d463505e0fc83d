//! Properties of `rlaunch_render::render` and `validate` on arbitrary input.

use std::collections::BTreeMap;

use base64::Engine as _;
use rlaunch_model::names::{is_dns_label, is_dns_subdomain, is_label_value, label_value};
use rlaunch_model::{API_KEY_FIELD, ApiKey, RenderError, RunSpec, labels};
use rlaunch_render::{ApiKeyMode, ObjectRole, RenderContext, Rendered, render, validate};
use serde_json::Value;

/// The agent's key in the fuzzed contexts; long and unusual so that finding it in an
/// object is never a coincidence.
pub const AGENT_KEY: &str = "fuzz-agent-key-7c1e9a2b4d6f8h0j";
/// An agent environment variable the admin allowed as a macro, and its value.
pub const ALLOWED_MACRO: (&str, &str) = ("TEAM_BUCKET", "allowed-value-q8w7e6r5");

/// Roots every error path starts with: the run spec, its Kubernetes section, the queue
/// config or the additional services.
const PATH_ROOTS: &[&str] = &[
    "runSpec",
    "resource_args",
    "queue config",
    "additional_services",
    "overrides",
];

/// Runs one input: `[switches] spec-json [\0 queue-config-yaml]`.
pub fn run(data: &[u8]) {
    let Some((&switches, rest)) = data.split_first() else {
        return;
    };
    let (spec_bytes, queue_bytes) = match rest.iter().position(|&b| b == 0) {
        Some(at) => (&rest[..at], Some(&rest[at + 1..])),
        None => (rest, None),
    };
    let Ok(spec_text) = std::str::from_utf8(spec_bytes) else {
        return;
    };
    let queue_config = match queue_bytes.map(std::str::from_utf8) {
        None => None,
        Some(Err(_)) => return,
        Some(Ok(text)) => match serde_yaml_ng::from_str::<Value>(text) {
            Ok(value) => Some(value),
            Err(_) => return,
        },
    };
    let spec = match RunSpec::from_json(spec_text) {
        Ok(spec) => spec,
        Err(error) => return check_error(&error),
    };
    let ctx = context(switches);
    let input = Input {
        spec_text,
        queue_config: queue_config.as_ref(),
        ctx: &ctx,
    };
    match render(&spec, queue_config.as_ref(), &ctx) {
        Ok(rendered) => check_rendered(&input, &spec, &rendered),
        Err(error) => check_error(&error),
    }
    // `validate` is what the agent runs before acking: it must agree with the render on
    // whether the input is acceptable when the image is known.
    let validated = validate(&spec, queue_config.as_ref(), &ctx);
    if let Err(error) = &validated {
        check_error(error);
    }
}

struct Input<'a> {
    spec_text: &'a str,
    queue_config: Option<&'a Value>,
    ctx: &'a RenderContext,
}

/// The context switches: one bit each, so the seed corpus and the fuzzer reach them all.
fn context(switches: u8) -> RenderContext {
    let mut ctx = RenderContext::new(if switches & 0x80 == 0 {
        "abcd1234"
    } else {
        "Run_ID with spaces and UPPER case, longer than sixty-three characters in all"
    });
    ctx.secure_mode = switches & 0x01 != 0;
    if switches & 0x02 != 0 {
        ctx.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjEyMzQ=".to_owned());
        ctx.queue_name = Some("gpu-queue".to_owned());
        ctx.queue_entity = Some("team".to_owned());
    }
    if switches & 0x04 != 0 {
        ctx.release_name = Some("launch-agent".to_owned());
    }
    ctx.api_key = match (switches >> 3) & 0x03 {
        1 => ApiKeyMode::Placeholder,
        2 => ApiKeyMode::None,
        _ => ApiKeyMode::Agent(ApiKey::new(AGENT_KEY)),
    };
    if switches & 0x20 != 0 {
        ctx.image_uri = Some("registry.example/built:abc".to_owned());
    }
    if switches & 0x40 != 0 {
        ctx.agent_name = Some("agent-7".to_owned());
        ctx.agent_identity = Some("release.namespace".to_owned());
        ctx.gpu = rlaunch_gpu::GpuRequest::parse("2xA100").ok();
    }
    ctx.macro_env = BTreeMap::from([(ALLOWED_MACRO.0.to_owned(), ALLOWED_MACRO.1.to_owned())]);
    ctx
}

/// An error names a field path, what is wrong and what to do, for every problem.
pub fn check_error(error: &RenderError) {
    assert!(!error.problems.is_empty(), "an error without problems");
    for problem in &error.problems {
        let path = problem.path.as_str();
        assert!(
            PATH_ROOTS.iter().any(|root| path.starts_with(root)),
            "error path {path:?} names no field of the input ({problem})"
        );
        assert!(
            !problem.problem.trim().is_empty(),
            "no problem text: {problem}"
        );
        assert!(!problem.fix.trim().is_empty(), "no fix: {problem}");
    }
}

fn check_rendered(input: &Input<'_>, spec: &RunSpec, rendered: &Rendered) {
    assert!(
        is_dns_label(&rendered.namespace),
        "namespace {:?}",
        rendered.namespace
    );
    assert!(rendered.workload().is_some(), "a render without a workload");
    let run_label = label_value(&input.ctx.run_id);
    let texts: Vec<String> = rendered
        .objects
        .iter()
        .map(|o| o.manifest.to_string())
        .collect();
    for (object, text) in rendered.objects.iter().zip(&texts) {
        check_names(object, &rendered.namespace, text);
        for (key, value) in our_labels(&object.manifest) {
            assert!(is_label_value(&value), "label {key}={value:?} in {text}");
        }
        let shared = matches!(object.role, ObjectRole::ApiKeySecret { shared: true });
        let labels = &object.manifest["metadata"]["labels"];
        if shared {
            assert_eq!(
                labels[labels::CREATED_BY],
                labels::CREATED_BY_VALUE,
                "{text}"
            );
        } else {
            assert_eq!(
                labels[labels::RUN_ID],
                run_label.as_str(),
                "run label missing: {text}"
            );
        }
    }
    if let Some(workload) = rendered.workload() {
        check_pod_labels(&workload.manifest, &run_label);
    }
    check_api_key(input, spec, rendered, &texts);
    check_env(input, rendered, &texts);
}

fn check_names(object: &rlaunch_render::RenderedObject, namespace: &str, text: &str) {
    let metadata = &object.manifest["metadata"];
    assert_eq!(metadata["namespace"].as_str(), Some(namespace), "{text}");
    match metadata["name"].as_str() {
        Some(name) => {
            let valid = if object.api.kind == "Job" && object.api.group == "batch" {
                is_dns_label(name)
            } else {
                is_dns_subdomain(name)
            };
            assert!(valid, "invalid name {name:?} of a {}", object.api.kind);
        }
        None => {
            let prefix = metadata["generateName"].as_str();
            let prefix = prefix.unwrap_or_else(|| panic!("no name and no generateName: {text}"));
            assert!(
                prefix.len() <= 58 && is_dns_label(prefix.trim_end_matches('-')),
                "invalid generateName {prefix:?}"
            );
        }
    }
}

/// Every pod template of the workload carries the run's label (the monitor selects on it).
fn check_pod_labels(value: &Value, run_label: &str) {
    match value {
        Value::Object(map) => {
            if let Some(template) = map.get("template")
                && template.pointer("/spec/containers").is_some_and(Value::is_array)
            {
                let label = template.pointer("/metadata/labels/wandb.ai~1run-id");
                assert_eq!(
                    label.and_then(Value::as_str),
                    Some(run_label),
                    "a pod template without the run label: {template}"
                );
            }
            map.values().for_each(|v| check_pod_labels(v, run_label));
        }
        Value::Array(items) => items.iter().for_each(|v| check_pod_labels(v, run_label)),
        _ => {}
    }
}

/// The key reaches the cluster only as the Secret's `data.password`: no other object holds
/// it, neither as text nor base64-encoded. Without an agent key, no object holds any key.
fn check_api_key(input: &Input<'_>, spec: &RunSpec, rendered: &Rendered, texts: &[String]) {
    let agent_key = match &input.ctx.api_key {
        ApiKeyMode::Agent(key) => Some(key.expose().to_owned()),
        ApiKeyMode::Placeholder | ApiKeyMode::None => None,
    };
    let spec_key = spec.api_key.as_ref().map(|key| key.expose().to_owned());
    let mut keys: Vec<String> = agent_key.iter().chain(spec_key.iter()).cloned().collect();
    // A key the input also writes elsewhere (or one so short it is everywhere) is the user's
    // text, not a leak.
    keys.retain(|key| key.len() >= 8);
    if !keys.is_empty() {
        let elsewhere = Elsewhere::new(input);
        keys.retain(|key| !elsewhere.mentions(key));
    }
    let effective = match &input.ctx.api_key {
        ApiKeyMode::Agent(_) => spec_key.or(agent_key).filter(|key| !key.is_empty()),
        ApiKeyMode::Placeholder | ApiKeyMode::None => None,
    };
    let mut secrets = 0;
    for (object, text) in rendered.objects.iter().zip(texts) {
        if let ObjectRole::ApiKeySecret { .. } = object.role {
            secrets += 1;
            if let Some(key) = &effective {
                let stored = object
                    .manifest
                    .pointer("/data/password")
                    .and_then(Value::as_str);
                assert_eq!(
                    stored,
                    Some(encode(key).as_str()),
                    "the Secret does not hold the key"
                );
                let mut rest = object.manifest.clone();
                if let Some(data) = rest.get_mut("data") {
                    *data = Value::Null;
                }
                assert_no_key(&rest.to_string(), &keys, "the Secret outside `data`");
                continue;
            }
        }
        assert_no_key(text, &keys, &object.api.kind);
    }
    let expected = usize::from(match &input.ctx.api_key {
        ApiKeyMode::Agent(_) => effective.is_some(),
        ApiKeyMode::Placeholder => true,
        ApiKeyMode::None => false,
    });
    assert_eq!(secrets, expected, "API-key Secrets rendered");
}

fn assert_no_key(text: &str, keys: &[String], what: &str) {
    for key in keys {
        assert!(!mentions(text, key), "{what} holds the API key: {text}");
    }
}

/// `text` (JSON) holds `key` as text or base64-encoded (standard or URL-safe, padded or not).
fn mentions(text: &str, key: &str) -> bool {
    let escaped = Value::String(key.to_owned()).to_string();
    let escaped = &escaped[1..escaped.len() - 1];
    let standard = encode(key);
    let url_safe = base64::engine::general_purpose::URL_SAFE.encode(key);
    text.contains(key)
        || text.contains(escaped)
        || text.contains(standard.trim_end_matches('='))
        || text.contains(url_safe.trim_end_matches('='))
}

/// The input besides the key field, as JSON text and normalised the way the render makes
/// names and labels (lower case, other characters as `-`): a key the input also writes
/// there is the user's text, not a leak.
struct Elsewhere {
    text: String,
    normalised: String,
}

impl Elsewhere {
    fn new(input: &Input<'_>) -> Self {
        let mut spec: Value = serde_json::from_str(input.spec_text).unwrap_or(Value::Null);
        if let Some(map) = spec.as_object_mut() {
            map.remove(API_KEY_FIELD);
        }
        let queue = input.queue_config.map(Value::to_string).unwrap_or_default();
        let text = format!("{spec}\n{queue}");
        let normalised = normalise(&text);
        Self { text, normalised }
    }

    fn mentions(&self, key: &str) -> bool {
        mentions(&self.text, key) || self.normalised.contains(&normalise(key))
    }
}

fn normalise(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn encode(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Containers get the env vars the input wrote and the `WANDB_*` ones the agent sets, never
/// another variable of the agent's environment; an allow-listed macro's value appears only
/// where the input asked for it.
fn check_env(input: &Input<'_>, rendered: &Rendered, texts: &[String]) {
    let mut strings = Vec::new();
    let spec: Value = serde_json::from_str(input.spec_text).unwrap_or(Value::Null);
    input_strings(&spec, &mut strings);
    if let Some(queue) = input.queue_config {
        input_strings(queue, &mut strings);
    }
    let written = |text: &str| strings.iter().any(|s| s.contains(text));
    let asked = format!("${{{}}}", ALLOWED_MACRO.0);
    let value_may_appear = written(ALLOWED_MACRO.1) || written(&asked);
    // A name written with a macro (`${run_id}`) is expanded; it is still the input's.
    let has_macros = written("${");
    for (object, text) in rendered.objects.iter().zip(texts) {
        let mut names = Vec::new();
        env_names(&object.manifest, &mut names);
        for name in names {
            assert!(
                name.starts_with("WANDB_") || strings.contains(&name) || has_macros,
                "env var {name:?} was neither written in the input nor set by the agent"
            );
        }
        if !value_may_appear {
            assert!(
                !text.contains(ALLOWED_MACRO.1),
                "macro value without `{asked}`: {text}"
            );
        }
    }
}

/// Every key and string value of `value`.
fn input_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) => out.push(text.clone()),
        Value::Object(map) => {
            for (key, value) in map {
                out.push(key.clone());
                input_strings(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| input_strings(v, out)),
        _ => {}
    }
}

fn env_names(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(env)) = map.get("env")
                && map.contains_key("image")
            {
                out.extend(
                    env.iter()
                        .filter_map(|e| e["name"].as_str().map(str::to_owned)),
                );
            }
            map.values().for_each(|v| env_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| env_names(v, out)),
        _ => {}
    }
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
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    out.push((k.clone(), text));
                }
            }
            map.values().for_each(|v| collect_labels(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_labels(v, out)),
        _ => {}
    }
}
