//! Properties of the launch agent's config resolution (`rlaunch_agent::Config::resolve`):
//! The input format and the properties are documented in `src/launch_config.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rlaunch_fuzz::launch_config::run(data);
});
