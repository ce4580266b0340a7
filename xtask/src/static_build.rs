//! A static xlb binary for old distributions (RHEL 8, Debian 11, Ubuntu 20.04: glibc 2.28-2.31,
//! while the build host's glibc is newer): `x86_64-unknown-linux-musl`, fully static.
//!
//! rustup cannot download targets here and the stable toolchain has no musl std, so the standard
//! library is built from nightly's rust-src (`-Z build-std`) and linked with Debian's musl-tools
//! (`musl-gcc`, musl's libc.a) instead of Rust's self-contained musl objects. Two things those
//! objects would have provided are made here:
//! - `libunwind.a`, which std links statically on musl: LLVM's libunwind, compiled with musl-gcc
//!   from the sources in rust-src (`src/llvm-project/libunwind`) into `target/musl-unwind/`
//!   (GCC's libgcc_eh.a does not do: Debian's calls glibc's `_dl_find_object`);
//! - a non-PIE link: musl-gcc's specs give a static-pie binary an interpreter
//!   (`/lib/ld-musl-x86_64.so.1`, absent on glibc systems), so the binary is linked with
//!   `-C relocation-model=static` (`cargo rustc`, so only the final link changes).
//!
//! `cargo xtask setup` installs musl-tools and g++ (C++ for libunwind); rust-src comes with the
//! nightly toolchain the eBPF build already uses.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::util::{output_ok, run_inherit, target_dir, which, workspace_root};

/// The target of the static binary.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Where [`build`] leaves the binary.
pub fn static_binary_path() -> PathBuf {
    target_dir().join(MUSL_TARGET).join("release").join("xlb")
}

/// Where the musl build of LLVM's libunwind (`libunwind.a`) is made.
pub fn unwind_dir() -> PathBuf {
    target_dir().join("musl-unwind")
}

/// Compiles LLVM's libunwind from nightly's rust-src with musl-gcc (the flags Rust's bootstrap
/// uses), once.
fn prepare_unwind_dir() -> Result<()> {
    let dir = unwind_dir();
    let lib = dir.join("libunwind.a");
    if lib.exists() {
        return Ok(());
    }
    let sysroot = crate::setup::nightly_sysroot().context("nightly toolchain missing")?;
    let src = sysroot.join("lib/rustlib/src/rust/src/llvm-project/libunwind");
    if !src.join("src/libunwind.cpp").exists() {
        bail!("no libunwind sources in {} (rust-src)", src.display());
    }
    std::fs::create_dir_all(&dir)?;
    let common = [
        "-O2",
        "-fPIC",
        "-fstrict-aliasing",
        "-funwind-tables",
        "-fvisibility=hidden",
        "-D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS",
        "-DNDEBUG",
    ];
    let c_files = ["UnwindLevel1.c", "UnwindLevel1-gcc-ext.c", "Unwind-sjlj.c"];
    let asm_files = ["UnwindRegistersRestore.S", "UnwindRegistersSave.S"];
    let cxx_files = ["libunwind.cpp", "Unwind-EHABI.cpp", "Unwind-seh.cpp"];
    let mut objects = Vec::new();
    for f in c_files.iter().chain(&asm_files).chain(&cxx_files) {
        let obj = dir.join(format!("{f}.o"));
        let mut c = Command::new("musl-gcc");
        if f.ends_with(".cpp") {
            c.args([
                "-x",
                "c++",
                "-std=c++17",
                "-fno-exceptions",
                "-fno-rtti",
                "-nostdinc++",
            ]);
        } else {
            c.arg("-std=c99");
        }
        c.args(common)
            .arg("-I")
            .arg(src.join("include"))
            .arg("-c")
            .arg(src.join("src").join(f))
            .arg("-o")
            .arg(&obj);
        output_ok(&mut c).with_context(|| format!("compiling libunwind's {f}"))?;
        objects.push(obj);
    }
    output_ok(Command::new("ar").arg("rcs").arg(&lib).args(&objects))?;
    Ok(())
}

/// `rustup run nightly cargo rustc --release -p lb-user --bin xlb --target
/// x86_64-unknown-linux-musl -Z build-std=std,panic_abort -- -C relocation-model=static` with
/// musl-gcc as C compiler and linker, and [`unwind_dir`] in the library path.
pub fn build_command() -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "rustc", "--release"])
        .args(["-p", "lb-user", "--bin", "xlb", "--target", MUSL_TARGET])
        .args(["-Z", "build-std=std,panic_abort"])
        .args(["-Z", "build-std-features=llvm-libunwind"])
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER", "musl-gcc")
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc")
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
            format!(
                "-C link-self-contained=no -C target-feature=+crt-static -L native={}",
                unwind_dir().display()
            ),
        )
        // Only the final link: a non-PIE static executable (see the module comment).
        .args(["--", "-C", "relocation-model=static"])
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
    // What `cargo run` / `cargo test` set for their own child (CARGO_PKG_NAME=xtask, ...): build
    // scripts that watch such variables (ring's) would rerun whenever the caller differs.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let per_crate = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
        ];
        if per_crate.iter().any(|p| k.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&k.as_ref())
        {
            c.env_remove(&key);
        }
    }
    c
}

/// Whether `file`'s description of a binary says it is statically linked (and has no
/// interpreter, which a static-pie from musl-gcc would).
pub fn file_says_static(description: &str) -> bool {
    (description.contains("statically linked") || description.contains("static-pie linked"))
        && !description.contains("interpreter")
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
        assert!(!file_says_static(
            "ELF 64-bit LSB pie executable, x86-64, version 1 (GNU/Linux), dynamically linked, interpreter /lib/ld-musl-x86_64.so.1, not stripped"
        ));
    }
}
