//! Renders every example (and every kind of bad input) through the same function the
//! binary calls, and pins the exact bytes a user sees with insta snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use clap::Parser;
use rlaunch_render_cli::{Args, run};

const IMAGE_JOB: &str = "../../examples/run-specs/image-job.json";
const OVERRIDES_JOB: &str = "../../examples/run-specs/job-with-overrides.json";

fn args(extra: &[&str]) -> Args {
    let mut argv = vec!["launch-render"];
    argv.extend_from_slice(extra);
    Args::try_parse_from(argv).expect("test arguments parse")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn render(extra: &[&str]) -> String {
    let output = run(&args(extra), &mut std::io::empty(), &no_env).expect("renders");
    let mut text = output.stdout;
    for warning in output.warnings {
        text.push_str(&format!("# warning: {warning}\n"));
    }
    text
}

fn render_error(extra: &[&str]) -> String {
    run(&args(extra), &mut std::io::empty(), &no_env)
        .expect_err("must be rejected")
        .to_string()
}

macro_rules! case {
    ($name:ident, $what:expr, [$($arg:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            let argv = [$($arg),*];
            insta::with_settings!({description => $what, info => &argv.join(" "), omit_expression => true}, {
                insta::assert_snapshot!(render(&argv));
            });
        }
    };
}

case!(
    basic_queue,
    "env, resources, labels and namespace from the queue; W&B env appended",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "../../examples/queue-configs/basic.yaml"
    ]
);
case!(
    coreweave_gpu_in_agent,
    "GPU queue rendered as inside the agent: deterministic name, agent labels, queue env",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "../../examples/queue-configs/coreweave-gpu.yaml",
        "--rqi-id",
        "UnVuUXVldWVJdGVtOjQy",
        "--run-id",
        "k3x9q2ab",
        "--queue",
        "gpu-a100",
        "--queue-entity",
        "vision-team",
        "--agent-name",
        "agent-7f3k",
        "--base-url",
        "https://wandb.example.com"
    ]
);
case!(
    pytorchjob,
    "custom resource: macros, API key by secretKeyRef, run-id label, plural from the table",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "../../examples/queue-configs/pytorchjob.yaml",
        "--run-id",
        "r42"
    ]
);
case!(
    volcano_job,
    "Volcano Job: WANDB_RUN_ID only in the first container, namespace from --namespace",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "../../examples/queue-configs/volcano.yaml",
        "--run-id",
        "r42",
        "--namespace",
        "research",
        "--output",
        "json"
    ]
);
case!(
    overrides_sidecar_and_service,
    "overrides go to the main container only; user image kept on the sidecar; additional service labelled",
    [
        "--run-spec",
        OVERRIDES_JOB,
        "--run-id",
        "run0042",
        "--release",
        "launch"
    ]
);
case!(
    explain_basic,
    "provenance of every field",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "../../examples/queue-configs/basic.yaml",
        "--run-id",
        "r1",
        "--explain"
    ]
);

case!(
    gpu_flag,
    "--gpu renders limits = requests, the GPU toleration, product affinity for every label family and /dev/shm",
    [
        "--run-spec",
        IMAGE_JOB,
        "--gpu",
        "4xA100-80GB,shm=32Gi",
        "--run-id",
        "g1"
    ]
);
case!(
    gpu_in_pytorchjob,
    "a gpu request applies to every replica of a custom resource",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/pytorchjob-gpu.yaml",
        "--run-id",
        "g2"
    ]
);

macro_rules! error_case {
    ($name:ident, $what:expr, [$($arg:expr),* $(,)?]) => {
        #[test]
        fn $name() {
            let argv = [$($arg),*];
            insta::with_settings!({description => $what, info => &argv.join(" "), omit_expression => true}, {
                insta::assert_snapshot!(render_error(&argv));
            });
        }
    };
}

error_case!(
    custom_resource_without_pod_template_is_refused,
    "a custom resource with no pod template anywhere would not reach W&B: refused with the expected path",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/cr-without-pods.yaml"
    ]
);
error_case!(
    fractional_gpu_is_rejected,
    "GPU quantities must be integers in limits, requests equal to limits",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/fractional-gpu.yaml"
    ]
);
error_case!(
    bad_gpu_request_in_queue_config,
    "an unparsable gpu key names the field and the valid forms",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/bad-gpu.yaml"
    ]
);
error_case!(
    malformed_yaml_names_the_file_and_position,
    "malformed YAML",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/malformed.yaml"
    ]
);
error_case!(
    refused_fields_are_all_named,
    "refused fields",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/host-network.yaml"
    ]
);
error_case!(
    invalid_user_name_is_rejected_up_front,
    "bad metadata.name",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/bad-name.yaml"
    ]
);
error_case!(
    custom_resource_needs_a_name,
    "CR without name",
    [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/cr-without-name.yaml"
    ]
);
error_case!(
    resource_args_must_be_a_dict,
    "non-dict resource_args",
    ["--run-spec", "tests/fixtures/resource-args-list.json"]
);
error_case!(
    missing_image_is_named,
    "no image anywhere",
    ["--run-spec", "tests/fixtures/no-image.json"]
);
error_case!(
    missing_file_is_named,
    "missing file",
    ["--run-spec", "tests/fixtures/does-not-exist.json"]
);

case!(
    null_in_the_run_spec_removes_a_queue_config_key,
    "RFC 7386 merge patch: the run spec's nulls remove cost-center and activeDeadlineSeconds from the queue config",
    [
        "--run-spec",
        "tests/fixtures/null-removes.json",
        "--queue-config",
        "../../examples/queue-configs/basic.yaml"
    ]
);

#[test]
fn macro_env_expands_only_the_named_agent_variables() {
    let env = |name: &str| match name {
        "REGION" => Some("eu-west-1".to_owned()),
        "WANDB_API_KEY" => Some("local-abcdef0123456789".to_owned()),
        _ => None,
    };
    let argv = [
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/macro-env.yaml",
    ];
    let with = |extra: &[&str]| {
        let mut all = argv.to_vec();
        all.extend_from_slice(extra);
        run(&args(&all), &mut std::io::empty(), &env)
    };
    let output = with(&["--macro-env", "REGION"]).expect("renders");
    assert!(
        output
            .stdout
            .contains("value: s3://datasets-eu-west-1/resnet50\n"),
        "{}",
        output.stdout
    );
    assert!(output.warnings.is_empty(), "{:?}", output.warnings);

    // Without the flag the variable is not read: the macro stays, with a warning naming it.
    let output = with(&[]).expect("renders");
    assert!(
        output
            .stdout
            .contains("value: s3://datasets-${REGION}/resnet50\n")
    );
    assert_eq!(output.warnings.len(), 1, "{:?}", output.warnings);
    assert!(
        output.warnings[0].contains("${REGION}"),
        "{:?}",
        output.warnings
    );

    // A named variable that is not set is a flag error, not an empty value.
    let error = with(&["--macro-env", "UNSET_VAR"]).expect_err("rejected");
    assert_eq!(
        error.to_string(),
        "--macro-env: environment variable UNSET_VAR is not set (export it or drop the flag)"
    );
}

#[test]
fn allow_list_lets_a_named_field_through() {
    let text = render(&[
        "--run-spec",
        IMAGE_JOB,
        "--queue-config",
        "tests/fixtures/host-network.yaml",
        "--allow-field",
        "serviceAccountName",
        "--allow-field",
        "hostNetwork",
    ]);
    assert!(text.contains("serviceAccountName: trainer"), "{text}");
}

#[test]
fn api_key_is_a_placeholder_unless_an_env_var_is_named() {
    let text = render(&["--run-spec", IMAGE_JOB]);
    assert!(text.contains(rlaunch_render::API_KEY_PLACEHOLDER));
    let env = |name: &str| (name == "MY_KEY").then(|| "local-abcdef0123456789".to_owned());
    let output = run(
        &args(&["--run-spec", IMAGE_JOB, "--api-key-env", "MY_KEY"]),
        &mut std::io::empty(),
        &env,
    )
    .expect("renders");
    assert!(
        output
            .stdout
            .contains("password: bG9jYWwtYWJjZGVmMDEyMzQ1Njc4OQ=="),
        "{}",
        output.stdout
    );
    assert!(!output.stdout.contains("local-abcdef0123456789"));
}

#[test]
fn json_output_is_one_array_in_creation_order() {
    let text = render(&["--run-spec", OVERRIDES_JOB, "--output", "json"]);
    let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let kinds: Vec<&str> = value
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["Secret", "Deployment", "Job"]);
}

#[test]
fn run_spec_from_stdin() {
    let text = std::fs::read_to_string(IMAGE_JOB).expect("example exists");
    let output = run(&args(&["--run-spec", "-"]), &mut text.as_bytes(), &no_env).expect("renders");
    assert!(output.stdout.contains("kind: Job"));
}
