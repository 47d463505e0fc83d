//! What a run runs: an image, or a job artifact resolved to its source (`wandb-job.json`).

use rlaunch_builder::JobSource;
use rlaunch_model::RunSpec;
use serde_json::Value;

use crate::context::Context;

/// The resolved job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// What to build or run.
    pub source: JobSource,
    /// The job's entrypoint, used when the run spec has no override.
    pub entrypoint: Option<Vec<String>>,
    /// The job's Python version (`runtime` in `wandb-job.json`), for a generated Dockerfile.
    pub python_version: Option<String>,
    /// The job's `diff.patch` (uncommitted changes of a git job), applied after checkout.
    pub diff_patch: Option<String>,
}

/// The file of a git job's artifact holding the changes not committed when it was made.
const DIFF_PATCH: &str = "diff.patch";

/// Image jobs need nothing fetched; job artifacts are read from W&B.
pub(crate) async fn resolve(ctx: &Context, spec: &RunSpec) -> Result<Resolved, String> {
    if let Some(image) = &spec.docker_image {
        return Ok(Resolved {
            source: JobSource::Image {
                image: image.clone(),
            },
            entrypoint: None,
            python_version: None,
            diff_patch: None,
        });
    }
    let Some(job) = &spec.job else {
        return Err("the run spec names neither a docker image (`docker.docker_image`) nor a job (`job`): push the run with an image or a job".to_owned());
    };
    let (entity, project, name) = split_job(job).ok_or_else(|| {
        format!("job `{job}` is not of the form `entity/project/name:alias`; push the run with a full job name")
    })?;
    let base_url = ctx.wandb.base_url().to_string();
    let artifact = ctx
        .wandb
        .artifact(entity, project, name)
        .await
        .map_err(|e| format!("error accessing job {job} on {base_url}: {e}"))?;
    let has_patch = artifact.entries.iter().any(|e| e.path == DIFF_PATCH);
    let wanted: &[&str] = if has_patch {
        &["wandb-job.json", DIFF_PATCH]
    } else {
        &["wandb-job.json"]
    };
    let mut files = ctx
        .wandb
        .download_artifact_files(&artifact, wanted)
        .await
        .map_err(|e| format!("error reading the files of job {job}: {e}"))?
        .into_iter();
    let bytes = files.next().map(|(_, bytes)| bytes).unwrap_or_default();
    let mut resolved = parse_job(job, &bytes)?;
    if let (JobSource::Repo { .. }, Some((_, patch))) = (&resolved.source, files.next()) {
        let patch = String::from_utf8(patch)
            .map_err(|_| format!("{DIFF_PATCH} of job {job} is not UTF-8 text"))?;
        resolved.diff_patch = Some(patch).filter(|p| !p.trim().is_empty());
    }
    Ok(resolved)
}

pub(crate) fn split_job(job: &str) -> Option<(&str, &str, &str)> {
    let mut parts = job.splitn(3, '/');
    let (entity, project, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!entity.is_empty() && !project.is_empty() && !name.is_empty())
        .then_some((entity, project, name))
}

/// Reads `wandb-job.json` (pure).
pub(crate) fn parse_job(job: &str, bytes: &[u8]) -> Result<Resolved, String> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("wandb-job.json of job {job} is not JSON: {e}"))?;
    let source = value.get("source").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let entrypoint = source
        .get("entrypoint")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
    let malformed =
        |what: &str| format!("malformed source dictionary in job {job}: {what} is missing");
    let source = match value.get("source_type").and_then(Value::as_str) {
        Some("image") => JobSource::Image {
            image: text(&source, "image").ok_or_else(|| malformed("source.image"))?,
        },
        Some("artifact") => JobSource::Artifact {
            artifact: text(&source, "artifact").ok_or_else(|| malformed("source.artifact"))?,
            base_image: text(&source, "base_image"),
            dockerfile: text(&source, "dockerfile"),
        },
        Some("repo") => {
            let git = source.get("git").cloned().unwrap_or(Value::Null);
            JobSource::Repo {
                remote: text(&git, "remote").ok_or_else(|| malformed("source.git.remote"))?,
                commit: text(&git, "commit").ok_or_else(|| malformed("source.git.commit"))?,
                base_image: text(&source, "base_image"),
                dockerfile: text(&source, "dockerfile"),
            }
        }
        other => {
            return Err(format!(
                "job {job} has unknown source_type {other:?} (expected image, artifact or repo)"
            ));
        }
    };
    let python_version = text(&value, "runtime");
    Ok(Resolved {
        source,
        entrypoint,
        python_version,
        diff_patch: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_jobs_give_their_image_and_entrypoint() {
        let resolved = parse_job(
            "e/p/job:v1",
            br#"{"source_type":"image","source":{"image":"ghcr.io/x:1","entrypoint":["python","train.py"]}}"#,
        )
        .unwrap();
        assert_eq!(
            resolved.source,
            JobSource::Image {
                image: "ghcr.io/x:1".into()
            }
        );
        assert_eq!(
            resolved.entrypoint,
            Some(vec!["python".to_owned(), "train.py".to_owned()])
        );
        assert_eq!(resolved.python_version, None);
    }

    #[test]
    fn code_jobs_give_their_python_version() {
        let resolved = parse_job(
            "e/p/job:v1",
            br#"{"source_type":"artifact","runtime":"3.10.4","source":{"artifact":"e/p/code:v0","entrypoint":["python","train.py"]}}"#,
        )
        .unwrap();
        assert_eq!(resolved.python_version.as_deref(), Some("3.10.4"));
    }

    #[test]
    fn repo_jobs_need_remote_and_commit() {
        let error = parse_job(
            "e/p/j:v1",
            br#"{"source_type":"repo","source":{"git":{"remote":"r"}}}"#,
        )
        .unwrap_err();
        assert!(error.contains("source.git.commit"), "{error}");
        assert!(split_job("e/p/name:latest").is_some());
        assert!(split_job("name:latest").is_none());
    }
}
