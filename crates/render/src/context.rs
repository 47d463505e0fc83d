//! Everything the render engine needs besides the run spec. The caller (agent or CLI) reads
//! env, files and the clock; this crate only receives values.

use std::collections::{BTreeMap, BTreeSet};

use rlaunch_model::ApiKey;

/// Inputs of one render, besides the run spec and the queue config.
#[derive(Clone, Debug)]
pub struct RenderContext {
    /// The run id the queue item was acked with (8 chars `[a-z0-9]` when the agent generates it).
    pub run_id: String,
    /// Run queue item id. When set, the workload gets a deterministic `metadata.name` derived
    /// from it, so a retried submit finds its own object; without it, `generateName` is used.
    pub run_queue_item_id: Option<String>,
    /// Queue the item came from (`WANDB_LAUNCH_QUEUE_NAME`).
    pub queue_name: Option<String>,
    /// Agent entity (`WANDB_LAUNCH_QUEUE_ENTITY`).
    pub queue_entity: Option<String>,
    /// Server-assigned agent name, when rendering inside the agent (`wandb.ai/agent` label).
    pub agent_name: Option<String>,
    /// Stable identity of the agent deployment (label used to adopt runs after a restart).
    pub agent_identity: Option<String>,
    /// W&B base URL given to the workload (`WANDB_BASE_URL`).
    pub base_url: String,
    /// How the API key reaches the output.
    pub api_key: ApiKeyMode,
    /// The resolved image: built, base or the run spec's docker image.
    pub image_uri: Option<String>,
    /// Helm release name (`WANDB_RELEASE_NAME`): one shared `wandb-api-key-<release>` Secret.
    pub release_name: Option<String>,
    /// Namespace used when the manifest names none (kubeconfig context or the agent's own).
    pub default_namespace: String,
    /// Values of the agent environment variables an admin allowed as `${NAME}` macros.
    /// The caller reads only the allow-listed names from the environment.
    pub macro_env: BTreeMap<String, String>,
    /// Field names the admin allows despite the security refuse-list (e.g. `serviceAccountName`).
    pub allowed_fields: BTreeSet<String>,
    /// Name of an image pull Secret the agent created for this run, appended to `imagePullSecrets`.
    pub pull_secret: Option<String>,
    /// Entrypoint of the job artifact, used when the run spec has no `overrides.entry_point`.
    pub job_entrypoint: Option<Vec<String>>,
    /// Runtime code mount for base-image jobs (code fetched at run time, no image build).
    pub code_mount: Option<CodeMount>,
    /// Plural overrides for custom resources, `Kind.group` → plural (beside the built-in table).
    pub crd_plurals: BTreeMap<String, String>,
    /// GPUs for the workload (`--gpu 4xA100`); wins over the queue config's `gpu:` key.
    pub gpu: Option<rlaunch_gpu::GpuRequest>,
    /// Record, for every field of the result, which layer set it (`launch-render --explain`).
    pub explain: bool,
    /// The agent admin's lock-down (W&B's agent's `secure_mode`): refuse `hostPID`, `hostIPC`,
    /// `hostNetwork`, init containers and container `command` in every pod spec of the
    /// workload, and `overrides.entry_point`, each with its field path.
    pub secure_mode: bool,
}

impl RenderContext {
    /// A context with safe defaults: namespace `default`, W&B SaaS URL, API key as a placeholder.
    pub fn new(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            run_queue_item_id: None,
            queue_name: None,
            queue_entity: None,
            agent_name: None,
            agent_identity: None,
            base_url: "https://api.wandb.ai".to_owned(),
            api_key: ApiKeyMode::Placeholder,
            image_uri: None,
            release_name: None,
            default_namespace: "default".to_owned(),
            macro_env: BTreeMap::new(),
            allowed_fields: BTreeSet::new(),
            pull_secret: None,
            job_entrypoint: None,
            code_mount: None,
            crd_plurals: BTreeMap::new(),
            gpu: None,
            explain: false,
            secure_mode: false,
        }
    }
}

/// How the W&B API key appears in the rendered Secret.
#[derive(Clone, Debug)]
pub enum ApiKeyMode {
    /// The agent's key (a run spec's `_wandb_api_key` still wins). Used by the live agent.
    Agent(ApiKey),
    /// A placeholder value, for dry renders that may be printed or committed.
    Placeholder,
    /// No key: no Secret and no `WANDB_API_KEY` (what W&B's agent does for an empty key).
    None,
}

/// Where the code of a base-image job comes from at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeMount {
    /// PVC or emptyDir + init container.
    pub variant: CodeMountVariant,
    /// True when the base image is the agent's automatic default, so dependencies are
    /// installed before the entrypoint runs.
    pub install_dependencies: bool,
}

/// The two code-mount variants: a shared PVC, or an emptyDir filled by an init container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeMountVariant {
    /// Code was copied to a shared PVC; mount `sub_path` of `claim_name` at `/mnt/wandb`.
    Pvc {
        /// `WANDB_LAUNCH_CODE_PVC_NAME`.
        claim_name: String,
        /// The image source string (`<job name>:v<version>`).
        sub_path: String,
    },
    /// An init container fetches the code into an emptyDir.
    EmptyDir {
        /// What to fetch.
        source: CodeSource,
        /// Qualified job artifact name, fetched into `/mnt/wandb/.job` when installing deps.
        job_artifact: Option<String>,
        /// Image of the init container.
        init_image: String,
    },
}

/// Source of a job's code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeSource {
    /// A W&B code artifact, by qualified name.
    Artifact(String),
    /// A git repository at a commit.
    Repo {
        /// Clone URL.
        remote: String,
        /// Commit to check out.
        commit: String,
    },
}

/// Init container image of the emptyDir code mount (the one W&B's agent pins).
pub const DEFAULT_CODE_INIT_IMAGE: &str = "wandb/launch-agent:0.25.1";
