//! Files: uploading error logs into a run (so `failRunQueueItem` can point at them) and
//! fetching a job artifact's files.

use reqwest::Url;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::transport::{Client, Resend, redact_url};
use crate::types::{Artifact, ArtifactEntry};

/// A file to upload into a run.
#[derive(Clone, PartialEq, Eq)]
pub struct RunFile {
    /// Path inside the run, e.g. `<runQueueItemId>/error/error.log`.
    pub path: String,
    /// File contents.
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for RunFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunFile")
            .field("path", &self.path)
            .field("len", &self.contents.len())
            .finish()
    }
}

impl Client {
    /// Uploads files into run `entity/project/run` (`CreateRunFiles`, then one `PUT` per
    /// file to the URL it returned, without the API key). Returns the paths, in order, for
    /// `filePaths`.
    pub async fn upload_run_files(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        files: &[RunFile],
    ) -> Result<Vec<String>> {
        let names: Vec<String> = files.iter().map(|file| file.path.clone()).collect();
        let (headers, urls) = self
            .create_run_files(entity, project, run, names.clone())
            .await?;
        let headers: Vec<(String, String)> = headers
            .iter()
            .filter_map(|header| header.split_once(':'))
            .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
            .collect();
        for file in files {
            let upload_url = urls
                .iter()
                .find(|(name, _)| name == &file.path)
                .and_then(|(_, url)| url.as_deref())
                .ok_or_else(|| Error::NoUploadUrl {
                    file: file.path.clone(),
                    run: format!("{entity}/{project}/{run}"),
                })?;
            let url = Url::parse(upload_url).map_err(|e| Error::InvalidResponse {
                operation: "CreateRunFiles",
                reason: format!("upload URL for {} is not a URL: {e}", file.path),
            })?;
            tracing::debug!(path = %file.path, url = %redact_url(&url), "uploading run file");
            self.send_with_retry("uploadRunFile", &url, Resend::Always, |timeout| {
                let mut request = self
                    .inner
                    .http
                    .put(url.clone())
                    .timeout(timeout)
                    .body(file.contents.clone());
                for (name, value) in &headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request
            })
            .await?;
        }
        Ok(names)
    }

    /// Resolves artifact `entity/project/name` (`name:alias`, e.g. a job's
    /// `job-foo:latest`) and reads its manifest.
    pub async fn artifact(&self, entity: &str, project: &str, name: &str) -> Result<Artifact> {
        let (id, digest, version_index, manifest_url) = self
            .artifact_by_name(entity, project, name)
            .await?
            .ok_or_else(|| Error::ArtifactNotFound {
                entity: entity.to_owned(),
                project: project.to_owned(),
                name: name.to_owned(),
            })?;
        let manifest_url = manifest_url.ok_or_else(|| Error::InvalidManifest {
            name: name.to_owned(),
            reason: "the artifact has no current manifest".to_owned(),
        })?;
        let manifest = self
            .download("fetchArtifactManifest", &manifest_url)
            .await?;
        let entries = parse_manifest(name, &manifest)?;
        Ok(Artifact {
            id,
            name: name.to_owned(),
            digest,
            version_index,
            entries,
        })
    }

    /// Downloads the given files of an artifact (paths from [`Artifact::entries`]), in order.
    pub async fn download_artifact_files(
        &self,
        artifact: &Artifact,
        paths: &[&str],
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let names: Vec<String> = paths.iter().map(|path| (*path).to_owned()).collect();
        let urls = self.artifact_files(&artifact.id, Some(names)).await?;
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let url = urls
                .iter()
                .find(|(name, _)| name == path)
                .and_then(|(_, url)| url.clone())
                .ok_or_else(|| Error::InvalidManifest {
                    name: artifact.name.clone(),
                    reason: format!("no download URL for {path}"),
                })?;
            let contents = self.download("downloadArtifactFile", &url).await?;
            out.push(((*path).to_owned(), contents));
        }
        Ok(out)
    }

    /// Every file of the artifact with id `artifact_id` (a code artifact referenced as
    /// `wandb-artifact://_id/<id>`), as (path, contents), sorted by path.
    pub async fn download_artifact_by_id(
        &self,
        artifact_id: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let mut urls = self.artifact_files(artifact_id, None).await?;
        urls.sort();
        let mut out = Vec::with_capacity(urls.len());
        for (path, url) in urls {
            let url = url.ok_or_else(|| Error::InvalidManifest {
                name: artifact_id.to_owned(),
                reason: format!("no download URL for {path}"),
            })?;
            let contents = self.download("downloadArtifactFile", &url).await?;
            out.push((path, contents));
        }
        Ok(out)
    }

    /// GETs a file URL. The API key is sent only to the W&B server itself, never to a
    /// storage URL on another origin (signed URLs carry their own credentials).
    async fn download(&self, operation: &'static str, url: &str) -> Result<Vec<u8>> {
        let url = Url::parse(url).map_err(|e| Error::InvalidResponse {
            operation,
            reason: format!("download URL is not a URL: {e}"),
        })?;
        let same_origin = url.origin() == self.inner.base_url.origin();
        let key = self.inner.config.api_key.clone();
        self.send_with_retry(operation, &url, Resend::Always, |timeout| {
            let request = self.inner.http.get(url.clone()).timeout(timeout);
            if same_origin {
                request.basic_auth("api", Some(key.expose()))
            } else {
                request
            }
        })
        .await
    }
}

/// Reads a W&B artifact manifest (`{"version": 1, "contents": {path: {digest, size}}}`).
fn parse_manifest(name: &str, bytes: &[u8]) -> Result<Vec<ArtifactEntry>> {
    let invalid = |reason: String| Error::InvalidManifest {
        name: name.to_owned(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    match value.get("version").and_then(Value::as_i64) {
        Some(1) => {}
        other => return Err(invalid(format!("unsupported manifest version {other:?}"))),
    }
    let contents = value
        .get("contents")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("no `contents` object".to_owned()))?;
    let mut entries = Vec::with_capacity(contents.len());
    for (path, entry) in contents {
        let digest = entry
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("entry {path} has no digest")))?;
        entries.push(ArtifactEntry {
            path: path.clone(),
            digest: digest.to_owned(),
            size: entry.get("size").and_then(Value::as_u64),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}
