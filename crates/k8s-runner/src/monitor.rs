//! Watches and the per-run state machines behind them.
//!
//! One watcher per `(namespace, pods)` and per `(namespace, workload kind)`, label-selected
//! with `wandb.ai/monitor=true`, shared by every run in that namespace; not one per run.
//! `kube::runtime::watcher` resumes from the last resourceVersion, relists after a 410, and
//! `default_backoff` spaces out retries after errors (RBAC, a missing CRD, an apiserver
//! restart). A relist that no longer contains a workload seen before counts as its deletion.
//! Watchers stop when their last run is done; all tasks stop when the runner is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use rlaunch_model::labels;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::api::{RunRef, WorkloadApi};
use crate::attribution::{pod_selector, workload_of};
use crate::classify::{
    CustomKind, WorkloadSignal, classify_custom, classify_failed_create, classify_job, classify_pod,
};
use crate::cleanup::{cleanup_run, delete_workload as delete_workload_object};
use crate::diagnostics::collect;
use crate::error::is_not_found;
use crate::state::{FailureCause, RunState, RunStatus};
use crate::tracker::{RunTracker, TrackerConfig};

/// What the finalizer of a terminal run needs.
#[derive(Clone)]
pub(crate) struct MonitorContext {
    pub client: Client,
    pub tracker: TrackerConfig,
    pub tick: Duration,
    pub log_tail_bytes: usize,
    pub cleanup_on_terminal: bool,
    pub diagnostics_timeout: Duration,
}

type RunKey = (String, String, String);

fn run_key(run: &RunRef) -> RunKey {
    (run.namespace.clone(), run.api.key(), run.name.clone())
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WatchKey {
    Pods(String),
    Events(String),
    Workload(String, WorkloadApi),
}

struct RunEntry {
    run: RunRef,
    tracker: RunTracker,
    tx: watch::Sender<RunStatus>,
    seen: bool,
    finalizing: bool,
}

#[derive(Default)]
struct MonitorState {
    runs: HashMap<RunKey, RunEntry>,
    watchers: HashMap<WatchKey, JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl MonitorState {
    /// The tracked runs a pod of `workload` in `namespace` belongs to (see
    /// [`crate::attribution`]).
    fn runs_of(&self, namespace: &str, workload: &str) -> Vec<RunKey> {
        self.runs
            .iter()
            .filter(|(_, entry)| entry.run.namespace == namespace && entry.run.name == workload)
            .map(|(key, _)| key.clone())
            .collect()
    }
}

pub(crate) struct Shared {
    state: Mutex<MonitorState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, MonitorState> {
        // A panic while holding the lock leaves plain data behind; keep going with it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The monitor: shared state plus what its tasks need.
pub(crate) struct Monitor {
    shared: Arc<Shared>,
    ctx: MonitorContext,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        for (_, handle) in state.watchers.drain() {
            handle.abort();
        }
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
    }
}

fn signal_for(api: &WorkloadApi, object: &DynamicObject) -> WorkloadSignal {
    if api.is_batch_job() {
        match serde_json::to_value(object).and_then(serde_json::from_value::<Job>) {
            Ok(job) => classify_job(&job),
            Err(error) => {
                warn!(job = %object.name_any(), error = %error, "cannot read Job status");
                WorkloadSignal::Pending
            }
        }
    } else {
        match serde_json::to_value(object) {
            Ok(value) => classify_custom(CustomKind::of(&api.group, &api.kind), &value),
            Err(_) => WorkloadSignal::Pending,
        }
    }
}

impl Monitor {
    pub fn new(ctx: MonitorContext) -> Self {
        Monitor {
            shared: Arc::new(Shared {
                state: Mutex::new(MonitorState::default()),
            }),
            ctx,
        }
    }

    /// Start tracking `run` (or subscribe to it if already tracked). `age` is how long ago
    /// the workload was created, so an adopted run keeps its start-timeout clock.
    pub async fn track(&self, run: RunRef, age: Duration) -> watch::Receiver<RunStatus> {
        let key = run_key(&run);
        let receiver = {
            let mut state = self.shared.lock();
            if let Some(entry) = state.runs.get(&key) {
                return entry.tx.subscribe();
            }
            let now = Instant::now();
            let started = now.checked_sub(age).unwrap_or(now);
            let (tx, rx) = watch::channel(RunStatus::starting());
            state.runs.insert(
                key.clone(),
                RunEntry {
                    run: run.clone(),
                    tracker: RunTracker::new(self.ctx.tracker.clone(), started),
                    tx,
                    seen: false,
                    finalizing: false,
                },
            );
            self.ensure_tasks(&mut state, &run);
            rx
        };
        self.seed(&run).await;
        receiver
    }

    /// Mark a run as being cancelled by the agent.
    pub fn mark_cancel_requested(&self, run: &RunRef) {
        let mut state = self.shared.lock();
        if let Some(entry) = state.runs.get_mut(&run_key(run)) {
            entry.tracker.mark_cancel_requested();
        }
    }

    /// Stop tracking `run` (its handles keep their last status).
    pub fn untrack(&self, run: &RunRef) {
        let mut state = self.shared.lock();
        state.runs.remove(&run_key(run));
        stop_idle_watchers(&mut state);
    }

    /// Read the workload and its pods once, so a run whose object stopped changing (adopted
    /// after it finished, or created before its watcher was listening) still gets a state.
    async fn seed(&self, run: &RunRef) {
        let now = Instant::now();
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.ctx.client.clone(),
            &run.namespace,
            &run.api.api_resource(),
        );
        match api.get(&run.name).await {
            Ok(object) => apply_workload(&self.shared, &self.ctx, &run.api, &object, now),
            Err(error) if is_not_found(&error) => {
                delete_workload(&self.shared, &self.ctx, run, now)
            }
            Err(error) => {
                debug!(run = %run.object(), error = %error, "initial read failed; the watch will catch up")
            }
        }
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &run.namespace);
        if let Ok(list) = pods
            .list(&ListParams::default().labels(&pod_selector(run)))
            .await
        {
            for pod in list.items {
                apply_pod(
                    &self.shared,
                    &self.ctx,
                    &run.namespace,
                    &pod,
                    Instant::now(),
                );
            }
        }
    }

    fn ensure_tasks(&self, state: &mut MonitorState, run: &RunRef) {
        let weak = Arc::downgrade(&self.shared);
        state
            .watchers
            .entry(WatchKey::Pods(run.namespace.clone()))
            .or_insert_with(|| {
                tokio::spawn(watch_pods(
                    weak.clone(),
                    self.ctx.clone(),
                    run.namespace.clone(),
                ))
            });
        state
            .watchers
            .entry(WatchKey::Events(run.namespace.clone()))
            .or_insert_with(|| {
                tokio::spawn(watch_events(
                    weak.clone(),
                    self.ctx.clone(),
                    run.namespace.clone(),
                ))
            });
        state
            .watchers
            .entry(WatchKey::Workload(run.namespace.clone(), run.api.clone()))
            .or_insert_with(|| {
                tokio::spawn(watch_workloads(
                    weak.clone(),
                    self.ctx.clone(),
                    run.namespace.clone(),
                    run.api.clone(),
                ))
            });
        if state.ticker.is_none() {
            state.ticker = Some(tokio::spawn(tick_loop(weak, self.ctx.clone())));
        }
    }
}

fn stop_idle_watchers(state: &mut MonitorState) {
    let needed: HashSet<WatchKey> = state
        .runs
        .values()
        .flat_map(|entry| {
            [
                WatchKey::Pods(entry.run.namespace.clone()),
                WatchKey::Events(entry.run.namespace.clone()),
                WatchKey::Workload(entry.run.namespace.clone(), entry.run.api.clone()),
            ]
        })
        .collect();
    state.watchers.retain(|key, handle| {
        let keep = needed.contains(key);
        if !keep {
            debug!(watch = ?key, "stopping idle watcher");
            handle.abort();
        }
        keep
    });
}

/// Publish the tracker's state; start finalizing when it became terminal.
fn publish(shared: &Arc<Shared>, ctx: &MonitorContext, key: &RunKey, entry: &mut RunEntry) {
    let state = entry.tracker.state().clone();
    if state.is_terminal() {
        if !entry.finalizing {
            entry.finalizing = true;
            info!(run = %entry.run.object(), state = %state, "run reached a terminal state");
            tokio::spawn(finalize(
                Arc::downgrade(shared),
                ctx.clone(),
                key.clone(),
                entry.run.clone(),
                state,
            ));
        }
        return;
    }
    let status = RunStatus {
        state,
        warnings: entry.tracker.warnings(),
        diagnostics: None,
    };
    entry.tx.send_if_modified(|current| {
        if *current == status {
            false
        } else {
            *current = status;
            true
        }
    });
}

fn apply_workload(
    shared: &Arc<Shared>,
    ctx: &MonitorContext,
    api: &WorkloadApi,
    object: &DynamicObject,
    now: Instant,
) {
    let Some(namespace) = object.namespace() else {
        return;
    };
    let key = (namespace, api.key(), object.name_any());
    let mut state = shared.lock();
    let Some(entry) = state.runs.get_mut(&key) else {
        return;
    };
    if let (Some(expected), Some(actual)) = (&entry.run.uid, &object.metadata.uid)
        && expected != actual
    {
        // Same name, another object: the run's workload is gone.
        entry.tracker.observe_workload_deleted(now);
    } else {
        entry.seen = true;
        entry.tracker.observe_workload(signal_for(api, object), now);
    }
    publish(shared, ctx, &key, entry);
}

fn delete_workload(shared: &Arc<Shared>, ctx: &MonitorContext, run: &RunRef, now: Instant) {
    let key = run_key(run);
    let mut state = shared.lock();
    if let Some(entry) = state.runs.get_mut(&key) {
        entry.tracker.observe_workload_deleted(now);
        publish(shared, ctx, &key, entry);
    }
}

fn apply_pod(shared: &Arc<Shared>, ctx: &MonitorContext, namespace: &str, pod: &Pod, now: Instant) {
    let Some(workload) = workload_of(pod.labels()).map(str::to_owned) else {
        return;
    };
    let facts = classify_pod(pod);
    let deleted = pod.metadata.deletion_timestamp.is_some()
        && matches!(facts.phase.as_str(), "Succeeded" | "Failed");
    let mut state = shared.lock();
    let keys = state.runs_of(namespace, &workload);
    for key in keys {
        if let Some(entry) = state.runs.get_mut(&key) {
            entry.tracker.observe_pod(facts.clone(), now);
            if deleted {
                entry.tracker.observe_pod_deleted(&facts.name, now);
            }
            publish(shared, ctx, &key, entry);
        }
    }
}

fn delete_pod(
    shared: &Arc<Shared>,
    ctx: &MonitorContext,
    namespace: &str,
    pod: &Pod,
    now: Instant,
) {
    let Some(workload) = workload_of(pod.labels()).map(str::to_owned) else {
        return;
    };
    let facts = classify_pod(pod);
    let name = pod.name_any();
    let mut state = shared.lock();
    let keys = state.runs_of(namespace, &workload);
    for key in keys {
        if let Some(entry) = state.runs.get_mut(&key) {
            // The final pod object may carry the disruption condition or exit code.
            entry.tracker.observe_pod(facts.clone(), now);
            entry.tracker.observe_pod_deleted(&name, now);
            publish(shared, ctx, &key, entry);
        }
    }
}

/// A `FailedCreate` event of a tracked workload: its pods were refused (quota, limit range).
fn apply_event(shared: &Arc<Shared>, ctx: &MonitorContext, namespace: &str, event: &CoreEvent) {
    let Some(workload) = event.involved_object.name.as_deref() else {
        return;
    };
    let (reason, message) = classify_failed_create(event.message.as_deref().unwrap_or_default());
    let now = Instant::now();
    let mut state = shared.lock();
    for key in state.runs_of(namespace, workload) {
        if let Some(entry) = state.runs.get_mut(&key) {
            entry.tracker.observe_pods_refused(reason, &message, now);
            publish(shared, ctx, &key, entry);
        }
    }
}

async fn watch_events(shared: Weak<Shared>, ctx: MonitorContext, namespace: String) {
    let api: Api<CoreEvent> = Api::namespaced(ctx.client.clone(), &namespace);
    let config = watcher::Config::default().fields("reason=FailedCreate");
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match event {
            Ok(Event::Apply(event) | Event::InitApply(event)) => {
                apply_event(&shared, &ctx, &namespace, &event)
            }
            Ok(Event::Delete(_) | Event::Init | Event::InitDone) => {}
            Err(error) => {
                warn!(namespace = %namespace, error = %error, "event watch failed; retrying with backoff")
            }
        }
    }
}

fn watch_config() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}=true", labels::MONITOR))
}

async fn watch_pods(shared: Weak<Shared>, ctx: MonitorContext, namespace: String) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut stream = watcher::watcher(api, watch_config())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        match event {
            Ok(Event::Apply(pod) | Event::InitApply(pod)) => {
                apply_pod(&shared, &ctx, &namespace, &pod, now)
            }
            Ok(Event::Delete(pod)) => delete_pod(&shared, &ctx, &namespace, &pod, now),
            Ok(Event::Init | Event::InitDone) => {}
            Err(error) => {
                warn!(namespace = %namespace, error = %error, "pod watch failed; retrying with backoff")
            }
        }
    }
}

async fn watch_workloads(
    shared: Weak<Shared>,
    ctx: MonitorContext,
    namespace: String,
    workload: WorkloadApi,
) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &workload.api_resource());
    let mut stream = watcher::watcher(api, watch_config())
        .default_backoff()
        .boxed();
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = stream.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        match event {
            Ok(Event::Init) => listed = Some(HashSet::new()),
            Ok(Event::InitApply(object)) => {
                if let Some(listed) = listed.as_mut() {
                    listed.insert(object.name_any());
                }
                apply_workload(&shared, &ctx, &workload, &object, now);
            }
            Ok(Event::InitDone) => {
                let listed = listed.take().unwrap_or_default();
                let gone: Vec<RunRef> = {
                    let state = shared.lock();
                    state
                        .runs
                        .values()
                        .filter(|entry| {
                            entry.seen
                                && entry.run.namespace == namespace
                                && entry.run.api == workload
                                && !listed.contains(&entry.run.name)
                        })
                        .map(|entry| entry.run.clone())
                        .collect()
                };
                for run in gone {
                    info!(run = %run.object(), "workload missing after relist; treating it as deleted");
                    delete_workload(&shared, &ctx, &run, now);
                }
            }
            Ok(Event::Apply(object)) => apply_workload(&shared, &ctx, &workload, &object, now),
            Ok(Event::Delete(object)) => {
                if let Some(run) = {
                    let state = shared.lock();
                    state
                        .runs
                        .values()
                        .find(|entry| {
                            entry.run.namespace == namespace
                                && entry.run.api == workload
                                && entry.run.name == object.name_any()
                        })
                        .map(|entry| entry.run.clone())
                } {
                    // Apply the last status first: a workload that finished before its
                    // deletion keeps its outcome.
                    apply_workload(&shared, &ctx, &workload, &object, now);
                    delete_workload(&shared, &ctx, &run, now);
                }
            }
            Err(error) => warn!(
                namespace = %namespace,
                kind = %workload.kind,
                error = %error,
                "workload watch failed; retrying with backoff"
            ),
        }
    }
}

async fn tick_loop(shared: Weak<Shared>, ctx: MonitorContext) {
    let mut interval = tokio::time::interval(ctx.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut state = shared.lock();
        let keys: Vec<RunKey> = state.runs.keys().cloned().collect();
        for key in keys {
            if let Some(entry) = state.runs.get_mut(&key)
                && !entry.finalizing
            {
                entry.tracker.tick(now);
                publish(&shared, &ctx, &key, entry);
            }
        }
    }
}

/// Collect diagnostics, clean up, then publish the terminal status
/// and forget the run.
async fn finalize(
    shared: Weak<Shared>,
    ctx: MonitorContext,
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
    if let (RunState::Failed(failure), Some(diagnostics)) = (&mut state, &diagnostics)
        && matches!(
            failure.cause,
            FailureCause::WorkloadFailed { .. } | FailureCause::StartTimeout { .. }
        )
        && let Some(event) = diagnostics.events.iter().find(|e| e.starts_with("Warning"))
    {
        failure.message = format!("{} (event: {event})", failure.message);
    }
    // Failures the agent decided on its own (Kubernetes would keep the workload pending or
    // retrying) remove the workload, so a run reported failed can never start later.
    if let RunState::Failed(failure) = &state
        && failure.cause.decided_by_agent()
        && let Err(error) = delete_workload_object(&ctx.client, &run).await
    {
        warn!(run = %run.object(), error = %error, "could not delete the failed workload");
    }
    if ctx.cleanup_on_terminal {
        cleanup_run(&ctx.client, &run).await;
    }
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let mut monitor = shared.lock();
    if let Some(entry) = monitor.runs.remove(&key) {
        entry.tx.send_replace(RunStatus {
            state,
            warnings: Vec::new(),
            diagnostics,
        });
    }
    stop_idle_watchers(&mut monitor);
}
