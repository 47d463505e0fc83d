//! The W&B Launch agent for Kubernetes, as a library: `launch-agent` is a thin `main`
//! around it, and other tools can embed it.
//!
//! # The pipeline
//!
//! ```text
//! [leader election on: wait, ready as `standby`, until this replica holds the Lease]
//!   → register (queues by name → ids, createLaunchAgent, team check, stable identity)
//!   → adopt what this identity left in flight (runs with their queue, target and requeue
//!     record; image builds never), fail items acked but never launched (launch intents)
//!   → loop: heartbeat (launchAgent: stopPolling) · status · round-robin pop under max_jobs
//!       → one task per item:
//!         validate (before ack: rlaunch_render::validate with secure mode, target namespaces)
//!         → launch intent (a labelled ConfigMap) → ack → resolve (image job or job
//!           artifact) → build (Builder trait; noop)
//!         → render → pre-check (never fits fails in seconds) → submit (idempotent, with
//!           the requeue record) → intent deleted
//!         → monitor (warnings, stop from the UI → cancel once; time to GPU:
//!           pop→created, created→scheduled, scheduled→running)
//!         → slot freed when the workload is terminal → report (finished? check on the
//!           run's own entity/project, failRunQueueItem with stage and error file,
//!           preemption → requeue with resume)
//!   → SIGTERM/SIGINT or stopPolling: stop popping, KILLED, leave workloads for adoption,
//!     release the Lease
//!   → Lease lost (renewal failed or taken): cancel every item task at once, send nothing,
//!     leave workloads, exit non-zero (restart as a standby)
//! ```
//!
//! # Several replicas
//!
//! With `leader_election` (`LAUNCH_AGENT_LEADER_ELECTION=true`, set by the Helm chart when
//! `replicaCount > 1`) each replica competes for one `coordination.k8s.io` Lease, using
//! `kube-lease-manager`: it is maintained, built on the same `kube`/`k8s-openapi` as the
//! rest of the agent with no TLS stack of its own, takes the Lease with server-side apply
//! (two holders are impossible), and needs only create plus get/patch on the one Lease,
//! which is all the chart grants (no list, no delete). Only the holder registers, adopts
//! and polls; the standby's `/readyz` answers 200 `standby: …`, because a standby that
//! failed readiness would block every rolling update (new pods never become ready while the
//! old leader holds the Lease). A new leader adopts the identity's runs like a restarted
//! agent, so takeover needs nothing new: within one lease duration after the leader dies,
//! its workloads are adopted and reported once. A leader whose renewal fails (its client
//! times out after the renew deadline, so a hung call fails too) aborts its item tasks
//! before they ack, submit or report anything more and exits non-zero: a fresh standby is
//! simpler and safer than a process that tries to step down and back up in place. The
//! settings are [`LeaderElection`] and [`LeaseSettings`]: `lease_name` (default
//! `launch-agent-<identity>`), `lease_namespace` (default `POD_NAMESPACE`, else `default`),
//! `POD_NAME` (default the hostname) plus a per-process suffix as the holder, and `lease_duration_seconds` (15),
//! `renew_deadline_seconds` (10), `retry_period_seconds` (2), also as `LAUNCH_AGENT_*`
//! variables and flags. The leader renews every retry period.
//!
//! Main types: [`Config`] (one typed config: file, env, flags), [`Agent`] (the loop),
//! [`Cli`]/[`Flags`] (clap), [`Metrics`], [`Health`], [`Store`] (items in flight with
//! their [`Phase`]), [`check()`] (the `check` subcommand). [`INTENT_LABEL`] marks launch
//! intents; [`PAUSE_AFTER_ACK_ENV`] is a test-only fault hook.
//!
//! **Invariants:** this is the only crate that composes the W&B client, the Kubernetes
//! runner and the builders. No error of one item ends the process; W&B errors in the loop
//! are retried with backoff; no secret reaches a log, a metric label or a failure report.
//!
//! # Differs from W&B's agent
//!
//! 1. Restarts keep the identity, and runs left in flight are adopted and reported.
//! 2. SIGTERM is handled: `KILLED` is sent and workloads are left running for adoption.
//! 3. Loop-level API errors never end the process; a persistent 401/403 stops polling
//!    with one log line and a failing `/readyz` instead of a crash loop.
//! 4. The "finished?" check asks the run's own entity and project, and runs after the
//!    slot is freed, so a finished workload never holds `max_jobs` for a minute.
//! 5. A failed workload is reported with its classified cause and an error file with
//!    events and log tails, not a traceback.
//! 6. Validation happens before ack, so a bad queue config fails its item without a run.
//! 7. A stop from the W&B UI cancels once, not on every tick.
//! 8. An item acked before a crash is never forgotten: a launch intent, written before the
//!    ack and deleted once the workload exists, makes the next start fail it with a clear
//!    message (see the `intent` module: W&B offers no query for "items this agent acked").
//! 9. A run preempted while no agent ran is still requeued with resume: the run spec
//!    (without secrets) and resume count live on the workload.
//! 10. `check` asks the API server (SelfSubjectAccessReview) for every permission the
//!     runner's RBAC table and the agent's launch intents need, per watched namespace.
//! 11. `replicas > 1` is safe: the Lease holder alone polls and reports, a standby takes
//!     over within one lease duration and adopts (W&B's agent has no leader election).
//! 12. A refused ack is not a failure by itself: W&B's agent fails the item, which fails a
//!     run whose lease merely ran out (it is pending again) or that another agent holds.
//!     We check the item: claimed under our run id means our earlier ack ran and its
//!     answer was lost (go on); anything else is left to W&B, untouched.
//! 13. A failure is reported once: when the connection breaks after `failRunQueueItem`
//!     may have reached W&B, the client does not resend it (W&B's does, so one failure can
//!     be recorded twice); the agent reads the item and sends it again only if the item is
//!     not `FAILED`.
//! 14. The image-pull Secret of W&B's `registry: {type: ecr}` block (an ECR token,
//!     `regcred-<run id>`) is made only for runs whose image is in that registry, and is
//!     deleted after the report; W&B's agent makes one for every run, never deletes it, and
//!     reuses a stale one (expired token) on a name clash. A `gcr` block gives no Secret
//!     here (see the `pull_secret` module).
#![doc = include_str!("../README.md")]

mod adopt;
mod check;
mod cli;
mod config;
mod context;
mod controller;
mod error;
mod health;
mod identity;
mod intent;
mod kaniko;
mod leader;
mod logging;
mod metrics;
mod pipeline;
mod pull_secret;
mod queues;
mod register;
mod retry;
mod shutdown;
mod store;

pub use check::{AGENT_RBAC_RULES, CheckLine, check};
pub use cli::{Cli, Command, Flags, LogFormat};
pub use config::{
    ApiKeySource, BuilderChoice, CodePvc, Config, DEFAULT_CONFIG_PATH, JobLimit, JobSecrets,
    KanikoOptions, LaunchConfigFile, LeaderElection, LeaseSettings, launch_config_schema, load,
};
pub use context::{Context, Registration};
pub use controller::Agent;
pub use error::{ConfigError, Error, Result};
pub use health::{Health, Readiness};
pub use identity::identity;
pub use intent::{INTENT_LABEL, PAUSE_AFTER_ACK_ENV};
pub use logging::init_logging;
pub use metrics::Metrics;
pub use queues::{QueueRef, QueueRing};
pub use shutdown::{
    Shutdown, ShutdownTrigger, StopReason, channel as shutdown_channel, stop_on_signals,
};
pub use store::{PHASE_NAMES, Phase, Store};
