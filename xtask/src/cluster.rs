//! `cargo xtask cluster …` (placeholder until the test-cluster work lands).

/// Entry point of `cargo xtask cluster`.
pub fn main(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("`cargo xtask cluster` is not available yet")
}
