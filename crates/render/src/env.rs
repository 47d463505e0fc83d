//! The `WANDB_*` environment variables given to workload containers, in W&B's agent's order.

use serde_json::{Map, Value};

use rlaunch_model::RunSpec;

/// Longest value of one JSON env var; longer JSON is split into `<NAME>_0`, `<NAME>_1`, …
const MAX_ENV_CHUNK: usize = 32_670;

/// How `WANDB_API_KEY` reaches the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiKeyEnv {
    /// `valueFrom.secretKeyRef` to the `password` key of this Secret.
    FromSecret(String),
    /// Not set at all.
    Absent,
}

/// Inputs of the env block that do not come from the run spec.
#[derive(Clone, Debug)]
pub(crate) struct EnvInputs<'a> {
    /// `WANDB_BASE_URL`.
    pub(crate) base_url: &'a str,
    /// `WANDB_API_KEY`.
    pub(crate) api_key: ApiKeyEnv,
    /// `WANDB_RUN_ID`.
    pub(crate) run_id: &'a str,
    /// `WANDB_DOCKER` (only for image sources).
    pub(crate) docker_image: Option<&'a str>,
    /// `WANDB_LAUNCH_QUEUE_NAME`.
    pub(crate) queue_name: Option<&'a str>,
    /// `WANDB_LAUNCH_QUEUE_ENTITY`.
    pub(crate) queue_entity: Option<&'a str>,
    /// `WANDB_LAUNCH_TRACE_ID` (the run queue item id).
    pub(crate) trace_id: Option<&'a str>,
    /// The run spec's JSON values as env entries, serialized once per render rather than
    /// once per container (a run config can be tens of kilobytes).
    pub(crate) json: JsonEnv,
}

/// `WANDB_CONFIG`, `WANDB_LAUNCH_FILE_OVERRIDES` (both chunked when long) and
/// `WANDB_ARTIFACTS` as (name, value) pairs, serialized once and turned into each
/// container's env entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct JsonEnv {
    /// `WANDB_CONFIG` or its chunks; additional services get only these.
    config: Vec<(String, String)>,
    /// `WANDB_LAUNCH_FILE_OVERRIDES` (or its chunks), then `WANDB_ARTIFACTS`.
    rest: Vec<(String, String)>,
}

impl JsonEnv {
    /// Serializes the run spec's run config, file overrides and artifacts.
    pub(crate) fn new(spec: &RunSpec) -> Self {
        let empty = Value::Object(Map::new());
        let mut config = Vec::new();
        push_json_env(
            &mut config,
            "WANDB_CONFIG",
            spec.overrides.run_config.as_ref().unwrap_or(&empty),
        );
        let mut rest = Vec::new();
        push_json_env(
            &mut rest,
            "WANDB_LAUNCH_FILE_OVERRIDES",
            spec.overrides.files.as_ref().unwrap_or(&empty),
        );
        let mut artifacts = Map::new();
        if let Some(job) = &spec.job {
            artifacts.insert("_wandb_job".to_owned(), Value::String(job.clone()));
        }
        if let Some(extra) = &spec.overrides.artifacts {
            artifacts.extend(extra.clone());
        }
        rest.push((
            "WANDB_ARTIFACTS".to_owned(),
            compact(&Value::Object(artifacts)),
        ));
        Self { config, rest }
    }

    /// The `WANDB_CONFIG` entries (one, or its chunks).
    pub(crate) fn config_entries(&self) -> impl Iterator<Item = Value> + '_ {
        self.config.iter().map(|(name, value)| plain(name, value))
    }

    /// The file-override and artifact entries.
    fn rest_entries(&self) -> impl Iterator<Item = Value> + '_ {
        self.rest.iter().map(|(name, value)| plain(name, value))
    }

    fn len(&self) -> usize {
        self.config.len() + self.rest.len()
    }
}

/// `{name, value}`, built directly (`json!` serializes each value through serde).
fn plain(name: &str, value: &str) -> Value {
    let mut entry = Map::new();
    entry.insert("name".to_owned(), Value::String(name.to_owned()));
    entry.insert("value".to_owned(), Value::String(value.to_owned()));
    Value::Object(entry)
}

/// `WANDB_API_KEY` from the `password` key of the Secret `secret`.
pub(crate) fn api_key_entry(secret: &str) -> Value {
    let key_ref = object([("name", str_value(secret)), ("key", str_value("password"))]);
    let value_from = object([("secretKeyRef", key_ref)]);
    object([
        ("name", str_value("WANDB_API_KEY")),
        ("valueFrom", value_from),
    ])
}

/// An object of a few entries, built directly (`json!` serializes each value through serde).
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in entries {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

fn str_value(text: &str) -> Value {
    Value::String(text.to_owned())
}

/// `value` as compact JSON, the text its `Display` writes, without going through the
/// formatting machinery (the run config can be tens of kilobytes).
fn compact(value: &Value) -> String {
    // Serializing a `Value` cannot fail (its keys are strings); the fallback is the same text.
    serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Adds `name` (or its chunks when the JSON is longer than [`MAX_ENV_CHUNK`]) to `env`.
fn push_json_env(env: &mut Vec<(String, String)>, name: &str, value: &Value) {
    let text = compact(value);
    // The byte length bounds the character count, so short values skip the count.
    if text.len() <= MAX_ENV_CHUNK || text.chars().count() <= MAX_ENV_CHUNK {
        env.push((name.to_owned(), text));
        return;
    }
    let mut rest = text.as_str();
    let mut index = 0;
    while !rest.is_empty() {
        let end = rest
            .char_indices()
            .nth(MAX_ENV_CHUNK)
            .map_or(rest.len(), |(at, _)| at);
        let (chunk, tail) = rest.split_at(end);
        env.push((format!("{name}_{index}"), chunk.to_owned()));
        rest = tail;
        index += 1;
    }
}

/// The W&B env block. `WANDB_USERNAME` is set only when the run has no key of its own;
/// `include_run_id` is false for the non-first containers of a custom resource, as in W&B's
/// agent.
pub(crate) fn wandb_env(
    spec: &RunSpec,
    inputs: &EnvInputs<'_>,
    include_run_id: bool,
) -> Vec<Value> {
    // Fourteen named variables at most, then the JSON ones.
    let mut env = Vec::with_capacity(14 + inputs.json.len());
    env.push(plain("WANDB_BASE_URL", inputs.base_url));
    if let ApiKeyEnv::FromSecret(secret) = &inputs.api_key {
        env.push(api_key_entry(secret));
    }
    if !spec.project.is_empty() {
        env.push(plain("WANDB_PROJECT", &spec.project));
    }
    env.push(plain("WANDB_ENTITY", &spec.entity));
    env.push(plain("WANDB_LAUNCH", "True"));
    if include_run_id {
        env.push(plain("WANDB_RUN_ID", inputs.run_id));
    }
    if let Some(image) = inputs.docker_image {
        env.push(plain("WANDB_DOCKER", image));
    }
    if let Some(name) = &spec.name {
        env.push(plain("WANDB_NAME", name));
    }
    if let (Some(author), None) = (&spec.author, &spec.api_key) {
        env.push(plain("WANDB_USERNAME", author));
    }
    if let Some(sweep) = &spec.sweep_id {
        env.push(plain("WANDB_SWEEP_ID", sweep));
    }
    if spec.resume_count > 0 {
        env.push(plain("WANDB_RESUME", "allow"));
    }
    if let Some(queue) = inputs.queue_name {
        env.push(plain("WANDB_LAUNCH_QUEUE_NAME", queue));
    }
    if let Some(entity) = inputs.queue_entity {
        env.push(plain("WANDB_LAUNCH_QUEUE_ENTITY", entity));
    }
    if let Some(trace) = inputs.trace_id {
        env.push(plain("WANDB_LAUNCH_TRACE_ID", trace));
    }
    env.extend(inputs.json.config_entries());
    env.extend(inputs.json.rest_entries());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs(spec: &RunSpec) -> EnvInputs<'static> {
        EnvInputs {
            base_url: "https://api.wandb.ai",
            api_key: ApiKeyEnv::FromSecret("wandb-api-key-r1".into()),
            run_id: "r1",
            docker_image: None,
            queue_name: Some("q"),
            queue_entity: Some("agent-ent"),
            trace_id: Some("rqi-1"),
            json: JsonEnv::new(spec),
        }
    }

    fn names(env: &[Value]) -> Vec<&str> {
        env.iter().filter_map(|e| e["name"].as_str()).collect()
    }

    #[test]
    fn username_only_without_a_per_run_key_and_resume_only_after_requeue() {
        let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "author": "ann",
            "_resume_count": 1, "job": "e/p/job:v1", "overrides": {"artifacts": {"a": "b"}}}))
        .unwrap();
        let env = wandb_env(&spec, &inputs(&spec), true);
        assert!(names(&env).contains(&"WANDB_USERNAME"));
        assert!(names(&env).contains(&"WANDB_RESUME"));
        let artifacts = env.iter().find(|e| e["name"] == "WANDB_ARTIFACTS").unwrap();
        assert_eq!(artifacts["value"], r#"{"_wandb_job":"e/p/job:v1","a":"b"}"#);

        let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "author": "ann",
            "_wandb_api_key": "k"}))
        .unwrap();
        let env = wandb_env(&spec, &inputs(&spec), false);
        assert!(!names(&env).contains(&"WANDB_USERNAME"));
        assert!(!names(&env).contains(&"WANDB_RUN_ID"));
        assert!(!names(&env).contains(&"WANDB_RESUME"));
    }

    #[test]
    fn an_empty_per_run_key_does_not_hide_the_username() {
        let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "author": "ann",
            "_wandb_api_key": ""}))
        .unwrap();
        let env = wandb_env(&spec, &inputs(&spec), true);
        let username = env.iter().find(|e| e["name"] == "WANDB_USERNAME");
        assert_eq!(username.map(|e| &e["value"]), Some(&json!("ann")));
    }

    #[test]
    fn long_json_is_chunked_at_32670_characters() {
        let big = "x".repeat(MAX_ENV_CHUNK + 10);
        let spec = RunSpec::from_value(json!({"entity": "e", "project": "p",
            "overrides": {"run_config": {"blob": big}}}))
        .unwrap();
        let env = wandb_env(&spec, &inputs(&spec), true);
        let chunks: Vec<_> = env
            .iter()
            .filter(|e| {
                e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("WANDB_CONFIG"))
            })
            .collect();
        assert_eq!(
            names(&env).iter().filter(|n| **n == "WANDB_CONFIG").count(),
            0
        );
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0]["name"], "WANDB_CONFIG_0");
        assert_eq!(
            chunks[0]["value"].as_str().unwrap().chars().count(),
            MAX_ENV_CHUNK
        );
        let joined = format!(
            "{}{}",
            chunks[0]["value"].as_str().unwrap(),
            chunks[1]["value"].as_str().unwrap()
        );
        assert_eq!(
            serde_json::from_str::<Value>(&joined).unwrap()["blob"]
                .as_str()
                .unwrap()
                .len(),
            MAX_ENV_CHUNK + 10
        );
    }
}
