//! Where build contexts go: S3, GCS or Azure Blob through `object_store`, or a PVC the agent
//! and the Kaniko pod both mount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use tokio::io::AsyncWriteExt as _;

use crate::{Error, Result};

/// Where the Kaniko pod mounts the PVC (W&B's path; `--context=tar:///context/<id>.tgz`).
pub const PVC_CONTEXT_MOUNT: &str = "/context";

/// The `build-context-store` URI, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUri {
    /// `s3://bucket[/prefix]`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix, without leading or trailing `/`.
        prefix: String,
    },
    /// `gs://bucket[/prefix]`.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Object prefix.
        prefix: String,
    },
    /// `https://<account>.blob.core.windows.net/<container>[/prefix]`.
    Azure {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// Blob prefix.
        prefix: String,
    },
}

impl StoreUri {
    /// Parses the three accepted forms; anything else is [`Error::StoreConfig`].
    pub fn parse(uri: &str) -> Result<StoreUri> {
        let invalid = |problem: &str| Error::StoreConfig {
            store: uri.to_owned(),
            problem: problem.to_owned(),
        };
        let split = |rest: &str| -> (String, String) {
            let (head, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            (head.to_owned(), prefix.trim_matches('/').to_owned())
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = split(rest);
            return valid_bucket(&bucket)
                .then_some(StoreUri::S3 { bucket, prefix })
                .ok_or_else(|| invalid("the bucket name is empty or invalid"));
        }
        if let Some(rest) = uri.strip_prefix("gs://") {
            let (bucket, prefix) = split(rest);
            return valid_bucket(&bucket)
                .then_some(StoreUri::Gcs { bucket, prefix })
                .ok_or_else(|| invalid("the bucket name is empty or invalid"));
        }
        if let Some(rest) = uri.strip_prefix("https://") {
            let (host, path) = split(rest);
            let account = host
                .strip_suffix(".blob.core.windows.net")
                .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric()));
            let (container, prefix) = split(&path);
            if let Some(account) = account.filter(|_| valid_bucket(&container)) {
                return Ok(StoreUri::Azure {
                    account: account.to_owned(),
                    container,
                    prefix,
                });
            }
        }
        Err(invalid(
            "must be s3://bucket[/prefix], gs://bucket[/prefix] or https://<account>.blob.core.windows.net/<container>[/prefix]",
        ))
    }

    /// The bucket (or `account/container`), for messages.
    pub fn bucket(&self) -> String {
        match self {
            StoreUri::S3 { bucket, .. } | StoreUri::Gcs { bucket, .. } => bucket.clone(),
            StoreUri::Azure {
                account, container, ..
            } => format!("{account}/{container}"),
        }
    }

    fn prefix(&self) -> &str {
        match self {
            StoreUri::S3 { prefix, .. }
            | StoreUri::Gcs { prefix, .. }
            | StoreUri::Azure { prefix, .. } => prefix,
        }
    }

    /// The object key of context `id`.
    pub fn key(&self, id: &str) -> String {
        match self.prefix() {
            "" => format!("{id}.tgz"),
            prefix => format!("{prefix}/{id}.tgz"),
        }
    }

    /// The URI Kaniko's `--context` reads context `id` from.
    pub fn context_uri(&self, id: &str) -> String {
        let key = self.key(id);
        match self {
            StoreUri::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            StoreUri::Gcs { bucket, .. } => format!("gs://{bucket}/{key}"),
            StoreUri::Azure {
                account, container, ..
            } => format!("https://{account}.blob.core.windows.net/{container}/{key}"),
        }
    }

    fn root_url(&self) -> String {
        match self {
            StoreUri::S3 { bucket, .. } => format!("s3://{bucket}"),
            StoreUri::Gcs { bucket, .. } => format!("gs://{bucket}"),
            StoreUri::Azure {
                account, container, ..
            } => format!("https://{account}.blob.core.windows.net/{container}"),
        }
    }
}

fn valid_bucket(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
}

/// A connected context store.
#[derive(Clone)]
pub enum ContextStore {
    /// An object store bucket.
    Object {
        /// Where.
        uri: StoreUri,
        /// The client.
        store: Arc<dyn ObjectStore>,
    },
    /// A PVC mounted into the agent at `mount_path` and into the Kaniko pod at
    /// [`PVC_CONTEXT_MOUNT`].
    Pvc {
        /// The claim name.
        claim: String,
        /// Where the agent sees it.
        mount_path: PathBuf,
    },
}

impl std::fmt::Debug for ContextStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContextStore::Object { uri, .. } => f.debug_tuple("Object").field(uri).finish(),
            ContextStore::Pvc { claim, mount_path } => f
                .debug_struct("Pvc")
                .field("claim", claim)
                .field("mount_path", mount_path)
                .finish(),
        }
    }
}

impl ContextStore {
    /// An object store client for `uri`. Credentials come from the environment (the cloud's
    /// ambient identity: `AWS_*`, `GOOGLE_*`, `AZURE_*`, workload identity), then `options`
    /// (`object_store` configuration keys such as `aws_endpoint`, `aws_region`,
    /// `allow_http`, `azure_storage_use_emulator`) win. A bad key is [`Error::StoreConfig`].
    pub fn object(uri: &str, options: &BTreeMap<String, String>) -> Result<ContextStore> {
        let parsed = StoreUri::parse(uri)?;
        let bad = |problem: String| Error::StoreConfig {
            store: uri.to_owned(),
            problem,
        };
        let key_error = |key: &str, e: object_store::Error| bad(format!("option `{key}`: {e}"));
        let root = parsed.root_url();
        let store: Arc<dyn ObjectStore> = match &parsed {
            StoreUri::S3 { .. } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(root);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| key_error(k, e))?, v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            StoreUri::Gcs { .. } => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(root);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| key_error(k, e))?, v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
            StoreUri::Azure { .. } => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(root);
                for (k, v) in options {
                    b = b.with_config(k.parse().map_err(|e| key_error(k, e))?, v);
                }
                Arc::new(b.build().map_err(|e| bad(e.to_string()))?)
            }
        };
        Ok(ContextStore::Object { uri: parsed, store })
    }

    /// A PVC store.
    pub fn pvc(claim: impl Into<String>, mount_path: impl Into<PathBuf>) -> ContextStore {
        ContextStore::Pvc {
            claim: claim.into(),
            mount_path: mount_path.into(),
        }
    }

    /// What a message calls this store.
    pub fn describe(&self) -> String {
        match self {
            ContextStore::Object { uri, .. } => format!("bucket {}", uri.bucket()),
            ContextStore::Pvc { claim, mount_path } => {
                format!("PVC {claim} at {}", mount_path.display())
            }
        }
    }

    /// Checks the store is reachable and usable: lists the prefix (bucket exists, the
    /// credentials may read it), or for a PVC writes and removes a probe file. Called at
    /// agent start-up, so a bad store is a config error there, not at the first build.
    pub async fn check(&self) -> Result<()> {
        match self {
            ContextStore::Object { uri, store } => {
                let prefix = ObjectPath::from(uri.prefix());
                let mut listing = store.list(Some(&prefix));
                match listing.next().await {
                    None | Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(Error::StoreUnusable {
                        store: self.describe(),
                        problem: e.to_string(),
                    }),
                }
            }
            ContextStore::Pvc { mount_path, .. } => {
                let probe = mount_path.join(".rlaunch-probe");
                let result = tokio::fs::write(&probe, b"probe").await;
                let _ = tokio::fs::remove_file(&probe).await;
                result.map_err(|e| Error::StoreUnusable {
                    store: self.describe(),
                    problem: format!("cannot write {}: {e}", probe.display()),
                })
            }
        }
    }

    /// Uploads `archive` as context `id`; returns Kaniko's `--context` value.
    pub async fn upload(&self, id: &str, archive: &Path) -> Result<String> {
        let failed = |problem: String| Error::Upload {
            store: self.describe(),
            id: id.to_owned(),
            problem,
        };
        match self {
            ContextStore::Object { uri, store } => {
                let mut file = tokio::fs::File::open(archive)
                    .await
                    .map_err(|e| failed(format!("cannot read {}: {e}", archive.display())))?;
                let path = ObjectPath::from(uri.key(id));
                let mut writer = object_store::buffered::BufWriter::new(store.clone(), path);
                tokio::io::copy(&mut file, &mut writer)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                writer.shutdown().await.map_err(|e| failed(e.to_string()))?;
                Ok(uri.context_uri(id))
            }
            ContextStore::Pvc { mount_path, .. } => {
                let target = mount_path.join(format!("{id}.tgz"));
                tokio::fs::copy(archive, &target).await.map_err(|e| {
                    failed(format!(
                        "cannot copy the context to {}: {e}",
                        target.display()
                    ))
                })?;
                Ok(format!("tar://{PVC_CONTEXT_MOUNT}/{id}.tgz"))
            }
        }
    }

    /// Deletes context `id` (a missing one is fine).
    pub async fn delete(&self, id: &str) -> Result<()> {
        let failed = |problem: String| Error::Upload {
            store: self.describe(),
            id: id.to_owned(),
            problem: format!("cannot delete the uploaded context: {problem}"),
        };
        match self {
            ContextStore::Object { uri, store } => {
                match store.delete(&ObjectPath::from(uri.key(id))).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(failed(e.to_string())),
                }
            }
            ContextStore::Pvc { mount_path, .. } => {
                match tokio::fs::remove_file(mount_path.join(format!("{id}.tgz"))).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(failed(e.to_string())),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_uri_forms_parse_and_name_their_context() {
        let s3 = StoreUri::parse("s3://ctx-bucket/builds/").unwrap();
        assert_eq!(s3.context_uri("r1"), "s3://ctx-bucket/builds/r1.tgz");
        let gs = StoreUri::parse("gs://ctx").unwrap();
        assert_eq!(gs.context_uri("r1"), "gs://ctx/r1.tgz");
        let az = StoreUri::parse("https://acct1.blob.core.windows.net/ctx/a/b").unwrap();
        assert_eq!(
            az,
            StoreUri::Azure {
                account: "acct1".into(),
                container: "ctx".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            az.context_uri("r1"),
            "https://acct1.blob.core.windows.net/ctx/a/b/r1.tgz"
        );
    }

    #[test]
    fn malformed_uris_are_config_errors_naming_the_store() {
        for bad in [
            "",
            "s3://",
            "s3:///prefix",
            "gs://Bad_Upper",
            "ftp://x",
            "https://example.com/c",
            "https://acct.blob.core.windows.net/",
        ] {
            let error = StoreUri::parse(bad).unwrap_err();
            assert!(matches!(error, Error::StoreConfig { .. }), "{bad}: {error}");
            assert!(error.to_string().contains("build-context-store"), "{error}");
        }
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let options = BTreeMap::from([("aws_endpoint_typo".to_owned(), "x".to_owned())]);
        let error = ContextStore::object("s3://b", &options).unwrap_err();
        assert!(error.to_string().contains("aws_endpoint_typo"), "{error}");
    }

    #[tokio::test]
    async fn the_pvc_store_copies_checks_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContextStore::pvc("kaniko-ctx", dir.path());
        store.check().await.unwrap();
        let archive = dir.path().join("in.tgz");
        std::fs::write(&archive, b"tgz").unwrap();
        let context = store.upload("run-1", &archive).await.unwrap();
        assert_eq!(context, "tar:///context/run-1.tgz");
        assert_eq!(std::fs::read(dir.path().join("run-1.tgz")).unwrap(), b"tgz");
        store.delete("run-1").await.unwrap();
        store.delete("run-1").await.unwrap();
        assert!(!dir.path().join("run-1.tgz").exists());
        let missing = ContextStore::pvc("kaniko-ctx", dir.path().join("absent"));
        let error = missing.check().await.unwrap_err();
        assert!(error.to_string().contains("PVC kaniko-ctx"), "{error}");
    }
}
