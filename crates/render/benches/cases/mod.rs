//! The render benchmark's inputs: every example queue config (and none) × every example run
//! spec, plus a large PyTorchJob whose run config is long enough to be split into env chunks.
//! Shared by the criterion bench (`render`) and the fixed-count one (`render_count`).

use rlaunch_model::{ApiKey, RunSpec};
use rlaunch_render::{ApiKeyMode, RenderContext};
use serde_json::{Value, json};

/// Queue configs under `examples/queue-configs`, by file stem; `none` renders without one.
pub const QUEUE_CONFIGS: [&str; 5] = ["none", "basic", "coreweave-gpu", "pytorchjob", "volcano"];

/// Run specs under `examples/run-specs`, by file stem.
pub const RUN_SPECS: [&str; 2] = ["image-job", "job-with-overrides"];

/// Worker replicas of the large case, each its own replica type with its own pod template.
const LARGE_REPLICA_TYPES: usize = 32;

/// Length of the large case's run config, in JSON characters: past the 32,670-character
/// env var limit, so `WANDB_CONFIG` is split into chunks.
const LARGE_CONFIG_CHARS: usize = 34_000;

/// One benchmark input.
pub struct Case {
    /// `queue-config/run-spec`, or `large-pytorchjob`.
    pub name: String,
    pub spec: RunSpec,
    pub queue: Option<Value>,
    pub ctx: RenderContext,
}

fn load(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    std::fs::read_to_string(format!("{root}{path}"))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The agent's context for one render: a run queue item, a queue and the agent's key.
pub fn context() -> RenderContext {
    let mut ctx = RenderContext::new("k3x9q2ab");
    ctx.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjQy".into());
    ctx.queue_name = Some("gpu-a100".into());
    ctx.api_key = ApiKeyMode::Agent(ApiKey::new("bench-key-0123456789"));
    ctx
}

fn example_queue(name: &str) -> Option<Value> {
    (name != "none").then(|| {
        serde_yaml_ng::from_str(&load(&format!("examples/queue-configs/{name}.yaml")))
            .expect("example queue config is valid")
    })
}

fn example_spec(name: &str) -> RunSpec {
    RunSpec::from_json(&load(&format!("examples/run-specs/{name}.json")))
        .expect("example run spec is valid")
}

/// Every example pair that renders (some pairs are refused by design, e.g. a Job-shaped run
/// spec section over a custom resource), then the large case.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    for queue in QUEUE_CONFIGS {
        for spec in RUN_SPECS {
            let case = example(queue, spec);
            if rlaunch_render::render(&case.spec, case.queue.as_ref(), &case.ctx).is_ok() {
                cases.push(case);
            }
        }
    }
    cases.push(large());
    cases
}

/// One case by name (`queue-config/run-spec` or `large-pytorchjob`), built alone.
#[allow(dead_code, reason = "used by render_count, not by the criterion bench")]
pub fn named(name: &str) -> Option<Case> {
    if name == "large-pytorchjob" {
        return Some(large());
    }
    let (queue, spec) = name.split_once('/')?;
    (QUEUE_CONFIGS.contains(&queue) && RUN_SPECS.contains(&spec)).then(|| example(queue, spec))
}

fn example(queue: &str, spec: &str) -> Case {
    Case {
        name: format!("{queue}/{spec}"),
        spec: example_spec(spec),
        queue: example_queue(queue),
        ctx: context(),
    }
}

/// A PyTorchJob with a master and many worker replica types (each with sidecars and env),
/// and a run config long enough to be chunked.
pub fn large() -> Case {
    let container = |name: &str| {
        json!({"name": name, "image": "${image_uri}",
            "env": (0..20).map(|i| json!({"name": format!("VAR_{i}"), "value": format!("${{run_id}}-{i}")})).collect::<Vec<_>>(),
            "resources": {"limits": {"nvidia.com/gpu": 8, "cpu": "96", "memory": "960Gi"},
                          "requests": {"nvidia.com/gpu": 8, "cpu": "90", "memory": "900Gi"}},
            "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]})
    };
    let replica = |replicas: usize| {
        json!({"replicas": replicas, "restartPolicy": "OnFailure",
            "template": {"metadata": {"labels": {"role": "trainer"}}, "spec": {
                "containers": [container("pytorch"), {"name": "log-shipper", "image": "fluent/fluent-bit:3.1"}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Gi"}}]}}})
    };
    let mut replica_specs = serde_json::Map::new();
    replica_specs.insert("Master".into(), replica(1));
    for i in 0..LARGE_REPLICA_TYPES {
        replica_specs.insert(format!("Worker{i}"), replica(16));
    }
    let queue = json!({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
        "metadata": {"name": "ddp-${run_id}", "namespace": "training"},
        "spec": {"pytorchReplicaSpecs": replica_specs}});
    let mut config = serde_json::Map::new();
    let mut i = 0;
    while Value::Object(config.clone()).to_string().len() < LARGE_CONFIG_CHARS {
        config.insert(
            format!("hyperparameter_{i:04}"),
            json!(format!("value-{i}-{}", "x".repeat(40))),
        );
        i += 1;
    }
    let spec = RunSpec::from_value(json!({"entity": "vision-team", "project": "llm",
        "name": "large", "author": "ada",
        "docker": {"docker_image": "ghcr.io/example/llm:2.0"},
        "overrides": {"run_config": config}}))
    .expect("large run spec is valid");
    Case {
        name: "large-pytorchjob".into(),
        spec,
        queue: Some(queue),
        ctx: context(),
    }
}
