//! `cargo xtask setup`: installs what building and testing xlb needs, idempotently.
//!
//! Each step probes cheaply first (binary lookups, version strings, `/proc/mounts`) and only acts
//! when something is missing, so every other command can call [`ensure`] up front.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, cmd, output, output_ok, run_inherit, which, workspace_root};

/// What a command needs installed: each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Building xlb: the nightly toolchain with rust-src, bpf-linker.
    Build,
    /// `cargo xtask demo`: the lab's tools (ip, ethtool, curl, python3's http.server), a bpffs.
    Demo,
    /// `cargo xtask test` / `bench` / `package`: the real peers and tools the tests drive.
    Test,
}

/// A Debian package and the file whose presence means it is installed (a cheap probe).
#[derive(Clone, Copy, Debug)]
pub struct AptPackage {
    pub name: &'static str,
    pub probe: &'static str,
    pub need: Need,
}

const fn apt(name: &'static str, probe: &'static str, need: Need) -> AptPackage {
    AptPackage { name, probe, need }
}

/// Probes are binaries looked up in `PATH` and the sbin directories, or absolute paths.
pub const APT_PACKAGES: &[AptPackage] = &[
    apt("iproute2", "ip", Need::Demo),
    apt("ethtool", "ethtool", Need::Demo),
    apt("curl", "curl", Need::Demo),
    apt("python3", "python3", Need::Demo),
    apt("keepalived", "keepalived", Need::Test),
    apt("wrk", "wrk", Need::Test),
    apt("apache2-utils", "ab", Need::Test),
    apt("tcpdump", "tcpdump", Need::Test),
    apt("nginx-light", "nginx", Need::Test),
    apt("bird2", "birdc", Need::Test),
    apt("nftables", "nft", Need::Test),
    apt("iptables", "iptables", Need::Test),
    apt("iputils-ping", "ping", Need::Test),
    // The package tests: `man xlb`, `systemd-analyze verify`, a Debian 11 chroot.
    apt("man-db", "man", Need::Test),
    apt("systemd", "systemd-analyze", Need::Test),
    apt("debootstrap", "debootstrap", Need::Test),
    // The static (musl) build for old distributions.
    apt("musl-tools", "musl-gcc", Need::Test),
    // LLVM libunwind (C++) for the musl std built from rust-src.
    apt("g++", "g++", Need::Test),
    apt("file", "file", Need::Test),
    // The status page in a real browser (observability tests).
    apt("chromium", "chromium", Need::Test),
];

/// The packages `need` calls for whose probe is missing.
pub fn missing_packages(need: Need, present: impl Fn(&str) -> bool) -> Vec<AptPackage> {
    APT_PACKAGES
        .iter()
        .filter(|p| p.need <= need && !present(p.probe))
        .copied()
        .collect()
}

fn probe_present(probe: &str) -> bool {
    if probe.starts_with('/') {
        Path::new(probe).exists()
    } else {
        which(probe).is_some()
    }
}

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

/// Makes sure everything the tests need is installed ([`Need::Test`]). With `quiet`, only the
/// steps that did something are printed.
pub fn ensure(quiet: bool) -> Result<()> {
    ensure_for(Need::Test, quiet)
}

/// Makes sure what `need` calls for is installed.
pub fn ensure_for(need: Need, quiet: bool) -> Result<()> {
    let r = Reporter { quiet };
    apt_packages(&r, need)?;
    if need >= Need::Test {
        promtool(&r)?;
    }
    nightly(&r)?;
    bpf_linker(&r)?;
    if need >= Need::Demo {
        bpffs(&r)?;
    }
    if need >= Need::Test {
        cargo_deb(&r)?;
        // Only the old-distribution tests need it, and they skip (saying why) without it: a
        // mirror that cannot be reached must not block every other test.
        if let Err(e) = debian11(&r) {
            println!("setup: no Debian 11 root ({e:#}); the old-distribution tests will skip");
        }
    }
    Ok(())
}

fn apt_packages(r: &Reporter, need: Need) -> Result<()> {
    let missing = missing_packages(need, probe_present);
    if missing.is_empty() {
        r.skipped(&format!("debian packages for {need:?}"));
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|p| p.name).collect();
    println!("setup: installing {}", names.join(" "));
    run_inherit(&mut cmd("apt-get", ["update"]))?;
    {
        let _no_starts = PolicyRcD::install()?;
        run_inherit(
            cmd("apt-get", ["install", "-y"])
                .args(&names)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    disable_units_of(&names)?;
    let still: Vec<&str> = missing_packages(need, probe_present)
        .iter()
        .map(|p| p.probe)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get install: {}", still.join(" "));
    }
    r.done(&format!("debian packages ({})", names.join(" ")));
    Ok(())
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// `/usr/sbin/policy-rc.d` answering 101 ("action forbidden") while it lives, so that packages'
/// maintainer scripts do not start services (keepalived, nginx, BIRD would otherwise run on the
/// host with their default configs). An existing policy-rc.d is left alone.
struct PolicyRcD {
    ours: bool,
}

impl PolicyRcD {
    fn install() -> Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(Self { ours: false });
        }
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# cargo xtask setup: no service starts\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        fs::set_permissions(
            POLICY_RC_D,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .with_context(|| format!("chmod {POLICY_RC_D}"))?;
        Ok(Self { ours: true })
    }
}

impl Drop for PolicyRcD {
    fn drop(&mut self) {
        if self.ours {
            let _ = fs::remove_file(POLICY_RC_D);
        }
    }
}

/// The systemd units (services, sockets, timers) in a `dpkg -L` listing.
pub fn systemd_units_in(dpkg_listing: &str) -> Vec<String> {
    dpkg_listing
        .lines()
        .filter(|l| {
            l.starts_with("/lib/systemd/system/") || l.starts_with("/usr/lib/systemd/system/")
        })
        .filter_map(|l| l.rsplit('/').next())
        .filter(|u| {
            [".service", ".socket", ".timer"]
                .iter()
                .any(|s| u.ends_with(s))
        })
        .filter(|u| !u.contains('@'))
        .map(str::to_string)
        .collect()
}

/// Disables the units the just-installed `packages` enabled (postinst enables them even when
/// policy-rc.d stops the start): setup never leaves a service enabled on the host.
fn disable_units_of(packages: &[&str]) -> Result<()> {
    if which("systemctl").is_none() {
        return Ok(());
    }
    for pkg in packages {
        let Ok(listing) = output_ok(&mut cmd("dpkg", ["-L", pkg])) else {
            continue;
        };
        for unit in systemd_units_in(&listing) {
            let enabled = output(&mut cmd("systemctl", ["is-enabled", &unit]))
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "enabled");
            if enabled {
                output_ok(&mut cmd("systemctl", ["disable", &unit]))?;
                println!("setup: disabled {unit} (installed by {pkg}; not a host service here)");
            }
        }
    }
    Ok(())
}

/// The cargo-deb release `cargo xtask package` uses.
pub const CARGO_DEB_VERSION: &str = "3.8.0";

fn cargo_deb_works() -> bool {
    output(cargo().args(["deb", "--version"])).is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
    })
}

fn cargo_deb(r: &Reporter) -> Result<()> {
    let what = format!("cargo-deb {CARGO_DEB_VERSION}");
    if cargo_deb_works() {
        r.skipped(&what);
        return Ok(());
    }
    run_inherit(cargo().args([
        "install",
        "cargo-deb",
        "--locked",
        "--version",
        CARGO_DEB_VERSION,
    ]))?;
    r.done(&what);
    Ok(())
}

/// A Debian 11 (bullseye, glibc 2.31) root made by debootstrap from Debian's mirror: the package
/// and the static binary are tried in it (`dpkg -i`, `xlb --version`, `man xlb`, `systemd-analyze
/// verify` of the unit with Debian 11's systemd).
pub fn debian11_root() -> PathBuf {
    crate::util::target_dir().join("debian11-root")
}

/// What the Debian 11 root has besides `minbase`; also its completeness marker's content.
pub const DEBIAN11_INCLUDE: &str = "man-db,systemd,procps";
const DEBIAN11_MARKER: &str = ".xlb-setup-complete";

/// Mount points at or below `dir` in `/proc/mounts` content, deepest first.
pub fn mounts_below(mounts: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found
}

/// Removes a half-made root: unmounts what debootstrap left mounted in it first (never recurse
/// into a mounted /proc, /sys or a bind-mounted /dev).
fn remove_root(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    for m in mounts_below(&mounts, dir) {
        output_ok(Command::new("umount").arg("-l").arg(&m))?;
    }
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if !mounts_below(&mounts, dir).is_empty() {
        bail!("{} still has mounts; not removing it", dir.display());
    }
    fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

fn debian11(r: &Reporter) -> Result<()> {
    let root = debian11_root();
    let what = format!("Debian 11 root at {}", root.display());
    let marker = root.join(DEBIAN11_MARKER);
    if fs::read_to_string(&marker).is_ok_and(|m| m.trim() == DEBIAN11_INCLUDE) {
        r.skipped(&what);
        return Ok(());
    }
    let tmp = root.with_extension("tmp");
    remove_root(&tmp)?;
    remove_root(&root)?;
    println!(
        "setup: debootstrap bullseye (Debian 11) into {} (a few minutes)",
        tmp.display()
    );
    run_inherit(&mut cmd(
        "debootstrap",
        [
            "--variant=minbase".to_string(),
            format!("--include={DEBIAN11_INCLUDE}"),
            "bullseye".into(),
            tmp.display().to_string(),
            "http://deb.debian.org/debian".into(),
        ],
    ))?;
    fs::write(tmp.join(DEBIAN11_MARKER), DEBIAN11_INCLUDE)?;
    fs::rename(&tmp, &root).with_context(|| format!("renaming {}", tmp.display()))?;
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
    fn needs_are_cumulative() {
        let none = |_: &str| false;
        let build = missing_packages(Need::Build, none);
        let demo = missing_packages(Need::Demo, none);
        let test = missing_packages(Need::Test, none);
        assert!(build.is_empty());
        assert!(demo.iter().any(|p| p.name == "curl"));
        assert!(
            !demo.iter().any(|p| p.name == "keepalived"),
            "the demo runs no keepalived"
        );
        assert!(test.len() > demo.len());
        assert!(test.iter().any(|p| p.name == "bird2"));
        assert!(missing_packages(Need::Test, |_| true).is_empty());
    }

    #[test]
    fn finds_units_in_a_dpkg_listing() {
        let listing = "/.\n/lib/systemd/system\n/lib/systemd/system/keepalived.service\n\
            /usr/lib/systemd/system/nginx.service\n/lib/systemd/system/getty@.service\n\
            /etc/keepalived/keepalived.conf\n/usr/share/doc/x.service\n";
        assert_eq!(
            systemd_units_in(listing),
            ["keepalived.service", "nginx.service"]
        );
    }

    #[test]
    fn finds_mounts_below_a_root_deepest_first() {
        let mounts = "proc /proc proc rw 0 0\n\
            proc /t/r/proc proc rw 0 0\n\
            sysfs /t/r/sys sysfs rw 0 0\n\
            devpts /t/r/dev/pts devpts rw 0 0\n\
            tmpfs /t/rx tmpfs rw 0 0\n";
        let found = mounts_below(mounts, Path::new("/t/r"));
        assert_eq!(found[0], PathBuf::from("/t/r/dev/pts"));
        assert_eq!(found.len(), 3, "{found:?}");
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
