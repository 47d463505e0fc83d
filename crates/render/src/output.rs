//! What a render produces: the objects to create, in creation order, plus what the agent
//! needs to submit and watch them.

use serde_json::Value;

/// Result of rendering one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// Namespace every object goes to.
    pub namespace: String,
    /// Objects in creation order: Secrets, additional services, then the workload (last).
    pub objects: Vec<RenderedObject>,
    /// Non-fatal findings (e.g. a macro whose value is missing), one sentence each.
    pub warnings: Vec<String>,
    /// Agent-only settings taken out of the queue config.
    pub agent_keys: AgentKeys,
    /// For every object, which layer set each field (only when `explain` was requested).
    pub provenance: Vec<Provenance>,
}

impl Rendered {
    /// The workload (Job or custom resource): always the last object.
    pub fn workload(&self) -> Option<&RenderedObject> {
        self.objects
            .iter()
            .rev()
            .find(|object| object.role == ObjectRole::Workload)
    }

    /// The manifests alone, in creation order.
    pub fn manifests(&self) -> Vec<&Value> {
        self.objects.iter().map(|object| &object.manifest).collect()
    }
}

/// One object to create.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedObject {
    /// Why the agent creates it.
    pub role: ObjectRole,
    /// API coordinates.
    pub api: ApiCoordinates,
    /// The body to send.
    pub manifest: Value,
}

/// Why an object is part of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectRole {
    /// The `wandb-api-key-*` Secret (`kubernetes.io/basic-auth`, key `password`).
    ApiKeySecret {
        /// True in helm mode: shared by all runs, never deleted by the agent.
        shared: bool,
    },
    /// An entry of `additional_services`, created and awaited before the workload.
    AdditionalService {
        /// Wait for readiness before creating the workload.
        wait_for_ready: bool,
        /// Readiness timeout in seconds.
        wait_timeout_secs: u64,
    },
    /// The batch Job or custom resource that runs the code.
    Workload,
}

/// Group, version, kind and plural of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiCoordinates {
    /// API group; empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Resource plural when known (built-in kinds, the CRD table, or an override); `None`
    /// means the live agent must find it through discovery.
    pub plural: Option<String>,
}

impl ApiCoordinates {
    /// `group/version` or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Agent-only keys removed from `resource_args.kubernetes` before submission.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentKeys {
    /// `configFile`: kubeconfig to submit with.
    pub config_file: Option<String>,
    /// `context`: kubeconfig context.
    pub context: Option<String>,
    /// `wait_for_ready` (default true): wait for additional services.
    pub wait_for_ready: bool,
    /// `wait_timeout` in seconds (default 300).
    pub wait_timeout_secs: u64,
}

/// Which layer of the render set a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// The queue config (`--queue-config`, or the queue's defaults).
    QueueConfig,
    /// The run spec (`resource_args`, image, overrides).
    RunSpec,
    /// A `${macro}` substitution.
    Macro,
    /// A default or label the agent adds (names, namespace, backoffLimit, labels…).
    AgentDefault,
    /// What a GPU request implies: resources, tolerations, node affinity, `/dev/shm`.
    GpuRequest,
    /// A `WANDB_*` variable injected for the workload.
    WandbEnv,
    /// The forced security context.
    SecurityInjection,
}

impl Layer {
    /// Short human name, as `--explain` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::QueueConfig => "queue config",
            Layer::RunSpec => "run spec",
            Layer::Macro => "macro",
            Layer::AgentDefault => "agent default",
            Layer::GpuRequest => "gpu request",
            Layer::WandbEnv => "W&B env",
            Layer::SecurityInjection => "security injection",
        }
    }
}

/// Field → layer for one rendered object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// `(path, layer)` for every leaf of the manifest, in document order.
    pub fields: Vec<(String, Layer)>,
}
