//! The `launch-render` binary itself: every example renders to a JSON array, and bad input
//! exits with code 2 and one `error:` message on stderr naming the file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::process::Command;

fn launch_render(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_launch-render"))
        .args(args)
        .output()
        .expect("launch-render runs")
}

#[test]
fn every_example_renders_as_json() {
    let examples = std::fs::read_dir("../../examples/queue-configs").expect("examples exist");
    let mut rendered = 0;
    for entry in examples {
        let path = entry.expect("readable dir").path();
        let output = launch_render(&[
            "--run-spec",
            "../../examples/run-specs/image-job.json",
            "--queue-config",
            path.to_str().expect("utf-8 path"),
            "--output",
            "json",
        ]);
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let objects: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("stdout is JSON");
        let objects = objects.as_array().expect("a JSON array");
        assert_eq!(
            objects.first().map(|o| o["kind"].clone()),
            Some("Secret".into())
        );
        assert!(objects.len() >= 2, "{}", path.display());
        rendered += 1;
    }
    assert!(rendered >= 4, "only {rendered} examples found");
    let output = launch_render(&[
        "--run-spec",
        "../../examples/run-specs/job-with-overrides.json",
        "--output",
        "json",
    ]);
    assert!(output.status.success());
}

#[test]
fn bad_input_exits_2_with_one_message_naming_the_file() {
    let output = launch_render(&[
        "--run-spec",
        "../../examples/run-specs/image-job.json",
        "--queue-config",
        "tests/fixtures/malformed.yaml",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("error: tests/fixtures/malformed.yaml"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty(), "nothing is printed on failure");
}
