//! `cargo xtask bench render [--compare-reference] [--compare FILE]`: the render engine's
//! criterion bench (every example queue config × run spec, plus a large PyTorchJob), and
//! optionally W&B's own manifest construction timed in-process on the same examples, with
//! the ratio per example. Writes `target/bench/render.json`.
//!
//! The bench's summary also gives, per case, the floor any engine whose output is the same
//! `serde_json::Value` manifests faces: the time to clone them (it must build at least that
//! tree) and to `serde_json::to_vec` them (the bytes the API server receives). The
//! comparison prints W&B ÷ that clone floor: the largest ratio such an engine could show.
//!
//! The reference side runs `xtask/assets/reference_render_bench.py` in a venv holding W&B's
//! agent (`wandb[launch]` and `kubernetes-asyncio`, pinned in `rlaunch_testkit::reference`),
//! created once under `~/.cache/rlaunch/reference-venv`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::{bench_report, cargo};

/// Seconds the reference script spends on each case (per measurement).
const REFERENCE_SECONDS: &str = "2";

/// One case of the bench summary: our mean and best-batch time per render, and the floor.
struct Ours {
    case: String,
    micros: f64,
    best: f64,
    floor: Option<Floor>,
}

/// Best-batch µs to clone the output manifests and to serialise them, their JSON size and
/// value count (the summary's `clone-µs`, `to_vec-µs`, `bytes`, `nodes` columns).
struct Floor {
    clone_micros: f64,
    to_vec_micros: f64,
    bytes: f64,
    nodes: f64,
}

/// One case as the reference script reports it.
enum Theirs {
    Timed {
        micros: f64,
        best: f64,
        micros_with_project: f64,
    },
    Refused(String),
}

/// Runs the bench; with `--compare-reference`, then the reference and the ratios.
pub fn run(args: &[String]) -> Result<()> {
    let (compare, args) = bench_report::take_compare(args)?;
    let earlier = compare
        .as_deref()
        .map(bench_report::read_earlier)
        .transpose()?;
    let with_reference = match args.as_slice() {
        [] => false,
        [flag] if flag == "--compare-reference" => true,
        _ => bail!("usage: cargo xtask bench render [--compare-reference] [--compare FILE]"),
    };
    let report = bench(with_reference)?;
    bench_report::write("render", &report)?;
    if let (Some(path), Some(earlier)) = (compare, earlier) {
        bench_report::print_comparison(&path, &earlier, &report);
    }
    Ok(())
}

fn bench(with_reference: bool) -> Result<Value> {
    let mut report = bench_report::context();
    let ours = bench_ours()?;
    report["ours"] = ours_json(&ours);
    if !with_reference {
        return Ok(report);
    }
    let python = reference_python()?;
    let cases: Vec<&str> = ours
        .iter()
        .map(|o| o.case.as_str())
        .filter(|case| case.contains('/'))
        .collect();
    bench_report::phase(
        "render",
        "reference: W&B's manifest construction, in-process",
    );
    let theirs = bench_reference(&python, &cases)?;
    print_comparison(&ours, &theirs);
    report["reference"] = theirs_json(&ours, &theirs);
    Ok(report)
}

/// Per case: mean and best µs per render, renders per second, and the floor figures.
fn ours_json(ours: &[Ours]) -> Value {
    let cases: serde_json::Map<String, Value> = ours
        .iter()
        .map(|o| {
            let mut figures = json!({"micros_per_render": o.micros, "best_micros": o.best,
                "renders_per_s": 1e6 / o.micros});
            if let Some(floor) = &o.floor {
                figures["clone_floor_best_micros"] = json!(floor.clone_micros);
                figures["to_vec_best_micros"] = json!(floor.to_vec_micros);
                figures["output_bytes"] = json!(floor.bytes);
                figures["output_nodes"] = json!(floor.nodes);
                figures["best_over_clone_floor"] = json!(o.best / floor.clone_micros);
            }
            (o.case.clone(), figures)
        })
        .collect();
    Value::Object(cases)
}

/// Per case: the reference's figures and W&B ÷ ours, or why it refused the case.
fn theirs_json(ours: &[Ours], theirs: &[(String, Theirs)]) -> Value {
    let cases: serde_json::Map<String, Value> = theirs
        .iter()
        .map(|(case, result)| {
            let mine = ours.iter().find(|o| &o.case == case);
            let figures = match result {
                Theirs::Timed {
                    micros,
                    best,
                    micros_with_project,
                } => json!({"micros_per_render": micros, "best_micros": best,
                    "micros_with_project": micros_with_project, "renders_per_s": 1e6 / micros,
                    "times_slower_than_ours": mine.map(|m| micros / m.micros),
                    "best_times_clone_floor": mine
                        .and_then(|m| m.floor.as_ref())
                        .map(|f| best / f.clone_micros)}),
                Theirs::Refused(message) => json!({"refused": message}),
            };
            (case.clone(), figures)
        })
        .collect();
    Value::Object(cases)
}

/// Runs the criterion bench, echoing its output, and reads its summary table.
fn bench_ours() -> Result<Vec<Ours>> {
    bench_report::phase(
        "render",
        "ours: cargo bench -p rlaunch-render --bench render",
    );
    let mut child = cargo()
        .args(["bench", "-p", "rlaunch-render", "--bench", "render"])
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo bench")?;
    let stdout = child.stdout.take().context("cargo bench has no stdout")?;
    let mut ours = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo bench output")?;
        println!("{line}");
        if line.starts_with("case ") {
            columns = Some(line.split_whitespace().map(str::to_owned).collect());
        } else if let Some(columns) = &columns
            && let Some(row) = summary_row(columns, &line)
        {
            ours.push(row);
        }
    }
    let status = child.wait().context("cargo bench did not finish")?;
    if !status.success() {
        bail!("bench render failed ({status})");
    }
    if ours.is_empty() {
        bail!("the bench printed no summary table (a `case µs/render …` header and rows)");
    }
    Ok(ours)
}

/// A row of the summary, read by its header's column names (`case µs/render best-µs
/// renders/s objects/s`, then `clone-µs to_vec-µs bytes nodes` for the floor): `None` for a
/// line that is not a row (another field count, or a required figure missing).
fn summary_row(columns: &[String], line: &str) -> Option<Ours> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != columns.len() {
        return None;
    }
    let figure = |name: &str| -> Option<f64> {
        let at = columns.iter().position(|c| c == name)?;
        fields[at].parse().ok()
    };
    let floor = || {
        Some(Floor {
            clone_micros: figure("clone-µs")?,
            to_vec_micros: figure("to_vec-µs")?,
            bytes: figure("bytes")?,
            nodes: figure("nodes")?,
        })
    };
    Some(Ours {
        case: (*fields.first()?).to_owned(),
        micros: figure("µs/render")?,
        best: figure("best-µs")?,
        floor: floor(),
    })
}

/// The reference venv's python (`rlaunch_testkit::reference`, installed once).
fn reference_python() -> Result<PathBuf> {
    Ok(rlaunch_testkit::reference::ensure_installed()?.python)
}

/// Runs the timing script on the example cases; one result per case it printed.
fn bench_reference(python: &Path, cases: &[&str]) -> Result<Vec<(String, Theirs)>> {
    let output = Command::new(python)
        .arg("xtask/assets/reference_render_bench.py")
        .arg("examples")
        .arg(REFERENCE_SECONDS)
        .args(cases)
        .env("WANDB_SILENT", "true")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot start the reference timing script")?;
    if !output.status.success() {
        bail!("the reference timing script failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().filter_map(reference_row).collect())
}

/// `<case> <µs> <best µs> <µs with project> <objects>` or `<case> error <message>`.
fn reference_row(line: &str) -> Option<(String, Theirs)> {
    let (case, rest) = line.split_once(' ')?;
    if let Some(message) = rest.strip_prefix("error ") {
        return Some((case.to_owned(), Theirs::Refused(message.to_owned())));
    }
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [micros, best, micros_with_project, _objects] = fields.as_slice() else {
        return None;
    };
    Some((
        case.to_owned(),
        Theirs::Timed {
            micros: *micros,
            best: *best,
            micros_with_project: *micros_with_project,
        },
    ))
}

fn print_comparison(ours: &[Ours], theirs: &[(String, Theirs)]) {
    println!(
        "\n{:<36} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7} {:>13} {:>7} {:>17}",
        "case",
        "ours µs",
        "W&B µs",
        "ratio",
        "ours best",
        "W&B best",
        "ratio",
        "W&B+proj µs",
        "ratio",
        "W&B ÷ clone floor"
    );
    for (case, result) in theirs {
        let Some(mine) = ours.iter().find(|o| &o.case == case) else {
            continue;
        };
        match result {
            Theirs::Timed {
                micros,
                best,
                micros_with_project,
            } => {
                let floor = mine.floor.as_ref().map_or_else(
                    || "-".to_owned(),
                    |f| format!("{:.0}x", best / f.clone_micros),
                );
                println!(
                    "{case:<36} {:>9.2} {micros:>9.1} {:>6.0}x {:>9.2} {best:>9.1} {:>6.0}x \
                     {micros_with_project:>13.1} {:>6.0}x {floor:>17}",
                    mine.micros,
                    micros / mine.micros,
                    mine.best,
                    best / mine.best,
                    micros_with_project / mine.micros
                )
            }
            Theirs::Refused(message) => {
                println!(
                    "{case:<36} {:>9.2}   W&B's agent refuses it: {message}",
                    mine.micros
                )
            }
        }
    }
    println!(
        "\nµs: mean per render; best: the fastest batch (least disturbed by other processes on a \
         shared machine). W&B: its runner's manifest construction from a built LaunchProject; \
         W&B+proj: with the LaunchProject built from the launch spec each time, as its agent \
         does per queue item. W&B ÷ clone floor: W&B's best ÷ the best time to merely clone our \
         output manifests (the bench's clone-µs), the largest ratio any engine whose output is \
         this serde_json::Value tree could show."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(header: &str) -> Vec<String> {
        header.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn summary_rows_are_read_by_column_name_with_or_without_the_floor() {
        let full =
            columns("case µs/render best-µs renders/s objects/s clone-µs to_vec-µs bytes nodes");
        let row = summary_row(
            &full,
            "basic/image-job 11.04 9.57 90585 181170 3.89 2.06 2049 109",
        )
        .expect("a row");
        assert_eq!(
            (row.case.as_str(), row.micros, row.best),
            ("basic/image-job", 11.04, 9.57)
        );
        let floor = row.floor.expect("the floor columns");
        assert_eq!(
            (
                floor.clone_micros,
                floor.to_vec_micros,
                floor.bytes,
                floor.nodes
            ),
            (3.89, 2.06, 2049.0, 109.0)
        );
        let short = columns("case best-µs µs/render renders/s objects/s");
        let row = summary_row(&short, "x 2.5 3.5 1 2").expect("a row");
        assert_eq!(
            (row.micros, row.best, row.floor.is_none()),
            (3.5, 2.5, true)
        );
        assert!(summary_row(&full, "Benchmarking render/x: Warming up").is_none());
    }
}
