//! One test per rendering behaviour taken from W&B's agent, and one per deliberate difference
//! (the numbered list in the crate docs). Each asserts the behaviour against literal expected
//! values, so changing it fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::collections::{BTreeMap, BTreeSet};

use rlaunch_model::{ApiKey, RunSpec};
use rlaunch_render::{
    ApiKeyMode, CodeMount, CodeMountVariant, CodeSource, ObjectRole, RenderContext, render,
};
use serde_json::{Value, json};

fn run_spec(k8s: Value) -> RunSpec {
    RunSpec::from_value(json!({
        "entity": "Team42", "project": "My_Proj", "name": "nice-run", "author": "ada",
        "docker": {"docker_image": "repo/img:1"},
        "resource_args": {"kubernetes": k8s},
    }))
    .expect("valid run spec")
}

fn ctx() -> RenderContext {
    let mut ctx = RenderContext::new("abc123");
    ctx.api_key = ApiKeyMode::Agent(ApiKey::new("agent-key-0123456789"));
    ctx
}

fn workload(spec: &RunSpec, ctx: &RenderContext) -> Value {
    render(spec, None, ctx)
        .expect("renders")
        .workload()
        .expect("has workload")
        .manifest
        .clone()
}

/// The forced container security context, pinned here rather than taken from the engine.
fn restricted_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

// Agent-only keys (difference 2).
#[test]
fn agent_only_keys_are_removed_from_the_submitted_body() {
    let spec = run_spec(
        json!({"configFile": "/k", "context": "c", "namespace": "legacy", "wait_for_ready": false,
        "wait_timeout": 30, "group": "g", "version": "v", "builder": {"base_image": "x"}, "plural": "p",
        "gpu": "nvidia.com/gpu=1"}),
    );
    let rendered = render(&spec, None, &ctx()).expect("renders");
    let job = &rendered.workload().expect("workload").manifest;
    let agent_only = [
        "configFile",
        "context",
        "namespace",
        "wait_for_ready",
        "wait_timeout",
        "group",
        "version",
        "builder",
        "plural",
        "gpu",
    ];
    for key in agent_only {
        assert!(job.get(key).is_none(), "{key} leaked into the Job");
    }
    assert_eq!(rlaunch_render::AGENT_ONLY_KEYS, agent_only);
    assert_eq!(rendered.agent_keys.config_file.as_deref(), Some("/k"));
    assert_eq!(rendered.agent_keys.context.as_deref(), Some("c"));
    assert!(!rendered.agent_keys.wait_for_ready);
    assert_eq!(rendered.agent_keys.wait_timeout_secs, 30);
    assert_eq!(rendered.namespace, "legacy");
}

// Macros (difference 4).
#[test]
fn named_macros_expand_everywhere_but_keys_and_other_env_vars_do_not() {
    let spec = RunSpec::from_value(json!({
        "entity": "ent", "project": "Proj", "author": "ada", "docker": {"docker_image": "img:2"},
        "resource_args": {"kubernetes": {"metadata": {"labels": {
            "p": "${project_name}", "e": "${entity_name}", "r": "${run_id}", "a": "${author}",
            "n": "x${run_name}", "i": "${image_uri}", "${run_id}": "k", "s": "${HOME}", "t": "${ALLOWED}"}}}},
        "additional_services": [{"config": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-${run_id}"}}}]
    }))
    .expect("valid");
    let mut ctx = ctx();
    ctx.macro_env = BTreeMap::from([("ALLOWED".to_owned(), "yes".to_owned())]);
    let rendered = render(&spec, None, &ctx).expect("renders");
    let labels = &rendered.workload().expect("workload").manifest["metadata"]["labels"];
    assert_eq!(labels["p"], "proj");
    assert_eq!(labels["e"], "ent");
    assert_eq!(labels["r"], "abc123");
    assert_eq!(labels["a"], "ada");
    assert_eq!(labels["n"], "x", "missing run name renders empty, not None");
    assert_eq!(labels["i"], "img:2");
    assert_eq!(labels["${run_id}"], "k");
    assert_eq!(
        labels["s"], "${HOME}",
        "agent env vars are not macros unless allow-listed"
    );
    assert_eq!(labels["t"], "yes");
    assert!(rendered.warnings.iter().any(|w| w.contains("${run_name}")));
    assert!(rendered.warnings.iter().any(|w| w.contains("${HOME}")));
    let service = &rendered.objects[1].manifest;
    assert_eq!(service["metadata"]["name"], "svc-abc123");
}

// The refuse-list.
#[test]
fn refuse_list_runs_after_macros_and_covers_additional_services() {
    let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "docker": {"docker_image": "i"},
        "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"hostIPC": "${run_id}"}}}}},
        "additional_services": [{"config": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
            "spec": {"hostNetwork": true, "containers": []}}}]}))
    .expect("valid");
    let mut ctx = ctx();
    ctx.run_id = "1".into(); // "${run_id}" → "1", truthy
    let err = render(&spec, None, &ctx).expect_err("refused");
    let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "resource_args.kubernetes.spec.template.spec.hostIPC",
            "runSpec.additional_services[0].config.spec.hostNetwork"
        ]
    );
}

// Namespace resolution.
#[test]
fn namespace_resolution_order() {
    let mut ctx = ctx();
    ctx.default_namespace = "agent-ns".into();
    let ns = |k8s: Value| {
        render(&run_spec(k8s), None, &ctx)
            .expect("renders")
            .namespace
    };
    assert_eq!(
        ns(json!({"metadata": {"namespace": "meta"}, "namespace": "legacy"})),
        "meta"
    );
    assert_eq!(ns(json!({"namespace": "legacy"})), "legacy");
    assert_eq!(ns(json!({})), "agent-ns");
    assert_eq!(
        render(&run_spec(json!({})), None, &RenderContext::new("r"))
            .expect("renders")
            .namespace,
        "default"
    );
}

// Job defaults, labels, names and container names.
#[test]
fn job_defaults_labels_name_and_container_names() {
    let job = workload(&run_spec(json!({})), &ctx());
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 60);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(pod["containers"][0]["name"], "launch0");
    assert_eq!(job["metadata"]["labels"]["wandb.ai/run-id"], "abc123");
    assert_eq!(job["metadata"]["labels"]["wandb.ai/monitor"], "true");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["wandb.ai/monitor"],
        "true"
    );
    assert!(
        job["metadata"]["labels"].get("wandb.ai/agent").is_none(),
        "agent label only inside the agent"
    );
    // Difference 1: digits kept.
    assert_eq!(job["metadata"]["generateName"], "launch-team42-my-proj-");

    let user = workload(
        &run_spec(
            json!({"spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 5,
        "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "main"}, {"image": "side"}]}}}}),
        ),
        &ctx(),
    );
    assert_eq!(user["spec"]["backoffLimit"], 3);
    assert_eq!(user["spec"]["ttlSecondsAfterFinished"], 5);
    assert_eq!(
        user["spec"]["template"]["spec"]["restartPolicy"],
        "OnFailure"
    );
    assert_eq!(
        user["spec"]["template"]["spec"]["containers"][1]["name"],
        "launch1"
    );
}

#[test]
fn agent_labels_and_deterministic_name_inside_the_agent() {
    let mut ctx = ctx();
    ctx.agent_name = Some("agent-x1".into());
    ctx.agent_identity = Some("prod-cluster".into());
    ctx.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjk=".into());
    let job = workload(&run_spec(json!({})), &ctx);
    assert_eq!(job["metadata"]["labels"]["wandb.ai/agent"], "agent-x1");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"]["wandb.ai/agent"],
        "agent-x1"
    );
    assert_eq!(
        job["metadata"]["labels"]["rlaunch.dev/agent-identity"],
        "prod-cluster"
    );
    assert_eq!(
        job["metadata"]["annotations"]["rlaunch.dev/run-queue-item"],
        "UnVuUXVldWVJdGVtOjk="
    );
    let name = job["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("launch-team42-my-proj-abc123-"), "{name}");
    assert!(job["metadata"].get("generateName").is_none());
    assert_eq!(
        workload(&run_spec(json!({})), &ctx)["metadata"]["name"],
        name,
        "deterministic"
    );
}

#[test]
fn user_name_is_kept_and_namespace_overwritten() {
    let mut ctx = ctx();
    ctx.default_namespace = "x".into();
    let job = workload(
        &run_spec(json!({"metadata": {"name": "train-${run_id}"}})),
        &ctx,
    );
    assert_eq!(job["metadata"]["name"], "train-abc123");
    assert_eq!(job["metadata"]["namespace"], "x");
    let err = render(
        &run_spec(json!({"metadata": {"name": "Bad_Name"}})),
        None,
        &ctx,
    )
    .expect_err("invalid");
    assert_eq!(
        err.problems[0].path,
        "resource_args.kubernetes.metadata.name"
    );
}

// Image placement.
#[test]
fn image_placement_rules() {
    // A docker-image source overwrites containers[0].image.
    let job = workload(
        &run_spec(
            json!({"spec": {"template": {"spec": {"containers": [{"image": "user:1"}, {"image": "side:1"}]}}}}),
        ),
        &ctx(),
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"],
        "repo/img:1"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][1]["image"],
        "side:1"
    );
    // Otherwise user images are kept; the built image fills containers[0] only when none has one.
    let job_source = RunSpec::from_value(json!({"entity": "e", "project": "p", "job": "e/p/j:v1",
        "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [{"image": "user:1"}]}}}}}})).expect("valid");
    let mut ctx = ctx();
    ctx.image_uri = Some("built:abc".into());
    assert_eq!(
        workload(&job_source, &ctx)["spec"]["template"]["spec"]["containers"][0]["image"],
        "user:1"
    );
    let bare = RunSpec::from_value(json!({"entity": "e", "project": "p", "job": "e/p/j:v1"}))
        .expect("valid");
    assert_eq!(
        workload(&bare, &ctx)["spec"]["template"]["spec"]["containers"][0]["image"],
        "built:abc"
    );
}

// Image pull Secrets (difference 3).
#[test]
fn user_pull_secrets_are_kept_and_ours_appended() {
    let mut ctx = ctx();
    ctx.pull_secret = Some("regcred-abc123".into());
    let job = workload(
        &run_spec(
            json!({"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "mine"}]}}}}),
        ),
        &ctx,
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["imagePullSecrets"],
        json!([{"name": "mine"}, {"name": "regcred-abc123"}])
    );
}

// Entrypoint and args (difference 7).
#[test]
fn entrypoint_and_args_go_to_the_main_container() {
    let spec = RunSpec::from_value(
        json!({"entity": "e", "project": "p", "docker": {"docker_image": "i"},
        "overrides": {"args": ["--lr", "1"]},
        "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [
            {"command": ["own"]}, {"image": "side"}]}}}}}}),
    )
    .expect("valid");
    let mut ctx = ctx();
    ctx.job_entrypoint = Some(vec!["python".into(), "train.py".into()]);
    let job = workload(&spec, &ctx);
    let containers = &job["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["command"],
        json!(["own"]),
        "job entrypoint does not replace a user command"
    );
    assert_eq!(containers[0]["args"], json!(["--lr", "1"]));
    assert!(
        containers[1].get("command").is_none(),
        "sidecars keep their own command"
    );
    assert!(containers[1].get("args").is_none());

    let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "docker": {"docker_image": "i"},
        "overrides": {"entry_point": ["bash", "run.sh"]},
        "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [{"command": ["own"]}]}}}}}})).expect("valid");
    assert_eq!(
        workload(&spec, &ctx)["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["bash", "run.sh"])
    );
}

// The W&B env block.
#[test]
fn wandb_env_is_appended_to_every_job_container_in_order() {
    let spec = RunSpec::from_value(
        json!({"entity": "e", "project": "p", "name": "n", "author": "a", "sweep_id": "s",
        "docker": {"docker_image": "i"}, "_resume_count": 2,
        "resource_args": {"kubernetes": {"spec": {"template": {"spec": {"containers": [
            {"env": [{"name": "WANDB_PROJECT", "value": "mine"}]}, {"image": "side"}]}}}}}}),
    )
    .expect("valid");
    let mut ctx = ctx();
    ctx.queue_name = Some("q".into());
    ctx.queue_entity = Some("qe".into());
    ctx.run_queue_item_id = Some("rqi".into());
    ctx.base_url = "https://w.example".into();
    let job = workload(&spec, &ctx);
    let main = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_names(main),
        [
            "WANDB_PROJECT",
            "WANDB_BASE_URL",
            "WANDB_API_KEY",
            "WANDB_PROJECT",
            "WANDB_ENTITY",
            "WANDB_LAUNCH",
            "WANDB_RUN_ID",
            "WANDB_DOCKER",
            "WANDB_NAME",
            "WANDB_USERNAME",
            "WANDB_SWEEP_ID",
            "WANDB_RESUME",
            "WANDB_LAUNCH_QUEUE_NAME",
            "WANDB_LAUNCH_QUEUE_ENTITY",
            "WANDB_LAUNCH_TRACE_ID",
            "WANDB_CONFIG",
            "WANDB_LAUNCH_FILE_OVERRIDES",
            "WANDB_ARTIFACTS"
        ]
    );
    assert_eq!(env_value(main, "WANDB_LAUNCH"), Some(&json!("True")));
    assert_eq!(env_value(main, "WANDB_RESUME"), Some(&json!("allow")));
    assert_eq!(
        env_value(main, "WANDB_BASE_URL"),
        Some(&json!("https://w.example"))
    );
    let side = &job["spec"]["template"]["spec"]["containers"][1];
    assert!(
        env_names(side).contains(&"WANDB_RUN_ID".to_owned()),
        "Job path: every container gets the run id"
    );
}

// The API-key Secret.
#[test]
fn api_key_secret_per_run_and_in_helm_mode() {
    let rendered = render(&run_spec(json!({})), None, &ctx()).expect("renders");
    let secret = &rendered.objects[0];
    assert_eq!(secret.role, ObjectRole::ApiKeySecret { shared: false });
    assert_eq!(secret.manifest["type"], "kubernetes.io/basic-auth");
    assert_eq!(secret.manifest["metadata"]["name"], "wandb-api-key-abc123");
    assert_eq!(
        secret.manifest["metadata"]["labels"]["wandb.ai/created-by"],
        "launch-agent"
    );
    assert_eq!(
        secret.manifest["data"]["password"],
        "YWdlbnQta2V5LTAxMjM0NTY3ODk="
    );
    let job = &rendered.objects[1].manifest;
    let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
    let key = env
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "WANDB_API_KEY")
        .expect("key env");
    assert_eq!(
        key["valueFrom"]["secretKeyRef"],
        json!({"name": "wandb-api-key-abc123", "key": "password"})
    );

    let mut helm = ctx();
    helm.release_name = Some("launch-agent".into());
    let rendered = render(&run_spec(json!({})), None, &helm).expect("renders");
    assert_eq!(
        rendered.objects[0].role,
        ObjectRole::ApiKeySecret { shared: true }
    );
    assert_eq!(
        rendered.objects[0].manifest["metadata"]["name"],
        "wandb-api-key-launch-agent"
    );

    // Difference 9: a per-run key in helm mode gets its own Secret.
    let own = RunSpec::from_value(
        json!({"entity": "e", "project": "p", "docker": {"docker_image": "i"},
        "_wandb_api_key": "run-key-abcdef"}),
    )
    .expect("valid");
    let rendered = render(&own, None, &helm).expect("renders");
    assert_eq!(
        rendered.objects[0].manifest["metadata"]["name"],
        "wandb-api-key-abc123"
    );
    assert_eq!(
        rendered.objects[0].manifest["data"]["password"],
        "cnVuLWtleS1hYmNkZWY="
    );

    // An empty key means no Secret and no WANDB_API_KEY, as in W&B's agent.
    let mut none = ctx();
    none.api_key = ApiKeyMode::Agent(ApiKey::new(""));
    let rendered = render(&run_spec(json!({})), None, &none).expect("renders");
    assert_eq!(rendered.objects.len(), 1);
    assert!(
        !env_names(&rendered.objects[0].manifest["spec"]["template"]["spec"]["containers"][0])
            .contains(&"WANDB_API_KEY".to_owned())
    );
}

// The key reaches the Secret byte for byte: a key read with its trailing newline is the
// caller's to trim, never the engine's (a trimmed copy would "conflict" with the original).
#[test]
fn api_key_bytes_reach_the_secret_unchanged() {
    let mut ctx = ctx();
    ctx.api_key = ApiKeyMode::Agent(ApiKey::new("agent-key-0123456789\n"));
    let rendered = render(&run_spec(json!({})), None, &ctx).expect("renders");
    assert_eq!(
        rendered.objects[0].manifest["data"]["password"], "YWdlbnQta2V5LTAxMjM0NTY3ODkK",
        "base64 of the key including its newline"
    );
    let own = RunSpec::from_value(json!({"entity": "e", "project": "p",
        "docker": {"docker_image": "i"}, "_wandb_api_key": " run-key-abcdef "}))
    .expect("valid");
    assert_eq!(
        own.api_key.as_ref().map(ApiKey::expose),
        Some(" run-key-abcdef ")
    );
}

// The runtime code mount.
#[test]
fn code_mount_pvc_and_emptydir_variants() {
    let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "job": "e/p/j:v1",
        "overrides": {"entry_point": ["python", "train.py"], "working_dir": "src"}}))
    .expect("valid");
    let mut ctx = ctx();
    ctx.image_uri = Some("python:3.11".into());
    ctx.code_mount = Some(CodeMount {
        variant: CodeMountVariant::Pvc {
            claim_name: "code".into(),
            sub_path: "j:v1".into(),
        },
        install_dependencies: false,
    });
    let job = workload(&spec, &ctx);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "wandb-source-code-volume", "persistentVolumeClaim": {"claimName": "code"}})
    );
    assert_eq!(pod["containers"][0]["volumeMounts"][0]["subPath"], "j:v1");
    assert_eq!(pod["containers"][0]["workingDir"], "/mnt/wandb/src");
    assert_eq!(
        pod["containers"][0]["command"],
        json!(["python", "train.py"])
    );

    ctx.code_mount = Some(CodeMount {
        variant: CodeMountVariant::EmptyDir {
            source: CodeSource::Repo {
                remote: "https://git.example/r.git".into(),
                commit: "abc; rm -rf /".into(),
            },
            job_artifact: Some("e/p/j:v1".into()),
            init_image: rlaunch_render::DEFAULT_CODE_INIT_IMAGE.into(),
        },
        install_dependencies: true,
    });
    let job = workload(&spec, &ctx);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "wandb-source-code-volume", "emptyDir": {}})
    );
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "wandb-source-code-init");
    assert_eq!(init["image"], "wandb/launch-agent:0.25.1");
    assert_eq!(env_names(init), ["WANDB_BASE_URL", "WANDB_API_KEY"]);
    let script = init["command"][2].as_str().expect("script");
    assert!(
        script.contains("git checkout 'abc; rm -rf /'"),
        "values are shell-quoted: {script}"
    );
    assert!(script.contains("/mnt/wandb/.job"));
    assert_eq!(
        init["securityContext"],
        restricted_context(),
        "the forced context covers init containers"
    );
    let main = &pod["containers"][0];
    assert_eq!(main["command"], json!(["/bin/sh", "-c"]));
    let wrapped = main["args"][0].as_str().expect("wrapped");
    assert!(
        wrapped.starts_with("if [ -f /mnt/wandb/src/requirements.txt ]"),
        "{wrapped}"
    );
    assert!(wrapped.ends_with("&& exec python train.py"), "{wrapped}");
}

// Additional services (difference 8).
#[test]
fn additional_services_are_labelled_get_env_and_keep_env_names() {
    let spec = RunSpec::from_value(json!({"entity": "E", "project": "P", "docker": {"docker_image": "i"},
        "overrides": {"run_config": {"a": 1}},
        "additional_services": [{"config": {}}, {"config": {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "Cache_Svc"}, "spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "redis", "env": [{"name": "MY_VAR", "value": "1"}]}]}}}}}]})).expect("valid");
    let rendered = render(&spec, None, &ctx()).expect("renders");
    assert_eq!(
        rendered.objects.len(),
        3,
        "empty config skipped: Secret, Deployment, Job"
    );
    let service = &rendered.objects[1];
    assert!(matches!(
        service.role,
        ObjectRole::AdditionalService {
            wait_for_ready: true,
            wait_timeout_secs: 300
        }
    ));
    assert_eq!(service.api.plural.as_deref(), Some("deployments"));
    let m = &service.manifest;
    assert_eq!(m["metadata"]["name"], "cache-svc");
    assert_eq!(m["metadata"]["namespace"], "default");
    assert_eq!(
        m["metadata"]["labels"]["wandb.ai/auxiliary-resource"],
        "aux-e-p-abc123"
    );
    assert_eq!(
        m["metadata"]["labels"]["wandb.ai/created-by"],
        "launch-agent"
    );
    assert_eq!(m["metadata"]["labels"]["wandb.ai/run-id"], "abc123");
    assert_eq!(
        m["spec"]["template"]["metadata"]["labels"]["wandb.ai/auxiliary-resource"],
        "aux-e-p-abc123"
    );
    let container = &m["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        env_names(container),
        ["MY_VAR", "WANDB_CONFIG", "WANDB_API_KEY"]
    );
    assert_eq!(
        env_value(container, "WANDB_CONFIG"),
        Some(&json!("{\"a\":1}"))
    );
    assert_eq!(container["securityContext"], restricted_context());
}

// Custom resources (difference 5).
#[test]
fn custom_resources() {
    let spec = RunSpec::from_value(json!({"entity": "e", "project": "p", "docker": {"docker_image": "img"},
        "overrides": {"entry_point": ["torchrun", "t.py"], "args": ["--x"]},
        "resource_args": {"kubernetes": {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "js-${run_id}"}, "spec": {"replicatedJobs": [
                {"name": "a", "template": {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "${image_uri}"}]}}}}},
                {"name": "b", "template": {"spec": {"template": {"spec": {"containers": [{"name": "w", "image": "${image_uri}"}]}}}}}]}}}})).expect("valid");
    let rendered = render(&spec, None, &ctx()).expect("renders");
    let object = rendered.workload().expect("workload");
    assert_eq!(object.api.plural.as_deref(), Some("jobsets"));
    assert_eq!(
        (object.api.group.as_str(), object.api.version.as_str()),
        ("jobset.x-k8s.io", "v1alpha2")
    );
    let m = &object.manifest;
    assert_eq!(m["metadata"]["labels"]["wandb.ai/run-id"], "abc123");
    assert_eq!(m["metadata"]["labels"]["wandb.ai/monitor"], "true");
    assert!(
        m.get("spec").and_then(|s| s.get("backoffLimit")).is_none(),
        "no Job defaults on CRs"
    );
    let a = &m["spec"]["replicatedJobs"][0]["template"]["spec"]["template"];
    let b = &m["spec"]["replicatedJobs"][1]["template"]["spec"]["template"];
    assert_eq!(a["metadata"]["labels"]["wandb.ai/monitor"], "true");
    assert_eq!(a["spec"]["containers"][0]["image"], "img");
    assert_eq!(
        a["spec"]["containers"][0]["command"],
        json!(["torchrun", "t.py"])
    );
    assert_eq!(b["spec"]["containers"][0]["args"], json!(["--x"]));
    assert!(env_names(&a["spec"]["containers"][0]).contains(&"WANDB_RUN_ID".to_owned()));
    assert!(
        !env_names(&b["spec"]["containers"][0]).contains(&"WANDB_RUN_ID".to_owned()),
        "run id only in the first container"
    );
    let key = b["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "WANDB_API_KEY")
        .expect("key env");
    assert!(key.get("value").is_none(), "never plaintext on a CR");
    assert_eq!(
        key["valueFrom"]["secretKeyRef"]["name"],
        "wandb-api-key-abc123"
    );
    assert_eq!(rendered.objects[0].manifest["kind"], "Secret");

    // Explicit plural override, unknown CRD left to discovery.
    let unknown = |extra: Value| {
        let mut k8s = json!({"apiVersion": "example.com/v1", "kind": "Octopus", "metadata": {"name": "o"},
            "spec": {"template": {"spec": {"containers": [{"image": "i"}]}}}});
        if let (Some(k), Some(e)) = (k8s.as_object_mut(), extra.as_object()) {
            k.extend(e.clone());
        }
        render(&run_spec(k8s), None, &ctx())
            .expect("renders")
            .workload()
            .expect("workload")
            .api
            .plural
            .clone()
    };
    assert_eq!(unknown(json!({})), None);
    assert_eq!(
        unknown(json!({"plural": "octopi"})),
        Some("octopi".to_owned())
    );
}

// Pod templates are found anywhere in a custom resource, not only under `spec`; a body with
// none, or a container without an image, is refused instead of rendered without W&B.
#[test]
fn custom_resource_pod_templates_are_found_anywhere_or_refused() {
    let k8s = json!({"apiVersion": "example.com/v1", "kind": "Trainer", "metadata": {"name": "t"},
        "template": {"spec": {"containers": [{"name": "m", "image": "${image_uri}"}]}},
        "spec": {"replicas": 2}});
    let m = workload(&run_spec(k8s), &ctx());
    let pod = &m["template"];
    assert_eq!(pod["metadata"]["labels"]["wandb.ai/run-id"], "abc123");
    assert_eq!(pod["metadata"]["labels"]["wandb.ai/monitor"], "true");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "repo/img:1");
    assert!(env_names(container).contains(&"WANDB_API_KEY".to_owned()));
    assert_eq!(env_value(container, "WANDB_RUN_ID"), Some(&json!("abc123")));
    assert_eq!(container["securityContext"], restricted_context());

    let refused = |k8s: Value| {
        let err = render(&run_spec(k8s), None, &ctx()).expect_err("refused");
        err.problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.fix))
            .collect::<Vec<_>>()
    };
    let argo_like = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "w"}, "spec": {"templates": [{"name": "a", "container": {"image": "i"}}]}});
    let problems = refused(argo_like);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("resource_args.kubernetes: put the pods in a pod template, e.g. `spec.template.spec.containers"),
        "{problems:?}"
    );
    let map_not_list = json!({"apiVersion": "example.com/v1", "kind": "Trainer", "metadata": {"name": "t"},
        "spec": {"template": {"spec": {"containers": {"name": "m", "image": "i"}}}}});
    assert_eq!(
        refused(map_not_list)[0].split(':').next(),
        Some("resource_args.kubernetes.spec.template.spec.containers")
    );
    let no_image = json!({"apiVersion": "example.com/v1", "kind": "Trainer", "metadata": {"name": "t"},
        "spec": {"template": {"spec": {"containers": [{"name": "m"}]}}}});
    assert_eq!(
        refused(no_image),
        [
            "resource_args.kubernetes.spec.template.spec.containers[0].image: set `image: ${image_uri}` to run the run's image, or name an image"
        ]
    );
}

#[test]
fn custom_resource_errors_name_the_field() {
    let err = |k8s: Value| {
        render(&run_spec(k8s), None, &ctx())
            .expect_err("invalid")
            .problems[0]
            .path
            .clone()
    };
    assert_eq!(
        err(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}})),
        "resource_args.kubernetes.apiVersion"
    );
    assert_eq!(
        err(json!({"apiVersion": "kubeflow.org/v1", "metadata": {"name": "x"}})),
        "resource_args.kubernetes.kind"
    );
    assert_eq!(
        err(json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob"})),
        "resource_args.kubernetes.metadata.name"
    );
}

// An allowed securityContext is kept; the forced keys fill only what it leaves unset.
#[test]
fn allowed_security_context_is_kept_and_filled_in() {
    let mut ctx = ctx();
    ctx.allowed_fields = BTreeSet::from(["securityContext".to_owned()]);
    let job = workload(
        &run_spec(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "main", "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["SYS_PTRACE"]}}},
            {"name": "side", "image": "side:1"}]}}}})),
        &ctx,
    );
    let containers = &job["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0]["securityContext"],
        json!({
            "runAsUser": 1000,
            "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["SYS_PTRACE"], "drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    assert_eq!(containers[1]["securityContext"], restricted_context());
}

// Difference 6
#[test]
fn allow_list_is_per_field() {
    let mut ctx = ctx();
    ctx.allowed_fields = BTreeSet::from(["serviceAccountName".to_owned()]);
    let job = workload(
        &run_spec(json!({"spec": {"template": {"spec": {"serviceAccountName": "wi"}}}})),
        &ctx,
    );
    assert_eq!(job["spec"]["template"]["spec"]["serviceAccountName"], "wi");
    assert!(
        render(
            &run_spec(json!({"spec": {"template": {"spec": {"hostPID": true}}}})),
            None,
            &ctx
        )
        .is_err()
    );
}

#[test]
fn queue_config_is_merged_under_the_run_spec() {
    let queue =
        json!({"metadata": {"labels": {"a": "queue", "b": "queue"}}, "spec": {"backoffLimit": 2}});
    let spec = run_spec(json!({"metadata": {"labels": {"b": "run"}}}));
    let job = render(&spec, Some(&queue), &ctx())
        .expect("renders")
        .workload()
        .expect("w")
        .manifest
        .clone();
    assert_eq!(job["metadata"]["labels"]["a"], "queue");
    assert_eq!(job["metadata"]["labels"]["b"], "run");
    assert_eq!(job["spec"]["backoffLimit"], 2);
    assert!(render(&spec, Some(&json!([1])), &ctx()).is_err());
}

// Difference 10: the merge is an RFC 7386 JSON merge patch; a null in the run spec removes
// the queue config's key, and a list replaces the queue config's list.
#[test]
fn a_null_in_the_run_spec_removes_the_queue_configs_key() {
    let queue = json!({"metadata": {"labels": {"team": "vision", "tier": "gpu"}},
        "spec": {"activeDeadlineSeconds": 3600, "template": {"spec": {
            "nodeSelector": {"pool": "a100"}, "tolerations": [{"key": "a"}, {"key": "b"}]}}}});
    let spec = run_spec(json!({"metadata": {"labels": {"tier": null}},
        "spec": {"activeDeadlineSeconds": null, "template": {"spec": {
            "nodeSelector": null, "tolerations": [{"key": "c", "operator": "Exists"}]}}}}));
    let job = render(&spec, Some(&queue), &ctx())
        .expect("renders")
        .workload()
        .expect("w")
        .manifest
        .clone();
    assert_eq!(job["metadata"]["labels"]["team"], "vision");
    assert!(job["metadata"]["labels"].get("tier").is_none());
    assert!(job["spec"].get("activeDeadlineSeconds").is_none());
    let pod = &job["spec"]["template"]["spec"];
    assert!(pod.get("nodeSelector").is_none());
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "c", "operator": "Exists"}])
    );
}

// Validation before the ack: every check of the render, without an image.
#[test]
fn validate_runs_the_checks_without_an_image() {
    let spec = |k8s: Value| {
        RunSpec::from_value(json!({"entity": "e", "project": "p", "job": "e/p/job:v1",
            "resource_args": {"kubernetes": k8s}}))
        .expect("valid")
    };
    let ctx = RenderContext::new("pending");
    assert!(
        render(&spec(json!({})), None, &ctx).is_err(),
        "render needs an image"
    );
    assert_eq!(
        rlaunch_render::validate(&spec(json!({})), None, &ctx),
        Ok(vec![
            "no resource args specified: rendering a default batch/v1 Job".to_owned()
        ])
    );
    let err = rlaunch_render::validate(
        &spec(json!({"spec": {"template": {"spec": {"hostNetwork": true}}}, "wait_timeout": "x"})),
        None,
        &ctx,
    )
    .expect_err("malformed");
    let paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "resource_args.kubernetes.wait_timeout",
            "resource_args.kubernetes.spec.template.spec.hostNetwork"
        ]
    );
    let cr = json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "t"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": {"containers": [
            {"name": "pytorch", "image": "${image_uri}"}]}}}}}});
    assert!(rlaunch_render::validate(&spec(cr), None, &ctx).is_ok());
}

// Difference 11: secure mode refuses host namespaces, init containers and commands in every
// pod spec, and the entrypoint override, naming each field.
#[test]
fn secure_mode_refuses_what_would_change_the_pod() {
    let mut secure = ctx();
    secure.secure_mode = true;
    secure.allowed_fields = BTreeSet::from(["hostNetwork".to_owned()]);
    let spec = RunSpec::from_value(json!({"entity": "e", "project": "p",
        "docker": {"docker_image": "i"}, "overrides": {"entry_point": ["sh"]},
        "resource_args": {"kubernetes": {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": "t"}, "spec": {"pytorchReplicaSpecs": {
                "Master": {"template": {"spec": {"hostNetwork": true, "hostIPC": false,
                    "containers": [{"name": "a", "image": "i"}]}}},
                "Worker": {"template": {"spec": {"initContainers": [{"name": "x", "image": "i"}],
                    "containers": [{"name": "a", "image": "i", "command": ["sh", "-c", "x"]}]}}}}}}}}))
    .expect("valid");
    let err = render(&spec, None, &secure).expect_err("refused");
    let mut paths: Vec<_> = err.problems.iter().map(|p| p.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "resource_args.kubernetes.spec.pytorchReplicaSpecs.Master.template.spec.hostNetwork",
            "resource_args.kubernetes.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0].command",
            "resource_args.kubernetes.spec.pytorchReplicaSpecs.Worker.template.spec.initContainers",
            "runSpec.overrides.entry_point",
        ]
    );
    assert!(err.problems.iter().all(|p| p.fix.contains("secure mode")));

    // Not in secure mode, the same spec renders (hostNetwork is allowed, the rest is legal).
    let mut open = secure.clone();
    open.secure_mode = false;
    assert!(render(&spec, None, &open).is_ok());
    // A job artifact's own entrypoint and the agent's code-mount init container stay allowed.
    let job = RunSpec::from_value(json!({"entity": "e", "project": "p", "job": "e/p/j:v1"}))
        .expect("valid");
    secure.image_uri = Some("python:3.12".into());
    secure.job_entrypoint = Some(vec!["python".into(), "train.py".into()]);
    secure.code_mount = Some(CodeMount {
        variant: CodeMountVariant::EmptyDir {
            source: CodeSource::Artifact("e/p/code:v1".into()),
            job_artifact: None,
            init_image: rlaunch_render::DEFAULT_CODE_INIT_IMAGE.into(),
        },
        install_dependencies: false,
    });
    assert!(render(&job, None, &secure).is_ok());
}
