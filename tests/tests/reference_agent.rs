//! W&B's own launch agent (PyPI `wandb[launch]==0.31.0`) against `wandb-fake` and the test
//! cluster: the fake's fidelity check. The reference agent registers, starts its
//! bookkeeping run (`wandb.init`: UpsertBucket, serverInfo, the file stream, run files),
//! pops two items, creates their Jobs on the cluster, reports one item failed (its run
//! never called `wandb.init`) and stops on `stopPolling`. Every GraphQL request it sent is
//! taken from the fake's journal: the test fails if the fake's schema rejected any
//! operation or field (so `schema.graphql` plus the fake's `server.graphql` are checked
//! against the real client, not only against our own guess), and if the Jobs were not made.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_testkit::reference;
use rlaunch_wandb_fake::{
    FAKE_API_KEY, FAKE_ENTITY, FakeConfig, FakeWandb, ItemState, NewItem, NewQueue,
};
use serde_json::{Value, json};

/// Hang guard for the whole scenario (the failed item alone waits out the reference's
/// ~63 s `wandb.init` back-off); not a timing assertion.
const LIMIT: Duration = Duration::from_secs(300);

/// The project whose runs the fake reports as initialised (`running`) right at the ack.
const INITED_PROJECT: &str = "inited";

/// Operations the scenario must make the reference send (it sends more, e.g.
/// `RunStoppedStatus` while a Job runs long enough; every one is validated).
const EXPECTED: [&str; 14] = [
    "Viewer",
    "ProjectRunQueues",
    "createLaunchAgent",
    "EntityIsTeam",
    "LaunchAgent",
    "UpsertBucket",
    "OrganizationCoreWeaveOrganizationID",
    "ServerFeaturesQuery",
    "popFromRunQueue",
    "ackRunQueueItem",
    "updateLaunchAgent",
    "RunState",
    "failRunQueueItem",
    "CreateRunFiles",
];

#[tokio::test]
async fn reference_agent_runs_against_the_fake_and_every_operation_validates() -> Result<()> {
    let agent = tokio::task::spawn_blocking(reference::ensure_installed).await??;
    let cluster = rlaunch_testkit::cluster().await?;
    let ns = cluster.namespace("reference").await?;
    let fake = start_fake(ns.name()).await?;
    let items = [push(&fake, INITED_PROJECT)?, push(&fake, "never-init")?];

    let dir = tempfile::tempdir()?;
    reference::isolated_home(dir.path(), cluster.kubeconfig_path())?;
    let config = dir.path().join("launch-config.yaml");
    std::fs::write(
        &config,
        format!("entity: {FAKE_ENTITY}\nqueues: [reference]\nmax_jobs: 2\n"),
    )?;
    let log = dir.path().join("agent.log");
    let mut command = agent.launch_agent(dir.path(), &fake.base_url, FAKE_API_KEY, &config);
    let log_file = std::fs::File::create(&log)?;
    command.stdout(log_file.try_clone()?).stderr(log_file);
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start W&B's launch agent")?;

    let outcome = tokio::time::timeout(LIMIT, scenario(&fake, &items, ns.name())).await;
    let status = match &outcome {
        Ok(Ok(_)) => Some(tokio::time::timeout(LIMIT, child.wait()).await),
        _ => None,
    };
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    let result = check(&fake, outcome, status, &items);
    ns.cleanup().await;
    result.with_context(|| format!("W&B's agent printed:\n{agent_log}"))
}

/// A fake whose runs in [`INITED_PROJECT`] start `running`, with the queue `reference`
/// putting pods in `namespace` for 1 s.
async fn start_fake(namespace: &str) -> Result<FakeWandb> {
    let mut config = FakeConfig::default();
    config
        .acked_run_states
        .insert(INITED_PROJECT.to_owned(), "running".to_owned());
    let mut queue = NewQueue::new(FAKE_ENTITY, "reference");
    queue.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {
            rlaunch_testkit::annotations::RUN_SECONDS: "1",
        }}}},
    }}});
    let fake = FakeWandb::start_with(config).await?;
    fake.create_queue(queue)?;
    Ok(fake)
}

fn push(fake: &FakeWandb, project: &str) -> Result<String> {
    let item = NewItem::new(
        FAKE_ENTITY,
        "reference",
        json!({
            "entity": FAKE_ENTITY,
            "project": project,
            "docker": {"docker_image": "registry.example/train:1"},
        }),
    );
    Ok(fake.push_item(item)?)
}

/// Both items acked and their Jobs created, the second one failed, then `stopPolling`.
/// Returns the run ids the Jobs carried (listed while they existed: W&B's agent may clean
/// a finished Job up).
async fn scenario(
    fake: &FakeWandb,
    items: &[String; 2],
    namespace: &str,
) -> Result<BTreeSet<String>> {
    fake.wait_until(|fake| {
        items
            .iter()
            .all(|id| fake.item(id).is_some_and(|i| i.associated_run_id.is_some()))
            .then_some(())
    })
    .await;
    let jobs = wait_for_jobs(fake, items, namespace).await?;
    fake.wait_until(|fake| {
        fake.item(&items[1])
            .filter(|i| i.state == ItemState::Failed)
    })
    .await;
    let agent_id = fake
        .agents()
        .first()
        .map(|agent| agent.id.clone())
        .context("W&B's agent acked items without registering")?;
    fake.set_stop_polling(&agent_id, true)?;
    Ok(jobs)
}

/// The Jobs of the acked runs, by the `WANDB_RUN_ID` the reference puts in the container.
async fn jobs_by_run(namespace: &str) -> Result<BTreeSet<String>> {
    let client = rlaunch_testkit::cluster().await?.client().await?;
    let jobs: Api<Job> = Api::namespaced(client, namespace);
    let list = jobs.list(&ListParams::default()).await?;
    let env_of = |job: &Job| -> Option<String> {
        let spec = job.spec.as_ref()?.template.spec.as_ref()?;
        let env = spec.containers.first()?.env.as_ref()?;
        env.iter()
            .find(|var| var.name == "WANDB_RUN_ID")
            .and_then(|var| var.value.clone())
    };
    Ok(list.items.iter().filter_map(env_of).collect())
}

/// Waits (re-listing every 100 ms, bounded by the caller) until both runs have a Job;
/// returns the run ids of the Jobs listed then.
async fn wait_for_jobs(
    fake: &FakeWandb,
    items: &[String; 2],
    namespace: &str,
) -> Result<BTreeSet<String>> {
    let runs: BTreeSet<String> = items
        .iter()
        .filter_map(|id| fake.item(id)?.associated_run_id)
        .collect();
    loop {
        let jobs = jobs_by_run(namespace).await?;
        if runs.is_subset(&jobs) {
            return Ok(jobs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Waited = Result<std::io::Result<std::process::ExitStatus>, tokio::time::error::Elapsed>;

fn check(
    fake: &FakeWandb,
    outcome: Result<Result<BTreeSet<String>>, tokio::time::error::Elapsed>,
    status: Option<Waited>,
    items: &[String; 2],
) -> Result<()> {
    let rejected = rejected_requests(fake);
    ensure!(
        rejected.is_empty(),
        "the fake rejected what W&B's agent sent (a gap in the fake's schema or resolvers):\n{}",
        rejected.join("\n")
    );
    let jobs = match outcome {
        Ok(result) => result?,
        Err(_) => bail!(
            "the scenario did not complete within {LIMIT:?}; items: {:?}",
            fake.items()
        ),
    };
    let sent: BTreeSet<String> = fake
        .journal()
        .into_iter()
        .filter_map(|e| e.operation)
        .collect();
    let missing: Vec<&str> = EXPECTED
        .into_iter()
        .filter(|op| !sent.contains(*op))
        .collect();
    ensure!(
        missing.is_empty(),
        "W&B's agent never sent {missing:?} (sent {sent:?})"
    );
    check_items_and_jobs(fake, items, &jobs)?;
    check_bookkeeping_run(fake)?;
    match status {
        Some(Ok(Ok(status))) => ensure!(status.success(), "W&B's agent ended with {status}"),
        other => bail!("W&B's agent did not exit after stopPolling: {other:?}"),
    }
    Ok(())
}

/// Every journal entry the fake did not answer with 200 and no GraphQL error.
fn rejected_requests(fake: &FakeWandb) -> Vec<String> {
    fake.journal()
        .into_iter()
        .filter(|entry| entry.status != 200 || !entry.errors.is_empty())
        .map(|entry| {
            format!(
                "{:?} (HTTP {}): {:?}\n{}\nvariables: {}",
                entry.operation,
                entry.status,
                entry.errors,
                entry.query,
                entry.variables.unwrap_or(Value::Null)
            )
        })
        .collect()
}

fn check_items_and_jobs(
    fake: &FakeWandb,
    items: &[String; 2],
    jobs: &BTreeSet<String>,
) -> Result<()> {
    for id in items {
        let item = fake.item(id).context("an item vanished")?;
        let run = item.associated_run_id.context("an item was never acked")?;
        ensure!(
            jobs.contains(&run),
            "no Job carries WANDB_RUN_ID={run}: {jobs:?}"
        );
    }
    ensure!(jobs.len() == 2, "expected one Job per item, found {jobs:?}");
    let failed = fake.item(&items[1]).context("the second item vanished")?;
    let failure = failed
        .failure
        .context("the second item has no failure report")?;
    ensure!(
        failure.stage == "run",
        "the never-initialised run should fail at stage `run`: {failure:?}"
    );
    let inited = fake.item(&items[0]).context("the first item vanished")?;
    ensure!(
        inited.failure.is_none(),
        "the initialised run was failed: {:?}",
        inited.failure
    );
    Ok(())
}

/// The agent's own run: its file stream posts arrived, its status ended `KILLED`.
fn check_bookkeeping_run(fake: &FakeWandb) -> Result<()> {
    let agent = fake
        .agents()
        .into_iter()
        .next()
        .context("no agent registered")?;
    ensure!(
        agent.status_history.last().map(String::as_str) == Some("KILLED"),
        "W&B's agent should report KILLED on stopPolling: {:?}",
        agent.status_history
    );
    let stream = format!(
        "{FAKE_ENTITY}/model-registry/{}/file_stream.jsonl",
        agent.name
    );
    let files = fake.files();
    let posts = files.get(&stream).map_or(0, |text| text.lines().count());
    ensure!(
        posts > 0,
        "no file stream post for the agent's run (files: {:?})",
        files.keys()
    );
    Ok(())
}
