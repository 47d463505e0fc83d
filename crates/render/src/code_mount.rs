//! Runtime code mount for base-image jobs, as W&B's agent does it: a PVC holding the code, or
//! an emptyDir filled by an init container, plus optional dependency installation.

use serde_json::{Map, Value, json};

use crate::context::{CodeMount, CodeMountVariant, CodeSource};
use crate::walk::{append_list, containers_mut, for_each_pod_spec, shell_quote};
use rlaunch_model::RunSpec;
use rlaunch_model::{FieldError, RenderError, Result};

/// Mount point of the code in every container.
const CODE_DIR: &str = "/mnt/wandb";
/// Name of the code volume.
const VOLUME: &str = "wandb-source-code-volume";
/// Frozen requirements of the job artifact.
const FROZEN_REQUIREMENTS: &str = "/mnt/wandb/.job/requirements.frozen.txt";

/// Applies the code mount to every pod spec in `workload`.
pub(crate) fn apply(
    workload: &mut Value,
    mount: &CodeMount,
    spec: &RunSpec,
    base_url: &str,
) -> Result<()> {
    let working_dir = working_dir(spec)?;
    for_each_pod_spec(workload, &mut |pod_spec| {
        append_list(pod_spec, "volumes", [volume(mount)]);
        let mut api_key_env = None;
        for container in containers_mut(pod_spec) {
            append_list(container, "volumeMounts", [volume_mount(mount)]);
            container.insert("workingDir".to_owned(), json!(working_dir));
            if mount.install_dependencies {
                wrap_with_dependency_install(container, &working_dir);
            }
            if api_key_env.is_none() {
                api_key_env = api_key_entry(container);
            }
        }
        if let Some(init) = init_container(mount, base_url, api_key_env) {
            append_list(pod_spec, "initContainers", [init]);
        }
    });
    Ok(())
}

/// `/mnt/wandb`, or `overrides.working_dir` inside it (never outside).
fn working_dir(spec: &RunSpec) -> Result<String> {
    let dir = spec
        .overrides
        .working_dir
        .as_deref()
        .map(|d| d.trim_matches('/'));
    match dir {
        Some(dir) if !dir.is_empty() => {
            if dir.split('/').any(|part| part == "..") {
                return Err(RenderError::one(FieldError::new(
                    "runSpec.overrides.working_dir",
                    format!("`{dir}` leaves the code directory"),
                    "use a path inside the job's code, without `..`",
                )));
            }
            Ok(format!("{CODE_DIR}/{dir}"))
        }
        _ => Ok(CODE_DIR.to_owned()),
    }
}

fn volume(mount: &CodeMount) -> Value {
    match &mount.variant {
        CodeMountVariant::Pvc { claim_name, .. } => {
            json!({"name": VOLUME, "persistentVolumeClaim": {"claimName": claim_name}})
        }
        CodeMountVariant::EmptyDir { .. } => json!({"name": VOLUME, "emptyDir": {}}),
    }
}

fn volume_mount(mount: &CodeMount) -> Value {
    match &mount.variant {
        CodeMountVariant::Pvc { sub_path, .. } => {
            json!({"name": VOLUME, "mountPath": CODE_DIR, "subPath": sub_path})
        }
        CodeMountVariant::EmptyDir { .. } => json!({"name": VOLUME, "mountPath": CODE_DIR}),
    }
}

/// The container's `WANDB_API_KEY` env entry (a `secretKeyRef`), for the init container.
fn api_key_entry(container: &Map<String, Value>) -> Option<Value> {
    container
        .get("env")
        .and_then(Value::as_array)
        .and_then(|env| {
            env.iter()
                .find(|e| e.get("name") == Some(&json!("WANDB_API_KEY")))
        })
        .cloned()
}

/// The emptyDir variant's init container, which fetches the code into the volume.
fn init_container(mount: &CodeMount, base_url: &str, api_key_env: Option<Value>) -> Option<Value> {
    let CodeMountVariant::EmptyDir {
        source,
        job_artifact,
        init_image,
    } = &mount.variant
    else {
        return None;
    };
    let mut env = vec![json!({"name": "WANDB_BASE_URL", "value": base_url})];
    env.extend(api_key_env);
    let job_artifact = job_artifact
        .as_deref()
        .filter(|_| mount.install_dependencies);
    Some(json!({
        "name": "wandb-source-code-init",
        "image": init_image,
        "volumeMounts": [{"name": VOLUME, "mountPath": CODE_DIR}],
        "env": env,
        "command": ["/bin/sh", "-c", fetch_script(source, job_artifact)],
    }))
}

fn download(name: &str, root: &str) -> String {
    format!(
        "python -c 'import sys, wandb; wandb.Api().artifact(sys.argv[1]).download(root=sys.argv[2])' {} {}",
        shell_quote(name),
        shell_quote(root)
    )
}

/// The init container's script; every interpolated value is shell-quoted.
fn fetch_script(source: &CodeSource, job_artifact: Option<&str>) -> String {
    let mut steps = vec!["set -e".to_owned()];
    match source {
        CodeSource::Artifact(name) => steps.push(download(name, CODE_DIR)),
        CodeSource::Repo { remote, commit } => {
            steps.push(format!("git clone {} {CODE_DIR}", shell_quote(remote)));
            steps.push(format!(
                "git config --global --add safe.directory {CODE_DIR}"
            ));
            steps.push(format!("cd {CODE_DIR}"));
            steps.push(format!("git checkout {}", shell_quote(commit)));
        }
    }
    if let Some(job) = job_artifact {
        steps.push(download(job, &format!("{CODE_DIR}/.job")));
    }
    steps.push(format!(
        "chmod -R a+w {CODE_DIR}/* {CODE_DIR}/.* 2>/dev/null || true"
    ));
    steps.join("; ")
}

/// Replaces `command`+`args` with `/bin/sh -c "<install deps> && exec <argv>"`.
fn wrap_with_dependency_install(container: &mut Map<String, Value>, working_dir: &str) {
    let argv: Vec<String> = ["command", "args"]
        .iter()
        .filter_map(|key| container.get(*key).and_then(Value::as_array))
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if argv.is_empty() {
        return;
    }
    let requirements = shell_quote(&format!("{working_dir}/requirements.txt"));
    let pyproject = shell_quote(&format!("{working_dir}/pyproject.toml"));
    let install = format!(
        "if [ -f {requirements} ]; then pip install -r {requirements}; \
         elif [ -f {pyproject} ]; then pip install {wd}; \
         elif [ -f {FROZEN_REQUIREMENTS} ]; then pip install -r {FROZEN_REQUIREMENTS}; \
         else echo 'No requirements file found'; fi",
        wd = shell_quote(working_dir)
    );
    let exec: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    container.insert("command".to_owned(), json!(["/bin/sh", "-c"]));
    container.insert(
        "args".to_owned(),
        json!([format!("{install} && exec {}", exec.join(" "))]),
    );
}
