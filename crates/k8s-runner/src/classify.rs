//! Pure classification of Kubernetes status objects: what a Job, a Pod or a custom resource
//! says about its run. No IO and no clock; the [`tracker`](crate::tracker) adds time.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde_json::Value;

use crate::api::Coordinates;
use crate::state::FailureCause;

/// What the workload object (Job or custom resource) says, ignoring pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadSignal {
    /// Created; nothing decisive yet.
    Pending,
    /// Held by a queueing system (not started, not failed).
    Queued(String),
    /// Running.
    Running,
    /// Succeeded.
    Finished,
    /// Failed.
    Failed {
        /// Condition or phase reason.
        reason: Option<String>,
        /// Condition or phase message.
        message: String,
    },
    /// Stopped by a user action on the workload (e.g. Volcano `Aborted`).
    Stopped(String),
}

/// Reasons of the pod `DisruptionTarget` condition that mean the pod was preempted or evicted.
pub const DISRUPTION_REASONS: &[&str] = &[
    "PreemptionByScheduler",
    "PreemptionByKubeScheduler",
    "EvictionByEvictionAPI",
    "DeletionByTaintManager",
    "DeletionByPodGC",
    "TerminationByKubelet",
];

/// Classify a batch/v1 Job from its conditions (never from counters, so parallel, indexed
/// and retrying Jobs are judged the way the Job controller judges them).
pub fn classify_job(job: &Job) -> WorkloadSignal {
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let is_true = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    };
    if is_true("Complete").is_some() || is_true("SuccessCriteriaMet").is_some() {
        return WorkloadSignal::Finished;
    }
    if let Some(condition) = is_true("Failed").or_else(|| is_true("FailureTarget")) {
        return WorkloadSignal::Failed {
            reason: condition.reason.clone(),
            message: condition
                .message
                .clone()
                .unwrap_or_else(|| "the Job failed".to_owned()),
        };
    }
    let suspended_by_spec = job
        .spec
        .as_ref()
        .and_then(|spec| spec.suspend)
        .unwrap_or(false);
    if suspended_by_spec || is_true("Suspended").is_some() {
        let reason = is_true("Suspended")
            .and_then(|c| c.message.clone())
            .unwrap_or_else(|| {
                "the Job is suspended (waiting for admission, e.g. by Kueue)".to_owned()
            });
        return WorkloadSignal::Queued(reason);
    }
    if status.and_then(|s| s.ready).unwrap_or(0) > 0 {
        return WorkloadSignal::Running;
    }
    WorkloadSignal::Pending
}

/// What a workload object says, whatever its kind: the one place the monitor and adoption
/// both classify workloads, so they agree by construction.
pub(crate) fn classify_workload(
    api: &rlaunch_render::ApiCoordinates,
    object: &kube::api::DynamicObject,
) -> WorkloadSignal {
    let Ok(value) = serde_json::to_value(object) else {
        return WorkloadSignal::Pending;
    };
    if api.is_batch_job() {
        match serde_json::from_value::<Job>(value) {
            Ok(job) => classify_job(&job),
            Err(error) => {
                tracing::warn!(job = ?object.metadata.name, error = %error, "cannot read Job status");
                WorkloadSignal::Pending
            }
        }
    } else {
        classify_custom(CustomKind::of(&api.group, &api.kind), &value)
    }
}

/// Workload CRD families the monitor understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomKind {
    /// `batch.volcano.sh` Job (`status.state.phase`).
    VolcanoJob,
    /// Kubeflow training operator jobs (`PyTorchJob`, `TFJob`, `MPIJob`, ...): conditions.
    KubeflowJob,
    /// `jobset.x-k8s.io` JobSet: conditions and `status.replicatedJobsStatus`.
    JobSet,
    /// Anything else: generic phase/conditions heuristics.
    Other,
}

impl CustomKind {
    /// The family of `group`/`kind`.
    pub fn of(group: &str, kind: &str) -> Self {
        match (group, kind) {
            ("batch.volcano.sh", "Job") => CustomKind::VolcanoJob,
            ("kubeflow.org", _) => CustomKind::KubeflowJob,
            ("jobset.x-k8s.io", "JobSet") => CustomKind::JobSet,
            _ => CustomKind::Other,
        }
    }
}

/// Classify a custom resource (the whole object as JSON).
pub fn classify_custom(kind: CustomKind, object: &Value) -> WorkloadSignal {
    let Some(status) = object.get("status") else {
        return WorkloadSignal::Pending;
    };
    match kind {
        CustomKind::VolcanoJob => classify_volcano(status),
        CustomKind::KubeflowJob => classify_kubeflow(status),
        CustomKind::JobSet => classify_jobset(status),
        CustomKind::Other => {
            if status.pointer("/state/phase").is_some() {
                classify_volcano(status)
            } else if status.get("replicatedJobsStatus").is_some() {
                classify_jobset(status)
            } else {
                classify_kubeflow(status)
            }
        }
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn classify_volcano(status: &Value) -> WorkloadSignal {
    let phase = str_at(status, "/state/phase").unwrap_or_default();
    let detail = || {
        let reason = str_at(status, "/state/reason").unwrap_or_default();
        let message = str_at(status, "/state/message").unwrap_or_default();
        match (reason.is_empty(), message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(": {reason}"),
            (true, false) => format!(": {message}"),
            (false, false) => format!(": {reason}: {message}"),
        }
    };
    match phase {
        "Pending" => WorkloadSignal::Queued(format!(
            "Volcano job is Pending (waiting for gang scheduling){}",
            detail()
        )),
        "Inqueue" => WorkloadSignal::Queued(format!(
            "Volcano job is Inqueue (admitted, waiting for resources){}",
            detail()
        )),
        // Restarting and Completing happen after pods ran; Aborting/Terminating are on the way
        // to a terminal phase that will follow.
        "Running" | "Completing" | "Restarting" => WorkloadSignal::Running,
        "Aborting" | "Terminating" => WorkloadSignal::Pending,
        "Completed" => WorkloadSignal::Finished,
        "Failed" | "Terminated" => WorkloadSignal::Failed {
            reason: Some(phase.to_owned()),
            message: format!("Volcano job {phase}{}", detail()),
        },
        "Aborted" => WorkloadSignal::Stopped(format!("Volcano job Aborted{}", detail())),
        _ => WorkloadSignal::Pending,
    }
}

/// `(type, reason, message)` of every condition whose status is `"True"`, in list order.
fn true_conditions(status: &Value) -> Vec<(&str, Option<&str>, Option<&str>)> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .map(|conditions| {
            conditions
                .iter()
                .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
                .filter_map(|c| {
                    Some((
                        c.get("type").and_then(Value::as_str)?,
                        c.get("reason").and_then(Value::as_str),
                        c.get("message").and_then(Value::as_str),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn failed_from(kind: &str, reason: Option<&str>, message: Option<&str>) -> WorkloadSignal {
    WorkloadSignal::Failed {
        reason: reason.map(str::to_owned),
        message: message
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{kind} failed")),
    }
}

fn classify_kubeflow(status: &Value) -> WorkloadSignal {
    let conditions = true_conditions(status);
    let find = |type_: &str| conditions.iter().find(|(t, _, _)| *t == type_);
    if find("Succeeded").is_some() {
        return WorkloadSignal::Finished;
    }
    if let Some((_, reason, message)) = find("Failed") {
        return failed_from("the training job", *reason, *message);
    }
    if let Some((_, _, message)) = find("Suspended") {
        return WorkloadSignal::Queued(
            message
                .unwrap_or("the training job is suspended")
                .to_owned(),
        );
    }
    if find("Running").is_some() || find("Restarting").is_some() {
        return WorkloadSignal::Running;
    }
    WorkloadSignal::Pending
}

fn classify_jobset(status: &Value) -> WorkloadSignal {
    let conditions = true_conditions(status);
    let find = |type_: &str| conditions.iter().find(|(t, _, _)| *t == type_);
    if find("Completed").is_some() {
        return WorkloadSignal::Finished;
    }
    if let Some((_, reason, message)) = find("Failed") {
        return failed_from("the JobSet", *reason, *message);
    }
    if let Some((_, _, message)) = find("Suspended") {
        return WorkloadSignal::Queued(message.unwrap_or("the JobSet is suspended").to_owned());
    }
    let replicated = status
        .get("replicatedJobsStatus")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let sum = |field: &str| -> i64 {
        replicated
            .iter()
            .filter_map(|r| r.get(field).and_then(Value::as_i64))
            .sum()
    };
    if sum("ready") > 0 {
        return WorkloadSignal::Running;
    }
    WorkloadSignal::Pending
}

/// What a `FailedCreate` event of a workload says: `(reason, message)` for a refusal by a
/// ResourceQuota (`ExceededQuota`) or a LimitRange (`LimitRange`), `FailedCreate` for any
/// other refusal of the workload's pods.
pub fn classify_failed_create(message: &str) -> (&'static str, String) {
    let reason = if message.contains("exceeded quota") {
        "ExceededQuota"
    } else if message.contains("per Container") || message.contains("per Pod") {
        "LimitRange"
    } else {
        "FailedCreate"
    };
    // `Error creating: pods "run-x-7f2kq" is forbidden: exceeded quota: …`: the pod name
    // changes on every retry, the refusal does not; keep the refusal.
    let refusal = message
        .split_once(" is forbidden: ")
        .map_or(message, |(_, refusal)| refusal);
    (reason, refusal.trim().to_owned())
}

/// Shortest workload-name prefix Kueue truncates to (its 63-character limit minus `-` and
/// the 5-character hash).
const KUEUE_TRUNCATED_PREFIX: usize = 57;

/// Whether `workload` names the Kueue `Workload` of the object `kind`/`name`: Kueue names it
/// `<lower-case kind>-<name>-<5 hex of a hash>`, the prefix truncated for long names
/// (`jobframework.GetWorkloadNameForOwnerWithGVK`).
pub fn is_kueue_workload_of(workload: &str, kind: &str, name: &str) -> bool {
    let Some((head, hash)) = workload.rsplit_once('-') else {
        return false;
    };
    let hex = hash.len() == 5 && hash.bytes().all(|b| b.is_ascii_hexdigit());
    let full = format!("{}-{name}", kind.to_ascii_lowercase());
    hex && (head == full || (head.len() >= KUEUE_TRUNCATED_PREFIX && full.starts_with(head)))
}

/// A container stuck before it can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// `ImagePullBackOff`, `ErrImagePull` or `InvalidImageName`.
    ImagePull {
        /// Container name.
        container: String,
        /// Image.
        image: String,
        /// Waiting reason.
        reason: String,
        /// Waiting message.
        message: String,
    },
    /// `CrashLoopBackOff`.
    CrashLoop {
        /// Container name.
        container: String,
        /// Exit code of the last termination.
        last_exit_code: Option<i32>,
        /// Waiting message.
        message: String,
    },
    /// `CreateContainerConfigError` or `CreateContainerError`.
    ContainerConfig {
        /// Container name.
        container: String,
        /// Waiting message.
        message: String,
    },
}

impl Blocked {
    /// Stable identity (kind + container), used to time how long the same block lasts.
    pub fn key(&self) -> String {
        match self {
            Blocked::ImagePull { container, .. } => format!("pull/{container}"),
            Blocked::CrashLoop { container, .. } => format!("crash/{container}"),
            Blocked::ContainerConfig { container, .. } => format!("config/{container}"),
        }
    }
}

/// What one pod says about its run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// Pod name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// Scheduler message while `PodScheduled=False` with reason `Unschedulable`.
    pub unschedulable: Option<String>,
    /// The first blocked container, if any.
    pub blocked: Option<Blocked>,
    /// A container that terminated with OOMKilled or a non-zero exit code (current or last
    /// state); OOM is preferred.
    pub terminated_failure: Option<FailureCause>,
    /// `DisruptionTarget=True` with a preemption or eviction reason: `reason: message`.
    pub disruption: Option<String>,
}

impl PodFacts {
    /// True while the pod runs.
    pub fn is_running(&self) -> bool {
        self.phase == "Running"
    }
}

/// Extract [`PodFacts`] from a pod.
pub fn classify_pod(pod: &Pod) -> PodFacts {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = status
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".to_owned());
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let unschedulable = conditions
        .iter()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| {
            c.message
                .clone()
                .unwrap_or_else(|| "the pod cannot be scheduled".to_owned())
        });
    let disruption = conditions
        .iter()
        .find(|c| {
            c.type_ == "DisruptionTarget"
                && c.status == "True"
                && c.reason
                    .as_deref()
                    .is_some_and(|r| DISRUPTION_REASONS.contains(&r))
        })
        .map(|c| {
            let reason = c.reason.as_deref().unwrap_or_default();
            match c.message.as_deref() {
                Some(message) if !message.is_empty() => format!("{reason}: {message}"),
                _ => reason.to_owned(),
            }
        });
    let statuses: Vec<&ContainerStatus> = status
        .into_iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect();
    let blocked = statuses.iter().find_map(|cs| blocked_container(cs));
    let terminated_failure = terminated_failure(pod, &name, &statuses);
    PodFacts {
        name,
        phase,
        unschedulable,
        blocked,
        terminated_failure,
        disruption,
    }
}

fn blocked_container(cs: &ContainerStatus) -> Option<Blocked> {
    let waiting = cs.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let message = waiting.message.clone().unwrap_or_default();
    match reason {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull" => {
            Some(Blocked::ImagePull {
                container: cs.name.clone(),
                image: cs.image.clone(),
                reason: reason.to_owned(),
                message,
            })
        }
        "CrashLoopBackOff" => Some(Blocked::CrashLoop {
            container: cs.name.clone(),
            last_exit_code: cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            message,
        }),
        "CreateContainerConfigError" | "CreateContainerError" => Some(Blocked::ContainerConfig {
            container: cs.name.clone(),
            message,
        }),
        _ => None,
    }
}

fn memory_limit(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|quantity| quantity.0.clone())
}

fn terminated_failure(
    pod: &Pod,
    pod_name: &str,
    statuses: &[&ContainerStatus],
) -> Option<FailureCause> {
    let mut exit: Option<FailureCause> = None;
    for cs in statuses {
        let states = [
            cs.state.as_ref().and_then(|s| s.terminated.as_ref()),
            cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()),
        ];
        for terminated in states.into_iter().flatten() {
            if terminated.reason.as_deref() == Some("OOMKilled") {
                return Some(FailureCause::OomKilled {
                    pod: pod_name.to_owned(),
                    container: cs.name.clone(),
                    memory_limit: memory_limit(pod, &cs.name),
                });
            }
            if terminated.exit_code != 0 && exit.is_none() {
                // A container that failed again after restarting is a crash loop, whether or
                // not the kubelet had put it into CrashLoopBackOff yet: a Job with
                // `restartPolicy: OnFailure` fails on the terminated state of the last
                // restart, which is what the real kubelet shows at that moment.
                exit = Some(if cs.restart_count > 0 {
                    FailureCause::CrashLoop {
                        pod: pod_name.to_owned(),
                        container: cs.name.clone(),
                        last_exit_code: Some(terminated.exit_code),
                    }
                } else {
                    FailureCause::ExitCode {
                        pod: pod_name.to_owned(),
                        container: cs.name.clone(),
                        code: terminated.exit_code,
                    }
                });
            }
        }
    }
    exit
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixtures::{job, pod};

    #[test]
    fn job_conditions_decide_and_counters_do_not() {
        assert_eq!(
            classify_job(&job(false, 0, &[("Complete", "True", "", "")])),
            WorkloadSignal::Finished
        );
        assert_eq!(
            classify_job(&job(false, 0, &[("SuccessCriteriaMet", "True", "", "")])),
            WorkloadSignal::Finished
        );
        assert_eq!(
            classify_job(&job(
                false,
                0,
                &[("FailureTarget", "True", "BackoffLimitExceeded", "limit")]
            )),
            WorkloadSignal::Failed {
                reason: Some("BackoffLimitExceeded".into()),
                message: "limit".into()
            }
        );
        assert!(matches!(
            classify_job(&job(false, 0, &[("Failed", "True", "DeadlineExceeded", "late")])),
            WorkloadSignal::Failed { reason: Some(r), .. } if r == "DeadlineExceeded"
        ));
        // A False condition means nothing.
        assert_eq!(
            classify_job(&job(false, 0, &[("Failed", "False", "", "")])),
            WorkloadSignal::Pending
        );
        // A retrying Job with failed pods but no Failed condition is not failed.
        let mut retrying = job(false, 0, &[]);
        if let Some(status) = retrying.status.as_mut() {
            status.failed = Some(2);
            status.succeeded = Some(1);
        }
        assert_eq!(classify_job(&retrying), WorkloadSignal::Pending);
        assert_eq!(classify_job(&job(false, 1, &[])), WorkloadSignal::Running);
    }

    #[test]
    fn kueue_suspended_job_is_queued() {
        assert!(matches!(
            classify_job(&job(true, 0, &[])),
            WorkloadSignal::Queued(_)
        ));
        assert_eq!(
            classify_job(&job(
                true,
                0,
                &[("Suspended", "True", "JobSuspended", "waiting for quota")]
            )),
            WorkloadSignal::Queued("waiting for quota".into())
        );
    }

    #[test]
    fn kueue_workload_names_are_matched_to_their_owner() {
        assert!(is_kueue_workload_of("job-run-abc-3f9a1", "Job", "run-abc"));
        assert!(is_kueue_workload_of(
            "pytorchjob-ddp-1-0c2e4",
            "PyTorchJob",
            "ddp-1"
        ));
        assert!(!is_kueue_workload_of(
            "job-run-abcd-3f9a1",
            "Job",
            "run-abc"
        ));
        assert!(!is_kueue_workload_of("job-run-abc", "Job", "run-abc"));
        assert!(!is_kueue_workload_of(
            "jobset-run-abc-3f9a1",
            "Job",
            "run-abc"
        ));
        let long = "x".repeat(70);
        let truncated = format!("job-{}", &long[..53]);
        assert!(is_kueue_workload_of(
            &format!("{truncated}-0a1b2"),
            "Job",
            &long
        ));
    }

    #[test]
    fn volcano_phases_map_to_signals() {
        let volcano = |phase: &str| {
            classify_custom(
                CustomKind::VolcanoJob,
                &json!({"status": {"state": {"phase": phase}}}),
            )
        };
        assert!(matches!(volcano("Pending"), WorkloadSignal::Queued(_)));
        assert!(matches!(volcano("Inqueue"), WorkloadSignal::Queued(_)));
        for running in ["Running", "Completing", "Restarting"] {
            assert_eq!(volcano(running), WorkloadSignal::Running, "{running}");
        }
        for transitional in ["Aborting", "Terminating"] {
            assert_eq!(
                volcano(transitional),
                WorkloadSignal::Pending,
                "{transitional}"
            );
        }
        assert_eq!(volcano("Completed"), WorkloadSignal::Finished);
        assert!(matches!(volcano("Failed"), WorkloadSignal::Failed { .. }));
        assert!(matches!(
            volcano("Terminated"),
            WorkloadSignal::Failed { .. }
        ));
        assert!(matches!(volcano("Aborted"), WorkloadSignal::Stopped(_)));
        assert_eq!(
            classify_custom(CustomKind::VolcanoJob, &json!({"metadata": {}})),
            WorkloadSignal::Pending
        );
    }

    #[test]
    fn pytorchjob_conditions_map_to_signals() {
        let with = |conditions: serde_json::Value| {
            classify_custom(
                CustomKind::KubeflowJob,
                &json!({"status": {"conditions": conditions}}),
            )
        };
        assert_eq!(
            with(json!([{"type": "Created", "status": "True"}])),
            WorkloadSignal::Pending
        );
        assert_eq!(
            with(
                json!([{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}])
            ),
            WorkloadSignal::Running
        );
        assert_eq!(
            with(json!([{"type": "Restarting", "status": "True"}])),
            WorkloadSignal::Running
        );
        assert_eq!(
            with(
                json!([{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}])
            ),
            WorkloadSignal::Finished
        );
        assert!(matches!(
            with(json!([{"type": "Failed", "status": "True", "reason": "PyTorchJobFailed", "message": "worker 0 failed"}])),
            WorkloadSignal::Failed { message, .. } if message == "worker 0 failed"
        ));
        assert!(matches!(
            with(json!([{"type": "Suspended", "status": "True"}])),
            WorkloadSignal::Queued(_)
        ));
    }

    #[test]
    fn jobset_reads_the_replicated_jobs_status_list() {
        let jobset = |status: serde_json::Value| {
            classify_custom(CustomKind::JobSet, &json!({ "status": status }))
        };
        assert_eq!(
            jobset(json!({"replicatedJobsStatus": [
                {"name": "workers", "ready": 0, "active": 2, "succeeded": 0, "failed": 0, "suspended": 0}
            ]})),
            WorkloadSignal::Pending
        );
        assert_eq!(
            jobset(json!({"replicatedJobsStatus": [
                {"name": "driver", "ready": 0, "active": 1},
                {"name": "workers", "ready": 2, "active": 2}
            ]})),
            WorkloadSignal::Running
        );
        assert_eq!(
            jobset(
                json!({"conditions": [{"type": "Completed", "status": "True"}],
                          "replicatedJobsStatus": [{"name": "w", "ready": 1}]})
            ),
            WorkloadSignal::Finished
        );
        assert!(matches!(
            jobset(
                json!({"conditions": [{"type": "Failed", "status": "True", "message": "job w-0 failed"}]})
            ),
            WorkloadSignal::Failed { .. }
        ));
        assert!(matches!(
            jobset(json!({"conditions": [{"type": "Suspended", "status": "True"}]})),
            WorkloadSignal::Queued(_)
        ));
    }

    #[test]
    fn unschedulable_pod_keeps_the_scheduler_message() {
        let facts = classify_pod(
            &pod("p")
                .condition(
                    "PodScheduled",
                    "False",
                    "Unschedulable",
                    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
                )
                .build(),
        );
        assert_eq!(
            facts.unschedulable.as_deref(),
            Some("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
        );
        assert!(!facts.is_running());
    }

    #[test]
    fn waiting_reasons_are_classified_with_container_and_image() {
        let pull = classify_pod(&pod("p").waiting("ImagePullBackOff").build());
        assert!(matches!(
            pull.blocked,
            Some(Blocked::ImagePull { ref image, ref container, .. })
                if image == "registry.example/train:1" && container == "main"
        ));
        let err = classify_pod(&pod("p").waiting("ErrImagePull").build());
        assert!(matches!(err.blocked, Some(Blocked::ImagePull { .. })));
        let crash = classify_pod(
            &pod("p")
                .container_state(
                    json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                    json!({"terminated": {"exitCode": 3, "reason": "Error"}}),
                )
                .build(),
        );
        assert!(matches!(
            crash.blocked,
            Some(Blocked::CrashLoop {
                last_exit_code: Some(3),
                ..
            })
        ));
        assert_eq!(
            crash.terminated_failure,
            Some(FailureCause::ExitCode {
                pod: "p".into(),
                container: "main".into(),
                code: 3
            })
        );
        let config = classify_pod(&pod("p").waiting("CreateContainerConfigError").build());
        assert!(matches!(
            config.blocked,
            Some(Blocked::ContainerConfig { .. })
        ));
        let creating = classify_pod(&pod("p").waiting("ContainerCreating").build());
        assert_eq!(creating.blocked, None);
    }

    #[test]
    fn oom_names_container_and_memory_limit() {
        let facts = classify_pod(
            &pod("p")
                .phase("Failed")
                .terminated("OOMKilled", 137)
                .build(),
        );
        let cause = facts.terminated_failure.unwrap();
        assert_eq!(
            cause,
            FailureCause::OomKilled {
                pod: "p".into(),
                container: "main".into(),
                memory_limit: Some("1Gi".into())
            }
        );
        assert!(cause.to_string().contains("memory limit 1Gi"));
    }

    #[test]
    fn exit_code_is_kept_and_zero_is_not_a_failure() {
        let failed = classify_pod(&pod("p").phase("Failed").terminated("Error", 1).build());
        assert!(matches!(
            failed.terminated_failure,
            Some(FailureCause::ExitCode { code: 1, .. })
        ));
        let ok = classify_pod(
            &pod("p")
                .phase("Succeeded")
                .terminated("Completed", 0)
                .build(),
        );
        assert_eq!(ok.terminated_failure, None);
    }

    #[test]
    fn a_failure_after_restarts_is_a_crash_loop_with_its_exit_code() {
        // What the real kubelet shows when a `restartPolicy: OnFailure` Job gives up: the
        // last restart's terminated state, no CrashLoopBackOff waiting state.
        let facts = classify_pod(
            &pod("p")
                .phase("Running")
                .terminated("Error", 1)
                .restarts(2)
                .build(),
        );
        assert_eq!(
            facts.terminated_failure,
            Some(FailureCause::CrashLoop {
                pod: "p".into(),
                container: "main".into(),
                last_exit_code: Some(1)
            })
        );
        assert_eq!(facts.blocked, None);
        let oom = classify_pod(&pod("p").terminated("OOMKilled", 137).restarts(2).build());
        assert!(matches!(
            oom.terminated_failure,
            Some(FailureCause::OomKilled { .. })
        ));
    }

    #[test]
    fn failed_create_keeps_the_refusal_without_the_pod_name() {
        let (reason, message) = classify_failed_create(
            "Error creating: pods \"run-q-749sz\" is forbidden: exceeded quota: gpu-quota, \
             requested: requests.nvidia.com/gpu=16",
        );
        assert_eq!(reason, "ExceededQuota");
        assert_eq!(
            message,
            "exceeded quota: gpu-quota, requested: requests.nvidia.com/gpu=16"
        );
        let (reason, _) = classify_failed_create(
            "Error creating: pods \"p\" is forbidden: maximum memory usage per Container is 512Mi, but limit is 1Gi",
        );
        assert_eq!(reason, "LimitRange");
    }

    #[test]
    fn every_disruption_reason_is_recognised() {
        // The reasons Kubernetes sets on `DisruptionTarget`, written out here rather than
        // read from the constant under test.
        let reasons = [
            "PreemptionByScheduler",
            "PreemptionByKubeScheduler",
            "EvictionByEvictionAPI",
            "DeletionByTaintManager",
            "DeletionByPodGC",
            "TerminationByKubelet",
        ];
        assert_eq!(DISRUPTION_REASONS.len(), reasons.len());
        for reason in reasons {
            let facts = classify_pod(
                &pod("p")
                    .phase("Failed")
                    .condition("DisruptionTarget", "True", reason, "by scheduler")
                    .build(),
            );
            assert_eq!(
                facts.disruption.as_deref(),
                Some(format!("{reason}: by scheduler").as_str())
            );
        }
        let other = classify_pod(
            &pod("p")
                .condition("DisruptionTarget", "True", "SomethingElse", "")
                .build(),
        );
        assert_eq!(other.disruption, None);
    }
}
