//! The `launch-render` command as a library: read a run spec and a queue config, render them
//! with the `rlaunch-render` engine, format the objects as YAML or JSON, or explain where each field
//! came from. The binary only parses arguments and prints; tests call [`run`] directly.
//!
//! **Invariant:** no network, no cluster; the only IO is reading the named input files and
//! the environment variables the user names (`--api-key-env`, `--macro-env`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use rlaunch_model::{ApiKey, RenderError, RunSpec};
use rlaunch_render::{ApiKeyMode, RenderContext, Rendered};
use serde_json::Value;

/// Command-line arguments of `launch-render`.
#[derive(Debug, Parser)]
#[command(
    name = "launch-render",
    version,
    about = "Print the Kubernetes objects the launch agent would create for a run spec, without a cluster"
)]
pub struct Args {
    /// The popped `runSpec` JSON exactly as W&B sends it (`-` reads stdin).
    #[arg(long, value_name = "FILE|-")]
    pub run_spec: PathBuf,
    /// A queue config (YAML or JSON), merged under `resource_args.kubernetes` as an RFC 7386
    /// JSON merge patch: the run spec wins, objects merge key by key, lists replace, and a
    /// `null` in the run spec removes the queue config's key.
    #[arg(long, value_name = "FILE")]
    pub queue_config: Option<PathBuf>,
    /// Run id (default: the run spec's `run_id`, else a stable id derived from the input).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Agent name, as the `wandb.ai/agent` label.
    #[arg(long)]
    pub agent_name: Option<String>,
    /// Queue name (`WANDB_LAUNCH_QUEUE_NAME`).
    #[arg(long = "queue")]
    pub queue: Option<String>,
    /// Agent entity (`WANDB_LAUNCH_QUEUE_ENTITY`).
    #[arg(long)]
    pub queue_entity: Option<String>,
    /// Run queue item id: gives the workload a deterministic name, as the agent does.
    #[arg(long)]
    pub rqi_id: Option<String>,
    /// W&B base URL given to the workload.
    #[arg(long, default_value = "https://api.wandb.ai")]
    pub base_url: String,
    /// Image to run (a built image); overrides the run spec's docker image.
    #[arg(long)]
    pub image: Option<String>,
    /// Helm release name: one shared `wandb-api-key-<release>` Secret.
    #[arg(long)]
    pub release: Option<String>,
    /// Namespace used when the manifest names none.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Environment variable holding the API key to put in the Secret (default: a placeholder).
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Field allowed despite the security refuse-list (repeatable), e.g. serviceAccountName.
    #[arg(long = "allow-field", value_name = "FIELD")]
    pub allow_fields: Vec<String>,
    /// Environment variable usable as a `${NAME}` macro (repeatable); no other variable is read.
    #[arg(long = "macro-env", value_name = "NAME")]
    pub macro_env: Vec<String>,
    /// Render as an agent in secure mode: refuse hostPID, hostIPC, hostNetwork, init
    /// containers, container `command` and `overrides.entry_point`.
    #[arg(long)]
    pub secure_mode: bool,
    /// Plural of a custom resource, as `Kind.group=plural` (repeatable).
    #[arg(long = "crd-plural", value_name = "KIND.GROUP=PLURAL")]
    pub crd_plurals: Vec<String>,
    /// GPUs for the workload, e.g. `4xA100-80GB`, `H100`, `nvidia.com/gpu=2`, `2xL4,shm=16Gi`:
    /// limits and requests, GPU tolerations, node affinity for the product, `/dev/shm`.
    #[arg(long, value_name = "REQUEST")]
    pub gpu: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Yaml)]
    pub output: Output,
    /// Print, for each field of the result, which layer set it.
    #[arg(long)]
    pub explain: bool,
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A multi-document YAML stream.
    Yaml,
    /// One JSON array.
    Json,
}

/// Why `launch-render` could not render. Every variant is bad input (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An input file could not be read.
    #[error("cannot read {path}: {source} (check the path and permissions)")]
    ReadInput {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The queue config is not valid YAML/JSON.
    #[error("{path}: not valid YAML or JSON: {message} (fix the syntax at that position)")]
    ParseQueueConfig {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The run spec or queue config is invalid.
    #[error("{0}")]
    Render(RenderError),
    /// A flag has a bad value.
    #[error("{flag}: {problem}")]
    BadFlag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// What a successful render prints.
#[derive(Debug)]
pub struct RenderOutput {
    /// The objects (or the explanation), for stdout.
    pub stdout: String,
    /// Warnings, one per line, for stderr.
    pub warnings: Vec<String>,
}

fn read_input(path: &Path, stdin: &mut dyn Read) -> Result<String, CliError> {
    let mut text = String::new();
    let result = if path == Path::new("-") {
        stdin.read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|source| CliError::ReadInput {
        path: path.to_owned(),
        source,
    })?;
    Ok(text)
}

/// Reads the inputs, renders and formats. `env` looks up environment variables.
pub fn run(
    args: &Args,
    stdin: &mut dyn Read,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RenderOutput, CliError> {
    let run_spec_name = args.run_spec.display().to_string();
    let run_spec_text = read_input(&args.run_spec, stdin)?;
    let spec = RunSpec::from_json(&run_spec_text)
        .map_err(|e| CliError::Render(e.in_file(&run_spec_name)))?;
    let queue_config = match &args.queue_config {
        None => None,
        Some(path) => {
            let text = read_input(path, stdin)?;
            let value: Value =
                serde_yaml_ng::from_str(&text).map_err(|e| CliError::ParseQueueConfig {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            Some(value)
        }
    };
    let ctx = context(args, &spec, &run_spec_text, env)?;
    let rendered = rlaunch_render::render(&spec, queue_config.as_ref(), &ctx).map_err(|e| {
        let files = match &args.queue_config {
            Some(queue) => format!("{run_spec_name} + {}", queue.display()),
            None => run_spec_name.clone(),
        };
        CliError::Render(e.in_file(&files))
    })?;
    let stdout = if args.explain {
        explain(&rendered)
    } else {
        format(&rendered, args.output)
    };
    Ok(RenderOutput {
        stdout,
        warnings: rendered.warnings,
    })
}

fn context(
    args: &Args,
    spec: &RunSpec,
    run_spec_text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RenderContext, CliError> {
    let run_id = args
        .run_id
        .clone()
        .or_else(|| spec.run_id.clone())
        .unwrap_or_else(|| rlaunch_model::names::stable_hash(run_spec_text)[..8].to_owned());
    let mut ctx = RenderContext::new(run_id);
    ctx.run_queue_item_id = args.rqi_id.clone();
    ctx.queue_name = args.queue.clone();
    ctx.queue_entity = args.queue_entity.clone();
    ctx.agent_name = args.agent_name.clone();
    ctx.base_url = args.base_url.clone();
    ctx.image_uri = args.image.clone();
    ctx.release_name = args.release.clone();
    ctx.default_namespace = args.namespace.clone();
    ctx.allowed_fields = args.allow_fields.iter().cloned().collect::<BTreeSet<_>>();
    ctx.explain = args.explain;
    ctx.secure_mode = args.secure_mode;
    if let Some(var) = &args.api_key_env {
        ctx.api_key = ApiKeyMode::Agent(api_key(var, env)?);
    }
    if let Some(text) = &args.gpu {
        ctx.gpu = Some(text.parse().map_err(|error| CliError::BadFlag {
            flag: "--gpu",
            problem: format!("{error}"),
        })?);
    }
    ctx.macro_env = macro_env(&args.macro_env, env)?;
    ctx.crd_plurals = crd_plurals(&args.crd_plurals)?;
    Ok(ctx)
}

/// The key in `var`, exactly as set (an environment variable has no trailing newline to trim).
fn api_key(var: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<ApiKey, CliError> {
    let key = env(var).filter(|k| !k.trim().is_empty()).ok_or_else(|| CliError::BadFlag {
        flag: "--api-key-env",
        problem: format!("environment variable {var} is not set or empty (export it, or drop the flag to render a placeholder)"),
    })?;
    Ok(ApiKey::new(key))
}

/// The values of the allow-listed variables; no other variable is read.
fn macro_env(
    names: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, CliError> {
    let mut values = BTreeMap::new();
    for name in names {
        let value = env(name).ok_or_else(|| CliError::BadFlag {
            flag: "--macro-env",
            problem: format!("environment variable {name} is not set (export it or drop the flag)"),
        })?;
        values.insert(name.clone(), value);
    }
    Ok(values)
}

fn crd_plurals(entries: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    let mut plurals = BTreeMap::new();
    for entry in entries {
        let (kind_group, plural) = entry.split_once('=').ok_or_else(|| CliError::BadFlag {
            flag: "--crd-plural",
            problem: format!(
                "`{entry}` is not Kind.group=plural (e.g. PyTorchJob.kubeflow.org=pytorchjobs)"
            ),
        })?;
        plurals.insert(kind_group.to_owned(), plural.to_owned());
    }
    Ok(plurals)
}

/// The objects as a YAML stream or a JSON array, in creation order.
pub fn format(rendered: &Rendered, output: Output) -> String {
    let manifests = rendered.manifests();
    match output {
        Output::Json => {
            let mut text = serde_json::to_string_pretty(&manifests).unwrap_or_default();
            text.push('\n');
            text
        }
        Output::Yaml => {
            let mut text = String::new();
            for manifest in manifests {
                text.push_str("---\n");
                text.push_str(&serde_yaml_ng::to_string(manifest).unwrap_or_default());
            }
            text
        }
    }
}

/// One line per field: the layer that set it, the path and the value.
pub fn explain(rendered: &Rendered) -> String {
    let mut text = String::new();
    for (object, provenance) in rendered.objects.iter().zip(&rendered.provenance) {
        let name = object
            .manifest
            .pointer("/metadata/name")
            .or_else(|| object.manifest.pointer("/metadata/generateName"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        text.push_str(&format!("# {} {name}\n", object.api.kind));
        for (path, layer) in &provenance.fields {
            let value = lookup(&object.manifest, path)
                .map(|v| v.to_string())
                .unwrap_or_default();
            let value = if value.len() > 80 {
                format!("{}…", value.chars().take(79).collect::<String>())
            } else {
                value
            };
            text.push_str(&format!("{:<18} {path} = {value}\n", layer.as_str()));
        }
    }
    text
}

/// Follows a provenance path (`a.b[0]."x.y/z"`) into a manifest.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = value;
    let mut rest = path;
    while !rest.is_empty() {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']')?;
            current = current.get(after[..end].parse::<usize>().ok()?)?;
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"')?;
            current = current.get(&after[..end])?;
            rest = &after[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            current = current.get(&rest[..end])?;
            rest = &rest[end..];
        }
    }
    Some(current)
}
