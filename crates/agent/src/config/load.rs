//! The IO around [`Config::resolve`]: read the config file and the API key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rlaunch_model::ApiKey;

use super::{ApiKeySource, Config};
use crate::cli::Flags;
use crate::error::ConfigError;

/// Where the config file is looked for without `--config`, under `$HOME`.
pub const DEFAULT_CONFIG_PATH: &str = ".config/wandb/launch-config.yaml";

/// Reads the config file (the `--config` one must exist; a missing default file is fine),
/// resolves it with `env` and `flags`, and reads the API key.
pub fn load(
    env: &BTreeMap<String, String>,
    flags: &Flags,
) -> Result<(Config, ApiKey), ConfigError> {
    let (path, required) = match &flags.config {
        Some(path) => (path.clone(), true),
        None => (
            env.get("HOME")
                .map(|home| Path::new(home).join(DEFAULT_CONFIG_PATH))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH)),
            false,
        ),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(source) => return Err(ConfigError::ReadFile { path, source }),
    };
    let config = Config::resolve(
        text.as_deref().map(|text| (path.as_path(), text)),
        env,
        flags,
    )?;
    let api_key = read_api_key(&config.api_key, env)?;
    Ok((config, api_key))
}

fn read_api_key(
    source: &ApiKeySource,
    env: &BTreeMap<String, String>,
) -> Result<ApiKey, ConfigError> {
    match source {
        ApiKeySource::Env => Ok(ApiKey::new(
            env.get("WANDB_API_KEY").cloned().unwrap_or_default(),
        )),
        ApiKeySource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            Ok(ApiKey::new(trim_newline(&text)))
        }
        ApiKeySource::Missing => Err(ConfigError::NoApiKey),
    }
}

/// A mounted Secret file usually ends in one newline; that is not part of the key.
pub(crate) fn trim_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}
