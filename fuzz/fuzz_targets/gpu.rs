//! Properties of the GPU request grammar and the quantity parser (`rlaunch-gpu`).
//! The input format and the properties are documented in `src/gpu.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rlaunch_fuzz::gpu::run(data);
});
