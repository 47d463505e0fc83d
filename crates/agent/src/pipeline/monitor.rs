//! Watching a workload to its end and reporting the outcome: warnings raised per run,
//! a stop from the W&B UI cancels once, the slot frees the moment the workload is
//! terminal, then the outcome is reported without holding it.

use std::time::{Duration, Instant};

use rlaunch_k8s_runner::{RequeueRecord, RunHandle, RunState, RunStatus, WarningChange};
use rlaunch_model::ApiKey;
use rlaunch_wandb_api::{FailureStage, LAUNCH_PROJECT, PushRequest};
use serde_json::Value;

use super::report::{ItemFailure, report_failure};
use super::time_to_gpu::{GpuUse, TimeToGpu};
use crate::context::{Context, Registration};
use crate::store::Phase;

/// A run being watched.
pub(crate) struct Watched {
    pub item_id: String,
    pub queue: String,
    pub run_id: String,
    /// Target entity and project of the run (unknown only for workloads created before
    /// the runner recorded them).
    pub target: Option<(String, String)>,
    /// What a preemption requeue needs: from the popped spec, or for an adopted run the
    /// record the submission kept on the workload.
    pub requeue: Option<RequeueRecord>,
    /// The run spec's own API key, redacted from reports (never kept on the cluster, so
    /// unknown for adopted runs).
    pub spec_key: Option<ApiKey>,
    /// When the workload was created by this process (unknown for adopted runs).
    pub created_at: Option<Instant>,
    /// Whether the agent created an image-pull Secret for the run.
    pub pull_secret: PullSecret,
    /// GPUs the workload requests, for the GPU-seconds metric (0 for adopted runs: their
    /// manifest is not at hand, so they are not counted).
    pub gpus: u32,
}

/// The run's `regcred-<run id>` Secret, as far as this process knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PullSecret {
    /// None was created.
    None,
    /// This process created it.
    Created,
    /// An adopted run: there may be one (deleted only if it carries the run's labels).
    Unknown,
}

/// Whether a W&B stop request was seen and acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopRequest {
    None,
    Seen { at: Instant },
    Cancelled,
}

/// Watches until terminal, then reports.
pub(crate) async fn watch_run(
    ctx: &Context,
    registration: &Registration,
    watched: Watched,
    mut handle: RunHandle,
) {
    let mut stop = StopRequest::None;
    let mut last_state = "starting";
    let check_every = ctx.config.poll_interval.max(Duration::from_secs(1));
    let mut stop_check = tokio::time::interval(check_every);
    stop_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut clock = watched.created_at.map(TimeToGpu::created);
    let mut gpu_use = GpuUse::new(watched.gpus);
    let status = loop {
        forward_warnings(ctx, &watched, &mut handle).await;
        let status = handle.status();
        let now = Instant::now();
        for (step, elapsed) in clock
            .as_mut()
            .map(|c| c.observe(&status.state, now))
            .unwrap_or_default()
        {
            ctx.metrics.time_to_gpu(&watched.queue, step, elapsed);
        }
        record_gpu_use(ctx, &watched, gpu_use.observe(&status.state, now));
        if status.state.is_terminal() {
            break status;
        }
        if status.state.name() != last_state {
            last_state = status.state.name();
            tracing::info!(item = %watched.item_id, queue = %watched.queue, run_id = %watched.run_id, state = %status.state, "item state");
            ctx.store.set(
                &watched.item_id,
                Phase::Running {
                    run_id: watched.run_id.clone(),
                    workload: handle.run().object(),
                    state: last_state,
                },
            );
            ctx.metrics.set_jobs(&ctx.store.counts());
        }
        tokio::select! {
            changed = handle.changed() => if changed.is_none() { break handle.status() },
            _ = stop_check.tick() => stop = check_stop(ctx, &watched, &handle, stop).await,
        }
    };
    if !status.state.is_terminal() {
        tracing::info!(item = %watched.item_id, run_id = %watched.run_id, "monitor stopped before the run ended; left for adoption");
        return;
    }
    ctx.store.set(
        &watched.item_id,
        Phase::Reporting {
            run_id: watched.run_id.clone(),
            state: status.state.name(),
        },
    );
    ctx.metrics.set_jobs(&ctx.store.counts());
    tracing::info!(item = %watched.item_id, queue = %watched.queue, run_id = %watched.run_id, state = %status.state, "workload terminal; slot freed");
    report_outcome(
        ctx,
        registration,
        &watched,
        status,
        stop == StopRequest::Cancelled,
    )
    .await;
    remove_reported(ctx, &watched, &handle).await;
    if watched.pull_secret != PullSecret::None {
        let run = handle.run();
        crate::pull_secret::remove(
            ctx.runner.client(),
            &run.namespace,
            &watched.run_id,
            &registration.identity,
        )
        .await;
    }
}

fn record_gpu_use(ctx: &Context, watched: &Watched, seconds: f64) {
    if seconds > 0.0 {
        let entity = watched
            .target
            .as_ref()
            .map_or("", |(entity, _)| entity.as_str());
        ctx.metrics.gpu_seconds(&watched.queue, entity, seconds);
    }
}

/// Once the outcome is in W&B (with events and log tails for failures), the terminal
/// workload goes: a restarted agent must not adopt and report it a second time. (W&B's
/// agent leaves it to the Job's 60 s TTL, so a record could vanish before it was reported.)
async fn remove_reported(ctx: &Context, watched: &Watched, handle: &RunHandle) {
    ctx.runner.untrack(handle.run());
    if let Err(error) = ctx.runner.cancel(handle.run()).await {
        tracing::warn!(item = %watched.item_id, run_id = %watched.run_id, error = %error, "cannot remove the reported workload; a restarted agent may report it again");
    }
}

async fn forward_warnings(ctx: &Context, watched: &Watched, handle: &mut RunHandle) {
    for change in handle.warning_changes() {
        match change {
            WarningChange::Raised(warning) => {
                tracing::info!(item = %watched.item_id, run_id = %watched.run_id, warning = %warning, "warning raised");
                if let Err(error) = ctx
                    .wandb
                    .update_run_queue_item_warning(
                        &watched.item_id,
                        FailureStage::Kubernetes,
                        &warning.to_string(),
                        &[],
                    )
                    .await
                {
                    ctx.metrics
                        .api_error("updateRunQueueItemWarning", error.kind());
                }
            }
            WarningChange::Cleared(warning) => {
                tracing::info!(item = %watched.item_id, run_id = %watched.run_id, warning = %warning, "warning cleared");
            }
        }
    }
}

/// A stop from the W&B UI cancels the workload once, `stopped_run_timeout` after it was
/// first seen.
async fn check_stop(
    ctx: &Context,
    watched: &Watched,
    handle: &RunHandle,
    stop: StopRequest,
) -> StopRequest {
    let Some((entity, project)) = &watched.target else {
        return stop;
    };
    match stop {
        StopRequest::Cancelled => stop,
        StopRequest::None => match ctx
            .wandb
            .run_stopped(entity, project, &watched.run_id)
            .await
        {
            Ok(true) => {
                tracing::info!(item = %watched.item_id, run_id = %watched.run_id, "stop requested in W&B");
                StopRequest::Seen { at: Instant::now() }
            }
            Ok(false) => stop,
            Err(error) => {
                ctx.metrics.api_error("RunStoppedStatus", error.kind());
                stop
            }
        },
        StopRequest::Seen { at } if at.elapsed() >= ctx.config.stopped_run_timeout => {
            match ctx.runner.cancel(handle.run()).await {
                Ok(()) => {
                    tracing::info!(item = %watched.item_id, run_id = %watched.run_id, "workload cancelled after a stop request");
                    StopRequest::Cancelled
                }
                Err(error) => {
                    tracing::warn!(item = %watched.item_id, error = %error, "cancel failed; will retry");
                    stop
                }
            }
        }
        StopRequest::Seen { .. } => stop,
    }
}

async fn report_outcome(
    ctx: &Context,
    registration: &Registration,
    watched: &Watched,
    status: RunStatus,
    cancelled_by_stop: bool,
) {
    let spec_key = watched.spec_key.as_ref();
    let failure = match status.state {
        RunState::Finished => match &watched.target {
            Some(target) if !initialised(ctx, target, &watched.run_id).await => {
                Some(ItemFailure::new(
                    FailureStage::Run,
                    "The submitted job exited successfully but failed to call wandb.init",
                ))
            }
            _ => {
                tracing::info!(item = %watched.item_id, queue = %watched.queue, run_id = %watched.run_id, state = "finished", "item finished");
                None
            }
        },
        RunState::Failed(failure) => Some(ItemFailure {
            stage: FailureStage::Run,
            message: format!("{} ({})", failure.message, failure.cause.reason()),
            diagnostics: status.diagnostics,
        }),
        RunState::Stopped { .. } if cancelled_by_stop => None,
        RunState::Stopped { reason } => Some(ItemFailure::new(
            FailureStage::Run,
            format!("the workload was deleted before it finished: {reason}"),
        )),
        RunState::Preempted { reason } => {
            requeue(ctx, registration, watched, &reason, status.diagnostics).await
        }
        RunState::Starting | RunState::Queued { .. } | RunState::Running => None,
    };
    if let Some(failure) = failure {
        if watched.created_at.is_none() && already_failed(ctx, registration, watched).await {
            tracing::info!(item = %watched.item_id, run_id = %watched.run_id, "the adopted run's failure is already in W&B (reported before a restart); not reporting it twice");
            return;
        }
        report_failure(
            ctx,
            registration,
            &watched.item_id,
            &watched.queue,
            Some(&watched.run_id),
            &failure,
            spec_key,
        )
        .await;
    }
}

/// For an adopted run: whether W&B already has the item failed — the previous process
/// reported it and was stopped before it removed the workload. Unknown counts as no.
async fn already_failed(ctx: &Context, registration: &Registration, watched: &Watched) -> bool {
    let info = ctx
        .wandb
        .run_queue_item_info(
            &registration.entity,
            LAUNCH_PROJECT,
            &watched.queue,
            &watched.item_id,
        )
        .await;
    match info {
        Ok(info) => info.and_then(|i| i.state).as_deref() == Some("FAILED"),
        Err(error) => {
            ctx.metrics.api_error("RunQueueItemInfo", error.kind());
            false
        }
    }
}

/// W&B's "finished?" check, on the run's own entity and project: any state but `pending`
/// means the workload called `wandb.init`. Backs off 1, 2, 4, … s up to the timeout.
async fn initialised(ctx: &Context, (entity, project): &(String, String), run_id: &str) -> bool {
    let deadline = Instant::now() + ctx.config.init_check_timeout;
    let mut wait = Duration::from_secs(1);
    loop {
        match ctx.wandb.run_state(entity, project, run_id).await {
            Ok(Some(state)) if state != "pending" => return true,
            Ok(_) => {}
            Err(error) => ctx.metrics.api_error("RunState", error.kind()),
        }
        if Instant::now() + wait > deadline {
            return false;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

/// Requeue a preempted run under the same run id (resume), within the budget.
async fn requeue(
    ctx: &Context,
    registration: &Registration,
    watched: &Watched,
    reason: &str,
    diagnostics: Option<rlaunch_k8s_runner::Diagnostics>,
) -> Option<ItemFailure> {
    let Some(record) = &watched.requeue else {
        return Some(ItemFailure {
            stage: FailureStage::Run,
            message: format!(
                "the run was preempted ({reason}) but its run spec was not kept on the workload (too large), so it cannot be requeued; push it again to resume"
            ),
            diagnostics,
        });
    };
    let Some(raw) = record.run_spec.as_object() else {
        return Some(ItemFailure::new(
            FailureStage::Run,
            format!(
                "the run was preempted ({reason}) and its kept run spec is not an object; push it again to resume"
            ),
        ));
    };
    let budget = ctx.config.preemption_retries;
    if record.resume_count >= budget {
        return Some(ItemFailure {
            stage: FailureStage::Run,
            message: format!(
                "the run was preempted ({reason}) and has already been resumed {budget} times"
            ),
            diagnostics,
        });
    }
    let mut raw = raw.clone();
    raw.insert("run_id".to_owned(), Value::String(watched.run_id.clone()));
    raw.insert(
        "_resume_count".to_owned(),
        Value::from(record.resume_count + 1),
    );
    raw.remove("sweep_id");
    let push = PushRequest {
        entity: registration.entity.clone(),
        project: LAUNCH_PROJECT.to_owned(),
        queue: watched.queue.clone(),
        run_spec: Value::Object(raw),
        priority: record.priority,
        template_variables: record.template_variables.clone(),
    };
    match ctx.wandb.push_to_run_queue_by_name(&push).await {
        Ok(Some(pushed)) => {
            ctx.metrics.requeued(&watched.queue);
            tracing::info!(item = %watched.item_id, run_id = %watched.run_id, new_item = %pushed.id, reason, "run preempted; requeued to resume");
            None
        }
        Ok(None) => Some(ItemFailure::new(
            FailureStage::Run,
            format!("the run was preempted ({reason}) and W&B did not accept the requeue"),
        )),
        Err(error) => Some(ItemFailure::new(
            FailureStage::Run,
            format!("the run was preempted ({reason}) and could not be requeued: {error}"),
        )),
    }
}
