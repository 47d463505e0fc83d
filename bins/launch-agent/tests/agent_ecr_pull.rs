//! W&B's deprecated `registry: {type: ecr, uri}` block through the real agent binary: a run
//! whose image is in that ECR registry gets a `regcred-<run id>` Secret holding an ECR token
//! (from moto's `GetAuthorizationToken`, through the ambient AWS identity of the agent's
//! environment), its Job pulls with it, and the Secret is gone after the report; a run whose
//! image is elsewhere gets no Secret.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::{AgentProcess, eventually, queue, simulate_wandb_init};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use rlaunch_testkit::annotations::{self, outcome};
use rlaunch_testkit::servers::S3Server;
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, ItemState, NewItem};
use serde_json::json;

const ECR_HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

fn item(image: &str) -> NewItem {
    NewItem {
        entity: FAKE_ENTITY.to_owned(),
        project: "model-registry".to_owned(),
        queue: "ecr".to_owned(),
        run_spec: json!({"entity": FAKE_ENTITY, "project": "pulls",
            "docker": {"docker_image": image}}),
        priority: None,
    }
}

/// The pull Secrets named by `job`'s pod template.
fn pull_secrets(job: &Job) -> Vec<String> {
    let spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    spec.and_then(|s| s.image_pull_secrets.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

/// The `user:password` of `secret`'s one `auths` entry for the ECR host.
fn ecr_auth(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?.get(".dockerconfigjson")?;
    let config: serde_json::Value = serde_json::from_slice(&data.0).ok()?;
    let auth = config["auths"][ECR_HOST]["auth"].as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .ok()?;
    String::from_utf8(decoded).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_from_the_ecr_registry_pulls_with_a_token_secret_removed_after_the_report()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-ecr-pull").await?;
    let moto = S3Server::start().await?;
    let fake = Arc::new(FakeWandb::start().await?);
    fake.create_queue(queue(
        "ecr",
        &ns.name,
        json!({annotations::OUTCOME: outcome::SUCCEED, annotations::RUN_SECONDS: "4"}),
    ))
    .unwrap();
    let from_ecr = fake.push_item(item(&format!("{ECR_HOST}/team/trainer:1")))?;
    let elsewhere = fake.push_item(item("registry.example/team/trainer:1"))?;
    let _sdk = simulate_wandb_init(fake.clone());
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [ecr]\nmax_jobs: 2\npoll_interval: 0.3\ntarget_namespaces: [{}]\nidentity: ecr-{}\nregistry: {{type: ecr, uri: {ECR_HOST}/team}}\n",
        ns.name, ns.name
    );
    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL_ECR", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "agent-s3cret"),
    ];
    let mut agent = AgentProcess::start_with_env(
        &fake,
        cluster.kubeconfig_path(),
        &config,
        FAKE_API_KEY,
        &env,
    )
    .await?;

    // Both Jobs exist; the ECR run's pulls with its Secret, which holds an ECR token.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns.name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let seen = eventually("both Jobs", Duration::from_secs(120), || async {
        let list = jobs.list(&ListParams::default()).await?.items;
        Ok((list.len() == 2).then_some(list))
    })
    .await;
    let seen = seen.unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", fake.items(), agent.log_text()));
    let image = |job: &Job| {
        let spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        spec.and_then(|s| s.containers.first()?.image.clone())
            .unwrap_or_default()
    };
    let (ecr_job, other_job): (Vec<&Job>, Vec<&Job>) = seen
        .iter()
        .partition(|job| image(job).starts_with(ECR_HOST));
    let ecr_secrets = pull_secrets(ecr_job[0]);
    assert!(
        pull_secrets(other_job[0]).is_empty(),
        "{:#?}",
        other_job[0].spec
    );
    let [secret_name] = ecr_secrets.as_slice() else {
        panic!("one pull Secret: {ecr_secrets:?}");
    };
    assert!(secret_name.starts_with("regcred-"), "{secret_name}");
    let secret = secrets.get(secret_name).await?;
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let auth = ecr_auth(&secret).unwrap_or_default();
    assert!(auth.starts_with("AWS:") && auth.len() > 4, "{auth}");

    // Both finish; the Secret is deleted after the report; no key in the log.
    let done = eventually(
        "both reported, the Secret gone",
        Duration::from_secs(120),
        || async {
            let finished = agent.log_text().matches("item finished").count();
            let gone = secrets.get_opt(secret_name).await?.is_none();
            Ok((finished >= 2 && gone).then_some(()))
        },
    )
    .await;
    if let Err(error) = done {
        panic!("{error}\n{:#?}\n{}", fake.items(), agent.log_text());
    }
    for id in [&from_ecr, &elsewhere] {
        let item = fake.item(id).unwrap();
        assert!(item.failure.is_none(), "{item:#?}");
        assert_eq!(item.state, ItemState::Claimed, "{item:#?}");
    }
    let log = agent.log_text();
    assert!(
        !log.contains("agent-s3cret") && !log.contains(&auth),
        "{log}"
    );
    agent.signal("TERM")?;
    assert!(agent.child.wait().await?.success());
    Ok(())
}
