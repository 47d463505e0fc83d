//! A real Kaniko build on the real node, through the real agent: a code job with
//! `builder: {type: kaniko}` is popped, its code artifact (a Dockerfile `FROM` a local base
//! image and the trainer script) goes to the S3 server (moto), the build Job runs the real
//! executor (`chainguard-dev/kaniko`, built from the module proxy) on the real node, reads
//! the context from S3, pushes the image to a local registry, and the agent runs the built
//! image on the real node, where it calls the fake like `wandb.init` and finishes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{AgentProcess, eventually};
use rlaunch_testkit::node::{self, images, kaniko};
use rlaunch_testkit::servers::{Registry, S3Server, TcpForward};
use rlaunch_wandb_fake::{FAKE_ENTITY, FakeConfig, FakeWandb, NewArtifact, NewItem, NewQueue};
use serde_json::{Value, json};

/// A hang guard: a cold cache builds the executor first (minutes).
const WAIT: Duration = Duration::from_secs(600);

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

/// The build Job's template: on the real node, the context read from S3 at `s3`, plain
/// HTTP to the registry for the base image and the push.
fn kaniko_template(s3: &str) -> Value {
    let env: Vec<Value> = [
        ("S3_ENDPOINT", s3),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
    .iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    json!({"spec": {"template": {"spec": {
        "nodeSelector": node::node_selector(),
        "tolerations": [node::toleration()],
        "containers": [{
            "name": "wandb-container-build",
            "args": ["--insecure", "--insecure-pull", "--force"],
            "env": env,
        }],
    }}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_job_is_built_by_real_kaniko_on_the_real_node_then_run_to_finished()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::real_node_cluster().await?;
    let node_info = cluster.real_node().await?;
    let ns = cluster.namespace("agent-kaniko-real").await?;
    // One registry for the executor, the base image and the built image, reached by the
    // pods (and containerd) on the node's address.
    let registry = Registry::start().await?;
    let exposed = TcpForward::start(&node_info.host_ip, registry.port()).await?;
    let host = exposed.host();
    node::trust_plain_http_registry(&node_info.dir, &host)?;
    kaniko::push_executor_image(&registry).await?;
    let busybox = std::fs::read(node::host::check()?.busybox)?;
    registry
        .push_image(&images::busybox_image("base", "1", &busybox))
        .await?;
    let s3 = S3Server::start_on_all_interfaces().await?;
    s3.create_bucket("contexts").await?;
    let listener = tokio::net::TcpListener::bind((node_info.host_ip.as_str(), 0)).await?;
    let fake = Arc::new(FakeWandb::serve_on(listener, FakeConfig::default()).await?);

    let mut queue = NewQueue::new(FAKE_ENTITY, "builds");
    queue.config = json!({"resource_args": {"kubernetes": {
        "metadata": {"namespace": ns.name},
        "spec": {"template": {"spec": {
            "nodeSelector": node::node_selector(),
            "tolerations": [node::toleration()],
            "containers": [{"name": "main", "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}}],
        }}},
    }}});
    fake.create_queue(queue).unwrap();
    let dockerfile = format!("FROM {host}/base:1\nCOPY trainer.sh /bin/trainer\n");
    fake.add_artifact(artifact(
        "code-real",
        &[
            ("Dockerfile", dockerfile),
            ("trainer.sh", images::TRAINER_SCRIPT.to_owned()),
        ],
    ));
    let job = json!({"source_type": "artifact", "source": {
        "artifact": format!("{FAKE_ENTITY}/jobs/code-real:latest"),
        "entrypoint": ["/bin/sh", "/bin/trainer"],
        "dockerfile": "Dockerfile",
    }});
    fake.add_artifact(artifact("job-real", &[("wandb-job.json", job.to_string())]));
    let item = fake
        .push_item(NewItem {
            entity: FAKE_ENTITY.to_owned(),
            project: "model-registry".to_owned(),
            queue: "builds".to_owned(),
            run_spec: json!({"entity": FAKE_ENTITY, "project": "jobs",
                "job": format!("{FAKE_ENTITY}/jobs/job-real:latest")}),
            priority: None,
        })
        .unwrap();

    let builder = json!({
        "type": "kaniko",
        "destination": format!("{host}/team/built"),
        "insecure-registry": true,
        "build-context-store": "s3://contexts/builds",
        "build-context-options": {
            "aws_endpoint": s3.endpoint(), "aws_allow_http": "true",
            "aws_access_key_id": "test", "aws_secret_access_key": "test",
            "aws_region": "us-east-1"
        },
        "kaniko-namespace": ns.name,
        "kaniko-image": format!("{host}/kaniko:1"),
        "kaniko-config": kaniko_template(&s3.endpoint_at(&node_info.host_ip)),
    });
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [builds]\nmax_jobs: 1\npoll_interval: 0.3\ntarget_namespaces: [{ns}]\nidentity: kaniko-real-{ns}\nbuilder: {builder}\n",
        ns = ns.name
    );
    let mut agent = AgentProcess::start(&fake, cluster.kubeconfig_path(), &config).await?;
    let finished = eventually("the built run to finish", WAIT, || async {
        anyhow::ensure!(!agent.has_exited(), "the agent exited early");
        if let Some(failure) = fake.item(&item).and_then(|i| i.failure) {
            anyhow::bail!("the item failed: {failure:#?}");
        }
        let log = agent.log_text();
        Ok(log
            .lines()
            .any(|l| l.contains("item finished") && l.contains(&item))
            .then_some(()))
    })
    .await;
    if let Err(error) = finished {
        panic!(
            "{error}\nagent log:\n{}\n{}",
            agent.log_text(),
            node_info.log_tails(30)
        );
    }
    let view = fake.item(&item).unwrap();
    assert!(view.failure.is_none(), "{view:#?}");
    let run_id = view.associated_run_id.unwrap();
    let inits = fake
        .journal_of("UpsertBucket")
        .into_iter()
        .filter_map(|e| e.variables)
        .filter(|v| v["name"] == run_id.as_str() && v["description"] == "trainer: init")
        .count();
    assert_eq!(
        inits, 1,
        "the built image ran the trainer, which called wandb.init"
    );
    let log = agent.log_text();
    let built = format!("{host}/team/built:");
    assert!(log.contains(&built), "the run used the built image:\n{log}");
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    ns.cleanup().await;
    Ok(())
}
