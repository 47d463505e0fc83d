//! `builder: {type: kaniko}` through the real agent binary: a code job is popped, its code
//! artifact fetched from `wandb-fake`, built by a Kaniko Job (kwok plays the build pod),
//! and run on the built image; a failed build is reported with stage `build`. The context
//! goes to the real S3 server (moto) and the existence check asks the real OCI registry.
//! Two jobs with the same code but different Python runtimes get different images: the
//! job's `runtime` reaches the generated Dockerfile, hence the content-hash tag. One run
//! names its own repository in its run spec's `builder` block, as the agent config allows.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually, queue, simulate_wandb_init};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_testkit::servers::{Registry, S3Server};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, ItemState, NewArtifact, NewItem};
use serde_json::{Value, json};

fn item(job: &str) -> NewItem {
    NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: "model-registry".to_owned(),
        queue: "builds".to_owned(),
        run_spec: json!({"entity": FAKE_ENTITY, "project": "jobs", "job": job}),
        priority: None,
    }
}

fn artifact(name: &str, files: &[(&str, String)]) -> NewArtifact {
    NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "jobs".to_owned(),
        name: name.to_owned(),
        aliases: Vec::new(),
        files: files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), t.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn code_job(code: &str, runtime: &str) -> String {
    json!({"source_type": "artifact", "runtime": runtime, "source": {
        "artifact": format!("{FAKE_ENTITY}/jobs/{code}:latest"),
        "entrypoint": ["python", "train.py"]
    }})
    .to_string()
}

fn agent_config(ns: &str, registry: &Registry, s3: &S3Server, build_outcome: Value) -> String {
    let builder = json!({
        "type": "kaniko",
        "destination": format!("{}/team/trainer", registry.host()),
        "insecure-registry": true,
        "build-context-store": "s3://contexts/builds",
        "build-context-options": {
            "aws_endpoint": s3.endpoint(), "aws_allow_http": "true",
            "aws_access_key_id": "test", "aws_secret_access_key": "test",
            "aws_region": "us-east-1"
        },
        "kaniko-namespace": ns,
        "run-spec-overrides": ["destination"],
        "kaniko-config": {"spec": {"template": {"metadata": {"annotations": build_outcome}}}},
    });
    format!(
        "entity: {FAKE_ENTITY}\nqueues: [builds]\nmax_jobs: 2\npoll_interval: 0.3\ntarget_namespaces: [{ns}]\nidentity: kaniko-{ns}\nbuilder: {builder}\n"
    )
}

/// The image of `job`'s first container, when it is one the builder pushed under `prefix`.
fn run_image(job: &Job, prefix: &str) -> Option<String> {
    let spec = job.spec.as_ref()?.template.spec.as_ref()?;
    let image = spec.containers.first()?.image.clone()?;
    image.starts_with(prefix).then_some(image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_is_built_then_run_and_a_failed_build_has_stage_build() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-kaniko").await?;
    let registry = Registry::start().await?;
    let s3 = S3Server::start().await?;
    s3.create_bucket("contexts").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(queue(
        "builds",
        &ns.name,
        json!({annotations::OUTCOME: outcome::SUCCEED}),
    ))
    .unwrap();
    fake.add_artifact(artifact("code-ok", &[("train.py", "print('ok')\n".into())]));
    fake.add_artifact(artifact(
        "job-ok",
        &[("wandb-job.json", code_job("code-ok", "3.10.4"))],
    ));
    fake.add_artifact(artifact(
        "job-ok-py311",
        &[("wandb-job.json", code_job("code-ok", "CPython 3.11.2"))],
    ));
    // The second run names its own repository in its `builder` block, which the agent
    // config allows (`run-spec-overrides: [destination]`).
    let mut own_destination = item(&format!("{FAKE_ENTITY}/jobs/job-ok-py311:latest"));
    own_destination.run_spec["builder"] =
        json!({"destination": format!("{}/team/own", registry.host())});
    let ok_items = [
        fake.push_item(item(&format!("{FAKE_ENTITY}/jobs/job-ok:latest")))
            .unwrap(),
        fake.push_item(own_destination).unwrap(),
    ];
    let _sdk = simulate_wandb_init(fake.clone());
    let config = agent_config(
        &ns.name,
        &registry,
        &s3,
        json!({annotations::OUTCOME: outcome::SUCCEED}),
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;

    // Both runs start on built images (seen while their Jobs exist), one image per runtime.
    let api: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let prefix = format!("{}/team/", registry.host());
    let seen = std::sync::Mutex::new(BTreeMap::<String, String>::new());
    let runs = eventually(
        "the two runs on their built images",
        Duration::from_secs(240),
        || async {
            for job in api.list(&ListParams::default()).await?.items {
                let name = job.metadata.name.clone().unwrap_or_default();
                let image = run_image(&job, &prefix);
                if let (false, Some(image)) = (name.contains("container-build"), image) {
                    seen.lock().unwrap().insert(name, image);
                }
            }
            let seen = seen.lock().unwrap();
            Ok((seen.len() == 2).then(|| seen.clone()))
        },
    )
    .await;
    let runs = match runs {
        Ok(runs) => runs,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    let images: std::collections::BTreeSet<&String> = runs.values().collect();
    assert_eq!(images.len(), 2, "one image per Python runtime: {runs:#?}");
    for repository in ["team/trainer:", "team/own:"] {
        assert!(
            images.iter().any(|i| i.contains(repository)),
            "an image in {repository}: {runs:#?}"
        );
    }
    // The runs finish and are reported: the agent deletes their Jobs after the report.
    let reported = eventually(
        "the runs reported and deleted",
        Duration::from_secs(180),
        || async {
            for name in runs.keys() {
                let job = api.get_opt(name).await?;
                if job.is_some_and(|j| j.metadata.deletion_timestamp.is_none()) {
                    return Ok(None);
                }
            }
            let finished = agent.log_text().matches("item finished").count();
            Ok((finished >= 2).then_some(()))
        },
    )
    .await;
    if let Err(error) = &reported {
        panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text());
    }
    for ok_item in &ok_items {
        let ok = fake.item(ok_item).unwrap();
        assert!(ok.failure.is_none(), "{ok:#?}");
        assert_eq!(ok.state, ItemState::Claimed, "{ok:#?}");
    }
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());

    // A failing build: the item fails with stage `build`.
    let fail_config = agent_config(
        &ns.name,
        &registry,
        &s3,
        json!({annotations::OUTCOME: outcome::FAIL, annotations::EXIT_CODE: "2"}),
    );
    fake.add_artifact(artifact(
        "code-bad",
        &[("train.py", "print('bad')\n".into())],
    ));
    fake.add_artifact(artifact(
        "job-bad",
        &[("wandb-job.json", code_job("code-bad", "3.12"))],
    ));
    let bad_item = fake
        .push_item(item(&format!("{FAKE_ENTITY}/jobs/job-bad:latest")))
        .unwrap();
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &fail_config).await?;
    let failed = eventually("the build failure", Duration::from_secs(180), || async {
        Ok(fake.item(&bad_item).and_then(|i| i.failure))
    })
    .await;
    let failure = match failed {
        Ok(failure) => failure,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    assert_eq!(failure.stage, "build", "{failure:?}");
    assert!(
        failure.message.contains("image build"),
        "{}",
        failure.message
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
