//! `virtual_server` (IP PORT, IP alone = port 0, `group NAME`, `fwmark N`),
//! `virtual_server_group` and `real_server`.

use std::net::IpAddr;

use crate::config::schema::{
    CheckType, Forward, Protocol, RealServer, Scheduler, TunnelType, VirtualServer,
};
use crate::config::types::Granularity;

use super::check::CheckDefaults;
use super::vrrp::is_unicast;
use super::{u, Node, Translator};

/// keepalived's `delay_loop` default (check_data.h KEEPALIVED_DEFAULT_DELAY).
const DEFAULT_DELAY_LOOP: f64 = 60.0;
/// Most services one group entry (an address range or prefix) expands to.
const MAX_RANGE: u128 = 256;
/// Most xlb virtual servers one import makes (groups multiply them).
const MAX_SERVICES: usize = 65_536;

/// A virtual server being read.
struct ServiceDraft {
    vs: VirtualServer,
    defaults: CheckDefaults,
    virtualhost: Option<String>,
    lb_algo_seen: bool,
}

/// One (vip, port) of a `virtual_server_group`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Member {
    pub vip: IpAddr,
    pub port: u16,
}

fn new_service(vip: IpAddr, port: u16) -> VirtualServer {
    VirtualServer {
        name: None,
        vip: u(vip),
        port: u(port),
        protocol: Protocol::Tcp,
        scheduler: Scheduler::Maglev,
        maglev_table_size: u(65_537),
        persistence_timeout: u(0),
        persistence_granularity: None,
        sorry_server: None,
        sorry_server_mac: None,
        quorum: 1,
        hysteresis: u(0),
        delay_loop: u(DEFAULT_DELAY_LOOP),
        alpha: false,
        inhibit_on_failure: false,
        confirm_failure: false,
        confirm_delay: None,
        announce: None,
        forward: Forward::Dr,
        tunnel: TunnelType::Ipip,
        gue_port: u(lb_common::DEFAULT_GUE_PORT),
        tunnel_mtu: None,
        check: None,
        real_servers: vec![],
    }
}

/// `a.b.c.d-e`, `x::y-z` (last group, hex), `addr/len`, or one address: the addresses.
fn addresses(s: &str) -> Option<Vec<IpAddr>> {
    if let Some((a, len)) = s.split_once('/') {
        let a: IpAddr = a.parse().ok()?;
        let bits = if a.is_ipv4() { 32 } else { 128 };
        let len: u32 = len.parse().ok().filter(|l| (1..=bits).contains(l))?;
        let count = 1u128 << (bits - len).min(127);
        return Some(span(a, 0, count.min(MAX_RANGE)));
    }
    if let Some((a, end)) = s.rsplit_once('-') {
        let a: IpAddr = a.parse().ok()?;
        let (last, end) = match a {
            IpAddr::V4(v) => (
                u128::from(v.octets()[3]),
                u128::from(end.parse::<u8>().ok()?),
            ),
            IpAddr::V6(v) => (
                u128::from(v.segments()[7]),
                u128::from(u16::from_str_radix(end, 16).ok()?),
            ),
        };
        let count = end.checked_sub(last)? + 1;
        return Some(span(a, 0, count.min(MAX_RANGE)));
    }
    s.parse().ok().map(|a| vec![a])
}

fn span(a: IpAddr, from: u128, count: u128) -> Vec<IpAddr> {
    (from..count)
        .filter_map(|k| match a {
            IpAddr::V4(v) => u32::try_from(u128::from(u32::from(v)) + k)
                .ok()
                .map(|x| IpAddr::V4(x.into())),
            IpAddr::V6(v) => u128::from(v).checked_add(k).map(|x| IpAddr::V6(x.into())),
        })
        .collect()
}

impl Translator {
    pub(super) fn vs_group(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, "virtual_server_group without a name: ignored");
            return;
        };
        let mut members = Vec::new();
        for c in n.children() {
            if c.key() == "fwmark" {
                self.note(c, format!("virtual_server_group {name}: `{}`: fwmark has no XDP meaning (marks are set by netfilter, after XDP has run); not imported", c.words.join(" ")));
                continue;
            }
            let port = match c.arg(1) {
                None => Some(0),
                Some(p) => p.parse::<u16>().ok(),
            };
            match (addresses(c.key()), port) {
                (Some(addrs), Some(port)) => {
                    members.extend(addrs.into_iter().map(|vip| Member { vip, port }))
                }
                _ => self.note(c, format!("virtual_server_group {name}: `{}`: not an address (range) and port; keepalived skips it too", c.words.join(" "))),
            }
        }
        self.vs_groups.insert(name, (n.loc.clone(), members));
    }

    pub(super) fn virtual_server(&mut self, n: &Node) {
        self.summary.virtual_servers_seen += 1;
        let targets = match (n.arg(1), n.arg(2)) {
            (Some("fwmark"), _) => {
                self.note(n, format!("`virtual_server {}`: fwmark services have no XDP meaning (marks are set by netfilter, after XDP has run); not imported: list each VIP and port as its own virtual_server", n.args()));
                return;
            }
            (Some("group"), Some(g)) => match self.vs_groups.get(g) {
                Some((_, m)) if !m.is_empty() => {
                    let m = m.clone();
                    self.note(n, format!("virtual_server group {g}: one xlb virtual server per member ({}), each with these real servers and checks", m.len()));
                    m
                }
                _ => {
                    self.note(n, format!("virtual_server group {g}: no such virtual_server_group (or it has no address member); keepalived drops it; not imported"));
                    return;
                }
            },
            (Some(a), p) => match (a.parse::<IpAddr>(), p.map_or(Ok(0), str::parse::<u16>)) {
                (Ok(vip), Ok(port)) => {
                    self.trailing_words(n);
                    vec![Member { vip, port }]
                }
                _ => {
                    self.note(n, "virtual_server: expected `IP [PORT]`; not imported");
                    return;
                }
            },
            _ => {
                self.note(n, "virtual_server: expected `IP [PORT]`; not imported");
                return;
            }
        };
        let mut imported = false;
        for (k, m) in targets.iter().enumerate() {
            if self.vs.len() >= MAX_SERVICES {
                self.note(n, format!("more than {MAX_SERVICES} virtual servers in all: the rest of this one is not imported"));
                break;
            }
            let before = self.notes.len();
            let vs = self.service(n, m.vip, m.port);
            if k > 0 && vs.is_some() {
                // The notes of a group's body are the same for every member that imports.
                self.notes.truncate(before);
            }
            if let Some(vs) = vs {
                imported |= self.push_service(n, vs);
            }
        }
        if imported {
            self.summary.virtual_servers_imported += 1;
        }
    }

    /// `virtual_server IP PORT dev eth0.53`: keepalived reads only IP and PORT.
    fn trailing_words(&mut self, n: &Node) {
        if let Some(rest) = n.words.get(3..).filter(|r| !r.is_empty()) {
            let rest = rest.join(" ");
            let hint = match rest.strip_prefix("dev ") {
                Some(dev) => format!(
                    " If VIP traffic arrives on {dev}, list it (or its parent interface: xlb reads \
                     VLAN tags) in global.interfaces"
                ),
                None => String::new(),
            };
            self.note(
                n,
                format!("`{rest}` after the port: keepalived ignores it; not imported.{hint}"),
            );
        }
    }

    /// A service unique by (vip, port, protocol) whose VIP is unicast.
    fn push_service(&mut self, n: &Node, vs: VirtualServer) -> bool {
        let key = (*vs.vip.get_ref(), *vs.port.get_ref(), vs.protocol);
        if !is_unicast(key.0) {
            self.note(
                n,
                format!(
                    "virtual_server {}: not a unicast address; not imported",
                    key.0
                ),
            );
            return false;
        }
        if self.vs.len() >= MAX_SERVICES {
            self.note(
                n,
                format!(
                    "more than {MAX_SERVICES} virtual servers in all: {} {} not imported",
                    key.0, key.1
                ),
            );
            return false;
        }
        if !self.vs_keys.insert(key) {
            self.note(
                n,
                format!(
                    "virtual_server {} {} {}: defined twice; the first is kept",
                    key.0, key.1, key.2
                ),
            );
            return false;
        }
        self.vs.push((n.loc.clone(), vs));
        true
    }

    /// The body of a virtual_server for one (vip, port).
    fn service(&mut self, n: &Node, vip: IpAddr, port: u16) -> Option<VirtualServer> {
        let ctx = format!("virtual_server {vip} {port}");
        let mut d = ServiceDraft {
            vs: new_service(vip, port),
            defaults: CheckDefaults {
                script_timeout: DEFAULT_DELAY_LOOP,
                ..CheckDefaults::default()
            },
            virtualhost: None,
            lb_algo_seen: false,
        };
        // Service settings first: keepalived applies them whatever their place in the block.
        for c in n.children().iter().filter(|c| c.key() != "real_server") {
            if !self.check_default(c, &mut d.defaults, false) {
                self.service_setting(c, &mut d, &ctx);
            }
        }
        let ServiceDraft {
            mut vs,
            defaults,
            virtualhost,
            lb_algo_seen,
        } = d;
        for c in n.children().iter().filter(|c| c.key() == "real_server") {
            if let Some(rs) = self.real_server(c, &vs, &defaults) {
                vs.real_servers.push(rs);
            }
        }
        if !lb_algo_seen {
            self.note(n, format!("{ctx}: no lb_algo (keepalived default wlc): maglev used (connection counting cannot work across directors)"));
        }
        if vs.real_servers.is_empty() {
            self.note(n, format!("{ctx}: no usable real_server: keepalived ignores such a virtual server; not imported"));
            return None;
        }
        if *vs.hysteresis.get_ref() > vs.quorum {
            self.note(
                n,
                format!(
                    "{ctx}: hysteresis {} exceeds quorum {}: {} written",
                    vs.hysteresis.get_ref(),
                    vs.quorum,
                    vs.quorum
                ),
            );
            vs.hysteresis = u(vs.quorum);
        }
        if vs.persistence_granularity.is_some() && *vs.persistence_timeout.get_ref() == 0 {
            self.note(
                n,
                format!("{ctx}: persistence_granularity without persistence_timeout has no effect in IPVS; not imported"),
            );
            vs.persistence_granularity = None;
        }
        self.merge_same_address(n, &mut vs);
        apply_virtualhost(&mut vs, virtualhost);
        hoist_common_check(&mut vs);
        Some(vs)
    }

    /// One service-level statement of a virtual_server block.
    fn service_setting(&mut self, c: &Node, d: &mut ServiceDraft, ctx: &str) {
        match c.key() {
            "delay_loop" => {
                if let Some(t) = self.seconds(c, "delay_loop", 0.01) {
                    d.vs.delay_loop = u(t);
                    d.defaults.script_timeout = t;
                }
            }
            "lb_algo" | "lvs_sched" => {
                d.lb_algo_seen = true;
                d.vs.scheduler = self.scheduler(c);
            }
            "lb_kind" | "lvs_method" => d.vs.forward = self.lb_kind(c, *d.vs.vip.get_ref()),
            "tun_type" => match c.arg(1) {
                Some("ipip") => d.vs.tunnel = TunnelType::Ipip,
                Some("gue") => d.vs.tunnel = TunnelType::Gue,
                other => self.note(
                    c,
                    format!(
                        "tun_type {}: xlb tunnels with ipip or gue only; ipip written",
                        other.unwrap_or("")
                    ),
                ),
            },
            "tun_port" => {
                if let Some(p) = self.bounded::<u16>(c, 1, "tun_port", 1..=65535, 1..=65535) {
                    d.vs.gue_port = u(p);
                }
            }
            "tun_nocsum" | "tun_csum" | "tun_remcsum" => self.note(
                c,
                format!(
                    "{}: xlb's GUE packets carry no UDP checksum (the inner packet has its own); not imported",
                    c.key()
                ),
            ),
            "protocol" => match c.arg(1) {
                Some("TCP") => d.vs.protocol = Protocol::Tcp,
                Some("UDP") => d.vs.protocol = Protocol::Udp,
                other => self.note(
                    c,
                    format!(
                        "protocol {}: not supported; TCP written",
                        other.unwrap_or("")
                    ),
                ),
            },
            "persistence_timeout" => {
                let t = if c.words.len() > 1 {
                    self.bounded::<u32>(c, 1, "persistence_timeout", 1..=2_678_400, 0..=2_592_000)
                } else {
                    Some(360)
                };
                if let Some(t) = t {
                    d.vs.persistence_timeout = u(t);
                }
            }
            "persistence_granularity" => self.persistence_granularity(c, &mut d.vs),
            "sorry_server" => self.sorry_server(c, &mut d.vs),
            "quorum" => {
                if let Some(q) = self.bounded::<u32>(c, 1, "quorum", 1..=u32::MAX, 1..=u32::MAX) {
                    d.vs.quorum = q;
                }
            }
            "hysteresis" => {
                if let Some(h) = self.val::<u32>(c, 1, "hysteresis") {
                    d.vs.hysteresis = u(h);
                }
            }
            "alpha" => d.vs.alpha = true,
            "inhibit_on_failure" => d.vs.inhibit_on_failure = true,
            "virtualhost" => d.virtualhost = c.arg(1).map(String::from),
            "omega"
            | "ha_suspend"
            | "quorum_up"
            | "quorum_down"
            | "sorry_server_inhibit"
            | "sorry_server_lvs_method"
            | "ops"
            | "ip_family" => self.note(
                c,
                format!("{}: no equivalent in xlb, not imported", c.words.join(" ")),
            ),
            _ => self.unknown(c, ctx),
        }
    }

    fn scheduler(&mut self, c: &Node) -> Scheduler {
        match c.arg(1).unwrap_or("") {
            "rr" => Scheduler::RoundRobin,
            "wrr" => Scheduler::WeightedRoundRobin,
            "sh" => Scheduler::SourceHash,
            "mh" => Scheduler::Maglev,
            other => {
                self.note(c, format!("lb_algo {other}: connection-counting and other IPVS schedulers cannot work across directors (each must pick the same server for a flow by itself): maglev (consistent hashing, weighted) used instead"));
                Scheduler::Maglev
            }
        }
    }

    /// keepalived compares the method case-sensitively (check_parser.c): `dr` is an error there
    /// and the service runs with its default method, NAT.
    /// `TUN` becomes `forward = "tunnel"` (its encapsulation from `tun_type`).
    fn lb_kind(&mut self, c: &Node, vip: IpAddr) -> Forward {
        let k = c.arg(1).unwrap_or("");
        let rs_setup = format!("The real servers must then hold the VIP on lo with ARP silenced (`xlb realserver up --vip {vip}`), answer clients directly, and serve on the virtual server's port");
        match k {
            "DR" => Forward::Dr,
            "TUN" => Forward::Tunnel,
            "NAT" => {
                self.note(c, format!("lb_kind {k}: xlb does direct routing (DR) or tunnelling (TUN), not NAT; imported as DR. {rs_setup}"));
                Forward::Dr
            }
            _ => {
                self.note(c, format!("lb_kind `{k}`: keepalived accepts only NAT, DR or TUN (upper case) and reports `{k}` as an error, so this service ran as NAT (keepalived's default) there; imported as DR. {rs_setup}"));
                Forward::Dr
            }
        }
    }

    /// keepalived's `persistence_granularity`: a netmask for an IPv4 service, a prefix length
    /// (1..=128) for an IPv6 one; xlb writes the prefix length.
    fn persistence_granularity(&mut self, c: &Node, vs: &mut VirtualServer) {
        let arg = c.arg(1).unwrap_or("");
        let parsed = if vs.vip.get_ref().is_ipv4() {
            Granularity::from_ipv4_netmask(arg)
        } else {
            match arg.parse::<u8>() {
                Ok(n) if (1..=128).contains(&n) => Ok(Granularity {
                    prefix_len: n,
                    from_netmask: false,
                }),
                _ => Err(format!(
                    "invalid IPv6 granularity `{arg}`: expected a prefix length 1..=128"
                )),
            }
        };
        match parsed {
            Ok(g) => vs.persistence_granularity = Some(u(g)),
            Err(e) => self.note(c, format!("persistence_granularity: {e}; not imported")),
        }
    }

    fn sorry_server(&mut self, c: &Node, vs: &mut VirtualServer) {
        let Some(a) = self.val::<IpAddr>(c, 1, "sorry_server address") else {
            return;
        };
        let vip = *vs.vip.get_ref();
        if a.is_ipv4() != vip.is_ipv4() || !is_unicast(a) {
            self.note(c, format!("sorry_server {a}: not a unicast address of the VIP's family: keepalived skips it too; not imported"));
            return;
        }
        vs.sorry_server = Some(u(a));
        if c.arg(2).is_some_and(|p| p != vs.port.get_ref().to_string()) {
            self.note(c, "sorry_server port differs from the service port: direct routing keeps the port; the sorry server must listen on the service port");
        }
    }

    fn real_server(
        &mut self,
        n: &Node,
        vs: &VirtualServer,
        outer: &CheckDefaults,
    ) -> Option<RealServer> {
        let vip = *vs.vip.get_ref();
        let vport = *vs.port.get_ref();
        let addr = self.val::<IpAddr>(n, 1, "real_server address")?;
        if addr.is_ipv4() != vip.is_ipv4() || addr == vip || !is_unicast(addr) {
            self.note(n, format!("real_server {addr}: not a unicast address of the VIP's family other than the VIP; not imported"));
            return None;
        }
        let mut rs = RealServer {
            address: u(addr),
            port: None,
            weight: u(1),
            mac: None,
            interface: None,
            notify_up: None,
            notify_down: None,
            forward: None,
            tunnel: None,
            check: None,
        };
        let mut own_port = None;
        if let Some(p) = n.arg(2) {
            match p.parse::<u16>() {
                Ok(p) if vport == 0 && p != 0 => rs.port = Some(u(p)),
                Ok(p) if vport != 0 && p != vport => own_port = Some(p),
                Ok(_) => {}
                Err(_) => self.note(n, format!("real_server {addr}: invalid port `{p}` ignored")),
            }
        }
        let ctx = format!("real_server {addr}");
        let mut defaults = CheckDefaults::default();
        for c in n.children() {
            self.check_default(c, &mut defaults, true);
        }
        let defaults = defaults.over(outer);
        for c in n.children() {
            match c.key() {
                "connect_timeout" | "retry" | "delay_before_retry" | "delay_loop" | "warmup" => {}
                "weight" => {
                    if let Some(w) = self.bounded::<u32>(c, 1, "weight", 0..=65535, 0..=65535) {
                        rs.weight = u(w);
                    }
                }
                "notify_up" => rs.notify_up = self.command(c, "notify_up"),
                "notify_down" => rs.notify_down = self.command(c, "notify_down"),
                "inhibit_on_failure" => self.note(c, "inhibit_on_failure on a real server: xlb sets it per virtual server; set `inhibit_on_failure = true` there if wanted"),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => {
                    if rs.check.is_some() {
                        self.note(c, format!("{}: a second checker on {addr}; xlb has one check per real server, only the first is imported", c.key()));
                    } else {
                        rs.check = self.checker(c, &defaults);
                    }
                }
                "DNS_CHECK" | "SMTP_CHECK" | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" => self.note(c, format!("{}: no equivalent checker in xlb; use a MISC_CHECK-style script check", c.key())),
                _ => self.unknown(c, &ctx),
            }
        }
        if let Some(p) = own_port {
            self.translated_port(n, &mut rs, vport, p);
        }
        self.portless_check(n, &mut rs, vport);
        Some(rs)
    }

    /// `real_server IP 8080` under `virtual_server VIP 80`: keepalived probes 8080, while DR
    /// delivers port 80 (the real server maps it, e.g. with iptables REDIRECT).
    fn translated_port(&mut self, n: &Node, rs: &mut RealServer, vport: u16, p: u16) {
        let addr = rs.address.get_ref();
        let net_check = rs
            .check
            .as_mut()
            .filter(|c| !matches!(c.kind.get_ref(), CheckType::Script | CheckType::None));
        match net_check {
            Some(chk) if chk.connect_port.is_none() => {
                chk.connect_port = Some(u(p));
                self.note(n, format!("real_server {addr} port {p} differs from the virtual server port {vport}: keepalived's check probes {p}, kept as the check's connect_port; traffic still arrives on port {vport} (direct routing cannot change ports: map it on the real server, e.g. iptables REDIRECT, as the field deployments did)"));
            }
            _ => self.note(n, format!("real_server {addr} port {p} differs from the virtual server port {vport}: direct routing delivers port {vport} (map it on the real server, e.g. iptables REDIRECT); the port is used by no check here")),
        }
    }

    /// A network check of a port-0 service needs a port: keepalived would probe port 0, which
    /// never answers, so the server never got traffic there.
    fn portless_check(&mut self, n: &Node, rs: &mut RealServer, vport: u16) {
        let needs_port = rs.check.as_ref().is_some_and(|c| {
            matches!(
                c.kind.get_ref(),
                CheckType::Tcp | CheckType::Http | CheckType::Https
            ) && c.connect_port.is_none()
        });
        if vport == 0 && rs.port.is_none() && needs_port {
            self.note(n, format!("real_server {}: its check has no port (the service has port 0): keepalived probes port 0, which fails, so the server never got traffic; imported with weight 0 and no check: set connect_port and the weight", rs.address.get_ref()));
            rs.check = None;
            rs.weight = u(0);
        }
    }

    /// Several `real_server` lines with one address (different ports): in DR mode IPVS sends
    /// them all the service's port on that address, so they are one server with their weights
    /// summed.
    fn merge_same_address(&mut self, n: &Node, vs: &mut VirtualServer) {
        let mut merged: Vec<RealServer> = Vec::new();
        let mut index: std::collections::HashMap<(IpAddr, u16), usize> = Default::default();
        for rs in std::mem::take(&mut vs.real_servers) {
            let key = (*rs.address.get_ref(), rs.effective_port(vs));
            match index.get(&key).map(|&k| &mut merged[k]) {
                Some(first) => {
                    let w = (first.weight.get_ref() + rs.weight.get_ref()).min(65535);
                    self.note(n, format!("real_server {} is listed more than once (other ports): direct routing delivers the service port to it for each entry, so it is one server with weight {w} (the sum); only the first entry's check is imported", key.0));
                    first.weight = u(w);
                }
                None => {
                    index.insert(key, merged.len());
                    merged.push(rs);
                }
            }
        }
        vs.real_servers = merged;
    }
}

/// A service-level `virtualhost` applies to the HTTP checks that have none.
fn apply_virtualhost(vs: &mut VirtualServer, host: Option<String>) {
    let Some(h) = host else { return };
    for rs in &mut vs.real_servers {
        if let Some(chk) = &mut rs.check {
            if matches!(chk.kind.get_ref(), CheckType::Http | CheckType::Https)
                && chk.host.is_none()
            {
                chk.host = Some(u(h.clone()));
            }
        }
    }
}

/// The same check on every real server is written once, on the virtual server.
fn hoist_common_check(vs: &mut VirtualServer) {
    let Some(first) = vs.real_servers.first().and_then(|r| r.check.clone()) else {
        return;
    };
    if vs.real_servers.len() > 1
        && vs
            .real_servers
            .iter()
            .all(|r| r.check.as_ref() == Some(&first))
    {
        vs.check = Some(first);
        for rs in &mut vs.real_servers {
            rs.check = None;
        }
    }
}
