//! `cargo xtask fuzz [TARGET] [--seconds N]`: builds the libFuzzer targets of `fuzz/` and
//! runs each (or one) for N seconds, then prints the executions per target.
//!
//! The targets are built on the ordinary (stable) toolchain with the instrumentation
//! cargo-fuzz adds — SanitizerCoverage through `-C passes=sancov-module`, `--cfg fuzzing`,
//! release mode with debug assertions and overflow checks — but no AddressSanitizer, which
//! needs nightly and buys nothing for crates that forbid `unsafe`. No extra tool to
//! install, so CI runs the same command. The build lives in `$CARGO_TARGET_DIR/fuzz`;
//! so does the working corpus, which keeps what earlier runs found.
//!
//! Seeds: `fuzz/seeds/<target>/` (hand-written), plus for `render` every run spec × queue
//! config of `examples/` and of the `launch-render` snapshot fixtures, written fresh on each
//! run so they follow the files. A crash is saved under `$CARGO_TARGET_DIR/fuzz/artifacts/`
//! and the command fails, printing how to replay it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cargo;

/// Every fuzz target, in the order they run.
pub const TARGETS: &[&str] = &["render", "launch_config", "graphql", "gpu", "classify"];

/// Targets behind a feature of the same name (they pull in an HTTP or Kubernetes client).
const FEATURE_TARGETS: &[&str] = &["launch_config", "graphql", "classify"];

/// Seconds per target without `--seconds`.
pub const DEFAULT_SECONDS: u64 = 60;

/// Instrumentation flags, as cargo-fuzz passes them (without a sanitizer).
const RUSTFLAGS: &[&str] = &[
    "-Cpasses=sancov-module",
    "-Cllvm-args=-sanitizer-coverage-level=4",
    "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
    "-Cllvm-args=-sanitizer-coverage-pc-table",
    "-Cllvm-args=-sanitizer-coverage-trace-compares",
    "--cfg",
    "fuzzing",
];

/// Run spec × queue config seeds of `render` come from these folders.
const RENDER_INPUTS: &[&str] = &[
    "examples/run-specs",
    "examples/queue-configs",
    "bins/launch-render/tests/fixtures",
];

/// What one target did.
pub struct Outcome {
    /// Target name.
    pub target: String,
    /// Inputs executed.
    pub executions: u64,
    /// Seconds it ran.
    pub seconds: f64,
    /// Inputs in the working corpus afterwards.
    pub corpus: usize,
}

/// Entry point: parses `[TARGET] [--seconds N]`, builds, runs, prints the table.
pub fn main(args: &[String]) -> Result<()> {
    let (target, seconds) = parse_args(args)?;
    let targets: Vec<&str> = match &target {
        Some(name) => vec![name.as_str()],
        None => TARGETS.to_vec(),
    };
    let outcomes = run(&targets, seconds)?;
    print_table(&outcomes);
    Ok(())
}

fn parse_args(args: &[String]) -> Result<(Option<String>, u64)> {
    let mut target = None;
    let mut seconds = DEFAULT_SECONDS;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().context("--seconds needs a number")?;
                seconds = value
                    .parse()
                    .with_context(|| format!("--seconds {value}: not a whole number"))?;
            }
            name if TARGETS.contains(&name) && target.is_none() => target = Some(name.to_owned()),
            other => bail!(
                "unknown argument `{other}` (usage: cargo xtask fuzz [{}] [--seconds N])",
                TARGETS.join(" | ")
            ),
        }
    }
    Ok((target, seconds))
}

/// Builds `targets` and runs each for `seconds`; stops at the first crash.
pub fn run(targets: &[&str], seconds: u64) -> Result<Vec<Outcome>> {
    let dirs = Dirs::new()?;
    build(&dirs, targets)?;
    let mut outcomes = Vec::new();
    for target in targets {
        outcomes.push(fuzz_one(&dirs, target, seconds)?);
    }
    Ok(outcomes)
}

/// Where the fuzz build, corpora and crashes live.
struct Dirs {
    /// `$CARGO_TARGET_DIR/fuzz` (or `target/fuzz`).
    base: PathBuf,
    /// Target triple of this machine (so RUSTFLAGS skip build scripts and proc macros).
    host: String,
}

impl Dirs {
    fn new() -> Result<Self> {
        let base = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("fuzz");
        let base = std::path::absolute(&base)
            .with_context(|| format!("cannot resolve {}", base.display()))?;
        Ok(Self {
            base,
            host: host_triple()?,
        })
    }

    fn binary(&self, target: &str) -> PathBuf {
        self.base.join(&self.host).join("release").join(target)
    }

    fn dir(&self, kind: &str, target: &str) -> Result<PathBuf> {
        let dir = self.base.join(kind).join(target);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

fn host_triple() -> Result<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = Command::new(&rustc)
        .arg("-vV")
        .output()
        .with_context(|| format!("cannot run {rustc} -vV"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_owned)
        .context("`rustc -vV` printed no host triple")
}

fn build(dirs: &Dirs, targets: &[&str]) -> Result<()> {
    let mut command = cargo();
    command
        .args([
            "build",
            "--release",
            "--locked",
            "--manifest-path",
            "fuzz/Cargo.toml",
        ])
        .args(["--target", &dirs.host])
        .env("CARGO_TARGET_DIR", &dirs.base)
        .env("RUSTFLAGS", RUSTFLAGS.join(" "))
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for target in targets {
        command.args(["--bin", target]);
        if FEATURE_TARGETS.contains(target) {
            command.args(["--features", target]);
        }
    }
    let started = Instant::now();
    let status = command
        .status()
        .context("cannot start cargo build of fuzz/")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status})");
    }
    eprintln!(
        "fuzz: targets built in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fuzz_one(dirs: &Dirs, target: &str, seconds: u64) -> Result<Outcome> {
    let corpus = dirs.dir("corpus", target)?;
    let artifacts = dirs.dir("artifacts", target)?;
    let mut seeds = vec![PathBuf::from("fuzz/seeds").join(target)];
    if target == "render" {
        let derived = dirs.base.join("derived-seeds").join(target);
        // Written fresh, so a removed example leaves no stale seed behind.
        if derived.exists() {
            std::fs::remove_dir_all(&derived)
                .with_context(|| format!("cannot clear {}", derived.display()))?;
        }
        seeds.push(render_seeds(&dirs.dir("derived-seeds", target)?)?);
    }
    let log_path = dirs.base.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    eprintln!(
        "fuzz: {target} for {seconds}s (log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let status = Command::new(dirs.binary(target))
        .arg(format!("-max_total_time={seconds}"))
        .args(["-timeout=10", "-rss_limit_mb=2048", "-max_len=16384"])
        .args(["-print_final_stats=1", "-close_fd_mask=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg(&corpus)
        .args(&seeds)
        .stdout(Stdio::null())
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start the {target} fuzzer"))?;
    let took = started.elapsed().as_secs_f64();
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = log_text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "fuzz target {target} crashed ({status}):\n{}\n\nthe input is in {}; replay it with\n  {} <that file>",
            tail.join("\n"),
            artifacts.display(),
            dirs.binary(target).display()
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        executions: stat(&log_text, "stat::number_of_executed_units:").unwrap_or(0),
        seconds: took,
        corpus: count_files(&corpus),
    })
}

/// A number libFuzzer prints at the end (`-print_final_stats=1`).
fn stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .rev()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().parse().ok())
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count())
}

/// Writes every run spec (alone and with every queue config) in the `render` input format
/// — a switches byte, the spec, NUL, the queue config — into `dir`.
fn render_seeds(dir: &Path) -> Result<PathBuf> {
    let mut specs = Vec::new();
    let mut queue_configs = Vec::new();
    for folder in RENDER_INPUTS {
        let entries = std::fs::read_dir(folder).with_context(|| format!("cannot list {folder}"))?;
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot list {folder}"))?
                .path();
            let text =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => specs.push(text),
                Some("yaml") => queue_configs.push(text),
                _ => {}
            }
        }
    }
    let mut written = 0u8;
    for spec in &specs {
        for queue in std::iter::once(None).chain(queue_configs.iter().map(Some)) {
            // Vary the context switches across seeds, so every bit starts covered.
            let mut seed = vec![written.wrapping_mul(37)];
            seed.extend_from_slice(spec);
            if let Some(queue) = queue {
                seed.push(0);
                seed.extend_from_slice(queue);
            }
            let path = dir.join(format!("seed-{written:03}"));
            std::fs::write(&path, seed)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written = written.wrapping_add(1);
        }
    }
    Ok(dir.to_owned())
}

/// Prints executions per target (the README's figure comes from this table).
pub fn print_table(outcomes: &[Outcome]) {
    eprintln!("fuzz results:");
    eprintln!(
        "  {:<14} {:>12} {:>8} {:>10} {:>8}",
        "target", "executions", "seconds", "exec/s", "corpus"
    );
    for o in outcomes {
        let rate = o.executions as f64 / o.seconds.max(0.001);
        eprintln!(
            "  {:<14} {:>12} {:>8.0} {:>10.0} {:>8}",
            o.target, o.executions, o.seconds, rate, o.corpus
        );
    }
    eprintln!("  0 crashes");
}
