//! Registration with W&B: queue names → ids, `createLaunchAgent`, the team check, the
//! agent's name and its bookkeeping run (where failure files are uploaded).

use rlaunch_wandb_api::{LAUNCH_PROJECT, NewLaunchAgent, QueueAccess};

use crate::context::{Context, Registration};
use crate::error::Error;
use crate::identity::identity;
use crate::queues::QueueRef;
use crate::retry::until_ok;
use crate::shutdown::Shutdown;

/// Registers the agent; `Ok(None)` if shutdown came first. Transient and authorization
/// failures are retried (the agent stays unready meanwhile); a missing queue is an error.
pub(crate) async fn register(
    ctx: &Context,
    shutdown: &mut Shutdown,
) -> Result<Option<Registration>, Error> {
    let Some(viewer) = until_ok(ctx, "Viewer", shutdown, || ctx.wandb.viewer())
        .await
        .map_err(Error::Register)?
    else {
        return Ok(None);
    };
    let entity = match (&ctx.config.entity, viewer.entity) {
        (Some(entity), _) => entity.clone(),
        (None, Some(entity)) => entity,
        (None, None) => {
            return Err(Error::Config(crate::error::ConfigError::Flag {
                flag: "--entity".to_owned(),
                problem: "is needed: the API key's user has no default entity".to_owned(),
                fix: "set `entity:` in the config, WANDB_ENTITY or -e".to_owned(),
            }));
        }
    };
    let Some(queues) = resolve_queues(ctx, &entity, shutdown).await? else {
        return Ok(None);
    };
    let new_agent = NewLaunchAgent {
        entity: entity.clone(),
        project: LAUNCH_PROJECT.to_owned(),
        queue_ids: queues.iter().map(|q| q.id.clone()).collect(),
        hostname: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
        agent_config: Some(ctx.config.agent_config_json()),
        version: Some(format!("rlaunch@{}", env!("CARGO_PKG_VERSION"))),
    };
    let Some(agent_id) = until_ok(ctx, "createLaunchAgent", shutdown, || {
        ctx.wandb.create_launch_agent(&new_agent)
    })
    .await
    .map_err(Error::Register)?
    else {
        return Ok(None);
    };
    match ctx.wandb.entity_is_team(&entity).await {
        Ok(true) => tracing::warn!(
            entity,
            "entity is a team: every member can run code on this cluster through these queues"
        ),
        Ok(false) => {}
        Err(error) => {
            tracing::warn!(entity, error = %error, "cannot tell whether the entity is a team")
        }
    }
    let Some(agent) = until_ok(ctx, "LaunchAgent", shutdown, || {
        ctx.wandb.launch_agent(&agent_id)
    })
    .await
    .map_err(Error::Register)?
    else {
        return Ok(None);
    };
    if let Err(error) = ctx
        .wandb
        .upsert_run(
            &entity,
            LAUNCH_PROJECT,
            &agent.name,
            Some("sweep-controller"),
        )
        .await
    {
        tracing::warn!(error = %error, "cannot create the agent's bookkeeping run; failure files will not be uploaded");
    }
    let registration = Registration {
        agent_id,
        agent_name: agent.name,
        identity: identity(&ctx.config, &entity),
        entity,
        queues,
    };
    tracing::info!(
        agent = %registration.agent_name,
        identity = %registration.identity,
        entity = %registration.entity,
        queues = ?registration.queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        max_jobs = ctx.config.max_jobs.as_i64(),
        "registered with W&B"
    );
    Ok(Some(registration))
}

async fn resolve_queues(
    ctx: &Context,
    entity: &str,
    shutdown: &mut Shutdown,
) -> Result<Option<Vec<QueueRef>>, Error> {
    let Some(mut existing) = until_ok(ctx, "ProjectRunQueues", shutdown, || {
        ctx.wandb.project_run_queues(entity, LAUNCH_PROJECT)
    })
    .await
    .map_err(Error::Register)?
    else {
        return Ok(None);
    };
    if existing.is_empty() && ctx.config.queues.iter().any(|q| q == "default") {
        let id = ctx
            .wandb
            .create_run_queue(entity, LAUNCH_PROJECT, "default", QueueAccess::Project)
            .await
            .map_err(Error::Register)?;
        tracing::info!(entity, "created the queue `default`");
        existing.push(rlaunch_wandb_api::RunQueue {
            id,
            name: "default".to_owned(),
            created_by: None,
            access: QueueAccess::Project,
        });
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &ctx.config.queues {
        match existing.iter().find(|q| &q.name == name) {
            Some(queue) => found.push(QueueRef {
                name: queue.name.clone(),
                id: queue.id.clone(),
            }),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(Error::QueuesNotFound {
            entity: entity.to_owned(),
            project: LAUNCH_PROJECT.to_owned(),
            missing: missing.join(", "),
            available: existing
                .iter()
                .map(|q| q.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(Some(found))
}
