//! What the monitor says about a run: its state, why it failed, and its active warnings.

use std::fmt;

/// Where a run is in its life. Terminal states never change again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Submitted; pods are being scheduled, pulled or created.
    Starting,
    /// Waiting for admission by a queueing system (Kueue-suspended Job, Volcano Pending or
    /// Inqueue, suspended PyTorchJob or JobSet). The start timeout does not run while queued.
    Queued {
        /// Why, as the queueing system says it.
        reason: String,
    },
    /// At least one pod runs (or the custom resource reports running).
    Running,
    /// Completed successfully. Terminal.
    Finished,
    /// Failed. Terminal.
    Failed(Failure),
    /// Deleted or cancelled before finishing. Terminal.
    Stopped {
        /// Why (cancelled by the agent, object deleted, Volcano job aborted).
        reason: String,
    },
    /// A pod was preempted or evicted and the workload gave up. Terminal: the agent may requeue.
    Preempted {
        /// The disruption reason and message.
        reason: String,
    },
}

impl RunState {
    /// True for `finished`, `failed`, `stopped` and `preempted`.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            RunState::Finished
                | RunState::Failed(_)
                | RunState::Stopped { .. }
                | RunState::Preempted { .. }
        )
    }

    /// Lower-case name as W&B Launch spells states (`starting`, `running`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            RunState::Starting => "starting",
            RunState::Queued { .. } => "queued",
            RunState::Running => "running",
            RunState::Finished => "finished",
            RunState::Failed(_) => "failed",
            RunState::Stopped { .. } => "stopped",
            RunState::Preempted { .. } => "preempted",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunState::Queued { reason } => write!(f, "queued: {reason}"),
            RunState::Failed(failure) => write!(f, "failed: {}", failure.message),
            RunState::Stopped { reason } => write!(f, "stopped: {reason}"),
            RunState::Preempted { reason } => write!(f, "preempted: {reason}"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why a run failed: a machine-readable cause plus one human sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The classified cause.
    pub cause: FailureCause,
    /// Human-readable summary naming the pod, container, image or limit involved.
    pub message: String,
}

/// The classified cause of a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureCause {
    /// The workload reported failure (Job `Failed`/`FailureTarget` condition, CR failed phase
    /// or condition) and no pod-level cause was found.
    WorkloadFailed {
        /// The condition or phase reason (e.g. `BackoffLimitExceeded`, `DeadlineExceeded`).
        reason: Option<String>,
    },
    /// A container exited with a non-zero code.
    ExitCode {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Exit code.
        code: i32,
    },
    /// A container was killed for exceeding its memory limit.
    OomKilled {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// The container's memory limit, when it has one.
        memory_limit: Option<String>,
    },
    /// A container image could not be pulled within the grace period.
    ImagePull {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Image reference.
        image: String,
        /// `ImagePullBackOff`, `ErrImagePull` or `InvalidImageName`.
        reason: String,
    },
    /// A container kept crashing.
    CrashLoop {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Exit code of the last crash, when known.
        last_exit_code: Option<i32>,
    },
    /// A container could not be created from its configuration (missing Secret or ConfigMap).
    ContainerConfig {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// The run did not start running within the configured start timeout.
    StartTimeout {
        /// The timeout that expired, in seconds.
        after_secs: u64,
    },
    /// The run's pods were refused at creation until the start timeout: a ResourceQuota
    /// (`exceeded quota`) or a LimitRange (`maximum … per Container`) of the namespace.
    PodsRefused {
        /// The refusal as the API server states it, naming the object and the numbers.
        message: String,
    },
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FailureCause::WorkloadFailed { reason } => match reason {
                Some(reason) => format!("the workload failed ({reason})"),
                None => "the workload failed".to_owned(),
            },
            FailureCause::ExitCode {
                pod,
                container,
                code,
            } => format!("container {container} in pod {pod} exited with code {code}"),
            FailureCause::OomKilled {
                pod,
                container,
                memory_limit,
            } => match memory_limit {
                Some(limit) => format!(
                    "container {container} in pod {pod} was OOMKilled (out of memory; memory limit {limit})"
                ),
                None => format!(
                    "container {container} in pod {pod} was OOMKilled (out of memory; no memory limit set)"
                ),
            },
            FailureCause::ImagePull {
                pod,
                container,
                image,
                reason,
            } => format!("container {container} in pod {pod} cannot pull image {image} ({reason})"),
            FailureCause::CrashLoop {
                pod,
                container,
                last_exit_code,
            } => match last_exit_code {
                Some(code) => format!(
                    "container {container} in pod {pod} is in CrashLoopBackOff (last exit code {code})"
                ),
                None => format!("container {container} in pod {pod} is in CrashLoopBackOff"),
            },
            FailureCause::ContainerConfig { pod, container } => format!(
                "container {container} in pod {pod} cannot be created from its configuration (CreateContainerConfigError)"
            ),
            FailureCause::StartTimeout { after_secs } => {
                format!("the run did not start within {after_secs} s")
            }
            FailureCause::PodsRefused { message } => {
                format!("the run's pods were refused by the namespace's admission: {message}")
            }
        };
        f.write_str(&text)
    }
}

impl FailureCause {
    /// True when the agent, not Kubernetes, declared the failure (start timeout, image pull,
    /// crash loop, container config): the workload is still pending or retrying and is
    /// deleted when the run is reported failed.
    pub fn decided_by_agent(&self) -> bool {
        matches!(
            self,
            FailureCause::StartTimeout { .. }
                | FailureCause::ImagePull { .. }
                | FailureCause::CrashLoop { .. }
                | FailureCause::ContainerConfig { .. }
                | FailureCause::PodsRefused { .. }
        )
    }

    /// Short PascalCase reason, used for the Kubernetes Event and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            FailureCause::WorkloadFailed { .. } => "WorkloadFailed",
            FailureCause::ExitCode { .. } => "NonZeroExitCode",
            FailureCause::OomKilled { .. } => "OOMKilled",
            FailureCause::ImagePull { .. } => "ImagePullFailed",
            FailureCause::CrashLoop { .. } => "CrashLoopBackOff",
            FailureCause::ContainerConfig { .. } => "CreateContainerConfigError",
            FailureCause::StartTimeout { .. } => "StartTimeout",
            FailureCause::PodsRefused { .. } => "PodsRefused",
        }
    }
}

/// A condition worth telling the user about while the run is not (yet) failed, such as an
/// unschedulable pod. De-duplicated per run by `(reason, message)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Warning {
    /// Short reason (`Unschedulable`, `ImagePullBackOff`, ...).
    pub reason: String,
    /// The message, as Kubernetes states it.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A change in a run's warnings since the last time they were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WarningChange {
    /// A new warning appeared.
    Raised(Warning),
    /// A warning went away (e.g. the pod got scheduled).
    Cleared(Warning),
}

/// Size-bounded tail of one container's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerLog {
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The log text: its last bytes in [`Diagnostics`], its first bytes from
    /// `Runner::read_log` (at most the limit either way), lossy UTF-8.
    pub tail: String,
    /// True when the log was cut to fit the limit.
    pub truncated: bool,
}

/// What the agent puts into a failure report: condensed events and log tails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// Kubernetes events of the workload and its pods, condensed: one line per distinct
    /// `(object, reason, message)`, with a count.
    pub events: Vec<String>,
    /// Log tails of every container of the run's pods.
    pub logs: Vec<ContainerLog>,
}

/// Snapshot of a run as the monitor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStatus {
    /// Current state.
    pub state: RunState,
    /// Active warnings, de-duplicated and sorted.
    pub warnings: Vec<Warning>,
    /// For failed and preempted runs, collected once when the run became terminal.
    pub diagnostics: Option<Diagnostics>,
}

impl RunStatus {
    /// A run just submitted.
    pub fn starting() -> Self {
        RunStatus {
            state: RunState::Starting,
            warnings: Vec::new(),
            diagnostics: None,
        }
    }
}
