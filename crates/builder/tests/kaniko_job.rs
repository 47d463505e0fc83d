//! Snapshots of the Kaniko build Job for every context store and credential variant.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use rlaunch_builder::{
    JobContext, JobInput, KanikoSettings, PushCredentials, render_job as render,
};

const IMAGE: &str = "registry.example/team/trainer:0123456789abcdef";
const REPOSITORY: &str = "registry.example/team/trainer";

fn settings() -> KanikoSettings {
    KanikoSettings {
        namespace: "ml-builds".to_owned(),
        service_account: Some("kaniko".to_owned()),
        ..KanikoSettings::default()
    }
}

fn job_yaml(settings: &KanikoSettings, context: &JobContext, repository: &str) -> String {
    let image = format!("{repository}:0123456789abcdef");
    let job = render(&JobInput {
        settings,
        run_id: "abc123",
        agent_identity: Some("prod-agent"),
        context,
        image: &image,
        repository,
    })
    .unwrap();
    serde_yaml_ng::to_string(&job).unwrap()
}

#[test]
fn s3_context_with_region() {
    let settings = KanikoSettings {
        env: BTreeMap::from([("AWS_REGION".to_owned(), "eu-west-1".to_owned())]),
        ..settings()
    };
    let context = JobContext::Remote("s3://ctx-bucket/builds/abc123-0123456789abcdef.tgz".into());
    insta::assert_snapshot!(job_yaml(&settings, &context, REPOSITORY));
}

#[test]
fn gcs_context() {
    let context = JobContext::Remote("gs://ctx-bucket/abc123-0123456789abcdef.tgz".into());
    insta::assert_snapshot!(job_yaml(&settings(), &context, REPOSITORY));
}

#[test]
fn azure_context_with_storage_key_and_acr_workload_identity() {
    let settings = KanikoSettings {
        azure_storage_key_secret: Some("azure-storage-access-key".to_owned()),
        ..settings()
    };
    let context = JobContext::Remote(
        "https://acct.blob.core.windows.net/ctx/abc123-0123456789abcdef.tgz".into(),
    );
    insta::assert_snapshot!(job_yaml(&settings, &context, "team.azurecr.io/trainer"));
}

#[test]
fn pvc_context() {
    let context = JobContext::Pvc {
        claim: "kaniko-contexts".into(),
        uri: "tar:///context/abc123-0123456789abcdef.tgz".into(),
    };
    insta::assert_snapshot!(job_yaml(&settings(), &context, REPOSITORY));
}

#[test]
fn dockerconfig_secret_and_template() {
    let settings = KanikoSettings {
        credentials: PushCredentials::DockerConfigSecret("regcred".to_owned()),
        image: "cgr.dev/chainguard/kaniko:latest".to_owned(),
        template: Some(serde_json::json!({
            "metadata": {"labels": {"team": "vision"}},
            "spec": {"template": {"spec": {
                "nodeSelector": {"pool": "builds"},
                "containers": [{"args": ["--cache=false", "--push-retry=3"]}]
            }}}
        })),
        ..settings()
    };
    let context = JobContext::Remote("s3://ctx-bucket/abc123-0123456789abcdef.tgz".into());
    let yaml = job_yaml(&settings, &context, REPOSITORY);
    assert!(yaml.contains("cgr.dev/chainguard/kaniko:latest"), "{yaml}");
    insta::assert_snapshot!(yaml);
}

#[test]
fn the_image_reference_loses_its_scheme_in_the_args() {
    let context = JobContext::Remote("gs://b/x.tgz".into());
    let yaml = job_yaml(
        &settings(),
        &context,
        "https://registry.example/team/trainer",
    );
    assert!(
        yaml.contains("--destination=registry.example/team/trainer:0123456789abcdef"),
        "{yaml}"
    );
    assert!(!yaml.contains("--destination=https://"), "{yaml}");
    let _ = IMAGE;
}
