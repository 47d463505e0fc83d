//! The pod annotations that script what kwok does with a pod: the contract between the
//! kwok Stages in `assets/kwok/stages.yaml` and the tests of other crates.
//!
//! Put them on the pod (for a Job: `spec.template.metadata.annotations`). kwok only acts
//! on pods the real scheduler has bound to a kwok node.
//!
//! | annotation | values | default |
//! | --- | --- | --- |
//! | [`OUTCOME`] | [`outcome`] `succeed`, `fail`, `oom`, `image-pull-backoff`, `err-image-pull`, `crash-loop`, `preempted`, `evicted`, `run-forever` | `succeed` when `restartPolicy` is `Never`/`OnFailure` (Job pods), `run-forever` otherwise |
//! | [`RUN_SECONDS`] | whole seconds the pod stays `Running` (or `Pending`, for the image-pull outcomes) before its outcome is applied | `1` |
//! | [`EXIT_CODE`] | exit code of every container for `fail` | `1` |
//! | [`RESTART_COUNT`] | `restartCount` reported with `crash-loop` | `5` |
//! | [`MESSAGE`] | message on the terminated/waiting state or the `DisruptionTarget` condition | a realistic text |
//!
//! What each outcome looks like (the statuses a monitor must classify):
//!
//! - `succeed`: phase `Succeeded`, every container `terminated` exit 0 reason `Completed`.
//! - `fail`: phase `Failed`, containers `terminated` with exit code [`EXIT_CODE`] reason `Error`.
//! - `oom`: phase `Failed`, containers `terminated` exit 137 reason `OOMKilled`.
//! - `image-pull-backoff` / `err-image-pull`: phase stays `Pending`, containers
//!   `waiting` with reason `ImagePullBackOff` / `ErrImagePull`; the pod never runs.
//! - `crash-loop`: phase `Running`, containers `waiting` reason `CrashLoopBackOff` with
//!   `restartCount` = [`RESTART_COUNT`] and `lastState.terminated` exit 1 reason `Error`.
//! - `preempted`: phase `Failed`, condition `DisruptionTarget=True` reason
//!   `PreemptionByScheduler`, containers `terminated` exit 137 reason `Error`.
//! - `evicted`: like `preempted` but reason `EvictionByEvictionAPI`.
//! - `run-forever`: phase `Running` until deleted.
//!
//! Deleted pods are removed at once (there is no kubelet to wait for).

/// Prefix shared by every annotation of this contract.
pub const PREFIX: &str = "kwok.rlaunch.dev/";
/// What happens to the pod; one of the [`outcome`] constants.
pub const OUTCOME: &str = "kwok.rlaunch.dev/outcome";
/// Seconds before the outcome is applied, as a decimal string such as `"5"`.
pub const RUN_SECONDS: &str = "kwok.rlaunch.dev/run-seconds";
/// Exit code for the `fail` outcome, as a decimal string such as `"3"`.
pub const EXIT_CODE: &str = "kwok.rlaunch.dev/exit-code";
/// `restartCount` for the `crash-loop` outcome, as a decimal string.
pub const RESTART_COUNT: &str = "kwok.rlaunch.dev/restart-count";
/// Free-text message placed on the failure.
pub const MESSAGE: &str = "kwok.rlaunch.dev/message";

/// Values of [`OUTCOME`].
pub mod outcome {
    /// Phase `Succeeded`, exit code 0.
    pub const SUCCEED: &str = "succeed";
    /// Phase `Failed`, exit code from [`super::EXIT_CODE`] (default 1), reason `Error`.
    pub const FAIL: &str = "fail";
    /// Phase `Failed`, exit code 137, reason `OOMKilled`.
    pub const OOM: &str = "oom";
    /// Phase `Pending`, containers waiting with reason `ImagePullBackOff`.
    pub const IMAGE_PULL_BACKOFF: &str = "image-pull-backoff";
    /// Phase `Pending`, containers waiting with reason `ErrImagePull`.
    pub const ERR_IMAGE_PULL: &str = "err-image-pull";
    /// Phase `Running`, containers waiting with reason `CrashLoopBackOff`.
    pub const CRASH_LOOP: &str = "crash-loop";
    /// Phase `Failed` with condition `DisruptionTarget` reason `PreemptionByScheduler`.
    pub const PREEMPTED: &str = "preempted";
    /// Phase `Failed` with condition `DisruptionTarget` reason `EvictionByEvictionAPI`.
    pub const EVICTED: &str = "evicted";
    /// Phase `Running` until the pod is deleted.
    pub const RUN_FOREVER: &str = "run-forever";
}
