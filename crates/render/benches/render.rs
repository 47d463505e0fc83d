//! Renders per second and objects per second of the render engine, for every example queue
//! config × run spec and a large PyTorchJob: `cargo xtask bench render`.
//!
//! Criterion prints the time per render and, as throughput, objects per second; after the
//! groups a summary line per case gives the time per render, renders/s and objects/s, and
//! the floor any engine producing these `serde_json::Value` manifests faces: the time to
//! clone them and to serialise them (see [`summary`]).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on broken fixtures

mod cases;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("render");
    for case in cases::all() {
        let objects = rlaunch_render::render(&case.spec, case.queue.as_ref(), &case.ctx)
            .expect("renders")
            .objects
            .len();
        // Throughput in objects (Secret, services, workload): criterion prints objects/s.
        group.throughput(Throughput::Elements(objects as u64));
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                rlaunch_render::render(
                    black_box(&case.spec),
                    black_box(case.queue.as_ref()),
                    black_box(&case.ctx),
                )
                .expect("renders")
            })
        });
    }
    group.finish();
    summary();
}

/// Renders (or clones, or serialisations) per timed batch in the summary.
const BATCH: u32 = 50;

/// Time each summary figure is measured for.
const SUMMARY_TIME: Duration = Duration::from_millis(1000);

/// One line per case, from fixed-time loops after criterion's own measurement (so the
/// figures are in one place, in one unit, for the README). The columns:
///
/// - `µs/render`, `best-µs`: mean and fastest batch of [`BATCH`] renders (on a shared machine
///   the best batch is the figure least disturbed by other processes); `renders/s` and
///   `objects/s` count every batch.
/// - `clone-µs`: best batch of cloning the output manifests (`Vec<Value>`). A lower bound for
///   any engine whose output is this `serde_json::Value` tree: it must at least allocate and
///   fill every node a clone does.
/// - `to_vec-µs`: best batch of `serde_json::to_vec` of them: producing the bytes the API
///   server receives.
/// - `bytes`, `nodes`: size of that JSON and the number of JSON values in the manifests.
fn summary() {
    println!(
        "\n{:<36} {:>10} {:>10} {:>12} {:>14} {:>9} {:>10} {:>7} {:>6}",
        "case",
        "µs/render",
        "best-µs",
        "renders/s",
        "objects/s",
        "clone-µs",
        "to_vec-µs",
        "bytes",
        "nodes"
    );
    for case in cases::all() {
        let mut objects = 0u64;
        let render = timed(|| {
            let rendered = rlaunch_render::render(
                black_box(&case.spec),
                black_box(case.queue.as_ref()),
                black_box(&case.ctx),
            )
            .expect("renders");
            objects += rendered.objects.len() as u64;
        });
        let manifests: Vec<Value> =
            rlaunch_render::render(&case.spec, case.queue.as_ref(), &case.ctx)
                .expect("renders")
                .objects
                .into_iter()
                .map(|object| object.manifest)
                .collect();
        let clone = timed(|| drop(black_box(black_box(&manifests).clone())));
        let to_vec = timed(|| drop(black_box(serde_json::to_vec(black_box(&manifests)))));
        let bytes = serde_json::to_vec(&manifests).expect("serialises").len();
        let nodes: usize = manifests.iter().map(nodes).sum();
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>12.0} {:>14.0} {:>9.2} {:>10.2} {bytes:>7} {nodes:>6}",
            case.name,
            render.mean_micros(),
            render.best_micros(),
            render.per_second(),
            objects as f64 / render.elapsed.as_secs_f64(),
            clone.best_micros(),
            to_vec.best_micros(),
        );
    }
}

/// What a fixed-time loop measured.
struct Timing {
    runs: u32,
    elapsed: Duration,
    best_batch: Duration,
}

impl Timing {
    fn mean_micros(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / f64::from(self.runs)
    }

    fn best_micros(&self) -> f64 {
        self.best_batch.as_secs_f64() * 1e6 / f64::from(BATCH)
    }

    fn per_second(&self) -> f64 {
        f64::from(self.runs) / self.elapsed.as_secs_f64()
    }
}

/// Runs `f` in batches of [`BATCH`] for [`SUMMARY_TIME`] (and at least two batches).
fn timed(mut f: impl FnMut()) -> Timing {
    let (mut runs, mut best_batch) = (0u32, Duration::MAX);
    let started = Instant::now();
    while started.elapsed() < SUMMARY_TIME || runs < 2 * BATCH {
        let batch = Instant::now();
        for _ in 0..BATCH {
            f();
        }
        best_batch = best_batch.min(batch.elapsed());
        runs += BATCH;
    }
    let elapsed = started.elapsed();
    Timing {
        runs,
        elapsed,
        best_batch,
    }
}

/// JSON values in `value`, itself included.
fn nodes(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(nodes).sum(),
        Value::Object(map) => map.values().map(nodes).sum(),
        _ => 0,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
