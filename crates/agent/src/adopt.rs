//! Adoption on restart: every run workload of this identity still in the cluster is
//! watched again (counting against `max_jobs`), and outcomes reached while the agent was
//! down are reported.
//!
//! An adopted run is a full run: the workload carries its W&B coordinates (entity,
//! project, queue, run queue item, run id) and the requeue record written at submit, so it
//! gets the stop-from-UI check and the "finished?" check on its own entity/project, and a
//! preemption (also one that happened while no agent ran) is requeued with resume. Image
//! builds are never adopted as runs.

use std::sync::Arc;

use tokio::task::JoinSet;

use rlaunch_k8s_runner::{InFlightRun, WorkloadRole};

use crate::context::{Context, Registration};
use crate::pipeline::{Watched, watch_run};
use crate::store::Phase;

/// Queue label of adopted runs whose queue is not recorded on the workload (created
/// before the runner recorded it).
const UNKNOWN_QUEUE: &str = "(unknown queue)";

pub(crate) async fn adopt(
    ctx: &Arc<Context>,
    registration: &Arc<Registration>,
    tasks: &mut JoinSet<()>,
) {
    let kinds = ctx.runner.served_custom_kinds().await;
    let runs = match ctx
        .runner
        .list_in_flight(
            &registration.identity,
            &ctx.config.watched_namespaces(),
            &kinds,
        )
        .await
    {
        Ok(runs) => runs,
        Err(error) => {
            tracing::warn!(error = %error, "cannot list runs left in flight; none adopted");
            return;
        }
    };
    for in_flight in runs {
        if in_flight.run.role != WorkloadRole::Run {
            continue;
        }
        let Some(item_id) = in_flight.run.run_queue_item_id.clone() else {
            continue;
        };
        let watched = watched(&item_id, &in_flight);
        if !ctx.store.insert(
            &item_id,
            &watched.queue,
            false,
            Phase::Running {
                run_id: in_flight.run.run_id.clone(),
                workload: in_flight.run.object(),
                state: in_flight.state.name(),
            },
        ) {
            continue;
        }
        ctx.metrics.adopted();
        tracing::info!(item = %item_id, queue = %watched.queue, run_id = %in_flight.run.run_id, workload = %in_flight.run.object(), state = %in_flight.state, "adopted a run left in flight");
        let handle = ctx.runner.track(in_flight.run.clone()).await;
        let ctx = ctx.clone();
        let registration = registration.clone();
        tasks.spawn(async move {
            watch_run(&ctx, &registration, watched, handle).await;
            ctx.store.remove(&item_id);
        });
    }
}

/// What the monitor needs of an adopted run, from the workload's annotations.
fn watched(item_id: &str, in_flight: &InFlightRun) -> Watched {
    let run = &in_flight.run;
    Watched {
        item_id: item_id.to_owned(),
        queue: run
            .queue
            .clone()
            .unwrap_or_else(|| UNKNOWN_QUEUE.to_owned()),
        run_id: run.run_id.clone(),
        target: run.entity.clone().zip(run.project.clone()),
        requeue: in_flight.requeue.clone(),
        spec_key: None,
        created_at: None,
    }
}
