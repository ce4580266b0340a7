//! Semantic validation: ranges, address families, uniqueness and cross-references. Every error
//! points at the offending value; all errors are collected.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde_spanned::Spanned;

use super::error::{did_you_mean, Collector};
use super::schema::*;

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
    announce(cfg, c);
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
    frange(c, &g.sweep_interval, 0.1, 60.0, "sweep_interval (seconds)");
    absolute(c, &g.control_socket, "control_socket");
    absolute(c, &g.bpffs_dir, "bpffs_dir");
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

fn check(chk: &Check, vs: &VirtualServer, rs: Option<&RealServer>, c: &mut Collector<'_>) {
    let kind = *chk.kind.get_ref();
    let http = matches!(kind, CheckType::Http | CheckType::Https);
    let type_name = match kind {
        CheckType::Tcp => "tcp",
        CheckType::Http => "http",
        CheckType::Https => "https",
        CheckType::Script => "script",
        CheckType::None => "none",
    };
    let wrong = |c: &mut Collector<'_>, span: std::ops::Range<usize>, key: &str, for_: &str| {
        c.at(
            span,
            format!(
                "`{key}` is only valid for {for_} checks, this one is `type = \"{type_name}\"`"
            ),
        );
    };
    if let Some(i) = &chk.interval {
        frange(c, i, 0.01, 3600.0, "check interval (seconds)");
    }
    frange(c, &chk.timeout, 0.01, 3600.0, "check timeout (seconds)");
    range(c, &chk.rise, 1, 1_000_000, "rise");
    range(c, &chk.fall, 1, 1_000_000, "fall");
    if let Some(d) = &chk.delay_before_retry {
        frange(c, d, 0.0, 3600.0, "delay_before_retry (seconds)");
    }
    if let Some(ip) = &chk.connect_ip {
        unicast_addr(c, ip, "connect_ip");
    }
    if let Some(p) = &chk.connect_port {
        if *p.get_ref() == 0 {
            c.at(p.span(), "connect_port 0: expected 1..=65535");
        }
    }
    // A port must be known for network checks.
    if matches!(kind, CheckType::Tcp | CheckType::Http | CheckType::Https)
        && chk.connect_port.is_none()
    {
        let port = match rs {
            Some(rs) => rs.effective_port(vs),
            None => *vs.port.get_ref(),
        };
        // A VS-level check of a port-0 service is fine if every real server has a port.
        let reals_ok = rs.is_none()
            && vs
                .real_servers
                .iter()
                .all(|r| r.effective_port(vs) != 0 || r.check.is_some());
        if port == 0 && !reals_ok {
            c.at(
                chk.kind.span(),
                "this check has no port to probe (the virtual server's port is 0): expected \
                 `connect_port`, or a `port` on the real server",
            );
        }
    }
    // Fields of other check types.
    if !http {
        for (span, key) in [
            (chk.method.as_ref().map(Spanned::span), "method"),
            (chk.path.as_ref().map(Spanned::span), "path"),
            (chk.host.as_ref().map(Spanned::span), "host"),
            (chk.status_codes.as_ref().map(Spanned::span), "status_codes"),
            (chk.body_regex.as_ref().map(Spanned::span), "body_regex"),
            (chk.digest.as_ref().map(Spanned::span), "digest"),
        ] {
            if let Some(span) = span {
                wrong(c, span, key, "http/https");
            }
        }
    }
    if kind != CheckType::Https {
        if chk.tls_verify {
            wrong(c, chk.kind.span(), "tls_verify", "https");
        }
        if let Some(f) = &chk.ca_file {
            wrong(c, f.span(), "ca_file", "https");
        }
    }
    if kind != CheckType::Script {
        if let Some(cmd) = &chk.command {
            wrong(c, cmd.span(), "command", "script");
        }
        if let Some(u) = &chk.user {
            wrong(c, u.span(), "user", "script");
        }
        if chk.shell {
            wrong(c, chk.kind.span(), "shell", "script");
        }
        if chk.dynamic {
            wrong(c, chk.kind.span(), "dynamic", "script");
        }
    }
    match kind {
        CheckType::Script => match &chk.command {
            None => c.at(
                chk.kind.span(),
                "a `script` check needs `command = [\"/path/to/check\", \"arg\", ...]` (keepalived misc_path)",
            ),
            Some(cmd) => command(c, cmd, "command"),
        },
        CheckType::Http | CheckType::Https => http_fields(chk, c),
        _ => {}
    }
    if let Some(u) = &chk.user {
        if u.get_ref().is_empty() {
            c.at(u.span(), "`user` is empty: expected a user name");
        }
    }
}

fn http_fields(chk: &Check, c: &mut Collector<'_>) {
    if let Some(p) = &chk.path {
        if !p.get_ref().starts_with('/') || p.get_ref().chars().any(char::is_whitespace) {
            c.at(
                p.span(),
                format!(
                    "path `{}`: expected an absolute request path like \"/monitor.html\"",
                    p.get_ref()
                ),
            );
        }
    }
    if let Some(h) = &chk.host {
        let h_ = h.get_ref();
        if h_.is_empty()
            || h_
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '/')
        {
            c.at(
                h.span(),
                format!("host `{h_}`: expected a host name like \"www.example.com\""),
            );
        }
    }
    if let Some(codes) = &chk.status_codes {
        if codes.get_ref().is_empty() {
            c.at(codes.span(), "`status_codes` is empty: expected e.g. [200]");
        }
        for code in codes.get_ref() {
            if !(100..=599).contains(code) {
                c.at(
                    codes.span(),
                    format!("status code {code}: expected 100..=599"),
                );
            }
        }
    }
    if let Some(r) = &chk.body_regex {
        if let Err(e) = regex::Regex::new(r.get_ref()) {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default().trim();
            let detail = last.strip_prefix("error: ").unwrap_or(last);
            c.at(r.span(), format!("body_regex does not compile: {detail}"));
        }
    }
    if let Some(d) = &chk.digest {
        if d.get_ref().len() != 32 || !d.get_ref().chars().all(|ch| ch.is_ascii_hexdigit()) {
            c.at(
                d.span(),
                "digest: expected the MD5 of the body as 32 hex digits (e.g. from `md5sum`)",
            );
        }
    }
    let head = chk
        .method
        .as_ref()
        .is_some_and(|m| *m.get_ref() == HttpMethod::Head);
    if head {
        for (s, k) in [
            (chk.body_regex.as_ref().map(Spanned::span), "body_regex"),
            (chk.digest.as_ref().map(Spanned::span), "digest"),
        ] {
            if let Some(s) = s {
                c.at(
                    s,
                    format!("`{k}` needs the body: expected method = \"GET\""),
                );
            }
        }
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

fn vrrp_instance(vi: &VrrpInstance, cfg: &Config, c: &mut Collector<'_>) {
    if vi.name.get_ref().trim().is_empty() {
        c.at(
            vi.name.span(),
            "`name` is empty: expected an instance name like \"VI_1\"",
        );
    }
    ifname(&vi.interface, c);
    if *vi.virtual_router_id.get_ref() == 0 {
        c.at(
            vi.virtual_router_id.span(),
            "virtual_router_id 0: expected 1..=255",
        );
    }
    if *vi.priority.get_ref() == 0 {
        c.at(
            vi.priority.span(),
            "priority 0 is reserved (master resigning): expected 1..=255",
        );
    }
    let version = *vi.version.get_ref();
    let adv = *vi.advert_int.get_ref();
    match version {
        2 => {
            if !(1.0..=255.0).contains(&adv) || adv.fract() != 0.0 {
                c.at(
                    vi.advert_int.span(),
                    format!("advert_int {adv}: VRRPv2 expects whole seconds 1..=255 (use version = 3 for sub-second)"),
                );
            }
        }
        3 => {
            let cs = adv * 100.0;
            if !(0.01..=40.95).contains(&adv) || (cs - cs.round()).abs() > 1e-6 {
                c.at(
                    vi.advert_int.span(),
                    format!(
                        "advert_int {adv}: VRRPv3 expects 0.01..=40.95 seconds in steps of 0.01"
                    ),
                );
            }
        }
        v => c.at(vi.version.span(), format!("version {v}: expected 2 or 3")),
    }
    if let Some(auth) = &vi.authentication {
        if version == 3 {
            c.at(auth.span(), "authentication is not part of VRRPv3 (RFC 5798): expected version = 2 or no authentication");
        }
        let pass = &auth.get_ref().auth_pass;
        let n = pass.get_ref().chars().count();
        if n == 0 {
            c.at(pass.span(), "auth_pass is empty: expected 1..=8 characters");
        } else if n > 8 || pass.get_ref().len() > 8 {
            c.at(
                pass.span(),
                format!(
                    "auth_pass is {n} characters: expected at most 8 (the VRRPv2 field is 8 bytes; keepalived \
                     silently uses the first 8, so write exactly those to interoperate)"
                ),
            );
        }
    }
    // Addresses: one family, v3 for IPv6, no duplicates within or across instances.
    let vips = vi.virtual_ipaddress.get_ref();
    let family = vips.first().map(|p| p.get_ref().addr.is_ipv4());
    let mut seen = HashSet::new();
    for p in vips {
        let a = p.get_ref().addr;
        if Some(a.is_ipv4()) != family {
            c.at(p.span(), format!("{a}: all virtual_ipaddress of an instance must be of one family (the first is IPv{})", if family == Some(true) { 4 } else { 6 }));
        }
        if a.is_ipv6() && version == 2 {
            c.at(
                p.span(),
                format!("{a} is IPv6: VRRPv2 carries only IPv4, expected version = 3"),
            );
        }
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            c.at(p.span(), format!("{a}: expected a unicast address"));
        }
        if !seen.insert(a) {
            c.at(p.span(), format!("{a} is listed twice"));
        }
        for other in &cfg.vrrp_instances {
            if std::ptr::eq(other, vi) {
                break;
            }
            if other
                .virtual_ipaddress
                .get_ref()
                .iter()
                .any(|q| q.get_ref().addr == a)
            {
                c.at(
                    p.span(),
                    format!("{a} is already in vrrp_instance `{}`", other.name.get_ref()),
                );
            }
        }
    }
    let fam_v4 = family.or_else(|| vi.unicast_src_ip.as_ref().map(|s| s.get_ref().is_ipv4()));
    if let (Some(src), Some(v4)) = (&vi.unicast_src_ip, family) {
        if src.get_ref().is_ipv4() != v4 {
            c.at(
                src.span(),
                format!(
                    "unicast_src_ip {} is not of the family of the virtual_ipaddress",
                    src.get_ref()
                ),
            );
        }
    }
    let mut peers = HashSet::new();
    for p in &vi.unicast_peer {
        if let Some(v4) = fam_v4 {
            if p.get_ref().is_ipv4() != v4 {
                c.at(
                    p.span(),
                    format!(
                        "unicast_peer {}: expected IPv{} like unicast_src_ip/virtual_ipaddress",
                        p.get_ref(),
                        if v4 { 4 } else { 6 }
                    ),
                );
            }
        }
        unicast_addr(c, p, "unicast_peer");
        if !peers.insert(*p.get_ref()) {
            c.at(
                p.span(),
                format!("unicast_peer {} is listed twice", p.get_ref()),
            );
        }
    }
    if *vi.nopreempt.get_ref() && *vi.state.get_ref() == VrrpState::Master {
        c.at(
            vi.nopreempt.span(),
            "nopreempt needs state = \"BACKUP\" (keepalived rule): a MASTER always preempts; set both \
             directors to BACKUP and let priority decide",
        );
    }
    frange(c, &vi.preempt_delay, 0.0, 1000.0, "preempt_delay (seconds)");
    frange(
        c,
        &vi.garp_master_delay,
        0.0,
        1000.0,
        "garp_master_delay (seconds)",
    );
    for i in &vi.track_interface {
        ifname(i, c);
    }
    let names: Vec<String> = cfg
        .virtual_servers
        .iter()
        .map(VirtualServer::service_name)
        .collect();
    for t in &vi.track_service {
        if !names.iter().any(|n| n == t.get_ref()) {
            let hint = did_you_mean(t.get_ref(), names.iter().map(String::as_str))
                .map(|s| format!(", did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if names.is_empty() {
                        " (there is no virtual_server)".into()
                    } else {
                        format!(" (known: {})", names.join(", "))
                    }
                });
            c.at(
                t.span(),
                format!(
                    "track_service `{}` is not the name of a virtual_server{hint}",
                    t.get_ref()
                ),
            );
        }
    }
    if let Some(w) = &vi.track_service_weight {
        let w_ = *w.get_ref();
        if !(-254..=254).contains(&w_) {
            c.at(
                w.span(),
                format!("track_service_weight {w_}: expected -254..=254"),
            );
        }
        if vi.track_service.is_empty() {
            c.at(w.span(), "track_service_weight without track_service");
        }
    }
    for cmd in [&vi.notify_master, &vi.notify_backup, &vi.notify_fault]
        .into_iter()
        .flatten()
    {
        command(c, cmd, "notify command");
    }
}

/// Unique names; unique (interface, virtual_router_id).
fn vrrp_unique(cfg: &Config, c: &mut Collector<'_>) {
    let mut names = HashSet::new();
    let mut vrids = HashMap::new();
    for vi in &cfg.vrrp_instances {
        if !names.insert(vi.name.get_ref()) {
            c.at(
                vi.name.span(),
                format!("duplicate vrrp_instance name `{}`", vi.name.get_ref()),
            );
        }
        let key = (vi.interface.get_ref(), *vi.virtual_router_id.get_ref());
        if let Some(first) = vrids.insert(key, vi.name.get_ref()) {
            c.at(
                vi.virtual_router_id.span(),
                format!(
                    "virtual_router_id {} is already used on {} by vrrp_instance `{first}`: expected a \
                     vrid unique per interface",
                    key.1, key.0
                ),
            );
        }
    }
}

fn sync_groups(cfg: &Config, c: &mut Collector<'_>) {
    let instances: Vec<&str> = cfg
        .vrrp_instances
        .iter()
        .map(|i| i.name.get_ref().as_str())
        .collect();
    let mut names = HashSet::new();
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for g in &cfg.vrrp_sync_groups {
        if !names.insert(g.name.get_ref()) {
            c.at(
                g.name.span(),
                format!("duplicate vrrp_sync_group name `{}`", g.name.get_ref()),
            );
        }
        if g.group.get_ref().is_empty() {
            c.at(
                g.group.span(),
                "`group` is empty: expected names of vrrp_instance",
            );
        }
        for m in g.group.get_ref() {
            let m_ = m.get_ref().as_str();
            if !instances.contains(&m_) {
                let hint = did_you_mean(m_, instances.iter().copied())
                    .map(|s| format!(", did you mean `{s}`?"))
                    .unwrap_or_default();
                c.at(
                    m.span(),
                    format!("`{m_}` is not the name of a vrrp_instance{hint}"),
                );
            } else if let Some(other) = member_of.insert(m_, g.name.get_ref()) {
                c.at(m.span(), format!("vrrp_instance `{m_}` is already in vrrp_sync_group `{other}`: an instance may be in one group only"));
            }
        }
    }
}

/// `announce = "vrrp"` needs an instance listing the VIP.
fn announce(cfg: &Config, c: &mut Collector<'_>) {
    for vs in &cfg.virtual_servers {
        if let Some(a) = &vs.announce {
            if *a.get_ref() == Announce::Vrrp && cfg.vrrp_instance_for(*vs.vip.get_ref()).is_none()
            {
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

fn range<T: PartialOrd + Copy + std::fmt::Display>(
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

fn frange(c: &mut Collector<'_>, v: &Spanned<f64>, min: f64, max: f64, what: &str) {
    let x = *v.get_ref();
    if !x.is_finite() || x < min || x > max {
        c.at(
            v.span(),
            format!("{what} {x} is out of range: expected {min:?}..={max:?}"),
        );
    }
}

fn absolute(c: &mut Collector<'_>, p: &Spanned<PathBuf>, what: &str) {
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
fn ifname(i: &Spanned<String>, c: &mut Collector<'_>) {
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

fn same_family(
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

fn unicast_addr(c: &mut Collector<'_>, a: &Spanned<IpAddr>, what: &str) {
    let ip = *a.get_ref();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        c.at(a.span(), format!("{what} {ip}: expected a unicast address"));
    }
}

fn command(c: &mut Collector<'_>, cmd: &Spanned<Vec<String>>, what: &str) {
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
