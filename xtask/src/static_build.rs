//! A static xlb binary for old distributions (RHEL 8, Debian 11, Ubuntu 20.04: glibc 2.28-2.31,
//! while the build host's glibc is newer): `x86_64-unknown-linux-musl`, fully static.
//!
//! rustup cannot download targets here and the stable toolchain has no musl std, so the standard
//! library is built from nightly's rust-src (`-Z build-std`) and linked with Debian's musl-tools
//! (`musl-gcc`, musl's libc.a) instead of Rust's self-contained musl objects. The unwinder std
//! links statically as `libunwind.a` (Rust ships LLVM's in its self-contained musl objects, which
//! build-std does not build) is GCC's `libgcc_eh.a`, which has the same `_Unwind_*` ABI: a
//! symlink in `target/musl-unwind/` offers it under that name. `cargo xtask setup` installs
//! musl-tools and g++; rust-src comes with the nightly toolchain the eBPF build already uses.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::util::{output_ok, run_inherit, target_dir, which, workspace_root};

/// The target of the static binary.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where [`build`] leaves the binary.
pub fn static_binary_path() -> PathBuf {
    target_dir().join(MUSL_TARGET).join("release").join("xlb")
}

/// The directory offering GCC's `libgcc_eh.a` as `libunwind.a` to the musl link.
pub fn unwind_dir() -> PathBuf {
    target_dir().join("musl-unwind")
}

fn prepare_unwind_dir() -> Result<()> {
    let eh = output_ok(Command::new("gcc").arg("-print-file-name=libgcc_eh.a"))?;
    let eh = PathBuf::from(eh.trim());
    if !eh.is_absolute() || !eh.exists() {
        bail!("gcc has no libgcc_eh.a ({}): install gcc", eh.display());
    }
    let dir = unwind_dir();
    std::fs::create_dir_all(&dir)?;
    let link = dir.join("libunwind.a");
    if std::fs::read_link(&link).ok().as_deref() != Some(eh.as_path()) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&eh, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), eh.display()))?;
    }
    Ok(())
}

/// `rustup run nightly cargo build --release -p lb-user --bin xlb --target x86_64-unknown-linux-musl
/// -Z build-std=std,panic_abort` with musl-gcc as C compiler and linker.
pub fn build_command() -> Command {
    let mut c = Command::new("rustup");
    c.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "-p",
        "lb-user",
    ])
    .args(["--bin", "xlb", "--target", MUSL_TARGET])
    .args(["-Z", "build-std=std,panic_abort"])
    .args(["-Z", "build-std-features=llvm-libunwind"])
    .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "musl-gcc")
    .env("CC_x86_64_unknown_linux_musl", "musl-gcc")
    .env(
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
        "-C link-self-contained=no -C target-feature=+crt-static",
    )
    .current_dir(workspace_root());
    // The outer (stable) cargo's settings are not the nested nightly's.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
    ] {
        c.env_remove(key);
    }
    c
}

/// Whether `file`'s description of a binary says it is statically linked.
pub fn file_says_static(description: &str) -> bool {
    description.contains("statically linked") || description.contains("static-pie linked")
}

/// Builds the static binary and checks that it is static; returns its path.
pub fn build() -> Result<PathBuf> {
    if which("musl-gcc").is_none() {
        bail!("musl-gcc not found: run `cargo xtask setup` (Debian package musl-tools)");
    }
    prepare_unwind_dir()?;
    println!("static: building xlb for {MUSL_TARGET} (std from nightly's rust-src)");
    run_inherit(&mut build_command())?;
    let bin = static_binary_path();
    let desc = output_ok(Command::new("file").arg("-b").arg(&bin))
        .with_context(|| format!("file {}", bin.display()))?;
    if !file_says_static(&desc) {
        bail!("{} is not static: {}", bin.display(), desc.trim());
    }
    println!("static: {} ({})", bin.display(), desc.trim());
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_static_binaries() {
        assert!(file_says_static(
            "ELF 64-bit LSB executable, x86-64, version 1 (SYSV), statically linked, stripped"
        ));
        assert!(file_says_static(
            "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), static-pie linked, stripped"
        ));
        assert!(!file_says_static(
            "ELF 64-bit LSB pie executable, x86-64, dynamically linked, interpreter /lib64/ld-linux-x86-64.so.2"
        ));
    }
}
