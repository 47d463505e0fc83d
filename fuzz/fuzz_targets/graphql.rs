//! Properties of the W&B client's response decoders on arbitrary server answers.
//! The input format and the properties are documented in `src/graphql.rs`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    rlaunch_fuzz::graphql::run(data);
});
