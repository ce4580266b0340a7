//! Real-server preparation for direct routing (`xlb realserver up|down|status`).
//!
//! A DR real server receives frames addressed to its own MAC but carrying the VIP as destination
//! address, so it must own the VIP without announcing it (only the director may answer ARP/ND
//! for it):
//!
//! - IPv4: each VIP on `lo` as /32, and `arp_ignore=1` (answer ARP only for addresses of the
//!   receiving interface) plus `arp_announce=2` (never use a `lo` address as ARP source) on `all`
//!   and `lo` (the kernel uses the maximum of `all` and the interface's value).
//! - IPv6: each VIP on `lo` as /128 with `nodad` (no duplicate address detection probes on the
//!   wire). No sysctl is needed to silence neighbour discovery: Linux answers a neighbour
//!   solicitation only for addresses of the interface it arrived on (strict lookup in
//!   `ndisc_recv_ns`), and `lo` never receives one. We only make sure IPv6 is enabled on `lo`
//!   (`net.ipv6.conf.lo.disable_ipv6=0`), recorded and restored like the IPv4 values.
//!
//! `up` records the values it changes and the VIPs it adds in a state file; `down` restores
//! exactly those, so `up` then `down` leaves the host as it was. Addresses go through
//! [`crate::net`], sysctls through `/proc/sys`; no BPF is involved.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::net::{BlockingNet, NetError};

#[derive(Debug, Error)]
pub enum RealServerError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("sysctl {0} does not exist on this kernel")]
    NoSysctl(&'static str),
    #[error("{action} sysctl {key}: {source}")]
    Sysctl {
        action: &'static str,
        key: String,
        source: io::Error,
    },
    #[error("{action} {}: {source}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("tunnel mode: {0}")]
    Tunnel(String),
    #[error("parsing {}: {source}", path.display())]
    StateFormat {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T, E = RealServerError> = std::result::Result<T, E>;

/// Wraps a failed file operation with what it was and where.
fn file_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RealServerError {
    let path = path.to_owned();
    move |source| RealServerError::File {
        action,
        path,
        source,
    }
}

/// Default state file.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/xlb/realserver.json";
/// The systemd unit written by `--persist`.
pub const UNIT_NAME: &str = "xlb-realserver.service";
/// The sysctl.d file written by `--persist`.
pub const SYSCTL_D_NAME: &str = "90-xlb-realserver.conf";

/// A sysctl the real server needs and how to judge its current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Dotted name, e.g. `net.ipv4.conf.all.arp_ignore`.
    pub key: &'static str,
    /// Value written by `up`.
    pub value: &'static str,
}

impl Wanted {
    /// Whether `current` already does the job (`arp_ignore` 1..=8 all stop answering for `lo`
    /// addresses on other interfaces; the others need the exact value).
    pub fn satisfied_by(&self, current: &str) -> bool {
        let cur = current.trim();
        if self.key.ends_with("arp_ignore") {
            matches!(cur.parse::<u8>(), Ok(1..=8))
        } else {
            cur == self.value
        }
    }
}

/// The IPv4 sysctls (always applied: they are harmless without IPv4 VIPs and the field's scripts
/// set them unconditionally).
pub const SYSCTLS_V4: [Wanted; 4] = [
    Wanted {
        key: "net.ipv4.conf.all.arp_ignore",
        value: "1",
    },
    Wanted {
        key: "net.ipv4.conf.lo.arp_ignore",
        value: "1",
    },
    Wanted {
        key: "net.ipv4.conf.all.arp_announce",
        value: "2",
    },
    Wanted {
        key: "net.ipv4.conf.lo.arp_announce",
        value: "2",
    },
];
/// Needed only with an IPv6 VIP.
pub const SYSCTL_V6_LO: Wanted = Wanted {
    key: "net.ipv6.conf.lo.disable_ipv6",
    value: "0",
};

/// The sysctls needed for these VIPs.
pub fn wanted_sysctls(vips: &[IpAddr]) -> Vec<Wanted> {
    let mut w = SYSCTLS_V4.to_vec();
    if vips.iter().any(IpAddr::is_ipv6) {
        w.push(SYSCTL_V6_LO);
    }
    w
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Reads a sysctl of the current network namespace (`None` if it does not exist).
pub fn read_sysctl(key: &str) -> Option<String> {
    fs::read_to_string(sysctl_path(key))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Writes a sysctl; `action` says why, for the error.
pub fn write_sysctl(action: &'static str, key: &str, value: &str) -> Result<()> {
    fs::write(sysctl_path(key), value).map_err(|source| RealServerError::Sysctl {
        action,
        key: key.to_owned(),
        source,
    })
}

/// What `up` recorded: the previous value of every sysctl it changed and the VIPs it added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Sysctl name -> value before the first `up` changed it.
    pub sysctls: BTreeMap<String, String>,
    /// VIPs that were not on `lo` before `up`.
    pub added_vips: Vec<IpAddr>,
    /// Tunnel mode: the decapsulation `up --tunnel` attached (detached by `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<crate::realserver_tunnel::TunnelState>,
    /// Tunnel mode: the VIPs' policy rules and advmss table (removed by `down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<crate::realserver_advmss::AdvmssState>,
    /// Tunnel mode with the kernel's tunnels: the links and FOU port created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<crate::realserver_kernel::KernelTunnelState>,
}

impl State {
    /// Loads the state file; `None` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<State>> {
        match fs::read_to_string(path) {
            Ok(s) => {
                serde_json::from_str(&s)
                    .map(Some)
                    .map_err(|source| RealServerError::StateFormat {
                        path: path.to_owned(),
                        source,
                    })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(file_error("reading", path)(e)),
        }
    }

    /// Writes the state file (creating its directory).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d).map_err(file_error("creating", d))?;
        }
        let json =
            serde_json::to_string_pretty(self).map_err(|source| RealServerError::StateFormat {
                path: path.to_owned(),
                source,
            })?;
        fs::write(path, json + "\n").map_err(file_error("writing", path))
    }
}

/// `lo` and its addresses, through the shared netlink module.
pub struct Loopback {
    net: BlockingNet,
    index: u32,
}

impl Loopback {
    /// Connects to rtnetlink in the current network namespace and finds `lo`.
    pub fn open() -> Result<Loopback, NetError> {
        let net = BlockingNet::connect()?;
        let index = net
            .link("lo")?
            .ok_or_else(|| NetError::NoInterface("lo".into()))?
            .index;
        Ok(Loopback { net, index })
    }

    /// Every address on `lo` with its prefix length.
    pub fn addresses(&self) -> Result<Vec<(IpAddr, u8)>, NetError> {
        self.net.addresses(self.index)
    }

    /// Whether `ip` is on `lo` (any prefix length).
    pub fn has(&self, ip: IpAddr) -> Result<bool, NetError> {
        Ok(self.addresses()?.iter().any(|(a, _)| *a == ip))
    }

    /// Adds `ip` as /32 or /128 (IPv6 with `nodad`).
    pub fn add(&self, ip: IpAddr) -> Result<(), NetError> {
        self.net.add_host_address(self.index, ip)
    }

    /// Removes `ip` (every prefix length it has) from `lo`.
    pub fn remove(&self, ip: IpAddr) -> Result<(), NetError> {
        self.net.del_address(self.index, ip)
    }
}

/// `xlb realserver up`: returns one line per change (empty: nothing to do).
pub fn up(vips: &[IpAddr], state_file: &Path) -> Result<Vec<String>> {
    let mut state = State::load(state_file)?.unwrap_or_default();
    let mut changes = Vec::new();
    for w in wanted_sysctls(vips) {
        let cur = read_sysctl(w.key).ok_or(RealServerError::NoSysctl(w.key))?;
        if !w.satisfied_by(&cur) {
            write_sysctl("setting", w.key, w.value)?;
            state
                .sysctls
                .entry(w.key.to_string())
                .or_insert(cur.clone());
            changes.push(format!("sysctl {} {} -> {}", w.key, cur, w.value));
        }
    }
    let lo = Loopback::open()?;
    for &ip in vips {
        if !lo.has(ip)? {
            lo.add(ip)?;
            if !state.added_vips.contains(&ip) {
                state.added_vips.push(ip);
            }
            let p = if ip.is_ipv4() { "32" } else { "128 nodad" };
            changes.push(format!("added {ip}/{p} on lo"));
        }
    }
    state.save(state_file)?;
    Ok(changes)
}

/// `xlb realserver down`: removes the VIPs `up` added (only those listed in `vips`, or all when
/// `vips` is empty) and, once none of them is left, restores the recorded sysctls and deletes the
/// state file. Without a state file the listed VIPs are removed and the sysctls left alone.
pub fn down(vips: &[IpAddr], state_file: &Path) -> Result<Vec<String>> {
    let lo = Loopback::open()?;
    let mut changes = Vec::new();
    let Some(mut state) = State::load(state_file)? else {
        for &ip in vips {
            if lo.has(ip)? {
                lo.remove(ip)?;
                changes.push(format!("removed {ip} from lo"));
            }
        }
        changes.push(format!(
            "no state file {}: sysctls left as they are (nothing recorded to restore)",
            state_file.display()
        ));
        return Ok(changes);
    };
    for &ip in vips {
        if !state.added_vips.contains(&ip) && lo.has(ip)? {
            changes.push(format!("kept {ip} on lo: it was there before `up`"));
        }
    }
    let mut kept = Vec::new();
    for ip in std::mem::take(&mut state.added_vips) {
        if vips.is_empty() || vips.contains(&ip) {
            if lo.has(ip)? {
                lo.remove(ip)?;
                changes.push(format!("removed {ip} from lo"));
            }
        } else {
            kept.push(ip);
        }
    }
    state.added_vips = kept;
    if state.added_vips.is_empty() {
        for (key, old) in &state.sysctls {
            let cur = read_sysctl(key).unwrap_or_default();
            if cur != *old {
                write_sysctl("restoring", key, old)?;
                changes.push(format!("sysctl {key} {cur} -> {old} (restored)"));
            }
        }
        match fs::remove_file(state_file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error("removing", state_file)(e)),
        }
    } else {
        state.save(state_file)?;
        changes.push(format!(
            "sysctls not restored yet: {} VIP(s) added by `up` remain",
            state.added_vips.len()
        ));
    }
    Ok(changes)
}

/// One sysctl as `status` and `doctor` see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SysctlStatus {
    pub key: String,
    /// `None`: the sysctl does not exist.
    pub value: Option<String>,
    pub wanted: String,
    pub ok: bool,
}

/// `xlb realserver status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Each VIP and whether it is on `lo`.
    pub vips: Vec<(IpAddr, bool)>,
    pub sysctls: Vec<SysctlStatus>,
}

impl Status {
    /// Every VIP present and every sysctl as wanted.
    pub fn ready(&self) -> bool {
        self.vips.iter().all(|v| v.1) && self.sysctls.iter().all(|s| s.ok)
    }
}

/// Reads the current state for these VIPs.
pub fn status(vips: &[IpAddr]) -> Result<Status> {
    let lo = Loopback::open()?;
    let present = lo.addresses()?;
    Ok(Status {
        vips: vips
            .iter()
            .map(|ip| (*ip, present.iter().any(|(a, _)| a == ip)))
            .collect(),
        sysctls: wanted_sysctls(vips)
            .into_iter()
            .map(|w| {
                let value = read_sysctl(w.key);
                SysctlStatus {
                    key: w.key.into(),
                    ok: value.as_deref().is_some_and(|v| w.satisfied_by(v)),
                    value,
                    wanted: w.value.into(),
                }
            })
            .collect(),
    })
}

/// Files written by `--persist`, relative to a root directory (`/` in production).
#[derive(Clone, Debug)]
pub struct PersistPaths {
    pub sysctl_d: PathBuf,
    pub unit: PathBuf,
    /// The `multi-user.target.wants` symlink (`systemctl enable`).
    pub wants_link: PathBuf,
}

impl PersistPaths {
    pub fn under(root: &Path) -> PersistPaths {
        let sd = root.join("etc/systemd/system");
        PersistPaths {
            sysctl_d: root.join("etc/sysctl.d").join(SYSCTL_D_NAME),
            unit: sd.join(UNIT_NAME),
            wants_link: sd.join("multi-user.target.wants").join(UNIT_NAME),
        }
    }
}

/// The sysctl.d file content.
pub fn sysctl_d_content(vips: &[IpAddr]) -> String {
    let mut s = String::from(
        "# Written by `xlb realserver up --persist`: direct-routing real server.\n\
         # The VIPs live on lo; these keep the host from answering ARP for them.\n",
    );
    for w in wanted_sysctls(vips) {
        s += &format!("{} = {}\n", w.key, w.value);
    }
    s
}

/// What the unit of `up --persist --tunnel` adds: the tunnel flags as `up` was given them, and
/// the interface the tunnel packets arrive on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistedTunnel {
    /// `--tunnel ... --interface ...` and the other tunnel flags, ready for the command line.
    pub args: Vec<String>,
    pub interface: String,
}

/// systemd's name for a network interface's device unit (`systemd-escape`'s rules: `-` and
/// anything outside `[A-Za-z0-9:_.]`, or a leading `.`, as `\xNN`).
fn device_unit(interface: &str) -> String {
    let mut name = String::from("sys-subsystem-net-devices-");
    for (i, b) in interface.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b':' || b == b'_' || (b == b'.' && i > 0);
        if plain {
            name.push(b as char);
        } else {
            name += &format!("\\x{b:02x}");
        }
    }
    name + ".device"
}

/// The `[Unit]` ordering. Direct routing needs nothing but `lo` and the sysctls, so it runs
/// before the network (and so before the web server binds the VIPs). Tunnel mode attaches to
/// `--interface` and its advmss table copies the main table's routes, so it waits for the
/// network to be online and for the interface's device.
fn unit_ordering(tunnel: Option<&PersistedTunnel>) -> String {
    match tunnel {
        None => "Description=xlb direct-routing real server (VIPs on lo, ARP sysctls)\n\
                 DefaultDependencies=no\n\
                 After=systemd-sysctl.service network-pre.target\n\
                 Before=network.target shutdown.target\n\
                 Conflicts=shutdown.target\n"
            .to_string(),
        Some(t) => {
            let device = device_unit(&t.interface);
            format!(
                "Description=xlb tunnel-mode real server (VIPs on lo, ARP sysctls, decapsulation \
                 on {iface})\n\
                 Wants=network-online.target\n\
                 Requires={device}\n\
                 After=systemd-sysctl.service sys-fs-bpf.mount network-online.target {device}\n\
                 Before=shutdown.target\n\
                 Conflicts=shutdown.target\n",
                iface = t.interface
            )
        }
    }
}

/// The systemd unit content; `exe` is the xlb binary.
pub fn unit_content(
    exe: &Path,
    vips: &[IpAddr],
    state_file: &Path,
    tunnel: Option<&PersistedTunnel>,
) -> String {
    let mut args = String::new();
    for v in vips {
        args += &format!(" --vip {v}");
    }
    if state_file != Path::new(DEFAULT_STATE_FILE) {
        args += &format!(" --state-file {}", state_file.display());
    }
    // `down` finds the tunnel set-up in the state file: only `up` needs the tunnel flags.
    let up_args: String = tunnel
        .map(|t| t.args.iter().map(|a| format!(" {a}")).collect())
        .unwrap_or_default();
    format!(
        "# Written by `xlb realserver up --persist`.\n\
         [Unit]\n\
         {ordering}\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={exe} realserver up{args}{up_args}\n\
         ExecStop={exe} realserver down{args}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        ordering = unit_ordering(tunnel),
        exe = exe.display()
    )
}

/// Writes the sysctl.d file and the unit, and enables it (the `wants` symlink, as `systemctl
/// enable` does). Returns one line per file written.
pub fn persist(
    root: &Path,
    exe: &Path,
    vips: &[IpAddr],
    state_file: &Path,
    tunnel: Option<&PersistedTunnel>,
) -> Result<Vec<String>> {
    let p = PersistPaths::under(root);
    let mut out = Vec::new();
    for (path, content) in [
        (&p.sysctl_d, sysctl_d_content(vips)),
        (&p.unit, unit_content(exe, vips, state_file, tunnel)),
    ] {
        if fs::read_to_string(path).ok().as_deref() == Some(content.as_str()) {
            continue;
        }
        let dir = path.parent().unwrap_or(root);
        fs::create_dir_all(dir).map_err(file_error("creating", dir))?;
        fs::write(path, content).map_err(file_error("writing", path))?;
        out.push(format!("wrote {}", path.display()));
    }
    if fs::symlink_metadata(&p.wants_link).is_err() {
        let dir = p.wants_link.parent().unwrap_or(root);
        fs::create_dir_all(dir).map_err(file_error("creating", dir))?;
        std::os::unix::fs::symlink(format!("../{UNIT_NAME}"), &p.wants_link)
            .map_err(file_error("linking", &p.wants_link))?;
        out.push(format!("enabled {UNIT_NAME} ({})", p.wants_link.display()));
    }
    Ok(out)
}

/// Removes what [`persist`] wrote.
pub fn unpersist(root: &Path) -> Result<Vec<String>> {
    let p = PersistPaths::under(root);
    let mut out = Vec::new();
    for path in [&p.wants_link, &p.unit, &p.sysctl_d] {
        match fs::remove_file(path) {
            Ok(()) => out.push(format!("removed {}", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error("removing", path)(e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_values() {
        let ign = SYSCTLS_V4[0];
        assert!(ign.satisfied_by("1") && ign.satisfied_by("2\n") && !ign.satisfied_by("0"));
        let ann = SYSCTLS_V4[2];
        assert!(ann.satisfied_by("2") && !ann.satisfied_by("1"));
        assert_eq!(wanted_sysctls(&["198.18.0.1".parse().unwrap()]).len(), 4);
        assert_eq!(wanted_sysctls(&["2001:db8::1".parse().unwrap()]).len(), 5);
    }

    #[test]
    fn persist_files() {
        let dir = std::env::temp_dir().join(format!("xlb-rs-persist-{}", std::process::id()));
        let vips: Vec<IpAddr> = vec!["198.18.2.212".parse().unwrap()];
        let st = Path::new(DEFAULT_STATE_FILE);
        let w = persist(&dir, Path::new("/usr/sbin/xlb"), &vips, st, None).unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(persist(&dir, Path::new("/usr/sbin/xlb"), &vips, st, None)
            .unwrap()
            .is_empty());
        let p = PersistPaths::under(&dir);
        let unit = fs::read_to_string(&p.unit).unwrap();
        assert!(unit.contains("Type=oneshot") && unit.contains("RemainAfterExit=yes"));
        assert!(unit.contains("ExecStart=/usr/sbin/xlb realserver up --vip 198.18.2.212\n"));
        assert!(unit.contains("ExecStop=/usr/sbin/xlb realserver down --vip 198.18.2.212\n"));
        let sd = fs::read_to_string(&p.sysctl_d).unwrap();
        assert!(sd.contains("net.ipv4.conf.all.arp_ignore = 1"));
        assert_eq!(
            fs::read_link(&p.wants_link).unwrap(),
            Path::new("../xlb-realserver.service")
        );
        assert_eq!(unpersist(&dir).unwrap().len(), 3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tunnel_unit_waits_for_the_network_and_its_interface() {
        let vips: Vec<IpAddr> = vec!["198.18.2.212".parse().unwrap()];
        let tunnel = PersistedTunnel {
            args: ["--tunnel", "gue", "--interface", "eth-1"]
                .map(String::from)
                .to_vec(),
            interface: "eth-1".into(),
        };
        let unit = unit_content(
            Path::new("/usr/sbin/xlb"),
            &vips,
            Path::new(DEFAULT_STATE_FILE),
            Some(&tunnel),
        );
        assert!(unit.contains(
            "ExecStart=/usr/sbin/xlb realserver up --vip 198.18.2.212 --tunnel gue --interface eth-1\n"
        ));
        // `down` reads the tunnel set-up from the state file.
        assert!(unit.contains("ExecStop=/usr/sbin/xlb realserver down --vip 198.18.2.212\n"));
        assert!(unit.contains("Requires=sys-subsystem-net-devices-eth\\x2d1.device\n"));
        assert!(
            unit.contains("After=systemd-sysctl.service sys-fs-bpf.mount network-online.target")
        );
        assert!(unit.contains("Wants=network-online.target\n"));
        assert!(
            !unit.contains("DefaultDependencies=no") && !unit.contains("Before=network.target")
        );
        assert_eq!(
            device_unit(".x:y_z.1"),
            "sys-subsystem-net-devices-\\x2ex:y_z.1.device"
        );
    }

    /// systemd itself reads both units (skipped where systemd-analyze is not installed).
    #[test]
    fn units_pass_systemd_analyze_verify() {
        let dir = std::env::temp_dir().join(format!("xlb-rs-verify-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let vips: Vec<IpAddr> = vec![
            "198.18.2.212".parse().unwrap(),
            "2001:db8::212".parse().unwrap(),
        ];
        let tunnel = PersistedTunnel {
            args: ["--tunnel", "ipip", "--interface", "eth-1"]
                .map(String::from)
                .to_vec(),
            interface: "eth-1".into(),
        };
        for (name, t) in [("dr", None), ("tunnel", Some(&tunnel))] {
            let unit = dir.join(format!("xlb-realserver-{name}.service"));
            let content = unit_content(Path::new("/bin/true"), &vips, Path::new("/run/x.json"), t);
            fs::write(&unit, content).unwrap();
            let out = match std::process::Command::new("systemd-analyze")
                .arg("verify")
                .arg(&unit)
                .output()
            {
                Ok(out) => out,
                Err(e) => {
                    eprintln!("skipped: systemd-analyze not runnable here ({e})");
                    break;
                }
            };
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "{name}: {stderr}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
