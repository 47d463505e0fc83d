//! The fake server's in-memory state and the domain rules (leases, priorities, acks), shared by
//! the GraphQL resolvers and the admin API.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::FakeConfig;

/// Run queue item states, as the fake names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemState {
    /// Waiting to be popped.
    Pending,
    /// Popped, not acked; returns to `Pending` when the lease runs out.
    Leased,
    /// Acked by an agent.
    Claimed,
    /// Failed with `failRunQueueItem`.
    Failed,
    /// Finished (set through the admin API).
    Finished,
}

/// A failure or warning recorded against an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemReport {
    /// Stage string (`agent`, `build`, `run`, `Kubernetes`).
    pub stage: String,
    /// Message.
    pub message: String,
    /// `filePaths` sent (absent → empty).
    pub file_paths: Vec<String>,
}

/// An item as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemView {
    /// Opaque id (`base64("RunQueueItem:N")`).
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Queue entity.
    pub entity: String,
    /// Queue project.
    pub project: String,
    /// Current state.
    pub state: ItemState,
    /// Priority (lower is served first).
    pub priority: i64,
    /// The stored spec (queue config merged in).
    pub run_spec: Value,
    /// How many times it was popped.
    pub pop_count: u32,
    /// Agent that leased it last.
    pub leased_by: Option<String>,
    /// `runName` given at ack.
    pub associated_run_id: Option<String>,
    /// The failure, when failed.
    pub failure: Option<ItemReport>,
    /// Warnings, in order.
    pub warnings: Vec<ItemReport>,
}

/// A launch agent as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// Opaque id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Queue ids.
    pub run_queues: Vec<String>,
    /// Hostname.
    pub hostname: String,
    /// `agentConfig` as sent.
    pub agent_config: Option<String>,
    /// `version` as sent.
    pub version: Option<String>,
    /// Last status.
    pub status: Option<String>,
    /// Stop flag.
    pub stop_polling: bool,
    /// Last heartbeat (RFC 3339).
    pub heartbeat_at: Option<String>,
}

/// A run as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run name (id).
    pub name: String,
    /// State (`pending`, `running`, `finished`, ...).
    pub state: String,
    /// Stop requested.
    pub stopped: bool,
}

/// A fault to inject for the next `count` requests of an operation. `Default` is one use of
/// nothing (set at least one of `status`, `delay_ms`, `graphql_error`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// Operation name as written in the document (`popFromRunQueue`, `Viewer`, ...), or `*`.
    pub operation: String,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// Answer with this HTTP status instead of executing.
    #[serde(default)]
    pub status: Option<u16>,
    /// `Retry-After` header value to send with `status`.
    #[serde(default)]
    pub retry_after: Option<String>,
    /// Wait this long (milliseconds) before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Answer 200 with this GraphQL error instead of executing.
    #[serde(default)]
    pub graphql_error: Option<String>,
    /// Body of the `status` answer (default: a GraphQL error body naming the fault).
    #[serde(default)]
    pub body: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for Fault {
    fn default() -> Self {
        Self {
            operation: "*".to_owned(),
            count: 1,
            status: None,
            retry_after: None,
            delay_ms: None,
            graphql_error: None,
            body: None,
        }
    }
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order of arrival, from 1.
    pub seq: u64,
    /// Milliseconds since the fake started, on tokio's clock (so a test that pauses time
    /// sees exact gaps).
    pub at_ms: f64,
    /// Operation executed (from the document; `None` if the document did not parse).
    pub operation: Option<String>,
    /// `operationName` as sent.
    pub operation_name_sent: Option<String>,
    /// The document text.
    pub query: String,
    /// The variables as sent (`None` when omitted).
    pub variables: Option<Value>,
    /// User the basic-auth key belongs to; `None` when rejected.
    pub user: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// The GraphQL `errors[].message` values answered (validation, resolver or injected
    /// errors); empty when the operation succeeded.
    pub errors: Vec<String>,
    /// Request headers, names lower-cased, without `authorization`.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(crate) struct QueueRec {
    pub id: String,
    pub entity: String,
    pub project: String,
    pub name: String,
    pub resource: String,
    pub config: Value,
    pub access: String,
    pub created_by: Option<Value>,
}

#[derive(Debug)]
pub(crate) struct ItemRec {
    pub n: u64,
    pub id: String,
    pub queue: usize,
    pub spec: Value,
    pub priority: i64,
    pub state: ItemState,
    pub lease_until: Option<Instant>,
    pub leased_by: Option<String>,
    pub pop_count: u32,
    pub run_name: Option<String>,
    pub failure: Option<ItemReport>,
    pub warnings: Vec<ItemReport>,
}

#[derive(Debug)]
pub(crate) struct AgentRec {
    pub view: AgentView,
}

#[derive(Debug)]
pub(crate) struct RunRec {
    pub id: String,
    pub state: String,
    pub stopped: bool,
}

#[derive(Debug)]
pub(crate) struct ArtifactRec {
    pub n: u64,
    pub id: String,
    pub entity: String,
    pub project: String,
    pub collection: String,
    pub version_index: i64,
    pub aliases: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A user of the fake: what an accepted API key maps to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeUser {
    /// Username.
    pub username: String,
    /// Default entity.
    pub entity: String,
    /// Teams the user belongs to.
    #[serde(default)]
    pub teams: Vec<String>,
}

/// Everything the fake knows.
#[derive(Debug)]
pub(crate) struct Store {
    pub started: Instant,
    pub base_url: String,
    pub lease: Duration,
    pub keys: BTreeMap<String, FakeUser>,
    next_n: u64,
    pub teams: BTreeMap<String, bool>,
    pub projects: BTreeMap<(String, String), String>,
    pub queues: Vec<QueueRec>,
    pub items: Vec<ItemRec>,
    pub agents: Vec<AgentRec>,
    pub runs: BTreeMap<(String, String, String), RunRec>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub artifacts: Vec<ArtifactRec>,
    pub faults: Vec<Fault>,
    pub journal: Vec<JournalEntry>,
    pub journal_seq: u64,
}

/// A failed domain operation: becomes a GraphQL error or an admin 4xx.
pub(crate) type Outcome<T> = Result<T, String>;

pub(crate) fn opaque_id(kind: &str, n: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{n}"))
}

impl Store {
    pub(crate) fn new(config: &FakeConfig) -> Self {
        let mut store = Self {
            started: Instant::now(),
            base_url: String::new(),
            lease: config.lease,
            keys: config.api_keys.clone(),
            next_n: 0,
            teams: BTreeMap::new(),
            projects: BTreeMap::new(),
            queues: Vec::new(),
            items: Vec::new(),
            agents: Vec::new(),
            runs: BTreeMap::new(),
            files: BTreeMap::new(),
            artifacts: Vec::new(),
            faults: Vec::new(),
            journal: Vec::new(),
            journal_seq: 0,
        };
        for user in config.api_keys.values() {
            store.teams.entry(user.entity.clone()).or_insert(false);
            for team in &user.teams {
                store.teams.insert(team.clone(), true);
            }
        }
        store
    }

    fn next(&mut self) -> u64 {
        self.next_n += 1;
        self.next_n
    }

    pub(crate) fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Returns expired leases to the queue.
    pub(crate) fn expire_leases(&mut self, now: Instant) {
        for item in &mut self.items {
            if item.state == ItemState::Leased && item.lease_until.is_some_and(|t| t <= now) {
                tracing::debug!(item = %item.id, "lease expired, item back to pending");
                item.state = ItemState::Pending;
                item.lease_until = None;
            }
        }
    }

    pub(crate) fn ensure_project(&mut self, entity: &str, project: &str) -> String {
        self.teams.entry(entity.to_owned()).or_insert(false);
        if let Some(id) = self.projects.get(&(entity.to_owned(), project.to_owned())) {
            return id.clone();
        }
        let n = self.next();
        let id = opaque_id("Project", n);
        self.projects
            .insert((entity.to_owned(), project.to_owned()), id.clone());
        id
    }

    pub(crate) fn create_queue(&mut self, queue: crate::admin::NewQueue) -> Outcome<String> {
        let crate::admin::NewQueue {
            entity,
            project,
            name,
            resource,
            config,
            access,
            created_by,
        } = queue;
        let (entity, project, name) = (entity.as_str(), project.as_str(), name.as_str());
        if self.find_queue(entity, project, name).is_some() {
            return Err(format!(
                "run queue {name} already exists in {entity}/{project}"
            ));
        }
        self.ensure_project(entity, project);
        let n = self.next();
        let id = opaque_id("RunQueue", n);
        self.queues.push(QueueRec {
            id: id.clone(),
            entity: entity.to_owned(),
            project: project.to_owned(),
            name: name.to_owned(),
            resource,
            config,
            access,
            created_by,
        });
        Ok(id)
    }

    pub(crate) fn find_queue(&self, entity: &str, project: &str, name: &str) -> Option<usize> {
        self.queues
            .iter()
            .position(|q| q.entity == entity && q.project == project && q.name == name)
    }

    /// Pushes a spec; the queue's config goes under it and `resource` is set to the queue's.
    pub(crate) fn push(
        &mut self,
        entity: &str,
        project: &str,
        queue: &str,
        spec: Value,
        priority: Option<i64>,
    ) -> Outcome<(String, Value)> {
        let queue_index = self
            .find_queue(entity, project, queue)
            .ok_or_else(|| format!("run queue {queue} not found in {entity}/{project}"))?;
        let queue_rec = &self.queues[queue_index];
        let merged = match spec {
            Value::Object(_) => {
                let mut merged = queue_rec.config.clone();
                merge(&mut merged, spec);
                if !queue_rec.resource.is_empty()
                    && let Value::Object(map) = &mut merged
                {
                    map.insert("resource".into(), Value::String(queue_rec.resource.clone()));
                }
                merged
            }
            // Anything else is stored as given, so tests can push malformed specs.
            other => other,
        };
        let n = self.next();
        let id = opaque_id("RunQueueItem", n);
        self.items.push(ItemRec {
            n,
            id: id.clone(),
            queue: queue_index,
            spec: merged.clone(),
            priority: priority.unwrap_or(2),
            state: ItemState::Pending,
            lease_until: None,
            leased_by: None,
            pop_count: 0,
            run_name: None,
            failure: None,
            warnings: Vec::new(),
        });
        Ok((id, merged))
    }

    /// Leases the best pending item of a queue (lowest priority, then oldest).
    pub(crate) fn pop(
        &mut self,
        entity: &str,
        project: &str,
        queue: &str,
        agent: Option<String>,
    ) -> Outcome<Option<(String, Value)>> {
        let now = Instant::now();
        self.expire_leases(now);
        let queue_index = self
            .find_queue(entity, project, queue)
            .ok_or_else(|| format!("run queue {queue} not found in {entity}/{project}"))?;
        let lease = self.lease;
        let best = self
            .items
            .iter_mut()
            .filter(|item| item.queue == queue_index && item.state == ItemState::Pending)
            .min_by_key(|item| (item.priority, item.n));
        Ok(best.map(|item| {
            item.state = ItemState::Leased;
            item.lease_until = Some(now + lease);
            item.leased_by = agent;
            item.pop_count += 1;
            (item.id.clone(), item.spec.clone())
        }))
    }

    pub(crate) fn ack(&mut self, item_id: &str, run_name: &str) -> bool {
        self.expire_leases(Instant::now());
        let Some(item) = self.items.iter_mut().find(|item| item.id == item_id) else {
            return false;
        };
        if item.state != ItemState::Leased {
            return false;
        }
        item.state = ItemState::Claimed;
        item.lease_until = None;
        item.run_name = Some(run_name.to_owned());
        let target = (
            item.spec
                .get("entity")
                .and_then(Value::as_str)
                .map(str::to_owned),
            item.spec
                .get("project")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        if let (Some(entity), Some(project)) = target {
            self.upsert_run(&entity, &project, run_name, Some("pending"));
        }
        true
    }

    pub(crate) fn report(&mut self, item_id: &str, report: ItemReport, fail: bool) -> bool {
        let Some(item) = self.items.iter_mut().find(|item| item.id == item_id) else {
            return false;
        };
        if fail {
            item.state = ItemState::Failed;
            item.lease_until = None;
            item.failure = Some(report);
        } else {
            item.warnings.push(report);
        }
        true
    }

    /// Creates the run if missing; sets `state` when given. Returns (id, inserted).
    pub(crate) fn upsert_run(
        &mut self,
        entity: &str,
        project: &str,
        name: &str,
        state: Option<&str>,
    ) -> (String, bool) {
        self.ensure_project(entity, project);
        let key = (entity.to_owned(), project.to_owned(), name.to_owned());
        if let Some(run) = self.runs.get_mut(&key) {
            if let Some(state) = state {
                run.state = state.to_owned();
            }
            return (run.id.clone(), false);
        }
        let n = self.next();
        let id = opaque_id("Run", n);
        self.runs.insert(
            key,
            RunRec {
                id: id.clone(),
                state: state.unwrap_or("running").to_owned(),
                stopped: false,
            },
        );
        (id, true)
    }

    pub(crate) fn create_agent(&mut self, mut view: AgentView) -> Outcome<String> {
        for queue_id in &view.run_queues {
            if !self.queues.iter().any(|q| &q.id == queue_id) {
                return Err(format!("run queue {queue_id} not found"));
            }
        }
        let n = self.next();
        view.id = opaque_id("LaunchAgent", n);
        view.name = format!("launch-agent-{n}");
        view.heartbeat_at = Some(now_rfc3339());
        let id = view.id.clone();
        self.agents.push(AgentRec { view });
        Ok(id)
    }

    pub(crate) fn agent_mut(&mut self, id: &str) -> Option<&mut AgentView> {
        self.agents
            .iter_mut()
            .map(|agent| &mut agent.view)
            .find(|view| view.id == id)
    }

    pub(crate) fn add_artifact(
        &mut self,
        entity: &str,
        project: &str,
        collection: &str,
        aliases: Vec<String>,
        files: BTreeMap<String, Vec<u8>>,
    ) -> String {
        self.ensure_project(entity, project);
        let version_index = self
            .artifacts
            .iter()
            .filter(|a| a.entity == entity && a.project == project && a.collection == collection)
            .count() as i64;
        let n = self.next();
        let id = opaque_id("Artifact", n);
        self.artifacts.push(ArtifactRec {
            n,
            id: id.clone(),
            entity: entity.to_owned(),
            project: project.to_owned(),
            collection: collection.to_owned(),
            version_index,
            aliases,
            files,
        });
        id
    }

    /// Finds `collection:alias` (`latest` = newest, `vN` = version N, or a named alias).
    pub(crate) fn find_artifact(&self, entity: &str, project: &str, name: &str) -> Option<usize> {
        let (collection, alias) = name.split_once(':').unwrap_or((name, "latest"));
        let candidates = self.artifacts.iter().enumerate().filter(|(_, a)| {
            a.entity == entity && a.project == project && a.collection == collection
        });
        if alias == "latest" {
            return candidates
                .max_by_key(|(_, a)| a.version_index)
                .map(|(i, _)| i);
        }
        let version = alias.strip_prefix('v').and_then(|v| v.parse::<i64>().ok());
        candidates
            .filter(|(_, a)| {
                Some(a.version_index) == version || a.aliases.iter().any(|x| x == alias)
            })
            .map(|(i, _)| i)
            .next()
    }

    pub(crate) fn artifact_json(&self, index: usize) -> Value {
        let artifact = &self.artifacts[index];
        let digest = artifact_digest(artifact);
        json!({
            "id": artifact.id,
            "digest": digest,
            "versionIndex": artifact.version_index,
            "currentManifest": {
                "id": opaque_id("ArtifactManifest", artifact.n),
                "file": {
                    "name": "wandb_manifest.json",
                    "directUrl": format!("{}/_artifacts/{}/manifest", self.base_url, artifact.n),
                    "uploadUrl": null,
                },
            },
        })
    }

    pub(crate) fn manifest(&self, n: u64) -> Option<Value> {
        let artifact = self.artifacts.iter().find(|a| a.n == n)?;
        let contents: serde_json::Map<String, Value> = artifact
            .files
            .iter()
            .map(|(path, bytes)| {
                (
                    path.clone(),
                    json!({"digest": content_digest(bytes), "size": bytes.len()}),
                )
            })
            .collect();
        Some(json!({
            "version": 1,
            "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": contents,
        }))
    }

    pub(crate) fn item_view(&self, item: &ItemRec) -> ItemView {
        let queue = &self.queues[item.queue];
        ItemView {
            id: item.id.clone(),
            queue: queue.name.clone(),
            entity: queue.entity.clone(),
            project: queue.project.clone(),
            state: item.state,
            priority: item.priority,
            run_spec: item.spec.clone(),
            pop_count: item.pop_count,
            leased_by: item.leased_by.clone(),
            associated_run_id: item.run_name.clone(),
            failure: item.failure.clone(),
            warnings: item.warnings.clone(),
        }
    }

    /// Takes one use of the first fault matching `operation`.
    pub(crate) fn take_fault(&mut self, operation: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.count > 0 && (f.operation == operation || f.operation == "*"))?;
        let fault = &mut self.faults[index];
        fault.count -= 1;
        let taken = fault.clone();
        if fault.count == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}

fn artifact_digest(artifact: &ArtifactRec) -> String {
    let mut all = Vec::new();
    for (path, bytes) in &artifact.files {
        all.extend_from_slice(path.as_bytes());
        all.extend_from_slice(content_digest(bytes).as_bytes());
    }
    content_digest(&all)
}

/// Not MD5 (no extra dependency): a stable FNV-1a 64 digest, base64-encoded. The client
/// treats digests as opaque.
fn content_digest(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    base64::engine::general_purpose::STANDARD.encode(hash.to_be_bytes())
}

/// Deep-merges `over` into `base`; values of `over` win, objects merge key by key.
pub(crate) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// The current UTC time as RFC 3339 (seconds precision).
pub(crate) fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_lets_the_spec_win() {
        let mut base = json!({"resource_args": {"kubernetes": {"a": 1, "b": 2}}, "x": 1});
        merge(
            &mut base,
            json!({"resource_args": {"kubernetes": {"b": 3}}, "y": 2}),
        );
        assert_eq!(
            base,
            json!({"resource_args": {"kubernetes": {"a": 1, "b": 3}}, "x": 1, "y": 2})
        );
    }

    #[test]
    fn timestamps_look_like_rfc3339() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
