//! The reconcile loop: triggers and expired deadlines in, state machines updated, states
//! published, finalizing started.

use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio_util::time::DelayQueue;
use tracing::info;

use super::store::{Phase, RunEntry, Store};
use super::{MonitorContext, RunKey, Trigger, finalize::finalize};
use crate::api::Coordinates;
use crate::attribution::workload_of;
use crate::classify::{classify_failed_create, classify_pod, classify_workload};
#[cfg(test)]
use crate::state::RunState;
use crate::state::RunStatus;
use crate::tracker::RunTracker;

/// The clock of the state machines: tokio's, so they agree with the delay queue (and with
/// paused time in tests).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Loop {
    ctx: MonitorContext,
    tx: UnboundedSender<Trigger>,
    store: Store,
    deadlines: DelayQueue<RunKey>,
}

/// Run until aborted (the [`super::Monitor`] is dropped).
pub(super) async fn run(
    ctx: MonitorContext,
    mut rx: UnboundedReceiver<Trigger>,
    tx: UnboundedSender<Trigger>,
) {
    let mut this = Loop {
        ctx,
        tx,
        store: Store::default(),
        deadlines: DelayQueue::new(),
    };
    loop {
        tokio::select! {
            trigger = rx.recv() => match trigger {
                Some(trigger) => this.handle(trigger),
                None => return,
            },
            Some(expired) = this.deadlines.next(), if !this.deadlines.is_empty() => {
                let key = expired.into_inner();
                if let Some(entry) = this.store.runs.get_mut(&key) {
                    entry.deadline = None;
                }
                this.observe(&key, |tracker, now| tracker.tick(now));
            }
        }
    }
}

impl Loop {
    fn handle(&mut self, trigger: Trigger) {
        match trigger {
            Trigger::Track { run, age, reply } => {
                let key = super::run_key(&run);
                if !self.store.runs.contains_key(&key) {
                    let now = now();
                    let started = now.checked_sub(age).unwrap_or(now);
                    self.store.ensure_watchers(&run, &self.ctx, &self.tx);
                    let (tx, _) = watch::channel(RunStatus::starting());
                    let entry = RunEntry {
                        run,
                        tracker: RunTracker::new(self.ctx.tracker.clone(), started),
                        tx,
                        phase: Phase::Unseen,
                        deadline: None,
                    };
                    self.store.runs.insert(key.clone(), entry);
                    self.reconcile(&key);
                }
                if let Some(entry) = self.store.runs.get(&key) {
                    let _ = reply.send(entry.tx.subscribe());
                }
            }
            Trigger::Untrack(key) => {
                if let Some(entry) = self.store.runs.remove(&key) {
                    self.forget_deadline(entry);
                }
                self.store.stop_idle_watchers();
            }
            Trigger::CancelRequested(key) => {
                if let Some(entry) = self.store.runs.get_mut(&key) {
                    entry.tracker.mark_cancel_requested();
                }
            }
            Trigger::Workload { api, object } => self.workload(&api, &object),
            Trigger::WorkloadDeleted(key) => {
                self.observe(&key, |tracker, now| tracker.observe_workload_deleted(now))
            }
            Trigger::Relisted {
                namespace,
                api,
                names,
            } => {
                for key in self.store.missing_after_relist(&namespace, &api, &names) {
                    info!(run = %format!("{}/{}", key.0, key.2), "workload missing after relist; treating it as deleted");
                    self.observe(&key, |tracker, now| tracker.observe_workload_deleted(now));
                }
            }
            Trigger::Pod {
                namespace,
                pod,
                deleted,
            } => self.pod(&namespace, &pod, deleted),
            Trigger::Refused {
                namespace,
                workload,
                message,
            } => {
                let (reason, message) = classify_failed_create(&message);
                for key in self.store.runs_of(&namespace, &workload) {
                    self.observe(&key, |tracker, now| {
                        tracker.observe_pods_refused(reason, &message, now)
                    });
                }
            }
            Trigger::AdmissionPending {
                namespace,
                kueue_workload,
                message,
            } => {
                for key in self
                    .store
                    .runs_of_kueue_workload(&namespace, &kueue_workload)
                {
                    self.observe(&key, |tracker, now| {
                        tracker.observe_admission_pending(&message, now)
                    });
                }
            }
            Trigger::Finalized { key, status } => {
                if let Some(entry) = self.store.runs.remove(&key) {
                    entry.tx.send_replace(status);
                    self.forget_deadline(entry);
                }
                self.store.stop_idle_watchers();
            }
        }
    }

    fn workload(
        &mut self,
        api: &rlaunch_render::ApiCoordinates,
        object: &kube::api::DynamicObject,
    ) {
        let Some(namespace) = object.namespace() else {
            return;
        };
        let key = (namespace, api.key(), object.name_any());
        let Some(entry) = self.store.runs.get_mut(&key) else {
            return;
        };
        let now = now();
        if let (Some(expected), Some(actual)) = (&entry.run.uid, &object.metadata.uid)
            && expected != actual
        {
            // Same name, another object: the run's workload is gone.
            entry.tracker.observe_workload_deleted(now);
        } else {
            if entry.phase == Phase::Unseen {
                entry.phase = Phase::Seen;
            }
            entry
                .tracker
                .observe_workload(classify_workload(api, object), now);
        }
        self.reconcile(&key);
    }

    fn pod(&mut self, namespace: &str, pod: &k8s_openapi::api::core::v1::Pod, deleted: bool) {
        let Some(workload) = workload_of(pod.labels()) else {
            return;
        };
        let facts = classify_pod(pod);
        // A finished pod being deleted is as good as gone; its last facts still count.
        let gone = deleted
            || (pod.metadata.deletion_timestamp.is_some()
                && matches!(facts.phase.as_str(), "Succeeded" | "Failed"));
        for key in self.store.runs_of(namespace, workload) {
            self.observe(&key, |tracker, now| {
                tracker.observe_pod(facts.clone(), now);
                if gone {
                    tracker.observe_pod_deleted(&facts.name, now);
                }
            });
        }
    }

    /// Apply an observation to one run's state machine, then reconcile it.
    fn observe(&mut self, key: &RunKey, apply: impl FnOnce(&mut RunTracker, Instant)) {
        if let Some(entry) = self.store.runs.get_mut(key) {
            apply(&mut entry.tracker, now());
            self.reconcile(key);
        }
    }

    /// Idempotent: publish the run's state, keep its one deadline in the queue, and start
    /// finalizing once it is terminal.
    fn reconcile(&mut self, key: &RunKey) {
        let Some(entry) = self.store.runs.get_mut(key) else {
            return;
        };
        if entry.phase == Phase::Finalizing {
            return;
        }
        let state = entry.tracker.state().clone();
        if state.is_terminal() {
            entry.phase = Phase::Finalizing;
            if let Some((queued, _)) = entry.deadline.take() {
                self.deadlines.remove(&queued);
            }
            info!(run = %entry.run.object(), state = %state, "run reached a terminal state");
            tokio::spawn(finalize(
                self.ctx.clone(),
                self.tx.clone(),
                key.clone(),
                entry.run.clone(),
                state,
            ));
            return;
        }
        let status = RunStatus {
            state,
            warnings: entry.tracker.warnings(),
            diagnostics: None,
        };
        entry.tx.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
        let next = entry.tracker.next_deadline();
        if next != entry.deadline.as_ref().map(|(_, at)| *at) {
            if let Some((queued, _)) = entry.deadline.take() {
                self.deadlines.remove(&queued);
            }
            if let Some(at) = next {
                let queued = self
                    .deadlines
                    .insert_at(key.clone(), tokio::time::Instant::from_std(at));
                entry.deadline = Some((queued, at));
            }
        }
    }

    fn forget_deadline(&mut self, mut entry: RunEntry) {
        if let Some((queued, _)) = entry.deadline.take() {
            self.deadlines.remove(&queued);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{Coordinates, RunRef, WorkloadRole};
    use crate::state::FailureCause;
    use crate::tracker::TrackerConfig;
    use rlaunch_render::ApiCoordinates;

    /// A client whose every request fails at once, as with an unreachable API server.
    fn offline_client() -> kube::Client {
        let service = tower::service_fn(|_request: http::Request<kube::client::Body>| async {
            Err::<http::Response<kube::client::Body>, tower::BoxError>("offline".into())
        });
        kube::Client::new(service, "default")
    }

    fn run() -> RunRef {
        RunRef {
            namespace: "ns".into(),
            name: "run-a".into(),
            api: ApiCoordinates::batch_job(),
            run_id: "a".into(),
            run_queue_item_id: None,
            entity: None,
            project: None,
            queue: None,
            role: WorkloadRole::Run,
            owned: Vec::new(),
            uid: None,
        }
    }

    /// With nothing observed, the only thing that can end the run is its start-timeout
    /// deadline in the delay queue: paused time jumps straight to it.
    #[tokio::test(start_paused = true)]
    async fn the_start_timeout_fires_from_the_delay_queue() {
        let ctx = MonitorContext {
            client: offline_client(),
            tracker: TrackerConfig {
                start_timeout: Duration::from_secs(600),
                ..TrackerConfig::default()
            },
            log_tail_bytes: 1024,
            cleanup_on_terminal: true,
            diagnostics_timeout: Duration::from_secs(5),
        };
        let monitor = super::super::Monitor::new(ctx);
        let started = tokio::time::Instant::now();
        let mut receiver = monitor.track(run(), Duration::ZERO).await;
        let status = loop {
            let status = receiver.borrow_and_update().clone();
            if status.state.is_terminal() {
                break status;
            }
            receiver.changed().await.unwrap();
        };
        let RunState::Failed(failure) = &status.state else {
            panic!("expected failed, got {status:?}");
        };
        assert_eq!(
            failure.cause,
            FailureCause::StartTimeout { after_secs: 600 }
        );
        assert!(started.elapsed() >= Duration::from_secs(600));
    }
}
