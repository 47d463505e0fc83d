//! Command-line flags. W&B's agent's flags (`-q -e -j -c -v`) keep their meaning; the rest
//! are ours. Environment variables are read by [`crate::Config::resolve`], not by clap, so
//! precedence (defaults < file < environment < flags) lives in one tested place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `launch-agent`: pops W&B Launch run queue items and runs them on Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "launch-agent", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: run the agent).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Agent settings.
    #[command(flatten)]
    pub flags: Flags,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default).
    Run,
    /// Check the config, the W&B credentials (a `viewer` call), that every queue exists and
    /// that the cluster is reachable; print a report and exit 0 only if all pass.
    Check,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Flags shared by every subcommand. Unset flags leave the file and environment values.
#[derive(Clone, Debug, Default, Args)]
pub struct Flags {
    /// Queue to poll (repeatable); replaces the config's `queues`.
    #[arg(short = 'q', long = "queue", global = true, value_name = "NAME")]
    pub queues: Vec<String>,
    /// Entity owning the queues (default: the API key's user).
    #[arg(short = 'e', long, global = true, value_name = "NAME")]
    pub entity: Option<String>,
    /// Maximum concurrent jobs; -1 means unlimited, 0 never pops.
    #[arg(
        short = 'j',
        long,
        global = true,
        allow_hyphen_values = true,
        value_name = "N"
    )]
    pub max_jobs: Option<i64>,
    /// Config file (default `$HOME/.config/wandb/launch-config.yaml`).
    #[arg(short = 'c', long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More logging (repeat for more).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Seconds between polls of an idle queue (default 10).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub poll_interval: Option<f64>,
    /// Address of `/livez` and `/readyz` (`LAUNCH_AGENT_HEALTH_ADDR`, default `:8080`).
    #[arg(long, global = true, value_name = "ADDR")]
    pub health_addr: Option<String>,
    /// Address of `/metrics` (`LAUNCH_AGENT_METRICS_ADDR`, default `:9090`).
    #[arg(long, global = true, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Namespace the agent may create workloads in (repeatable;
    /// `LAUNCH_AGENT_TARGET_NAMESPACES`, comma-separated). Others are refused before ack.
    #[arg(long = "target-namespace", global = true, value_name = "NS")]
    pub target_namespaces: Vec<String>,
    /// Agent environment variable a queue config may use as a `${NAME}` macro (repeatable).
    #[arg(long = "allow-macro", global = true, value_name = "NAME")]
    pub allowed_macros: Vec<String>,
    /// Field allowed despite the security refuse-list, e.g. `serviceAccountName` (repeatable).
    #[arg(long = "allow-field", global = true, value_name = "FIELD")]
    pub allowed_fields: Vec<String>,
    /// Seconds a run may take to start before it fails (`WANDB_LAUNCH_START_TIMEOUT`;
    /// 0 or less disables it).
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        allow_hyphen_values = true
    )]
    pub start_timeout: Option<f64>,
    /// Seconds to wait for a finished run to show up as initialised in W&B (default 60).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub init_check_timeout: Option<f64>,
    /// Seconds an image may fail to pull (ErrImagePull, ImagePullBackOff) or a container
    /// fail to be created before the run fails (default 120).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub image_pull_grace: Option<f64>,
    /// Seconds between a stop request from W&B and cancelling the workload (default 60).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub stopped_run_timeout: Option<f64>,
    /// Stable agent identity used to adopt runs after a restart (`LAUNCH_AGENT_IDENTITY`).
    #[arg(long, global = true, value_name = "NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Hold a Lease before polling, so several replicas can run (`LAUNCH_AGENT_LEADER_ELECTION`).
    #[arg(long, global = true)]
    pub leader_election: bool,
    /// Lease name (`LAUNCH_AGENT_LEASE_NAME`; default derived from the identity).
    #[arg(long, global = true, value_name = "NAME")]
    pub lease_name: Option<String>,
    /// Lease namespace (`LAUNCH_AGENT_LEASE_NAMESPACE`; default `POD_NAMESPACE`).
    #[arg(long, global = true, value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds (`LAUNCH_AGENT_LEASE_DURATION_SECONDS`; default 15).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub lease_duration: Option<u64>,
    /// Seconds the leader retries a failing renewal (`LAUNCH_AGENT_RENEW_DEADLINE_SECONDS`; 10).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub renew_deadline: Option<u64>,
    /// Seconds between renewals and tries (`LAUNCH_AGENT_RETRY_PERIOD_SECONDS`; default 2).
    #[arg(long, global = true, value_name = "SECONDS")]
    pub retry_period: Option<u64>,
}
