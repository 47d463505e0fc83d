//! The agent's one typed configuration: `launch-config.yaml`, then environment variables,
//! then flags (later wins), as W&B's agent resolves it, with our own keys beside.
//!
//! [`Config::resolve`] is pure: the file text, an environment map and the flags come in.
//! [`load`](crate::config::load) is the IO around it (reads the file and the API-key file).
//!
//! Differs from W&B's agent: unknown keys are refused everywhere (also inside `builder`),
//! naming the key, the file and the nearest valid key; the legacy `queue:` key works (it is
//! appended to `queues`); `stopped_run_timeout` must not be negative; a bad
//! `WANDB_LAUNCH_MAX_JOBS` is a message, not a crash; a run spec's own `builder` block is
//! honoured for the keys `builder.run-spec-overrides` lists (W&B's agent drops it).

mod file;
mod kaniko;
mod lease;
mod load;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value as Json;

pub use kaniko::{KanikoOptions, RUN_SPEC_BUILDER_KEYS};
pub use lease::{LeaderElection, LeaseSettings};
pub use load::{DEFAULT_CONFIG_PATH, load};
pub use schema::{LaunchConfigFile, launch_config_schema};

use crate::cli::{Flags, LogFormat};
use crate::error::ConfigError;
use file::{ConfigFile, to_json};

/// How many jobs may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobLimit {
    /// No limit (`-1`).
    Unlimited,
    /// At most this many; `0` never pops.
    AtMost(u32),
}

impl JobLimit {
    /// True when `running` more jobs leave room for one more.
    pub fn has_room(self, running: usize) -> bool {
        match self {
            JobLimit::Unlimited => true,
            JobLimit::AtMost(limit) => running < limit as usize,
        }
    }

    /// The limit as W&B shows it (`-1` for unlimited).
    pub fn as_i64(self) -> i64 {
        match self {
            JobLimit::Unlimited => -1,
            JobLimit::AtMost(limit) => i64::from(limit),
        }
    }
}

/// Which image builder the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuilderChoice {
    /// No builder: image jobs run their image, code jobs a base image with the code
    /// mounted at run time.
    Noop,
    /// In-cluster builds with Kaniko.
    Kaniko(Box<KanikoOptions>),
}

/// Whether the agent creates a per-run API-key Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobSecrets {
    /// One Secret per run (or the shared helm-mode Secret), as W&B's agent does.
    PerRun,
    /// No Secret and no `WANDB_API_KEY` in the workload (the cluster provides it).
    None,
}

/// Where the API key comes from (read by [`load`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `WANDB_API_KEY`.
    Env,
    /// `WANDB_API_KEY_FILE`: this file, trailing newline trimmed.
    File(PathBuf),
    /// Neither is set.
    Missing,
}

/// The code PVC pair (`WANDB_LAUNCH_CODE_PVC_NAME`, `WANDB_LAUNCH_CODE_PVC_MOUNT_PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodePvc {
    /// Claim name.
    pub claim_name: String,
    /// Where the agent has the claim mounted.
    pub mount_path: PathBuf,
}

/// The resolved agent configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it came from, if any.
    pub source: Option<PathBuf>,
    /// Entity owning the queues; `None` means the API key's user's default entity.
    pub entity: Option<String>,
    /// Queues to poll, in order.
    pub queues: Vec<String>,
    /// Concurrent non-scheduler jobs.
    pub max_jobs: JobLimit,
    /// Concurrent sweep schedulers.
    pub max_schedulers: JobLimit,
    /// W&B base URL.
    pub base_url: String,
    /// Where the API key comes from.
    pub api_key: ApiKeySource,
    /// Extra CA bundle for W&B (`LAUNCH_AGENT_EXTRA_CA_FILE`).
    pub extra_ca_file: Option<PathBuf>,
    /// The builder.
    pub builder: BuilderChoice,
    /// Keys of a run spec's own `builder` block a run may set
    /// (`builder.run-spec-overrides`; empty: none, and a run spec asking fails).
    pub run_spec_builder_keys: BTreeSet<String>,
    /// `environment` block, kept as given (used by cloud builders).
    pub environment: Option<Json>,
    /// Deprecated `registry` block, kept as given (`type: ecr` with `region` turns on
    /// the ECR token flow of the existence check).
    pub registry: Option<Json>,
    /// `AWS_ENDPOINT_URL_ECR`: the ECR API endpoint (default: the region's).
    pub ecr_endpoint: Option<String>,
    /// Log verbosity (0 info, 1 debug, 2+ trace).
    pub verbosity: u8,
    /// Lock down entrypoints and host namespaces in submitted specs.
    pub secure_mode: bool,
    /// Between a stop request from W&B and cancelling the workload.
    pub stopped_run_timeout: Duration,
    /// Between idle polls.
    pub poll_interval: Duration,
    /// How long a run may take to start (`None`: no limit).
    pub start_timeout: Option<Duration>,
    /// How long to wait for a finished run to show as initialised in W&B.
    pub init_check_timeout: Duration,
    /// How long an image may fail to pull (or a container to be created) before the run
    /// fails: a registry that is briefly down or slow to grant access heals within it.
    pub image_pull_grace: Duration,
    /// How long shutdown waits for items between ack and submit.
    pub shutdown_grace: Duration,
    /// Address of `/livez` and `/readyz`.
    pub health_addr: SocketAddr,
    /// Address of `/metrics`.
    pub metrics_addr: SocketAddr,
    /// Namespaces workloads may go to (empty: any).
    pub target_namespaces: BTreeSet<String>,
    /// Namespace of workloads whose manifest names none.
    pub default_namespace: String,
    /// Per-run API-key Secrets or none.
    pub job_secrets: JobSecrets,
    /// Agent env vars a queue config may use as `${NAME}`.
    pub allowed_macros: BTreeSet<String>,
    /// Fields allowed despite the refuse-list.
    pub allowed_fields: BTreeSet<String>,
    /// Requeues of a preempted run before it is failed.
    pub preemption_retries: u32,
    /// Fail items whose workload can never fit the cluster, before ack.
    pub precheck: bool,
    /// Explicit identity (flag, env or file), if any; see [`crate::identity`].
    pub identity: Option<String>,
    /// `WANDB_RELEASE_NAME` (helm mode: one shared API-key Secret).
    pub release_name: Option<String>,
    /// The agent's own namespace (`POD_NAMESPACE`), used in the default identity.
    pub pod_namespace: Option<String>,
    /// Code PVC pair, when both are set.
    pub code_pvc: Option<CodePvc>,
    /// Log format.
    pub log_format: LogFormat,
    /// Lease-based leader election for `replicas > 1`.
    pub leader_election: LeaderElection,
    /// The env values of `allowed_macros` that are set.
    pub macro_env: BTreeMap<String, String>,
}

const DEFAULT_BASE_URL: &str = "https://api.wandb.ai";

impl Config {
    /// The namespaces the agent lists for adoption and checks access in: the target
    /// namespaces plus the default one. With no target namespaces set, only the default
    /// namespace is listed (Roles are per namespace), so runs a queue config sends elsewhere
    /// are not adopted after a restart: set `target_namespaces` to cover them.
    pub fn watched_namespaces(&self) -> Vec<String> {
        let mut namespaces = self.target_namespaces.clone();
        namespaces.insert(self.default_namespace.clone());
        namespaces.into_iter().collect()
    }

    /// Resolves the configuration. `file` is `(path, text)` of the config file, if one was
    /// read; `env` is the process environment (only the variables named in this module are
    /// read from it).
    pub fn resolve(
        file: Option<(&Path, &str)>,
        env: &BTreeMap<String, String>,
        flags: &Flags,
    ) -> Result<Self, ConfigError> {
        let parsed = match file {
            Some((path, text)) => Some(ConfigFile::parse(path, text)?),
            None => None,
        };
        let layer = Layers {
            file: parsed.as_ref(),
            env,
        };
        let mut config = layer.base()?;
        layer.apply_env(&mut config)?;
        apply_flags(&mut config, flags)?;
        config.leader_election = lease::resolve(parsed.as_ref(), env, flags)?;
        config.macro_env = config
            .allowed_macros
            .iter()
            .filter_map(|name| env.get(name).map(|value| (name.clone(), value.clone())))
            .collect();
        config.source = file.map(|(path, _)| path.to_owned());
        config.check()?;
        Ok(config)
    }

    /// The config as sent to W&B at registration (`agentConfig`): what an operator needs to
    /// see in the UI, never a credential or a cloud block.
    pub fn agent_config_json(&self) -> Json {
        serde_json::json!({
            "entity": self.entity,
            "queues": self.queues,
            "max_jobs": self.max_jobs.as_i64(),
            "max_schedulers": self.max_schedulers.as_i64(),
            "builder": {"type": "noop"},
            "secure_mode": self.secure_mode,
            "stopped_run_timeout": self.stopped_run_timeout.as_secs(),
            "verbosity": self.verbosity,
            "target_namespaces": self.target_namespaces,
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.queues.is_empty() {
            return Err(ConfigError::NoQueues {
                path: self.source.clone(),
            });
        }
        // `${WANDB_API_KEY}` in a queue config would copy the agent's key into pod specs
        // in plain text (and the config's Debug into logs); runs get it from the Secret.
        if let Some(name) = self.allowed_macros.iter().find(|n| *n == "WANDB_API_KEY") {
            return Err(self.invalid(
                "allowed_macros",
                format!("lists `{name}`, the agent's API key"),
                "remove it: every run already gets the key from its API-key Secret",
            ));
        }
        if !self.target_namespaces.is_empty()
            && !self.target_namespaces.contains(&self.default_namespace)
        {
            return Err(self.invalid(
                "default_namespace",
                format!(
                    "`{}` is not one of the target namespaces ({})",
                    self.default_namespace,
                    self.target_namespaces
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set `default_namespace` to a target namespace",
            ));
        }
        Ok(())
    }

    fn invalid(&self, key: &str, problem: String, fix: &str) -> ConfigError {
        ConfigError::Invalid {
            path: self
                .source
                .clone()
                .unwrap_or_else(|| PathBuf::from("(flags)")),
            key: key.to_owned(),
            problem,
            fix: fix.to_owned(),
        }
    }
}

struct Layers<'a> {
    file: Option<&'a ConfigFile<'a>>,
    env: &'a BTreeMap<String, String>,
}

fn default_config() -> Config {
    Config {
        source: None,
        entity: None,
        queues: Vec::new(),
        max_jobs: JobLimit::AtMost(1),
        max_schedulers: JobLimit::AtMost(1),
        base_url: DEFAULT_BASE_URL.to_owned(),
        api_key: ApiKeySource::Missing,
        extra_ca_file: None,
        builder: BuilderChoice::Noop,
        run_spec_builder_keys: BTreeSet::new(),
        environment: None,
        registry: None,
        ecr_endpoint: None,
        verbosity: 0,
        secure_mode: false,
        stopped_run_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_secs(10),
        start_timeout: Some(Duration::from_secs(1800)),
        init_check_timeout: Duration::from_secs(60),
        image_pull_grace: Duration::from_secs(120),
        shutdown_grace: Duration::from_secs(20),
        health_addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
        metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
        target_namespaces: BTreeSet::new(),
        default_namespace: "default".to_owned(),
        job_secrets: JobSecrets::PerRun,
        allowed_macros: BTreeSet::new(),
        allowed_fields: BTreeSet::new(),
        preemption_retries: 5,
        precheck: true,
        identity: None,
        release_name: None,
        pod_namespace: None,
        code_pvc: None,
        log_format: LogFormat::Human,
        leader_election: LeaderElection::Off,
        macro_env: BTreeMap::new(),
    }
}

impl Layers<'_> {
    /// Defaults, then the file.
    fn base(&self) -> Result<Config, ConfigError> {
        let mut config = default_config();
        let Some(file) = self.file else {
            return Ok(config);
        };
        let invalid = |key: &str, problem: String, fix: &str| ConfigError::Invalid {
            path: file.path.to_owned(),
            key: key.to_owned(),
            problem,
            fix: fix.to_owned(),
        };
        config.entity = file.string("entity")?;
        config.queues = file.strings("queues")?.unwrap_or_default();
        match file.get("queue") {
            None => {}
            Some(serde_yaml_ng::Value::String(queue)) => config.queues.push(queue.clone()),
            Some(other) => {
                return Err(invalid(
                    "queue",
                    format!("must be a queue name, found {}", file::kind(other)),
                    "write `queue: NAME`, or list several under `queues:`",
                ));
            }
        }
        if let Some(value) = file.integer("max_jobs")? {
            config.max_jobs = job_limit(value).map_err(|p| invalid("max_jobs", p, LIMIT_FIX))?;
        }
        if let Some(value) = file.integer("max_schedulers")? {
            config.max_schedulers =
                job_limit(value).map_err(|p| invalid("max_schedulers", p, LIMIT_FIX))?;
        }
        if let Some(url) = file.string("base_url")? {
            config.base_url = url;
        }
        config.builder = builder(file)?;
        if let Some(block) = file.mapping("builder")? {
            config.run_spec_builder_keys = kaniko::run_spec_overrides(file.path, block)?;
        }
        config.environment = file
            .mapping("environment")?
            .map(|m| to_json(&m.clone().into()));
        config.registry = file
            .mapping("registry")?
            .map(|m| to_json(&m.clone().into()));
        if let Some(verbosity) = file.integer("verbosity")? {
            config.verbosity = u8::try_from(verbosity.clamp(0, 9)).unwrap_or(0);
        }
        config.secure_mode = file.boolean("secure_mode")?.unwrap_or(false);
        self.file_durations(file, &mut config)?;
        self.file_lists(file, &mut config)?;
        Ok(config)
    }

    fn file_durations(
        &self,
        file: &ConfigFile<'_>,
        config: &mut Config,
    ) -> Result<(), ConfigError> {
        let positive = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
            match file.seconds(key)? {
                None => Ok(default),
                Some(secs) => seconds(secs).ok_or_else(|| ConfigError::Invalid {
                    path: file.path.to_owned(),
                    key: key.to_owned(),
                    problem: format!(
                        "must be a number of seconds from 0 to about 1.8e19, found {secs}"
                    ),
                    fix: "write a non-negative number of seconds, e.g. `30`".to_owned(),
                }),
            }
        };
        config.stopped_run_timeout = positive("stopped_run_timeout", config.stopped_run_timeout)?;
        config.poll_interval = positive("poll_interval", config.poll_interval)?;
        config.init_check_timeout = positive("init_check_timeout", config.init_check_timeout)?;
        config.image_pull_grace = positive("image_pull_grace", config.image_pull_grace)?;
        config.shutdown_grace = positive("shutdown_grace", config.shutdown_grace)?;
        if let Some(secs) = file.seconds("start_timeout")? {
            config.start_timeout = start_timeout(secs);
        }
        if let Some(value) = file.mapping("retries")?.and_then(|r| r.get("preemption")) {
            config.preemption_retries = value
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ConfigError::Invalid {
                    path: file.path.to_owned(),
                    key: "retries.preemption".to_owned(),
                    problem: format!(
                        "must be a whole number of at least 0, found {}",
                        file::kind(value)
                    ),
                    fix: "write how many times a preempted run is requeued, e.g. `5`".to_owned(),
                })?;
        }
        Ok(())
    }

    fn file_lists(&self, file: &ConfigFile<'_>, config: &mut Config) -> Result<(), ConfigError> {
        config.identity = file.string("identity")?;
        if let Some(addr) = file.string("health_addr")? {
            config.health_addr =
                socket_addr(&addr).map_err(|p| file_invalid(file, "health_addr", p))?;
        }
        if let Some(addr) = file.string("metrics_addr")? {
            config.metrics_addr =
                socket_addr(&addr).map_err(|p| file_invalid(file, "metrics_addr", p))?;
        }
        config.target_namespaces = file
            .strings("target_namespaces")?
            .unwrap_or_default()
            .into_iter()
            .collect();
        config.allowed_macros = file
            .strings("allowed_macros")?
            .unwrap_or_default()
            .into_iter()
            .collect();
        config.allowed_fields = file
            .strings("allowed_fields")?
            .unwrap_or_default()
            .into_iter()
            .collect();
        if let Some(namespace) = file.string("default_namespace")? {
            config.default_namespace = namespace;
        }
        if let Some(mode) = file.string("job_secrets")? {
            config.job_secrets =
                job_secrets(&mode).map_err(|p| file_invalid(file, "job_secrets", p))?;
        }
        if let Some(precheck) = file.boolean("precheck")? {
            config.precheck = precheck;
        }
        Ok(())
    }

    /// W&B's variables: key, URL, entity, limits, start timeout.
    fn apply_env(&self, config: &mut Config) -> Result<(), ConfigError> {
        let env = |name: &str| self.env.get(name).filter(|value| !value.is_empty());
        let bad = |name: &str, problem: String, fix: &str| ConfigError::Env {
            name: name.to_owned(),
            problem,
            fix: fix.to_owned(),
        };
        config.api_key = match (env("WANDB_API_KEY"), env("WANDB_API_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "WANDB_API_KEY_FILE",
                    "is set together with WANDB_API_KEY".to_owned(),
                    "set only one of them",
                ));
            }
            (Some(_), None) => ApiKeySource::Env,
            (None, Some(path)) => ApiKeySource::File(PathBuf::from(path)),
            (None, None) => ApiKeySource::Missing,
        };
        if let Some(url) = env("WANDB_BASE_URL") {
            config.base_url = url.clone();
        }
        if let Some(entity) = env("WANDB_ENTITY") {
            config.entity = Some(entity.clone());
        }
        if let Some(value) = env("WANDB_LAUNCH_MAX_JOBS") {
            let number: i64 = value.trim().parse().map_err(|_| {
                bad(
                    "WANDB_LAUNCH_MAX_JOBS",
                    format!("must be a whole number, found {value:?}"),
                    LIMIT_FIX,
                )
            })?;
            config.max_jobs =
                job_limit(number).map_err(|p| bad("WANDB_LAUNCH_MAX_JOBS", p, LIMIT_FIX))?;
        }
        if let Some(value) = env("WANDB_LAUNCH_START_TIMEOUT") {
            let secs: f64 = value.trim().parse().map_err(|_| {
                bad(
                    "WANDB_LAUNCH_START_TIMEOUT",
                    format!("must be a number of seconds, found {value:?}"),
                    "write e.g. `1800`, or `0` to disable",
                )
            })?;
            config.start_timeout = start_timeout(secs);
        }
        self.apply_agent_env(config)
    }

    /// Deployment variables: Helm release, namespaces, addresses, identity, pre-check, code PVC.
    fn apply_agent_env(&self, config: &mut Config) -> Result<(), ConfigError> {
        let env = |name: &str| self.env.get(name).filter(|value| !value.is_empty());
        let bad = |name: &str, problem: String, fix: &str| ConfigError::Env {
            name: name.to_owned(),
            problem,
            fix: fix.to_owned(),
        };
        config.release_name = env("WANDB_RELEASE_NAME").cloned();
        config.pod_namespace = env("POD_NAMESPACE").cloned();
        config.extra_ca_file = env("LAUNCH_AGENT_EXTRA_CA_FILE").map(PathBuf::from);
        config.ecr_endpoint = env("AWS_ENDPOINT_URL_ECR").cloned();
        if let BuilderChoice::Kaniko(options) = &mut config.builder {
            apply_kaniko_env(options, env);
        }
        if let Some(identity) = env("LAUNCH_AGENT_IDENTITY") {
            config.identity = Some(identity.clone());
        }
        if let Some(addr) = env("LAUNCH_AGENT_HEALTH_ADDR") {
            config.health_addr =
                socket_addr(addr).map_err(|p| bad("LAUNCH_AGENT_HEALTH_ADDR", p, ADDR_FIX))?;
        }
        if let Some(addr) = env("LAUNCH_AGENT_METRICS_ADDR") {
            config.metrics_addr =
                socket_addr(addr).map_err(|p| bad("LAUNCH_AGENT_METRICS_ADDR", p, ADDR_FIX))?;
        }
        if let Some(list) = env("LAUNCH_AGENT_TARGET_NAMESPACES") {
            config.target_namespaces = comma_list(list).collect();
        }
        if let Some(flag) = env("LAUNCH_AGENT_PRECHECK") {
            config.precheck = match flag.trim() {
                "true" => true,
                "false" => false,
                other => {
                    let problem = format!("must be `true` or `false`, found {other:?}");
                    return Err(bad(
                        "LAUNCH_AGENT_PRECHECK",
                        problem,
                        "write `true` or `false`",
                    ));
                }
            };
        }
        if let Some(mode) = env("LAUNCH_AGENT_JOB_SECRETS") {
            config.job_secrets = job_secrets(mode)
                .map_err(|p| bad("LAUNCH_AGENT_JOB_SECRETS", p, "write `perRun` or `none`"))?;
        }
        config.code_pvc = match (
            env("WANDB_LAUNCH_CODE_PVC_NAME"),
            env("WANDB_LAUNCH_CODE_PVC_MOUNT_PATH"),
        ) {
            (Some(claim), Some(path)) => Some(CodePvc {
                claim_name: claim.clone(),
                mount_path: PathBuf::from(path),
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                return Err(bad(
                    "WANDB_LAUNCH_CODE_PVC_NAME",
                    "and WANDB_LAUNCH_CODE_PVC_MOUNT_PATH must be set together".to_owned(),
                    "set both (the claim and where the agent has it mounted) or neither",
                ));
            }
        };
        if config.default_namespace == "default"
            && self.file.and_then(|f| f.get("default_namespace")).is_none()
            && let Some(first) = config.target_namespaces.iter().next()
        {
            config.default_namespace = first.clone();
        }
        Ok(())
    }
}

/// The Kaniko builder's variables; a key the config file sets wins.
fn apply_kaniko_env<'a>(options: &mut KanikoOptions, env: impl Fn(&str) -> Option<&'a String>) {
    if options.docker_config_secret.is_none() {
        // W&B's variable (the chart's `kanikoDockerConfigSecret` sets it).
        options.docker_config_secret = env("WANDB_LAUNCH_KANIKO_AUTH_SECRET").cloned();
    }
    // The chart mounts that Secret into the agent too and names the file here.
    options.mounted_push_config = env("LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE").map(PathBuf::from);
}

fn apply_flags(config: &mut Config, flags: &Flags) -> Result<(), ConfigError> {
    let bad = |flag: &str, problem: String, fix: &str| ConfigError::Flag {
        flag: flag.to_owned(),
        problem,
        fix: fix.to_owned(),
    };
    if !flags.queues.is_empty() {
        config.queues = flags.queues.clone();
    }
    if let Some(entity) = &flags.entity {
        config.entity = Some(entity.clone());
    }
    if let Some(max_jobs) = flags.max_jobs {
        config.max_jobs = job_limit(max_jobs).map_err(|p| bad("--max-jobs", p, LIMIT_FIX))?;
    }
    if flags.verbose > 0 {
        config.verbosity = flags.verbose;
    }
    let duration = |flag: &str, secs: f64| {
        seconds(secs).ok_or_else(|| {
            bad(
                flag,
                format!("must be from 0 to about 1.8e19 seconds, found {secs}"),
                "write a non-negative number of seconds, e.g. `30`",
            )
        })
    };
    if let Some(secs) = flags.poll_interval {
        config.poll_interval = duration("--poll-interval", secs)?;
    }
    if let Some(secs) = flags.init_check_timeout {
        config.init_check_timeout = duration("--init-check-timeout", secs)?;
    }
    if let Some(secs) = flags.image_pull_grace {
        config.image_pull_grace = duration("--image-pull-grace", secs)?;
    }
    if let Some(secs) = flags.stopped_run_timeout {
        config.stopped_run_timeout = duration("--stopped-run-timeout", secs)?;
    }
    if let Some(secs) = flags.start_timeout {
        config.start_timeout = start_timeout(secs);
    }
    if let Some(addr) = &flags.health_addr {
        config.health_addr = socket_addr(addr).map_err(|p| bad("--health-addr", p, ADDR_FIX))?;
    }
    if let Some(addr) = &flags.metrics_addr {
        config.metrics_addr = socket_addr(addr).map_err(|p| bad("--metrics-addr", p, ADDR_FIX))?;
    }
    if !flags.target_namespaces.is_empty() {
        config.target_namespaces = flags
            .target_namespaces
            .iter()
            .flat_map(|ns| comma_list(ns))
            .collect();
        if !config.target_namespaces.contains(&config.default_namespace)
            && let Some(first) = config.target_namespaces.iter().next()
        {
            config.default_namespace = first.clone();
        }
    }
    config
        .allowed_macros
        .extend(flags.allowed_macros.iter().cloned());
    config
        .allowed_fields
        .extend(flags.allowed_fields.iter().cloned());
    if let Some(identity) = &flags.identity {
        config.identity = Some(identity.clone());
    }
    if let Some(format) = flags.log_format {
        config.log_format = format;
    }
    Ok(())
}

const LIMIT_FIX: &str = "write -1 for unlimited, 0 to never pop, or a positive number";
const ADDR_FIX: &str = "write `:8080`, `0.0.0.0:8080` or `127.0.0.1:8080`";

fn file_invalid(file: &ConfigFile<'_>, key: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        path: file.path.to_owned(),
        key: key.to_owned(),
        problem,
        fix: match key {
            "job_secrets" => "write `perRun` or `none`".to_owned(),
            _ => ADDR_FIX.to_owned(),
        },
    }
}

fn builder(file: &ConfigFile<'_>) -> Result<BuilderChoice, ConfigError> {
    let Some(block) = file.mapping("builder")? else {
        return Ok(BuilderChoice::Noop);
    };
    if block.is_empty() {
        return Ok(BuilderChoice::Noop);
    }
    let invalid = |problem: String, fix: &str| ConfigError::Invalid {
        path: file.path.to_owned(),
        key: "builder.type".to_owned(),
        problem,
        fix: fix.to_owned(),
    };
    match block.get("type").and_then(|t| t.as_str()) {
        Some("noop") => Ok(BuilderChoice::Noop),
        Some("kaniko") => Ok(BuilderChoice::Kaniko(Box::new(kaniko::options(
            file.path, block,
        )?))),
        Some("docker") => Err(invalid(
            "`docker` is not available: the agent runs in a cluster without a Docker daemon"
                .to_owned(),
            "use `type: kaniko`, or `type: noop` and push image jobs",
        )),
        Some(other) => Err(invalid(
            format!("unknown builder type `{other}`"),
            "write `noop` or `kaniko`",
        )),
        None => Err(invalid(
            "is missing: a non-empty builder block needs a type".to_owned(),
            "add `type: noop`",
        )),
    }
}

fn job_limit(value: i64) -> Result<JobLimit, String> {
    match value {
        -1 => Ok(JobLimit::Unlimited),
        n if n < -1 => Err(format!("must be -1 or more, found {n}")),
        n => u32::try_from(n)
            .map(JobLimit::AtMost)
            .map_err(|_| format!("is too large: {n}")),
    }
}

fn job_secrets(mode: &str) -> Result<JobSecrets, String> {
    match mode {
        "perRun" | "per-run" | "per_run" => Ok(JobSecrets::PerRun),
        "none" => Ok(JobSecrets::None),
        other => Err(format!("must be `perRun` or `none`, found {other:?}")),
    }
}

/// A duration of `secs` seconds: `None` for a negative, NaN or infinite value, or one too
/// large for a `Duration` (about 1.8e19 s), never a panic.
fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// W&B's agent: a value of 0 or less disables the start timeout; so does one too large to
/// ever end.
fn start_timeout(secs: f64) -> Option<Duration> {
    (secs > 0.0).then(|| seconds(secs)).flatten()
}

fn comma_list(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `:8080` means every interface; `host:port` as written.
fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_owned()
    };
    full.parse()
        .map_err(|_| format!("is not an address with a port: {text:?}"))
}

#[cfg(test)]
mod tests;
