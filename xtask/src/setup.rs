//! `cargo xtask setup`: installs what building and testing xlb needs, idempotently.
//!
//! Each step probes cheaply first (binary lookups, version strings, `/proc/mounts`) and only acts
//! when something is missing, so every other command can call [`ensure`] up front.
use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, cmd, output, output_ok, run_inherit, which, workspace_root};

/// Debian packages installed when any probe binary is missing.
pub const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "keepalived",
    "curl",
    "wrk",
    "tcpdump",
    "python3",
    "nginx-light",
    "bird2",
    "nftables",
    "iptables",
    "iputils-ping",
    "chromium",
];

/// Binaries whose presence means the packages above are installed.
pub const PROBE_BINARIES: &[&str] = &[
    "ip",
    "ethtool",
    "keepalived",
    "curl",
    "wrk",
    "tcpdump",
    "python3",
    "nginx",
    "bird",
    "birdc",
    "nft",
    "iptables",
    "ping",
    "chromium",
];

/// The bpf-linker release the eBPF build expects (major, minor).
pub const BPF_LINKER_WANTED: (u32, u32) = (0, 13);

struct Reporter {
    quiet: bool,
}

impl Reporter {
    fn done(&self, what: &str) {
        println!("setup: done: {what}");
    }
    fn skipped(&self, what: &str) {
        if !self.quiet {
            println!("setup: skipped (already there): {what}");
        }
    }
}

/// Makes sure everything is installed. With `quiet`, only the steps that did something are
/// printed.
pub fn ensure(quiet: bool) -> Result<()> {
    let r = Reporter { quiet };
    apt_packages(&r)?;
    promtool(&r)?;
    nightly(&r)?;
    bpf_linker(&r)?;
    bpffs(&r)?;
    Ok(())
}

fn apt_packages(r: &Reporter) -> Result<()> {
    let what = format!("debian packages ({})", APT_PACKAGES.join(" "));
    let missing: Vec<&str> = PROBE_BINARIES
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    if missing.is_empty() {
        r.skipped(&what);
        return Ok(());
    }
    println!("setup: missing binaries: {}", missing.join(" "));
    run_inherit(&mut cmd("apt-get", ["update"]))?;
    run_inherit(
        cmd("apt-get", ["install", "-y"])
            .args(APT_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = PROBE_BINARIES
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    r.done(&what);
    Ok(())
}

/// Where [`promtool`] puts the binary.
pub const PROMTOOL: &str = "/usr/local/bin/promtool";

/// promtool from Debian's `prometheus` package, without the package: installing it would add a
/// Prometheus server service (started on hosts with an init system) and its web assets; the
/// tests only need promtool, so it is taken out of the downloaded .deb.
fn promtool(r: &Reporter) -> Result<()> {
    if which("promtool").is_some() || Path::new(PROMTOOL).exists() {
        r.skipped("promtool");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("xlb-setup-promtool-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let result = (|| -> Result<()> {
        let download = || run_inherit(cmd("apt-get", ["download", "prometheus"]).current_dir(&dir));
        if download().is_err() {
            run_inherit(&mut cmd("apt-get", ["update"]))?;
            download()?;
        }
        let deb = fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download prometheus left no .deb")?;
        let root = dir.join("x");
        run_inherit(cmd("dpkg-deb", ["-x"]).arg(&deb).arg(&root))?;
        fs::copy(root.join("usr/bin/promtool"), PROMTOOL).context("copying promtool")?;
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(PROMTOOL, fs::Permissions::from_mode(0o755))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result?;
    r.done("promtool (from the prometheus .deb, no service installed)");
    Ok(())
}

/// `rustc +nightly --print sysroot`, or `None` when the nightly toolchain is not installed.
pub fn nightly_sysroot() -> Option<PathBuf> {
    let out = output(&mut cmd(
        "rustup",
        ["run", "nightly", "rustc", "--print", "sysroot"],
    ))
    .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then(|| PathBuf::from(s))
}

fn nightly(r: &Reporter) -> Result<()> {
    let sysroot = match nightly_sysroot() {
        Some(s) => {
            r.skipped("rust nightly toolchain");
            s
        }
        None => {
            run_inherit(&mut cmd(
                "rustup",
                ["toolchain", "install", "nightly", "--profile", "minimal"],
            ))?;
            r.done("rust nightly toolchain");
            nightly_sysroot().context("nightly toolchain still not usable after install")?
        }
    };
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        r.skipped("rust-src for nightly");
    } else {
        run_inherit(&mut cmd(
            "rustup",
            ["component", "add", "rust-src", "--toolchain", "nightly"],
        ))?;
        r.done("rust-src for nightly");
    }
    Ok(())
}

/// Parses `bpf-linker --version` output (`bpf-linker 0.13.0`) into (major, minor, patch).
pub fn parse_bpf_linker_version(s: &str) -> Option<(u32, u32, u32)> {
    let line = s
        .lines()
        .find(|l| l.trim_start().starts_with("bpf-linker"))?;
    let ver = line.split_whitespace().nth(1)?;
    let ver = ver.trim_start_matches('v');
    // Drop any pre-release/build suffix: 0.13.0-dev, 0.13.0+abc.
    let ver = ver.split(['-', '+']).next()?;
    let mut it = ver.split('.').map(|p| p.parse::<u32>().ok());
    let major = it.next()??;
    let minor = it.next()??;
    let patch = it.next().unwrap_or(Some(0))?;
    Some((major, minor, patch))
}

/// Whether `bpf-linker --version` output names the release we want (0.13.x).
pub fn bpf_linker_version_ok(s: &str) -> bool {
    parse_bpf_linker_version(s).is_some_and(|(ma, mi, _)| (ma, mi) == BPF_LINKER_WANTED)
}

/// Whether `rustup run nightly bpf-linker --version` works and reports 0.13.x.
pub fn bpf_linker_works() -> bool {
    output(&mut cmd(
        "rustup",
        ["run", "nightly", "bpf-linker", "--version"],
    ))
    .is_ok_and(|o| o.status.success() && bpf_linker_version_ok(&String::from_utf8_lossy(&o.stdout)))
}

/// Finds `libLLVM.so.22.1-rust-*` in the nightly sysroot's `lib/`.
fn find_libllvm(sysroot: &Path) -> Result<PathBuf> {
    let lib = sysroot.join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22.1-rust-"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no libLLVM.so.22.1-rust-* in {}", lib.display()))
}

fn bpf_linker(r: &Reporter) -> Result<()> {
    let what = "bpf-linker 0.13 (rustup run nightly bpf-linker)";
    if bpf_linker_works() {
        r.skipped(what);
        return Ok(());
    }
    let sysroot = nightly_sysroot().context("nightly toolchain missing")?;
    let libllvm = find_libllvm(&sysroot)?;
    let prefix = workspace_root().join("target/llvm-prefix");
    let libdir = prefix.join("lib");
    fs::create_dir_all(&libdir).with_context(|| format!("creating {}", libdir.display()))?;
    let link = libdir.join("libLLVM.so");
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} -> {}", link.display(), libllvm.display()))?;
    println!(
        "setup: building bpf-linker 0.13.0 against {} (takes a minute or two)",
        libllvm.display()
    );
    run_inherit(
        cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                "0.13.0",
                "--no-default-features",
            ])
            .args(["--features", "llvm-22"])
            .env("LLVM_PREFIX", &prefix),
    )?;
    if !bpf_linker_works() {
        bail!("bpf-linker installed but `rustup run nightly bpf-linker --version` does not report 0.13");
    }
    r.done(what);
    Ok(())
}

/// Whether `/proc/mounts` content has a bpf filesystem mounted at `/sys/fs/bpf`.
pub fn bpffs_mounted_in(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_src, dir, fstype) = (f.next(), f.next(), f.next());
        dir == Some("/sys/fs/bpf") && fstype == Some("bpf")
    })
}

fn bpffs(r: &Reporter) -> Result<()> {
    let what = "bpffs mounted at /sys/fs/bpf";
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if bpffs_mounted_in(&mounts) {
        r.skipped(what);
        return Ok(());
    }
    output_ok(&mut cmd("mount", ["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    r.done(what);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bpf_linker_versions() {
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.0\n"),
            Some((0, 13, 0))
        );
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.2-dev"),
            Some((0, 13, 2))
        );
        assert_eq!(parse_bpf_linker_version("bpf-linker 0.9"), Some((0, 9, 0)));
        assert_eq!(parse_bpf_linker_version("error: no such binary"), None);
        assert_eq!(parse_bpf_linker_version("bpf-linker"), None);
        assert_eq!(parse_bpf_linker_version(""), None);
    }

    #[test]
    fn accepts_only_0_13() {
        assert!(bpf_linker_version_ok("bpf-linker 0.13.0"));
        assert!(bpf_linker_version_ok("bpf-linker 0.13.1\n"));
        assert!(!bpf_linker_version_ok("bpf-linker 0.12.9"));
        assert!(!bpf_linker_version_ok("bpf-linker 0.14.0"));
        assert!(!bpf_linker_version_ok("bpf-linker 1.13.0"));
        assert!(!bpf_linker_version_ok(
            "error: 'bpf-linker' is not installed"
        ));
    }

    #[test]
    fn detects_bpffs_mount() {
        let with = "sysfs /sys sysfs rw 0 0\nbpf /sys/fs/bpf bpf rw,nosuid 0 0\n";
        let without = "sysfs /sys sysfs rw 0 0\nnone /sys/fs/bpf tmpfs rw 0 0\n";
        assert!(bpffs_mounted_in(with));
        assert!(!bpffs_mounted_in(without));
        assert!(!bpffs_mounted_in(""));
    }
}
