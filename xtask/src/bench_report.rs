//! What every bench shares: its progress lines, the machine and versions it records, its
//! JSON file under `target/bench/`, and `--compare FILE` (every figure of this run beside
//! the same figure of an earlier JSON, with the ratio now ÷ then).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{Value, json};

/// Where the benches write their JSON.
const DIR: &str = "target/bench";

/// A progress line: `==> bench <name>: <text>` on stderr.
pub fn phase(bench: &str, text: &str) {
    eprintln!("==> bench {bench}: {text}");
}

/// The machine (cores, memory, load at start) and the versions: ours, the commit, rustc,
/// W&B's agent.
pub fn context() -> Value {
    json!({
        "machine": crate::bench_proc::machine(),
        "versions": {
            "ours": env!("CARGO_PKG_VERSION"),
            "commit": command_line("git", &["rev-parse", "--short", "HEAD"]),
            "rustc": command_line("rustc", &["--version"]),
            "reference": format!("wandb {}", rlaunch_testkit::reference::WANDB_VERSION),
        },
    })
}

/// The first line a command prints, or `unknown`.
fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout);
            text.lines().next().map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Writes `target/bench/<name>.json` and says where.
pub fn write(name: &str, report: &Value) -> Result<PathBuf> {
    let dir = Path::new(DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(path)
}

/// Takes `--compare FILE` out of `args`: the flag's file, and the other arguments.
pub fn take_compare(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>)> {
    let mut rest = Vec::new();
    let mut compare = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--compare" {
            let file = args.next().context("--compare needs a JSON file")?;
            compare = Some(PathBuf::from(file));
        } else {
            rest.push(arg.clone());
        }
    }
    Ok((compare, rest))
}

/// The entry of a bench that needs a tokio runtime: takes `--compare FILE` out of `args`
/// (reading that earlier JSON first, so a wrong path fails before the bench runs), parses
/// the rest with `parse`, runs `bench` on a multi-thread runtime, and prints now ÷ then
/// for every figure when `--compare` was given.
pub fn run_on_runtime<O, F>(
    args: &[String],
    parse: impl FnOnce(&[String]) -> Result<O>,
    bench: impl FnOnce(O) -> F,
) -> Result<()>
where
    F: Future<Output = Result<Value>>,
{
    let (compare, args) = take_compare(args)?;
    let earlier = compare.as_deref().map(read_earlier).transpose()?;
    let options = parse(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = runtime.block_on(bench(options))?;
    if let (Some(path), Some(earlier)) = (compare, earlier) {
        print_comparison(&path, &earlier, &report);
    }
    Ok(())
}

/// Reads an earlier result first, so a wrong path fails before the bench runs.
pub fn read_earlier(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {} (an earlier bench JSON)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// The figures `rows` (label, key) of `report`'s `ours` and `reference` side by side, with
/// ours ÷ W&B's.
pub fn print_side_by_side(report: &Value, rows: &[(&str, &str)]) {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(6)
        + 2;
    println!(
        "\n{:<width$} {:>12} {:>12} {:>10}",
        "figure", "ours", "W&B", "ours/W&B"
    );
    for (label, key) in rows {
        let ours = report["ours"][key].as_f64();
        let theirs = report["reference"][key].as_f64();
        let ratio = ours.zip(theirs).map(|(o, t)| o / t);
        println!(
            "{label:<width$} {:>12} {:>12} {:>10}",
            fmt(ours),
            fmt(theirs),
            fmt(ratio)
        );
    }
}

/// A figure with three decimals, or `-` when it is missing.
pub fn fmt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"))
}

/// Prints every number of `now` that `earlier` also has, with now ÷ earlier.
pub fn print_comparison(earlier_path: &Path, earlier: &Value, now: &Value) {
    let mut rows = Vec::new();
    pair_numbers("", earlier, now, &mut rows);
    println!("\ncompared with {}:", earlier_path.display());
    println!(
        "{:<56} {:>12} {:>12} {:>9}",
        "figure", "earlier", "now", "now/then"
    );
    for (path, then, current) in rows {
        let ratio = if then == 0.0 {
            "-".to_owned()
        } else {
            format!("{:.3}", current / then)
        };
        println!("{path:<56} {then:>12.3} {current:>12.3} {ratio:>9}");
    }
}

/// Every numeric leaf present in both, by its dotted path (machine and options left out).
fn pair_numbers(path: &str, earlier: &Value, now: &Value, rows: &mut Vec<(String, f64, f64)>) {
    match (earlier, now) {
        (Value::Object(then), Value::Object(current)) => {
            for (key, value) in current {
                if path.is_empty() && matches!(key.as_str(), "machine" | "versions" | "options") {
                    continue;
                }
                if let Some(old) = then.get(key) {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    pair_numbers(&child, old, value, rows);
                }
            }
        }
        (Value::Number(then), Value::Number(current)) => {
            if let (Some(then), Some(current)) = (then.as_f64(), current.as_f64()) {
                rows.push((path.to_owned(), then, current));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbers_in_both_are_paired_and_the_machine_is_left_out() {
        let earlier = json!({"machine": {"cores": 2}, "ours": {"a": 2.0, "b": 1, "gone": 3},
            "label": "x"});
        let now = json!({"machine": {"cores": 4}, "ours": {"a": 1.0, "b": 4, "new": 5},
            "label": "y"});
        let mut rows = Vec::new();
        pair_numbers("", &earlier, &now, &mut rows);
        assert_eq!(
            rows,
            vec![
                ("ours.a".to_owned(), 2.0, 1.0),
                ("ours.b".to_owned(), 1.0, 4.0)
            ]
        );
    }

    #[test]
    fn compare_is_taken_out_of_the_arguments() {
        let args: Vec<String> = ["--items", "5", "--compare", "old.json"]
            .map(str::to_owned)
            .into();
        let (compare, rest) = take_compare(&args).unwrap_or_default();
        assert_eq!(compare, Some(PathBuf::from("old.json")));
        assert_eq!(rest, ["--items", "5"]);
    }
}
