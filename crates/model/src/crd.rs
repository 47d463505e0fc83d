//! Resource plurals of the custom resources the agent knows.
//!
//! W&B's agent guesses `lower(kind) + "s"`, which is wrong for
//! irregular kinds; here a table of known CRDs or an explicit override gives the plural, and
//! the live agent falls back to API discovery.

/// `(group, kind, plural)` of workload CRDs the agent supports out of the box.
pub const KNOWN_PLURALS: &[(&str, &str, &str)] = &[
    ("batch.volcano.sh", "Job", "jobs"),
    ("kubeflow.org", "PyTorchJob", "pytorchjobs"),
    ("kubeflow.org", "TFJob", "tfjobs"),
    ("kubeflow.org", "MPIJob", "mpijobs"),
    ("kubeflow.org", "XGBoostJob", "xgboostjobs"),
    ("kubeflow.org", "PaddleJob", "paddlejobs"),
    ("kubeflow.org", "JAXJob", "jaxjobs"),
    ("trainer.kubeflow.org", "TrainJob", "trainjobs"),
    ("jobset.x-k8s.io", "JobSet", "jobsets"),
    ("ray.io", "RayJob", "rayjobs"),
    ("ray.io", "RayCluster", "rayclusters"),
    (
        "leaderworkerset.x-k8s.io",
        "LeaderWorkerSet",
        "leaderworkersets",
    ),
];

/// Plurals of built-in kinds additional services commonly use.
const BUILTIN_PLURALS: &[(&str, &str, &str)] = &[
    ("", "Pod", "pods"),
    ("", "Service", "services"),
    ("", "ConfigMap", "configmaps"),
    ("", "Secret", "secrets"),
    ("", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps", "Deployment", "deployments"),
    ("apps", "StatefulSet", "statefulsets"),
    ("batch", "Job", "jobs"),
    ("networking.k8s.io", "NetworkPolicy", "networkpolicies"),
];

/// The plural for `group`/`kind` from the tables, if known.
pub fn known_plural(group: &str, kind: &str) -> Option<&'static str> {
    KNOWN_PLURALS
        .iter()
        .chain(BUILTIN_PLURALS)
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, plural)| *plural)
}
