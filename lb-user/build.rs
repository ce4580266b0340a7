//! Builds the XDP object from `lb-ebpf` and leaves it in OUT_DIR, where `src/lib.rs` embeds it, so
//! `cargo build -p lb-user` yields one self-contained `xlb` binary.
//!
//! The nested build is the one aya-build 0.2 runs (`rustup run nightly cargo build --package
//! lb-ebpf --bins --release --target bpfel-unknown-none -Z build-std=core`, BTF on), run here
//! instead of through `aya_build::build_ebpf` because that forwards every line of the nested
//! cargo's stderr as a `cargo:warning` and a newcomer then reads ~64 "warnings" that are only
//! `Compiling ...` progress. Here only real diagnostics become warnings (see
//! `build/diagnostics.rs`); on failure everything the nested build said is shown.
use std::{
    env,
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{anyhow, bail, Context as _};
use cargo_metadata::{Artifact, CompilerMessage, Message};

#[path = "build/diagnostics.rs"]
mod diagnostics;

const EBPF_PACKAGE: &str = "lb-ebpf";
/// LLVM's BPF feature for misaligned loads; rustc calls it unstable and says so on every crate.
const MISALIGNED: &str = "allows-misaligned-mem-access";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let ebpf_dir = manifest_dir.join("../lb-ebpf");
    // Also rebuild when the shared map layouts change.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../lb-common/src").display()
    );
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!("cargo:rerun-if-changed=build/diagnostics.rs");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        // Developer convenience for pure-Rust work (config, VRRP codec, ...) on a machine without
        // bpf-linker: an empty object makes the loader fail with a clear error at run time.
        let obj = out_dir.join(EBPF_PACKAGE);
        if !obj.exists() {
            fs::write(&obj, b"").context("writing empty eBPF placeholder")?;
        }
        return Ok(());
    }
    let executables = build_ebpf(&out_dir)?;
    for (name, binary) in executables {
        let dst = out_dir.join(name);
        fs::copy(&binary, &dst)
            .with_context(|| format!("copying {} to {}", binary.display(), dst.display()))?;
    }
    Ok(())
}

/// The BPF target matching the host's endianness.
fn bpf_target() -> anyhow::Result<&'static str> {
    match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => Ok("bpfel-unknown-none"),
        Ok("big") => Ok("bpfeb-unknown-none"),
        other => bail!("unsupported target endianness {other:?}"),
    }
}

/// `bpf_target_arch` cfg for aya-ebpf (its register access differs per host architecture).
fn bpf_target_arch() -> anyhow::Result<String> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    Ok(if arch.starts_with("riscv64") {
        "riscv64".into()
    } else {
        arch
    })
}

fn nested_cargo(out_dir: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--package",
        EBPF_PACKAGE,
    ])
    .args(["--bins", "--message-format=json", "--release", "--target"])
    .arg(bpf_target()?)
    .args(["-Z", "build-std=core"]);
    let sep = "\x1f";
    // BPF ISA v3 (kernel 5.1+): 32-bit ALU and jumps. The flow hash and the check word are u32
    // arithmetic; without `w` registers every rotate and compare needs 64-bit masking (~30 %
    // more instructions on the hashing). Misaligned loads: packet fields (addresses behind a
    // 14-byte Ethernet header, MACs) are read with `read_unaligned`, which LLVM otherwise splits
    // into byte loads; the verifier allows misaligned packet and map-value access on x86-64 and
    // arm64 (HAVE_EFFICIENT_UNALIGNED_ACCESS), and stack slots keep their alignment.
    let rustflags = OsString::from(format!(
        "--cfg=bpf_target_arch=\"{}\"{sep}-Cdebuginfo=2{sep}-Clink-arg=--btf{sep}-Ctarget-cpu=v3\
         {sep}-Ctarget-feature=+{MISALIGNED}",
        bpf_target_arch()?
    ));
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The outer build's compiler settings are not the nested nightly's.
    for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "RUSTC_WRAPPER"] {
        cmd.env_remove(key);
    }
    // A separate target dir: cargo would otherwise wait on its own lock (cargo#6412).
    cmd.arg("--target-dir")
        .arg(out_dir.join("aya-build").join("target").join(EBPF_PACKAGE));
    Ok(cmd)
}

/// Runs the nested build; returns the executables it produced (target name, path).
fn build_ebpf(out_dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut cmd = nested_cargo(out_dir)?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting `rustup run nightly cargo` (run `cargo xtask setup`)")?;
    let mut stderr = child.stderr.take().context("nested cargo stderr")?;
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let stdout = BufReader::new(child.stdout.take().context("nested cargo stdout")?);
    let mut executables = Vec::new();
    let mut rendered = Vec::new();
    for line in stdout.lines() {
        let line = line.context("reading nested cargo output")?;
        match Message::parse_stream(line.as_bytes()).next() {
            Some(Ok(Message::CompilerArtifact(Artifact {
                executable: Some(exe),
                target,
                ..
            }))) => executables.push((target.name, exe.into_std_path_buf())),
            Some(Ok(Message::CompilerMessage(CompilerMessage { message, .. }))) => {
                rendered.push(message.rendered.unwrap_or(message.message));
            }
            // Not JSON: something a build script of the nested build printed.
            Some(Ok(Message::TextLine(_))) => rendered.push(line),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for nested cargo")?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        // The build script's stderr is what cargo shows when it fails: all of it, unfiltered.
        for text in &rendered {
            eprintln!("{text}");
        }
        eprintln!("{stderr}");
        bail!("building the eBPF object failed ({status}): {cmd:?}");
    }
    // The one warning every nested crate repeats about our own flag is not news.
    let diagnostics = rendered
        .iter()
        .filter(|text| !(text.contains("unstable feature specified") && text.contains(MISALIGNED)))
        .flat_map(|text| diagnostics::diagnostic_lines(text))
        .chain(
            // Cargo's "`crate` (lib) generated N warnings" tallies: the warnings themselves are
            // shown above (or are the one filtered out).
            diagnostics::diagnostic_lines(&stderr)
                .into_iter()
                .filter(|l| !(l.starts_with("warning: `") && l.contains(" generated "))),
        );
    for line in diagnostics {
        println!("cargo:warning={line}");
    }
    Ok(executables)
}
