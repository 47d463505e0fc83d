//! One item, from pop to report: validate → ack → resolve → build → render → pre-check →
//! submit → monitor → report. Every step is safe to run again: the workload name is
//! derived from the item id, so a repeated submit adopts the existing workload.

mod code_pvc;
mod monitor;
pub(crate) mod report;
mod run_builder;
mod source;
mod time_to_gpu;
mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rlaunch_builder::{BuildRequest, Builder, Built, JobSource, NoopBuilder};
use rlaunch_gpu::Verdict;
use rlaunch_k8s_runner::{RequeueRecord, RunHandle};
use rlaunch_model::RunSpec;
use rlaunch_render::{
    ApiKeyMode, CodeMount, CodeMountVariant, CodeSource, RenderContext, Rendered,
};
use rlaunch_wandb_api::{FailureStage, LAUNCH_PROJECT, PoppedItem, QueueItemInfo, RunQueueItem};

use crate::config::JobSecrets;
use crate::context::{Context, Registration};
use crate::retry::a_few_times;
use crate::store::Phase;
pub(crate) use monitor::{PullSecret, Watched, watch_run};
use report::{ItemFailure, report_failure};

/// The task of one popped item.
pub(crate) async fn run_item(
    ctx: Arc<Context>,
    registration: Arc<Registration>,
    popped: PoppedItem,
    queue: String,
    popped_at: Instant,
) {
    ctx.metrics.popped(&queue);
    let popped_wall = SystemTime::now();
    let item = match popped {
        PoppedItem::Malformed { id, error, .. } => {
            tracing::warn!(item = %id, queue, "popped an item whose run spec is malformed");
            let failure = ItemFailure::new(
                FailureStage::Agent,
                format!("the run spec is malformed: {error}"),
            );
            report_failure(&ctx, &registration, &id, &queue, None, &failure, None).await;
            return;
        }
        PoppedItem::Valid(item) => *item,
    };
    let scheduler = item.run_spec.is_scheduler();
    if scheduler
        && !ctx
            .config
            .max_schedulers
            .has_room(ctx.store.schedulers_holding_slots())
    {
        // Not acked: W&B returns the item to the queue when its lease runs out.
        tracing::warn!(item = %item.id, queue, max_schedulers = ctx.config.max_schedulers.as_i64(), "the maximum number of sweep schedulers is already running; leaving the item to its lease (raise `max_schedulers` to run more)");
        return;
    }
    if !ctx
        .store
        .insert(&item.id, &queue, scheduler, Phase::Validating)
    {
        tracing::warn!(item = %item.id, queue, "item popped twice; the running task keeps it");
        return;
    }
    tracing::info!(item = %item.id, queue, state = "validating", "item popped");
    let run_id = item.run_spec.run_id.clone().unwrap_or_else(generate_run_id);
    let info = item_info(&ctx, &registration, &item.id, &queue, popped_wall).await;
    let requeue = requeue_record(&item.run_spec, &info);
    let item_ref = ItemRef {
        item: &item,
        queue: &queue,
        run_id: &run_id,
        requeue: &requeue,
    };
    let (intent_ns, launched) = match before_ack(&ctx, &registration, item_ref).await {
        Ok(namespace) => {
            let launched = match ack(&ctx, &registration, item_ref).await {
                Ok(Acked::Ours) => {
                    launch(&ctx, registration.as_ref(), item_ref, Some(popped_at)).await
                }
                Ok(Acked::NotOurs) => {
                    crate::intent::forget(ctx.runner.client(), &namespace, &item.id).await;
                    ctx.store.remove(&item.id);
                    ctx.metrics.set_jobs(&ctx.store.counts());
                    return;
                }
                Err(failed) => Err(failed),
            };
            (Some(namespace), launched)
        }
        Err(failure) => (None, Err((None, failure))),
    };
    follow(&ctx, &registration, item_ref, intent_ns, launched).await;
    ctx.store.remove(&item.id);
    ctx.metrics.set_jobs(&ctx.store.counts());
}

/// The task of an item an agent acked before it stopped, found by its launch intent:
/// the rest of the launch under the same run id, from resolve on.
pub(crate) async fn resume_item(
    ctx: Arc<Context>,
    registration: Arc<Registration>,
    resumed: Resumed,
) {
    let Resumed {
        item,
        queue,
        run_id,
        requeue,
        namespace,
    } = resumed;
    let phase = Phase::Preparing {
        run_id: run_id.clone(),
    };
    let scheduler = item.run_spec.is_scheduler();
    if !ctx.store.insert(&item.id, &queue, scheduler, phase) {
        return;
    }
    tracing::info!(item = %item.id, queue, run_id, "resuming the launch of an item acked before the agent stopped");
    let item_ref = ItemRef {
        item: &item,
        queue: &queue,
        run_id: &run_id,
        requeue: &requeue,
    };
    let launched = launch(&ctx, registration.as_ref(), item_ref, None).await;
    follow(&ctx, &registration, item_ref, Some(namespace), launched).await;
    ctx.store.remove(&item.id);
    ctx.metrics.set_jobs(&ctx.store.counts());
}

/// An acked item whose launch is resumed (see [`resume_item`]).
pub(crate) struct Resumed {
    pub item: RunQueueItem,
    pub queue: String,
    pub run_id: String,
    pub requeue: RequeueRecord,
    /// Namespace of its launch intent.
    pub namespace: String,
}

/// After the launch: watch the workload to its end, or report why there is none; the
/// launch intent goes either way.
async fn follow(
    ctx: &Context,
    registration: &Registration,
    item_ref: ItemRef<'_>,
    intent_ns: Option<String>,
    launched: Result<Launched, Failed>,
) {
    let ItemRef {
        item,
        queue,
        run_id,
        requeue,
    } = item_ref;
    let forget_intent = || async {
        if let Some(namespace) = &intent_ns {
            crate::intent::forget(ctx.runner.client(), namespace, &item.id).await;
        }
    };
    match launched {
        Ok(launched) => {
            forget_intent().await;
            let watched = Watched {
                item_id: item.id.clone(),
                queue: queue.to_owned(),
                run_id: run_id.to_owned(),
                target: Some((item.run_spec.entity.clone(), item.run_spec.project.clone())),
                requeue: Some(requeue.clone()),
                spec_key: item.run_spec.api_key.clone(),
                created_at: Some(launched.created_at),
                pull_secret: launched.pull_secret,
                gpus: launched.gpus,
            };
            watch_run(ctx, registration, watched, launched.handle).await;
        }
        Err((run_id, failure)) => {
            report_failure(
                ctx,
                registration,
                &item.id,
                queue,
                run_id.as_deref(),
                &failure,
                item.run_spec.api_key.as_ref(),
            )
            .await;
            forget_intent().await;
        }
    }
}

/// What the server says about the item, and its queue wait on the metrics. Best effort:
/// a server without these fields only costs the metric and the requeue's priority.
async fn item_info(
    ctx: &Context,
    registration: &Registration,
    item_id: &str,
    queue: &str,
    popped_wall: SystemTime,
) -> QueueItemInfo {
    let info = ctx
        .wandb
        .run_queue_item_info(&registration.entity, LAUNCH_PROJECT, queue, item_id)
        .await;
    let info = match info {
        Ok(info) => info.unwrap_or_default(),
        Err(error) => {
            ctx.metrics.api_error("RunQueueItemInfo", error.kind());
            tracing::debug!(item = item_id, error = %error, "cannot read the item's creation time and priority");
            QueueItemInfo::default()
        }
    };
    if let Some(created) = info.created_at {
        // W&B's clock against ours: a skew that puts the push after the pop counts as 0.
        let waited = popped_wall.duration_since(created).unwrap_or_default();
        ctx.metrics.queue_wait(queue, waited);
    }
    info
}

/// The popped item and what the launch carries along.
#[derive(Clone, Copy)]
struct ItemRef<'a> {
    item: &'a RunQueueItem,
    queue: &'a str,
    run_id: &'a str,
    requeue: &'a RequeueRecord,
}

/// Validation, then the launch intent (see [`crate::intent`]): returns the run's namespace.
async fn before_ack(
    ctx: &Context,
    registration: &Registration,
    item_ref: ItemRef<'_>,
) -> Result<String, ItemFailure> {
    let ItemRef {
        item,
        queue,
        run_id,
        requeue,
    } = item_ref;
    let namespace = validate(ctx, registration, item, queue, run_id)?;
    let intent = crate::intent::Intent {
        namespace: namespace.clone(),
        item_id: item.id.clone(),
        run_id: run_id.to_owned(),
        queue: queue.to_owned(),
        launch: crate::intent::Launch::of(requeue, item.run_spec.api_key.is_some()),
    };
    record_intent(ctx, &intent, &registration.identity)
        .await
        .map_err(|error| {
            ItemFailure::new(
                FailureStage::Agent,
                format!(
                    "cannot record the launch intent in namespace `{namespace}` ({error}): the agent needs create, list and delete on configmaps there (`launch-agent check` lists what is missing)"
                ),
            )
        })?;
    Ok(namespace)
}

/// Records the launch intent, retrying while the API server is unreachable or answers
/// 429/5xx (restarting, or its etcd down): the item is not acked yet, and failing it for
/// a passing cluster outage would lose a run that W&B could still hand out.
async fn record_intent(
    ctx: &Context,
    intent: &crate::intent::Intent,
    identity: &str,
) -> Result<(), kube::Error> {
    let mut attempt = 0;
    loop {
        match crate::intent::record(ctx.runner.client(), intent, identity).await {
            Err(error) if is_transient_kube(&error) && attempt < 6 => {
                attempt += 1;
                tracing::warn!(item = %intent.item_id, error = %error, attempt, "recording the launch intent failed; retrying");
                tokio::time::sleep(crate::retry::backoff(
                    attempt,
                    Duration::from_secs(1),
                    Duration::from_secs(20),
                ))
                .await;
            }
            result => return result,
        }
    }
}

/// An API server error that waiting can fix: no answer at all, 429 or 5xx.
fn is_transient_kube(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(response) => response.code == 429 || response.code >= 500,
        _ => true,
    }
}

/// Test-only fault hook ([`crate::intent::PAUSE_AFTER_ACK_ENV`]): stop after the ack until
/// killed, so the crash test can kill the agent between ack and create.
async fn test_pause_after_ack(item: &RunQueueItem) {
    if std::env::var_os(crate::intent::PAUSE_AFTER_ACK_ENV).is_some_and(|v| v == "1") {
        tracing::warn!(item = %item.id, "test hook: paused after the ack, before the create");
        std::future::pending::<()>().await;
    }
}

type Failed = (Option<String>, ItemFailure);

fn set_phase(ctx: &Context, item: &RunQueueItem, queue: &str, phase: Phase) {
    tracing::info!(item = %item.id, queue, run_id = phase.run_id().unwrap_or(""), state = phase.name(), "item state");
    ctx.store.set(&item.id, phase);
    ctx.metrics.set_jobs(&ctx.store.counts());
}

/// A created workload.
struct Launched {
    handle: RunHandle,
    created_at: Instant,
    pull_secret: PullSecret,
    /// GPUs the workload requests.
    gpus: u32,
}

/// The ack, under the run id the launch will use.
///
/// A refused ack is not always someone else's: when the answer to an ack that ran is lost
/// (a dropped connection), the retry meets an item that is already claimed and W&B answers
/// `success: false`. So a refusal is checked against the item itself: claimed under this
/// launch's run id (drawn by this task, or the spec's own) means the ack was ours.
/// Otherwise the item is not this agent's any more (its lease ran out while the agent
/// waited on W&B or the cluster: it is pending again, or another agent holds it), and the
/// agent leaves it alone: failing it, as W&B's agent does, would fail a run that W&B hands
/// out again or that another agent is running.
async fn ack(
    ctx: &Context,
    registration: &Registration,
    item_ref: ItemRef<'_>,
) -> Result<Acked, Failed> {
    let ItemRef {
        item,
        queue,
        run_id,
        ..
    } = item_ref;
    let acked = a_few_times(ctx, "ackRunQueueItem", 3, || {
        ctx.wandb.ack_run_queue_item(&item.id, run_id)
    })
    .await;
    match acked {
        Ok(()) => {}
        Err(rlaunch_wandb_api::Error::AckRejected { .. }) => {
            if !claimed_by(ctx, registration, item_ref).await {
                tracing::warn!(item = %item.id, queue, run_id, "the ack was refused: the item's lease ran out or another agent holds it; leaving it to W&B");
                return Ok(Acked::NotOurs);
            }
            tracing::warn!(item = %item.id, queue, run_id, "the ack was refused, but the item is already claimed under this launch's run id: an earlier attempt acked it and its answer was lost; going on");
        }
        Err(error) => {
            return Err((
                None,
                ItemFailure::new(
                    FailureStage::Agent,
                    format!("cannot acknowledge the item: {error}"),
                ),
            ));
        }
    }
    ctx.metrics.acked(queue);
    test_pause_after_ack(item).await;
    Ok(Acked::Ours)
}

/// Whose the item is after the ack.
enum Acked {
    Ours,
    /// Refused, and not claimed under this launch's run id: left alone.
    NotOurs,
}

/// Whether W&B shows the item claimed under this launch's run id (false when it cannot
/// tell: then the refusal stands).
async fn claimed_by(ctx: &Context, registration: &Registration, item_ref: ItemRef<'_>) -> bool {
    let info = ctx
        .wandb
        .run_queue_item_info(
            &registration.entity,
            LAUNCH_PROJECT,
            item_ref.queue,
            &item_ref.item.id,
        )
        .await;
    match info {
        Ok(Some(info)) => {
            info.state.as_deref() == Some("CLAIMED")
                && info.associated_run_id.as_deref() == Some(item_ref.run_id)
        }
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(item = %item_ref.item.id, error = %error, "cannot read the item to tell whether the refused ack was ours");
            false
        }
    }
}

/// Resolve → build → render → pre-check → submit, after the ack. `popped_at` is `None`
/// for a resumed launch (its pop → created time is unknown).
async fn launch(
    ctx: &Context,
    registration: &Registration,
    item_ref: ItemRef<'_>,
    popped_at: Option<Instant>,
) -> Result<Launched, Failed> {
    let ItemRef {
        item,
        queue,
        run_id,
        requeue,
    } = item_ref;
    let spec = &item.run_spec;
    let run_id = run_id.to_owned();
    let failed = |stage, message: String| (Some(run_id.clone()), ItemFailure::new(stage, message));
    set_phase(
        ctx,
        item,
        queue,
        Phase::Preparing {
            run_id: run_id.clone(),
        },
    );
    let resolved = source::resolve(ctx, spec)
        .await
        .map_err(|m| failed(FailureStage::Agent, m))?;
    let built = build(ctx, item, &resolved, &run_id)
        .await
        .map_err(|(stage, m)| failed(stage, m))?;
    set_phase(
        ctx,
        item,
        queue,
        Phase::Submitting {
            run_id: run_id.clone(),
        },
    );
    let mut render_ctx = render_context(ctx, registration, item, queue, &run_id);
    render_ctx.image_uri = Some(built.image().to_owned());
    render_ctx.job_entrypoint = job_entrypoint(&built, &resolved);
    let staged = staged_code(ctx, &resolved.source, &built, spec)
        .await
        .map_err(|m| failed(FailureStage::Agent, m))?;
    render_ctx.code_mount = code_mount(&resolved.source, &built, spec, staged);
    let render = |render_ctx: &RenderContext| {
        rlaunch_render::render(spec, None, render_ctx).map_err(|e| {
            failed(
                FailureStage::Agent,
                format!("invalid queue config or run spec: {e}"),
            )
        })
    };
    let mut rendered = render(&render_ctx)?;
    if let Some(problem) =
        validate::target_namespace(&rendered.namespace, &ctx.config.target_namespaces)
    {
        return Err(failed(FailureStage::Agent, problem));
    }
    let pull = pull_secret(ctx, registration, &built, &rendered.namespace, &run_id)
        .await
        .map_err(|m| failed(FailureStage::Agent, m))?;
    if let Some(name) = &pull {
        render_ctx.pull_secret = Some(name.clone());
        rendered = render(&render_ctx)?;
    }
    let created = async {
        precheck(ctx, item, &rendered).await?;
        submit(ctx, &rendered, requeue).await
    }
    .await;
    let submitted = match created {
        Ok(submitted) => submitted,
        Err(message) => {
            if pull.is_some() {
                let client = ctx.runner.client();
                crate::pull_secret::remove(
                    client,
                    &rendered.namespace,
                    &run_id,
                    &registration.identity,
                )
                .await;
            }
            return Err(failed(FailureStage::Agent, message));
        }
    };
    if let Some(popped_at) = popped_at {
        ctx.metrics.pop_to_created(queue, popped_at.elapsed());
    }
    let workload = submitted.handle.run().object();
    tracing::info!(item = %item.id, queue, run_id, workload, adopted = submitted.adopted, "workload created");
    set_phase(
        ctx,
        item,
        queue,
        Phase::Running {
            run_id: run_id.clone(),
            workload,
            state: "starting",
        },
    );
    let pull = match pull {
        Some(_) => PullSecret::Created,
        None => PullSecret::None,
    };
    let gpus = rendered
        .workload()
        .map_or(0, |workload| gpus_requested(&workload.manifest));
    Ok(Launched {
        handle: submitted.handle,
        created_at: Instant::now(),
        pull_secret: pull,
        gpus,
    })
}

/// The build step: the run spec's own `builder` block (as the agent allows it), then the
/// agent's builder (or the no-op one the run chose); the build's warnings go to W&B.
async fn build(
    ctx: &Context,
    item: &RunQueueItem,
    resolved: &source::Resolved,
    run_id: &str,
) -> Result<Built, (FailureStage, String)> {
    let spec = &item.run_spec;
    let run_builder = run_builder_of(ctx, spec).map_err(|m| (FailureStage::Agent, m))?;
    let request = BuildRequest {
        run_id: run_id.to_owned(),
        entity: spec.entity.clone(),
        project: spec.project.clone(),
        source: resolved.source.clone(),
        base_image_override: base_image_override(spec),
        details: job_details(resolved, spec),
        overrides: run_builder.overrides,
    };
    let builder: &dyn Builder = match run_builder.noop {
        true => &NoopBuilder,
        false => &*ctx.builder,
    };
    let report = builder
        .build_report(&request)
        .await
        .map_err(|e| (FailureStage::Build, e.to_string()))?;
    for kind in send_build_warnings(&ctx.wandb, &item.id, &report.warnings).await {
        ctx.metrics.api_error("updateRunQueueItemWarning", kind);
    }
    Ok(report.built)
}

/// The entrypoint the render gives the workload when the run spec overrides none (pure):
/// the one the build rewrote (a `Dockerfile.wandb` beside the entry file), else the job's.
fn job_entrypoint(built: &Built, resolved: &source::Resolved) -> Option<Vec<String>> {
    built
        .entrypoint()
        .map(<[String]>::to_vec)
        .or_else(|| resolved.entrypoint.clone())
}

/// The build's warnings (failed packages, cleanup problems) as run queue item warnings of
/// stage `build`, as W&B's agent sends its failed-packages warning. Returns the error
/// kinds of the calls that failed (a warning that cannot be sent is logged, never fatal).
async fn send_build_warnings(
    wandb: &rlaunch_wandb_api::Client,
    item_id: &str,
    warnings: &[String],
) -> Vec<&'static str> {
    let mut failed = Vec::new();
    for warning in warnings {
        tracing::warn!(item = item_id, warning, "build warning");
        let sent = wandb
            .update_run_queue_item_warning(item_id, FailureStage::Build, warning, &[])
            .await;
        if let Err(error) = sent {
            tracing::warn!(item = item_id, error = %error, "cannot send the build warning to W&B");
            failed.push(error.kind());
        }
    }
    failed
}

/// GPUs a workload requests: every pod of every replica, any vendor's GPU resource (pure).
fn gpus_requested(manifest: &serde_json::Value) -> u32 {
    rlaunch_k8s_runner::workload_pod_specs(manifest)
        .iter()
        .filter_map(|pod| rlaunch_gpu::pod_requests(pod).ok())
        .flat_map(|requests| requests.into_iter())
        .filter(|(resource, _)| rlaunch_gpu::Vendor::of_resource(resource).is_some())
        .map(|(_, amount)| u32::try_from(amount).unwrap_or(0))
        .fold(0u32, u32::saturating_add)
}

/// What the builder needs from the job and the run spec beyond the source (pure). Git
/// credentials are not passed here: the agent's own git configuration (the chart's
/// `gitCreds` mounts `.git-credentials` with git's `store` helper) serves the clone.
fn job_details(resolved: &source::Resolved, spec: &RunSpec) -> rlaunch_builder::JobDetails {
    rlaunch_builder::JobDetails {
        entrypoint: resolved.entrypoint.clone(),
        python_version: resolved.python_version.clone(),
        dockerfile_override: spec.overrides.dockerfile.clone(),
        diff_patch: resolved.diff_patch.clone(),
        git_credentials: None,
    }
}

/// The run's image-pull Secret, when the builder says the image needs credentials.
async fn pull_secret(
    ctx: &Context,
    registration: &Registration,
    built: &Built,
    namespace: &str,
    run_id: &str,
) -> Result<Option<String>, String> {
    let credentials = ctx
        .builder
        .pull_credentials(built.image())
        .await
        .map_err(|e| {
            format!(
                "cannot get the registry credentials for {}: {e}",
                built.image()
            )
        })?;
    let Some(credentials) = credentials else {
        return Ok(None);
    };
    let identity = &registration.identity;
    let secret = crate::pull_secret::manifest(namespace, run_id, identity, &credentials);
    crate::pull_secret::create(ctx.runner.client(), &secret, run_id, identity)
        .await
        .map(Some)
}

/// Before ack: [`rlaunch_render::validate`] (secure mode included) and the target
/// namespaces. A malformed queue config fails here, without a run. Returns the namespace.
fn validate(
    ctx: &Context,
    registration: &Registration,
    item: &RunQueueItem,
    queue: &str,
    run_id: &str,
) -> Result<String, ItemFailure> {
    let render_ctx = render_context(ctx, registration, item, queue, run_id);
    let namespace =
        validate::before_ack(&item.run_spec, &render_ctx, &ctx.config.target_namespaces)
            .map_err(|problem| ItemFailure::new(FailureStage::Agent, problem))?;
    run_builder_of(ctx, &item.run_spec)
        .map_err(|problem| ItemFailure::new(FailureStage::Agent, problem))?;
    Ok(namespace)
}

/// The run spec's own `builder` block against what the agent config allows.
fn run_builder_of(ctx: &Context, spec: &RunSpec) -> Result<run_builder::RunBuilder, String> {
    run_builder::run_builder(spec, ctx.builder.kind(), &ctx.config.run_spec_builder_keys)
}

fn render_context(
    ctx: &Context,
    registration: &Registration,
    item: &RunQueueItem,
    queue: &str,
    run_id: &str,
) -> RenderContext {
    let mut render_ctx = RenderContext::new(run_id);
    render_ctx.run_queue_item_id = Some(item.id.clone());
    render_ctx.queue_name = Some(queue.to_owned());
    render_ctx.queue_entity = Some(registration.entity.clone());
    render_ctx.agent_name = Some(registration.agent_name.clone());
    render_ctx.agent_identity = Some(registration.identity.clone());
    render_ctx.base_url = ctx.config.base_url.clone();
    render_ctx.api_key = match ctx.config.job_secrets {
        JobSecrets::PerRun => ApiKeyMode::Agent(ctx.api_key.clone()),
        JobSecrets::None => ApiKeyMode::None,
    };
    render_ctx.release_name = ctx.config.release_name.clone();
    render_ctx.default_namespace = ctx.config.default_namespace.clone();
    render_ctx.macro_env = ctx.config.macro_env.clone();
    render_ctx.allowed_fields = ctx.config.allowed_fields.clone();
    render_ctx.secure_mode = ctx.config.secure_mode;
    render_ctx
}

fn base_image_override(spec: &RunSpec) -> Option<String> {
    spec.resource_args
        .get(&spec.resource)
        .and_then(|section| section.pointer("/builder/base_image"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// With the code PVC configured, a code artifact job's files are copied onto the claim:
/// its claim name and sub path. `None` for every other case.
async fn staged_code(
    ctx: &Context,
    source: &JobSource,
    built: &Built,
    spec: &RunSpec,
) -> Result<Option<(String, String)>, String> {
    let (Some(pvc), Built::BaseImage { .. }, JobSource::Artifact { artifact, .. }, Some(job)) =
        (&ctx.config.code_pvc, built, source, &spec.job)
    else {
        return Ok(None);
    };
    let sub_path = code_pvc::stage(ctx, pvc, artifact, job).await?;
    Ok(Some((pvc.claim_name.clone(), sub_path)))
}

/// The code mount of a base-image job (pure): the claim's sub path when the code was
/// `staged` on the code PVC, else an emptyDir its init container fills.
fn code_mount(
    source: &JobSource,
    built: &Built,
    spec: &RunSpec,
    staged: Option<(String, String)>,
) -> Option<CodeMount> {
    let Built::BaseImage {
        install_dependencies,
        ..
    } = built
    else {
        return None;
    };
    let code = match source {
        JobSource::Image { .. } => return None,
        JobSource::Artifact { artifact, .. } => CodeSource::Artifact(artifact.clone()),
        JobSource::Repo { remote, commit, .. } => CodeSource::Repo {
            remote: remote.clone(),
            commit: commit.clone(),
        },
    };
    let variant = match staged {
        Some((claim_name, sub_path)) => CodeMountVariant::Pvc {
            claim_name,
            sub_path,
        },
        None => CodeMountVariant::EmptyDir {
            source: code,
            job_artifact: spec.job.clone(),
            init_image: rlaunch_render::DEFAULT_CODE_INIT_IMAGE.to_owned(),
        },
    };
    Some(CodeMount {
        variant,
        install_dependencies: *install_dependencies,
    })
}

/// Never fits → fail in seconds with the scheduler's words; fits later → a warning.
async fn precheck(ctx: &Context, item: &RunQueueItem, rendered: &Rendered) -> Result<(), String> {
    if !ctx.config.precheck {
        return Ok(());
    }
    let Some(workload) = rendered.workload() else {
        return Ok(());
    };
    let pods = rlaunch_k8s_runner::workload_pod_specs(&workload.manifest);
    if pods.is_empty() {
        return Ok(());
    }
    match ctx.runner.precheck(&rendered.namespace, &pods).await {
        Ok(check) => match check.verdict {
            Verdict::NeverFits => Err(format!(
                "the workload can never be scheduled on this cluster: {} ({})",
                check.message, check.summary
            )),
            Verdict::FitsLater => {
                let message = format!("waiting for capacity: {}", check.message);
                if let Err(error) = ctx
                    .wandb
                    .update_run_queue_item_warning(
                        &item.id,
                        FailureStage::Kubernetes,
                        &message,
                        &[],
                    )
                    .await
                {
                    ctx.metrics
                        .api_error("updateRunQueueItemWarning", error.kind());
                }
                Ok(())
            }
            Verdict::FitsNow => Ok(()),
        },
        Err(error) => {
            let error = error_chain(&error);
            tracing::warn!(item = %item.id, %error, "pre-check failed; submitting anyway");
            Ok(())
        }
    }
}

/// What a preemption requeue needs, kept on the workload so a restarted agent can still
/// requeue an adopted run (the runner removes every secret from it): the spec as popped,
/// and the item's priority and template variables when the server told them.
fn requeue_record(spec: &RunSpec, info: &QueueItemInfo) -> RequeueRecord {
    let mut record = RequeueRecord::new(
        &serde_json::Value::Object(spec.as_raw().clone()),
        u32::try_from(spec.resume_count).unwrap_or(u32::MAX),
    );
    record.priority = info.priority;
    record.template_variables = info.template_variables.clone();
    record
}

/// Creates the workload with its requeue record, retrying transient errors.
async fn submit(
    ctx: &Context,
    rendered: &Rendered,
    requeue: &RequeueRecord,
) -> Result<rlaunch_k8s_runner::Submitted, String> {
    let mut attempt = 0;
    loop {
        match ctx.runner.submit_requeueable(rendered, requeue).await {
            Ok(submitted) => {
                if !submitted.requeue_kept && !submitted.adopted {
                    tracing::warn!(workload = %submitted.handle.run().object(), "the run spec is too large to keep on the workload: after an agent restart a preemption of this run cannot be requeued");
                }
                return Ok(submitted);
            }
            Err(error) if error.is_transient() && attempt < 4 => {
                attempt += 1;
                tracing::warn!(error = %error, attempt, "creating the workload failed; retrying");
                tokio::time::sleep(crate::retry::backoff(
                    attempt,
                    Duration::from_secs(1),
                    Duration::from_secs(20),
                ))
                .await;
            }
            Err(error) => {
                return Err(format!(
                    "cannot create the workload: {}",
                    error_chain(&error)
                ));
            }
        }
    }
}

pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 8 characters from `[a-z0-9]`, like W&B's run ids.
pub(crate) fn generate_run_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> RunSpec {
        RunSpec::from_json(json).unwrap()
    }

    #[test]
    fn code_jobs_get_the_init_container_mount_and_image_jobs_none() {
        let code = JobSource::Repo {
            remote: "https://git.example/r.git".into(),
            commit: "abc".into(),
            base_image: None,
            dockerfile: None,
        };
        let built = Built::BaseImage {
            image: "python:3.12-slim".into(),
            install_dependencies: true,
        };
        let run = spec(r#"{"entity":"e","project":"p","job":"e/p/job:v1"}"#);
        let mount = code_mount(&code, &built, &run, None).unwrap();
        assert!(mount.install_dependencies);
        let CodeMountVariant::EmptyDir {
            source,
            job_artifact,
            ..
        } = mount.variant
        else {
            panic!("expected the emptyDir variant");
        };
        assert_eq!(
            source,
            CodeSource::Repo {
                remote: "https://git.example/r.git".into(),
                commit: "abc".into()
            }
        );
        assert_eq!(job_artifact.as_deref(), Some("e/p/job:v1"));
        let image = JobSource::Image { image: "x".into() };
        assert_eq!(
            code_mount(&image, &Built::image_as_is("x"), &run, None),
            None
        );
        let staged = Some(("code".to_owned(), "job:v1".to_owned()));
        let pvc = code_mount(&code, &built, &run, staged).unwrap();
        assert_eq!(
            pvc.variant,
            CodeMountVariant::Pvc {
                claim_name: "code".into(),
                sub_path: "job:v1".into()
            }
        );
    }

    #[test]
    fn the_builder_gets_the_jobs_runtime_patch_and_the_runs_dockerfile() {
        let resolved = source::Resolved {
            source: JobSource::Repo {
                remote: "https://git.example/r.git".into(),
                commit: "abc".into(),
                base_image: None,
                dockerfile: Some("Dockerfile".into()),
            },
            entrypoint: Some(vec!["python".into(), "train.py".into()]),
            python_version: Some("3.11".into()),
            diff_patch: Some("--- a/x\n+++ b/x\n".into()),
        };
        let run = spec(
            r#"{"entity":"e","project":"p","job":"e/p/job:v1","overrides":{"dockerfile":"docker/Dockerfile.gpu"}}"#,
        );
        let details = job_details(&resolved, &run);
        assert_eq!(details.entrypoint, resolved.entrypoint);
        assert_eq!(details.python_version.as_deref(), Some("3.11"));
        assert_eq!(details.diff_patch, resolved.diff_patch);
        assert_eq!(
            details.dockerfile_override.as_deref(),
            Some("docker/Dockerfile.gpu")
        );
        let plain = job_details(&resolved, &spec(r#"{"entity":"e","project":"p"}"#));
        assert_eq!(plain.dockerfile_override, None);
    }

    #[test]
    fn the_base_image_hint_is_read_from_the_runs_resource_section() {
        let run = spec(
            r#"{"entity":"e","project":"p","resource":"kubernetes","resource_args":{"kubernetes":{"builder":{"base_image":"pytorch:2"}}}}"#,
        );
        assert_eq!(base_image_override(&run).as_deref(), Some("pytorch:2"));
        assert_eq!(
            base_image_override(&spec(r#"{"entity":"e","project":"p"}"#)),
            None
        );
    }

    #[test]
    fn gpus_are_counted_over_every_replica_and_vendor() {
        let manifest = serde_json::json!({
            "kind": "PyTorchJob",
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "m", "resources": {"limits": {"nvidia.com/gpu": "2", "cpu": "4"}}}
                ]}}},
                "Worker": {"replicas": 3, "template": {"spec": {"containers": [
                    {"name": "w", "resources": {"limits": {"amd.com/gpu": "1"}}},
                    {"name": "side", "resources": {"limits": {"memory": "1Gi"}}}
                ]}}}
            }}
        });
        assert_eq!(gpus_requested(&manifest), 5);
        let cpu_only = serde_json::json!({"kind": "Job", "spec": {"template": {"spec": {
            "containers": [{"name": "c", "resources": {"limits": {"cpu": "1"}}}]
        }}}});
        assert_eq!(gpus_requested(&cpu_only), 0);
    }

    #[test]
    fn the_requeue_record_keeps_the_items_priority_and_template_variables() {
        let run = spec(r#"{"entity":"e","project":"p","_wandb_api_key":"secret"}"#);
        let info = QueueItemInfo {
            priority: Some(0),
            template_variables: Some(serde_json::json!({"gpus": 2})),
            ..QueueItemInfo::default()
        };
        let record = requeue_record(&run, &info);
        assert_eq!(record.priority, Some(0));
        assert_eq!(
            record.template_variables,
            Some(serde_json::json!({"gpus": 2}))
        );
        assert!(record.run_spec.get("_wandb_api_key").is_none());
        let unknown = requeue_record(&run, &QueueItemInfo::default());
        assert_eq!((unknown.priority, unknown.template_variables), (None, None));
    }

    #[test]
    fn the_entrypoint_the_build_rewrote_wins_over_the_jobs() {
        let resolved = source::Resolved {
            source: JobSource::Image { image: "x".into() },
            entrypoint: Some(vec!["python".into(), "jobs/train/train.py".into()]),
            python_version: None,
            diff_patch: None,
        };
        let rewritten = Built::Image {
            image: "r.example/t:abc".into(),
            entrypoint: Some(vec!["python".into(), "train.py".into()]),
        };
        assert_eq!(
            job_entrypoint(&rewritten, &resolved),
            Some(vec!["python".to_owned(), "train.py".to_owned()])
        );
        assert_eq!(
            job_entrypoint(&Built::image_as_is("r.example/t:abc"), &resolved),
            resolved.entrypoint
        );
    }

    #[tokio::test]
    async fn build_warnings_reach_the_item_with_stage_build() {
        use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, NewItem, NewQueue};
        let fake = FakeWandb::start().await.unwrap();
        fake.create_queue(NewQueue::new(FAKE_ENTITY, "q")).unwrap();
        let item_id = fake
            .push_item(NewItem {
                entity: FAKE_ENTITY.to_owned(),
                project: LAUNCH_PROJECT.to_owned(),
                queue: "q".to_owned(),
                run_spec: serde_json::json!({"entity": FAKE_ENTITY, "project": "p"}),
                priority: None,
            })
            .unwrap();
        let config = rlaunch_wandb_api::ClientConfig::new(
            fake.base_url.clone(),
            rlaunch_model::ApiKey::new(FAKE_API_KEY),
        );
        let client = rlaunch_wandb_api::Client::new(config).unwrap();
        let warnings = vec![
            "Some packages were not successfully installed during the build: torch==9".to_owned(),
            "build cleanup: cannot delete build job x".to_owned(),
        ];
        let failed = send_build_warnings(&client, &item_id, &warnings).await;
        assert!(failed.is_empty(), "{failed:?}");
        let stored = fake.item(&item_id).unwrap().warnings;
        let sent: Vec<(&str, &str)> = stored
            .iter()
            .map(|w| (w.stage.as_str(), w.message.as_str()))
            .collect();
        assert_eq!(
            sent,
            [
                ("build", warnings[0].as_str()),
                ("build", warnings[1].as_str())
            ],
            "{stored:?}"
        );
        let failed = send_build_warnings(&client, "no-such-item", &warnings[..1]).await;
        assert_eq!(failed.len(), 1);
    }

    #[test]
    fn run_ids_look_like_wandb_run_ids() {
        let id = generate_run_id();
        assert_eq!(id.len(), 8);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{id}"
        );
        assert_ne!(generate_run_id(), generate_run_id());
    }
}
