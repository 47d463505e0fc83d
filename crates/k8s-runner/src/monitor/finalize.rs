//! The side effects of a terminal run: diagnostics, deleting a workload the agent failed,
//! cleanup. The final status goes back to the reconcile loop as [`Trigger::Finalized`].

use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::{MonitorContext, RunKey, Trigger};
use crate::api::RunRef;
use crate::cleanup::{cleanup_run, delete_workload};
use crate::diagnostics::collect;
use crate::state::{Diagnostics, FailureCause, RunState, RunStatus};

pub(super) async fn finalize(
    ctx: MonitorContext,
    tx: UnboundedSender<Trigger>,
    key: RunKey,
    run: RunRef,
    mut state: RunState,
) {
    let diagnostics = if matches!(state, RunState::Failed(_) | RunState::Preempted { .. }) {
        let collected = tokio::time::timeout(
            ctx.diagnostics_timeout,
            collect(&ctx.client, &run, ctx.log_tail_bytes),
        )
        .await
        .unwrap_or_default();
        Some(collected)
    } else {
        None
    };
    add_first_warning_event(&mut state, diagnostics.as_ref());
    // Failures the agent decided on its own (Kubernetes would keep the workload pending or
    // retrying) remove the workload, so a run reported failed can never start later.
    if let RunState::Failed(failure) = &state
        && failure.cause.decided_by_agent()
        && let Err(error) = delete_workload(&ctx.client, &run).await
    {
        warn!(run = %run.object(), error = %error, "could not delete the failed workload");
    }
    if ctx.cleanup_on_terminal {
        cleanup_run(&ctx.client, &run).await;
    }
    let status = RunStatus {
        state,
        warnings: Vec::new(),
        diagnostics,
    };
    let _ = tx.send(Trigger::Finalized { key, status });
}

/// A failure without a pod-level cause names the first warning event, if any.
fn add_first_warning_event(state: &mut RunState, diagnostics: Option<&Diagnostics>) {
    if let (RunState::Failed(failure), Some(diagnostics)) = (state, diagnostics)
        && matches!(
            failure.cause,
            FailureCause::WorkloadFailed { .. } | FailureCause::StartTimeout { .. }
        )
        && let Some(event) = diagnostics.events.iter().find(|e| e.starts_with("Warning"))
    {
        failure.message = format!("{} (event: {event})", failure.message);
    }
}
