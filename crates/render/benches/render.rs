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

/// One line per case with renders/s and objects/s, from a fixed-time loop after criterion's
/// own measurement (so the figures are in one place, in one unit, for the README).
fn summary() {
    println!(
        "\n{:<36} {:>12} {:>12} {:>14}",
        "case", "µs/render", "renders/s", "objects/s"
    );
    for case in cases::all() {
        let (mut renders, mut objects) = (0u64, 0u64);
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) || renders < 10 {
            let rendered = rlaunch_render::render(
                black_box(&case.spec),
                black_box(case.queue.as_ref()),
                black_box(&case.ctx),
            )
            .expect("renders");
            renders += 1;
            objects += rendered.objects.len() as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:<36} {:>12.2} {:>12.0} {:>14.0}",
            case.name,
            secs * 1e6 / renders as f64,
            renders as f64 / secs,
            objects as f64 / secs
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
