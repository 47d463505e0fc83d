//! Properties of the GPU request grammar and the quantity parser (`rlaunch-gpu`).

use rlaunch_gpu::{GpuRequest, QuantityValue, RenderOptions, apply_gpu_request};
use serde_json::{Value, json};

/// Runs one input: `[mode] text`. Mode 0 parses a GPU request, 1 a quantity, 2 checks a
/// pod spec (JSON) against Kubernetes' extended-resource rules.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => request(text),
        1 => quantity(text),
        _ => pod_spec(text),
    }
}

fn request(text: &str) {
    let Ok(request) = GpuRequest::parse(text) else {
        return;
    };
    let canonical = request.to_string();
    let again = GpuRequest::parse(&canonical)
        .unwrap_or_else(|error| panic!("{text:?} printed as {canonical:?}, which fails: {error}"));
    assert_eq!(
        again, request,
        "{text:?} -> {canonical:?} parses to another request"
    );
    assert!(request.count() >= 1, "{text:?} asks for no GPU");
    if let Some(shm) = request.shm_size() {
        assert!(
            request.shm_quantity().is_some(),
            "shm {shm:?} accepted but not a quantity"
        );
    }
    // Applying an accepted request to a plain pod yields a pod Kubernetes accepts.
    let mut pod = json!({"containers": [{"name": "main", "image": "img:1"}]});
    if apply_gpu_request(&mut pod, &request, &RenderOptions::default()).is_ok() {
        let problems = rlaunch_gpu::validate_extended_resources(&pod, "spec");
        assert!(
            problems.is_empty(),
            "{text:?} renders a pod Kubernetes refuses: {problems:?}"
        );
    }
}

fn quantity(text: &str) {
    let Ok(value) = QuantityValue::parse(text) else {
        return;
    };
    let canonical = value.to_string();
    let again = QuantityValue::parse(&canonical)
        .unwrap_or_else(|error| panic!("{text:?} printed as {canonical:?}, which fails: {error}"));
    assert_eq!(
        again, value,
        "{text:?} -> {canonical:?} parses to another amount"
    );
    // Rounding up never loses an amount.
    let units = value.value().checked_mul(1_000_000_000);
    assert!(
        units.is_none_or(|units| units >= value.nanos()),
        "{text:?}: value() rounds down"
    );
    let millis = value.milli_value().checked_mul(1_000_000);
    assert!(
        millis.is_none_or(|millis| millis >= value.nanos()),
        "{text:?}: milli_value() rounds down"
    );
}

fn pod_spec(text: &str) {
    let Ok(pod) = serde_json::from_str::<Value>(text) else {
        return;
    };
    for problem in rlaunch_gpu::validate_extended_resources(&pod, "spec") {
        assert!(!problem.to_string().is_empty());
    }
}
