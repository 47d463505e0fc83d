//! `launch-agent check` and `launch-agent --help`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rlaunch_wandb_fake::{FAKE_API_KEY, FAKE_ENTITY, FakeWandb, NewQueue};
use tokio::process::Command;

async fn check(
    fake: &FakeWandb,
    kubeconfig: &std::path::Path,
    config: &str,
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
