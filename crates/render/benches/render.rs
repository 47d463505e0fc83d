//! Manifests per second for the CoreWeave GPU example: `cargo xtask bench render`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on broken fixtures

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rlaunch_model::{ApiKey, RunSpec};
use rlaunch_render::{ApiKeyMode, RenderContext, render};
use serde_json::Value;

fn load(path: &str) -> String {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    std::fs::read_to_string(format!("{root}{path}"))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn bench(c: &mut Criterion) {
    let spec = RunSpec::from_json(&load("examples/run-specs/image-job.json"))
        .expect("example run spec is valid");
    let queue: Value = serde_yaml_ng::from_str(&load("examples/queue-configs/coreweave-gpu.yaml"))
        .expect("example queue config is valid");
    let mut ctx = RenderContext::new("k3x9q2ab");
    ctx.run_queue_item_id = Some("UnVuUXVldWVJdGVtOjQy".into());
    ctx.queue_name = Some("gpu-a100".into());
    ctx.api_key = ApiKeyMode::Agent(ApiKey::new("bench-key-0123456789"));
    let manifests = render(&spec, Some(&queue), &ctx)
        .expect("renders")
        .objects
        .len();
    let mut group = c.benchmark_group("render");
    // Throughput in manifests (Secret + Job), so criterion prints manifests per second.
    group.throughput(Throughput::Elements(manifests as u64));
    group.bench_function("coreweave-gpu", |b| {
        b.iter(|| {
            render(black_box(&spec), Some(black_box(&queue)), black_box(&ctx)).expect("renders")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
