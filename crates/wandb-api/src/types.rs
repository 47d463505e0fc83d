//! The values this crate hands out: plain Rust types, no GraphQL shapes.

use std::fmt;

use serde_json::Value;

/// The user the API key belongs to (`Viewer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    /// Opaque user id.
    pub id: String,
    /// The user's default entity, when the server says.
    pub entity: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Names of the user's teams.
    pub teams: Vec<String>,
}

/// Who may push to a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueAccess {
    /// Everyone with access to the project.
    Project,
    /// Only the creator.
    User,
    /// A mode this client does not know (a newer server), as the server spelled it. Such a
    /// queue is still listed, so an agent can start and poll it.
    Unknown(String),
}

/// A run queue of a project (`ProjectRunQueues`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunQueue {
    /// Opaque queue id.
    pub id: String,
    /// Queue name.
    pub name: String,
    /// Creator, as the server reports it: a user name, or a numeric user id as text.
    pub created_by: Option<String>,
    /// Access mode.
    pub access: QueueAccess,
}

/// What `createLaunchAgent` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewLaunchAgent {
    /// Entity the agent serves.
    pub entity: String,
    /// Queue project (`model-registry` for W&B's agent).
    pub project: String,
    /// Ids of the queues polled (from [`RunQueue::id`]).
    pub queue_ids: Vec<String>,
    /// Host name shown in the UI.
    pub hostname: String,
    /// The resolved agent config (sent as a JSON string), if any.
    pub agent_config: Option<Value>,
    /// Agent version string, e.g. `rlaunch@0.1.0`.
    pub version: Option<String>,
}

/// A launch agent's record (`LaunchAgent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchAgent {
    /// Opaque agent id.
    pub id: String,
    /// Agent name; also the run id of the agent's bookkeeping run.
    pub name: String,
    /// Queue ids.
    pub run_queue_ids: Vec<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Last status set with `updateLaunchAgent`.
    pub agent_status: Option<String>,
    /// True when a user asked the agent to stop.
    pub stop_polling: bool,
    /// Server's last heartbeat time (ISO 8601), unused by W&B's agent.
    pub heartbeat_at: Option<String>,
}

/// Status values of `updateLaunchAgent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentStatus {
    /// Idle, polling for work.
    Polling,
    /// At least one job is running.
    Running,
    /// Shutting down.
    Killed,
}

impl AgentStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Polling => "POLLING",
            Self::Running => "RUNNING",
            Self::Killed => "KILLED",
        }
    }
}

impl fmt::Display for AgentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run queue item that was popped and whose `runSpec` parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunQueueItem {
    /// Opaque item id (used to ack, fail or warn).
    pub id: String,
    /// The parsed spec (its `Debug` redacts `_wandb_api_key`).
    pub run_spec: rlaunch_model::RunSpec,
}

/// What the server says about a queued item besides its spec (`RunQueueItemInfo`).
/// Every field is optional: servers differ in what they expose.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueItemInfo {
    /// `PENDING`, `LEASED`, `CLAIMED`, `FAILED`, … as the server names it.
    pub state: Option<String>,
    /// The run id given at ack (`runName`), once acked.
    pub associated_run_id: Option<String>,
    /// When the item was pushed.
    pub created_at: Option<std::time::SystemTime>,
    /// Its priority, 0 (critical) ..= 3 (low).
    pub priority: Option<i64>,
    /// The template variable values it was pushed with.
    pub template_variables: Option<Value>,
}

/// Reads an ISO 8601 / RFC 3339 timestamp (`2024-05-01T10:00:00`, with optional fraction
/// and `Z` or `±HH:MM`; no offset means UTC, as W&B sends them). `None` if malformed.
pub fn parse_timestamp(text: &str) -> Option<std::time::SystemTime> {
    let (date, time) = text.trim().split_once(['T', ' '])?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let (clock, offset_secs) = split_offset(time)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(str::parse::<i64>);
    let (h, m, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && h < 24 && m < 60 && s < 61;
    if !valid || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos = format!("{fraction:0<9}").get(..9)?.parse::<u32>().ok()?;
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
}

/// `HH:MM:SS[.f]` and the offset in seconds east of UTC.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match time.rfind(['+', '-']) {
        Some(at) => {
            let (clock, offset) = time.split_at(at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':').unwrap_or((&offset[1..], "0"));
            let minutes = oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?;
            Some((clock, sign * minutes * 60))
        }
        None => Some((time, 0)),
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The result of a successful `popFromRunQueue` that returned an item.
///
/// A malformed spec is not an error of the call: the item is leased to this agent and must
/// be failed (`failRunQueueItem`, stage `agent`, message from `error`), or it would come back
/// after the lease and fail again forever.
#[derive(Clone, Debug, PartialEq)]
pub enum PoppedItem {
    /// The spec parsed.
    Valid(Box<RunQueueItem>),
    /// The spec did not parse; fail the item with `error`.
    Malformed {
        /// Opaque item id.
        id: String,
        /// Every problem found in the spec.
        error: rlaunch_model::RenderError,
        /// The spec as received (parsed from its string form if it came as one), with
        /// `_wandb_api_key` replaced by `[redacted]`.
        raw: Value,
    },
}

impl PoppedItem {
    /// The item id, whichever the variant.
    pub fn id(&self) -> &str {
        match self {
            Self::Valid(item) => &item.id,
            Self::Malformed { id, .. } => id,
        }
    }
}

/// Stage strings of `failRunQueueItem` / `updateRunQueueItemWarning`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureStage {
    /// Before or while submitting (the default).
    Agent,
    /// Image build.
    Build,
    /// The run never called `wandb.init`.
    Run,
    /// Kubernetes scheduling warnings.
    Kubernetes,
}

impl FailureStage {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Build => "build",
            Self::Run => "run",
            Self::Kubernetes => "Kubernetes",
        }
    }
}

impl fmt::Display for FailureStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `pushToRunQueueByName` needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PushRequest {
    /// Queue entity.
    pub entity: String,
    /// Queue project (`model-registry` unless the queue lives elsewhere).
    pub project: String,
    /// Queue name.
    pub queue: String,
    /// The spec (a JSON object), sent as a JSON string.
    pub run_spec: Value,
    /// 0 (critical) ..= 3 (low); `None` leaves the server default.
    pub priority: Option<i64>,
    /// Values for the queue's template variables.
    pub template_variables: Option<Value>,
}

/// What `pushToRunQueueByName` returned.
#[derive(Clone, Debug, PartialEq)]
pub struct PushedItem {
    /// The new item's id.
    pub id: String,
    /// The spec with the queue's `resource` and `resource_args` applied, when returned.
    pub run_spec: Option<Value>,
}

/// One file of an artifact's manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Path inside the artifact.
    pub path: String,
    /// Digest as in the manifest (base64 MD5 for W&B storage).
    pub digest: String,
    /// Size in bytes, when given.
    pub size: Option<u64>,
}

/// An artifact resolved by name: its id and manifest entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Opaque artifact id.
    pub id: String,
    /// `name:alias` as asked for.
    pub name: String,
    /// Artifact digest.
    pub digest: String,
    /// Version index (`vN`), when the server says.
    pub version_index: Option<i64>,
    /// Files listed in the manifest, sorted by path.
    pub entries: Vec<ArtifactEntry>,
}

#[cfg(test)]
mod timestamp_tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::parse_timestamp;

    #[test]
    fn timestamps_with_and_without_offsets_and_fractions() {
        let at = |secs: u64, nanos: u32| Some(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), at(0, 0));
        assert_eq!(parse_timestamp("2024-05-01T10:00:00"), at(1_714_557_600, 0));
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.25Z"),
            at(1_714_557_600, 250_000_000)
        );
        assert_eq!(
            parse_timestamp("2024-05-01T12:30:00+02:30"),
            at(1_714_557_600, 0)
        );
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), at(951_782_400, 0));
        for bad in ["", "yesterday", "2024-13-01T00:00:00Z", "2024-05-01T10:00"] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
