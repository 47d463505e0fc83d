//! Adoption on restart: every run workload of this identity still in the cluster is
//! watched again (counting against `max_jobs`), and outcomes reached while the agent was
//! down are reported.
//!
//! An adopted run is a full run: the workload carries its W&B coordinates (entity,
//! project, queue, run queue item, run id) and the requeue record written at submit, so it
//! gets the stop-from-UI check and the "finished?" check on its own entity/project, and a
//! preemption (also one that happened while no agent ran) is requeued with resume. Image
//! builds are never adopted as runs. Launch intents left without a workload are settled
//! here too (see [`crate::intent`]).

use std::sync::Arc;

use tokio::task::JoinSet;

use rlaunch_k8s_runner::{InFlightRun, RequeueRecord, WorkloadRole};
use rlaunch_model::RunSpec;
use rlaunch_wandb_api::{FailureStage, LAUNCH_PROJECT, QueueItemInfo, RunQueueItem};

use crate::context::{Context, Registration};
use crate::intent::{self, Intent, Launch};
use crate::pipeline::report::{ItemFailure, report_failure};
use crate::pipeline::{PullSecret, Resumed, Watched, resume_item, watch_run};
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
            let error = crate::pipeline::error_chain(&error);
            tracing::warn!(%error, "cannot list runs left in flight; none adopted, launch intents left for the next start");
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
    recover_intents(ctx, registration, &adopted_items, tasks).await;
}

/// Launch intents whose item has a workload are done; the others are settled by the
/// item's state in W&B (see [`crate::intent`]): the launch resumed, the intent dropped, or
/// the item failed with a clear message.
async fn recover_intents(
    ctx: &Arc<Context>,
    registration: &Arc<Registration>,
    adopted: &[String],
    tasks: &mut JoinSet<()>,
) {
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
        if adopted.contains(&intent.item_id) {
            intent::forget(client, &intent.namespace, &intent.item_id).await;
            continue;
        }
        let info = ctx
            .wandb
            .run_queue_item_info(
                &registration.entity,
                LAUNCH_PROJECT,
                &intent.queue,
                &intent.item_id,
            )
            .await;
        let info = info.unwrap_or_else(|error| {
            ctx.metrics.api_error("RunQueueItemInfo", error.kind());
            None
        });
        let settled = settle(&intent, info.as_ref());
        apply(ctx, registration, intent, settled, tasks).await;
    }
}

/// Carries out what [`settle`] decided for `intent`.
async fn apply(
    ctx: &Arc<Context>,
    registration: &Arc<Registration>,
    intent: Intent,
    settled: Settle,
    tasks: &mut JoinSet<()>,
) {
    let client = ctx.runner.client();
    match settled {
        Settle::Resume(item, requeue) => {
            let resumed = Resumed {
                item: *item,
                queue: intent.queue.clone(),
                run_id: intent.run_id.clone(),
                requeue: *requeue,
                namespace: intent.namespace.clone(),
            };
            // The task deletes the intent once the workload exists or the item failed.
            tasks.spawn(resume_item(ctx.clone(), registration.clone(), resumed));
        }
        Settle::Forget(why) => {
            tracing::info!(item = %intent.item_id, queue = %intent.queue, run_id = %intent.run_id, why, "launch intent without a workload dropped");
            intent::forget(client, &intent.namespace, &intent.item_id).await;
        }
        Settle::Fail(message) => {
            tracing::warn!(item = %intent.item_id, queue = %intent.queue, run_id = %intent.run_id, reason = %message, "an item was acked but its workload never created; failing it");
            let failure = ItemFailure::new(FailureStage::Agent, message);
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
            intent::forget(client, &intent.namespace, &intent.item_id).await;
        }
    }
}

/// What to do with a launch intent whose item has no workload.
#[derive(Debug, PartialEq)]
enum Settle {
    /// Acked under the intent's run id: finish the launch.
    Resume(Box<RunQueueItem>, Box<RequeueRecord>),
    /// Nothing left to do here (why).
    Forget(&'static str),
    /// Fail the item with this message.
    Fail(String),
}

/// Decides from the item's state in W&B (pure; `None`: the server did not tell).
fn settle(intent: &Intent, info: Option<&QueueItemInfo>) -> Settle {
    let stopped = format!(
        "the agent stopped after acknowledging this item and before creating its workload (run {})",
        intent.run_id
    );
    let Some(state) = info.and_then(|info| info.state.as_deref()) else {
        return Settle::Fail(format!(
            "{stopped}, and W&B does not say whether the ack went through: nothing was launched; push the run again"
        ));
    };
    match state {
        "PENDING" | "LEASED" => {
            return Settle::Forget(
                "the ack never reached W&B: the item returns to its queue and is popped again",
            );
        }
        "CLAIMED" => {}
        _ => return Settle::Forget("the item is already done in W&B"),
    }
    if info.and_then(|info| info.associated_run_id.as_deref()) != Some(intent.run_id.as_str()) {
        return Settle::Forget("the item was acked under another run id (another agent)");
    }
    let record = match &intent.launch {
        Launch::Kept(record) => record,
        Launch::Unkept(reason) => {
            return Settle::Fail(format!(
                "{stopped}, and cannot finish the launch: {reason}; push the run again"
            ));
        }
    };
    match RunSpec::from_json(&record.run_spec.to_string()) {
        Ok(run_spec) => Settle::Resume(
            Box::new(RunQueueItem {
                id: intent.item_id.clone(),
                run_spec,
            }),
            record.clone(),
        ),
        Err(error) => Settle::Fail(format!(
            "{stopped}, and its kept run spec no longer reads ({error}); push the run again"
        )),
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
        gpus: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(launch: Launch) -> Intent {
        Intent {
            namespace: "ml".to_owned(),
            item_id: "item-1".to_owned(),
            run_id: "run1".to_owned(),
            queue: "gpu".to_owned(),
            launch,
        }
    }

    fn info(state: &str, run_id: Option<&str>) -> QueueItemInfo {
        QueueItemInfo {
            state: Some(state.to_owned()),
            associated_run_id: run_id.map(str::to_owned),
            ..QueueItemInfo::default()
        }
    }

    #[test]
    fn an_acked_item_is_resumed_and_the_rest_forgotten_or_failed_by_its_state() {
        let record = RequeueRecord::new(&serde_json::json!({"entity": "e", "project": "p"}), 0);
        let kept = intent(Launch::of(&record, false));
        let Settle::Resume(item, requeue) = settle(&kept, Some(&info("CLAIMED", Some("run1"))))
        else {
            panic!("an item acked under the intent's run id is resumed");
        };
        assert_eq!(
            (item.id.as_str(), item.run_spec.entity.as_str()),
            ("item-1", "e")
        );
        assert_eq!(*requeue, record);
        for state in ["PENDING", "LEASED", "FAILED", "FINISHED"] {
            let settled = settle(&kept, Some(&info(state, None)));
            assert!(matches!(settled, Settle::Forget(_)), "{state}: {settled:?}");
        }
        let other = settle(&kept, Some(&info("CLAIMED", Some("other"))));
        assert!(matches!(other, Settle::Forget(_)), "{other:?}");
        let Settle::Fail(unknown) = settle(&kept, None) else {
            panic!("a server that cannot tell fails the item");
        };
        assert!(
            unknown.contains("stopped after acknowledging this item"),
            "{unknown}"
        );
        let own_key = intent(Launch::of(&record, true));
        let Settle::Fail(message) = settle(&own_key, Some(&info("CLAIMED", Some("run1")))) else {
            panic!("a spec with its own key is not resumed");
        };
        assert!(message.contains("own W&B API key"), "{message}");
    }
}
