//! Adoption on restart: every workload of this identity still in the cluster is watched
//! again (counting against `max_jobs`), and outcomes reached while the agent was down are
//! reported.

use std::sync::Arc;

use tokio::task::JoinSet;

use crate::context::{Context, Registration};
use crate::pipeline::{Watched, watch_run};
use crate::store::Phase;

/// Queue label of adopted runs whose queue is not recorded on the workload.
const UNKNOWN_QUEUE: &str = "(adopted)";

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
        let Some(item_id) = in_flight.run.run_queue_item_id.clone() else {
            continue;
        };
        if !ctx.store.insert(
            &item_id,
            UNKNOWN_QUEUE,
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
        tracing::info!(item = %item_id, run_id = %in_flight.run.run_id, workload = %in_flight.run.object(), state = %in_flight.state, "adopted a run left in flight");
        let handle = ctx.runner.track(in_flight.run.clone()).await;
        let watched = Watched {
            item_id: item_id.clone(),
            queue: UNKNOWN_QUEUE.to_owned(),
            run_id: in_flight.run.run_id.clone(),
            target: None,
            spec: None,
            created_at: None,
        };
        let ctx = ctx.clone();
        let registration = registration.clone();
        tasks.spawn(async move {
            watch_run(&ctx, &registration, watched, handle).await;
            ctx.store.remove(&item_id);
        });
    }
}
