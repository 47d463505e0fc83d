//! The `launch-config.yaml` file: known keys, nearest-key suggestions and typed readers.
//!
//! Pure: the text comes in, values or [`ConfigError`]s go out.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::error::ConfigError;

/// Top-level keys W&B's agent knows, with the same meaning here.
pub(crate) const REFERENCE_KEYS: &[&str] = &[
    "entity",
    "queues",
    "queue",
    "max_jobs",
    "max_schedulers",
    "base_url",
    "environment",
    "registry",
    "builder",
    "verbosity",
    "secure_mode",
    "stopped_run_timeout",
];

/// Top-level keys of our own.
pub(crate) const OWN_KEYS: &[&str] = &[
    "identity",
    "poll_interval",
    "health_addr",
    "metrics_addr",
    "target_namespaces",
    "default_namespace",
    "job_secrets",
    "allowed_macros",
    "allowed_fields",
    "start_timeout",
    "init_check_timeout",
    "image_pull_grace",
    "shutdown_grace",
    "retries",
    "precheck",
    "leader_election",
    "lease_name",
    "lease_namespace",
    "lease_duration_seconds",
    "renew_deadline_seconds",
    "retry_period_seconds",
];

/// Keys of the `builder` block.
pub(crate) const BUILDER_KEYS: &[&str] = &[
    "type",
    "destination",
    "platform",
    "build-context-store",
    "build-job-name",
    "secret-name",
    "secret-key",
    "kaniko-image",
    "kaniko-config",
    "credentials",
];

/// Keys of the `retries` block.
pub(crate) const RETRY_KEYS: &[&str] = &["preemption"];

/// The parsed top-level mapping of a config file, with the file name kept for messages.
#[derive(Debug)]
pub(crate) struct ConfigFile<'a> {
    pub path: &'a Path,
    pub map: Mapping,
}

impl<'a> ConfigFile<'a> {
    /// Parses `text` (an empty file is an empty mapping) and refuses unknown keys.
    pub fn parse(path: &'a Path, text: &str) -> Result<Self, ConfigError> {
        let value: Value = if text.trim().is_empty() {
            Value::Mapping(Mapping::new())
        } else {
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Yaml {
                path: path.to_owned(),
                message: source.to_string(),
            })?
        };
        let map = match value {
            Value::Mapping(map) => map,
            Value::Null => Mapping::new(),
            other => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    key: "(top level)".to_owned(),
                    problem: format!("must be a mapping of keys, found {}", kind(&other)),
                    fix: "write `key: value` lines such as `entity: my-team`".to_owned(),
                });
            }
        };
        let known: Vec<&str> = REFERENCE_KEYS.iter().chain(OWN_KEYS).copied().collect();
        check_keys(path, "", &map, &known)?;
        if let Some(Value::Mapping(builder)) = map.get("builder") {
            let known: Vec<&str> = BUILDER_KEYS
                .iter()
                .chain(super::kaniko::OWN_BUILDER_KEYS)
                .copied()
                .collect();
            check_keys(path, "builder.", builder, &known)?;
        }
        if let Some(Value::Mapping(retries)) = map.get("retries") {
            check_keys(path, "retries.", retries, RETRY_KEYS)?;
        }
        Ok(Self { path, map })
    }

    fn invalid(&self, key: &str, problem: String, fix: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            key: key.to_owned(),
            problem,
            fix: fix.to_owned(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(Value::Number(number)) => Ok(Some(number.to_string())),
            Some(other) => Err(self.invalid(
                key,
                format!("must be a string, found {}", kind(other)),
                "quote the value",
            )),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    other => Err(self.invalid(
                        key,
                        format!(
                            "must be a list of strings, found an item that is {}",
                            kind(other)
                        ),
                        "write one string per item",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(
                key,
                format!("must be a list of strings, found {}", kind(other)),
                "write a YAML list such as `[a, b]`",
            )),
        }
    }

    /// An integer, also accepted as a numeric string (W&B's agent parses with `int()`).
    pub fn integer(&self, key: &str) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => number.as_i64().map(Some).ok_or_else(|| {
                self.invalid(
                    key,
                    format!("must be a whole number, found {number}"),
                    "write an integer",
                )
            }),
            Some(Value::String(text)) => text.trim().parse().map(Some).map_err(|_| {
                self.invalid(
                    key,
                    format!("must be a whole number, found {text:?}"),
                    "write an integer",
                )
            }),
            Some(other) => Err(self.invalid(
                key,
                format!("must be a whole number, found {}", kind(other)),
                "write an integer",
            )),
        }
    }

    /// Seconds, as a number (fractions allowed).
    pub fn seconds(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(number)) => Ok(number.as_f64()),
            Some(Value::String(text)) => text.trim().parse().map(Some).map_err(|_| {
                self.invalid(
                    key,
                    format!("must be a number of seconds, found {text:?}"),
                    "write a number such as `30`",
                )
            }),
            Some(other) => Err(self.invalid(
                key,
                format!("must be a number of seconds, found {}", kind(other)),
                "write a number such as `30`",
            )),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(other) => Err(self.invalid(
                key,
                format!("must be true or false, found {}", kind(other)),
                "write `true` or `false`",
            )),
        }
    }

    pub fn mapping(&self, key: &str) -> Result<Option<&Mapping>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Mapping(map)) => Ok(Some(map)),
            Some(other) => Err(self.invalid(
                key,
                format!("must be a mapping, found {}", kind(other)),
                "write it as nested `key: value` lines",
            )),
        }
    }
}

fn check_keys(path: &Path, prefix: &str, map: &Mapping, known: &[&str]) -> Result<(), ConfigError> {
    for key in map.keys() {
        let Some(name) = key.as_str() else {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                key: format!("{prefix}{key:?}"),
                problem: "keys must be strings".to_owned(),
                fix: "quote the key".to_owned(),
            });
        };
        if !known.contains(&name) {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key: format!("{prefix}{name}"),
                nearest: nearest(name, known).map(|near| format!("{prefix}{near}")),
            });
        }
    }
    Ok(())
}

/// The known key closest to `key`, when it is close enough to be a typo.
pub(crate) fn nearest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|candidate| (strsim::jaro_winkler(key, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A YAML value as JSON (for blocks kept opaque, such as `environment`).
pub(crate) fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
