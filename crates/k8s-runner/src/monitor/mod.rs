//! The monitor, shaped like a kube-runtime controller:
//!
//! - **triggers** ([`triggers`]): one watcher per `(namespace, pods)`, per `(namespace,
//!   workload kind)` (label-selected with `wandb.ai/monitor=true`) and per `(namespace,
//!   FailedCreate events)`, shared by every run there. kube-runtime's watcher resumes from
//!   the last resourceVersion and relists after a 410; `default_backoff` spaces out retries.
//!   Watchers only translate events into [`Trigger`]s.
//! - **the store** ([`store`]): every tracked run with its state machine, its phase and its
//!   one pending deadline, owned by the reconcile loop alone (no lock).
//! - **deadlines**: a [`tokio_util::time::DelayQueue`] holding, per run, the next instant
//!   at which time alone can change its state ([`crate::tracker`]'s `next_deadline`); no
//!   global tick re-checks every run.
//! - **reconcile** ([`reconcile`]): apply a trigger to the run's state machine, publish the
//!   state, schedule its deadline, and start finalizing once it is terminal. Idempotent:
//!   reconciling a run twice with no new observation changes nothing.
//! - **finalize** ([`finalize`]): diagnostics, deletion of a workload the agent failed,
//!   cleanup; then the final status is published and the run forgotten.
//!
//! A relist that no longer contains a workload seen before counts as its deletion. Watchers
//! stop when their last run is done; everything stops when the runner is dropped.

mod finalize;
mod reconcile;
mod store;
mod triggers;

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::api::{Coordinates, RunRef};
use crate::attribution::pod_selector;
use crate::error::is_not_found;
use crate::state::RunStatus;
use crate::tracker::TrackerConfig;
use rlaunch_render::ApiCoordinates;

/// What finalizing a terminal run needs.
#[derive(Clone)]
pub(crate) struct MonitorContext {
    pub client: Client,
    pub tracker: TrackerConfig,
    pub log_tail_bytes: usize,
    pub cleanup_on_terminal: bool,
    pub diagnostics_timeout: Duration,
}

/// `(namespace, kind key, workload name)`.
type RunKey = (String, String, String);

fn run_key(run: &RunRef) -> RunKey {
    (run.namespace.clone(), run.api.key(), run.name.clone())
}

/// Everything that can make the reconcile loop look at a run.
enum Trigger {
    /// Start tracking (or join).
    Track {
        run: RunRef,
        age: Duration,
        reply: oneshot::Sender<watch::Receiver<RunStatus>>,
    },
    /// Stop tracking.
    Untrack(RunKey),
    /// The agent is cancelling the run.
    CancelRequested(RunKey),
    /// A workload object was added or changed.
    Workload {
        api: ApiCoordinates,
        object: Box<DynamicObject>,
    },
    /// A workload is gone (watch delete, or not found when seeding).
    WorkloadDeleted(RunKey),
    /// A relist of `(namespace, kind)` finished with these names.
    Relisted {
        namespace: String,
        api: ApiCoordinates,
        names: HashSet<String>,
    },
    /// A pod was added, changed or deleted.
    Pod {
        namespace: String,
        pod: Box<Pod>,
        deleted: bool,
    },
    /// A workload's pods were refused at creation.
    Refused {
        namespace: String,
        workload: String,
        message: String,
    },
    /// Kueue says why the `Workload` named `kueue_workload` is not admitted.
    AdmissionPending {
        namespace: String,
        kueue_workload: String,
        message: String,
    },
    /// Finalizing ended with this status.
    Finalized { key: RunKey, status: RunStatus },
}

/// Handle to the reconcile loop.
pub(crate) struct Monitor {
    tx: mpsc::UnboundedSender<Trigger>,
    task: JoinHandle<()>,
    client: Client,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        // The loop owns the store, whose drop stops every watcher.
        self.task.abort();
    }
}

impl Monitor {
    pub fn new(ctx: MonitorContext) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = ctx.client.clone();
        let task = tokio::spawn(reconcile::run(ctx, rx, tx.clone()));
        Monitor { tx, task, client }
    }

    /// Start tracking `run` (or subscribe to it if already tracked). `age` is how long ago
    /// the workload was created, so an adopted run keeps its start-timeout clock.
    pub async fn track(&self, run: RunRef, age: Duration) -> watch::Receiver<RunStatus> {
        let (reply, receiver) = oneshot::channel();
        let sent = self.tx.send(Trigger::Track {
            run: run.clone(),
            age,
            reply,
        });
        let receiver = match (sent, receiver.await) {
            (Ok(()), Ok(receiver)) => receiver,
            // The loop is gone (runtime shutting down): a status that never changes.
            _ => watch::channel(RunStatus::starting()).1,
        };
        self.seed(&run).await;
        receiver
    }

    /// Mark a run as being cancelled by the agent.
    pub fn mark_cancel_requested(&self, run: &RunRef) {
        let _ = self.tx.send(Trigger::CancelRequested(run_key(run)));
    }

    /// Stop tracking `run` (its handles keep their last status).
    pub fn untrack(&self, run: &RunRef) {
        let _ = self.tx.send(Trigger::Untrack(run_key(run)));
    }

    /// Read the workload and its pods once, so a run whose object stopped changing (adopted
    /// after it finished, or created before its watcher was listening) still gets a state.
    async fn seed(&self, run: &RunRef) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &run.namespace, &run.api.api_resource());
        let trigger = match api.get(&run.name).await {
            Ok(object) => Trigger::Workload {
                api: run.api.clone(),
                object: Box::new(object),
            },
            Err(error) if is_not_found(&error) => Trigger::WorkloadDeleted(run_key(run)),
            Err(error) => {
                debug!(run = %run.object(), error = %error, "initial read failed; the watch will catch up");
                return;
            }
        };
        let _ = self.tx.send(trigger);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &run.namespace);
        if let Ok(list) = pods
            .list(&ListParams::default().labels(&pod_selector(run)))
            .await
        {
            for pod in list.items {
                let _ = self.tx.send(Trigger::Pod {
                    namespace: run.namespace.clone(),
                    pod: Box::new(pod),
                    deleted: false,
                });
            }
        }
    }
}
