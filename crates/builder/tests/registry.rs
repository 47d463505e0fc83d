//! The existence check against a real OCI registry (go-containerregistry's `registry`,
//! from testkit) holding an image pushed by `crane`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rlaunch_builder::{RegistryAuth, RegistryClient};
use rlaunch_testkit::servers::{ImageFile, Registry, TestImage};

#[tokio::test]
async fn a_pushed_tag_exists_and_others_do_not() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let pushed = registry
        .push_image(
            &TestImage::new("team/trainer", "0123456789abcdef")
                .with_file(ImageFile::new("a.txt", "a")),
        )
        .await?;
    for auth in [
        RegistryAuth::Anonymous,
        RegistryAuth::Basic {
            username: "robot".into(),
            password: "token".into(),
        },
    ] {
        let client = RegistryClient::new(auth, vec![registry.host()]);
        assert!(
            client.exists(&pushed.reference).await?,
            "{}",
            pushed.reference
        );
        let other = format!("{}/team/trainer:fedcba9876543210", registry.host());
        assert!(!client.exists(&other).await?, "{other}");
        let repo = format!("{}/team/never-pushed:0123456789abcdef", registry.host());
        assert!(!client.exists(&repo).await?, "{repo}");
    }
    Ok(())
}

#[tokio::test]
async fn an_unreachable_registry_is_an_error_naming_the_image() -> anyhow::Result<()> {
    let port = rlaunch_testkit::servers::free_port()?;
    let host = format!("127.0.0.1:{port}");
    let client = RegistryClient::new(RegistryAuth::Anonymous, vec![host.clone()]);
    let image = format!("{host}/team/x:1");
    let error = client.exists(&image).await.unwrap_err();
    assert!(error.to_string().contains(&image), "{error}");
    Ok(())
}
