//! The fake server's in-memory state and its rules (leases, priorities, acks, reports,
//! heartbeats, faults), shared by the GraphQL resolvers, the admin routes and
//! [`crate::FakeWandb`] (behind [`crate::shared::SharedStore`]). It owns its data types
//! ([`crate::model`]) and knows nothing of HTTP or GraphQL.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::artifacts::Artifacts;
use crate::error::FakeError;
use crate::ids::{now_rfc3339, opaque_id};
use crate::model::{
    AgentView, FakeConfig, FakeUser, Fault, ItemOrigin, ItemReport, ItemState, ItemView,
    JournalEntry, NewApiKey, NewArtifact, NewItem, NewQueue, RunUpdate, RunView, StopPolling,
};

/// `Result` of an operation on the store.
pub(crate) type FakeResult<T> = Result<T, FakeError>;

/// Run states after which a claimed item shows as [`ItemState::Finished`].
const TERMINAL_RUN_STATES: [&str; 5] = ["finished", "failed", "crashed", "killed", "preempted"];

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
    pub template_variables: Option<Value>,
    /// RFC 3339, when it was pushed.
    pub created_at: String,
    pub origin: ItemOrigin,
    pub state: ItemState,
    pub lease_until: Option<Instant>,
    pub leased_by: Option<String>,
    pub pop_count: u32,
    pub ack_attempts: u32,
    pub run_name: Option<String>,
    pub failure: Option<ItemReport>,
    pub later_failures: Vec<ItemReport>,
    pub warnings: Vec<ItemReport>,
}

impl ItemRec {
    fn leased_until_after(&self, now: Instant) -> bool {
        self.state == ItemState::Leased && self.lease_until.is_some_and(|until| until > now)
    }

    /// The state at `now`: a lease that ran out reads as pending even before the next
    /// write returns the item.
    fn state_at(&self, now: Instant) -> ItemState {
        match self.state {
            ItemState::Leased if !self.leased_until_after(now) => ItemState::Pending,
            state => state,
        }
    }

    /// `entity`, `project` of the run the spec targets.
    fn target(&self) -> Option<(&str, &str)> {
        Some((
            self.spec.get("entity")?.as_str()?,
            self.spec.get("project")?.as_str()?,
        ))
    }
}

#[derive(Debug)]
pub(crate) struct RunRec {
    pub id: String,
    pub state: String,
    pub stopped: bool,
}

/// Runs by (entity, project, name).
pub(crate) type RunKey = (String, String, String);

fn run_key(entity: &str, project: &str, name: &str) -> RunKey {
    (entity.to_owned(), project.to_owned(), name.to_owned())
}

/// A fault with its remaining uses or the end of its window.
#[derive(Debug)]
pub(crate) struct ActiveFault {
    pub fault: Fault,
    until: Option<Instant>,
}

/// Which kind of item report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReportKind {
    Failure,
    Warning,
}

/// Everything the fake knows.
#[derive(Debug)]
pub(crate) struct Store {
    pub started: Instant,
    pub base_url: String,
    pub lease: Duration,
    pub acked_run_state: String,
    pub acked_run_states: BTreeMap<String, String>,
    pub keys: BTreeMap<String, FakeUser>,
    next_n: u64,
    pub teams: BTreeMap<String, bool>,
    pub projects: BTreeMap<(String, String), String>,
    pub queues: Vec<QueueRec>,
    pub items: Vec<ItemRec>,
    pub agents: Vec<AgentView>,
    pub runs: BTreeMap<RunKey, RunRec>,
    pub files: BTreeMap<String, Vec<u8>>,
    pub artifacts: Artifacts,
    pub faults: Vec<ActiveFault>,
    pub journal: Vec<JournalEntry>,
    journal_seq: u64,
}

impl Store {
    pub(crate) fn new(config: &FakeConfig, base_url: String) -> Self {
        let mut store = Self {
            started: Instant::now(),
            lease: config.lease,
            acked_run_state: config.acked_run_state.clone(),
            acked_run_states: config.acked_run_states.clone(),
            keys: config.api_keys.clone(),
            next_n: 0,
            teams: BTreeMap::new(),
            projects: BTreeMap::new(),
            queues: Vec::new(),
            items: Vec::new(),
            agents: Vec::new(),
            runs: BTreeMap::new(),
            files: BTreeMap::new(),
            artifacts: Artifacts::new(base_url.clone()),
            base_url,
            faults: Vec::new(),
            journal: Vec::new(),
            journal_seq: 0,
        };
        for user in config.api_keys.values() {
            store.add_user_entities(user);
        }
        store
    }

    /// Adds a new artifact version; returns its id.
    pub(crate) fn add_artifact(&mut self, artifact: NewArtifact) -> String {
        self.ensure_project(&artifact.entity, &artifact.project);
        let n = self.next();
        self.artifacts.add(n, artifact)
    }

    pub(crate) fn add_api_key(&mut self, key: NewApiKey) {
        self.add_user_entities(&key.user);
        self.keys.insert(key.key, key.user);
    }

    pub(crate) fn add_user_entities(&mut self, user: &FakeUser) {
        self.teams.entry(user.entity.clone()).or_insert(false);
        for team in &user.teams {
            self.teams.insert(team.clone(), true);
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.next_n += 1;
        self.next_n
    }

    pub(crate) fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Returns expired leases to the queue.
    pub(crate) fn expire_leases(&mut self, now: Instant) {
        for item in &mut self.items {
            if item.state == ItemState::Leased && !item.leased_until_after(now) {
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

    pub(crate) fn create_queue(&mut self, queue: NewQueue) -> FakeResult<String> {
        if self
            .find_queue(&queue.entity, &queue.project, &queue.name)
            .is_ok()
        {
            return Err(FakeError::QueueExists {
                entity: queue.entity,
                project: queue.project,
                queue: queue.name,
            });
        }
        self.ensure_project(&queue.entity, &queue.project);
        let id = opaque_id("RunQueue", self.next());
        self.queues.push(QueueRec {
            id: id.clone(),
            entity: queue.entity,
            project: queue.project,
            name: queue.name,
            resource: queue.resource,
            config: queue.config,
            access: queue.access,
            created_by: queue.created_by,
        });
        Ok(id)
    }

    /// Replaces a queue's config; items pushed from now on get it (pushed ones keep theirs).
    pub(crate) fn set_queue_config(
        &mut self,
        entity: &str,
        project: &str,
        name: &str,
        config: Value,
    ) -> FakeResult<()> {
        let queue = self.find_queue(entity, project, name)?;
        self.queues[queue].config = config;
        Ok(())
    }

    pub(crate) fn find_queue(&self, entity: &str, project: &str, name: &str) -> FakeResult<usize> {
        self.queues
            .iter()
            .position(|q| q.entity == entity && q.project == project && q.name == name)
            .ok_or_else(|| FakeError::QueueNotFound {
                entity: entity.to_owned(),
                project: project.to_owned(),
                queue: name.to_owned(),
            })
    }

    /// The spec as popped: the queue config with the spec applied over it as an RFC 7386
    /// merge patch (the spec wins; a `null` in the spec removes the key), then `resource`
    /// set to the queue's. A spec that is not an object is kept as given, so tests can
    /// push malformed specs.
    fn apply_queue_config(queue: &QueueRec, spec: Value) -> Value {
        if !spec.is_object() {
            return spec;
        }
        let mut merged = queue.config.clone();
        json_patch::merge(&mut merged, &spec);
        if !queue.resource.is_empty()
            && let Value::Object(map) = &mut merged
        {
            map.insert("resource".into(), Value::String(queue.resource.clone()));
        }
        merged
    }

    /// Pushes a spec; returns the item id and the spec as stored.
    pub(crate) fn push(
        &mut self,
        item: NewItem,
        template_variables: Option<Value>,
        origin: ItemOrigin,
    ) -> FakeResult<(String, Value)> {
        let queue = self.find_queue(&item.entity, &item.project, &item.queue)?;
        let spec = Self::apply_queue_config(&self.queues[queue], item.run_spec);
        let n = self.next();
        let id = opaque_id("RunQueueItem", n);
        self.items.push(ItemRec {
            n,
            id: id.clone(),
            queue,
            spec: spec.clone(),
            priority: item.priority.unwrap_or(2),
            template_variables,
            created_at: now_rfc3339(),
            origin,
            state: ItemState::Pending,
            lease_until: None,
            leased_by: None,
            pop_count: 0,
            ack_attempts: 0,
            run_name: None,
            failure: None,
            later_failures: Vec::new(),
            warnings: Vec::new(),
        });
        Ok((id, spec))
    }

    /// Leases the best pending item of a queue (lowest priority, then oldest).
    pub(crate) fn pop(
        &mut self,
        entity: &str,
        project: &str,
        queue: &str,
        agent: Option<&str>,
    ) -> FakeResult<Option<(String, Value)>> {
        let now = Instant::now();
        self.expire_leases(now);
        let queue = self.find_queue(entity, project, queue)?;
        if let Some(agent) = agent {
            self.heartbeat(agent);
        }
        let lease = self.lease;
        let best = self
            .items
            .iter_mut()
            .filter(|item| item.queue == queue && item.state == ItemState::Pending)
            .min_by_key(|item| (item.priority, item.n));
        Ok(best.map(|item| {
            item.state = ItemState::Leased;
            item.lease_until = Some(now + lease);
            item.leased_by = agent.map(str::to_owned);
            item.pop_count += 1;
            (item.id.clone(), item.spec.clone())
        }))
    }

    /// Claims a leased item for `run_name`; false when it is not leased. The run is
    /// created in the spec's entity/project in state `acked_run_state` (or the project's
    /// entry of `acked_run_states`), unless it exists (a resumed run keeps its state).
    pub(crate) fn ack(&mut self, item_id: &str, run_name: &str) -> bool {
        self.expire_leases(Instant::now());
        let Some(item) = self.items.iter_mut().find(|item| item.id == item_id) else {
            return false;
        };
        item.ack_attempts += 1;
        if item.state != ItemState::Leased {
            return false;
        }
        item.state = ItemState::Claimed;
        item.lease_until = None;
        item.run_name = Some(run_name.to_owned());
        let target = item
            .target()
            .map(|(entity, project)| (entity.to_owned(), project.to_owned()));
        if let Some((entity, project)) = target
            && !self
                .runs
                .contains_key(&run_key(&entity, &project, run_name))
        {
            let state = self
                .acked_run_states
                .get(&project)
                .unwrap_or(&self.acked_run_state)
                .clone();
            self.upsert_run(&entity, &project, run_name, Some(&state));
        }
        true
    }

    /// Records a failure or a warning; false for an unknown item.
    pub(crate) fn report(&mut self, item_id: &str, report: ItemReport, kind: ReportKind) -> bool {
        let Some(item) = self.items.iter_mut().find(|item| item.id == item_id) else {
            return false;
        };
        match kind {
            ReportKind::Warning => item.warnings.push(report),
            ReportKind::Failure if item.failure.is_some() => item.later_failures.push(report),
            ReportKind::Failure => {
                item.state = ItemState::Failed;
                item.lease_until = None;
                item.failure = Some(report);
            }
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
        if let Some(run) = self.runs.get_mut(&run_key(entity, project, name)) {
            if let Some(state) = state {
                run.state = state.to_owned();
            }
            return (run.id.clone(), false);
        }
        let id = opaque_id("Run", self.next());
        self.runs.insert(
            run_key(entity, project, name),
            RunRec {
                id: id.clone(),
                state: state.unwrap_or("running").to_owned(),
                stopped: false,
            },
        );
        (id, true)
    }

    pub(crate) fn update_run(&mut self, update: RunUpdate) -> RunView {
        self.upsert_run(
            &update.entity,
            &update.project,
            &update.name,
            update.state.as_deref(),
        );
        let key = run_key(&update.entity, &update.project, &update.name);
        if let (Some(stopped), Some(run)) = (update.stopped, self.runs.get_mut(&key)) {
            run.stopped = stopped;
        }
        self.run_view(&key)
    }

    pub(crate) fn run_view(&self, key: &RunKey) -> RunView {
        let (state, stopped) = self
            .runs
            .get(key)
            .map(|run| (run.state.clone(), run.stopped))
            .unwrap_or_default();
        RunView {
            entity: key.0.clone(),
            project: key.1.clone(),
            name: key.2.clone(),
            state,
            stopped,
        }
    }

    pub(crate) fn run_views(&self) -> Vec<RunView> {
        self.runs.keys().map(|key| self.run_view(key)).collect()
    }

    pub(crate) fn create_agent(&mut self, mut view: AgentView) -> FakeResult<String> {
        if let Some(missing) = view
            .run_queues
            .iter()
            .find(|id| !self.queues.iter().any(|q| &q.id == *id))
        {
            return Err(FakeError::QueueIdNotFound {
                id: missing.clone(),
            });
        }
        let n = self.next();
        view.id = opaque_id("LaunchAgent", n);
        view.name = format!("launch-agent-{n}");
        view.heartbeat_at = Some(now_rfc3339());
        let id = view.id.clone();
        self.agents.push(view);
        Ok(id)
    }

    pub(crate) fn agent_mut(&mut self, id: &str) -> FakeResult<&mut AgentView> {
        self.agents
            .iter_mut()
            .find(|view| view.id == id)
            .ok_or_else(|| FakeError::AgentNotFound { id: id.to_owned() })
    }

    pub(crate) fn set_stop_polling(&mut self, stop: StopPolling) -> FakeResult<AgentView> {
        let agent = self.agent_mut(&stop.agent_id)?;
        agent.stop_polling = stop.stop_polling;
        Ok(agent.clone())
    }

    /// Stamps the agent's heartbeat (unknown agents are ignored, as a pop with a stale id).
    pub(crate) fn heartbeat(&mut self, id: &str) {
        if let Ok(agent) = self.agent_mut(id) {
            agent.heartbeat_at = Some(now_rfc3339());
            agent.heartbeats += 1;
        }
    }

    /// Sets an agent's status (and stamps a heartbeat); false for an unknown agent.
    pub(crate) fn set_agent_status(&mut self, id: &str, status: Option<String>) -> bool {
        let Ok(agent) = self.agent_mut(id) else {
            return false;
        };
        if let Some(status) = status {
            agent.status_history.push(status.clone());
            agent.status = Some(status);
        }
        self.heartbeat(id);
        true
    }

    pub(crate) fn item_view(&self, item: &ItemRec, now: Instant) -> ItemView {
        let queue = &self.queues[item.queue];
        let mut state = item.state_at(now);
        if state == ItemState::Claimed && self.run_of(item).is_some_and(is_terminal) {
            state = ItemState::Finished;
        }
        ItemView {
            id: item.id.clone(),
            queue: queue.name.clone(),
            entity: queue.entity.clone(),
            project: queue.project.clone(),
            state,
            priority: item.priority,
            run_spec: item.spec.clone(),
            template_variables: item.template_variables.clone(),
            origin: item.origin.clone(),
            pop_count: item.pop_count,
            leased_by: item.leased_by.clone(),
            associated_run_id: item.run_name.clone(),
            ack_attempts: item.ack_attempts,
            failure: item.failure.clone(),
            later_failures: item.later_failures.clone(),
            warnings: item.warnings.clone(),
        }
    }

    /// Every item, in push order.
    pub(crate) fn item_views(&self) -> Vec<ItemView> {
        let now = Instant::now();
        self.items
            .iter()
            .map(|item| self.item_view(item, now))
            .collect()
    }

    fn run_of(&self, item: &ItemRec) -> Option<&RunRec> {
        let (entity, project) = item.target()?;
        self.runs
            .get(&run_key(entity, project, item.run_name.as_deref()?))
    }

    /// Adds a fault; a windowed one starts now.
    pub(crate) fn add_fault(&mut self, fault: Fault) {
        let until = fault
            .for_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        self.faults.push(ActiveFault { fault, until });
    }

    /// Takes one use of the first fault matching `operation` (windows that ended are
    /// dropped on the way).
    pub(crate) fn take_fault(&mut self, operation: &str) -> Option<Fault> {
        let now = Instant::now();
        self.faults.retain(|active| match active.until {
            Some(until) => until > now,
            None => active.fault.count > 0,
        });
        let active = self
            .faults
            .iter_mut()
            .find(|active| active.fault.operation == operation || active.fault.operation == "*")?;
        let taken = active.fault.clone();
        if active.until.is_none() {
            active.fault.count -= 1;
        }
        Some(taken)
    }

    /// Appends a journal entry; returns its `seq`.
    pub(crate) fn record(&mut self, mut entry: JournalEntry) -> u64 {
        self.journal_seq += 1;
        entry.seq = self.journal_seq;
        entry.at_ms = self.elapsed_ms();
        self.journal.push(entry);
        self.journal_seq
    }

    /// Sets the answer of journal entry `seq`.
    pub(crate) fn record_answer(&mut self, seq: u64, status: u16, errors: Vec<String>) {
        if let Some(entry) = self.journal.iter_mut().find(|entry| entry.seq == seq) {
            entry.status = status;
            entry.errors = errors;
        }
    }

    /// Uploaded files: `entity/project/run/path` → contents (lossy UTF-8).
    pub(crate) fn file_texts(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .map(|(path, bytes)| (path.clone(), String::from_utf8_lossy(bytes).into_owned()))
            .collect()
    }
}

fn is_terminal(run: &RunRec) -> bool {
    TERMINAL_RUN_STATES.contains(&run.state.as_str())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn store() -> Store {
        Store::new(&FakeConfig::default(), "http://fake".to_owned())
    }

    #[test]
    fn the_spec_is_a_merge_patch_over_the_queue_config() {
        let mut store = store();
        store
            .create_queue(NewQueue {
                config: json!({
                    "resource_args": {"kubernetes": {"a": 1, "b": 2, "c": {"d": 3}}},
                    "x": 1,
                }),
                ..NewQueue::new("e", "q")
            })
            .unwrap();
        let spec = json!({
            "resource_args": {"kubernetes": {"b": 3, "c": null}},
            "y": 2,
            "resource": null,
        });
        let (_, merged) = store
            .push(NewItem::new("e", "q", spec), None, ItemOrigin::Admin)
            .unwrap();
        assert_eq!(
            merged,
            json!({
                "resource_args": {"kubernetes": {"a": 1, "b": 3}},
                "x": 1,
                "y": 2,
                "resource": "kubernetes",
            })
        );
    }

    #[test]
    fn a_windowed_fault_applies_to_every_request_until_it_ends() {
        let mut store = store();
        store.add_fault(Fault::storm("*", 503, 60_000));
        store.add_fault(Fault::http("Viewer", 401, 1));
        for _ in 0..5 {
            assert_eq!(
                store.take_fault("popFromRunQueue").unwrap().status,
                Some(503)
            );
        }
        store.faults.remove(0);
        assert_eq!(store.take_fault("Viewer").unwrap().status, Some(401));
        assert_eq!(store.take_fault("Viewer"), None);
    }
}
