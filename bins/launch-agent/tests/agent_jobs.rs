//! Job artifacts: an image job runs its image and entrypoint; a code job runs on the
//! default base image with its code fetched at run time (the no-op builder).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually, queue, simulate_wandb_init};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeWandb, NewArtifact, NewItem};
use serde_json::{Value, json};

fn job_item(job: &str) -> NewItem {
    NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: "model-registry".to_owned(),
        queue: "jobs".to_owned(),
        run_spec: json!({"entity": FAKE_ENTITY, "project": "jobs", "job": job}),
        priority: None,
    }
}

fn artifact(name: &str, job_json: Value) -> NewArtifact {
    NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "jobs".to_owned(),
        name: name.to_owned(),
        aliases: Vec::new(),
        files: BTreeMap::from([("wandb-job.json".to_owned(), job_json.to_string())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_code_jobs_are_resolved_from_their_artifacts() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-jobs").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let run = json!({annotations::OUTCOME: outcome::RUN_FOREVER});
    fake.create_queue(queue("jobs", &ns.name, run)).unwrap();
    fake.add_artifact(artifact(
        "job-image",
        json!({"source_type": "image", "source": {"image": "ghcr.io/example/train:2", "entrypoint": ["python", "train.py"]}}),
    ));
    fake.add_artifact(artifact(
        "job-code",
        json!({"source_type": "artifact", "source": {"artifact": "wandb-artifact://_id/code123", "entrypoint": ["python", "main.py"]}}),
    ));
    fake.push_item(job_item(&format!("{FAKE_ENTITY}/jobs/job-image:latest")))
        .unwrap();
    fake.push_item(job_item(&format!("{FAKE_ENTITY}/jobs/job-code:latest")))
        .unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [jobs]\nmax_jobs: 2\npoll_interval: 0.3\ntarget_namespaces: [{}]\nidentity: jobs-{}\n",
        ns.name, ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let api: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let found = eventually("both Jobs", Duration::from_secs(180), || async {
        let jobs = api.list(&ListParams::default()).await?.items;
        Ok((jobs.len() == 2).then_some(jobs))
    })
    .await;
    let jobs = match found {
        Ok(jobs) => jobs,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    let texts: Vec<String> = jobs
        .iter()
        .map(|j| serde_json::to_string(j).unwrap())
        .collect();
    let image = texts
        .iter()
        .find(|t| t.contains("ghcr.io/example/train:2"))
        .expect("the image job runs its image");
    assert!(
        image.contains(r#""command":["python","train.py"]"#),
        "{image}"
    );
    assert!(
        image.contains("_wandb_job"),
        "WANDB_ARTIFACTS names the job: {image}"
    );
    let code = texts
        .iter()
        .find(|t| t.contains("python:3.12-slim"))
        .expect("the code job runs on the default base image");
    assert!(
        code.contains("wandb-source-code-init"),
        "the code is fetched by an init container: {code}"
    );
    assert!(
        code.contains("wandb-artifact://_id/code123") || code.contains("code123"),
        "{code}"
    );
    assert!(
        fake.items().iter().all(|i| i.failure.is_none()),
        "{:#?}",
        fake.items()
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_code_pvc_a_code_job_is_staged_on_the_claim_and_mounts_it() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-code-pvc").await?;
    let fake = Arc::new(FakeWandb::start().await?);
    let run = json!({annotations::OUTCOME: outcome::RUN_FOREVER});
    fake.create_queue(queue("jobs", &ns.name, run)).unwrap();
    let code_id = fake.add_artifact(NewArtifact {
        entity: FAKE_ENTITY.to_owned(),
        project: "jobs".to_owned(),
        name: "source-code".to_owned(),
        aliases: Vec::new(),
        files: BTreeMap::from([("src/main.py".to_owned(), "print('hi')\n".to_owned())]),
    });
    let mut job = artifact(
        "job-staged",
        json!({"source_type": "artifact", "source": {"artifact": format!("wandb-artifact://_id/{code_id}"), "entrypoint": ["python", "src/main.py"]}}),
    );
    job.files.insert(
        "requirements.frozen.txt".to_owned(),
        "numpy==2.0\n".to_owned(),
    );
    fake.add_artifact(job);
    fake.push_item(job_item(&format!("{FAKE_ENTITY}/jobs/job-staged:latest")))
        .unwrap();
    let _sdk = simulate_wandb_init(fake.clone());
    let mount = tempfile::tempdir()?;
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [jobs]\npoll_interval: 0.3\nprecheck: false\ntarget_namespaces: [{0}]\nidentity: pvc-{0}\n",
        ns.name
    );
    let mount_path = mount.path().display().to_string();
    let mut agent = AgentProcess::start_with_env(
        &fake,
        cluster.kubeconfig_path(),
        &config,
        rlaunch_wandb_fake::FAKE_API_KEY,
        &[
            ("WANDB_LAUNCH_CODE_PVC_NAME", "launch-code"),
            ("WANDB_LAUNCH_CODE_PVC_MOUNT_PATH", &mount_path),
        ],
    )
    .await?;
    let api: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let found = eventually("the staged job's Job", Duration::from_secs(180), || async {
        Ok(api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await;
    let job = match found {
        Ok(job) => job,
        Err(error) => panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text()),
    };
    let pod = job.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "wandb-source-code-volume")
        .expect("the code volume");
    assert_eq!(
        volume.persistent_volume_claim.map(|c| c.claim_name),
        Some("launch-code".to_owned()),
        "the code volume is the claim"
    );
    assert!(
        pod.init_containers.unwrap_or_default().is_empty(),
        "no init container fetches the code"
    );
    let mounted = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.name == "wandb-source-code-volume")
        .expect("the code mount");
    assert_eq!(mounted.mount_path, "/mnt/wandb");
    assert_eq!(mounted.sub_path.as_deref(), Some("job-staged:v0"));
    let staged = mount.path().join("job-staged:v0");
    assert_eq!(
        std::fs::read_to_string(staged.join("src/main.py"))?,
        "print('hi')\n"
    );
    assert_eq!(
        std::fs::read_to_string(staged.join(".job/requirements.frozen.txt"))?,
        "numpy==2.0\n"
    );
    assert!(
        fake.items().iter().all(|i| i.failure.is_none()),
        "{:#?}",
        fake.items()
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
