//! One function per root field (and per field with arguments) of `schema.graphql`. Each
//! takes the store and the [`Call`] (user, parent object, arguments as JSON) and returns
//! the field's value as JSON; a [`FakeError`] becomes a GraphQL error.

use serde_json::{Map, Value, json};

use crate::error::FakeError;
use crate::ids::opaque_id;
use crate::model::{AgentView, FakeUser, ItemOrigin, ItemReport, NewItem, NewQueue};
use crate::store::{FakeResult, ReportKind, Store};

/// What a resolver gets besides the store.
pub(crate) struct Call<'a> {
    /// The authenticated user.
    pub user: &'a FakeUser,
    /// The parent object, for fields of non-root types.
    pub parent: Option<&'a Value>,
    /// The field's arguments.
    pub args: &'a Map<String, Value>,
}

type Resolver = fn(&mut Store, &Call<'_>) -> FakeResult<Value>;

/// Resolves `owner.field`.
pub(crate) fn resolve(
    store: &mut Store,
    owner: &str,
    field: &str,
    call: &Call<'_>,
) -> FakeResult<Value> {
    let resolver: Resolver = match (owner, field) {
        ("Query", "viewer") => viewer,
        ("Query", "project") => project,
        ("Query", "entity") => entity,
        ("Query", "launchAgent") => launch_agent,
        ("Query", "artifact") => artifact_by_id,
        ("Query", "serverInfo") => server_info,
        ("Project", "run") => project_run,
        ("Project", "runQueue") => project_run_queue,
        ("RunQueue", "runQueueItem") => run_queue_item,
        ("Project", "artifact") => project_artifact,
        ("Artifact", "files") => artifact_files,
        ("Mutation", "createRunQueue") => create_run_queue,
        ("Mutation", "createLaunchAgent") => create_launch_agent,
        ("Mutation", "updateLaunchAgent") => update_launch_agent,
        ("Mutation", "popFromRunQueue") => pop_from_run_queue,
        ("Mutation", "ackRunQueueItem") => ack_run_queue_item,
        ("Mutation", "failRunQueueItem") => fail_run_queue_item,
        ("Mutation", "updateRunQueueItemWarning") => update_run_queue_item_warning,
        ("Mutation", "pushToRunQueueByName") => push_to_run_queue_by_name,
        ("Mutation", "upsertBucket") => upsert_bucket,
        ("Mutation", "createRunFiles") => create_run_files,
        _ => {
            return Err(FakeError::NoResolver {
                owner: owner.to_owned(),
                field: field.to_owned(),
            });
        }
    };
    resolver(store, call)
}

/// The fields of a mutation's `input` object.
struct Input<'a>(&'a Map<String, Value>);

impl<'a> Input<'a> {
    fn of(call: &Call<'a>) -> Self {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let input = call.args.get("input").and_then(Value::as_object);
        Self(input.unwrap_or_else(|| EMPTY.get_or_init(Map::new)))
    }

    fn get(&self, field: &'static str) -> FakeResult<&'a str> {
        self.opt(field).ok_or(FakeError::MissingInput { field })
    }

    fn opt(&self, field: &str) -> Option<&'a str> {
        self.0.get(field).and_then(Value::as_str)
    }

    fn list(&self, field: &str) -> Vec<String> {
        string_list(self.0.get(field))
    }
}

fn arg<'a>(call: &Call<'a>, name: &str) -> Option<&'a str> {
    call.args.get(name).and_then(Value::as_str)
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Entity and project names of a resolved `Project` parent object.
fn parent_project<'a>(call: &Call<'a>) -> Option<(&'a str, &'a str)> {
    let parent = call.parent?;
    Some((
        parent.get("entityName")?.as_str()?,
        parent.get("name")?.as_str()?,
    ))
}

fn viewer(_store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let user = call.user;
    let teams: Vec<Value> = user
        .teams
        .iter()
        .map(
            |team| json!({"node": {"id": opaque_id("Entity", team), "name": team, "isTeam": true}}),
        )
        .collect();
    Ok(json!({
        "id": opaque_id("User", &user.username),
        "entity": user.entity,
        "username": user.username,
        "email": format!("{}@example.com", user.username),
        "flags": "{}",
        "teams": {"edges": teams},
    }))
}

fn project(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let (Some(entity), Some(project)) = (arg(call, "entityName"), arg(call, "name")) else {
        return Ok(Value::Null);
    };
    let Some(id) = store.projects.get(&(entity.to_owned(), project.to_owned())) else {
        return Ok(Value::Null);
    };
    let run_queues: Vec<Value> = store
        .queues
        .iter()
        .filter(|q| q.entity == entity && q.project == project)
        .map(|q| json!({"id": q.id, "name": q.name, "createdBy": q.created_by, "access": q.access}))
        .collect();
    Ok(json!({"id": id, "name": project, "entityName": entity, "runQueues": run_queues}))
}

fn entity(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let name = arg(call, "name").unwrap_or_default();
    Ok(match store.teams.get(name) {
        Some(is_team) => json!({"id": opaque_id("Entity", name), "name": name, "isTeam": is_team}),
        None => Value::Null,
    })
}

fn agent_json(view: &AgentView) -> Value {
    json!({
        "id": view.id,
        "name": view.name,
        "runQueues": view.run_queues,
        "hostname": view.hostname,
        "agentStatus": view.status,
        "stopPolling": view.stop_polling,
        "heartbeatAt": view.heartbeat_at,
    })
}

/// W&B's agent reads its record every tick: that counts as a heartbeat.
fn launch_agent(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let id = arg(call, "id").unwrap_or_default();
    store.heartbeat(id);
    Ok(store
        .agents
        .iter()
        .find(|agent| agent.id == id)
        .map(agent_json)
        .unwrap_or(Value::Null))
}

fn artifact_by_id(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let id = arg(call, "id").unwrap_or_default();
    Ok(store
        .artifacts
        .by_id(id)
        .map(|index| store.artifacts.json(index))
        .unwrap_or(Value::Null))
}

fn project_run(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let Some((entity, project)) = parent_project(call) else {
        return Ok(Value::Null);
    };
    let name = arg(call, "name").unwrap_or_default();
    let key = (entity.to_owned(), project.to_owned(), name.to_owned());
    Ok(store
        .runs
        .get(&key)
        .map(|run| json!({"id": run.id, "name": name, "state": run.state, "stopped": run.stopped}))
        .unwrap_or(Value::Null))
}

fn project_run_queue(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let Some((entity, project)) = parent_project(call) else {
        return Ok(Value::Null);
    };
    let name = arg(call, "name").unwrap_or_default();
    Ok(store
        .queues
        .iter()
        .find(|q| q.entity == entity && q.project == project && q.name == name)
        .map(|q| json!({"id": q.id, "name": q.name, "createdBy": q.created_by, "access": q.access}))
        .unwrap_or(Value::Null))
}

/// An item of the parent queue: when it was pushed, its priority and template variables.
fn run_queue_item(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let queue_id = call
        .parent
        .and_then(|q| q.get("id"))
        .and_then(Value::as_str);
    let id = arg(call, "id").unwrap_or_default();
    let now = tokio::time::Instant::now();
    Ok(store
        .items
        .iter()
        .find(|item| item.id == id && Some(store.queues[item.queue].id.as_str()) == queue_id)
        .map(|item| {
            let view = store.item_view(item, now);
            json!({
                "id": view.id,
                "state": view.state,
                "associatedRunId": view.associated_run_id,
                "createdAt": item.created_at,
                "priority": view.priority,
                "templateVariableValues": view.template_variables.as_ref().map(Value::to_string),
            })
        })
        .unwrap_or(Value::Null))
}

fn project_artifact(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let Some((entity, project)) = parent_project(call) else {
        return Ok(Value::Null);
    };
    let name = arg(call, "name").unwrap_or_default();
    Ok(store
        .artifacts
        .find(entity, project, name)
        .map(|index| store.artifacts.json(index))
        .unwrap_or(Value::Null))
}

fn artifact_files(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let id = call
        .parent
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = call
        .args
        .get("names")
        .filter(|v| !v.is_null())
        .map(|v| string_list(Some(v)));
    Ok(store.artifacts.files_json(id, names.as_deref()))
}

/// A queue created over GraphQL has no config and no resource (as W&B's default queue).
fn create_run_queue(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let queue = NewQueue {
        project: input.get("projectName")?.to_owned(),
        resource: String::new(),
        access: input.get("access")?.to_owned(),
        created_by: Some(Value::String(call.user.username.clone())),
        ..NewQueue::new(input.get("entityName")?, input.get("queueName")?)
    };
    Ok(match store.create_queue(queue) {
        Ok(id) => json!({"success": true, "queueID": id}),
        Err(_) => json!({"success": false, "queueID": null}),
    })
}

fn create_launch_agent(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let view = AgentView {
        id: String::new(),
        name: String::new(),
        entity: input.get("entityName")?.to_owned(),
        project: input.get("projectName")?.to_owned(),
        run_queues: input.list("runQueues"),
        hostname: input.get("hostname")?.to_owned(),
        agent_config: input.opt("agentConfig").map(str::to_owned),
        version: input.opt("version").map(str::to_owned),
        status: None,
        status_history: Vec::new(),
        stop_polling: false,
        heartbeat_at: None,
        heartbeats: 0,
    };
    let id = store.create_agent(view)?;
    Ok(json!({"launchAgentId": id}))
}

fn update_launch_agent(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let status = input.opt("agentStatus").map(str::to_owned);
    let success = store.set_agent_status(input.get("launchAgentId")?, status);
    Ok(json!({"success": success}))
}

fn pop_from_run_queue(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let popped = store.pop(
        input.get("entityName")?,
        input.get("projectName")?,
        input.get("queueName")?,
        input.opt("launchAgentId"),
    )?;
    Ok(match popped {
        Some((id, spec)) => json!({"runQueueItemId": id, "runSpec": spec}),
        None => Value::Null,
    })
}

fn ack_run_queue_item(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let success = store.ack(input.get("runQueueItemId")?, input.get("runName")?);
    Ok(json!({"success": success}))
}

fn report(store: &mut Store, call: &Call<'_>, kind: ReportKind) -> FakeResult<Value> {
    let input = Input::of(call);
    let report = ItemReport {
        stage: input.get("stage")?.to_owned(),
        message: input.get("message")?.to_owned(),
        file_paths: input.list("filePaths"),
    };
    let success = store.report(input.get("runQueueItemId")?, report, kind);
    Ok(json!({"success": success}))
}

fn fail_run_queue_item(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    report(store, call, ReportKind::Failure)
}

fn update_run_queue_item_warning(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    report(store, call, ReportKind::Warning)
}

/// An unknown queue is a null payload, as W&B answers (the client then knows the queue is
/// missing or not allowed).
fn push_to_run_queue_by_name(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let spec: Value =
        serde_json::from_str(input.get("runSpec")?).map_err(|e| FakeError::InvalidRunSpec {
            reason: e.to_string(),
        })?;
    let template_variables = match input.opt("templateVariableValues") {
        Some(text) => Some(
            serde_json::from_str(text).map_err(|e| FakeError::InvalidRunSpec {
                reason: format!("templateVariableValues: {e}"),
            })?,
        ),
        None => None,
    };
    let item = NewItem {
        project: input.get("projectName")?.to_owned(),
        priority: input.0.get("priority").and_then(Value::as_i64),
        ..NewItem::new(input.get("entityName")?, input.get("queueName")?, spec)
    };
    let origin = ItemOrigin::Graphql {
        user: call.user.username.clone(),
    };
    Ok(match store.push(item, template_variables, origin) {
        Ok((id, merged)) => json!({"runQueueItemId": id, "runSpec": merged.to_string()}),
        Err(_) => Value::Null,
    })
}

/// No optional server feature is on (wandb-core then uses its baseline protocol).
fn server_info(_store: &mut Store, _call: &Call<'_>) -> FakeResult<Value> {
    Ok(json!({"features": []}))
}

/// The run with its project (and the project's entity), as W&B's SDK reads it back at
/// `wandb.init`; the sent `config`, `displayName`, `description` are echoed. The SDK's
/// upsert starts the run: one the agent's ack created `pending` becomes `running` (what
/// W&B's "did it call wandb.init?" check reads); a sent `state` wins.
fn upsert_bucket(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let entity = input.opt("entityName").unwrap_or(&call.user.entity);
    let project = input.opt("modelName").unwrap_or("uncategorized");
    let name = input.get("name")?;
    let key = (entity.to_owned(), project.to_owned(), name.to_owned());
    let pending = store
        .runs
        .get(&key)
        .is_some_and(|run| run.state == "pending");
    let state = input
        .opt("state")
        .or(pending.then_some("running"))
        .map(str::to_owned);
    let (id, inserted) = store.upsert_run(entity, project, name, state.as_deref());
    let run = store.run_view(&(entity.to_owned(), project.to_owned(), name.to_owned()));
    let project_id = store
        .projects
        .get(&(entity.to_owned(), project.to_owned()))
        .cloned()
        .unwrap_or_else(|| opaque_id("Project", format!("{entity}/{project}")));
    let is_team = store.teams.get(entity).copied().unwrap_or(false);
    Ok(json!({
        "bucket": {
            "id": id,
            "name": name,
            "state": run.state,
            "stopped": run.stopped,
            "displayName": input.opt("displayName").unwrap_or(name),
            "description": input.opt("description"),
            "config": input.opt("config"),
            "sweepName": input.opt("sweep"),
            "historyLineCount": 0,
            "project": {
                "id": project_id,
                "name": project,
                "entityName": entity,
                "runQueues": [],
                "entity": {"id": opaque_id("Entity", entity), "name": entity, "isTeam": is_team},
            },
        },
        "inserted": inserted,
    }))
}

fn create_run_files(store: &mut Store, call: &Call<'_>) -> FakeResult<Value> {
    let input = Input::of(call);
    let (entity, project, run) = (
        input.get("entityName")?,
        input.get("projectName")?,
        input.get("runName")?,
    );
    let key = (entity.to_owned(), project.to_owned(), run.to_owned());
    let run_rec = store.runs.get(&key).ok_or_else(|| FakeError::RunNotFound {
        entity: entity.to_owned(),
        project: project.to_owned(),
        run: run.to_owned(),
    })?;
    let files: Vec<Value> = input
        .list("files")
        .into_iter()
        .map(|name| {
            let url = format!("{}/_files/{entity}/{project}/{run}/{name}", store.base_url);
            json!({"name": name, "uploadUrl": url, "directUrl": null})
        })
        .collect();
    Ok(json!({"runID": run_rec.id, "uploadHeaders": [], "files": files}))
}
