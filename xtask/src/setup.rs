//! `cargo xtask setup`: what the machine needs for the real test node (containerd, runc,
//! busybox-static, the CNI plugins: Debian packages installed with `apt-get` as root).
//! Idempotent: nothing runs when everything is installed. `cargo xtask ci` runs it first.

use anyhow::{Context, Result};
use rlaunch_testkit::node::host::{self, Setup};

/// Entry point of `cargo xtask setup`.
pub fn main() -> Result<()> {
    match host::install().context("installing the real node's Debian packages")? {
        Setup::AlreadyInstalled => eprintln!(
            "setup: {} already installed",
            host::DEBIAN_PACKAGES.join(", ")
        ),
        Setup::Installed(packages) => eprintln!("setup: installed {}", packages.join(", ")),
    }
    let tools = host::check().context("checking the real node's host tools")?;
    eprintln!(
        "setup: containerd {}, runc {}, CNI plugins in {}",
        tools.containerd.display(),
        tools.runc.display(),
        tools.cni_bin_dir.display()
    );
    Ok(())
}
