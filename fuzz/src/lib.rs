//! The properties the fuzz targets check, one module per target. Each `run` takes the raw
//! fuzz input and panics (a crash to libFuzzer) when a property fails.

#[cfg(feature = "classify")]
pub mod classify;
pub mod gpu;
#[cfg(feature = "graphql")]
pub mod graphql;
#[cfg(feature = "launch_config")]
pub mod launch_config;
pub mod render;

/// Splits `data` at its first NUL byte.
pub fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}
