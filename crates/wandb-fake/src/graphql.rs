//! The executable schema: built at start-up from `wandb-api`'s `schema.graphql` (so requests
//! are parsed and validated by async-graphql against exactly the client's schema), with
//! every field resolved by [`resolve`].
//!
//! Object values are plain `serde_json::Value`s: a field without arguments reads its value
//! from the parent object; root fields and fields with arguments go to [`resolve`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, TypeRef,
};
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use async_graphql::{Name, Value as GqlValue};
use serde_json::{Value, json};

use crate::store::{AgentView, ItemReport, Store, now_rfc3339};

/// The authenticated user of a request, passed to resolvers as request data.
#[derive(Clone, Debug)]
pub(crate) struct AuthUser {
    pub username: String,
    pub entity: String,
    pub teams: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Enum,
    Scalar,
}

/// Builds the executable schema from SDL text.
pub(crate) fn build_schema(
    sdl: &str,
    extra_enum_values: &BTreeMap<String, Vec<String>>,
    store: Arc<Mutex<Store>>,
) -> anyhow::Result<Schema> {
    let document = async_graphql::parser::parse_schema(sdl)?;
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    let mut query_root = "Query".to_owned();
    let mut mutation_root: Option<String> = None;
    for definition in &document.definitions {
        match definition {
            TypeSystemDefinition::Type(ty) => {
                let kind = match &ty.node.kind {
                    TypeKind::Object(_) => Kind::Object,
                    TypeKind::Enum(_) => Kind::Enum,
                    _ => Kind::Scalar,
                };
                kinds.insert(ty.node.name.node.to_string(), kind);
            }
            TypeSystemDefinition::Schema(schema) => {
                if let Some(query) = &schema.node.query {
                    query_root = query.node.to_string();
                }
                mutation_root = schema.node.mutation.as_ref().map(|m| m.node.to_string());
            }
            TypeSystemDefinition::Directive(_) => {}
        }
    }
    let kinds = Arc::new(kinds);

    let mut builder = Schema::build(&query_root, mutation_root.as_deref(), None);
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let type_name = ty.node.name.node.to_string();
        match &ty.node.kind {
            TypeKind::Scalar => builder = builder.register(Scalar::new(&type_name)),
            TypeKind::Enum(values) => {
                let mut enum_type = Enum::new(&type_name);
                for value in &values.values {
                    enum_type = enum_type.item(value.node.value.node.to_string());
                }
                for value in extra_enum_values.get(&type_name).into_iter().flatten() {
                    enum_type = enum_type.item(value.as_str());
                }
                builder = builder.register(enum_type);
            }
            TypeKind::InputObject(input) => {
                let mut object = InputObject::new(&type_name);
                for field in &input.fields {
                    object = object.field(InputValue::new(
                        field.node.name.node.to_string(),
                        type_ref(&field.node.ty.node),
                    ));
                }
                builder = builder.register(object);
            }
            TypeKind::Object(object_type) => {
                let is_root = type_name == query_root || Some(&type_name) == mutation_root.as_ref();
                let mut object = Object::new(&type_name);
                for field in &object_type.fields {
                    let field_name = field.node.name.node.to_string();
                    let field_type = field.node.ty.node.clone();
                    let computed = is_root || !field.node.arguments.is_empty();
                    let store = store.clone();
                    let kinds = kinds.clone();
                    let owner = type_name.clone();
                    let name_for_resolver = field_name.clone();
                    let mut graphql_field = Field::new(
                        field_name.clone(),
                        type_ref(&field_type),
                        move |ctx: ResolverContext<'_>| {
                            let store = store.clone();
                            let kinds = kinds.clone();
                            let owner = owner.clone();
                            let field_name = name_for_resolver.clone();
                            let field_type = field_type.clone();
                            FieldFuture::new(async move {
                                let parent = ctx.parent_value.downcast_ref::<Value>();
                                let value = if computed {
                                    let mut args = serde_json::Map::new();
                                    for (name, value) in ctx.args.as_index_map() {
                                        args.insert(name.to_string(), value.clone().into_json()?);
                                    }
                                    let user = ctx.data::<AuthUser>()?;
                                    let mut store = store.lock().map_err(|_| {
                                        async_graphql::Error::new("fake state poisoned")
                                    })?;
                                    resolve(&mut store, user, &owner, &field_name, parent, &args)
                                        .map_err(async_graphql::Error::new)?
                                } else {
                                    parent
                                        .and_then(|p| p.get(&field_name))
                                        .cloned()
                                        .unwrap_or(Value::Null)
                                };
                                to_field_value(value, &field_type, &kinds)
                            })
                        },
                    );
                    for argument in &field.node.arguments {
                        graphql_field = graphql_field.argument(InputValue::new(
                            argument.node.name.node.to_string(),
                            type_ref(&argument.node.ty.node),
                        ));
                    }
                    object = object.field(graphql_field);
                }
                builder = builder.register(object);
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                anyhow::bail!("the fake does not support interfaces or unions ({type_name})")
            }
        }
    }
    Ok(builder.finish()?)
}

fn type_ref(ty: &Type) -> TypeRef {
    let inner = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(item) => TypeRef::List(Box::new(type_ref(item))),
    };
    if ty.nullable {
        inner
    } else {
        TypeRef::NonNull(Box::new(inner))
    }
}

fn to_field_value(
    value: Value,
    ty: &Type,
    kinds: &HashMap<String, Kind>,
) -> async_graphql::Result<Option<FieldValue<'static>>> {
    if value.is_null() {
        return Ok(None);
    }
    match &ty.base {
        BaseType::List(item_type) => {
            let Value::Array(items) = value else {
                return Err(async_graphql::Error::new(format!(
                    "fake resolver returned a non-list for {ty}"
                )));
            };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(to_field_value(item, item_type, kinds)?.unwrap_or(FieldValue::NULL));
            }
            Ok(Some(FieldValue::list(out)))
        }
        BaseType::Named(name) => match kinds.get(name.as_str()).copied() {
            Some(Kind::Object) => Ok(Some(FieldValue::owned_any(value))),
            Some(Kind::Enum) => match value {
                Value::String(text) => Ok(Some(FieldValue::value(GqlValue::Enum(Name::new(text))))),
                other => Err(async_graphql::Error::new(format!(
                    "fake resolver returned {other} for enum {name}"
                ))),
            },
            _ => Ok(Some(FieldValue::value(GqlValue::from_json(value)?))),
        },
    }
}

fn arg_str<'a>(args: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

fn input(args: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    args.get("input")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn req<'a>(input: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, String> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name} is required"))
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

fn project_json(store: &Store, entity: &str, project: &str) -> Value {
    let Some(id) = store.projects.get(&(entity.to_owned(), project.to_owned())) else {
        return Value::Null;
    };
    let run_queues: Vec<Value> = store
        .queues
        .iter()
        .filter(|q| q.entity == entity && q.project == project)
        .map(|q| json!({"id": q.id, "name": q.name, "createdBy": q.created_by, "access": q.access}))
        .collect();
    json!({"id": id, "name": project, "entityName": entity, "runQueues": run_queues})
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

/// Resolves a root field or a field with arguments. `Err` becomes a GraphQL error.
pub(crate) fn resolve(
    store: &mut Store,
    user: &AuthUser,
    owner: &str,
    field: &str,
    parent: Option<&Value>,
    args: &serde_json::Map<String, Value>,
) -> Result<Value, String> {
    match (owner, field) {
        ("Query", "viewer") => {
            let teams: Vec<Value> = user
                .teams
                .iter()
                .map(|team| json!({"node": {"id": base64_id("Entity", team), "name": team, "isTeam": true}}))
                .collect();
            Ok(json!({
                "id": base64_id("User", &user.username),
                "entity": user.entity,
                "username": user.username,
                "email": format!("{}@example.com", user.username),
                "flags": "{}",
                "teams": {"edges": teams},
            }))
        }
        ("Query", "project") => match (arg_str(args, "entityName"), arg_str(args, "name")) {
            (Some(entity), Some(project)) => Ok(project_json(store, entity, project)),
            _ => Ok(Value::Null),
        },
        ("Query", "entity") => {
            let name = arg_str(args, "name").unwrap_or_default();
            Ok(match store.teams.get(name) {
                Some(is_team) => {
                    json!({"id": base64_id("Entity", name), "name": name, "isTeam": is_team})
                }
                None => Value::Null,
            })
        }
        ("Query", "launchAgent") => {
            let id = arg_str(args, "id").unwrap_or_default();
            Ok(store
                .agents
                .iter()
                .find(|agent| agent.view.id == id)
                .map(|agent| agent_json(&agent.view))
                .unwrap_or(Value::Null))
        }
        ("Query", "artifact") => {
            let id = arg_str(args, "id").unwrap_or_default();
            Ok(store
                .artifacts
                .iter()
                .position(|a| a.id == id)
                .map(|index| store.artifact_json(index))
                .unwrap_or(Value::Null))
        }
        ("Project", "run") => {
            let Some((entity, project)) = project_of(parent) else {
                return Ok(Value::Null);
            };
            let name = arg_str(args, "name").unwrap_or_default();
            Ok(store
                .runs
                .get(&(entity.to_owned(), project.to_owned(), name.to_owned()))
                .map(|run| json!({"id": run.id, "name": name, "state": run.state, "stopped": run.stopped}))
                .unwrap_or(Value::Null))
        }
        ("Project", "artifact") => {
            let Some((entity, project)) = project_of(parent) else {
                return Ok(Value::Null);
            };
            let name = arg_str(args, "name").unwrap_or_default();
            Ok(store
                .find_artifact(entity, project, name)
                .map(|index| store.artifact_json(index))
                .unwrap_or(Value::Null))
        }
        ("Artifact", "files") => {
            let id = parent
                .and_then(|p| p.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(artifact) = store.artifacts.iter().find(|a| a.id == id) else {
                return Ok(json!({"edges": []}));
            };
            let wanted = args
                .get("names")
                .filter(|v| !v.is_null())
                .map(|v| string_list(Some(v)));
            let edges: Vec<Value> = artifact
                .files
                .keys()
                .filter(|path| wanted.as_ref().is_none_or(|names| names.contains(path)))
                .map(|path| {
                    json!({"node": {
                        "name": path,
                        "directUrl": format!("{}/_artifacts/{}/files/{}", store.base_url, artifact.n, path),
                        "uploadUrl": null,
                    }})
                })
                .collect();
            Ok(json!({"edges": edges}))
        }
        ("Mutation", "createRunQueue") => {
            let input = input(args);
            let entity = req(&input, "entityName")?;
            let project = req(&input, "projectName")?;
            let name = req(&input, "queueName")?;
            let access = req(&input, "access")?;
            let queue = crate::admin::NewQueue {
                entity: entity.to_owned(),
                project: project.to_owned(),
                name: name.to_owned(),
                resource: String::new(),
                config: json!({}),
                access: access.to_owned(),
                created_by: Some(Value::String(user.username.clone())),
            };
            match store.create_queue(queue) {
                Ok(id) => Ok(json!({"success": true, "queueID": id})),
                Err(_) => Ok(json!({"success": false, "queueID": null})),
            }
        }
        ("Mutation", "createLaunchAgent") => {
            let input = input(args);
            let view = AgentView {
                id: String::new(),
                name: String::new(),
                entity: req(&input, "entityName")?.to_owned(),
                project: req(&input, "projectName")?.to_owned(),
                run_queues: string_list(input.get("runQueues")),
                hostname: req(&input, "hostname")?.to_owned(),
                agent_config: input
                    .get("agentConfig")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                version: input
                    .get("version")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                status: None,
                stop_polling: false,
                heartbeat_at: None,
            };
            let id = store.create_agent(view)?;
            Ok(json!({"launchAgentId": id}))
        }
        ("Mutation", "updateLaunchAgent") => {
            let input = input(args);
            let id = req(&input, "launchAgentId")?;
            let status = input
                .get("agentStatus")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let success = match store.agent_mut(id) {
                Some(agent) => {
                    if status.is_some() {
                        agent.status = status;
                    }
                    agent.heartbeat_at = Some(now_rfc3339());
                    true
                }
                None => false,
            };
            Ok(json!({"success": success}))
        }
        ("Mutation", "popFromRunQueue") => {
            let input = input(args);
            let agent = input
                .get("launchAgentId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let popped = store.pop(
                req(&input, "entityName")?,
                req(&input, "projectName")?,
                req(&input, "queueName")?,
                agent,
            )?;
            Ok(match popped {
                Some((id, spec)) => json!({"runQueueItemId": id, "runSpec": spec}),
                None => Value::Null,
            })
        }
        ("Mutation", "ackRunQueueItem") => {
            let input = input(args);
            let success = store.ack(req(&input, "runQueueItemId")?, req(&input, "runName")?);
            Ok(json!({"success": success}))
        }
        ("Mutation", "failRunQueueItem") | ("Mutation", "updateRunQueueItemWarning") => {
            let input = input(args);
            let report = ItemReport {
                stage: req(&input, "stage")?.to_owned(),
                message: req(&input, "message")?.to_owned(),
                file_paths: string_list(input.get("filePaths")),
            };
            let fail = field == "failRunQueueItem";
            let success = store.report(req(&input, "runQueueItemId")?, report, fail);
            Ok(json!({"success": success}))
        }
        ("Mutation", "pushToRunQueueByName") => {
            let input = input(args);
            let spec: Value = serde_json::from_str(req(&input, "runSpec")?)
                .map_err(|e| format!("runSpec is not valid JSON: {e}"))?;
            let priority = input.get("priority").and_then(Value::as_i64);
            match store.push(
                req(&input, "entityName")?,
                req(&input, "projectName")?,
                req(&input, "queueName")?,
                spec,
                priority,
            ) {
                Ok((id, merged)) => {
                    Ok(json!({"runQueueItemId": id, "runSpec": merged.to_string()}))
                }
                Err(_) => Ok(Value::Null),
            }
        }
        ("Mutation", "upsertBucket") => {
            let input = input(args);
            let entity = input
                .get("entityName")
                .and_then(Value::as_str)
                .unwrap_or(&user.entity)
                .to_owned();
            let project = input
                .get("modelName")
                .and_then(Value::as_str)
                .unwrap_or("uncategorized")
                .to_owned();
            let name = req(&input, "name")?.to_owned();
            let (id, inserted) = store.upsert_run(&entity, &project, &name, None);
            let run = &store.runs[&(entity, project, name.clone())];
            Ok(json!({
                "bucket": {"id": id, "name": name, "state": run.state, "stopped": run.stopped},
                "inserted": inserted,
            }))
        }
        ("Mutation", "createRunFiles") => {
            let input = input(args);
            let entity = req(&input, "entityName")?;
            let project = req(&input, "projectName")?;
            let run = req(&input, "runName")?;
            let key = (entity.to_owned(), project.to_owned(), run.to_owned());
            let Some(run_rec) = store.runs.get(&key) else {
                return Err(format!("run {entity}/{project}/{run} not found"));
            };
            let files: Vec<Value> = string_list(input.get("files"))
                .into_iter()
                .map(|name| {
                    let url = format!("{}/_files/{entity}/{project}/{run}/{name}", store.base_url);
                    json!({"name": name, "uploadUrl": url, "directUrl": null})
                })
                .collect();
            Ok(json!({"runID": run_rec.id, "uploadHeaders": [], "files": files}))
        }
        _ => Err(format!("the fake has no resolver for {owner}.{field}")),
    }
}

fn base64_id(kind: &str, name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{name}"))
}

/// Entity and project names of a resolved `Project` parent object.
fn project_of(parent: Option<&Value>) -> Option<(&str, &str)> {
    let parent = parent?;
    Some((
        parent.get("entityName")?.as_str()?,
        parent.get("name")?.as_str()?,
    ))
}
