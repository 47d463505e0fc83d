//! Renders per second and objects per second of the render engine, for every example queue
//! config × run spec and a large PyTorchJob: `cargo xtask bench render`.
//!
//! Criterion prints the time per render and, as throughput, objects per second; after the
//! groups a summary line per case gives renders/s and objects/s from the same estimates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on broken fixtures

mod cases;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

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

/// Renders per timed batch in the summary.
const BATCH: u32 = 50;

/// One line per case with renders/s and objects/s, from a fixed-time loop after criterion's
/// own measurement (so the figures are in one place, in one unit, for the README). `best` is
/// the fastest batch of [`BATCH`] renders: on a shared machine it is the figure least
/// disturbed by other processes; the mean and the rates count every batch.
fn summary() {
    println!(
        "\n{:<36} {:>10} {:>10} {:>12} {:>14}",
        "case", "µs/render", "best µs", "renders/s", "objects/s"
    );
    for case in cases::all() {
        let (mut renders, mut objects) = (0u32, 0u64);
        let mut best = Duration::MAX;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1000) || renders < 2 * BATCH {
            let batch = Instant::now();
            for _ in 0..BATCH {
                let rendered = rlaunch_render::render(
                    black_box(&case.spec),
                    black_box(case.queue.as_ref()),
                    black_box(&case.ctx),
                )
                .expect("renders");
                objects += rendered.objects.len() as u64;
            }
            best = best.min(batch.elapsed());
            renders += BATCH;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:<36} {:>10.2} {:>10.2} {:>12.0} {:>14.0}",
            case.name,
            secs * 1e6 / f64::from(renders),
            best.as_secs_f64() * 1e6 / f64::from(BATCH),
            f64::from(renders) / secs,
            objects as f64 / secs
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
