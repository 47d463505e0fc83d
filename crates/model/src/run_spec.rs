//! The `runSpec` document W&B attaches to a run queue item, parsed into typed fields while
//! keeping the original JSON so that it round-trips byte-for-byte through serde.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::api_key::ApiKey;
use crate::error::{FieldError, RenderError};

/// Key under which W&B carries a per-run API key. Never logged.
pub const API_KEY_FIELD: &str = "_wandb_api_key";

/// The `uri` W&B gives a sweep scheduler's run spec.
pub const SCHEDULER_URI: &str = "placeholder-uri-scheduler";

/// A run spec as popped from a queue: typed accessors over the exact JSON object W&B sent.
///
/// Unknown fields are kept (serialisation writes the original object back), so the agent can
/// requeue or store a spec without losing what a newer server added. `Debug` redacts
/// `_wandb_api_key`.
#[derive(Clone, PartialEq)]
pub struct RunSpec {
    raw: Map<String, Value>,
    /// Target entity of the run.
    pub entity: String,
    /// Target project, lower-cased as W&B's agent does.
    pub project: String,
    /// `entity/project/name:alias` of the job artifact, when the run comes from a job.
    pub job: Option<String>,
    /// Legacy URI; [`SCHEDULER_URI`] marks a sweep scheduler.
    pub uri: Option<String>,
    /// The image to run directly (`docker.docker_image`, else `image_uri`).
    pub docker_image: Option<String>,
    /// Run display name.
    pub name: Option<String>,
    /// Submitting user.
    pub author: Option<String>,
    /// Pre-assigned run id.
    pub run_id: Option<String>,
    /// Sweep membership.
    pub sweep_id: Option<String>,
    /// Target resource (`kubernetes`, …). Defaults to `local-container` as in W&B's agent.
    pub resource: String,
    /// `resource_args` (per-resource sections), an object.
    pub resource_args: Map<String, Value>,
    /// `overrides.*` fields the renderer reads.
    pub overrides: Overrides,
    /// `additional_services[*]` (auxiliary objects created before the workload).
    pub additional_services: Vec<AdditionalService>,
    /// Per-run API key given to the workload instead of the agent's; `None` when the field is
    /// absent, null or the empty string.
    pub api_key: Option<ApiKey>,
    /// Preemption requeue counter; > 0 sets `WANDB_RESUME=allow`.
    pub resume_count: u64,
}

/// The `overrides` block of a run spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Replaces the main container's `args`.
    pub args: Vec<String>,
    /// Replaces the main container's `command`.
    pub entry_point: Option<Vec<String>>,
    /// Becomes `WANDB_CONFIG`.
    pub run_config: Option<Value>,
    /// Merged into `WANDB_ARTIFACTS`.
    pub artifacts: Option<Map<String, Value>>,
    /// Becomes `WANDB_LAUNCH_FILE_OVERRIDES`.
    pub files: Option<Value>,
    /// Sub-directory of `/mnt/wandb` used as the working dir of base-image jobs.
    pub working_dir: Option<String>,
    /// Dockerfile to build with, relative to the job's code root (wins over the job's own).
    pub dockerfile: Option<String>,
}

/// One entry of `additional_services`.
#[derive(Clone, Debug, PartialEq)]
pub struct AdditionalService {
    /// Free-form name the submitter gave it.
    pub name: Option<String>,
    /// The Kubernetes object to create (may be empty, then it is skipped).
    pub config: Map<String, Value>,
}

impl RunSpec {
    /// Parses a run spec, collecting every malformed field (path, problem, fix) instead of
    /// stopping at the first one.
    pub fn from_value(value: Value) -> Result<Self, RenderError> {
        let Value::Object(raw) = value else {
            return Err(RenderError::one(FieldError::new(
                "runSpec",
                format!("must be a JSON object, found {}", json_kind(&value)),
                "pass the `runSpec` object exactly as popFromRunQueue returns it",
            )));
        };
        let mut errors = Vec::new();
        let mut p = Parser {
            raw: &raw,
            errors: &mut errors,
        };

        let entity = p.required_string("entity");
        let project = p.required_string("project").to_lowercase();
        let job = p.opt_string("job");
        let uri = p.opt_string("uri");
        let docker_image = p
            .opt_nested_string("docker", "docker_image")
            .or_else(|| p.opt_string("image_uri"));
        let name = p.opt_string("name");
        let author = p.opt_string("author");
        let run_id = p.opt_string("run_id");
        let sweep_id = p.opt_string("sweep_id");
        let resource = p
            .opt_string("resource")
            .unwrap_or_else(|| "local-container".to_owned());
        let resource_args = p.opt_object("resource_args").unwrap_or_default();
        let overrides = p.overrides();
        let additional_services = p.additional_services();
        // An empty key is no key, as W&B's agent reads it (a falsy value).
        let api_key = p
            .opt_string(API_KEY_FIELD)
            .filter(|key| !key.is_empty())
            .map(ApiKey::new);
        let resume_count = p.resume_count();

        if !errors.is_empty() {
            return Err(RenderError::many(errors));
        }
        Ok(Self {
            raw,
            entity,
            project,
            job,
            uri,
            docker_image,
            name,
            author,
            run_id,
            sweep_id,
            resource,
            resource_args,
            overrides,
            additional_services,
            api_key,
            resume_count,
        })
    }

    /// Parses a run spec from JSON text.
    pub fn from_json(text: &str) -> Result<Self, RenderError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            RenderError::one(FieldError::new(
                format!("runSpec (line {}, column {})", e.line(), e.column()),
                format!("is not valid JSON: {e}"),
                "fix the JSON syntax at that position",
            ))
        })?;
        Self::from_value(value)
    }

    /// The original JSON object, unchanged (including unknown fields and the API key).
    pub fn as_raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The original JSON with `_wandb_api_key` replaced by `[redacted]`, for logs and messages.
    pub fn redacted(&self) -> Value {
        let mut copy = self.raw.clone();
        if copy.contains_key(API_KEY_FIELD) {
            copy.insert(API_KEY_FIELD.to_owned(), Value::String("[redacted]".into()));
        }
        Value::Object(copy)
    }

    /// True when the spec is a sweep scheduler: its `uri` is exactly [`SCHEDULER_URI`].
    pub fn is_scheduler(&self) -> bool {
        self.uri.as_deref() == Some(SCHEDULER_URI)
    }
}

impl fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RunSpec").field(&self.redacted()).finish()
    }
}

impl Serialize for RunSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RunSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// How a JSON value is described in messages ("a string", "an object", …).
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

struct Parser<'a> {
    raw: &'a Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl Parser<'_> {
    fn required_string(&mut self, key: &str) -> String {
        match self.raw.get(key) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.errors.push(FieldError::new(
                    format!("runSpec.{key}"),
                    "is required",
                    format!("set `{key}` to the target {key} of the run"),
                ));
                String::new()
            }
            Some(other) => {
                self.errors.push(FieldError::new(
                    format!("runSpec.{key}"),
                    format!("must be a string, found {}", json_kind(other)),
                    format!("set `{key}` to the target {key} of the run"),
                ));
                String::new()
            }
        }
    }

    fn resume_count(&mut self) -> u64 {
        match self.raw.get("_resume_count") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(other) => {
                self.errors.push(FieldError::new(
                    "runSpec._resume_count",
                    format!("must be a non-negative integer, found {}", json_kind(other)),
                    "remove the field or set it to a number",
                ));
                0
            }
        }
    }

    fn string_at(&mut self, path: &str, value: Option<&Value>) -> Option<String> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // Numbers are accepted where a string is expected (an entity or run id that
            // happens to be numeric); W&B's agent stringifies them too.
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.errors.push(FieldError::new(
                    path,
                    format!("must be a string, found {}", json_kind(other)),
                    "set it to a string or remove it",
                ));
                None
            }
        }
    }

    fn opt_string(&mut self, key: &str) -> Option<String> {
        let raw = self.raw;
        self.string_at(&format!("runSpec.{key}"), raw.get(key))
    }

    fn opt_nested_string(&mut self, outer: &str, key: &str) -> Option<String> {
        let raw = self.raw;
        match raw.get(outer) {
            Some(Value::Object(inner)) => {
                self.string_at(&format!("runSpec.{outer}.{key}"), inner.get(key))
            }
            _ => None,
        }
    }

    fn opt_object(&mut self, key: &str) -> Option<Map<String, Value>> {
        match self.raw.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map.clone()),
            Some(other) => {
                self.errors.push(FieldError::new(
                    format!("runSpec.{key}"),
                    format!("must be a dictionary, found {}", json_kind(other)),
                    format!("make `{key}` an object such as {{\"kubernetes\": {{...}}}}"),
                ));
                None
            }
        }
    }

    fn string_list(&mut self, path: &str, value: Option<&Value>) -> Option<Vec<String>> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(n) => out.push(n.to_string()),
                        Value::Bool(b) => out.push(b.to_string()),
                        other => self.errors.push(FieldError::new(
                            format!("{path}[{i}]"),
                            format!("must be a string, found {}", json_kind(other)),
                            "quote each argument as a string",
                        )),
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.errors.push(FieldError::new(
                    path,
                    format!("must be a list of strings, found {}", json_kind(other)),
                    "write it as a list, e.g. [\"python\", \"train.py\"]",
                ));
                None
            }
        }
    }

    fn overrides(&mut self) -> Overrides {
        let raw = self.raw;
        let overrides = match raw.get("overrides") {
            None | Some(Value::Null) => return Overrides::default(),
            Some(Value::Object(o)) => o,
            Some(other) => {
                self.errors.push(FieldError::new(
                    "runSpec.overrides",
                    format!("must be an object, found {}", json_kind(other)),
                    "make `overrides` an object with args, entry_point, run_config…",
                ));
                return Overrides::default();
            }
        };
        let args = self
            .string_list("runSpec.overrides.args", overrides.get("args"))
            .unwrap_or_default();
        let entry_point = self
            .string_list(
                "runSpec.overrides.entry_point",
                overrides.get("entry_point"),
            )
            .filter(|e| !e.is_empty());
        let run_config = overrides
            .get("run_config")
            .filter(|v| !v.is_null())
            .cloned();
        let artifacts = match overrides.get("artifacts") {
            None | Some(Value::Null) => None,
            Some(Value::Object(a)) => Some(a.clone()),
            Some(other) => {
                self.errors.push(FieldError::new(
                    "runSpec.overrides.artifacts",
                    format!("must be an object, found {}", json_kind(other)),
                    "map artifact names to artifact paths",
                ));
                None
            }
        };
        let files = overrides.get("files").filter(|v| !v.is_null()).cloned();
        let working_dir = self.string_at(
            "runSpec.overrides.working_dir",
            overrides.get("working_dir"),
        );
        let dockerfile =
            self.string_at("runSpec.overrides.dockerfile", overrides.get("dockerfile"));
        Overrides {
            args,
            entry_point,
            run_config,
            artifacts,
            files,
            working_dir,
            dockerfile,
        }
    }

    fn additional_services(&mut self) -> Vec<AdditionalService> {
        let raw = self.raw;
        let items = match raw.get("additional_services") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.errors.push(FieldError::new(
                    "runSpec.additional_services",
                    format!("must be a list, found {}", json_kind(other)),
                    "write it as a list of {name, config} objects",
                ));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("runSpec.additional_services[{i}]");
            let Value::Object(item) = item else {
                self.errors.push(FieldError::new(
                    &path,
                    format!("must be an object, found {}", json_kind(item)),
                    "write each service as {name, config}",
                ));
                continue;
            };
            let name = self.string_at(&format!("{path}.name"), item.get("name"));
            let config = match item.get("config") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(c)) => c.clone(),
                Some(other) => {
                    self.errors.push(FieldError::new(
                        format!("{path}.config"),
                        format!("must be a Kubernetes object, found {}", json_kind(other)),
                        "put the manifest (apiVersion, kind, metadata, spec) under `config`",
                    ));
                    Map::new()
                }
            };
            out.push(AdditionalService { name, config });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_unknown_fields_exactly() {
        let value = json!({
            "entity": "team42", "project": "My-Proj", "docker": {"docker_image": "img:1", "x": 1},
            "future_field": {"nested": [1, 2, null]}, "name": null,
            "_wandb_api_key": "secret-key-value"
        });
        let spec = RunSpec::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), value);
        assert_eq!(spec.project, "my-proj");
        assert_eq!(spec.docker_image.as_deref(), Some("img:1"));
    }

    #[test]
    fn debug_redacts_the_api_key() {
        let spec = RunSpec::from_value(
            json!({"entity": "e", "project": "p", "_wandb_api_key": "secret-key-value"}),
        )
        .unwrap();
        let debug = format!("{spec:?}");
        assert!(!debug.contains("secret-key-value"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn only_the_exact_scheduler_uri_marks_a_scheduler() {
        let uri = |uri: &str| {
            RunSpec::from_value(json!({"entity": "e", "project": "p", "uri": uri}))
                .unwrap()
                .is_scheduler()
        };
        assert!(uri("placeholder-uri-scheduler"));
        assert!(!uri("placeholder-uri-queued-run"));
        assert!(!uri("placeholder"));
        assert!(!uri("https://github.com/org/repo"));
    }

    #[test]
    fn an_empty_api_key_is_no_key() {
        let spec =
            RunSpec::from_value(json!({"entity": "e", "project": "p", "_wandb_api_key": ""}))
                .unwrap();
        assert!(spec.api_key.is_none());
        assert_eq!(spec.as_raw()["_wandb_api_key"], "", "the raw JSON is kept");
    }

    #[test]
    fn collects_every_malformed_field() {
        let err = RunSpec::from_value(json!({
            "project": 3, "resource_args": [1], "overrides": {"args": "--lr 1"}
        }))
        .unwrap_err();
        let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "runSpec.entity",
                "runSpec.project",
                "runSpec.resource_args",
                "runSpec.overrides.args"
            ]
        );
    }
}
