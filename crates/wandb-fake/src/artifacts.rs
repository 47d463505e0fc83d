//! Artifacts: versions with aliases, their manifests and files, as the fake serves them to
//! an agent resolving a job (`ArtifactByName`, `ArtifactFiles`, manifest and file URLs).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::ids::opaque_id;
use crate::model::NewArtifact;

#[derive(Debug)]
pub(crate) struct ArtifactRec {
    pub n: u64,
    pub id: String,
    pub entity: String,
    pub project: String,
    pub collection: String,
    pub version_index: i64,
    pub aliases: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Every artifact version, with the base URL its download URLs start with.
#[derive(Debug)]
pub(crate) struct Artifacts {
    base_url: String,
    versions: Vec<ArtifactRec>,
}

impl Artifacts {
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            base_url,
            versions: Vec::new(),
        }
    }

    /// Index of the version with `id`.
    pub(crate) fn by_id(&self, id: &str) -> Option<usize> {
        self.versions.iter().position(|a| a.id == id)
    }

    /// Adds version number `n` of an artifact (the project must exist); returns its id.
    pub(crate) fn add(&mut self, n: u64, artifact: NewArtifact) -> String {
        let NewArtifact {
            entity,
            project,
            name: collection,
            aliases,
            files,
        } = artifact;
        let version_index = self
            .versions
            .iter()
            .filter(|a| a.entity == entity && a.project == project && a.collection == collection)
            .count() as i64;
        let id = opaque_id("Artifact", n);
        self.versions.push(ArtifactRec {
            n,
            id: id.clone(),
            entity,
            project,
            collection,
            version_index,
            aliases,
            files: files
                .into_iter()
                .map(|(path, text)| (path, text.into_bytes()))
                .collect(),
        });
        id
    }

    /// Finds `collection:alias` (`latest` = newest, `vN` = version N, or a named alias).
    pub(crate) fn find(&self, entity: &str, project: &str, name: &str) -> Option<usize> {
        let (collection, alias) = name.split_once(':').unwrap_or((name, "latest"));
        let candidates = self.versions.iter().enumerate().filter(|(_, a)| {
            a.entity == entity && a.project == project && a.collection == collection
        });
        if alias == "latest" {
            return candidates
                .max_by_key(|(_, a)| a.version_index)
                .map(|(i, _)| i);
        }
        let version = alias.strip_prefix('v').and_then(|v| v.parse::<i64>().ok());
        candidates
            .filter(|(_, a)| {
                Some(a.version_index) == version || a.aliases.iter().any(|x| x == alias)
            })
            .map(|(i, _)| i)
            .next()
    }

    pub(crate) fn json(&self, index: usize) -> Value {
        let artifact = &self.versions[index];
        let digest = artifact_digest(artifact);
        json!({
            "id": artifact.id,
            "digest": digest,
            "versionIndex": artifact.version_index,
            "currentManifest": {
                "id": opaque_id("ArtifactManifest", artifact.n),
                "file": {
                    "name": "wandb_manifest.json",
                    "directUrl": format!("{}/_artifacts/{}/manifest", self.base_url, artifact.n),
                    "uploadUrl": null,
                },
            },
        })
    }

    pub(crate) fn manifest(&self, n: u64) -> Option<Value> {
        let artifact = self.versions.iter().find(|a| a.n == n)?;
        let contents: serde_json::Map<String, Value> = artifact
            .files
            .iter()
            .map(|(path, bytes)| {
                (
                    path.clone(),
                    json!({"digest": content_digest(bytes), "size": bytes.len()}),
                )
            })
            .collect();
        Some(json!({
            "version": 1,
            "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": contents,
        }))
    }
}

fn artifact_digest(artifact: &ArtifactRec) -> String {
    let mut all = Vec::new();
    for (path, bytes) in &artifact.files {
        all.extend_from_slice(path.as_bytes());
        all.extend_from_slice(content_digest(bytes).as_bytes());
    }
    content_digest(&all)
}

/// Not MD5 (no extra dependency): a stable FNV-1a 64 digest, base64-encoded. The client
/// treats digests as opaque.
fn content_digest(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    base64::engine::general_purpose::STANDARD.encode(hash.to_be_bytes())
}

impl Artifacts {
    /// The stored bytes of one file of artifact version `n`.
    pub(crate) fn file(&self, n: u64, path: &str) -> Option<&[u8]> {
        self.versions
            .iter()
            .find(|a| a.n == n)
            .and_then(|a| a.files.get(path))
            .map(Vec::as_slice)
    }

    /// `Artifact.files(names:)` of the artifact with `id`: download URLs of the files named
    /// (all when `names` is `None`).
    pub(crate) fn files_json(&self, id: &str, names: Option<&[String]>) -> Value {
        let Some(artifact) = self.versions.iter().find(|a| a.id == id) else {
            return json!({"edges": []});
        };
        let edges: Vec<Value> = artifact
            .files
            .keys()
            .filter(|path| names.is_none_or(|names| names.contains(path)))
            .map(|path| {
                json!({"node": {
                    "name": path,
                    "directUrl": format!("{}/_artifacts/{}/files/{}", self.base_url, artifact.n, path),
                    "uploadUrl": null,
                }})
            })
            .collect();
        json!({"edges": edges})
    }
}
