//! The only crate that talks to the Kubernetes API server: it submits what the render engine
//! (`rlaunch-render`) produced, watches runs to the end, classifies failures, cancels and
//! cleans up, and adopts runs a previous agent process left in flight.
//!
//! ```no_run
//! # async fn example(rendered: rlaunch_render::Rendered) -> Result<(), rlaunch_k8s_runner::Error> {
//! use rlaunch_k8s_runner::{Runner, RunnerConfig, WarningChange};
//! let client = kube::Client::try_default().await.expect("a kubeconfig");
//! let runner = Runner::new(client, RunnerConfig::default());
//! let mut handle = runner.submit(&rendered).await?.handle;
//! while let Some(status) = handle.changed().await {
//!     for change in handle.warning_changes() {
//!         if let WarningChange::Raised(warning) = change {
//!             println!("warning: {warning}");
//!         }
//!     }
//!     println!("{}", status.state);
//! }
//! println!("final: {}", handle.status().state);
//! # Ok(()) }
//! ```
//!
//! # API
//!
//! - [`Runner::submit`] a [`rlaunch_render::Rendered`] (or [`Runner::submit_requeueable`],
//!   which keeps a [`RequeueRecord`] on the workload) → [`Submitted`] with a [`RunHandle`]:
//!   [`RunHandle::changed`] yields every [`RunStatus`] change ([`RunState`], active
//!   [`Warning`]s, [`Diagnostics`] once failed), [`RunHandle::warning_changes`] says which
//!   warnings were raised or cleared (each once), [`RunHandle::updates`] is both as a
//!   stream of [`RunUpdate`]s, [`RunHandle::wait_terminal`].
//! - [`Runner::cancel`] (idempotent), [`Runner::cleanup`], [`Runner::diagnostics`],
//!   [`Runner::read_log`] (a large bounded read of one container's whole log).
//! - [`Runner::list_in_flight`]`(identity, namespaces, kinds)` after a restart: the runs
//!   (never image builds: [`Runner::list_builds_in_flight`]) with their state now, W&B
//!   coordinates ([`RunRef`]: entity, project, queue, run queue item, run id, role) and
//!   requeue record; [`Runner::track`] resumes one.
//! - [`Runner::precheck`]: does a workload's pods fit the cluster now, later or never
//!   ([`rlaunch_gpu::precheck()`] over a watched view of the cluster's nodes and pods;
//!   [`workload_pod_specs`]).
//! - [`RunnerConfig`]: the state machine's limits ([`TrackerConfig`]: start timeout, image
//!   pull grace, verdict settle, crash-loop budget), log tail size, [`ApiKeySecrets`].
//! - [`Error`]: one error type, variants named after the step, carrying `ns/name`, with
//!   [`Error::is_transient`].
//! - [`rbac_rules`]: every API call, as data (below).
//!
//! # Which pods are a run's
//!
//! A preemption requeue keeps the run id while the old workload lives on until its TTL, so
//! the run id cannot tell attempts apart. The runner stamps every pod template of the
//! workload it creates with [`WORKLOAD_LABEL`] = the workload's name (unique in its
//! namespace and always a valid label value) and selects pods by that label only — the
//! monitor, diagnostics and adoption alike, for every workload kind (a JobSet's child Jobs
//! and Volcano tasks included), without following owner chains. A workload with only
//! `generateName` is named by the runner first.
//!
//! # States
//!
//! `starting → running → finished | failed | stopped | preempted`, and `queued` while a
//! queueing system holds the workload (Kueue-suspended Job, Volcano Pending/Inqueue,
//! suspended CRs: no start timeout). Rules (the pure part, unit-tested with explicit
//! instants):
//!
//! - Job outcome from conditions (`Complete`, `SuccessCriteriaMet`, `Failed`,
//!   `FailureTarget`), never counters; CR phases and conditions per family (Volcano,
//!   Kubeflow, JobSet).
//! - Preemption wins over the workload's failure when a pod carries a `DisruptionTarget`
//!   preemption/eviction reason; the verdict waits [`TrackerConfig::verdict_settle`] for a
//!   racing pod update. A failure seen before the workload's deletion wins over `stopped`
//!   (`ttlSecondsAfterFinished: 0`), and the deletion ends the wait.
//! - OOMKilled names the container and its memory limit; exit codes name the container;
//!   image pull and container-config errors fail after [`TrackerConfig::image_pull_grace`].
//! - CrashLoopBackOff is a warning while Kubernetes retries (`restartPolicy: OnFailure`,
//!   restarts left under `backoffLimit`); the run fails when the workload gives up (reported
//!   as a crash loop) or after the admin's [`TrackerConfig::crash_loop_budget`].
//! - Pods refused at creation by a ResourceQuota or LimitRange (the workload's
//!   `FailedCreate` events) raise a warning with the API server's words (the quota and the
//!   numbers), and at the start timeout the run fails with
//!   [`FailureCause::PodsRefused`] instead of "did not start".
//! - A failure the agent declares itself (start timeout, image pull, crash-loop budget,
//!   refused pods) deletes the workload, so a run reported failed cannot start later.
//!
//! # Objects and cleanup
//!
//! Submits are idempotent: the deterministic name is adopted on `AlreadyExists` only if it
//! carries the same run id and run queue item. A failed submission deletes what it created.
//! The objects created beside the workload (per-run API-key Secret, additional services)
//! are recorded on it ([`OWNED_OBJECTS_ANNOTATION`]) and deleted by name on every terminal
//! state and on cancel — nothing is listed by label, so nothing of another run or an image
//! build is touched; the shared helm-mode Secret is never recorded, so never deleted.
//! Cleanup errors never mask the outcome. What a preemption requeue needs is kept as an
//! annotation on the workload ([`REQUEUE_ANNOTATION`], at most [`MAX_REQUEUE_BYTES`], no
//! secrets) rather than a per-run ConfigMap: written in the same create, gone with the
//! workload, no extra RBAC.
//!
//! # API calls (RBAC)
//!
//! Every call the runner makes; the Helm chart's Roles are generated from [`rbac_rules`],
//! and a cluster test records every request of a full run and checks it against the table.
//! Discovery (`/api`, `/apis/…`) needs no rule. With
//! [`ApiKeySecrets::PreProvisioned`] the runner touches no Secret at all; with
//! [`ApiKeySecrets::Create`] an existing shared Secret is used without being read.
//!
//! | group | resource | verbs | scope | needed | why |
//! | --- | --- | --- | --- | --- | --- |
//! | batch | jobs | create, get, list, watch, delete | Namespace | Always | submit the workload (get: adopt it on 409 and read it once when tracking); list/watch: the monitor and adoption (label-selected); delete: cancel, or a failure the agent declared (start timeout, image pull, crash-loop budget) |
//! | core | pods | list, watch | Namespace | Always | the monitor (pods selected by rlaunch.dev/workload), failure diagnostics, adoption |
//! | core | pods/log | get | Namespace | Always | log tails in failure diagnostics; the builder's full log read |
//! | core | events | list, watch | Namespace | Always | events of the workload and its pods in failure diagnostics; FailedCreate events (quota and limit-range refusals) while a run starts. The runner records no Events |
//! | core | secrets | create, get, update, delete | Namespace | CreatedSecrets | create the API-key Secret; get/update: only for a per-run Secret that exists (same data: reuse; agent-created with other data: replace); delete: per-run Secrets at cleanup, by name |
//! | core | services | create, get, delete | Namespace | AdditionalServices | additional services (get: adopt on 409; delete: cleanup by name) |
//! | apps | deployments | create, get, delete | Namespace | AdditionalServices | additional services (get: adopt on 409 and readiness; delete: cleanup by name) |
//! | core | pods | create, get, delete | Namespace | AdditionalServices | additional services that are bare pods (get: readiness) |
//! | discovery.k8s.io | endpointslices | list | Namespace | AdditionalServices | readiness of an additional Service (a ready endpoint) |
//! | core | resourcequotas | list | Namespace | Precheck | the pre-check: what the namespace's quotas allow and have left |
//! | core | limitranges | list | Namespace | Precheck | the pre-check: the namespace's per-container and per-pod bounds and defaults |
//! | core | nodes | list, watch | Cluster | Precheck | the GPU pre-check: capacity, labels and taints of every node (watched from the first pre-check on; listed again before a verdict that holds a run back) |
//! | core | pods | list, watch | Cluster | Precheck | the GPU pre-check: what the pods of all namespaces already request (the non-terminal ones watched from the first pre-check on; listed again before a verdict that holds a run back) |
//! | each known workload CRD group | its plural | create, get, list, watch, delete | Namespace | CustomWorkload | as for Jobs |
//!
//! # How it differs from W&B's agent
//!
//! W&B's agent maps a pod to its workload by the `job-name` label or the name of the pod's
//! first owner, decides a Job's outcome from its `succeeded`/`failed` counters, reports any
//! deleted Job as failed, and reconnects its watches at once, without backoff. This runner
//! attributes pods by [`WORKLOAD_LABEL`]; reads Job conditions; keeps a failure or success
//! seen before a deletion and calls other deletions `stopped`; backs off on watch errors and
//! relists after 410, with one label-selected watch per namespace and kind, stopped when
//! idle; has a `starting` state with a start timeout for batch Jobs too; raises each warning
//! once per run and clears it when it goes away; cancels with background propagation; and
//! lists per namespace, so namespaced Roles suffice (only the pre-check reads cluster-wide).
//!
//! Invariants: no other crate of the workspace calls the API server; this crate never
//! talks to W&B; nothing here panics on network data; API keys never reach logs or errors.
#![doc = include_str!("../README.md")]

mod api;
mod attribution;
mod classify;
mod cleanup;
mod diagnostics;
mod error;
/// Entry points for the fuzz targets in `fuzz/`; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
mod monitor;
mod precheck;
mod rbac;
mod requeue;
mod runner;
mod state;
mod submit;
mod tracker;

#[cfg(test)]
mod fixtures;

pub use api::{OWNED_OBJECTS_ANNOTATION, OwnedObject, ROLE_ANNOTATION, RunRef, WorkloadRole};
pub use attribution::WORKLOAD_LABEL;
pub use cleanup::CleanupReport;
pub use error::{Error, Result};
pub use precheck::workload_pod_specs;
pub use rbac::{RbacNeed, RbacRule, RbacScope, rbac_allows, rbac_markdown, rbac_rules};
pub use requeue::{MAX_REQUEUE_BYTES, REQUEUE_ANNOTATION, RequeueRecord};
pub use runner::{InFlightRun, RunHandle, RunUpdate, Runner, RunnerConfig, Submitted};
pub use state::{
    ContainerLog, Diagnostics, Failure, FailureCause, RunState, RunStatus, Warning, WarningChange,
};
pub use submit::ApiKeySecrets;
pub use tracker::TrackerConfig;
