use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cli::Flags;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn resolve(text: &str, env_pairs: &[(&str, &str)], flags: &Flags) -> Result<Config, ConfigError> {
    Config::resolve(
        Some((Path::new("/etc/launch/launch-config.yaml"), text)),
        &env(env_pairs),
        flags,
    )
}

fn ok(text: &str) -> Config {
    resolve(text, &[], &Flags::default()).unwrap()
}

#[test]
fn reference_defaults_apply_to_a_minimal_file() {
    let config = ok("entity: team\nqueues: [gpu]\n");
    assert_eq!(config.entity.as_deref(), Some("team"));
    assert_eq!(config.queues, vec!["gpu"]);
    assert_eq!(config.max_jobs, JobLimit::AtMost(1));
    assert_eq!(config.max_schedulers, JobLimit::AtMost(1));
    assert_eq!(config.stopped_run_timeout, Duration::from_secs(60));
    assert_eq!(config.start_timeout, Some(Duration::from_secs(1800)));
    assert_eq!(config.poll_interval, Duration::from_secs(10));
    assert_eq!(config.base_url, "https://api.wandb.ai");
    assert_eq!(config.builder, BuilderChoice::Noop);
    assert_eq!(config.preemption_retries, 5);
    assert_eq!(config.health_addr.port(), 8080);
    assert_eq!(config.metrics_addr.port(), 9090);
}

#[test]
fn unknown_key_names_the_key_the_file_and_the_nearest_key() {
    let error = resolve("queues: [a]\nmax_job: 3\n", &[], &Flags::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "/etc/launch/launch-config.yaml: unknown key `max_job` (did you mean `max_jobs`?)"
    );
    let error = resolve(
        "queues: [a]\nbuilder: {typ: noop}\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`builder.typ` (did you mean `builder.type`?)"),
        "{error}"
    );
    let error = resolve("queues: [a]\nzzzz: 1\n", &[], &Flags::default()).unwrap_err();
    assert!(
        error.to_string().contains("unknown key `zzzz` (remove it"),
        "{error}"
    );
}

#[test]
fn project_is_refused_like_any_unknown_key() {
    let error = resolve("queues: [a]\nproject: x\n", &[], &Flags::default()).unwrap_err();
    assert!(
        matches!(error, ConfigError::UnknownKey { ref key, .. } if key == "project"),
        "{error}"
    );
}

#[test]
fn max_jobs_minus_one_is_unlimited_and_zero_never_pops() {
    assert_eq!(
        ok("queues: [a]\nmax_jobs: -1\n").max_jobs,
        JobLimit::Unlimited
    );
    let paused = ok("queues: [a]\nmax_jobs: 0\n").max_jobs;
    assert_eq!(paused, JobLimit::AtMost(0));
    assert!(!paused.has_room(0));
    assert!(JobLimit::Unlimited.has_room(10_000));
    assert_eq!(
        ok("queues: [a]\nmax_jobs: \"4\"\n").max_jobs,
        JobLimit::AtMost(4)
    );
    let error = resolve("queues: [a]\nmax_jobs: -2\n", &[], &Flags::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`max_jobs` must be -1 or more, found -2"),
        "{error}"
    );
    let error = resolve("queues: [a]\nmax_jobs: lots\n", &[], &Flags::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`max_jobs` must be a whole number"),
        "{error}"
    );
}

#[test]
fn legacy_queue_key_is_appended_to_queues() {
    assert_eq!(ok("queues: [a]\nqueue: b\n").queues, vec!["a", "b"]);
    assert_eq!(ok("queue: only\n").queues, vec!["only"]);
    let error = resolve("queue: [x]\n", &[], &Flags::default()).unwrap_err();
    assert!(
        error.to_string().contains("`queue` must be a queue name"),
        "{error}"
    );
}

#[test]
fn env_overrides_the_file_and_flags_override_env() {
    let flags = Flags {
        max_jobs: Some(7),
        queues: vec!["cli-q".into()],
        ..Flags::default()
    };
    let config = resolve(
        "entity: file\nqueues: [file-q]\nmax_jobs: 2\nbase_url: https://file\n",
        &[
            ("WANDB_ENTITY", "env"),
            ("WANDB_LAUNCH_MAX_JOBS", "3"),
            ("WANDB_BASE_URL", "https://env"),
        ],
        &flags,
    )
    .unwrap();
    assert_eq!(config.entity.as_deref(), Some("env"));
    assert_eq!(config.max_jobs, JobLimit::AtMost(7));
    assert_eq!(config.queues, vec!["cli-q"]);
    assert_eq!(config.base_url, "https://env");
    let config = resolve(
        "queues: [a]\nmax_jobs: 2\n",
        &[("WANDB_LAUNCH_MAX_JOBS", "3")],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.max_jobs, JobLimit::AtMost(3));
}

#[test]
fn bad_env_values_are_messages_naming_the_variable() {
    let error = resolve(
        "queues: [a]\n",
        &[("WANDB_LAUNCH_MAX_JOBS", "four")],
        &Flags::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "environment variable WANDB_LAUNCH_MAX_JOBS must be a whole number, found \"four\" (fix: write -1 for unlimited, 0 to never pop, or a positive number)"
    );
    let error = resolve(
        "queues: [a]\n",
        &[("WANDB_LAUNCH_CODE_PVC_NAME", "code")],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("must be set together"),
        "{error}"
    );
}

#[test]
fn start_timeout_from_env_and_zero_disables_it() {
    let config = resolve(
        "queues: [a]\n",
        &[("WANDB_LAUNCH_START_TIMEOUT", "90.5")],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.start_timeout, Some(Duration::from_secs_f64(90.5)));
    let config = resolve(
        "queues: [a]\n",
        &[("WANDB_LAUNCH_START_TIMEOUT", "0")],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.start_timeout, None);
}

#[test]
fn api_key_source_is_the_env_var_or_the_file_never_both() {
    let config = resolve(
        "queues: [a]\n",
        &[("WANDB_API_KEY", "k")],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.api_key, ApiKeySource::Env);
    let config = resolve(
        "queues: [a]\n",
        &[("WANDB_API_KEY_FILE", "/run/key")],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.api_key, ApiKeySource::File("/run/key".into()));
    let error = resolve(
        "queues: [a]\n",
        &[("WANDB_API_KEY", "k"), ("WANDB_API_KEY_FILE", "/run/key")],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("set only one"), "{error}");
}

#[test]
fn key_file_loses_exactly_one_trailing_newline() {
    assert_eq!(load::trim_newline("abc\n"), "abc");
    assert_eq!(load::trim_newline("abc\r\n"), "abc");
    assert_eq!(load::trim_newline("abc"), "abc");
}

#[test]
fn no_queue_is_an_error_that_says_where_to_add_one() {
    let error = resolve("entity: team\n", &[], &Flags::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "no queue to poll in /etc/launch/launch-config.yaml: list them under `queues:` in the config file or pass `-q NAME`"
    );
}

#[test]
fn our_keys_and_addresses_parse() {
    let config = ok(
        "queues: [a]\npoll_interval: 0.5\nhealth_addr: \":18080\"\nmetrics_addr: 127.0.0.1:19090\ntarget_namespaces: [ml, research]\nallowed_macros: [TEAM]\nallowed_fields: [serviceAccountName]\nretries: {preemption: 2}\njob_secrets: none\n",
    );
    assert_eq!(config.poll_interval, Duration::from_millis(500));
    assert_eq!(config.health_addr.to_string(), "0.0.0.0:18080");
    assert_eq!(config.metrics_addr.to_string(), "127.0.0.1:19090");
    assert_eq!(
        config.default_namespace, "ml",
        "the first target namespace is the default"
    );
    assert!(config.allowed_fields.contains("serviceAccountName"));
    assert_eq!(config.preemption_retries, 2);
    assert_eq!(config.job_secrets, JobSecrets::None);
    let error = resolve(
        "queues: [a]\nretries: {preempt: 1}\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("did you mean `retries.preemption`"),
        "{error}"
    );
}

#[test]
fn env_lists_and_macro_values() {
    let config = resolve(
        "queues: [a]\nallowed_macros: [TEAM, UNSET]\n",
        &[
            ("LAUNCH_AGENT_TARGET_NAMESPACES", "ml, research"),
            ("TEAM", "vision"),
            ("LAUNCH_AGENT_HEALTH_ADDR", ":1234"),
        ],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.target_namespaces.len(), 2);
    assert_eq!(
        config.macro_env.get("TEAM").map(String::as_str),
        Some("vision")
    );
    assert!(!config.macro_env.contains_key("UNSET"));
    assert_eq!(config.health_addr.port(), 1234);
}

#[test]
fn kaniko_needs_a_destination_and_docker_is_refused() {
    let error = resolve(
        "queues: [a]\nbuilder: {type: kaniko}\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("`builder.destination` is empty"),
        "{error}"
    );
    let kaniko = ok(
        "queues: [a]\nbuilder: {type: kaniko, destination: r.example/team/x, build-context-store: s3://ctx}\n",
    );
    assert!(matches!(kaniko.builder, BuilderChoice::Kaniko(_)));
    let error = resolve(
        "queues: [a]\nbuilder: {type: docker}\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("without a Docker daemon"),
        "{error}"
    );
    let error = resolve(
        "queues: [a]\nbuilder: {destination: x}\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("needs a type"), "{error}");
    assert_eq!(
        ok("queues: [a]\nbuilder: {}\n").builder,
        BuilderChoice::Noop
    );
}

#[test]
fn the_image_pull_grace_comes_from_the_file_and_the_flag_wins() {
    assert_eq!(
        ok("queues: [a]\n").image_pull_grace,
        Duration::from_secs(120)
    );
    let file = "queues: [a]\nimage_pull_grace: 20\n";
    assert_eq!(ok(file).image_pull_grace, Duration::from_secs(20));
    let flags = Flags {
        image_pull_grace: Some(7.5),
        ..Flags::default()
    };
    let config = resolve(file, &[], &flags).unwrap();
    assert_eq!(config.image_pull_grace, Duration::from_millis(7500));
    let error = resolve(
        "queues: [a]\nimage_pull_grace: -1\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("`image_pull_grace`"), "{error}");
}

#[test]
fn negative_stopped_run_timeout_is_refused() {
    let error = resolve(
        "queues: [a]\nstopped_run_timeout: -5\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`stopped_run_timeout` must be a number of seconds from 0"),
        "{error}"
    );
}

/// A number of seconds too large for a duration is an error naming the key or flag (it
/// panicked before; found by the launch_config fuzz target), and a start timeout that large
/// means none.
#[test]
fn seconds_too_large_for_a_duration_are_an_error_not_a_panic() {
    let huge = "1e300";
    let error = resolve(
        &format!("queues: [a]\npoll_interval: {huge}\n"),
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`poll_interval` must be a number of seconds from 0"),
        "{error}"
    );
    let flags = Flags {
        image_pull_grace: Some(1e300),
        ..Flags::default()
    };
    let error = resolve("queues: [a]\n", &[], &flags).unwrap_err();
    assert!(error.to_string().contains("--image-pull-grace"), "{error}");
    let config = resolve(
        &format!("queues: [a]\nstart_timeout: {huge}\n"),
        &[],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.start_timeout, None);
    let config = resolve(
        "queues: [a]\n",
        &[("WANDB_LAUNCH_START_TIMEOUT", huge)],
        &Flags::default(),
    )
    .unwrap();
    assert_eq!(config.start_timeout, None);
}

#[test]
fn yaml_errors_name_the_file() {
    let error = resolve("queues: [a\n", &[], &Flags::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("launch agent config /etc/launch/launch-config.yaml is not valid YAML"),
        "{error}"
    );
}

#[test]
fn an_empty_file_is_fine_with_a_queue_flag() {
    let flags = Flags {
        queues: vec!["q".into()],
        ..Flags::default()
    };
    let config = resolve("", &[], &flags).unwrap();
    assert_eq!(config.queues, vec!["q"]);
}

#[test]
fn agent_config_sent_to_wandb_has_no_cloud_blocks_or_keys() {
    let config = resolve(
        "queues: [a]\nenvironment: {type: aws, region: us-east-1}\n",
        &[("WANDB_API_KEY", "secret-key-value")],
        &Flags::default(),
    )
    .unwrap();
    let sent = config.agent_config_json().to_string();
    assert!(!sent.contains("secret-key-value"));
    assert!(!sent.contains("us-east-1"));
    assert!(sent.contains("\"max_jobs\":1"));
}

#[test]
fn leader_election_keys_env_and_flags() {
    let off = ok("queues: [a]\n");
    assert_eq!(off.leader_election, crate::LeaderElection::Off);
    let file = "queues: [a]\nleader_election: true\nlease_name: from-file\nlease_duration_seconds: 30\nrenew_deadline_seconds: 20\nretry_period_seconds: 5\n";
    let on = resolve(
        file,
        &[("POD_NAMESPACE", "wandb"), ("POD_NAME", "agent-0")],
        &Flags::default(),
    )
    .unwrap();
    let crate::LeaderElection::On(lease) = on.leader_election else {
        panic!("leader election should be on");
    };
    assert_eq!(lease.name.as_deref(), Some("from-file"));
    assert_eq!(lease.namespace, "wandb");
    assert_eq!(lease.holder.as_deref(), Some("agent-0"));
    assert_eq!(lease.duration, Duration::from_secs(30));
    assert_eq!(lease.renew_deadline, Duration::from_secs(20));
    assert_eq!(lease.retry_period, Duration::from_secs(5));

    let env_on = resolve(
        "queues: [a]\n",
        &[
            ("LAUNCH_AGENT_LEADER_ELECTION", "true"),
            ("LAUNCH_AGENT_LEASE_NAMESPACE", "leases"),
        ],
        &Flags::default(),
    )
    .unwrap();
    let crate::LeaderElection::On(lease) = env_on.leader_election else {
        panic!("LAUNCH_AGENT_LEADER_ELECTION=true turns it on");
    };
    assert_eq!((lease.name, lease.namespace.as_str()), (None, "leases"));
    assert_eq!(
        (lease.duration, lease.renew_deadline, lease.retry_period),
        (
            Duration::from_secs(15),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );

    let bad = resolve(
        "queues: [a]\n",
        &[("LAUNCH_AGENT_LEADER_ELECTION", "maybe")],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        bad.to_string().contains("LAUNCH_AGENT_LEADER_ELECTION"),
        "{bad}"
    );
    let order = resolve(
        "queues: [a]\nrenew_deadline_seconds: 20\n",
        &[],
        &Flags::default(),
    )
    .unwrap_err();
    assert!(
        order
            .to_string()
            .contains("renew deadline < lease duration"),
        "{order}"
    );
    let typo = resolve("queues: [a]\nlease_duration: 15\n", &[], &Flags::default()).unwrap_err();
    assert!(
        typo.to_string().contains("lease_duration_seconds"),
        "{typo}"
    );
}

#[test]
fn the_api_key_is_never_a_macro() {
    // Found by the `launch_config` fuzz target: an allow-listed `WANDB_API_KEY` put the
    // agent's key in `macro_env`, hence in `Config`'s Debug and in any pod spec asking.
    let error = resolve(
        "queues: [a]\nallowed_macros: [TEAM, WANDB_API_KEY]\n",
        &[("WANDB_API_KEY", "secret-key-0123456789")],
        &Flags::default(),
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("allowed_macros"), "{text}");
    assert!(!text.contains("secret-key"), "{text}");
}

#[test]
fn the_precheck_follows_the_deployments_variable_over_the_file() {
    assert!(ok("queues: [a]\n").precheck, "on by default");
    let file = "queues: [a]\nprecheck: true\n";
    let off = resolve(
        file,
        &[("LAUNCH_AGENT_PRECHECK", "false")],
        &Flags::default(),
    );
    assert!(!off.unwrap().precheck);
    let bad = resolve(file, &[("LAUNCH_AGENT_PRECHECK", "yes")], &Flags::default());
    let message = bad.unwrap_err().to_string();
    assert!(message.contains("LAUNCH_AGENT_PRECHECK"), "{message}");
}

#[test]
fn the_kaniko_auth_secret_variable_and_the_ecr_endpoint_come_from_the_environment() {
    let file = "queues: [a]\nbuilder: {type: kaniko, destination: r.example/team/x, build-context-store: s3://ctx, run-spec-overrides: [destination]}\n";
    let config = resolve(
        file,
        &[
            ("WANDB_LAUNCH_KANIKO_AUTH_SECRET", "regcred"),
            ("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:5000"),
        ],
        &Flags::default(),
    )
    .unwrap();
    let BuilderChoice::Kaniko(options) = &config.builder else {
        panic!("kaniko expected");
    };
    assert_eq!(options.docker_config_secret.as_deref(), Some("regcred"));
    assert_eq!(
        config.ecr_endpoint.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert_eq!(
        config.run_spec_builder_keys.iter().collect::<Vec<_>>(),
        ["destination"]
    );
    let explicit = file.replace("}\n", ", kaniko-docker-config-secret: own}\n");
    let config = resolve(
        &explicit,
        &[("WANDB_LAUNCH_KANIKO_AUTH_SECRET", "regcred")],
        &Flags::default(),
    )
    .unwrap();
    let BuilderChoice::Kaniko(options) = &config.builder else {
        panic!("kaniko expected");
    };
    assert_eq!(options.docker_config_secret.as_deref(), Some("own"));
    assert!(ok("queues: [a]\n").run_spec_builder_keys.is_empty());
}

#[test]
fn the_chart_mounted_push_secret_comes_from_the_environment_beside_the_config_key() {
    let file = "queues: [a]\nbuilder: {type: kaniko, destination: r.example/team/x, build-context-store: s3://ctx, registry-credentials-file: /own/config.json}\n";
    let mounted = "/etc/launch-agent/registry/config.json";
    let env = [("LAUNCH_AGENT_REGISTRY_CREDENTIALS_FILE", mounted)];
    let config = resolve(file, &env, &Flags::default()).unwrap();
    let BuilderChoice::Kaniko(options) = &config.builder else {
        panic!("kaniko expected");
    };
    // Both kept: the config key is tried first (see `kaniko::registry_auth`).
    assert_eq!(
        options.registry_credentials_file.as_deref(),
        Some(Path::new("/own/config.json"))
    );
    assert_eq!(
        options.mounted_push_config.as_deref(),
        Some(Path::new(mounted))
    );
    let config = resolve("queues: [a]\n", &env, &Flags::default()).unwrap();
    assert!(matches!(config.builder, BuilderChoice::Noop));
}
