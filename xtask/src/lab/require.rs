//! What a root-only test needs, checked before it starts, as aya's integration tests check a
//! kernel feature before using it.
//!
//! ```no_run
//! use xtask::lab::require::Need;
//! #[test]
//! fn pings_across_the_lab() {
//!     xtask::require!([Need::Lab, Need::Binary("ping")]);
//!     // ... the lab test ...
//! }
//! ```
//!
//! When something is missing the test prints one line saying what it skipped and why, and passes,
//! so a plain `cargo test` as a user is green. In a full run (`XLB_TEST_FULL=1`, which `cargo
//! xtask test` sets, or `CI=true`) a missing prerequisite fails the test instead: a green full run
//! has run every suite.
use std::{fmt, io::Write as _, sync::OnceLock};

use crate::util::which;

/// One prerequisite of a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The namespaced lab ([`crate::lab::Lab`]): root with CAP_SYS_ADMIN and CAP_NET_ADMIN (it
    /// makes network namespaces and mounts), the kernel's bpf filesystem (every host gets its own
    /// bpffs) and `ip`.
    Lab,
    /// Loading XDP programs (BPF_PROG_TEST_RUN, the daemon): CAP_BPF or CAP_SYS_ADMIN, and
    /// CAP_NET_ADMIN; probed by loading a two-instruction XDP program.
    Bpf,
    /// Root (effective uid 0), e.g. to run a command as another user.
    Root,
    /// An executable on `PATH` (or in the sbin directories).
    Binary(&'static str),
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Whether this is a full run, where nothing may be skipped: `XLB_TEST_FULL=1` or `CI=true`.
pub fn full_run() -> bool {
    let set = |k: &str, v: &[&str]| std::env::var(k).is_ok_and(|x| v.contains(&x.as_str()));
    set("XLB_TEST_FULL", &["1", "true"]) || set("CI", &["1", "true"])
}

/// The effective capability set of this process (`CapEff` in `/proc/self/status`).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
        })
        .unwrap_or(0)
}

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1 << cap) != 0
}

/// Whether the kernel offers the bpf filesystem type.
fn kernel_has_bpffs() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().last() == Some("bpf"))
    })
}

fn root_missing() -> Option<String> {
    // SAFETY: plain syscall.
    let euid = unsafe { libc::geteuid() };
    (euid != 0).then(|| format!("root (running as uid {euid})"))
}

/// Why the lab cannot run here, if it cannot.
fn lab_missing() -> Option<String> {
    let caps = effective_caps();
    let mut why = Vec::new();
    if let Some(root) = root_missing() {
        why.push(root);
    } else if !has_cap(caps, CAP_SYS_ADMIN) || !has_cap(caps, CAP_NET_ADMIN) {
        why.push("CAP_SYS_ADMIN and CAP_NET_ADMIN".to_string());
    }
    if !kernel_has_bpffs() {
        why.push("the bpf filesystem (not in /proc/filesystems)".to_string());
    }
    if which("ip").is_none() {
        why.push("`ip` (iproute2)".to_string());
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// Why XDP programs cannot be loaded here, if they cannot (probed once per process).
fn bpf_missing() -> Option<String> {
    static PROBE: OnceLock<Option<String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let caps = effective_caps();
            let bpf = has_cap(caps, CAP_BPF) || has_cap(caps, CAP_SYS_ADMIN);
            if !bpf || !has_cap(caps, CAP_NET_ADMIN) {
                return Some("CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN".into());
            }
            super::xdp::load_xdp_pass()
                .err()
                .map(|e| format!("loading an XDP program ({e:#})"))
        })
        .clone()
}

/// What is missing of `need`, in words, or `None` when it is there.
pub fn missing(need: Need) -> Option<String> {
    match need {
        Need::Lab => lab_missing(),
        Need::Bpf => bpf_missing(),
        Need::Root => root_missing(),
        Need::Binary(bin) => which(bin)
            .is_none()
            .then(|| format!("`{bin}` on PATH (cargo xtask setup installs it)")),
    }
}

/// The prerequisites of a test that are not there.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Missing(Vec<String>);

impl Missing {
    /// Checks every need of every group (a suite's common needs plus a test's own).
    pub fn of(groups: &[&[Need]]) -> Missing {
        let mut why: Vec<String> = Vec::new();
        for need in groups.iter().flat_map(|g| g.iter()) {
            if let Some(w) = missing(*need) {
                if !why.contains(&w) {
                    why.push(w);
                }
            }
        }
        Missing(why)
    }

    /// Nothing is missing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "needs {}", self.0.join("; "))
    }
}

/// The running test's name: libtest names each test's thread after it.
pub fn current_test() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// What becomes of a test, given what it misses.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Everything is there.
    Run,
    /// Not a full run: say this (one line) and pass.
    Skip(String),
    /// A full run: fail with this.
    Fail(String),
}

/// The verdict for test `test` missing `missing`, in a full run or not.
pub fn verdict(test: &str, missing: &Missing, full: bool) -> Verdict {
    if missing.is_empty() {
        Verdict::Run
    } else if full {
        Verdict::Fail(format!(
            "{test}: {missing}. A full run (XLB_TEST_FULL=1 or CI=true) skips nothing: run \
             `cargo xtask setup` and run as root"
        ))
    } else {
        Verdict::Skip(format!(
            "test {test}: SKIPPED, {missing} (run `cargo xtask test` as root to run it)"
        ))
    }
}

/// Checks `groups` for the running test `test`: `true` when everything is there. Otherwise, in a
/// full run ([`full_run`]) it panics; else it prints one `SKIPPED` line and returns `false`
/// (the test then returns, and passes). The line goes to the process's stderr directly, not
/// through the test harness's capture, so it is seen without `--nocapture`.
pub fn check(test: &str, groups: &[&[Need]]) -> bool {
    match verdict(test, &Missing::of(groups), full_run()) {
        Verdict::Run => true,
        Verdict::Fail(why) => panic!("{why}"),
        Verdict::Skip(line) => {
            let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
            false
        }
    }
}

/// Returns from the calling test, after saying why, unless every need is there (see
/// [`check`]). Arguments: slices or arrays of [`Need`], e.g. a suite's constant and the test's
/// own: `require!(dr::NEEDS, [Need::Binary("tcpdump")])`.
#[macro_export]
macro_rules! require {
    ($($needs:expr),+ $(,)?) => {
        if !$crate::lab::require::check(
            &$crate::lab::require::current_test(),
            &[$(&$needs[..]),+],
        ) {
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_found_or_named() {
        assert_eq!(missing(Need::Binary("sh")), None);
        let m = missing(Need::Binary("xlb-no-such-tool")).expect("missing");
        assert!(m.contains("xlb-no-such-tool"), "{m}");
    }

    #[test]
    fn missing_lists_each_reason_once() {
        let absent = Need::Binary("xlb-no-such-tool");
        let m = Missing::of(&[&[absent, Need::Binary("sh")], &[absent]]);
        assert_eq!(m.0.len(), 1, "{m}");
        assert!(m.to_string().starts_with("needs `xlb-no-such-tool`"), "{m}");
        assert!(Missing::of(&[&[Need::Binary("sh")]]).is_empty());
    }

    #[test]
    fn a_full_run_fails_where_a_plain_run_skips() {
        let absent = Missing::of(&[&[Need::Binary("xlb-no-such-tool")]]);
        assert_eq!(verdict("t", &Missing::default(), true), Verdict::Run);
        assert_eq!(verdict("t", &Missing::default(), false), Verdict::Run);
        match verdict("t", &absent, false) {
            Verdict::Skip(line) => {
                assert!(
                    line.starts_with("test t: SKIPPED, needs `xlb-no-such-tool`"),
                    "{line}"
                );
                assert!(!line.contains('\n'), "one line: {line}");
            }
            v => panic!("{v:?}"),
        }
        assert!(
            matches!(verdict("t", &absent, true), Verdict::Fail(m) if m.contains("xlb-no-such-tool"))
        );
    }

    #[test]
    fn caps_are_bits_of_cap_eff() {
        assert!(has_cap(1 << CAP_NET_ADMIN, CAP_NET_ADMIN));
        assert!(!has_cap(1 << CAP_NET_ADMIN, CAP_BPF));
        assert!(has_cap(0x1ff_ffff_ffff, CAP_BPF));
    }
}
