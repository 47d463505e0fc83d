//! Properties of `rlaunch_render::render` and `validate` on arbitrary input.
//! The input format and the properties are documented in `src/render.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rlaunch_fuzz::render::run(data);
});
