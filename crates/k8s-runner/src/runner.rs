//! [`Runner`]: the public face of the crate.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use rlaunch_model::{labels, names};
use rlaunch_render::Rendered;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::{
    Coordinates, RunRef, WorkloadRole, discover, discover_preferred, known_custom_kinds,
};
use crate::classify::{classify_pod, classify_workload};
use crate::cleanup::{CleanupReport, cleanup_run, delete_workload};
use crate::diagnostics::collect;
use crate::error::{Error, Result, is_forbidden, is_not_found};
use crate::monitor::{Monitor, MonitorContext};
use crate::precheck::ClusterView;
use crate::requeue::{REQUEUE_ANNOTATION, RequeueRecord};
use crate::state::{ContainerLog, Diagnostics, RunState, RunStatus, Warning, WarningChange};
use crate::submit::{ApiKeySecrets, Submitter};
use crate::tracker::{RunTracker, TrackerConfig};
use rlaunch_render::ApiCoordinates;

/// Settings of a [`Runner`].
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Time limits of the state machine (start timeout, image-pull grace, verdict settle).
    pub tracker: TrackerConfig,
    /// Bytes kept from the end of each container's log in failure diagnostics. Default 16 KiB.
    pub log_tail_bytes: usize,
    /// Whether the runner creates API-key Secrets or uses a pre-provisioned one.
    pub api_key_secrets: ApiKeySecrets,
    /// Poll interval while waiting for additional services. Default 2 s.
    pub readiness_poll: Duration,
    /// Delete the run's Secrets and additional services when it reaches a terminal state.
    /// Default true.
    pub cleanup_on_terminal: bool,
    /// Upper bound on collecting logs and events for a failed run. Default 20 s.
    pub diagnostics_timeout: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            tracker: TrackerConfig::default(),
            log_tail_bytes: 16 * 1024,
            api_key_secrets: ApiKeySecrets::default(),
            readiness_poll: Duration::from_secs(2),
            cleanup_on_terminal: true,
            diagnostics_timeout: Duration::from_secs(20),
        }
    }
}

/// A live view of one run: its latest [`RunStatus`], updated by the monitor.
#[derive(Clone, Debug)]
pub struct RunHandle {
    run: RunRef,
    receiver: watch::Receiver<RunStatus>,
    seen_warnings: BTreeSet<Warning>,
}

impl RunHandle {
    /// The run.
    pub fn run(&self) -> &RunRef {
        &self.run
    }

    /// The latest status.
    pub fn status(&self) -> RunStatus {
        self.receiver.borrow().clone()
    }

    /// Wait for the next change; `None` once no more changes can come (terminal, untracked
    /// or runner dropped), in which case [`RunHandle::status`] is final.
    pub async fn changed(&mut self) -> Option<RunStatus> {
        self.receiver.changed().await.ok()?;
        Some(self.receiver.borrow_and_update().clone())
    }

    /// Wait until the run is terminal (or the monitor stops) and return the last status.
    pub async fn wait_terminal(&mut self) -> RunStatus {
        loop {
            let status = self.receiver.borrow_and_update().clone();
            if status.state.is_terminal() {
                return status;
            }
            if self.receiver.changed().await.is_err() {
                return self.receiver.borrow().clone();
            }
        }
    }

    /// The run's status now, then every change, each with the warnings raised or cleared
    /// since the previous one; the stream ends after the terminal status (or when the
    /// monitor stops).
    pub fn updates(self) -> impl futures::Stream<Item = RunUpdate> + Send + 'static {
        futures::stream::unfold((self, Step::First), |(mut handle, step)| async move {
            let status = match step {
                Step::Done => return None,
                Step::First => handle.receiver.borrow_and_update().clone(),
                Step::Next => handle.changed().await?,
            };
            let warnings = handle.warning_changes();
            let next = if status.state.is_terminal() {
                Step::Done
            } else {
                Step::Next
            };
            Some((RunUpdate { status, warnings }, (handle, next)))
        })
    }

    /// Warnings raised or cleared since the last call: each distinct warning is raised once
    /// per run, and cleared once when it goes away.
    pub fn warning_changes(&mut self) -> Vec<WarningChange> {
        let status = self.receiver.borrow();
        let current: BTreeSet<Warning> = status.warnings.iter().cloned().collect();
        let mut changes: Vec<WarningChange> = self
            .seen_warnings
            .difference(&current)
            .cloned()
            .map(WarningChange::Cleared)
            .collect();
        changes.extend(
            current
                .difference(&self.seen_warnings)
                .cloned()
                .map(WarningChange::Raised),
        );
        drop(status);
        self.seen_warnings = current;
        changes
    }
}

/// One change of a run, as [`RunHandle::updates`] yields it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunUpdate {
    /// The run's status now.
    pub status: RunStatus,
    /// Warnings raised or cleared since the previous update (each once).
    pub warnings: Vec<WarningChange>,
}

enum Step {
    First,
    Next,
    Done,
}

/// A workload found by [`Runner::list_in_flight`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightRun {
    /// The run, ready for [`Runner::track`].
    pub run: RunRef,
    /// Its state from the workload and its pods, right now.
    pub state: RunState,
    /// Active warnings.
    pub warnings: Vec<Warning>,
    /// What a preemption requeue needs, when the submission kept it.
    pub requeue: Option<RequeueRecord>,
}

/// A submitted (or adopted) run.
#[derive(Debug)]
pub struct Submitted {
    /// Live status of the run.
    pub handle: RunHandle,
    /// True when the workload already existed (a retried submit) and was adopted.
    pub adopted: bool,
    /// True when the [`RequeueRecord`] given to [`Runner::submit_requeueable`] was kept on
    /// the workload (false when too large, or when an existing workload was adopted).
    pub requeue_kept: bool,
}

/// Submits rendered runs, watches them, cancels and cleans them up, and adopts runs left
/// in flight by a previous agent process.
///
/// Must be created and used inside a tokio runtime. Dropping the last clone stops every
/// watch it started.
#[derive(Clone)]
pub struct Runner {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: Client,
    config: RunnerConfig,
    monitor: Monitor,
    /// Nodes and pods for [`Runner::precheck`], started by the first one.
    cluster_view: tokio::sync::OnceCell<ClusterView>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn age_of(object: &DynamicObject) -> Duration {
    let Some(created) = &object.metadata.creation_timestamp else {
        return Duration::ZERO;
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let elapsed = now.as_millisecond() - created.0.as_millisecond();
    Duration::from_millis(u64::try_from(elapsed).unwrap_or(0))
}

impl Runner {
    /// Whether `wanted` pods, created in `namespace`, fit now, later or never: the pure
    /// [`rlaunch_gpu::precheck()`] over the cluster's nodes and pods and the namespace's
    /// ResourceQuotas and LimitRanges. See [`crate::workload_pod_specs`] for a workload's pods.
    ///
    /// The first call starts a watch of the cluster's nodes and non-terminal pods that runs
    /// while the runner lives (and waits up to 30 s for its first listing); later calls read
    /// it and list only the namespace's quotas and LimitRanges. A verdict other than
    /// `FitsNow` is recomputed from fresh listings of nodes and pods before it is returned.
    pub async fn precheck(
        &self,
        namespace: &str,
        wanted: &[k8s_openapi::api::core::v1::PodSpec],
    ) -> Result<rlaunch_gpu::PreCheck> {
        let client = &self.inner.client;
        let view = self
            .inner
            .cluster_view
            .get_or_init(|| async { ClusterView::start(client) })
            .await;
        crate::precheck::precheck(client, view, namespace, wanted).await
    }

    /// A runner talking to the cluster behind `client`.
    pub fn new(client: Client, config: RunnerConfig) -> Self {
        let monitor = Monitor::new(MonitorContext {
            client: client.clone(),
            tracker: config.tracker.clone(),
            log_tail_bytes: config.log_tail_bytes,
            cleanup_on_terminal: config.cleanup_on_terminal,
            diagnostics_timeout: config.diagnostics_timeout,
        });
        Runner {
            inner: std::sync::Arc::new(Inner {
                client,
                config,
                monitor,
                cluster_view: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Create everything `rendered` lists, in order: the API-key Secret (per [`ApiKeySecrets`];
    /// a per-run Secret that exists follows W&B's agent's conflict rules), additional services (created concurrently, then awaited for readiness),
    /// then the workload; start tracking it. A retried submit with a deterministic name adopts
    /// the existing workload instead of creating a second one. On failure, the objects this
    /// call created are deleted again.
    pub async fn submit(&self, rendered: &Rendered) -> Result<Submitted> {
        self.submit_with(rendered, None).await
    }

    /// [`Runner::submit`], keeping `requeue` on the workload so a run adopted after a
    /// restart can still be requeued on preemption ([`InFlightRun::requeue`]).
    pub async fn submit_requeueable(
        &self,
        rendered: &Rendered,
        requeue: &RequeueRecord,
    ) -> Result<Submitted> {
        self.submit_with(rendered, Some(requeue)).await
    }

    async fn submit_with(
        &self,
        rendered: &Rendered,
        requeue: Option<&RequeueRecord>,
    ) -> Result<Submitted> {
        let submission = Submitter {
            client: &self.inner.client,
            readiness_poll: self.inner.config.readiness_poll,
            api_key_secrets: self.inner.config.api_key_secrets,
        }
        .submit(rendered, requeue)
        .await?;
        let handle = self.track(submission.run).await;
        Ok(Submitted {
            handle,
            adopted: submission.adopted,
            requeue_kept: submission.requeue_kept,
        })
    }

    /// Start (or join) tracking a run, e.g. one returned by [`Runner::list_in_flight`].
    pub async fn track(&self, run: RunRef) -> RunHandle {
        let age = self.workload_age(&run).await;
        let receiver = self.inner.monitor.track(run.clone(), age).await;
        RunHandle {
            run,
            receiver,
            seen_warnings: BTreeSet::new(),
        }
    }

    async fn workload_age(&self, run: &RunRef) -> Duration {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.inner.client.clone(),
            &run.namespace,
            &run.api.api_resource(),
        );
        match api.get_opt(&run.name).await {
            Ok(Some(object)) => age_of(&object),
            _ => Duration::ZERO,
        }
    }

    /// Stop tracking a run without touching it.
    pub fn untrack(&self, run: &RunRef) {
        self.inner.monitor.untrack(run);
    }

    /// Cancel a run: delete the workload with background propagation (its pods go too), then
    /// clean up its Secrets and additional services. Idempotent: an already deleted workload
    /// is fine. Cleanup problems are logged, not returned.
    pub async fn cancel(&self, run: &RunRef) -> Result<()> {
        self.inner.monitor.mark_cancel_requested(run);
        delete_workload(&self.inner.client, run).await?;
        cleanup_run(&self.inner.client, run).await;
        Ok(())
    }

    /// Delete, by name, the per-run Secret and additional services its submission created
    /// ([`RunRef::owned`], read from the workload: use a `RunRef` from [`Runner::submit`] or
    /// [`Runner::list_in_flight`]); never a shared helm-mode Secret. Errors are reported, not
    /// raised; 404s are fine.
    pub async fn cleanup(&self, run: &RunRef) -> CleanupReport {
        cleanup_run(&self.inner.client, run).await
    }

    /// The log of `container` in each pod of the run, from its start, at most `limit_bytes`
    /// per pod (the API server cuts it; [`ContainerLog::truncated`] says so). For scanning a
    /// whole log, such as an image build's, where the diagnostics' tail is too short.
    pub async fn read_log(
        &self,
        run: &RunRef,
        container: &str,
        limit_bytes: usize,
    ) -> Result<Vec<ContainerLog>> {
        crate::diagnostics::read_log(&self.inner.client, run, container, limit_bytes).await
    }

    /// Log tails of every container of the run's pods, and the condensed Kubernetes events
    /// of the workload and its pods.
    pub async fn diagnostics(&self, run: &RunRef) -> Diagnostics {
        collect(&self.inner.client, run, self.inner.config.log_tail_bytes).await
    }

    /// The custom workload kinds from the known table that this cluster serves, at their
    /// preferred version.
    pub async fn served_custom_kinds(&self) -> Vec<ApiCoordinates> {
        let mut kinds = Vec::new();
        for (group, kind) in known_custom_kinds() {
            match discover_preferred(&self.inner.client, group, kind).await {
                Ok(resource) => kinds.push(ApiCoordinates::from_api_resource(&resource)),
                Err(Error::KindNotServed { .. }) => {}
                Err(error) => warn!(group, kind, error = %error, "discovery failed"),
            }
        }
        kinds
    }

    /// Every batch Job, and every object of the given custom `kinds` (a missing plural is
    /// found through discovery), in each of
    /// `namespaces` (the agent's target namespaces: listing is per namespace, so namespaced
    /// Roles suffice), that carries `rlaunch.dev/agent-identity=<agent_identity>`, with its
    /// run id, run queue item annotation and current state (terminal ones included: they
    /// finished while the agent was down and still need reporting). Pass them to
    /// [`Runner::track`] to resume. Image-build Jobs are never among them (see
    /// [`Runner::list_builds_in_flight`]).
    pub async fn list_in_flight(
        &self,
        agent_identity: &str,
        namespaces: &[String],
        kinds: &[ApiCoordinates],
    ) -> Result<Vec<InFlightRun>> {
        self.list_role(WorkloadRole::Run, agent_identity, namespaces, kinds)
            .await
    }

    /// The image-build Jobs ([`WorkloadRole::ImageBuild`]) of `agent_identity` in
    /// `namespaces`, like [`Runner::list_in_flight`] lists runs.
    pub async fn list_builds_in_flight(
        &self,
        agent_identity: &str,
        namespaces: &[String],
    ) -> Result<Vec<InFlightRun>> {
        self.list_role(WorkloadRole::ImageBuild, agent_identity, namespaces, &[])
            .await
    }

    async fn list_role(
        &self,
        role: WorkloadRole,
        agent_identity: &str,
        namespaces: &[String],
        kinds: &[ApiCoordinates],
    ) -> Result<Vec<InFlightRun>> {
        let selector = format!(
            "{}={}",
            labels::AGENT_IDENTITY,
            names::label_value(agent_identity)
        );
        let mut apis = vec![ApiCoordinates::batch_job()];
        for kind in kinds.iter().filter(|k| !k.is_batch_job()) {
            if kind.plural.is_some() {
                apis.push(kind.clone());
                continue;
            }
            match discover(&self.inner.client, &kind.group, &kind.version, &kind.kind).await {
                Ok(resource) => apis.push(ApiCoordinates::from_api_resource(&resource)),
                Err(Error::KindNotServed { .. }) => {
                    warn!(group = %kind.group, kind = %kind.kind, "kind not served; skipped while listing runs in flight");
                }
                Err(error) => return Err(error),
            }
        }
        let mut runs = Vec::new();
        for namespace in namespaces {
            for api in &apis {
                self.list_kind_in(namespace, api, &selector, &mut runs)
                    .await?;
                runs.retain(|found| found.run.role == role);
            }
        }
        Ok(runs)
    }

    async fn list_kind_in(
        &self,
        namespace: &str,
        api: &ApiCoordinates,
        selector: &str,
        runs: &mut Vec<InFlightRun>,
    ) -> Result<()> {
        let list_api: Api<DynamicObject> =
            Api::namespaced_with(self.inner.client.clone(), namespace, &api.api_resource());
        let list = match list_api.list(&ListParams::default().labels(selector)).await {
            Ok(list) => list,
            Err(error) if !api.is_batch_job() && is_not_found(&error) => {
                warn!(group = %api.group, kind = %api.kind, "kind not served; skipped while listing runs in flight");
                return Ok(());
            }
            // A custom kind the cluster serves but the agent has no Role for (the chart
            // grants one per enabled preset, create and list together): the agent cannot
            // have created any, so there is nothing of that kind to adopt here.
            Err(error) if !api.is_batch_job() && is_forbidden(&error) => {
                debug!(group = %api.group, kind = %api.kind, namespace, "no right to list this kind; none of it to adopt");
                return Ok(());
            }
            Err(source) => {
                return Err(Error::List {
                    kind: api.kind.clone(),
                    scope: format!("namespace {namespace}"),
                    selector: selector.to_owned(),
                    source: Box::new(source),
                });
            }
        };
        for object in list.items {
            let Some(run) = RunRef::from_object(api, &object) else {
                continue;
            };
            let (state, warnings) = self.snapshot_state(api, &run, &object).await;
            let requeue = RequeueRecord::from_annotation(
                object
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REQUEUE_ANNOTATION)),
            );
            runs.push(InFlightRun {
                run,
                state,
                warnings,
                requeue,
            });
        }
        Ok(())
    }

    async fn snapshot_state(
        &self,
        api: &ApiCoordinates,
        run: &RunRef,
        object: &DynamicObject,
    ) -> (RunState, Vec<Warning>) {
        let now = std::time::Instant::now();
        let config = self.inner.config.tracker.clone();
        let settle = config.verdict_settle;
        let started = now.checked_sub(age_of(object)).unwrap_or(now);
        let mut tracker = RunTracker::new(config, started);
        for pod in &crate::diagnostics::run_pods(&self.inner.client, run).await {
            tracker.observe_pod(classify_pod(pod), now);
        }
        let signal = classify_workload(api, object);
        tracker.observe_workload(signal, now);
        // Give a failure its settle time at once: there are no further pod updates to wait for.
        tracker.tick(now + settle);
        (tracker.state().clone(), tracker.warnings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlaunch_render::ApiCoordinates;

    fn warning(message: &str) -> Warning {
        Warning {
            reason: "Unschedulable".into(),
            message: message.into(),
        }
    }

    #[tokio::test]
    async fn updates_yield_every_change_with_its_warnings_and_end_when_terminal() {
        use futures::StreamExt;
        let (tx, receiver) = watch::channel(RunStatus::starting());
        let handle = RunHandle {
            run: run_ref(),
            receiver,
            seen_warnings: BTreeSet::new(),
        };
        let mut updates = Box::pin(handle.updates());
        let first = updates.next().await.unwrap();
        assert_eq!(first.status.state, RunState::Starting);
        assert!(first.warnings.is_empty());
        tx.send_modify(|status| status.warnings = vec![warning("no gpu")]);
        let second = updates.next().await.unwrap();
        assert_eq!(
            second.warnings,
            vec![WarningChange::Raised(warning("no gpu"))]
        );
        tx.send_replace(RunStatus {
            state: RunState::Finished,
            warnings: Vec::new(),
            diagnostics: None,
        });
        let last = updates.next().await.unwrap();
        assert_eq!(last.status.state, RunState::Finished);
        assert_eq!(
            last.warnings,
            vec![WarningChange::Cleared(warning("no gpu"))]
        );
        assert!(
            updates.next().await.is_none(),
            "ends after the terminal state"
        );
    }

    fn run_ref() -> RunRef {
        RunRef {
            namespace: "ns".into(),
            name: "job".into(),
            api: ApiCoordinates::batch_job(),
            run_id: "abc".into(),
            run_queue_item_id: None,
            entity: None,
            project: None,
            queue: None,
            role: crate::api::WorkloadRole::Run,
            owned: Vec::new(),
            uid: None,
        }
    }

    #[test]
    fn warning_changes_raise_once_and_clear_once() {
        let (tx, receiver) = watch::channel(RunStatus::starting());
        let mut handle = RunHandle {
            run: run_ref(),
            receiver,
            seen_warnings: BTreeSet::new(),
        };
        assert!(handle.warning_changes().is_empty());
        tx.send_modify(|status| status.warnings = vec![warning("no gpu")]);
        assert_eq!(
            handle.warning_changes(),
            vec![WarningChange::Raised(warning("no gpu"))]
        );
        assert!(handle.warning_changes().is_empty(), "raised only once");
        tx.send_modify(|status| status.warnings = vec![warning("no memory")]);
        assert_eq!(
            handle.warning_changes(),
            vec![
                WarningChange::Cleared(warning("no gpu")),
                WarningChange::Raised(warning("no memory"))
            ]
        );
        tx.send_modify(|status| status.warnings.clear());
        assert_eq!(
            handle.warning_changes(),
            vec![WarningChange::Cleared(warning("no memory"))]
        );
    }
}
