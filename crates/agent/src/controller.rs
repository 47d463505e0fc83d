//! The agent's loop: heartbeat, capacity-gated round-robin pop, one task per item, and a
//! bounded shutdown. Polling never waits on a job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rlaunch_builder::NoopBuilder;
use rlaunch_k8s_runner::{Runner, RunnerConfig};
use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{AgentStatus, Client, ClientConfig, LAUNCH_PROJECT};
use tokio::task::JoinSet;

use crate::config::{Config, LeaderElection, LeaseSettings};
use crate::context::{Context, Registration};
use crate::error::Error;
use crate::health::{Health, Readiness};
use crate::leader::Election;
use crate::metrics::Metrics;
use crate::queues::QueueRing;
use crate::retry::is_auth;
use crate::shutdown::{Shutdown, StopReason};
use crate::store::Store;

/// Consecutive 401/403 answers after which polling stops.
const AUTH_FAILURES_TO_STOP: u32 = 3;

/// The agent: build it with [`Agent::new`], run it with [`Agent::run`].
pub struct Agent {
    ctx: Arc<Context>,
}

/// Whether W&B accepts the key right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    Accepted,
    Failing { consecutive: u32 },
    Refused,
}

impl Agent {
    /// Builds the W&B client, the Kubernetes client and runner, and the builder.
    pub async fn new(config: Config, api_key: ApiKey) -> Result<Self, Error> {
        let mut client_config = ClientConfig::new(config.base_url.clone(), api_key.clone());
        client_config.extra_ca_file = config.extra_ca_file.clone();
        let wandb = Client::new(client_config).map_err(Error::WandbClient)?;
        let kube = kube::Client::try_default()
            .await
            .map_err(Error::KubeClient)?;
        let mut runner_config = RunnerConfig::default();
        runner_config.tracker.start_timeout = config
            .start_timeout
            .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
        runner_config.tracker.image_pull_grace = config.image_pull_grace;
        let runner = Runner::new(kube, runner_config);
        let builder = crate::kaniko::configured(&config, &runner, &wandb)
            .await?
            .unwrap_or_else(|| Arc::new(NoopBuilder));
        let builder =
            crate::pull_secret::with_registry_block(&config, builder).map_err(Error::Builder)?;
        Ok(Self::with_parts(config, api_key, wandb, runner).with_builder(builder))
    }

    /// An agent from ready-made parts (for embedding and tests).
    pub fn with_parts(config: Config, api_key: ApiKey, wandb: Client, runner: Runner) -> Self {
        Agent {
            ctx: Arc::new(Context {
                config,
                api_key,
                wandb,
                runner,
                builder: Arc::new(NoopBuilder),
                metrics: Metrics::new(),
                health: Health::default(),
                store: Store::default(),
            }),
        }
    }

    /// Replaces the image builder (the default is the noop builder), e.g. with one that
    /// pushes to a private registry and returns pull credentials. Call before [`Agent::run`].
    pub fn with_builder(mut self, builder: Arc<dyn rlaunch_builder::Builder>) -> Self {
        match Arc::get_mut(&mut self.ctx) {
            Some(ctx) => ctx.builder = builder,
            None => {
                tracing::warn!("the agent's context is shared already; the builder is not replaced")
            }
        }
        self
    }

    /// The shared context (metrics, health, store), e.g. to serve them elsewhere.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Serves health and metrics, registers, adopts, then polls until `shutdown` or a
    /// stop request from W&B. Returns why it stopped; errors only for problems no retry
    /// can fix (a missing queue, a port in use).
    pub async fn run(self, mut shutdown: Shutdown) -> Result<StopReason, Error> {
        let ctx = self.ctx;
        let (health_addr, metrics_addr) = crate::health::serve(
            ctx.config.health_addr,
            ctx.config.metrics_addr,
            ctx.health.clone(),
            ctx.metrics.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!(%health_addr, %metrics_addr, "serving /livez, /readyz and /metrics");
        let mut election = match &ctx.config.leader_election {
            LeaderElection::Off => None,
            LeaderElection::On(settings) => {
                let Some(election) = stand_by(&ctx, settings, &mut shutdown).await? else {
                    return Ok(shutdown.reason().unwrap_or(StopReason::Signal));
                };
                Some(election)
            }
        };
        let outcome = lead(&ctx, election.as_mut(), &mut shutdown).await;
        if let Some(election) = election {
            match outcome {
                Err(Error::LeadershipLost { .. }) => {}
                _ => election.release().await,
            }
        }
        outcome
    }
}

/// Waits (ready, as a standby) until this replica holds the Lease. `None` on shutdown.
async fn stand_by(
    ctx: &Context,
    settings: &LeaseSettings,
    shutdown: &mut Shutdown,
) -> Result<Option<Election>, Error> {
    let mut election = crate::leader::start(&ctx.config, settings).await?;
    ctx.health.set(Readiness::Standby {
        lease: election.lease.name.clone(),
    });
    tokio::select! {
        _ = shutdown.wait() => {
            election.release().await;
            Ok(None)
        }
        leading = election.leading() => {
            if leading {
                Ok(Some(election))
            } else {
                Err(lost(&election))
            }
        }
    }
}

fn lost(election: &Election) -> Error {
    Error::LeadershipLost {
        namespace: election.lease.namespace.clone(),
        name: election.lease.name.clone(),
    }
}

/// Registers, adopts and polls; with an election, only while this replica leads.
async fn lead(
    ctx: &Arc<Context>,
    election: Option<&mut Election>,
    shutdown: &mut Shutdown,
) -> Result<StopReason, Error> {
    let Some(election) = election else {
        return work(ctx, shutdown, &mut JoinSet::new()).await;
    };
    let mut tasks = JoinSet::new();
    let outcome = tokio::select! {
        biased;
        () = election.lost() => Err(lost(election)),
        outcome = work(ctx, shutdown, &mut tasks) => outcome,
    };
    if outcome.is_err() {
        // Leadership lost: cancel every item task before it acks, submits or reports
        // anything more; workloads stay for the new leader to adopt.
        ctx.health.set(Readiness::Stopping);
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    outcome
}

async fn work(
    ctx: &Arc<Context>,
    shutdown: &mut Shutdown,
    tasks: &mut JoinSet<()>,
) -> Result<StopReason, Error> {
    let Some(registration) = crate::register::register(ctx, shutdown).await? else {
        return Ok(shutdown.reason().unwrap_or(StopReason::Signal));
    };
    let registration = Arc::new(registration);
    crate::adopt::adopt(ctx, &registration, tasks).await;
    ctx.health.set(Readiness::Polling {
        agent_name: registration.agent_name.clone(),
    });
    let reason = poll_loop(ctx, &registration, tasks, shutdown).await;
    stop(ctx, &registration, std::mem::take(tasks), reason).await;
    Ok(reason)
}

struct Loop {
    ring: QueueRing,
    ticks: u64,
    auth: Auth,
    last_status: Option<AgentStatus>,
    last_status_line: Option<Instant>,
}

/// W&B's agent prints a status line every 300 s (every 20 s when verbose).
fn status_line(ctx: &Context, registration: &Registration, state: &mut Loop) {
    let every = if ctx.config.verbosity == 0 {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(20)
    };
    if state
        .last_status_line
        .is_some_and(|at| at.elapsed() < every)
    {
        return;
    }
    state.last_status_line = Some(Instant::now());
    let queues: Vec<&str> = registration
        .queues
        .iter()
        .map(|q| q.name.as_str())
        .collect();
    tracing::info!(
        agent = %registration.agent_name,
        polling = ctx.store.has_room(ctx.config.max_jobs) && state.auth != Auth::Refused,
        queues = %queues.join(","),
        running = ctx.store.jobs_holding_slots(),
        max_jobs = ctx.config.max_jobs.as_i64(),
        "agent status"
    );
}

async fn poll_loop(
    ctx: &Arc<Context>,
    registration: &Arc<Registration>,
    tasks: &mut JoinSet<()>,
    shutdown: &mut Shutdown,
) -> StopReason {
    let mut state = Loop {
        ring: QueueRing::new(registration.queues.clone()),
        ticks: 0,
        auth: Auth::Accepted,
        last_status: None,
        last_status_line: None,
    };
    let mut changes = ctx.store.changes();
    loop {
        reap(tasks);
        if let Some(reason) = shutdown.reason() {
            return reason;
        }
        state.ticks += 1;
        if heartbeat(ctx, registration, &mut state).await {
            return StopReason::StopPolling;
        }
        let popped = if state.auth != Auth::Refused && ctx.store.has_room(ctx.config.max_jobs) {
            pop_one(ctx, registration, &mut state, tasks).await
        } else {
            false
        };
        ctx.metrics.set_jobs(&ctx.store.counts());
        status_line(ctx, registration, &mut state);
        if popped && ctx.store.has_room(ctx.config.max_jobs) {
            continue;
        }
        let sleep = tokio::time::sleep(ctx.config.poll_interval);
        tokio::pin!(sleep);
        let full = !ctx.store.has_room(ctx.config.max_jobs);
        changes.borrow_and_update();
        loop {
            tokio::select! {
                reason = shutdown.wait() => return reason,
                () = &mut sleep => break,
                changed = changes.changed(), if full => {
                    if changed.is_err() || ctx.store.has_room(ctx.config.max_jobs) {
                        break;
                    }
                }
            }
        }
    }
}

fn reap(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.try_join_next() {
        if let Err(error) = result
            && error.is_panic()
        {
            tracing::error!(%error, "an item task panicked; the item's lease will return it to the queue");
        }
    }
}

/// The `launchAgent` query (stop request, liveness) and, every second tick or on change,
/// the status. Returns true when W&B asks the agent to stop.
async fn heartbeat(ctx: &Context, registration: &Registration, state: &mut Loop) -> bool {
    match ctx.wandb.launch_agent(&registration.agent_id).await {
        Ok(agent) => {
            if state.auth != Auth::Accepted {
                tracing::info!("W&B accepts the API key again; polling resumes");
                ctx.health.set(Readiness::Polling {
                    agent_name: registration.agent_name.clone(),
                });
            }
            state.auth = Auth::Accepted;
            if agent.stop_polling {
                tracing::info!(agent = %registration.agent_name, "stop requested from W&B (stopPolling)");
                return true;
            }
        }
        Err(error) => note_error(ctx, state, "LaunchAgent", &error),
    }
    let status = if ctx.store.snapshot().is_empty() {
        AgentStatus::Polling
    } else {
        AgentStatus::Running
    };
    if state.auth != Auth::Refused
        && (state.ticks.is_multiple_of(2) || state.last_status != Some(status))
    {
        match ctx
            .wandb
            .update_launch_agent(&registration.agent_id, status)
            .await
        {
            Ok(true) => state.last_status = Some(status),
            Ok(false) => tracing::warn!(status = %status, "W&B did not accept the agent status"),
            Err(error) => note_error(ctx, state, "updateLaunchAgent", &error),
        }
    }
    false
}

fn note_error(
    ctx: &Context,
    state: &mut Loop,
    operation: &'static str,
    error: &rlaunch_wandb_api::Error,
) {
    ctx.metrics.api_error(operation, error.kind());
    if !is_auth(error) {
        tracing::warn!(operation, error = %error, "W&B call failed; will retry");
        return;
    }
    let (next, just_refused) = next_auth(state.auth, AUTH_FAILURES_TO_STOP);
    if just_refused {
        tracing::error!(operation, error = %error, "W&B keeps refusing the API key: polling stopped, /readyz fails; fix the key (WANDB_API_KEY or WANDB_API_KEY_FILE)");
        ctx.health.set(Readiness::Unauthorized {
            reason: error.to_string(),
        });
    }
    state.auth = next;
}

/// The auth state after one more 401/403, and whether polling stops just now (pure).
fn next_auth(auth: Auth, failures_to_stop: u32) -> (Auth, bool) {
    match auth {
        Auth::Accepted if failures_to_stop <= 1 => (Auth::Refused, true),
        Auth::Accepted => (Auth::Failing { consecutive: 1 }, false),
        Auth::Failing { consecutive } if consecutive + 1 >= failures_to_stop => {
            (Auth::Refused, true)
        }
        Auth::Failing { consecutive } => (
            Auth::Failing {
                consecutive: consecutive + 1,
            },
            false,
        ),
        Auth::Refused => (Auth::Refused, false),
    }
}

/// One `popFromRunQueue` per queue in ring order until one gives an item; that item gets
/// its own task. Returns true when an item was popped.
async fn pop_one(
    ctx: &Arc<Context>,
    registration: &Arc<Registration>,
    state: &mut Loop,
    tasks: &mut JoinSet<()>,
) -> bool {
    let order: Vec<String> = state.ring.order().iter().map(|q| q.name.clone()).collect();
    for queue in order {
        let popped = ctx
            .wandb
            .pop_from_run_queue(
                &registration.entity,
                LAUNCH_PROJECT,
                &queue,
                Some(&registration.agent_id),
            )
            .await;
        match popped {
            Ok(Some(item)) => {
                state.ring.served(&queue);
                let popped_at = Instant::now();
                tasks.spawn(crate::pipeline::run_item(
                    ctx.clone(),
                    registration.clone(),
                    item,
                    queue,
                    popped_at,
                ));
                return true;
            }
            Ok(None) => {}
            Err(error) => {
                note_error(ctx, state, "popFromRunQueue", &error);
                tracing::warn!(queue, error = %error, "pop failed; trying the next queue");
            }
        }
    }
    false
}

/// Stop popping, send `KILLED`, give items without a workload a bounded time to get one,
/// and leave running workloads untouched for the next agent to adopt.
async fn stop(
    ctx: &Context,
    registration: &Registration,
    mut tasks: JoinSet<()>,
    reason: StopReason,
) {
    ctx.health.set(Readiness::Stopping);
    tracing::info!(reason = ?reason, "shutting down: no more pops");
    match tokio::time::timeout(
        Duration::from_secs(10),
        ctx.wandb
            .update_launch_agent(&registration.agent_id, AgentStatus::Killed),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::warn!(error = %error, "could not send KILLED"),
        Err(_) => tracing::warn!("sending KILLED timed out"),
    }
    let deadline = tokio::time::Instant::now() + ctx.config.shutdown_grace;
    let mut changes = ctx.store.changes();
    while ctx.store.before_workload() > 0 {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(items = ctx.store.before_workload(), "shutdown grace over; items without a workload are left to their lease");
                break;
            }
            changed = changes.changed() => if changed.is_err() { break },
        }
    }
    for (item, queue, phase) in ctx.store.snapshot() {
        tracing::info!(
            item,
            queue,
            run_id = phase.run_id().unwrap_or(""),
            state = phase.name(),
            "left for adoption by the next agent"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_stops_after_consecutive_refusals_and_logs_once() {
        let mut auth = Auth::Accepted;
        let mut stops = 0;
        for _ in 0..10 {
            let (next, refused_now) = next_auth(auth, 3);
            stops += usize::from(refused_now);
            auth = next;
        }
        assert_eq!(auth, Auth::Refused);
        assert_eq!(stops, 1, "one clear log line, not one per call");
        assert_eq!(
            next_auth(Auth::Accepted, 3),
            (Auth::Failing { consecutive: 1 }, false)
        );
        assert_eq!(
            next_auth(Auth::Failing { consecutive: 2 }, 3),
            (Auth::Refused, true)
        );
    }
}
