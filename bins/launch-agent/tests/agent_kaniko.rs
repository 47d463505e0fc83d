//! `builder: {type: kaniko}` through the real agent binary: a code job is popped, its code
//! artifact fetched from `wandb-fake`, built by a Kaniko Job (kwok plays the build pod),
//! and run on the built image; a failed build is reported with stage `build`. The context
//! goes to the real S3 server (moto) and the existence check asks the real OCI registry.

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

fn code_job(code: &str) -> String {
    json!({"source_type": "artifact", "source": {
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
        "kaniko-config": {"spec": {"template": {"metadata": {"annotations": build_outcome}}}},
    });
    format!(
        "entity: {FAKE_ENTITY}\nqueues: [builds]\nmax_jobs: 2\npoll_interval: 0.3\ntarget_namespaces: [{ns}]\nidentity: kaniko-{ns}\nbuilder: {builder}\n"
    )
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
        &[("wandb-job.json", code_job("code-ok"))],
    ));
    let ok_item = fake
        .push_item(item(&format!("{FAKE_ENTITY}/jobs/job-ok:latest")))
        .unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = agent_config(
        &ns.name,
        &registry,
        &s3,
        json!({annotations::OUTCOME: outcome::SUCCEED}),
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;

    let api: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let prefix = format!("{}/team/trainer:", registry.host());
    let run_job = eventually(
        "the run on the built image",
        Duration::from_secs(180),
        || async {
            let jobs = api.list(&ListParams::default()).await?.items;
            Ok(jobs.into_iter().find(|j| {
                serde_json::to_string(j).unwrap().contains(&prefix)
                    && !j
                        .metadata
                        .name
                        .clone()
                        .unwrap_or_default()
                        .contains("container-build")
            }))
        },
    )
    .await;
    if let Err(error) = &run_job {
        panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text());
    }
    // The run finishes and is reported: the agent deletes its Job after the report.
    let run_name = run_job.unwrap().metadata.name.unwrap();
    let reported = eventually(
        "the run reported and deleted",
        Duration::from_secs(180),
        || async {
            let gone = api
                .get_opt(&run_name)
                .await?
                .is_none_or(|j| j.metadata.deletion_timestamp.is_some());
            Ok((gone && agent.log_text().contains("item finished")).then_some(()))
        },
    )
    .await;
    if let Err(error) = &reported {
        panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text());
    }
    let ok = fake.item(&ok_item).unwrap();
    assert!(ok.failure.is_none(), "{ok:#?}");
    assert_eq!(ok.state, ItemState::Claimed, "{ok:#?}");
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
        &[("wandb-job.json", code_job("code-bad"))],
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
