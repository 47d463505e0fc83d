//! The images every real node starts with, built `FROM scratch` from the host's static
//! busybox and pushed into the node's registry.

use std::path::Path;

use crate::servers::{ImageFile, Registry, TestImage};
use crate::{Result, io_err};

use super::config::MIRROR_HOST;

/// The pod sandbox ("pause") image: busybox sleeping forever.
pub const PAUSE: &str = "pause:1";
/// busybox with `/bin/sh`: give it a `command`.
pub const BUSYBOX: &str = "busybox:1";
/// busybox plus `/bin/trainer` (`assets/node/trainer.sh`, the entrypoint): calls the W&B
/// server of `WANDB_BASE_URL` as `wandb.init` does (`upsertBucket`), prints
/// `TRAINER_STEPS` log lines, then allocates past its memory limit (`TRAINER_ALLOCATE=1`),
/// runs until SIGTERM and reports it to W&B as an `upsertBucket` with the description
/// [`TRAINER_SIGTERM`] (`TRAINER_FOREVER=1`), or exits with `TRAINER_EXIT_CODE`.
pub const TRAINER: &str = "trainer:1";
/// The description of the `upsertBucket` the trainer sends when it receives SIGTERM.
pub const TRAINER_SIGTERM: &str = "trainer: SIGTERM";
/// The trainer script (`/bin/trainer` of [`TRAINER`]), for images built from it.
pub const TRAINER_SCRIPT: &str = include_str!("../../assets/node/trainer.sh");

/// `rlaunch.test/<name:tag>`: how pods name an image of the node's registry.
pub fn reference(name_and_tag: &str) -> String {
    format!("{MIRROR_HOST}/{name_and_tag}")
}

/// An image of `busybox` (the bytes of a static busybox) as `/bin/busybox` and `/bin/sh`.
pub fn busybox_image(repository: &str, tag: &str, busybox: &[u8]) -> TestImage {
    // busybox picks the applet from argv[0]; a copy named `sh` is the shell.
    TestImage::new(repository, tag)
        .with_file(ImageFile::executable("bin/busybox", busybox.to_vec()))
        .with_file(ImageFile::executable("bin/sh", busybox.to_vec()))
}

/// Pushes [`PAUSE`], [`BUSYBOX`] and [`TRAINER`].
pub async fn push_base_images(registry: &Registry, busybox: &Path) -> Result<()> {
    let bytes = std::fs::read(busybox).map_err(io_err("cannot read busybox", busybox))?;
    let pause = busybox_image("pause", "1", &bytes).with_entrypoint([
        "/bin/busybox",
        "sleep",
        "2147483647",
    ]);
    registry.push_image(&pause).await?;
    registry
        .push_image(&busybox_image("busybox", "1", &bytes))
        .await?;
    let trainer = busybox_image("trainer", "1", &bytes)
        .with_file(ImageFile::executable("bin/trainer", TRAINER_SCRIPT))
        .with_entrypoint(["/bin/sh", "/bin/trainer"]);
    registry.push_image(&trainer).await?;
    Ok(())
}
