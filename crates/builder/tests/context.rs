//! Build contexts: code from an artifact or a git checkout with `diff.patch`, the job's or
//! a generated Dockerfile, and a tag that is the same for the same job on any agent.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use futures::future::BoxFuture;
use rlaunch_builder::{
    BuildRequest, CodeFetcher, ContextStore, JobDetails, JobSource, KanikoBuilder, KanikoConfig,
    KanikoSettings, RegistryAuth, RegistryClient,
};

/// Stands in for the agent's W&B artifact download: writes fixed files.
struct Files(Vec<(&'static str, &'static str)>);

impl CodeFetcher for Files {
    fn fetch_artifact<'a>(
        &'a self,
        artifact: &'a str,
        dest: &'a Path,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if artifact.contains("missing") {
                return Err("artifact not found".to_owned());
            }
            for (path, text) in &self.0 {
                let path = dest.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Ok(())
        })
    }
}

fn code() -> Arc<Files> {
    Arc::new(Files(vec![
        ("train.py", "print('train')\n"),
        ("requirements.txt", "numpy==2.1\n"),
        ("docker/Dockerfile.train", "FROM python:3.11\nCOPY . /app\n"),
    ]))
}

fn artifact_request(dockerfile: Option<&str>) -> BuildRequest {
    BuildRequest {
        run_id: "run1".into(),
        entity: "team".into(),
        project: "vision".into(),
        source: JobSource::Artifact {
            artifact: "team/vision/code-abc:v3".into(),
            base_image: None,
            dockerfile: dockerfile.map(str::to_owned),
        },
        base_image_override: None,
        overrides: Default::default(),
        details: JobDetails {
            entrypoint: Some(vec!["python".into(), "train.py".into()]),
            python_version: Some("3.11.9".into()),
            ..JobDetails::default()
        },
    }
}

/// A Kaniko builder whose settings differ in everything but the destination.
async fn builder(variant: u32, work_dir: &Path) -> KanikoBuilder {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let runner = rlaunch_k8s_runner::Runner::new(client, Default::default());
    let store = match variant {
        0 => ContextStore::pvc("ctx", work_dir),
        _ => ContextStore::object("s3://other-bucket/prefix", &BTreeMap::new()).unwrap(),
    };
    let config = KanikoConfig {
        destination: "registry.example/team/trainer".into(),
        store,
        job: KanikoSettings {
            namespace: format!("builds-{variant}"),
            job_name_prefix: format!("prefix-{variant}"),
            service_account: (variant == 1).then(|| "kaniko".to_owned()),
            ..KanikoSettings::default()
        },
        registry: RegistryClient::new(RegistryAuth::Anonymous, vec![]),
        agent_identity: Some(format!("agent-{variant}")),
        work_dir: work_dir.to_owned(),
        log_limit_bytes: 1024,
    };
    KanikoBuilder::new(config, runner, code())
}

#[tokio::test]
async fn the_same_job_gets_the_same_tag_from_differently_configured_builders() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let request = artifact_request(None);
    let (context_a, image_a) = builder(0, one.path()).await.plan(&request).await.unwrap();
    let (context_b, image_b) = builder(1, two.path()).await.plan(&request).await.unwrap();
    assert_eq!(image_a, image_b);
    assert_eq!(
        image_a,
        format!("registry.example/team/trainer:{}", context_a.tag)
    );
    assert_eq!(context_a.tag.len(), rlaunch_builder::TAG_LENGTH);
    assert_ne!(context_a.root(), context_b.root());

    let mut other = request.clone();
    other.details.python_version = Some("3.12".into());
    let (context_c, _) = builder(0, one.path()).await.plan(&other).await.unwrap();
    assert_ne!(
        context_a.tag, context_c.tag,
        "the Python version is part of the image"
    );
}

#[tokio::test]
async fn generated_dockerfiles_depend_on_the_job_only() {
    let dir = tempfile::tempdir().unwrap();
    let (context, _) = builder(0, dir.path())
        .await
        .plan(&artifact_request(None))
        .await
        .unwrap();
    assert!(context.root().join("src/train.py").is_file());
    assert!(context.root().join("Dockerfile.wandb").is_file());
    assert!(context.archive().is_file());
    insta::assert_snapshot!(context.dockerfile);
}

#[tokio::test]
async fn a_given_dockerfile_is_used_from_the_code_root() {
    let dir = tempfile::tempdir().unwrap();
    let b = builder(0, dir.path()).await;
    let (context, _) = b
        .plan(&artifact_request(Some("docker/Dockerfile.train")))
        .await
        .unwrap();
    assert_eq!(context.dockerfile, "FROM python:3.11\nCOPY . /app\n");
    assert!(context.root().join("train.py").is_file());

    let mut overridden = artifact_request(Some("docker/Dockerfile.train"));
    overridden.details.dockerfile_override = Some("../etc/passwd".into());
    let error = b.plan(&overridden).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Dockerfile does not exist at ../etc/passwd"),
        "{error}"
    );
    let error = b
        .plan(&artifact_request(Some("nope/Dockerfile")))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "dockerfile_missing");
}

#[tokio::test]
async fn a_missing_artifact_is_a_fetch_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut request = artifact_request(None);
    request.source = JobSource::Artifact {
        artifact: "team/vision/missing:v1".into(),
        base_image: None,
        dockerfile: None,
    };
    let error = builder(0, dir.path())
        .await
        .plan(&request)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("team/vision/missing:v1"),
        "{error}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn git_jobs_check_out_the_commit_and_apply_the_patch() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.path().join("train.py"), "print('v1')\n").unwrap();
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "v1"]);
    let commit = git(repo.path(), &["rev-parse", "HEAD"]);
    std::fs::write(repo.path().join("train.py"), "print('v2')\n").unwrap();
    git(repo.path(), &["commit", "--quiet", "-am", "v2"]);
    std::fs::write(repo.path().join("train.py"), "print('v1 patched')\n").unwrap();
    let patch = {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo.path())
            .args(["diff", "HEAD~1", "--", "train.py"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let request = BuildRequest {
        source: JobSource::Repo {
            remote: format!("file://{}", repo.path().display()),
            commit: commit.clone(),
            base_image: None,
            dockerfile: None,
        },
        details: JobDetails {
            diff_patch: Some(patch),
            ..JobDetails::default()
        },
        ..artifact_request(None)
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (context, image) = builder(0, one.path()).await.plan(&request).await.unwrap();
    let text = std::fs::read_to_string(context.root().join("src/train.py")).unwrap();
    assert_eq!(text, "print('v1 patched')\n");
    assert!(
        !context.root().join("src/.git").exists(),
        "no .git in the context"
    );
    let (_, again) = builder(1, two.path()).await.plan(&request).await.unwrap();
    assert_eq!(image, again, "two checkouts give the same tag");

    let mut bad = request.clone();
    bad.source = JobSource::Repo {
        remote: format!("file://{}", repo.path().display()),
        commit: "0000000000000000000000000000000000000000".into(),
        base_image: None,
        dockerfile: None,
    };
    bad.details.diff_patch = None;
    let error = builder(0, one.path()).await.plan(&bad).await.unwrap_err();
    assert_eq!(error.kind(), "git", "{error}");
}

/// W&B's third case: a `Dockerfile.wandb` next to the entrypoint file makes that
/// directory the context, and the entrypoint runs the file by its name from there.
#[tokio::test]
async fn a_dockerfile_wandb_next_to_the_entrypoint_makes_its_directory_the_context() {
    let files = Files(vec![
        ("README.md", "top\n"),
        ("jobs/train/train.py", "print('train')\n"),
        (
            "jobs/train/Dockerfile.wandb",
            "FROM python:3.11\nCOPY . /app\n",
        ),
    ]);
    let mut request = artifact_request(None);
    request.details.entrypoint = Some(vec!["python3".into(), "jobs/train/train.py".into()]);
    let work = tempfile::tempdir().unwrap();
    let context = rlaunch_builder::assemble(&request, &files, work.path())
        .await
        .unwrap();
    assert_eq!(
        context.entrypoint,
        Some(vec!["python3".to_owned(), "train.py".to_owned()])
    );
    assert_eq!(context.dockerfile, "FROM python:3.11\nCOPY . /app\n");
    assert!(context.root().join("train.py").is_file());
    assert!(
        !context.root().join("README.md").exists() && !context.root().join("src").exists(),
        "only the entrypoint's directory is the context"
    );

    // A Dockerfile the job names comes first; without a Dockerfile.wandb beside the
    // entrypoint the Dockerfile is generated and the entrypoint kept.
    let mut named = request.clone();
    named.details.dockerfile_override = Some("jobs/train/Dockerfile.wandb".into());
    let context = rlaunch_builder::assemble(&named, &files, work.path())
        .await
        .unwrap();
    assert_eq!(context.entrypoint, None);
    assert!(context.root().join("README.md").is_file());
    let elsewhere = Files(vec![
        ("jobs/train/train.py", "print('train')\n"),
        ("Dockerfile.wandb", "FROM scratch\n"),
    ]);
    let context = rlaunch_builder::assemble(&request, &elsewhere, work.path())
        .await
        .unwrap();
    assert_eq!(context.entrypoint, None);
    assert!(context.root().join("src/jobs/train/train.py").is_file());
    assert!(
        context.dockerfile.contains("python"),
        "{}",
        context.dockerfile
    );
}
