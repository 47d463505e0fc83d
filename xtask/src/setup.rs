//! `cargo xtask setup`: what the machine needs for the real test node (containerd, runc,
//! busybox-static, the CNI plugins: Debian packages installed with `apt-get` as root) and
//! for the container image's static binary (the Debian package `musl-tools`, whose
//! `musl-gcc` compiles the C of aws-lc-sys, and the rustup target
//! `x86_64-unknown-linux-musl`). Idempotent: nothing runs when everything is installed.
//! `cargo xtask ci` runs it first.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use rlaunch_testkit::node::host::{self, Setup};

/// The Debian package that brings `musl-gcc`.
const MUSL_PACKAGE: &str = "musl-tools";

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
    install_musl_tools()?;
    crate::chart::ensure_musl_target()?;
    eprintln!(
        "setup: musl-gcc and the {} target",
        crate::chart::MUSL_TARGET
    );
    Ok(())
}

fn musl_gcc_works() -> bool {
    Command::new("musl-gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `apt-get install musl-tools` unless `musl-gcc` runs (`apt-get update` only on a failure).
fn install_musl_tools() -> Result<()> {
    if musl_gcc_works() {
        return Ok(());
    }
    if !host::is_root() {
        bail!(
            "musl-gcc is missing and this process is not root: run `cargo xtask setup` as root (Debian package {MUSL_PACKAGE})"
        );
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", MUSL_PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let updated = Command::new("apt-get")
            .arg("update")
            .stdin(Stdio::null())
            .status()
            .context("cannot run apt-get update")?;
        if !updated.success() || !install() {
            bail!("`apt-get install {MUSL_PACKAGE}` failed: check the machine's apt sources");
        }
    }
    eprintln!("setup: installed {MUSL_PACKAGE}");
    Ok(())
}
