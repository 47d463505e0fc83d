//! Properties of the launch agent's config resolution (`rlaunch_agent::Config::resolve`):
//! the file, the environment and no flags.

use std::collections::BTreeMap;
use std::path::Path;

use rlaunch_agent::{Config, Flags};

/// The API key in the fuzzed environment; it must never show in a config or an error.
pub const AGENT_KEY: &str = "fuzz-agent-key-7c1e9a2b4d6f8h0j";

/// Environment variables the agent reads (an input line `N=value` sets number N).
const ENV_NAMES: &[&str] = &[
    "WANDB_ENTITY",
    "WANDB_BASE_URL",
    "WANDB_LAUNCH_MAX_JOBS",
    "WANDB_LAUNCH_START_TIMEOUT",
    "WANDB_RELEASE_NAME",
    "WANDB_API_KEY_FILE",
    "WANDB_LAUNCH_CODE_PVC_NAME",
    "WANDB_LAUNCH_CODE_PVC_MOUNT_PATH",
    "LAUNCH_AGENT_IDENTITY",
    "LAUNCH_AGENT_TARGET_NAMESPACES",
    "LAUNCH_AGENT_JOB_SECRETS",
    "LAUNCH_AGENT_HEALTH_ADDR",
    "LAUNCH_AGENT_METRICS_ADDR",
    "LAUNCH_AGENT_EXTRA_CA_FILE",
    "LAUNCH_AGENT_LEADER_ELECTION",
    "LAUNCH_AGENT_LEASE_NAME",
    "LAUNCH_AGENT_LEASE_NAMESPACE",
    "LAUNCH_AGENT_LEASE_DURATION_SECONDS",
    "LAUNCH_AGENT_RENEW_DEADLINE_SECONDS",
    "LAUNCH_AGENT_RETRY_PERIOD_SECONDS",
    "LAUNCH_AGENT_PRECHECK",
    "TEAM_BUCKET",
    "HOME",
    "LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE",
];

/// Runs one input: the config file's YAML, then (after a NUL byte, optional) environment
/// lines `NAME=value`, where NAME is a variable's name or its index in the list above.
pub fn run(data: &[u8]) {
    let (file, env) = crate::split_nul(data);
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let mut vars = BTreeMap::from([("WANDB_API_KEY".to_owned(), AGENT_KEY.to_owned())]);
    for line in env.map(String::from_utf8_lossy).unwrap_or_default().lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = match name.parse::<usize>() {
            Ok(index) => ENV_NAMES[index % ENV_NAMES.len()].to_owned(),
            Err(_) => name.to_owned(),
        };
        vars.insert(name, value.to_owned());
    }
    let path = Path::new("/etc/launch-agent/launch-config.yaml");
    match Config::resolve(Some((path, text)), &vars, &Flags::default()) {
        Ok(config) => check_config(&config, &vars),
        Err(error) => {
            let message = error.to_string();
            assert!(
                !message.contains(AGENT_KEY),
                "an error shows the API key: {message}"
            );
            let named = message.contains(&path.display().to_string())
                || message.starts_with("environment variable ")
                || message.starts_with("flag ");
            assert!(
                named,
                "the error names neither the file, a variable nor a flag: {message}"
            );
        }
    }
}

fn check_config(config: &Config, vars: &BTreeMap<String, String>) {
    // Only allow-listed variables reach the render, with their values.
    for (name, value) in &config.macro_env {
        assert!(
            config.allowed_macros.contains(name),
            "macro {name} is not allow-listed"
        );
        assert_eq!(
            vars.get(name),
            Some(value),
            "macro {name} has another value"
        );
    }
    assert!(
        !config.macro_env.contains_key("WANDB_API_KEY")
            || config.allowed_macros.contains("WANDB_API_KEY")
    );
    let sent = config.agent_config_json().to_string();
    assert!(
        !sent.contains(AGENT_KEY),
        "the config sent to W&B holds the key: {sent}"
    );
    let namespaces = config.watched_namespaces();
    assert!(
        namespaces.contains(&config.default_namespace),
        "{namespaces:?}"
    );
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(AGENT_KEY),
        "the config shows the key: {shown}"
    );
}
