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

/// `rlaunch.test/<name:tag>`: how pods name an image of the node's registry.
pub fn reference(name_and_tag: &str) -> String {
    format!("{MIRROR_HOST}/{name_and_tag}")
}

fn busybox_image(repository: &str, tag: &str, busybox: &[u8]) -> TestImage {
    // busybox picks the applet from argv[0]; a copy named `sh` is the shell.
    TestImage::new(repository, tag)
        .with_file(ImageFile::executable("bin/busybox", busybox.to_vec()))
        .with_file(ImageFile::executable("bin/sh", busybox.to_vec()))
}

/// Pushes [`PAUSE`] and [`BUSYBOX`].
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
    Ok(())
}
