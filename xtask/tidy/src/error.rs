//! Why tidy could not run at all (as opposed to findings, which are its output).

use std::path::PathBuf;

/// Tidy could not read the workspace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command could not be started.
    #[error("cannot run `{command}`: {source}; is the Rust toolchain on PATH?")]
    Spawn {
        /// The command.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error(
        "`{command}` failed (tidy runs `cargo metadata --offline`; if a dependency is \
         missing from the local cache, run `cargo fetch` once): {stderr}"
    )]
    Command {
        /// The command.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `cargo metadata` printed something tidy cannot read.
    #[error("cannot read the output of cargo metadata: {0}")]
    Metadata(String),
    /// A source file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
