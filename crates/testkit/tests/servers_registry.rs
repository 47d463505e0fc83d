//! The test OCI registry: built (or cached), started, and holding what `crane` pushed, as
//! the distribution API answers it.

use rlaunch_testkit::servers::{ImageFile, Registry, TestImage};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

#[tokio::test]
async fn a_pushed_image_has_a_manifest_and_an_unpushed_tag_has_none() -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let image = TestImage::new("team/hello", "v1")
        .with_file(ImageFile::executable("bin/hello", "#!/bin/sh\necho hi\n"))
        .with_entrypoint(["/bin/hello"]);
    let pushed = registry.push_image(&image).await?;
    assert_eq!(
        pushed.reference,
        format!("{}/team/hello:v1", registry.host())
    );
    assert!(pushed.digest.starts_with("sha256:"), "{pushed:?}");

    let http = reqwest::Client::new();
    let head = |tag: &str| {
        http.head(format!("{}/v2/team/hello/manifests/{tag}", registry.url()))
            .header("Accept", MANIFEST_TYPES)
            .send()
    };
    let found = head("v1").await?;
    assert_eq!(found.status(), 200);
    assert_eq!(
        found
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(pushed.digest.as_str())
    );
    assert_eq!(head("v2").await?.status(), 404);

    let config = registry
        .crane_run(&["config".as_ref(), pushed.reference.as_ref()])
        .await?;
    let config: serde_json::Value = serde_json::from_str(&config)?;
    assert_eq!(config["architecture"], "amd64", "{config}");
    assert_eq!(config["config"]["Entrypoint"][0], "/bin/hello", "{config}");
    Ok(())
}
