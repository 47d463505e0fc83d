//! The run spec's own `builder` block (pure). W&B's agent overwrites it with the agent's
//! config, so it never has an effect there; here the keys the agent admin lists in
//! `builder.run-spec-overrides` are honoured and any other key fails the item before the
//! ack, naming the key and the fix — never silently ignored.

use std::collections::BTreeSet;

use rlaunch_builder::{BuildOverrides, check_destination};
use rlaunch_model::RunSpec;
use serde_json::Value;

use crate::config::RUN_SPEC_BUILDER_KEYS;

/// What the run's `builder` block changes for this run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunBuilder {
    /// `type: noop` on a building agent: run on a base image with the code mounted.
    pub noop: bool,
    /// Settings of the agent's builder the run changes.
    pub overrides: BuildOverrides,
}

/// Reads the run spec's `builder` block against what the agent allows. `agent_kind` is
/// the agent's builder (`noop`, `kaniko`); `allowed` is `builder.run-spec-overrides`.
pub(crate) fn run_builder(
    spec: &RunSpec,
    agent_kind: &str,
    allowed: &BTreeSet<String>,
) -> Result<RunBuilder, String> {
    let block = match spec.as_raw().get("builder") {
        None | Some(Value::Null) => return Ok(RunBuilder::default()),
        Some(Value::Object(block)) => block,
        Some(_) => {
            return Err(
                "the run spec's `builder` must be an object of builder settings: fix or remove it"
                    .to_owned(),
            );
        }
    };
    for key in block.keys() {
        check_key(key, allowed)?;
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match block.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(format!(
                "the run spec's `builder.{key}` must be a string: fix or remove it"
            )),
        }
    };
    let noop = match (text("type")?.as_deref(), agent_kind) {
        (None, _) | (Some("kaniko"), "kaniko") => false,
        (Some("noop"), _) => true,
        (Some("kaniko"), _) => {
            return Err(format!(
                "the run spec's `builder.type` asks for `kaniko`, but this agent's builder is `{agent_kind}`: push the run to a queue whose agent has `builder.type: kaniko`, or remove `builder.type` from the run spec"
            ));
        }
        (Some(other), _) => {
            return Err(format!(
                "the run spec's `builder.type` is `{other}`; this agent builds with `noop` or `kaniko` only: fix or remove it"
            ));
        }
    };
    let overrides = BuildOverrides {
        destination: text("destination")?,
        kaniko_image: text("kaniko-image")?,
        job_name_prefix: text("build-job-name")?,
    };
    if let Some(destination) = &overrides.destination {
        check_destination(destination).map_err(|e| format!("the run spec's {e}"))?;
    }
    if (noop || agent_kind == "noop") && overrides != BuildOverrides::default() {
        return Err("the run spec's `builder` sets Kaniko settings, but the run is not built (`noop` builder): remove them, or push the run to an agent with `builder.type: kaniko`".to_owned());
    }
    Ok(RunBuilder { noop, overrides })
}

fn check_key(key: &str, allowed: &BTreeSet<String>) -> Result<(), String> {
    if !RUN_SPEC_BUILDER_KEYS.contains(&key) {
        return Err(format!(
            "the run spec's `builder.{key}` is not a setting a run may choose (a run may set {}): remove it",
            RUN_SPEC_BUILDER_KEYS.join(", ")
        ));
    }
    if !allowed.contains(key) {
        return Err(format!(
            "the run spec sets `builder.{key}`, which this agent does not let runs choose: remove it from the run spec, or ask the agent's admin to add `{key}` to `builder.run-spec-overrides` in the agent config"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(builder: &str) -> RunSpec {
        RunSpec::from_json(&format!(
            r#"{{"entity":"e","project":"p","builder":{builder}}}"#
        ))
        .unwrap()
    }

    fn allow(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn an_absent_or_empty_block_changes_nothing() {
        let none = RunSpec::from_json(r#"{"entity":"e","project":"p"}"#).unwrap();
        assert_eq!(
            run_builder(&none, "kaniko", &allow(&[])),
            Ok(RunBuilder::default())
        );
        assert_eq!(
            run_builder(&spec("{}"), "noop", &allow(&[])),
            Ok(RunBuilder::default())
        );
        assert_eq!(
            run_builder(&spec("null"), "noop", &allow(&[])),
            Ok(RunBuilder::default())
        );
    }

    #[test]
    fn by_default_any_key_fails_naming_it_and_the_agent_setting() {
        let error = run_builder(&spec(r#"{"type":"kaniko"}"#), "kaniko", &allow(&[])).unwrap_err();
        assert!(
            error.contains("`builder.type`") && error.contains("builder.run-spec-overrides"),
            "{error}"
        );
        let error = run_builder(
            &spec(r#"{"secret-name":"x"}"#),
            "kaniko",
            &allow(RUN_SPEC_BUILDER_KEYS),
        )
        .unwrap_err();
        assert!(
            error.contains("`builder.secret-name`") && error.contains("remove it"),
            "{error}"
        );
    }

    #[test]
    fn allowed_keys_reach_the_builder() {
        let all = allow(RUN_SPEC_BUILDER_KEYS);
        let chosen = run_builder(
            &spec(r#"{"type":"kaniko","destination":"r.example/team/other","kaniko-image":"ghcr.io/fork/executor:v2","build-job-name":"nightly"}"#),
            "kaniko",
            &all,
        )
        .unwrap();
        assert!(!chosen.noop);
        assert_eq!(
            chosen.overrides,
            BuildOverrides {
                destination: Some("r.example/team/other".into()),
                kaniko_image: Some("ghcr.io/fork/executor:v2".into()),
                job_name_prefix: Some("nightly".into()),
            }
        );
        let noop = run_builder(&spec(r#"{"type":"noop"}"#), "kaniko", &all).unwrap();
        assert!(noop.noop);
    }

    #[test]
    fn what_this_agent_cannot_do_fails_with_the_fix() {
        let all = allow(RUN_SPEC_BUILDER_KEYS);
        let error = run_builder(&spec(r#"{"type":"kaniko"}"#), "noop", &all).unwrap_err();
        assert!(error.contains("this agent's builder is `noop`"), "{error}");
        let error = run_builder(&spec(r#"{"type":"docker"}"#), "kaniko", &all).unwrap_err();
        assert!(error.contains("`docker`"), "{error}");
        let error = run_builder(
            &spec(r#"{"destination":"r.example/x:latest"}"#),
            "kaniko",
            &all,
        )
        .unwrap_err();
        assert!(
            error.contains("builder.destination") && error.contains("tag"),
            "{error}"
        );
        let error = run_builder(
            &spec(r#"{"type":"noop","kaniko-image":"x/y:1"}"#),
            "kaniko",
            &all,
        )
        .unwrap_err();
        assert!(error.contains("not built"), "{error}");
        let error = run_builder(&spec(r#""kaniko""#), "kaniko", &all).unwrap_err();
        assert!(error.contains("must be an object"), "{error}");
    }
}
