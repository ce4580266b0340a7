//! The Debian package and the static binary, tried on an old distribution: `cargo xtask package`
//! (xtask::package) builds the static binary and the .deb; the binary is static (`file`, `ldd`);
//! the package is installed with `dpkg -i` in a Debian 11 root (glibc 2.31, made by `cargo xtask
//! setup` with debootstrap; used through an overlay so it stays pristine), where `xlb --version`,
//! `xlb check-config` of the shipped examples, `man xlb` / `man xlb.toml` and Debian 11's
//! `systemd-analyze verify` of the unit must work. Root and XLB_TEST_FULL=1 only (it builds a
//! release binary with its own std: minutes).
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn skip_reason() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (mounts, chroot)");
    }
    if std::env::var("XLB_TEST_FULL").as_deref() != Ok("1") {
        return Some("builds the static release binary and the package: set XLB_TEST_FULL=1 (cargo xtask test does)");
    }
    None
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The Debian 11 root seen through an overlay (writes go to a scratch upper dir), with /proc,
/// /sys and the cgroup2 hierarchy mounted.
struct Debian11 {
    scratch: PathBuf,
    root: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Debian11 {
    fn open() -> Option<Self> {
        let lower = xtask::setup::debian11_root();
        if !lower.join("usr/bin/man").exists() {
            return None;
        }
        let scratch = std::env::temp_dir().join(format!("xlb-deb11-{}", std::process::id()));
        for d in ["upper", "work", "root"] {
            std::fs::create_dir_all(scratch.join(d)).unwrap();
        }
        let mut me = Debian11 {
            root: scratch.join("root"),
            scratch,
            mounted: Vec::new(),
        };
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            me.scratch.join("upper").display(),
            me.scratch.join("work").display()
        );
        let o = run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&me.root));
        assert!(o.status.success(), "overlay: {}", text(&o));
        me.mounted.push(me.root.clone());
        // systemd-analyze verify needs /proc and a cgroup hierarchy.
        for (fs, dir) in [
            ("proc", "proc"),
            ("sysfs", "sys"),
            ("cgroup2", "sys/fs/cgroup"),
        ] {
            let at = me.root.join(dir);
            let o = run(Command::new("mount").args(["-t", fs, fs]).arg(&at));
            assert!(o.status.success(), "mount {fs}: {}", text(&o));
            me.mounted.push(at);
        }
        Some(me)
    }

    fn chroot(&self, args: &[&str]) -> Output {
        run(Command::new("chroot")
            .arg(&self.root)
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"))
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        let o = self.chroot(args);
        assert!(o.status.success(), "{args:?} in Debian 11: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Debian11 {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let _ = Command::new("umount").arg(m).status();
        }
        let still_mounted = std::fs::read_to_string("/proc/mounts")
            .map(|m| m.contains(&self.scratch.display().to_string()))
            .unwrap_or(true);
        if !still_mounted {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
    }
}

fn assert_static(bin: &Path) {
    let file = run(Command::new("file").arg("-b").arg(bin));
    let desc = String::from_utf8_lossy(&file.stdout);
    assert!(
        xtask::static_build::file_says_static(&desc),
        "{} is not static: {desc}",
        bin.display()
    );
    // glibc's ldd: "not a dynamic executable" (exit 1) or "statically linked".
    let ldd = text(&run(Command::new("ldd").arg(bin)));
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd {}: {ldd}",
        bin.display()
    );
}

fn assert_package_contents(deb: &Path) {
    let list = text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)));
    for path in [
        "./usr/bin/xlb",
        "./usr/share/man/man1/xlb.1.gz",
        "./usr/share/man/man1/xlb-status.1.gz",
        "./usr/share/man/man5/xlb.toml.5.gz",
        "./usr/lib/systemd/system/xlb.service",
        "./usr/share/bash-completion/completions/xlb",
        "./usr/share/zsh/vendor-completions/_xlb",
        "./usr/share/fish/vendor_completions.d/xlb.fish",
        "./usr/share/doc/xlb/examples/xlb.toml",
        "./usr/share/doc/xlb/examples/xlb-scaleout.toml",
        "./usr/share/doc/xlb/examples/xlb-realserver-sysctl.conf",
    ] {
        assert!(
            list.contains(path),
            "{} lacks {path}:\n{list}",
            deb.display()
        );
    }
}

#[test]
fn the_package_installs_and_works_on_debian_11() {
    if let Some(why) = skip_reason() {
        eprintln!("package test skipped: {why}");
        return;
    }
    let deb = xtask::package::package().expect("cargo xtask package");
    assert_static(&xtask::static_build::static_binary_path());
    assert_package_contents(&deb);
    let Some(d11) = Debian11::open() else {
        panic!(
            "no Debian 11 root at {} (cargo xtask setup makes it with debootstrap)",
            xtask::setup::debian11_root().display()
        );
    };
    let glibc = d11.chroot_ok(&["ldd", "--version"]);
    assert!(glibc.contains("2.31"), "Debian 11's glibc is 2.31: {glibc}");
    std::fs::copy(&deb, d11.root.join("tmp/xlb.deb")).unwrap();
    d11.chroot_ok(&["dpkg", "-i", "/tmp/xlb.deb"]);
    let version = d11.chroot_ok(&["xlb", "--version"]);
    assert_eq!(version.trim(), format!("xlb {}", env!("CARGO_PKG_VERSION")));
    for example in ["xlb.toml", "xlb-scaleout.toml"] {
        let out = d11.chroot_ok(&[
            "xlb",
            "check-config",
            &format!("/usr/share/doc/xlb/examples/{example}"),
        ]);
        assert!(out.contains(": OK ("), "{example}: {out}");
    }
    let page = d11.chroot_ok(&["man", "xlb"]);
    assert!(page.contains("check-config"), "man xlb: {page}");
    let page = d11.chroot_ok(&["man", "xlb.toml"]);
    assert!(
        page.contains("conn_table_size") && page.contains("announce"),
        "man xlb.toml: {page}"
    );
    let page = d11.chroot_ok(&["man", "5", "xlb.toml"]);
    assert!(page.contains("XLB.TOML(5)"), "{page}");
    // Debian 11's systemd (247) must accept the unit: directives, capabilities, the binary path.
    let verify = d11.chroot(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/xlb.service",
    ]);
    let said = text(&verify);
    assert!(
        verify.status.success() && !said.contains("xlb.service"),
        "systemd-analyze verify: {said}"
    );
    // Not enabled on install: the director needs its configuration first.
    assert!(!d11
        .root
        .join("etc/systemd/system/multi-user.target.wants/xlb.service")
        .exists());
}
