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

use rlaunch_wandb_api::FailureStage;

use crate::context::{Context, Registration};
use crate::intent;
use crate::pipeline::report::{ItemFailure, report_failure};
use crate::pipeline::{PullSecret, Watched, watch_run};
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
            tracing::warn!(error = %error, "cannot list runs left in flight; none adopted, launch intents left for the next start");
            return;
        }
    };
    let adopted_items: Vec<String> = runs
        .iter()
        .filter_map(|r| r.run.run_queue_item_id.clone())
        .collect();
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
    recover_intents(ctx, registration, &adopted_items).await;
}

/// Launch intents whose item has a workload are done; the others were acked (or popped)
/// by an agent that died before the create: failed with a clear message, then deleted.
async fn recover_intents(ctx: &Context, registration: &Registration, adopted: &[String]) {
    let client = ctx.runner.client();
    let intents = match intent::list(
        client,
        &registration.identity,
        &ctx.config.watched_namespaces(),
    )
    .await
    {
        Ok(intents) => intents,
        Err(error) => {
            tracing::warn!(error = %error, "cannot list launch intents; items acked before a crash are reported on a later start");
            return;
        }
    };
    for intent in intents {
        if !adopted.contains(&intent.item_id) {
            tracing::warn!(item = %intent.item_id, queue = %intent.queue, run_id = %intent.run_id, "an item was acked but its workload never created (the agent stopped in between); failing it");
            let failure = ItemFailure::new(
                FailureStage::Agent,
                format!(
                    "the agent stopped after acknowledging this item and before creating its workload (run {}): nothing was launched; push the run again",
                    intent.run_id
                ),
            );
            report_failure(
                ctx,
                registration,
                &intent.item_id,
                &intent.queue,
                Some(&intent.run_id),
                &failure,
                None,
            )
            .await;
        }
        intent::forget(client, &intent.namespace, &intent.item_id).await;
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
        pull_secret: PullSecret::Unknown,
    }
}
