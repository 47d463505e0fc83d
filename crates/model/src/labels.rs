//! Label and annotation keys the agent puts on what it creates, and reads back to find it.

/// Run id, on the workload, its Secrets and additional services (W&B's agent sets it on the Job path only).
pub const RUN_ID: &str = "wandb.ai/run-id";
/// `"true"` on workloads and pod templates the agent monitors.
pub const MONITOR: &str = "wandb.ai/monitor";
/// Server-assigned agent name (changes on every agent start, as in W&B's agent).
pub const AGENT: &str = "wandb.ai/agent";
/// Groups additional services of one run, for cleanup.
pub const AUXILIARY_RESOURCE: &str = "wandb.ai/auxiliary-resource";
/// `launch-agent` on objects the agent owns (API-key Secrets, additional services).
pub const CREATED_BY: &str = "wandb.ai/created-by";
/// Value of [`CREATED_BY`].
pub const CREATED_BY_VALUE: &str = "launch-agent";

/// Stable identity of the agent deployment (unlike [`AGENT`], it survives restarts), so a
/// restarted agent can list and adopt the runs it left in flight. W&B's agent has no such label.
pub const AGENT_IDENTITY: &str = "rlaunch.dev/agent-identity";
/// Annotation: the run queue item id the workload was created for (ids are not label-safe).
pub const RUN_QUEUE_ITEM_ANNOTATION: &str = "rlaunch.dev/run-queue-item";
/// Annotation: the queue the item was popped from.
pub const QUEUE_ANNOTATION: &str = "rlaunch.dev/queue";
/// Annotation: the W&B entity of the run (for reporting after adoption).
pub const ENTITY_ANNOTATION: &str = "rlaunch.dev/entity";
/// Annotation: the W&B project of the run.
pub const PROJECT_ANNOTATION: &str = "rlaunch.dev/project";
