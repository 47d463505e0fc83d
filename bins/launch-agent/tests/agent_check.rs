//! `launch-agent check` and `launch-agent --help`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::Kubeconfig;
use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, NewQueue};
use tokio::process::Command;

/// The testkit kubeconfig, impersonating `user` (the admin may impersonate anyone).
fn impersonating(admin: &std::path::Path, user: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let mut kubeconfig = Kubeconfig::read_from(admin).unwrap();
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(user.to_owned());
        }
    }
    let path = dir.join("impersonating.kubeconfig");
    // JSON is YAML: every kubeconfig reader accepts it.
    std::fs::write(&path, serde_json::to_string(&kubeconfig).unwrap()).unwrap();
    path
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: strings(verbs).unwrap_or_default(),
        ..PolicyRule::default()
    }
}

/// A Role with what the agent needs in `namespace`, Jobs limited to `job_verbs` and no
/// Lease, bound to `user` (the Role is named after the user).
async fn agent_role(
    client: &kube::Client,
    namespace: &str,
    user: &str,
    job_verbs: &[&str],
) -> anyhow::Result<()> {
    let meta = || ObjectMeta {
        name: Some(user.to_owned()),
        namespace: Some(namespace.to_owned()),
        ..ObjectMeta::default()
    };
    let workload = ["create", "get", "list", "watch", "delete"];
    let mut rules = vec![
        rule(&["batch"], &["jobs"], job_verbs),
        rule(&[""], &["pods", "events"], &["list", "watch"]),
        rule(&[""], &["pods/log"], &["get"]),
        rule(&[""], &["secrets"], &["create", "get", "update", "delete"]),
        rule(&[""], &["configmaps"], &["create", "list", "delete"]),
    ];
    for (group, _kind, plural) in rlaunch_model::crd::KNOWN_PLURALS {
        rules.push(rule(&[group], &[plural], &workload));
    }
    let role = Role {
        metadata: meta(),
        rules: Some(rules),
    };
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await?;
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: user.to_owned(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "User".to_owned(),
            name: user.to_owned(),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await?;
    Ok(())
}

async fn check(
    fake: &FakeWandb,
    kubeconfig: &std::path::Path,
    config: &str,
) -> anyhow::Result<(bool, String)> {
    check_with_env(fake, kubeconfig, config, &[]).await
}

/// [`check`] with extra environment variables.
async fn check_with_env(
    fake: &FakeWandb,
    kubeconfig: &std::path::Path,
    config: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(bool, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("launch-config.yaml");
    std::fs::write(&path, config)?;
    let output = Command::new(env!("CARGO_BIN_EXE_launch-agent"))
        .args(["check", "--config"])
        .arg(&path)
        .env_clear()
        .env("HOME", dir.path())
        .env("WANDB_API_KEY", FAKE_API_KEY)
        .env("WANDB_BASE_URL", &fake.base_url)
        .env("KUBECONFIG", kubeconfig)
        .envs(env.iter().copied())
        .output()
        .await?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((
        output.status.success(),
        text.replace(&path.display().to_string(), "CONFIG"),
    ))
}

/// W&B's `registry: {type: ecr, uri}` block: check asks ECR (moto) for the token the runs'
/// pull Secrets need, and names the call when ECR cannot be reached, without the AWS keys.
#[tokio::test]
async fn check_asks_ecr_for_the_registry_blocks_token() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let fake = FakeWandb::start().await?;
    fake.create_queue(NewQueue::new(FAKE_ENTITY, "gpu"))
        .unwrap();
    let moto = rlaunch_testkit::servers::S3Server::start().await?;
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [gpu]\nregistry: {{type: ecr, uri: {host}/team}}\n"
    );
    let nowhere = format!(
        "http://127.0.0.1:{}",
        rlaunch_testkit::servers::free_port()?
    );
    let mut texts = Vec::new();
    for endpoint in [moto.endpoint(), nowhere] {
        let env = [
            ("AWS_ENDPOINT_URL_ECR", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "check-s3cret"),
        ];
        texts.push(check_with_env(&fake, cluster.kubeconfig_path(), &config, &env).await?);
    }
    let [(ok, good), (bad_ok, bad)] = texts.as_slice() else {
        unreachable!()
    };
    assert!(*ok, "{good}");
    let expected = format!("ok    registry: ECR gives a token for {host}");
    assert!(good.contains(&expected), "{good}");
    assert!(!bad_ok, "{bad}");
    assert!(
        bad.contains("FAIL  registry:") && bad.contains("GetAuthorizationToken"),
        "{bad}"
    );
    assert!(!good.contains("check-s3cret") && !bad.contains("check-s3cret"));
    Ok(())
}

#[tokio::test]
async fn check_passes_on_a_good_config_and_names_what_is_broken() -> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let fake = FakeWandb::start().await?;
    fake.create_queue(NewQueue::new(FAKE_ENTITY, "gpu"))
        .unwrap();
    let kubeconfig = cluster.kubeconfig_path();

    let (ok, text) = check(
        &fake,
        kubeconfig,
        &format!("entity: {FAKE_ENTITY}\nqueues: [gpu]\n"),
    )
    .await?;
    assert!(ok, "{text}");
    assert!(
        text.contains("ok    credentials: API key accepted"),
        "{text}"
    );
    assert!(
        text.contains("ok    queue gpu: exists in fake-entity/model-registry"),
        "{text}"
    );
    assert!(text.contains("ok    cluster: reachable"), "{text}");

    let (ok, text) = check(
        &fake,
        kubeconfig,
        &format!("entity: {FAKE_ENTITY}\nqueues: [gpu, nope]\n"),
    )
    .await?;
    assert!(!ok, "{text}");
    assert!(
        text.contains("FAIL  queue nope: not found in fake-entity/model-registry"),
        "{text}"
    );

    let (ok, text) = check(&fake, kubeconfig, "queues: [gpu]\nmax_job: 2\n").await?;
    assert!(!ok);
    assert_eq!(
        text.trim(),
        "error: CONFIG: unknown key `max_job` (did you mean `max_jobs`?)"
    );
    Ok(())
}

#[tokio::test]
async fn check_asks_the_api_server_for_every_rbac_rule_and_names_a_denied_verb()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-rbac").await?;
    let fake = FakeWandb::start().await?;
    fake.create_queue(NewQueue::new(FAKE_ENTITY, "gpu"))
        .unwrap();
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [gpu]\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nprecheck: false\n",
        ns.name
    );

    let (ok, text) = check(&fake, cluster.kubeconfig_path(), &config).await?;
    assert!(ok, "{text}");
    assert!(
        text.contains("ok    rbac: all ") && text.contains(&format!("are allowed in {}", ns.name)),
        "{text}"
    );

    let user = "agent-without-delete";
    agent_role(&client, &ns.name, user, &["create", "get", "list", "watch"]).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = impersonating(cluster.kubeconfig_path(), user, dir.path());
    let (ok, text) = check(&fake, &kubeconfig, &config).await?;
    assert!(!ok, "a denied verb fails the check:\n{text}");
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FAIL  rbac "))
        .collect();
    assert_eq!(denied.len(), 1, "only the missing verb is named:\n{text}");
    assert!(
        denied[0].starts_with(&format!(
            "FAIL  rbac jobs.batch delete in namespace {}: denied",
            ns.name
        )),
        "{text}"
    );
    assert!(denied[0].contains("cancel"), "says why: {text}");
    assert!(
        denied[0].contains("Helm chart's Role"),
        "says the fix: {text}"
    );
    assert!(text.contains("ok    cluster: reachable"), "{text}");
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn with_leader_election_check_asks_for_the_lease_and_names_what_is_missing()
-> anyhow::Result<()> {
    let cluster = rlaunch_testkit::cluster().await?;
    let client = cluster.client().await?;
    let ns = cluster.namespace("agent-lease-rbac").await?;
    let fake = FakeWandb::start().await?;
    fake.create_queue(NewQueue::new(FAKE_ENTITY, "gpu"))
        .unwrap();
    let config = format!(
        "entity: {FAKE_ENTITY}\nqueues: [gpu]\ntarget_namespaces: [{0}]\ndefault_namespace: {0}\nprecheck: false\nleader_election: true\nlease_name: the-lease\nlease_namespace: {0}\n",
        ns.name
    );
    let (ok, text) = check(&fake, cluster.kubeconfig_path(), &config).await?;
    assert!(ok, "{text}");
    assert!(text.contains("ok    rbac: all "), "{text}");

    let user = "agent-without-lease";
    let all_job_verbs = ["create", "get", "list", "watch", "delete"];
    agent_role(&client, &ns.name, user, &all_job_verbs).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = impersonating(cluster.kubeconfig_path(), user, dir.path());
    let (ok, text) = check(&fake, &kubeconfig, &config).await?;
    assert!(!ok, "a missing Lease permission fails the check:\n{text}");
    let denied: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("FAIL  rbac "))
        .collect();
    let lease = |verb: &str, object: &str| {
        format!(
            "FAIL  rbac leases.coordination.k8s.io {verb}{object} in namespace {}: denied",
            ns.name
        )
    };
    let expected = [
        lease("create", ""),
        lease("get", " of the-lease"),
        lease("patch", " of the-lease"),
    ];
    assert_eq!(
        denied.len(),
        expected.len(),
        "only the Lease is named:\n{text}"
    );
    for (line, prefix) in denied.iter().zip(&expected) {
        assert!(line.starts_with(prefix.as_str()), "{prefix}\n{text}");
        assert!(line.contains("leader-election Lease"), "says why: {text}");
    }
    ns.cleanup().await;
    Ok(())
}

#[tokio::test]
async fn help_documents_every_flag() -> anyhow::Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_launch-agent"))
        .arg("--help")
        .output()
        .await?;
    let help = String::from_utf8(output.stdout)?;
    assert!(output.status.success());
    for flag in [
        "--queue",
        "--entity",
        "--max-jobs",
        "--config",
        "--verbose",
        "--poll-interval",
        "--health-addr",
        "--metrics-addr",
        "--target-namespace",
        "--allow-macro",
        "--allow-field",
        "--start-timeout",
        "--init-check-timeout",
        "--stopped-run-timeout",
        "--identity",
        "--log-format",
        "check",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    Ok(())
}
