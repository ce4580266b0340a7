//! Semantic validation: ranges, address families, uniqueness and cross-references. Every error
//! points at the offending value; all errors are collected. Checks of health checks are in
//! [`check`], of VRRP instances and sync groups in [`vrrp`]; the helpers they share are here.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde_spanned::Spanned;

use super::error::{did_you_mean, Collector};
use super::schema::*;

mod check;
mod sync;
mod vrrp;
mod warnings;

use check::check;
use vrrp::{sync_groups, trackers, vrrp_instance, vrrp_unique};
pub(crate) use warnings::{command_problem, warnings};

/// Largest Maglev table accepted (a prime).
pub const MAGLEV_TABLE_MAX: u32 = 16_777_259;
/// Smallest Maglev table accepted (IPVS `mh` minimum).
pub const MAGLEV_TABLE_MIN: u32 = 251;
/// Connection table bounds.
pub const CONN_TABLE_MIN: u32 = 1024;
/// Connection table bounds.
pub const CONN_TABLE_MAX: u32 = 67_108_864;
/// Longest timeout / persistence accepted, in seconds (30 days).
const MAX_TIMEOUT_S: u32 = 2_592_000;

pub(crate) fn validate(cfg: &Config, c: &mut Collector<'_>) {
    global(&cfg.global, c);
    timeouts(&cfg.timeouts, c);
    let ifaces: Vec<&str> = cfg
        .global
        .interfaces
        .get_ref()
        .iter()
        .map(|i| i.get_ref().as_str())
        .collect();
    for vs in &cfg.virtual_servers {
        virtual_server(vs, &ifaces, c);
    }
    services_unique(cfg, c);
    maglev_capacity(cfg, c);
    for vi in &cfg.vrrp_instances {
        vrrp_instance(vi, cfg, c);
    }
    vrrp_unique(cfg, c);
    sync_groups(cfg, c);
    trackers(cfg, c);
    announce(cfg, c);
    if let Some(s) = &cfg.sync {
        sync::sync(s, c);
    }
}

fn global(g: &Global, c: &mut Collector<'_>) {
    if g.interfaces.get_ref().is_empty() {
        c.at(
            g.interfaces.span(),
            "`interfaces` is empty: expected at least one interface name",
        );
    }
    let mut seen = HashSet::new();
    for i in g.interfaces.get_ref() {
        ifname(i, c);
        if !seen.insert(i.get_ref()) {
            c.at(
                i.span(),
                format!("interface `{}` is listed twice", i.get_ref()),
            );
        }
    }
    range(
        c,
        &g.conn_table_size,
        CONN_TABLE_MIN,
        CONN_TABLE_MAX,
        "conn_table_size",
    );
    range(
        c,
        &g.persistence_table_size,
        CONN_TABLE_MIN,
        CONN_TABLE_MAX,
        "persistence_table_size",
    );
    frange(c, &g.sweep_interval, 0.1, 60.0, "sweep_interval (seconds)");
    frange(
        c,
        &g.previous_ring_hold,
        1.0,
        86_400.0,
        "previous_ring_hold (seconds)",
    );
    absolute(c, &g.control_socket, "control_socket");
    absolute(c, &g.bpffs_dir, "bpffs_dir");
    absolute(c, &g.state_dir, "state_dir");
}

fn timeouts(t: &Timeouts, c: &mut Collector<'_>) {
    for (v, n) in [
        (&t.tcp, "tcp"),
        (&t.tcp_fin, "tcp_fin"),
        (&t.syn_recv, "syn_recv"),
        (&t.close, "close"),
        (&t.udp, "udp"),
    ] {
        range(c, v, 1, MAX_TIMEOUT_S, &format!("timeout `{n}` (seconds)"));
    }
}

fn virtual_server(vs: &VirtualServer, ifaces: &[&str], c: &mut Collector<'_>) {
    let vip = *vs.vip.get_ref();
    if let Some(n) = &vs.name {
        if n.get_ref().trim().is_empty() {
            c.at(
                n.span(),
                "`name` is empty: expected a name, or remove it for the default \"vip:port/proto\"",
            );
        }
    }
    unicast_addr(c, &vs.vip, "vip");
    let m = *vs.maglev_table_size.get_ref();
    if !(MAGLEV_TABLE_MIN..=MAGLEV_TABLE_MAX).contains(&m) || !is_prime(m) {
        let hint = if (MAGLEV_TABLE_MIN..=MAGLEV_TABLE_MAX).contains(&m) {
            format!(" (nearest primes: {} and {})", prev_prime(m), next_prime(m))
        } else {
            String::new()
        };
        c.at(
            vs.maglev_table_size.span(),
            format!(
                "maglev_table_size {m} is not valid: expected a prime in \
                 {MAGLEV_TABLE_MIN}..={MAGLEV_TABLE_MAX}, e.g. 65537 or 655373{hint}"
            ),
        );
    }
    range(
        c,
        &vs.persistence_timeout,
        0,
        MAX_TIMEOUT_S,
        "persistence_timeout (seconds)",
    );
    persistence_granularity(c, vs);
    if let Some(s) = &vs.sorry_server {
        same_family(c, s, vip, "sorry_server", "the vip");
        unicast_addr(c, s, "sorry_server");
    }
    if let (Some(m), None) = (&vs.sorry_server_mac, &vs.sorry_server) {
        c.at(m.span(), "`sorry_server_mac` without `sorry_server`");
    }
    if *vs.hysteresis.get_ref() > vs.quorum {
        c.at(
            vs.hysteresis.span(),
            format!(
                "hysteresis {} exceeds quorum {}: expected 0..={}",
                vs.hysteresis.get_ref(),
                vs.quorum,
                vs.quorum
            ),
        );
    }
    frange(c, &vs.delay_loop, 0.01, 3600.0, "delay_loop (seconds)");
    confirm_delay(c, vs);
    tunnel(vs, c);
    if let Some(chk) = &vs.check {
        check(chk, vs, None, c);
    }
    let mut seen: HashMap<(IpAddr, u16), ()> = HashMap::new();
    for rs in &vs.real_servers {
        let addr = *rs.address.get_ref();
        same_family(c, &rs.address, vip, "real server address", "the vip");
        unicast_addr(c, &rs.address, "real server address");
        if addr == vip {
            c.at(
                rs.address.span(),
                "real server address equals the vip: expected the server's own address",
            );
        }
        if let Some(p) = &rs.port {
            let vport = *vs.port.get_ref();
            if vport != 0 && *p.get_ref() != vport {
                c.at(
                    p.span(),
                    format!(
                        "real server port {} differs from the virtual server port {vport}: direct routing \
                         cannot change ports (map ports on the real server, e.g. iptables REDIRECT); \
                         expected {vport} or no `port`",
                        p.get_ref()
                    ),
                );
            }
        }
        if seen.insert((addr, rs.effective_port(vs)), ()).is_some() {
            c.at(
                rs.address.span(),
                format!(
                    "real server {addr} port {} is listed twice in this virtual server",
                    rs.effective_port(vs)
                ),
            );
        }
        range(c, &rs.weight, 0, 65535, "weight");
        if let Some(i) = &rs.interface {
            if !ifaces.contains(&i.get_ref().as_str()) {
                let hint = did_you_mean(i.get_ref(), ifaces.iter().copied())
                    .map(|s| format!(", did you mean `{s}`?"))
                    .unwrap_or_default();
                c.at(
                    i.span(),
                    format!(
                        "interface `{}` is not in global.interfaces ({}){hint}",
                        i.get_ref(),
                        ifaces.join(", ")
                    ),
                );
            }
        }
        for cmd in [&rs.notify_up, &rs.notify_down].into_iter().flatten() {
            command(c, cmd, "notify command");
        }
        if let Some(chk) = &rs.check {
            check(chk, vs, Some(rs), c);
        }
    }
}

/// Smallest tunnel MTU: IPv4's minimum datagram every host accepts (IPv6: its minimum link MTU).
const TUNNEL_MTU_MIN_V4: u32 = 576;
const TUNNEL_MTU_MIN_V6: u32 = 1280;

/// Tunnel mode: the GUE port and the tunnel MTU.
fn tunnel(vs: &VirtualServer, c: &mut Collector<'_>) {
    range(c, &vs.gue_port, 1, 65535, "gue_port");
    if let Some(m) = &vs.tunnel_mtu {
        let min = if vs.vip.get_ref().is_ipv6() {
            TUNNEL_MTU_MIN_V6
        } else {
            TUNNEL_MTU_MIN_V4
        };
        range(c, m, min, 65535, "tunnel_mtu");
    }
}

/// No two virtual servers with the same (vip, port, protocol) or the same name.
fn services_unique(cfg: &Config, c: &mut Collector<'_>) {
    let mut keys = HashSet::new();
    let mut names = HashSet::new();
    for vs in &cfg.virtual_servers {
        let key = (*vs.vip.get_ref(), *vs.port.get_ref(), vs.protocol);
        let dup_key = !keys.insert(key);
        if dup_key {
            c.at(
                vs.vip.span(),
                format!(
                    "duplicate virtual server {}: vip, port and protocol must be unique",
                    default_name(key.0, key.1, key.2)
                ),
            );
        }
        let name = vs.service_name();
        // A duplicate key also duplicates the default name: report it once.
        let first = names.insert(name.clone());
        if !(first || (dup_key && vs.name.is_none())) {
            let span = vs.name.as_ref().map_or(vs.vip.span(), Spanned::span);
            c.at(span, format!("duplicate virtual server name `{name}`"));
        }
    }
}

fn default_name(vip: IpAddr, port: u16, proto: Protocol) -> String {
    super::default_service_name(vip, port, proto)
}

fn maglev_capacity(cfg: &Config, c: &mut Collector<'_>) {
    let cap = *cfg.global.maglev_capacity.get_ref();
    if cap == 0 {
        return;
    }
    let need: u64 = cfg
        .virtual_servers
        .iter()
        .filter(|v| v.scheduler == Scheduler::Maglev)
        .map(|v| u64::from(*v.maglev_table_size.get_ref()))
        .sum();
    if u64::from(cap) < need {
        c.at(
            cfg.global.maglev_capacity.span(),
            format!(
                "maglev_capacity {cap} cannot hold the maglev services' tables ({need} slots): expected \
                 0 (automatic) or at least {need}"
            ),
        );
    }
}

/// `announce = "vrrp"` needs an instance listing the VIP; `announce = "bgp"` must not have one
/// (the instance would add and remove the VIP on its interface while BGP announces it from
/// every director).
fn announce(cfg: &Config, c: &mut Collector<'_>) {
    for vs in &cfg.virtual_servers {
        if let Some(a) = &vs.announce {
            let instance = cfg.vrrp_instance_for(*vs.vip.get_ref());
            if let (Announce::Bgp, Some(vi)) = (*a.get_ref(), instance) {
                c.at(
                    a.span(),
                    format!(
                        "announce = \"bgp\" but vrrp_instance `{}` also lists {} in virtual_ipaddress: \
                         a VIP is announced by BGP from every director or held by one through VRRP, \
                         not both; remove it from the instance, or use announce = \"vrrp\"",
                        vi.name.get_ref(),
                        vs.vip.get_ref()
                    ),
                );
            }
            if *a.get_ref() == Announce::Vrrp && instance.is_none() {
                c.at(
                    a.span(),
                    format!(
                        "announce = \"vrrp\" but no vrrp_instance lists {} in virtual_ipaddress: add it there, \
                         or use \"always\"/\"bgp\"",
                        vs.vip.get_ref()
                    ),
                );
            }
        }
    }
}

// ---- helpers ----

/// `persistence_granularity`: within the VIP family's address length, a netmask only for IPv4,
/// and only on a persistent service.
fn persistence_granularity(c: &mut Collector<'_>, vs: &VirtualServer) {
    let Some(g) = &vs.persistence_granularity else {
        return;
    };
    let v4 = vs.vip.get_ref().is_ipv4();
    let bits = if v4 { 32 } else { 128 };
    let gr = g.get_ref();
    if gr.from_netmask && !v4 {
        c.at(
            g.span(),
            "a netmask granularity needs an IPv4 vip: for IPv6 write a prefix length like 64",
        );
    } else if gr.prefix_len > bits {
        c.at(
            g.span(),
            format!(
                "persistence_granularity {} is out of range: expected 0..={bits} for this vip",
                gr.prefix_len
            ),
        );
    }
    if *vs.persistence_timeout.get_ref() == 0 {
        c.at(
            g.span(),
            "`persistence_granularity` has no effect without `persistence_timeout`: set \
             persistence_timeout > 0 or remove it",
        );
    }
}

fn confirm_delay(c: &mut Collector<'_>, vs: &VirtualServer) {
    let Some(d) = &vs.confirm_delay else { return };
    frange(c, d, 0.0, 3600.0, "confirm_delay (seconds)");
    if !vs.confirm_failure {
        c.at(
            d.span(),
            "`confirm_delay` has no effect without `confirm_failure`: set confirm_failure = true \
             or remove it",
        );
    }
}

pub(super) fn range<T: PartialOrd + Copy + std::fmt::Display>(
    c: &mut Collector<'_>,
    v: &Spanned<T>,
    min: T,
    max: T,
    what: &str,
) {
    let x = *v.get_ref();
    if x < min || x > max {
        c.at(
            v.span(),
            format!("{what} {x} is out of range: expected {min}..={max}"),
        );
    }
}

pub(super) fn frange(c: &mut Collector<'_>, v: &Spanned<f64>, min: f64, max: f64, what: &str) {
    let x = *v.get_ref();
    if !x.is_finite() || x < min || x > max {
        c.at(
            v.span(),
            format!("{what} {x} is out of range: expected {min:?}..={max:?}"),
        );
    }
}

pub(super) fn absolute(c: &mut Collector<'_>, p: &Spanned<PathBuf>, what: &str) {
    if !p.get_ref().is_absolute() {
        c.at(
            p.span(),
            format!(
                "{what} `{}`: expected an absolute path",
                p.get_ref().display()
            ),
        );
    }
}

/// Linux interface names: 1..=15 bytes, no '/', ':' or whitespace.
pub(super) fn ifname(i: &Spanned<String>, c: &mut Collector<'_>) {
    let n = i.get_ref();
    if n.is_empty()
        || n.len() > 15
        || n == "."
        || n == ".."
        || n.chars()
            .any(|ch| ch == '/' || ch == ':' || ch.is_whitespace())
    {
        c.at(
            i.span(),
            format!("interface name `{n}`: expected 1..=15 characters without '/', ':' or spaces"),
        );
    }
}

pub(super) fn same_family(
    c: &mut Collector<'_>,
    a: &Spanned<IpAddr>,
    other: IpAddr,
    what: &str,
    other_what: &str,
) {
    if a.get_ref().is_ipv4() != other.is_ipv4() {
        let fam = if other.is_ipv4() { "IPv4" } else { "IPv6" };
        c.at(
            a.span(),
            format!(
                "{what} {} is not of the family of {other_what} {other}: expected {fam}",
                a.get_ref()
            ),
        );
    }
}

pub(super) fn unicast_addr(c: &mut Collector<'_>, a: &Spanned<IpAddr>, what: &str) {
    let ip = *a.get_ref();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        c.at(a.span(), format!("{what} {ip}: expected a unicast address"));
    }
}

pub(super) fn command(c: &mut Collector<'_>, cmd: &Spanned<Vec<String>>, what: &str) {
    match cmd.get_ref().first() {
        None => c.at(
            cmd.span(),
            format!("{what} is empty: expected [\"/path/to/program\", \"arg\", ...]"),
        ),
        Some(p) if p.trim().is_empty() => {
            c.at(cmd.span(), format!("{what}: the program name is empty"))
        }
        _ => {}
    }
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

fn prev_prime(n: u32) -> u32 {
    (2..=n).rev().find(|&k| is_prime(k)).unwrap_or(2)
}

fn next_prime(n: u32) -> u32 {
    (n..).find(|&k| is_prime(k)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        for p in [251, 65_537, 655_373, 16_777_259] {
            assert!(is_prime(p), "{p}");
        }
        for n in [0, 1, 250, 65_536, 65_535, 16_777_216] {
            assert!(!is_prime(n), "{n}");
        }
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(prev_prime(65_536), 65_521);
    }
}
