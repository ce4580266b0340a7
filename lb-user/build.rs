//! Builds the XDP object from `lb-ebpf` and leaves it in OUT_DIR, where `src/lib.rs` embeds it, so
//! `cargo build -p lb-user` yields one self-contained `xlb` binary.
use std::{env, fs, path::PathBuf};

use anyhow::{anyhow, Context as _};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);
    let manifest_dir = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let ebpf_dir = manifest_dir.join("../lb-ebpf");
    let root_dir = ebpf_dir.to_str().context("lb-ebpf path is not UTF-8")?;
    // Also rebuild when the shared map layouts change.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../lb-common/src").display()
    );
    if env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        // Developer convenience for pure-Rust work (config, VRRP codec, ...) on a machine without
        // bpf-linker: an empty object makes the loader fail with a clear error at run time.
        let obj = out_dir.join("lb-ebpf");
        if !obj.exists() {
            fs::write(&obj, b"").context("writing empty eBPF placeholder")?;
        }
        return Ok(());
    }
    aya_build::build_ebpf(
        [Package {
            name: "lb-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
