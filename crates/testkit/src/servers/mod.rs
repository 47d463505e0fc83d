//! Real servers for integration tests, built once and started per test: an OCI registry
//! (go-containerregistry's `registry`, with `crane` to push images into it) and object
//! stores for build contexts: S3 ([`S3Server`], moto), Azure Blob ([`Azurite`]) and GCS
//! ([`FakeGcs`], fake-gcs-server).
//!
//! Each server is built from a registry package (Go module proxy, npm, PyPI, crates.io)
//! into `$HOME/.cache/rlaunch/servers/<name>-<version>-r<recipe>/` the first time a test
//! needs it, with the same discipline as the control plane ([`crate::binaries`]): a lock
//! file serialises concurrent builders, the build goes to a temporary sibling directory
//! that is renamed into place only when complete (a cache directory is complete or
//! absent), and progress lines go to the real stderr (`testkit servers build: …`).
//!
//! A started server lives in the process group of a small `sh` watchdog that kills it and
//! removes its state directory when the handle is dropped or the test process exits,
//! however it exits. A server that cannot be built or started is an error naming the step
//! with the last lines of its log: tests propagate it and fail, never skip.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rlaunch_testkit::Error> {
//! use rlaunch_testkit::servers::{ImageFile, Registry, TestImage};
//! let registry = Registry::start().await?;
//! let pushed = registry
//!     .push_image(&TestImage::new("team/trainer", "v1").with_file(ImageFile::new("hello.txt", "hi\n")))
//!     .await?;
//! assert!(pushed.reference.starts_with(&registry.host()));
//! # Ok(()) }
//! ```
//!
//! Cold build times, measured on 2 cores with a warm Go module cache and an empty GOCACHE:
//! registry + crane 62 s; fake-gcs-server about 4 min; moto (pip) and Azurite (npm) install
//! in under a minute.

pub(crate) mod build;
mod forward;
mod object_stores;
mod process;
mod registry;

pub use forward::TcpForward;
pub use object_stores::{AZURITE_ACCOUNT, AZURITE_KEY, Azurite, FakeGcs, S3Server};
pub use process::{ServerProcess, free_port};
pub use registry::{ImageFile, PushedImage, Registry, TestImage};

/// Progress line on the real stderr (not `eprintln!`, so libtest's capture does not hide a
/// cold build).
fn progress(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "testkit servers build: {msg}");
}
