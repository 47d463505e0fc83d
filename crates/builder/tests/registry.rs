//! The existence check against a real OCI registry (go-containerregistry's `registry`,
//! from testkit) holding an image pushed by `crane`: anonymous, with the credentials of a
//! dockerconfigjson file, and with an ECR token from moto's server (also as the pull
//! credentials of runs whose image is in that ECR registry).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use rlaunch_builder::{Builder, EcrAuth, EcrPullSecret, NoopBuilder, RegistryAuth, RegistryClient};
use rlaunch_testkit::servers::{ImageFile, Registry, S3Server, TestImage};

/// `object_store` AWS options for moto: key id `test` and `secret`.
fn aws_keys(secret: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aws_access_key_id".to_owned(), "test".to_owned()),
        ("aws_secret_access_key".to_owned(), secret.to_owned()),
    ])
}

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

/// ECR's token flow against moto's server (which serves `GetAuthorizationToken`; it does
/// not check SigV4 signatures, which `object_store`'s signer owns), then the existence
/// check with the token as Basic auth against the real registry.
#[tokio::test]
async fn an_ecr_token_from_the_ambient_identity_is_the_checks_basic_auth() -> anyhow::Result<()> {
    let (registry, moto) = (Registry::start().await?, S3Server::start().await?);
    let pushed = registry
        .push_image(
            &TestImage::new("team/ecr", "0123456789abcdef").with_file(ImageFile::new("e.txt", "e")),
        )
        .await?;
    let identity = aws_keys("test");
    let ecr = EcrAuth::new("us-east-1", Some(&moto.endpoint()), &identity)?;
    let (username, password) = ecr
        .basic(&reqwest::Client::new())
        .await
        .map_err(anyhow::Error::msg)?;
    assert_eq!(username, "AWS");
    assert!(!password.is_empty());
    let client = RegistryClient::new(RegistryAuth::Ecr(ecr), vec![registry.host()]);
    assert!(
        client.exists(&pushed.reference).await?,
        "{}",
        pushed.reference
    );
    let other = format!("{}/team/ecr:fedcba9876543210", registry.host());
    assert!(!client.exists(&other).await?, "{other}");

    let nowhere = format!(
        "http://127.0.0.1:{}",
        rlaunch_testkit::servers::free_port()?
    );
    let unreachable = EcrAuth::new("us-east-1", Some(&nowhere), &identity)?;
    let client = RegistryClient::new(RegistryAuth::Ecr(unreachable), vec![registry.host()]);
    let error = client
        .exists(&pushed.reference)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("GetAuthorizationToken") && error.contains(&pushed.reference),
        "{error}"
    );
    assert!(
        !error.contains("test@") && !error.contains(&password),
        "{error}"
    );
    Ok(())
}

/// One token serves many calls: once moto (ECR) is gone, a clone of the auth that fetched a
/// token still answers it, while a new auth at the same endpoint cannot get one.
#[tokio::test]
async fn an_ecr_token_is_reused_by_every_clone_of_the_auth() -> anyhow::Result<()> {
    let moto = S3Server::start().await?;
    let endpoint = moto.endpoint();
    let identity = aws_keys("test");
    let http = reqwest::Client::new();
    let ecr = EcrAuth::new("us-east-1", Some(&endpoint), &identity)?;
    let first = ecr.basic(&http).await.map_err(anyhow::Error::msg)?;
    let clone = ecr.clone();
    drop(moto);
    let again = clone.basic(&http).await.map_err(anyhow::Error::msg)?;
    assert_eq!(again, first);
    let fresh = EcrAuth::new("us-east-1", Some(&endpoint), &identity)?;
    let error = fresh.basic(&http).await.unwrap_err();
    assert!(error.contains("GetAuthorizationToken"), "{error}");
    Ok(())
}

/// W&B's `registry: {type: ecr}`: a run whose image is in that ECR registry gets the `AWS`
/// user and a token from moto's `GetAuthorizationToken` as its pull credentials; an image
/// elsewhere gets none; an ECR that cannot be reached is an error naming the image and the
/// call, without the AWS keys.
#[tokio::test]
async fn runs_pulling_from_the_ecr_registry_get_its_token_and_others_nothing() -> anyhow::Result<()>
{
    let moto = S3Server::start().await?;
    let identity = aws_keys("s3cret-key");
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let ecr = EcrAuth::new("us-east-1", Some(&moto.endpoint()), &identity)?;
    let builder = EcrPullSecret::new(Arc::new(NoopBuilder), host, ecr);
    assert_eq!(builder.kind(), "noop");
    let image = format!("{host}/team/trainer:3f2a");
    let credentials = builder
        .pull_credentials(&image)
        .await?
        .expect("credentials");
    assert_eq!(
        (credentials.registry.as_str(), credentials.username.as_str()),
        (host, "AWS")
    );
    assert!(!credentials.password.is_empty());
    for elsewhere in [
        "ghcr.io/team/trainer:1",
        "trainer:1",
        "999999999999.dkr.ecr.us-east-1.amazonaws.com/t:1",
    ] {
        assert!(
            builder.pull_credentials(elsewhere).await?.is_none(),
            "{elsewhere}"
        );
    }

    let nowhere = format!(
        "http://127.0.0.1:{}",
        rlaunch_testkit::servers::free_port()?
    );
    let unreachable = EcrAuth::new("us-east-1", Some(&nowhere), &identity)?;
    let builder = EcrPullSecret::new(Arc::new(NoopBuilder), host, unreachable);
    let error = builder
        .pull_credentials(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("GetAuthorizationToken") && error.contains(&image),
        "{error}"
    );
    assert!(!error.contains("s3cret-key"), "{error}");
    Ok(())
}

/// The credentials of a dockerconfigjson file (a mounted `kubernetes.io/dockerconfigjson`
/// Secret) for the destination's host, used by the check against the real registry.
#[tokio::test]
async fn a_docker_config_file_gives_the_destinations_credentials() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let pushed = registry
        .push_image(
            &TestImage::new("team/private", "0123456789abcdef")
                .with_file(ImageFile::new("p.txt", "p")),
        )
        .await?;
    let host = registry.host();
    let config = format!(
        r#"{{"auths": {{"ghcr.io": {{"auth": "b3RoZXI6eA=="}}, "http://{host}/v2/": {{"auth": "cm9ib3Q6aHVudGVyMg=="}}}}}}"#
    );
    let auth = RegistryAuth::from_docker_config(&config, &host)
        .map_err(anyhow::Error::msg)?
        .expect("an entry for the registry");
    let text = format!("{auth:?}");
    assert!(
        text.contains("robot") && !text.contains("hunter2"),
        "{text}"
    );
    let client = RegistryClient::new(auth, vec![host.clone()]);
    assert!(client.exists(&pushed.reference).await?);
    assert!(
        RegistryAuth::from_docker_config(&config, "quay.io")
            .map_err(anyhow::Error::msg)?
            .is_none()
    );
    let split = r#"{"auths": {"quay.io": {"username": "u", "password": "p"}}}"#;
    assert!(matches!(
        RegistryAuth::from_docker_config(split, "quay.io"),
        Ok(Some(RegistryAuth::Basic { .. }))
    ));
    let bad = r#"{"auths": {"quay.io": {"auth": "not base64!"}}}"#;
    let error = RegistryAuth::from_docker_config(bad, "quay.io").unwrap_err();
    assert!(
        error.contains("quay.io") && error.contains("base64"),
        "{error}"
    );
    Ok(())
}
