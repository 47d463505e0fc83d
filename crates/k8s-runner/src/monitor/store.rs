//! The store: every tracked run and the watchers they need, owned by the reconcile loop.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::time::delay_queue;
use tracing::debug;

use super::{MonitorContext, RunKey, Trigger, triggers};
use crate::api::{Coordinates, RunRef};
use crate::state::RunStatus;
use crate::tracker::RunTracker;
use rlaunch_render::ApiCoordinates;

/// Where a tracked run is, from the monitor's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Its workload has not been observed yet (a relist without it is not a deletion).
    Unseen,
    /// Its workload was observed; a relist without it is a deletion.
    Seen,
    /// Terminal: diagnostics and cleanup are running.
    Finalizing,
}

/// One tracked run.
pub(super) struct RunEntry {
    pub run: RunRef,
    pub tracker: RunTracker,
    pub tx: watch::Sender<RunStatus>,
    pub phase: Phase,
    /// The run's one pending wake-up in the delay queue.
    pub deadline: Option<(delay_queue::Key, Instant)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WatchKey {
    Pods(String),
    Refusals(String),
    Admissions(String),
    /// Namespace and the kind's key.
    Workloads(String, String),
}

fn watch_keys(run: &RunRef) -> [WatchKey; 4] {
    [
        WatchKey::Pods(run.namespace.clone()),
        WatchKey::Refusals(run.namespace.clone()),
        WatchKey::Admissions(run.namespace.clone()),
        WatchKey::Workloads(run.namespace.clone(), run.api.key()),
    ]
}

#[derive(Default)]
pub(super) struct Store {
    pub runs: HashMap<RunKey, RunEntry>,
    watchers: HashMap<WatchKey, JoinHandle<()>>,
}

impl Drop for Store {
    fn drop(&mut self) {
        for (_, handle) in self.watchers.drain() {
            handle.abort();
        }
    }
}

impl Store {
    /// The tracked runs whose workload is `workload` in `namespace` (pods name it in
    /// [`crate::WORKLOAD_LABEL`], events as their involved object).
    pub fn runs_of(&self, namespace: &str, workload: &str) -> Vec<RunKey> {
        self.runs
            .iter()
            .filter(|(_, entry)| entry.run.namespace == namespace && entry.run.name == workload)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Runs in `namespace` whose Kueue `Workload` is `kueue_workload`.
    pub fn runs_of_kueue_workload(&self, namespace: &str, kueue_workload: &str) -> Vec<RunKey> {
        self.runs
            .iter()
            .filter(|(_, entry)| {
                entry.run.namespace == namespace
                    && crate::classify::is_kueue_workload_of(
                        kueue_workload,
                        &entry.run.api.kind,
                        &entry.run.name,
                    )
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Runs of `(namespace, api)` seen before but missing from a relist.
    pub fn missing_after_relist(
        &self,
        namespace: &str,
        api: &ApiCoordinates,
        names: &HashSet<String>,
    ) -> Vec<RunKey> {
        self.runs
            .iter()
            .filter(|(_, entry)| {
                entry.phase == Phase::Seen
                    && entry.run.namespace == namespace
                    && entry.run.api == *api
                    && !names.contains(&entry.run.name)
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Start the watchers `run` needs that are not running yet.
    pub fn ensure_watchers(
        &mut self,
        run: &RunRef,
        ctx: &MonitorContext,
        tx: &UnboundedSender<Trigger>,
    ) {
        for key in watch_keys(run) {
            self.watchers.entry(key.clone()).or_insert_with(|| {
                let (client, tx) = (ctx.client.clone(), tx.clone());
                tokio::spawn(match key {
                    WatchKey::Pods(namespace) => {
                        Box::pin(triggers::pods(tx, client, namespace)) as WatchTask
                    }
                    WatchKey::Refusals(namespace) => {
                        Box::pin(triggers::refusals(tx, client, namespace))
                    }
                    WatchKey::Admissions(namespace) => {
                        Box::pin(triggers::admissions(tx, client, namespace))
                    }
                    WatchKey::Workloads(namespace, _) => {
                        Box::pin(triggers::workloads(tx, client, namespace, run.api.clone()))
                    }
                })
            });
        }
    }

    /// Stop the watchers no tracked run needs any more.
    pub fn stop_idle_watchers(&mut self) {
        let needed: HashSet<WatchKey> = self
            .runs
            .values()
            .flat_map(|entry| watch_keys(&entry.run))
            .collect();
        self.watchers.retain(|key, handle| {
            let keep = needed.contains(key);
            if !keep {
                debug!(watch = ?key, "stopping idle watcher");
                handle.abort();
            }
            keep
        });
    }
}

type WatchTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
