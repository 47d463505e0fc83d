//! The per-run state machine. Pure: every input carries the `Instant` it was observed at, so
//! timeouts are tested with explicit timestamps.
//!
//! ```text
//! starting ──▶ running ──▶ finished | failed | stopped | preempted
//!    ▲  │
//!    │  ▼
//!   queued   (Kueue-suspended Job, Volcano Pending/Inqueue, suspended CR: no start timeout)
//! ```
//!
//! Rules, in order:
//! 1. Terminal states are final.
//! 2. A deleted workload is `stopped` (the reason says whether the agent cancelled it),
//!    unless it had already finished or failed: a failure seen before the deletion wins (a
//!    user's `ttlSecondsAfterFinished: 0` deletes a failed Job at once), and the deletion
//!    ends the settle wait of rule 3.
//! 3. A failed or stopped workload is `preempted` when one of its pods carries a
//!    `DisruptionTarget` preemption/eviction reason. The verdict waits [`TrackerConfig::verdict_settle`]
//!    so a pod update racing the Job update can still turn `failed` into `preempted`.
//! 4. Workload finished → `finished`; failed → `failed`, with the most telling pod cause
//!    (OOMKilled, then a crash loop, then a non-zero exit code) when one is known.
//! 5. A container in CrashLoopBackOff is a warning while Kubernetes retries it (the Job
//!    controller counts the restarts against `backoffLimit` and fails the Job when they are
//!    used up, which rule 4 reports as a crash loop); it fails the run only after
//!    [`TrackerConfig::crash_loop_budget`]. A container that cannot pull its image or be
//!    created fails the run after [`TrackerConfig::image_pull_grace`].
//! 6. Queued workloads are `queued`; leaving the queue restarts the start clock.
//! 7. A run never seen running fails after [`TrackerConfig::start_timeout`] in `starting`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::classify::{Blocked, PodFacts, WorkloadSignal};
use crate::state::{Failure, FailureCause, RunState, Warning};

/// Time limits of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// How long a run may stay `starting` (not queued) before it fails. Default 1800 s.
    pub start_timeout: Duration,
    /// How long a container may stay in ImagePullBackOff / ErrImagePull /
    /// CreateContainerConfigError before the run fails. Default 120 s.
    pub image_pull_grace: Duration,
    /// How long a workload failure waits for pod updates that may reveal a preemption.
    /// Default 3 s.
    pub verdict_settle: Duration,
    /// How long a container may stay in CrashLoopBackOff before the agent gives up on
    /// Kubernetes' retries and fails the run; `None` leaves it to the workload's own limits
    /// (`backoffLimit`). Default 30 min.
    pub crash_loop_budget: Option<Duration>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            start_timeout: Duration::from_secs(1800),
            image_pull_grace: Duration::from_secs(120),
            verdict_settle: Duration::from_secs(3),
            crash_loop_budget: Some(Duration::from_secs(30 * 60)),
        }
    }
}

#[derive(Clone, Debug)]
struct PodTrack {
    facts: PodFacts,
    /// `(block key, since)` of the current blocked container.
    blocked_since: Option<(String, Instant)>,
    deleted: bool,
}

/// How far the run got, for the start timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Not running yet; the start clock runs from `since`.
    Starting { since: Instant },
    /// Held by a queueing system: no start clock.
    Queued,
    /// Seen running at least once: the start timeout no longer applies.
    Ran,
}

/// Whether the workload object still exists, and who removed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Presence {
    /// It exists.
    Present,
    /// The agent asked to cancel it; a deletion is a cancellation.
    CancelRequested,
    /// It is gone.
    Deleted {
        /// The agent cancelled it.
        by_agent: bool,
    },
}

/// State machine of one run.
#[derive(Clone, Debug)]
pub(crate) struct RunTracker {
    config: TrackerConfig,
    progress: Progress,
    workload: WorkloadSignal,
    presence: Presence,
    failure_seen_at: Option<Instant>,
    /// The latest refusal of the run's pods at creation (quota, limit range), by reason.
    refused: BTreeMap<String, String>,
    /// Why the queueing system (Kueue) has not admitted the workload, from its own object.
    admission_pending: Option<String>,
    pods: BTreeMap<String, PodTrack>,
    state: RunState,
}

impl RunTracker {
    /// A run submitted (or adopted) at `now`.
    pub fn new(config: TrackerConfig, now: Instant) -> Self {
        RunTracker {
            config,
            progress: Progress::Starting { since: now },
            workload: WorkloadSignal::Pending,
            presence: Presence::Present,
            failure_seen_at: None,
            refused: BTreeMap::new(),
            admission_pending: None,
            pods: BTreeMap::new(),
            state: RunState::Starting,
        }
    }

    /// Current state.
    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// The workload object's latest signal.
    pub fn observe_workload(&mut self, signal: WorkloadSignal, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        let queued = matches!(signal, WorkloadSignal::Queued(_));
        self.progress = match (self.progress, queued) {
            (Progress::Ran, _) => Progress::Ran,
            (_, true) => Progress::Queued,
            // Leaving the queue restarts the start clock.
            (Progress::Queued, false) => Progress::Starting { since: now },
            (starting, false) => starting,
        };
        if matches!(
            signal,
            WorkloadSignal::Failed { .. } | WorkloadSignal::Stopped(_)
        ) && self.failure_seen_at.is_none()
        {
            self.failure_seen_at = Some(now);
        }
        if signal == WorkloadSignal::Running {
            self.progress = Progress::Ran;
        }
        self.workload = signal;
        self.evaluate(now);
    }

    /// The workload object was deleted (or is gone after a relist).
    pub fn observe_workload_deleted(&mut self, now: Instant) {
        self.presence = Presence::Deleted {
            by_agent: self.presence == Presence::CancelRequested,
        };
        self.evaluate(now);
    }

    /// The agent asked to cancel the run; a later deletion is reported as a cancellation.
    pub fn mark_cancel_requested(&mut self) {
        if self.presence == Presence::Present {
            self.presence = Presence::CancelRequested;
        }
    }

    /// A pod of the run was added or changed.
    pub fn observe_pod(&mut self, facts: PodFacts, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        if facts.is_running() {
            self.progress = Progress::Ran;
        }
        let entry = self.pods.remove(&facts.name);
        let blocked_since = match (&facts.blocked, entry.and_then(|e| e.blocked_since)) {
            (Some(blocked), Some((key, since))) if key == blocked.key() => Some((key, since)),
            (Some(blocked), _) => Some((blocked.key(), now)),
            (None, _) => None,
        };
        self.pods.insert(
            facts.name.clone(),
            PodTrack {
                facts,
                blocked_since,
                deleted: false,
            },
        );
        self.evaluate(now);
    }

    /// A pod of the run was deleted. Its last facts are kept (they may explain a failure).
    pub fn observe_pod_deleted(&mut self, name: &str, now: Instant) {
        if let Some(pod) = self.pods.get_mut(name) {
            pod.deleted = true;
            pod.blocked_since = None;
        }
        self.evaluate(now);
    }

    /// The workload's pods were refused at creation (a `FailedCreate` event): `reason` is
    /// `ExceededQuota`, `LimitRange` or `FailedCreate`, `message` the API server's words.
    pub fn observe_pods_refused(&mut self, reason: &str, message: &str, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        self.refused.insert(reason.to_owned(), message.to_owned());
        self.evaluate(now);
    }

    /// Kueue says why the workload waits (its `Pending` event): while the workload is
    /// queued, that is the reason the run shows, rather than the workload's own words.
    pub fn observe_admission_pending(&mut self, message: &str, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        self.admission_pending = Some(message.to_owned());
        self.evaluate(now);
    }

    /// Time passed.
    pub fn tick(&mut self, now: Instant) {
        self.evaluate(now);
    }

    /// The next instant at which time alone may change the state (a verdict settling, a
    /// grace or budget running out, the start timeout); `None` when only new observations
    /// can. The monitor schedules one wake-up per run at this instant.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.state.is_terminal() {
            return None;
        }
        let mut deadlines = Vec::new();
        if matches!(
            self.workload,
            WorkloadSignal::Failed { .. } | WorkloadSignal::Stopped(_)
        ) && let Some(seen) = self.failure_seen_at
        {
            deadlines.push(seen + self.config.verdict_settle);
        }
        for pod in self.pods.values().filter(|p| !p.deleted) {
            let (Some(blocked), Some((_, since))) = (&pod.facts.blocked, &pod.blocked_since) else {
                continue;
            };
            match blocked {
                Blocked::CrashLoop { .. } => {
                    if let Some(budget) = self.config.crash_loop_budget {
                        deadlines.push(*since + budget);
                    }
                }
                Blocked::ImagePull { .. } | Blocked::ContainerConfig { .. } => {
                    deadlines.push(*since + self.config.image_pull_grace);
                }
            }
        }
        if let Progress::Starting { since } = self.progress {
            deadlines.push(since + self.config.start_timeout);
        }
        deadlines.into_iter().min()
    }

    /// Active warnings: unschedulable pods and containers that cannot pull their image yet,
    /// de-duplicated and sorted.
    pub fn warnings(&self) -> Vec<Warning> {
        if self.state.is_terminal() {
            return Vec::new();
        }
        let mut warnings = BTreeSet::new();
        if self.progress != Progress::Ran {
            for (reason, message) in &self.refused {
                warnings.insert(Warning {
                    reason: reason.clone(),
                    message: message.clone(),
                });
            }
        }
        for pod in self.pods.values().filter(|p| !p.deleted) {
            if let Some(message) = &pod.facts.unschedulable {
                warnings.insert(Warning {
                    reason: "Unschedulable".to_owned(),
                    message: message.clone(),
                });
            }
            match &pod.facts.blocked {
                Some(Blocked::ImagePull {
                    container,
                    image,
                    reason,
                    message,
                }) => {
                    warnings.insert(Warning {
                        reason: reason.clone(),
                        message: format!(
                            "container {container} cannot pull image {image}: {message}"
                        ),
                    });
                }
                Some(Blocked::ContainerConfig { container, message }) => {
                    warnings.insert(Warning {
                        reason: "CreateContainerConfigError".to_owned(),
                        message: format!("container {container}: {message}"),
                    });
                }
                Some(Blocked::CrashLoop {
                    container,
                    last_exit_code,
                    ..
                }) => {
                    let code = last_exit_code
                        .map(|code| format!(" (last exit code {code})"))
                        .unwrap_or_default();
                    warnings.insert(Warning {
                        reason: "CrashLoopBackOff".to_owned(),
                        message: format!(
                            "container {container} of pod {} keeps crashing{code}; Kubernetes is retrying it",
                            pod.facts.name
                        ),
                    });
                }
                None => {}
            }
        }
        warnings.into_iter().collect()
    }

    fn disruption(&self) -> Option<String> {
        self.pods
            .values()
            .find_map(|pod| pod.facts.disruption.clone())
            .map(|reason| format!("pod was disrupted: {reason}"))
    }

    fn pod_failure(&self) -> Option<FailureCause> {
        let causes = self
            .pods
            .values()
            .filter_map(|pod| pod.facts.terminated_failure.clone());
        let mut first = None;
        for cause in causes {
            if matches!(cause, FailureCause::OomKilled { .. }) {
                return Some(cause);
            }
            first.get_or_insert(cause);
        }
        self.crash_loop().or(first)
    }

    fn crash_loop(&self) -> Option<FailureCause> {
        self.pods.values().find_map(|pod| match &pod.facts.blocked {
            Some(Blocked::CrashLoop {
                container,
                last_exit_code,
                ..
            }) => Some(FailureCause::CrashLoop {
                pod: pod.facts.name.clone(),
                container: container.clone(),
                last_exit_code: *last_exit_code,
            }),
            _ => None,
        })
    }

    fn blocked_failure(&self, now: Instant) -> Option<FailureCause> {
        for pod in self.pods.values().filter(|p| !p.deleted) {
            let (Some(blocked), Some((_, since))) = (&pod.facts.blocked, &pod.blocked_since) else {
                continue;
            };
            let pod_name = pod.facts.name.clone();
            let blocked_for = now.saturating_duration_since(*since);
            let expired = blocked_for >= self.config.image_pull_grace;
            let over_budget = self
                .config
                .crash_loop_budget
                .is_some_and(|budget| blocked_for >= budget);
            match blocked {
                Blocked::CrashLoop {
                    container,
                    last_exit_code,
                    ..
                } if over_budget => {
                    return Some(FailureCause::CrashLoop {
                        pod: pod_name,
                        container: container.clone(),
                        last_exit_code: *last_exit_code,
                    });
                }
                Blocked::ImagePull {
                    container,
                    image,
                    reason,
                    ..
                } if expired => {
                    return Some(FailureCause::ImagePull {
                        pod: pod_name,
                        container: container.clone(),
                        image: image.clone(),
                        reason: reason.clone(),
                    });
                }
                Blocked::ContainerConfig { container, .. } if expired => {
                    return Some(FailureCause::ContainerConfig {
                        pod: pod_name,
                        container: container.clone(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    fn fail(&mut self, cause: FailureCause, context: Option<String>) {
        let mut message = cause.to_string();
        if let Some(context) = context.filter(|c| !c.is_empty()) {
            message = format!("{message}: {context}");
        }
        self.state = RunState::Failed(Failure { cause, message });
    }

    fn evaluate(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        let decided = matches!(
            self.workload,
            WorkloadSignal::Finished | WorkloadSignal::Failed { .. } | WorkloadSignal::Stopped(_)
        );
        let deleted = matches!(self.presence, Presence::Deleted { .. });
        if let Presence::Deleted { by_agent } = self.presence
            && !decided
        {
            let reason = if by_agent {
                "cancelled by the agent".to_owned()
            } else {
                "the workload object was deleted".to_owned()
            };
            self.state = RunState::Stopped { reason };
            return;
        }
        // A deleted workload gets no more pod updates: its verdict is settled.
        let settled = deleted
            || now.saturating_duration_since(self.failure_seen_at.unwrap_or(now))
                >= self.config.verdict_settle;
        match self.workload.clone() {
            WorkloadSignal::Finished => {
                self.state = RunState::Finished;
                return;
            }
            WorkloadSignal::Failed { reason, message } => {
                if let Some(disruption) = self.disruption() {
                    self.state = RunState::Preempted { reason: disruption };
                    return;
                }
                if !settled {
                    return;
                }
                match self.pod_failure() {
                    Some(cause) => {
                        let context = match &reason {
                            Some(reason) => format!("{reason}: {message}"),
                            None => message,
                        };
                        self.fail(cause, Some(context));
                    }
                    None => {
                        let mut failure_message = FailureCause::WorkloadFailed {
                            reason: reason.clone(),
                        }
                        .to_string();
                        if !message.is_empty() {
                            failure_message = format!("{failure_message}: {message}");
                        }
                        self.state = RunState::Failed(Failure {
                            cause: FailureCause::WorkloadFailed { reason },
                            message: failure_message,
                        });
                    }
                }
                return;
            }
            WorkloadSignal::Stopped(reason) => {
                if let Some(disruption) = self.disruption() {
                    self.state = RunState::Preempted { reason: disruption };
                    return;
                }
                if settled {
                    self.state = RunState::Stopped { reason };
                }
                return;
            }
            WorkloadSignal::Queued(_) | WorkloadSignal::Running | WorkloadSignal::Pending => {}
        }
        if let Some(cause) = self.blocked_failure(now) {
            self.fail(cause, None);
            return;
        }
        if let WorkloadSignal::Queued(reason) = &self.workload {
            self.state = RunState::Queued {
                reason: self
                    .admission_pending
                    .clone()
                    .unwrap_or_else(|| reason.clone()),
            };
            return;
        }
        if self.progress == Progress::Ran {
            self.state = RunState::Running;
            return;
        }
        let Progress::Starting { since } = self.progress else {
            self.state = RunState::Starting;
            return;
        };
        if now.saturating_duration_since(since) >= self.config.start_timeout {
            if let Some(message) = self.refused.values().next() {
                let cause = FailureCause::PodsRefused {
                    message: message.clone(),
                };
                self.fail(cause, None);
                return;
            }
            let context = self
                .warnings()
                .into_iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            self.fail(
                FailureCause::StartTimeout {
                    after_secs: self.config.start_timeout.as_secs(),
                },
                Some(context),
            );
            return;
        }
        self.state = RunState::Starting;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify_pod;
    use crate::fixtures::pod;

    fn config() -> TrackerConfig {
        TrackerConfig {
            start_timeout: Duration::from_secs(600),
            image_pull_grace: Duration::from_secs(60),
            verdict_settle: Duration::from_secs(3),
            crash_loop_budget: Some(Duration::from_secs(300)),
        }
    }

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    fn failed(reason: &str) -> WorkloadSignal {
        WorkloadSignal::Failed {
            reason: Some(reason.into()),
            message: "Job has reached the specified backoff limit".into(),
        }
    }

    #[test]
    fn running_pod_then_complete_job_finishes() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.observe_pod(classify_pod(&pod("p").phase("Running").build()), at(t0, 1));
        assert_eq!(tracker.state(), &RunState::Running);
        tracker.observe_workload(WorkloadSignal::Finished, at(t0, 2));
        assert_eq!(tracker.state(), &RunState::Finished);
        // Terminal is final.
        tracker.observe_workload_deleted(at(t0, 3));
        assert_eq!(tracker.state(), &RunState::Finished);
    }

    #[test]
    fn job_failure_names_the_exit_code_after_settling() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_pod(
            classify_pod(&pod("p").phase("Failed").terminated("Error", 1).build()),
            at(t0, 1),
        );
        tracker.observe_workload(failed("BackoffLimitExceeded"), at(t0, 2));
        assert!(
            !tracker.state().is_terminal(),
            "waits for a racing preemption"
        );
        tracker.tick(at(t0, 5));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed, got {:?}", tracker.state());
        };
        assert_eq!(
            failure.cause,
            FailureCause::ExitCode {
                pod: "p".into(),
                container: "main".into(),
                code: 1
            }
        );
        assert!(failure.message.contains("exited with code 1"));
        assert!(failure.message.contains("BackoffLimitExceeded"));
    }

    #[test]
    fn oom_wins_over_plain_exit_codes() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_pod(
            classify_pod(&pod("a").phase("Failed").terminated("Error", 2).build()),
            t0,
        );
        tracker.observe_pod(
            classify_pod(
                &pod("b")
                    .phase("Failed")
                    .terminated("OOMKilled", 137)
                    .build(),
            ),
            t0,
        );
        tracker.observe_workload(failed("BackoffLimitExceeded"), t0);
        tracker.tick(at(t0, 10));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed");
        };
        assert!(matches!(
            &failure.cause,
            FailureCause::OomKilled { container, memory_limit: Some(limit), .. }
                if container == "main" && limit == "1Gi"
        ));
    }

    #[test]
    fn preemption_wins_over_job_failure_even_if_the_pod_update_comes_later() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_pod(classify_pod(&pod("p").phase("Running").build()), t0);
        tracker.observe_workload(failed("BackoffLimitExceeded"), at(t0, 1));
        tracker.observe_pod(
            classify_pod(
                &pod("p")
                    .phase("Failed")
                    .condition(
                        "DisruptionTarget",
                        "True",
                        "PreemptionByScheduler",
                        "preempted by a higher priority pod",
                    )
                    .build(),
            ),
            at(t0, 2),
        );
        assert!(matches!(
            tracker.state(),
            RunState::Preempted { reason } if reason.contains("PreemptionByScheduler")
        ));
    }

    #[test]
    fn image_pull_backoff_fails_only_after_the_grace() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let pulling = || classify_pod(&pod("p").waiting("ImagePullBackOff").build());
        tracker.observe_pod(pulling(), at(t0, 1));
        assert_eq!(tracker.state(), &RunState::Starting);
        assert_eq!(tracker.warnings().len(), 1);
        tracker.observe_pod(pulling(), at(t0, 30));
        tracker.tick(at(t0, 60));
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.tick(at(t0, 61));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed");
        };
        assert!(failure.message.contains("registry.example/train:1"));
        assert!(matches!(failure.cause, FailureCause::ImagePull { .. }));
        assert!(tracker.warnings().is_empty());
    }

    #[test]
    fn pull_grace_restarts_when_the_container_recovers() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_pod(classify_pod(&pod("p").waiting("ErrImagePull").build()), t0);
        tracker.observe_pod(
            classify_pod(&pod("p").waiting("ContainerCreating").build()),
            at(t0, 50),
        );
        tracker.observe_pod(
            classify_pod(&pod("p").waiting("ErrImagePull").build()),
            at(t0, 55),
        );
        tracker.tick(at(t0, 100));
        assert_eq!(tracker.state(), &RunState::Starting);
    }

    #[test]
    fn crash_loop_warns_while_kubernetes_retries_and_fails_after_the_budget() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let crashing = || {
            classify_pod(
                &pod("p")
                    .phase("Running")
                    .waiting("CrashLoopBackOff")
                    .build(),
            )
        };
        tracker.observe_pod(crashing(), t0);
        assert!(!tracker.state().is_terminal(), "{:?}", tracker.state());
        let warnings = tracker.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].reason, "CrashLoopBackOff");
        assert!(warnings[0].message.contains("container main of pod p"));
        tracker.observe_pod(crashing(), at(t0, 299));
        assert!(!tracker.state().is_terminal());
        tracker.tick(at(t0, 300));
        assert!(matches!(
            tracker.state(),
            RunState::Failed(Failure {
                cause: FailureCause::CrashLoop { .. },
                ..
            })
        ));
    }

    #[test]
    fn without_a_budget_a_crash_loop_fails_only_with_its_workload() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(
            TrackerConfig {
                crash_loop_budget: None,
                ..config()
            },
            t0,
        );
        tracker.observe_pod(
            classify_pod(
                &pod("p")
                    .phase("Running")
                    .waiting("CrashLoopBackOff")
                    .build(),
            ),
            t0,
        );
        tracker.tick(at(t0, 100_000));
        assert!(!tracker.state().is_terminal());
        tracker.observe_workload(failed("BackoffLimitExceeded"), at(t0, 100_001));
        tracker.tick(at(t0, 100_010));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed, got {:?}", tracker.state());
        };
        assert!(
            matches!(&failure.cause, FailureCause::CrashLoop { pod, .. } if pod == "p"),
            "{failure:?}"
        );
    }

    #[test]
    fn a_failed_workload_deleted_before_the_verdict_settles_is_failed() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_pod(
            classify_pod(&pod("p").phase("Failed").terminated("Error", 3).build()),
            t0,
        );
        tracker.observe_workload(failed("BackoffLimitExceeded"), at(t0, 1));
        assert!(!tracker.state().is_terminal());
        tracker.observe_pod_deleted("p", at(t0, 1));
        tracker.observe_workload_deleted(at(t0, 1));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed, got {:?}", tracker.state());
        };
        assert!(
            matches!(failure.cause, FailureCause::ExitCode { code: 3, .. }),
            "{failure:?}"
        );
    }

    #[test]
    fn unschedulable_warns_then_times_out_with_the_message() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.";
        tracker.observe_pod(
            classify_pod(
                &pod("p")
                    .condition("PodScheduled", "False", "Unschedulable", message)
                    .build(),
            ),
            at(t0, 1),
        );
        assert_eq!(
            tracker.warnings(),
            vec![Warning {
                reason: "Unschedulable".into(),
                message: message.into()
            }]
        );
        tracker.tick(at(t0, 599));
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.tick(at(t0, 600));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed");
        };
        assert_eq!(
            failure.cause,
            FailureCause::StartTimeout { after_secs: 600 }
        );
        assert!(failure.message.contains(message), "{}", failure.message);
    }

    #[test]
    fn refused_pods_warn_and_fail_at_the_start_timeout_with_the_refusal() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let message = "Error creating: pods \"run-a-x\" is forbidden: exceeded quota: gpu, \
                       requested: requests.nvidia.com/gpu=16, used: requests.nvidia.com/gpu=0, \
                       limited: requests.nvidia.com/gpu=8";
        tracker.observe_pods_refused("ExceededQuota", message, at(t0, 1));
        assert_eq!(
            tracker.warnings(),
            vec![Warning {
                reason: "ExceededQuota".into(),
                message: message.into()
            }]
        );
        tracker.tick(at(t0, 599));
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.tick(at(t0, 600));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed, got {:?}", tracker.state());
        };
        assert_eq!(
            failure.cause,
            FailureCause::PodsRefused {
                message: message.into()
            }
        );
        assert!(
            failure.message.contains("exceeded quota: gpu"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn the_next_deadline_is_the_earliest_time_rule() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        assert_eq!(tracker.next_deadline(), Some(at(t0, 600)), "start timeout");
        tracker.observe_pod(
            classify_pod(&pod("p").waiting("ImagePullBackOff").build()),
            at(t0, 10),
        );
        assert_eq!(tracker.next_deadline(), Some(at(t0, 70)), "pull grace");
        tracker.observe_pod(classify_pod(&pod("p").phase("Running").build()), at(t0, 20));
        assert_eq!(
            tracker.next_deadline(),
            None,
            "running: only observations matter"
        );
        tracker.observe_workload(failed("BackoffLimitExceeded"), at(t0, 30));
        assert_eq!(tracker.next_deadline(), Some(at(t0, 33)), "verdict settle");
        tracker.tick(at(t0, 33));
        assert!(tracker.state().is_terminal());
        assert_eq!(tracker.next_deadline(), None);
    }

    #[test]
    fn warnings_are_deduplicated_across_pods_and_clear() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let unschedulable = |name: &str| {
            classify_pod(
                &pod(name)
                    .condition("PodScheduled", "False", "Unschedulable", "no gpu")
                    .build(),
            )
        };
        tracker.observe_pod(unschedulable("a"), t0);
        tracker.observe_pod(unschedulable("b"), t0);
        assert_eq!(tracker.warnings().len(), 1);
        tracker.observe_pod(classify_pod(&pod("a").phase("Running").build()), t0);
        assert_eq!(tracker.warnings().len(), 1);
        tracker.observe_pod_deleted("b", t0);
        assert!(tracker.warnings().is_empty());
    }

    #[test]
    fn a_queued_run_shows_kueues_reason_rather_than_the_jobs() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        let kueue = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor default, 1 more needed";
        tracker.observe_admission_pending(kueue, t0);
        assert_eq!(
            tracker.state(),
            &RunState::Starting,
            "a message alone queues nothing"
        );
        tracker.observe_workload(WorkloadSignal::Queued("Job suspended".into()), t0);
        assert!(matches!(tracker.state(), RunState::Queued { reason } if reason == kueue));
        tracker.observe_workload(WorkloadSignal::Running, at(t0, 1));
        assert!(!matches!(tracker.state(), RunState::Queued { .. }));
    }

    #[test]
    fn queued_runs_do_not_time_out_and_the_clock_restarts_on_admission() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_workload(WorkloadSignal::Queued("waiting for quota".into()), t0);
        tracker.tick(at(t0, 5000));
        assert!(
            matches!(tracker.state(), RunState::Queued { reason } if reason == "waiting for quota")
        );
        tracker.observe_workload(WorkloadSignal::Pending, at(t0, 5000));
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.tick(at(t0, 5599));
        assert_eq!(tracker.state(), &RunState::Starting);
        tracker.tick(at(t0, 5600));
        assert!(matches!(tracker.state(), RunState::Failed(_)));
    }

    #[test]
    fn running_runs_never_hit_the_start_timeout() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_workload(WorkloadSignal::Running, t0);
        tracker.tick(at(t0, 10_000));
        assert_eq!(tracker.state(), &RunState::Running);
    }

    #[test]
    fn deletion_is_stopped_and_says_who() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_workload_deleted(t0);
        assert!(
            matches!(tracker.state(), RunState::Stopped { reason } if reason.contains("deleted"))
        );
        let mut cancelled = RunTracker::new(config(), t0);
        cancelled.mark_cancel_requested();
        cancelled.observe_workload_deleted(t0);
        assert!(
            matches!(cancelled.state(), RunState::Stopped { reason } if reason.contains("cancelled"))
        );
    }

    #[test]
    fn volcano_abort_is_stopped_unless_a_pod_was_evicted() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_workload(WorkloadSignal::Stopped("Volcano job Aborted".into()), t0);
        tracker.tick(at(t0, 5));
        assert!(matches!(tracker.state(), RunState::Stopped { .. }));

        let mut evicted = RunTracker::new(config(), t0);
        evicted.observe_pod(
            classify_pod(
                &pod("p")
                    .condition("DisruptionTarget", "True", "EvictionByEvictionAPI", "drain")
                    .build(),
            ),
            t0,
        );
        evicted.observe_workload(WorkloadSignal::Stopped("Volcano job Aborted".into()), t0);
        assert!(matches!(evicted.state(), RunState::Preempted { .. }));
    }

    #[test]
    fn workload_failure_without_pod_detail_keeps_the_condition() {
        let t0 = Instant::now();
        let mut tracker = RunTracker::new(config(), t0);
        tracker.observe_workload(failed("DeadlineExceeded"), t0);
        tracker.tick(at(t0, 3));
        let RunState::Failed(failure) = tracker.state() else {
            panic!("expected failed");
        };
        assert_eq!(
            failure.cause,
            FailureCause::WorkloadFailed {
                reason: Some("DeadlineExceeded".into())
            }
        );
        assert!(failure.message.contains("backoff limit"));
    }
}
