//! Properties of the runner's classification of Pods, Jobs and custom resources.
//! The input format and the properties are documented in `src/classify.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rlaunch_fuzz::classify::run(data);
});
