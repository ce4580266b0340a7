//! The kernel xlb needs: >= 5.9 for a pinned XDP link (a restarted daemon adopts the attached
//! program through it; older kernels have no `bpf_link` for XDP), CAP_BPF from 5.8, and the BPF
//! program and map types the XDP object uses. [`probe`] asks the kernel (root only: the probes
//! load tiny programs and create maps); [`check`] turns that into findings.
use serde::Serialize;

use super::{f, ok, Finding, Severity};

/// The oldest kernel xlb supports: pinned XDP links (`BPF_LINK_TYPE_XDP`) came in 5.9.
pub const MIN_KERNEL: (u32, u32) = (5, 9);

/// What the kernel said about one BPF feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FeatureProbe {
    pub name: String,
    /// `Ok(supported)`, or why the probe could not run.
    pub result: Result<bool, String>,
}

/// The kernel release and the BPF feature probes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelFacts {
    /// `uname -r`.
    pub release: String,
    /// Empty when not probed (not root).
    pub features: Vec<FeatureProbe>,
    /// Why the features were not probed.
    pub not_probed: Option<String>,
}

/// (major, minor) of a release string: `6.18.44-fc-v669` -> (6, 18).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Probes the running kernel.
pub fn probe() -> KernelFacts {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return KernelFacts {
            release,
            features: Vec::new(),
            not_probed: Some("BPF features are probed as root only".into()),
        };
    }
    use aya::{maps::MapType, programs::ProgramType, sys};
    let mut features = vec![FeatureProbe {
        name: "XDP programs".into(),
        result: sys::is_program_supported(ProgramType::Xdp).map_err(|e| e.to_string()),
    }];
    for (name, t) in [
        ("LRU hash maps (connection table)", MapType::LruHash),
        ("per-CPU arrays (counters)", MapType::PerCpuArray),
        ("devmaps (XDP_REDIRECT)", MapType::DevMap),
        ("hash maps", MapType::Hash),
    ] {
        features.push(FeatureProbe {
            name: name.into(),
            result: sys::is_map_supported(t).map_err(|e| e.to_string()),
        });
    }
    KernelFacts {
        release,
        features,
        not_probed: None,
    }
}

/// Findings for the kernel version and features.
pub fn check(k: &KernelFacts, out: &mut Vec<Finding>) {
    let (want_ma, want_mi) = MIN_KERNEL;
    match parse_release(&k.release) {
        Some(v) if v >= MIN_KERNEL => out.push(ok(
            "kernel",
            format!("Linux {} (>= {want_ma}.{want_mi}: pinned XDP links, CAP_BPF)", k.release),
        )),
        Some(_) => out.push(f(
            Severity::Error,
            "kernel",
            format!(
                "Linux {} is older than {want_ma}.{want_mi}: no pinned XDP link, so the program \
                 cannot survive a daemon restart and be adopted",
                k.release
            ),
            format!("run a kernel >= {want_ma}.{want_mi} (Debian 11: 5.10; RHEL 8 kernels lack XDP links)"),
        )),
        None => out.push(f(
            Severity::Warn,
            "kernel",
            format!("cannot read the kernel version ({:?})", k.release),
            format!("xlb needs Linux >= {want_ma}.{want_mi}"),
        )),
    }
    if let Some(why) = &k.not_probed {
        out.push(f(
            Severity::Skip,
            "bpf-features",
            format!("not checked: {why}"),
            "",
        ));
    }
    for p in &k.features {
        out.push(match &p.result {
            Ok(true) => ok("bpf-features", format!("{}: supported", p.name)),
            Ok(false) => f(
                Severity::Error,
                "bpf-features",
                format!("{}: not supported by this kernel", p.name),
                "run a kernel with CONFIG_BPF_SYSCALL and CONFIG_BPF_JIT (Linux >= 5.9)",
            ),
            Err(e) => f(
                Severity::Warn,
                "bpf-features",
                format!("{}: the probe failed: {e}", p.name),
                "check that the bpf() syscall is allowed (seccomp, lockdown, kernel.unprivileged_bpf_disabled)",
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("5.10.0-28-amd64"), Some((5, 10)));
        assert_eq!(parse_release("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(parse_release(""), None);
    }

    fn severity_of(release: &str) -> Severity {
        let mut out = Vec::new();
        check(
            &KernelFacts {
                release: release.into(),
                ..Default::default()
            },
            &mut out,
        );
        out[0].severity
    }

    #[test]
    fn old_kernels_are_errors() {
        assert_eq!(severity_of("5.10.0-28-amd64"), Severity::Ok);
        assert_eq!(severity_of("5.9.1"), Severity::Ok);
        assert_eq!(severity_of("5.8.0"), Severity::Error);
        assert_eq!(severity_of("4.18.0-553.el8_10.x86_64"), Severity::Error);
        assert_eq!(severity_of("weird"), Severity::Warn);
    }

    #[test]
    fn unsupported_features_are_errors_and_unprobed_ones_skips() {
        let mut out = Vec::new();
        check(
            &KernelFacts {
                release: "6.1.0".into(),
                features: vec![FeatureProbe {
                    name: "devmaps".into(),
                    result: Ok(false),
                }],
                not_probed: Some("not root".into()),
            },
            &mut out,
        );
        assert_eq!(out[1].severity, Severity::Skip);
        assert_eq!(out[2].severity, Severity::Error);
    }
}
