//! `xlb doctor`: checks a director (and a DR real server) and explains each finding with its fix.
//!
//! Two layers: [`gather`] reads the host into a [`Facts`] value (ioctl, /proc, /sys, `nft`,
//! `iptables-save`, bpffs); [`check`] is a pure function from facts to [`Finding`]s, so every
//! rule is unit-tested with hand-written facts.
//!
//! Exit status of the CLI: 1 when there is an error, 0 with warnings only (1 with `--strict`).
//!
//! Why one file of this size: it is the catalogue of rules, each a small pure function from facts
//! to a finding with its fix, and about a quarter of it is their unit tests; the IO is in
//! [`gather`], and the larger subjects have their own modules ([`firewall`], [`kernel`], [`vip`]).

pub mod firewall;
pub mod gather;
pub mod kernel;
pub mod tunnel;
pub mod vip;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::config::XdpMode;
use firewall::{Fate, Probe};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not checked (and why): neither good nor bad.
    Skip,
    Ok,
    Warn,
    Error,
}

/// One result: what was checked, what was found, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub check: String,
    pub detail: String,
    /// Empty for `ok`.
    pub fix: String,
}

fn f(severity: Severity, check: &str, detail: String, fix: impl Into<String>) -> Finding {
    Finding {
        severity,
        check: check.into(),
        detail,
        fix: fix.into(),
    }
}
fn ok(check: &str, detail: String) -> Finding {
    f(Severity::Ok, check, detail, "")
}

/// One XDP interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IfaceFacts {
    pub name: String,
    pub exists: bool,
    /// Kernel driver name (`ethtool -i`).
    pub driver: Option<String>,
    pub mtu: Option<u32>,
    /// Large receive offload on (`ethtool -k`).
    pub lro: Option<bool>,
}

/// One VRRP instance of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VrrpFacts {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub advert_int_ms: u64,
    /// What the running daemon reported over 3 advert intervals (`None`: daemon not reachable).
    pub observed: Option<VrrpObserved>,
    pub v6: bool,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
}

/// Two samples of a running instance, 3 advert intervals apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VrrpObserved {
    pub state_before: String,
    pub state_after: String,
    pub adverts_rx_before: u64,
    pub adverts_rx_after: u64,
    pub last_master: Option<IpAddr>,
    /// Dropped adverts by reason at the first and the second sample.
    pub bad_adverts_before: BTreeMap<String, u64>,
    pub bad_adverts_after: BTreeMap<String, u64>,
    /// The last dropped advert: sender and reason.
    pub last_bad_advert: Option<(IpAddr, String)>,
}

/// The firewall as dumped by its tools (`None`: tool absent or failed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FirewallFacts {
    pub nft_json: Option<String>,
    pub iptables_save: Option<String>,
    pub ip6tables_save: Option<String>,
}

/// The daemon's pins under bpffs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PinFacts {
    pub dir: String,
    pub dir_exists: bool,
    pub maps_missing: Vec<String>,
    /// Interfaces of the configuration without a `link_<iface>` pin.
    pub links_missing: Vec<String>,
    /// Entries in the pinned SERVICES map, or why it could not be read.
    pub services_in_map: Option<Result<usize, String>>,
    pub services_in_config: usize,
    /// Interfaces with a pinned `link_<iface>` (the program is attached there).
    pub links_pinned: Vec<String>,
    /// Did a daemon answer on the control socket? (`None`: not asked.)
    pub daemon_answers: Option<bool>,
}

/// The real-server side (`--realserver --vip ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RealServerFacts {
    /// Each VIP and whether it is on `lo`.
    pub vips: Vec<(IpAddr, bool)>,
}

/// Everything the checks look at.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Facts {
    /// The configuration file, when one was given (or the default exists).
    pub config_file: Option<String>,
    /// Its errors (file:line:column: message).
    pub config_errors: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub interfaces: Vec<IfaceFacts>,
    pub vrrp: Vec<VrrpFacts>,
    pub firewall: FirewallFacts,
    /// Interfaces of the host (for per-interface sysctls), without `lo`.
    pub host_interfaces: Vec<String>,
    /// Sysctl values that were read (dotted names); absent = does not exist.
    pub sysctls: BTreeMap<String, String>,
    pub conn_table_size: Option<u32>,
    pub real_servers: usize,
    /// `MemAvailable` in bytes.
    pub mem_available: Option<u64>,
    /// Soft RLIMIT_NOFILE.
    pub nofile: Option<u64>,
    /// (path, content) of /etc/sysctl.conf and the sysctl.d files.
    pub sysctl_files: Vec<(String, String)>,
    pub pins: Option<PinFacts>,
    pub realserver: Option<RealServerFacts>,
    /// The kernel release and BPF features (`None`: not gathered).
    pub kernel: Option<kernel::KernelFacts>,
    /// Who holds each VIP of the configuration.
    pub vip_holders: Vec<vip::VipHolder>,
    /// Addresses on this host's interfaces (interface, address), `lo` included.
    pub local_addresses: Vec<(String, IpAddr)>,
    /// Route and MTU of every tunnelled real server.
    pub tunnels: Vec<tunnel::TunnelFacts>,
}

/// Drivers with native (driver-mode) XDP in mainline Linux.
pub const NATIVE_XDP_DRIVERS: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "mlx4_en",
    "mlx4_core",
    "mlx5_core",
    "i40e",
    "ice",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "bnxt_en",
    "ena",
    "nfp",
    "qede",
    "sfc",
    "thunder-nicvf",
    "hv_netvsc",
    "xen-netfront",
    "mvneta",
    "mvpp2",
    "stmmac",
    "fec",
    "enetc",
    "dpaa2-eth",
    "bonding",
    "vmxnet3",
    "gve",
    "idpf",
    "octeontx2-nicpf",
    "lan966x-switch",
    "netsec",
    "cpsw",
    "am65-cpsw-nuss",
];

/// Drivers known to offer only generic (skb) XDP.
pub const GENERIC_ONLY_DRIVERS: &[&str] = &[
    "bnx2",
    "bnx2x",
    "tg3",
    "e1000",
    "e1000e",
    "r8169",
    "igbvf",
    "8139too",
    "b44",
    "forcedeth",
    "atl1c",
    "alx",
    "bridge",
    "dummy",
    "macvlan",
    "ipvlan",
    "vxlan",
    "8021q",
    "tg3_netxtreme",
];

/// Largest MTU native XDP accepts on most drivers (one page per frame: 4096 minus headroom and
/// `skb_shared_info`).
pub const NATIVE_MTU_MAX: u32 = 3498;
/// veth and virtio_net: `PAGE_SIZE - XDP_PACKET_HEADROOM - skb_shared_info - ETH_HLEN`-ish.
pub const VETH_VIRTIO_MTU_MAX: u32 = 3520;

/// Bytes of kernel memory per connection-table entry: the LRU overflow's key (`FlowKey`, 40) +
/// value (`FlowEntry`, 32) + LRU hash element overhead (~64), and one 64-byte set of the IPv4
/// table (`conn::set_count`, up to twice that when the size is not a power of two).
pub const CONN_ENTRY_BYTES: u64 = 40 + 32 + 64 + 64;

/// Runs every check.
pub fn check(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    check_config(facts, &mut out);
    if let Some(k) = &facts.kernel {
        kernel::check(k, &mut out);
    }
    check_interfaces(facts, &mut out);
    check_vip_holders(facts, &mut out);
    check_vrrp_firewall(facts, &mut out);
    check_vrrp_peers(facts, &mut out);
    check_vrrp_bad_adverts(facts, &mut out);
    check_director_sysctls(facts, &mut out);
    check_realserver(facts, &mut out);
    check_conn_table(facts, &mut out);
    check_stale_sysctls(facts, &mut out);
    check_pins(facts, &mut out);
    tunnel::check(&facts.tunnels, &mut out);
    out
}

/// 1 on errors (or warnings with `strict`), else 0.
pub fn exit_code(findings: &[Finding], strict: bool) -> u8 {
    let worst = findings.iter().map(|f| f.severity).max();
    match worst {
        Some(Severity::Error) => 1,
        Some(Severity::Warn) if strict => 1,
        _ => 0,
    }
}

fn check_config(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(file) = &facts.config_file else {
        return;
    };
    if facts.config_errors.is_empty() {
        out.push(ok("config", format!("{file} is valid")));
    } else {
        out.push(f(
            Severity::Error,
            "config",
            format!(
                "{file}: {} error(s):\n{}",
                facts.config_errors.len(),
                facts.config_errors.join("\n")
            ),
            format!("fix the file; `xlb check-config {file}` shows every error with its position"),
        ));
    }
}

fn check_interfaces(facts: &Facts, out: &mut Vec<Finding>) {
    let mode = facts.xdp_mode.unwrap_or_default();
    for i in &facts.interfaces {
        let n = &i.name;
        if !i.exists {
            out.push(f(
                Severity::Error,
                "xdp-driver",
                format!("interface {n} (global.interfaces) does not exist"),
                "correct global.interfaces, or create/rename the interface",
            ));
            continue;
        }
        let driver = i.driver.as_deref().unwrap_or("");
        let native = NATIVE_XDP_DRIVERS.contains(&driver);
        if native {
            out.push(ok(
                "xdp-driver",
                format!("{n}: driver {driver} supports native XDP"),
            ));
        } else {
            let generic_cost = "generic (skb) mode runs the program after the kernel has \
                allocated an skb for every frame, so most of XDP's gain is lost: expect roughly \
                IPVS-level packet rates (several times below native), and XDP_TX goes through the \
                regular transmit path";
            let known = GENERIC_ONLY_DRIVERS.contains(&driver);
            let what = if driver.is_empty() {
                format!("{n}: driver unknown (ethtool could not tell)")
            } else if known {
                format!("{n}: driver {driver} has no native XDP support")
            } else {
                format!("{n}: driver {driver} is not in xlb's table of native-XDP drivers")
            };
            let sev = if mode == XdpMode::Native && (known || driver.is_empty()) {
                Severity::Error
            } else {
                Severity::Warn
            };
            let mode_note = match mode {
                XdpMode::Native => "xdp_mode = \"native\" will fail to attach",
                XdpMode::Auto => "xdp_mode = \"auto\" falls back to generic mode",
                XdpMode::Generic => "xdp_mode = \"generic\" is configured",
            };
            let fix = if driver.starts_with("bnx2") || driver == "tg3" {
                "use a NIC with native XDP (e.g. Intel i40e/ice/ixgbe, Mellanox mlx5, Broadcom \
                 bnxt_en) for the balanced traffic; Broadcom bnx2/bnx2x/tg3 (Dell R710/R910 era) \
                 have none, whatever driver package is installed"
            } else {
                "use a NIC whose driver has native XDP (mlx5_core, i40e, ice, ixgbe, bnxt_en, \
                 ena, virtio_net, ...), or accept the generic-mode cost"
            };
            out.push(f(
                sev,
                "xdp-driver",
                format!("{what}; {mode_note}: {generic_cost}"),
                fix,
            ));
        }
        if let (Some(mtu), true) = (i.mtu, native) {
            let max = if driver == "veth" || driver == "virtio_net" {
                VETH_VIRTIO_MTU_MAX
            } else {
                NATIVE_MTU_MAX
            };
            if mtu > max {
                out.push(f(
                    if driver == "veth" || driver == "virtio_net" {
                        Severity::Error
                    } else {
                        Severity::Warn
                    },
                    "xdp-mtu",
                    format!(
                        "{n}: MTU {mtu} is above {max}, the largest frame native XDP takes on \
                         {driver} (one page per frame, without multi-buffer XDP): the attach is \
                         refused"
                    ),
                    format!(
                        "ip link set dev {n} mtu {max} (or 1500 unless jumbo frames are needed)"
                    ),
                ));
            } else {
                out.push(ok("xdp-mtu", format!("{n}: MTU {mtu} fits native XDP")));
            }
        }
        if i.lro == Some(true) {
            out.push(f(
                Severity::Warn,
                "lro",
                format!(
                    "{n}: large receive offload is on: XDP needs it off (native attach fails on \
                     several drivers, and coalesced frames cannot be forwarded as they are)"
                ),
                format!("ethtool -K {n} lro off (and persist it in the interface configuration)"),
            ));
        }
    }
}

fn vrrp_probes(facts: &Facts) -> Vec<(String, Probe)> {
    let mut out = Vec::new();
    for v in &facts.vrrp {
        let iface = Some(v.interface.clone());
        if v.unicast_peer.is_empty() {
            let p = if v.v6 {
                Probe::multicast_v6(iface)
            } else {
                Probe::multicast_v4(iface)
            };
            out.push((v.name.clone(), p));
        } else {
            for peer in &v.unicast_peer {
                let daddr = v.unicast_src_ip.unwrap_or(match peer {
                    IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                });
                out.push((
                    v.name.clone(),
                    Probe {
                        saddr: Some(*peer),
                        daddr,
                        iface: iface.clone(),
                    },
                ));
            }
        }
    }
    out
}

/// Who holds each VIP; an unmanaged (`announce = "always"`) VIP should be on this host or routed
/// here by other means.
fn check_vip_holders(facts: &Facts, out: &mut Vec<Finding>) {
    for h in &facts.vip_holders {
        if h.holder != vip::Holder::Unmanaged {
            out.push(ok("vip", h.to_string()));
            continue;
        }
        let local: Vec<&str> = facts
            .local_addresses
            .iter()
            .filter(|(_, a)| *a == h.vip)
            .map(|(i, _)| i.as_str())
            .collect();
        if local.is_empty() {
            out.push(f(
                Severity::Warn,
                "vip",
                format!(
                    "VIP {} (announce = \"always\") is on no interface of this host and xlb does \
                     not add it: clients reach it only if a router sends its packets here",
                    h.vip
                ),
                h.to_string(),
            ));
        } else {
            out.push(ok(
                "vip",
                format!(
                    "VIP {} (announce = \"always\"): held by this host on {}, not by xlb",
                    h.vip,
                    local.join(", ")
                ),
            ));
        }
    }
}

/// Peers heard within 3 advert intervals: a BACKUP that hears no MASTER is about to become one
/// (split brain if the other is alive), and a MASTER that hears adverts has a rival MASTER.
fn check_vrrp_peers(facts: &Facts, out: &mut Vec<Finding>) {
    const UNICAST_FIX: &str =
        "allow IP protocol 112 to/from the peer (and 224.0.0.18 / ff02::12), \
        or use unicast_src_ip + unicast_peer where multicast is filtered";
    for v in &facts.vrrp {
        let Some(o) = &v.observed else {
            out.push(f(
                Severity::Skip,
                "vrrp-peers",
                format!(
                    "{}: not checked: the daemon is not reachable (peers are heard through it)",
                    v.name
                ),
                "",
            ));
            continue;
        };
        let heard = o.adverts_rx_after > o.adverts_rx_before;
        let window = 3.0 * v.advert_int_ms as f64 / 1000.0;
        match (o.state_after.as_str(), heard) {
            ("BACKUP", false) => out.push(f(
                Severity::Error,
                "vrrp-peers",
                format!(
                    "{} (vrid {} on {}): BACKUP heard no advertisement in {window:.1} s; it will take over \
                     while the MASTER may still be alive: split-brain risk",
                    v.name, v.vrid, v.interface
                ),
                UNICAST_FIX,
            )),
            ("MASTER", true) => out.push(f(
                Severity::Error,
                "vrrp-peers",
                format!(
                    "{} (vrid {} on {}): MASTER hears another MASTER{}: split brain",
                    v.name,
                    v.vrid,
                    v.interface,
                    o.last_master.map(|m| format!(" ({m})")).unwrap_or_default()
                ),
                "check that both directors can hear each other's adverts (firewall, multicast \
                 snooping, VLANs); priorities must differ",
            )),
            (state, _) if o.state_before != o.state_after => out.push(f(
                Severity::Warn,
                "vrrp-peers",
                format!("{}: changed from {} to {state} while observed", v.name, o.state_before),
                "run the check again once the pair is stable",
            )),
            (state, _) => out.push(f(
                Severity::Ok,
                "vrrp-peers",
                format!(
                    "{} (vrid {}): {state}{}",
                    v.name,
                    v.vrid,
                    if heard { ", hears its MASTER" } else { ", no rival heard" }
                ),
                "",
            )),
        }
    }
}

/// Adverts the running daemon drops: a password, version or interval mismatch with the peer
/// makes each side deaf to the other (both MASTER), which "no rival heard" would hide.
fn check_vrrp_bad_adverts(facts: &Facts, out: &mut Vec<Finding>) {
    for v in &facts.vrrp {
        let Some(o) = &v.observed else { continue };
        let grew: Vec<(String, u64)> = o
            .bad_adverts_after
            .iter()
            .map(|(k, n)| {
                (
                    k.clone(),
                    n.saturating_sub(*o.bad_adverts_before.get(k).unwrap_or(&0)),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = o.bad_adverts_after.values().sum();
        if total == 0 {
            continue;
        }
        let from = o
            .last_bad_advert
            .as_ref()
            .map(|(ip, reason)| format!("; last from {ip} ({reason})"))
            .unwrap_or_default();
        let hint = |reason: &str| {
            crate::vrrp::packet::RxError::ALL
                .iter()
                .find(|e| e.as_str() == reason)
                .map(|e| e.hint())
                .unwrap_or("malformed advertisement")
        };
        if grew.is_empty() {
            out.push(f(
                Severity::Warn,
                "vrrp-bad-adverts",
                format!(
                    "{}: {total} advert(s) dropped since start, none while observed{from}",
                    v.name
                ),
                "see the daemon's log (WARN lines 'bad VRRP advert') for the sender and reason",
            ));
            continue;
        }
        // Another VRID on the link may be an unrelated VRRP router: a warning, not an error.
        let only_vrid = grew.iter().all(|(k, _)| k == "vrid");
        let causes: Vec<String> = grew
            .iter()
            .map(|(k, n)| format!("{k} x{n}: {}", hint(k)))
            .collect();
        out.push(f(
            if only_vrid {
                Severity::Warn
            } else {
                Severity::Error
            },
            "vrrp-bad-adverts",
            format!(
                "{} (vrid {} on {}): adverts dropped while observed: {}{from}",
                v.name,
                v.vrid,
                v.interface,
                causes.join("; ")
            ),
            "give both directors the same virtual_router_id, version, advert_int and \
             authentication (auth_type, auth_pass)",
        ));
    }
}

fn check_vrrp_firewall(facts: &Facts, out: &mut Vec<Finding>) {
    let probes = vrrp_probes(facts);
    if probes.is_empty() {
        return;
    }
    let fw = &facts.firewall;
    let xt_nft = fw
        .iptables_save
        .as_deref()
        .is_some_and(|s| s.contains("nf_tables"));
    let mut tables = Vec::new();
    if let Some(j) = &fw.nft_json {
        match firewall::parse_nft(j, xt_nft) {
            Ok(t) => tables.extend(t),
            Err(e) => out.push(f(
                Severity::Warn,
                "vrrp-firewall",
                format!("could not read the nftables ruleset: {e}"),
                "check `nft -j list ruleset` by hand",
            )),
        }
    }
    if let Some(s) = &fw.iptables_save {
        tables.extend(firewall::parse_iptables_save(s, false));
    }
    if let Some(s) = &fw.ip6tables_save {
        tables.extend(firewall::parse_iptables_save(s, true));
    }
    for (name, p) in probes {
        let accept = if p.daddr.is_multicast() {
            if p.daddr.is_ipv6() {
                "meta l4proto vrrp ip6 daddr ff02::12 accept` / `ip6tables -I INPUT -p vrrp -d ff02::12 -j ACCEPT`".to_string()
            } else {
                "ip protocol vrrp ip daddr 224.0.0.18 accept` / `iptables -I INPUT -p vrrp -d 224.0.0.18 -j ACCEPT`".to_string()
            }
        } else {
            let fam = if p.daddr.is_ipv6() { "ip6" } else { "ip" };
            let s = p.saddr.map(|a| a.to_string()).unwrap_or_default();
            format!("meta l4proto vrrp {fam} saddr {s} accept` / `iptables -I INPUT -p vrrp -s {s} -j ACCEPT`")
        };
        let unicast_note = if p.daddr.is_multicast() {
            " If the network itself filters multicast, configure unicast_src_ip/unicast_peer."
        } else {
            ""
        };
        match firewall::fate(&tables, &p) {
            Fate::Accepted => out.push(ok(
                "vrrp-firewall",
                format!("vrrp_instance {name}: {} passes the firewall", p.describe()),
            )),
            Fate::Dropped(why, hint) => out.push(f(
                Severity::Error,
                "vrrp-firewall",
                format!(
                    "vrrp_instance {name}: {} is dropped by {why}. Both directors then miss each \
                     other's adverts and both become MASTER: split brain (the field report's \
                     first problem)",
                    p.describe()
                ),
                format!("accept VRRP before that rule: `{hint} {accept}.{unicast_note}"),
            )),
            Fate::MaybeDropped(why, hint) => out.push(f(
                Severity::Warn,
                "vrrp-firewall",
                format!(
                    "vrrp_instance {name}: {} may be dropped by {why} (it has conditions doctor \
                     cannot evaluate): split-brain risk",
                    p.describe()
                ),
                format!("make sure VRRP is accepted first: `{hint} {accept}.{unicast_note}"),
            )),
        }
    }
}

/// Effective value of a per-interface IPv4 conf sysctl: the kernel takes max(all, iface) for
/// arp_ignore, arp_announce and rp_filter.
fn effective(facts: &Facts, iface: &str, name: &str) -> Option<u32> {
    let get = |i: &str| {
        facts
            .sysctls
            .get(&format!("net.ipv4.conf.{i}.{name}"))
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    match (get("all"), get(iface)) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    }
}

fn arp_checks(facts: &Facts, role: &str, ifaces: &[String], sev: Severity, out: &mut Vec<Finding>) {
    for i in ifaces {
        let ign = effective(facts, i, "arp_ignore");
        let ann = effective(facts, i, "arp_announce");
        let good = matches!(ign, Some(1..=8)) && ann == Some(2);
        if good {
            out.push(ok(
                "arp-sysctls",
                format!("{role} {i}: arp_ignore {} arp_announce 2", ign.unwrap_or(0)),
            ));
        } else if ign.is_some() || ann.is_some() {
            let why = if role == "real server" {
                "the real server answers ARP for the VIP (it is on lo) and steals the VIP's \
                 traffic from the director"
            } else {
                "the director answers ARP for addresses it holds on other interfaces (or on lo), \
                 and picks them as ARP source: with VIPs moving between directors this confuses \
                 neighbours (the field report's split brain was only fixed with these values)"
            };
            out.push(f(
                sev,
                "arp-sysctls",
                format!(
                    "{role} {i}: effective arp_ignore {} arp_announce {} (max of `all` and `{i}`): {why}",
                    ign.unwrap_or(0),
                    ann.unwrap_or(0)
                ),
                "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
                 (and persist in /etc/sysctl.d/; on real servers `xlb realserver up --persist` \
                 does it)",
            ));
        }
    }
}

fn rp_filter_checks(facts: &Facts, role: &str, ifaces: &[String], out: &mut Vec<Finding>) {
    for i in ifaces {
        if effective(facts, i, "rp_filter") == Some(1) {
            out.push(f(
                Severity::Warn,
                "rp-filter",
                format!(
                    "{role} {i}: rp_filter is strict (1): packets whose source is routed back \
                     through another interface are dropped (multi-homed hosts, clients reached \
                     via a different uplink, VRRP/health-check traffic on a second network)"
                ),
                format!(
                    "use loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 \
                     net.ipv4.conf.{i}.rp_filter=2"
                ),
            ));
        }
    }
}

fn check_director_sysctls(facts: &Facts, out: &mut Vec<Finding>) {
    if facts.config_file.is_none() {
        return;
    }
    let ifaces: Vec<String> = facts
        .interfaces
        .iter()
        .filter(|i| i.exists)
        .map(|i| i.name.clone())
        .collect();
    arp_checks(facts, "director", &ifaces, Severity::Warn, out);
    rp_filter_checks(facts, "director", &ifaces, out);
}

fn check_realserver(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(rs) = &facts.realserver else {
        return;
    };
    for (ip, present) in &rs.vips {
        if *present {
            out.push(ok("realserver-vip", format!("VIP {ip} is on lo")));
        } else {
            let p = if ip.is_ipv4() { "32" } else { "128" };
            out.push(f(
                Severity::Error,
                "realserver-vip",
                format!(
                    "VIP {ip} is not on lo: the real server drops the frames the director sends \
                     it (destination address not local)"
                ),
                format!(
                    "xlb realserver up --vip {ip} --persist (or `ip addr add {ip}/{p} dev lo`)"
                ),
            ));
        }
    }
    // `all` and `lo` as `xlb realserver` sets them, then every interface's effective value.
    for key in [
        "net.ipv4.conf.all.arp_ignore",
        "net.ipv4.conf.lo.arp_ignore",
        "net.ipv4.conf.all.arp_announce",
        "net.ipv4.conf.lo.arp_announce",
    ] {
        let want = if key.ends_with("arp_ignore") {
            "1"
        } else {
            "2"
        };
        let w = crate::realserver::Wanted { key, value: want };
        match facts.sysctls.get(key) {
            Some(v) if w.satisfied_by(v) => out.push(ok("realserver-arp", format!("{key} = {v}"))),
            Some(v) => out.push(f(
                Severity::Error,
                "realserver-arp",
                format!(
                    "{key} = {v}, want {want}: the real server answers ARP requests for the VIP \
                     and clients' traffic bypasses the director"
                ),
                format!("xlb realserver up --vip VIP --persist (or sysctl -w {key}={want})"),
            )),
            None => {}
        }
    }
    let ifaces = facts.host_interfaces.clone();
    arp_checks(facts, "real server", &ifaces, Severity::Error, out);
    rp_filter_checks(facts, "real server", &ifaces, out);
}

fn check_conn_table(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(size) = facts.conn_table_size else {
        return;
    };
    let bytes = size as u64 * CONN_ENTRY_BYTES;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    if let Some(avail) = facts.mem_available {
        let detail = format!(
            "conn_table_size {size} needs about {:.0} MiB of kernel memory (~{CONN_ENTRY_BYTES} \
             bytes an entry, allocated up front), MemAvailable is {:.0} MiB",
            mib(bytes),
            mib(avail)
        );
        if bytes > avail / 2 {
            out.push(f(
                Severity::Error,
                "conn-table-memory",
                detail + ": loading fails or the host starts swapping/OOM-killing",
                "lower global.conn_table_size (IPVS-style sizing: peak concurrent flows x 2), or add memory",
            ));
        } else if bytes > avail / 5 {
            out.push(f(
                Severity::Warn,
                "conn-table-memory",
                detail + ": more than 20% of the available memory",
                "check that peak concurrent flows justify it; lower global.conn_table_size otherwise",
            ));
        } else {
            out.push(ok("conn-table-memory", detail));
        }
    }
    if let Some(nofile) = facts.nofile {
        // Connection-table entries use no file descriptors (unlike a proxy); the daemon needs
        // some per real server for concurrent health checks, plus its own.
        let need = 64 + 2 * facts.real_servers as u64;
        if nofile < need {
            out.push(f(
                Severity::Warn,
                "nofile",
                format!(
                    "open-file limit {nofile} is below {need} (64 + 2 per real server for \
                     concurrent health checks)"
                ),
                "raise it: LimitNOFILE= in the xlb unit, or `ulimit -n`",
            ));
        } else {
            out.push(ok(
                "nofile",
                format!(
                    "open-file limit {nofile} >= {need}; forwarded flows use no file descriptors \
                     (unlike IPVS-era `nofile 102400` tuning for proxies)"
                ),
            ));
        }
    }
}

fn check_stale_sysctls(facts: &Facts, out: &mut Vec<Finding>) {
    for (path, content) in &facts.sysctl_files {
        for (n, line) in content.lines().enumerate() {
            let l = line.trim();
            if l.starts_with('#') || l.starts_with(';') {
                continue;
            }
            let key = l
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches('-');
            if key.replace('/', ".") == "net.ipv4.tcp_tw_recycle" {
                out.push(f(
                    Severity::Error,
                    "stale-sysctl",
                    format!(
                        "{path}:{}: `{l}`: net.ipv4.tcp_tw_recycle was removed in Linux 4.12 \
                         (it broke clients behind NAT, whose timestamps are not monotonic); \
                         `sysctl --system` now fails on it",
                        n + 1
                    ),
                    format!("delete the line from {path} (tcp_tw_reuse is the safe relative)"),
                ));
            }
        }
    }
}

fn check_pins(facts: &Facts, out: &mut Vec<Finding>) {
    let Some(p) = &facts.pins else {
        return;
    };
    if !p.dir_exists {
        out.push(f(
            Severity::Warn,
            "pins",
            format!("{} does not exist: the daemon is not running (or never started here)", p.dir),
            "start the daemon (systemctl start xlb); if bpffs is not mounted: mount -t bpf bpf /sys/fs/bpf",
        ));
        return;
    }
    if p.maps_missing.is_empty() {
        out.push(ok("pins", format!("every map is pinned under {}", p.dir)));
    } else {
        out.push(f(
            Severity::Error,
            "pins",
            format!(
                "missing map pins under {}: {} (a partial state: another version, or a crash \
                 while pinning)",
                p.dir,
                p.maps_missing.join(", ")
            ),
            "restart the daemon so it re-creates its pins (flows in the connection table are lost)",
        ));
    }
    if p.daemon_answers == Some(false) && !p.links_pinned.is_empty() {
        out.push(f(
            Severity::Error,
            "pins",
            format!(
                "the XDP program is attached to {} but no daemon answers: forwarding follows the \
                 last tables with frozen health (a failed real server keeps its share) and no \
                 VRRP adverts are sent",
                p.links_pinned.join(", ")
            ),
            "start the daemon (systemctl start xlb), or take the program off (xlb stop --detach \
             needs the daemon; without one: rm the link_* pins under the bpffs directory)",
        ));
    }
    for i in &p.links_missing {
        out.push(f(
            Severity::Error,
            "pins",
            format!(
                "no XDP link pinned for {i} ({}/link_{i}): nothing is forwarded there",
                p.dir
            ),
            "restart the daemon, or check its log for the attach error",
        ));
    }
    match &p.services_in_map {
        Some(Ok(n)) if *n == p.services_in_config => out.push(ok(
            "pins",
            format!("SERVICES map holds {n} services, as the configuration"),
        )),
        Some(Ok(n)) => out.push(f(
            Severity::Error,
            "pins",
            format!(
                "SERVICES map holds {n} services, the configuration {}: the running daemon has \
                 another configuration",
                p.services_in_config
            ),
            "reload the daemon (systemctl reload xlb) or check which file it runs with",
        )),
        Some(Err(e)) => out.push(f(
            Severity::Warn,
            "pins",
            format!("cannot read the pinned SERVICES map: {e}"),
            "run doctor as root",
        )),
        None => {}
    }
}

/// Text rendering of findings.
pub fn render(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings {
        let tag = match x.severity {
            Severity::Skip => "[skip]",
            Severity::Ok => "[ ok ]",
            Severity::Warn => "[warn]",
            Severity::Error => "[FAIL]",
        };
        s += &format!(
            "{tag} {}: {}\n",
            x.check,
            x.detail.replace('\n', "\n       ")
        );
        if !x.fix.is_empty() {
            s += &format!("       fix: {}\n", x.fix);
        }
    }
    let e = findings
        .iter()
        .filter(|x| x.severity == Severity::Error)
        .count();
    let w = findings
        .iter()
        .filter(|x| x.severity == Severity::Warn)
        .count();
    s += &format!("{e} error(s), {w} warning(s)\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(f: &[Finding], sev: Severity, check: &str, needle: &str) -> bool {
        f.iter()
            .any(|x| x.severity == sev && x.check == check && x.detail.contains(needle))
    }

    fn iface(name: &str, driver: &str) -> IfaceFacts {
        IfaceFacts {
            name: name.into(),
            exists: true,
            driver: Some(driver.into()),
            mtu: Some(1500),
            lro: Some(false),
        }
    }

    #[test]
    fn generic_only_driver() {
        let mut facts = Facts {
            interfaces: vec![iface("eth0", "bnx2"), iface("eth1", "mlx5_core")],
            ..Default::default()
        };
        let fs = check(&facts);
        assert!(has(
            &fs,
            Severity::Warn,
            "xdp-driver",
            "eth0: driver bnx2 has no native XDP"
        ));
        assert!(has(
            &fs,
            Severity::Ok,
            "xdp-driver",
            "eth1: driver mlx5_core"
        ));
        assert!(fs.iter().any(|x| x.fix.contains("bnxt_en")));
        facts.xdp_mode = Some(XdpMode::Native);
        let fs = check(&facts);
        assert!(has(&fs, Severity::Error, "xdp-driver", "bnx2"));
        assert_eq!(exit_code(&fs, false), 1);
    }

    #[test]
    fn mtu_and_lro() {
        let mut a = iface("eth0", "veth");
        a.mtu = Some(9000);
        let mut b = iface("eth1", "ixgbe");
        b.mtu = Some(4000);
        b.lro = Some(true);
        let fs = check(&Facts {
            interfaces: vec![a, b],
            ..Default::default()
        });
        assert!(has(&fs, Severity::Error, "xdp-mtu", "eth0: MTU 9000"));
        assert!(has(&fs, Severity::Warn, "xdp-mtu", "eth1: MTU 4000"));
        assert!(has(&fs, Severity::Warn, "lro", "eth1"));
    }

    /// VI_1 (vrid 51 on eth0, advert 1 s) as the daemon reported it.
    fn observed_vrrp(observed: VrrpObserved) -> Facts {
        Facts {
            vrrp: vec![VrrpFacts {
                name: "VI_1".into(),
                interface: "eth0".into(),
                vrid: 51,
                advert_int_ms: 1000,
                observed: Some(observed),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn vrrp_peers() {
        let facts = |state: &str, before: u64, after: u64| {
            observed_vrrp(VrrpObserved {
                state_before: state.into(),
                state_after: state.into(),
                adverts_rx_before: before,
                adverts_rx_after: after,
                ..Default::default()
            })
        };
        let sev = |f: &Facts| {
            check(f)
                .into_iter()
                .find(|x| x.check == "vrrp-peers")
                .unwrap()
                .severity
        };
        assert_eq!(sev(&facts("BACKUP", 5, 5)), Severity::Error);
        assert_eq!(sev(&facts("BACKUP", 5, 8)), Severity::Ok);
        assert_eq!(sev(&facts("MASTER", 5, 8)), Severity::Error);
        assert_eq!(sev(&facts("MASTER", 0, 0)), Severity::Ok);
    }

    #[test]
    fn vrrp_bad_adverts_name_their_cause() {
        let facts = |reason: &str, before: u64, after: u64| {
            observed_vrrp(VrrpObserved {
                state_before: "MASTER".into(),
                state_after: "MASTER".into(),
                bad_adverts_before: [(reason.to_string(), before)].into(),
                bad_adverts_after: [(reason.to_string(), after)].into(),
                last_bad_advert: Some(("198.18.0.3".parse().unwrap(), reason.into())),
                ..Default::default()
            })
        };
        let find = |f: &Facts| check(f).into_iter().find(|x| x.check == "vrrp-bad-adverts");
        let auth = find(&facts("auth", 2, 5)).unwrap();
        assert_eq!(auth.severity, Severity::Error);
        assert!(
            auth.detail.contains("auth x3") && auth.detail.contains("auth_pass"),
            "{}",
            auth.detail
        );
        assert!(auth.detail.contains("198.18.0.3"), "{}", auth.detail);
        assert_eq!(find(&facts("vrid", 0, 3)).unwrap().severity, Severity::Warn);
        assert_eq!(find(&facts("auth", 4, 4)).unwrap().severity, Severity::Warn);
        assert!(find(&facts("auth", 0, 0)).is_none());
    }

    #[test]
    fn vrrp_firewall() {
        let facts = Facts {
            vrrp: vec![VrrpFacts {
                name: "VI_1".into(),
                interface: "eth0".into(),
                ..Default::default()
            }],
            firewall: FirewallFacts {
                iptables_save: Some(
                    "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -d 224.0.0.0/8 -j DROP\nCOMMIT\n"
                        .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let fs = check(&facts);
        assert!(has(&fs, Severity::Error, "vrrp-firewall", "split brain"));
        let mut clean = facts.clone();
        clean.firewall = FirewallFacts::default();
        assert!(has(&check(&clean), Severity::Ok, "vrrp-firewall", "passes"));
    }

    #[test]
    fn realserver_and_sysctls() {
        let mut sysctls = BTreeMap::new();
        for (k, v) in [
            ("net.ipv4.conf.all.arp_ignore", "0"),
            ("net.ipv4.conf.lo.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.lo.arp_announce", "2"),
            ("net.ipv4.conf.eth0.arp_ignore", "0"),
            ("net.ipv4.conf.eth0.arp_announce", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.eth0.rp_filter", "1"),
        ] {
            sysctls.insert(k.to_string(), v.to_string());
        }
        let facts = Facts {
            sysctls,
            host_interfaces: vec!["eth0".into()],
            realserver: Some(RealServerFacts {
                vips: vec![
                    ("198.18.2.212".parse().unwrap(), true),
                    ("198.18.2.213".parse().unwrap(), false),
                ],
            }),
            ..Default::default()
        };
        let fs = check(&facts);
        assert!(has(
            &fs,
            Severity::Error,
            "realserver-vip",
            "198.18.2.213 is not on lo"
        ));
        assert!(has(&fs, Severity::Ok, "realserver-vip", "198.18.2.212"));
        assert!(has(
            &fs,
            Severity::Error,
            "realserver-arp",
            "all.arp_ignore = 0"
        ));
        assert!(has(&fs, Severity::Error, "arp-sysctls", "real server eth0"));
        assert!(has(&fs, Severity::Warn, "rp-filter", "eth0"));
    }

    #[test]
    fn memory_nofile_stale_pins() {
        let facts = Facts {
            conn_table_size: Some(67_108_864),
            mem_available: Some(4 << 30),
            nofile: Some(32),
            real_servers: 10,
            sysctl_files: vec![(
                "/etc/sysctl.conf".into(),
                "# net.ipv4.tcp_tw_recycle = 1\nnet.ipv4.tcp_tw_reuse = 1\nnet.ipv4.tcp_tw_recycle = 1\n"
                    .into(),
            )],
            pins: Some(PinFacts {
                dir: "/sys/fs/bpf/xlb".into(),
                dir_exists: true,
                maps_missing: vec!["CONN_TABLE".into()],
                links_missing: vec!["eth0".into()],
                services_in_map: Some(Ok(1)),
                services_in_config: 2,
                links_pinned: vec!["eth1".into()],
                daemon_answers: Some(false),
            }),
            ..Default::default()
        };
        let fs = check(&facts);
        assert!(has(&fs, Severity::Error, "conn-table-memory", "12800 MiB"));
        assert!(has(&fs, Severity::Warn, "nofile", "below 84"));
        assert!(has(
            &fs,
            Severity::Error,
            "stale-sysctl",
            "/etc/sysctl.conf:3"
        ));
        assert!(!has(
            &fs,
            Severity::Error,
            "stale-sysctl",
            "/etc/sysctl.conf:1"
        ));
        assert!(has(&fs, Severity::Error, "pins", "CONN_TABLE"));
        assert!(has(&fs, Severity::Error, "pins", "link_eth0"));
        assert!(has(&fs, Severity::Error, "pins", "holds 1 services"));
        assert!(has(
            &fs,
            Severity::Error,
            "pins",
            "attached to eth1 but no daemon answers"
        ));
        let ok = Facts {
            conn_table_size: Some(1_048_576),
            mem_available: Some(4 << 30),
            nofile: Some(1024),
            ..Default::default()
        };
        let fs = check(&ok);
        assert_eq!(exit_code(&fs, true), 0, "{fs:?}");
    }
}
