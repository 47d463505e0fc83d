//! The code PVC (`WANDB_LAUNCH_CODE_PVC_NAME` + `WANDB_LAUNCH_CODE_PVC_MOUNT_PATH`): the
//! agent has the claim mounted, copies a code job's files onto it under the job's image
//! source string (`<job name>:v<version>`), and the run mounts that sub path of the claim
//! at `/mnt/wandb` instead of fetching its code in an init container.
//!
//! Code artifacts are staged (with the job artifact's files under `.job/`, where the
//! dependency install finds `requirements.frozen.txt`); git sources keep the init
//! container, which clones at run time (the agent does not run git).

use std::path::{Component, Path, PathBuf};

use crate::config::CodePvc;
use crate::context::Context;

/// Prefix of a code artifact referenced by id.
const BY_ID: &str = "wandb-artifact://_id/";

/// Where a staged job's files go under the mount path (pure): the job's name without its
/// alias, and its version (`job-code:v3`), or the alias when the version is unknown.
pub(crate) fn sub_path(job: &str, version_index: Option<i64>) -> String {
    let name = job.rsplit('/').next().unwrap_or(job);
    let (name, alias) = name.split_once(':').unwrap_or((name, "latest"));
    match version_index {
        Some(version) => format!("{name}:v{version}"),
        None => format!("{name}:{alias}"),
    }
}

/// `root` joined with a server-given relative `path`, or `None` if the path would leave
/// `root` (absolute, `..`, empty) (pure).
fn inside(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = Path::new(path);
    let normal = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (normal && !path.is_empty()).then(|| root.join(relative))
}

/// Copies the code artifact `artifact` and the job artifact `job`'s files onto the
/// claim; returns the sub path to mount. Files already there are overwritten.
pub(crate) async fn stage(
    ctx: &Context,
    pvc: &CodePvc,
    artifact: &str,
    job: &str,
) -> Result<String, String> {
    let (entity, project, name) = super::source::split_job(job)
        .ok_or_else(|| format!("job `{job}` is not of the form `entity/project/name:alias`"))?;
    let job_artifact = ctx
        .wandb
        .artifact(entity, project, name)
        .await
        .map_err(|e| format!("cannot read job {job} to stage its code: {e}"))?;
    let paths: Vec<&str> = job_artifact
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect();
    let job_files = ctx
        .wandb
        .download_artifact_files(&job_artifact, &paths)
        .await
        .map_err(|e| format!("cannot download job {job} to stage its code: {e}"))?;
    let code_files = match artifact.strip_prefix(BY_ID) {
        Some(id) => ctx.wandb.download_artifact_by_id(id).await,
        None => match super::source::split_job(artifact) {
            Some((entity, project, name)) => {
                download_by_name(ctx, entity, project, name).await
            }
            None => {
                return Err(format!(
                    "code artifact `{artifact}` is neither `{BY_ID}<id>` nor `entity/project/name:alias`"
                ));
            }
        },
    }
    .map_err(|e| format!("cannot download code artifact {artifact}: {e}"))?;
    let sub_path = sub_path(job, job_artifact.version_index);
    let root = pvc.mount_path.join(&sub_path);
    write_all(&root, &code_files).await?;
    write_all(&root.join(".job"), &job_files).await?;
    tracing::info!(job, artifact, claim = %pvc.claim_name, sub_path, files = code_files.len(), "code staged on the code PVC");
    Ok(sub_path)
}

async fn download_by_name(
    ctx: &Context,
    entity: &str,
    project: &str,
    name: &str,
) -> Result<Vec<(String, Vec<u8>)>, rlaunch_wandb_api::Error> {
    let artifact = ctx.wandb.artifact(entity, project, name).await?;
    let paths: Vec<&str> = artifact.entries.iter().map(|e| e.path.as_str()).collect();
    ctx.wandb.download_artifact_files(&artifact, &paths).await
}

async fn write_all(root: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    for (path, contents) in files {
        let target = inside(root, path).ok_or_else(|| {
            format!(
                "refusing to stage `{path}`: artifact paths must stay inside the job's directory"
            )
        })?;
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                format!(
                    "cannot create {} on the code PVC: {e} (is WANDB_LAUNCH_CODE_PVC_MOUNT_PATH mounted and writable?)",
                    parent.display()
                )
            })?;
        }
        tokio::fs::write(&target, contents).await.map_err(|e| {
            format!(
                "cannot write {} on the code PVC: {e} (is WANDB_LAUNCH_CODE_PVC_MOUNT_PATH mounted and writable?)",
                target.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sub_path_is_the_job_name_and_version() {
        assert_eq!(sub_path("e/p/job-code:latest", Some(3)), "job-code:v3");
        assert_eq!(sub_path("e/p/job-code:prod", None), "job-code:prod");
        assert_eq!(sub_path("e/p/job-code", None), "job-code:latest");
    }

    #[test]
    fn artifact_paths_cannot_leave_the_jobs_directory() {
        let root = Path::new("/code/job:v1");
        assert_eq!(
            inside(root, "src/main.py"),
            Some(PathBuf::from("/code/job:v1/src/main.py"))
        );
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "./"] {
            assert_eq!(inside(root, bad), None, "{bad}");
        }
    }
}
