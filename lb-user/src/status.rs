//! What `xlb status` and `xlb conns` show, and their `ipvsadm -ln` / `-lnc` layouts.
//!
//! Why one file of this size: the report types and the layouts that print them change together
//! (a new field is shown in the same commit); about a quarter of it is the layout tests.
use std::{collections::BTreeMap, fmt::Write as _, net::SocketAddr};

use serde::{Deserialize, Serialize};

use crate::dataplane::desired::{Protocol, ServiceAddr};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Traffic {
    pub conns: u64,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Rates {
    pub cps: f64,
    pub pps: f64,
    pub bps: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RealStatus {
    pub addr: SocketAddr,
    /// Configured weight.
    pub weight: u32,
    /// Weight in force (0 = quiescent or inhibited).
    pub effective_weight: u32,
    /// Forwarded to (health up and MAC known).
    pub forwarding: bool,
    /// "up", or why not ("down: status 503", "MAC ... unknown").
    pub health: String,
    /// The forwarding method: `dr`, or the tunnel's encapsulation (`ipip`, `gue`).
    #[serde(default = "forward_dr")]
    pub forward: String,
    /// ActiveConn / InActConn: own and synced entries together, as an IPVS backup counts the
    /// connections its sync daemon received.
    pub active_conns: u64,
    pub inactive_conns: u64,
    /// Of those, the entries learnt from peer directors (`[sync]`).
    #[serde(default)]
    pub synced_active_conns: u64,
    #[serde(default)]
    pub synced_inactive_conns: u64,
    pub traffic: Traffic,
    pub rates: Rates,
    /// Results of its health check so far (metrics, status page).
    #[serde(default)]
    pub check: CheckStats,
}

fn forward_dr() -> String {
    "dr".into()
}

/// The `ipvsadm -ln` Forward column of a forwarding method.
pub fn ipvs_forward(method: &str) -> &'static str {
    if method == "dr" {
        "Route"
    } else {
        "Tunnel"
    }
}

/// Health-check results of one real server since its checker started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckStats {
    /// Results (after retries) by class: `ok`, `refused`, `timeout`, `status`... (see
    /// [`crate::health::RESULT_CLASSES`]).
    pub results: BTreeMap<String, u64>,
    /// Time the last result took (retries included).
    pub last_duration_secs: f64,
    /// Sum of the time of every result.
    pub duration_sum_secs: f64,
}

/// One health or VRRP transition, as logged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Transition {
    /// Seconds since the Unix epoch.
    pub at_unix: f64,
    /// `health` or `vrrp`.
    pub kind: String,
    /// `web 198.18.0.11:80` or the VRRP instance name.
    pub subject: String,
    /// `up`, `down`, `weight 3`, `MASTER`, `BACKUP`, `FAULT`...
    pub state: String,
    pub reason: String,
}

/// The last transitions, oldest first, at most [`RecentTransitions::CAPACITY`].
#[derive(Clone, Debug, Default)]
pub struct RecentTransitions {
    items: std::collections::VecDeque<Transition>,
}

impl RecentTransitions {
    /// Bounded: a flapping server cannot grow the daemon's memory.
    pub const CAPACITY: usize = 50;

    pub fn push(&mut self, kind: &str, subject: String, state: String, reason: String) {
        let at_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if self.items.len() == Self::CAPACITY {
            self.items.pop_front();
        }
        self.items.push_back(Transition {
            at_unix,
            kind: kind.to_string(),
            subject,
            state,
            reason,
        });
    }

    pub fn to_vec(&self) -> Vec<Transition> {
        self.items.iter().cloned().collect()
    }

    /// Merges lists from several sources, oldest first, keeping the newest `CAPACITY`.
    pub fn merge(lists: impl IntoIterator<Item = Vec<Transition>>) -> Vec<Transition> {
        let mut all: Vec<Transition> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| a.at_unix.total_cmp(&b.at_unix));
        let skip = all.len().saturating_sub(Self::CAPACITY);
        all.split_off(skip)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub addr: ServiceAddr,
    /// ipvsadm scheduler name (mh, sh, rr, wrr).
    pub scheduler: String,
    pub persistence_timeout: u32,
    /// Forwarded on this director now.
    pub active: bool,
    /// Why (not) active: "always", "vrrp VI_1 MASTER", "vrrp VI_1 BACKUP", "bgp".
    pub role: String,
    pub quorum_up: bool,
    pub sorry_server: Option<SocketAddr>,
    pub traffic: Traffic,
    pub rates: Rates,
    pub reals: Vec<RealStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VrrpStatus {
    pub name: String,
    pub state: String,
    pub vrid: u8,
    pub interface: String,
    pub priority: u8,
    pub effective_priority: u8,
    pub last_master: Option<std::net::IpAddr>,
    pub adverts_rx: u64,
    pub adverts_tx: u64,
    pub bad_adverts: BTreeMap<String, u64>,
    /// Role changes since the instance started.
    #[serde(default)]
    pub transitions: u64,
    /// The last advert dropped: who sent it and why.
    #[serde(default)]
    pub last_bad_advert: Option<BadAdvert>,
    /// Its tracked scripts, processes and files, with what each does to it now.
    #[serde(default)]
    pub tracked: Vec<TrackedStatus>,
}

/// One tracked object of a VRRP instance as `xlb status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TrackedStatus {
    /// `vrrp_script NAME`, `vrrp_track_process NAME` or `vrrp_track_file NAME`.
    pub object: String,
    /// `init`, `up`, `down`, or a file's last value.
    pub state: String,
    /// `+5`, `-10`, `0`, `FAULT` or `INIT` (a weight-0 script without a result yet).
    pub effect: String,
}

/// A dropped VRRP advert.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BadAdvert {
    pub from: std::net::IpAddr,
    /// The `bad_adverts` key (`auth`, `vrid`, `interval`...).
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// The last configuration load (start or reload).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ConfigLoad {
    pub successful: bool,
    /// Seconds since the Unix epoch.
    pub at_unix: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct InterfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// native | generic
    pub mode: String,
    /// attached | adopted
    pub how: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    pub version: String,
    pub config_file: String,
    pub conn_table_size: u32,
    pub conn_table_entries: u64,
    /// Persistence templates in force (IPVS shows them among the connections).
    #[serde(default)]
    pub persistence_templates: u64,
    pub maglev_capacity: u32,
    pub interfaces: Vec<InterfaceStatus>,
    pub services: Vec<ServiceStatus>,
    pub vrrp: Vec<VrrpStatus>,
    /// Global counters by name (see lb_common::stat::NAMES).
    pub counters: BTreeMap<String, u64>,
    /// The idle timeouts in force (`ipvsadm -l --timeout`).
    #[serde(default)]
    pub timeouts: TimeoutStatus,
    /// The last configuration load or reload.
    #[serde(default)]
    pub config_load: ConfigLoad,
    /// Time the last connection-table sweep took.
    #[serde(default)]
    pub sweep_duration_secs: f64,
    /// The last health and VRRP transitions, oldest first.
    #[serde(default)]
    pub recent_transitions: Vec<Transition>,
    /// Connection sync (`[sync]`): messages, drops by reason, peers heard from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::task::SyncStats>,
    /// Each director's view of each real server (`xlb status --peers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_views: Option<crate::health::views::HealthViews>,
}

/// `[timeouts]` in force, in seconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimeoutStatus {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub syn_recv: u32,
    pub close: u32,
    pub udp: u32,
}

/// Counters of packets the program dropped, by reason (shown under the table).
const DROP_COUNTERS: [&str; 4] = [
    "no_real_server",
    "fragment_dropped",
    "redirect_failed",
    "action_drop",
];

impl StatusReport {
    /// Keeps only the services at `addr` (and `protocol` when given): `xlb status -t VIP:PORT`.
    /// Whether any is left.
    pub fn select(&mut self, addr: SocketAddr, protocol: Option<Protocol>) -> bool {
        self.services.retain(|s| {
            s.addr.vip == addr.ip()
                && s.addr.port == addr.port()
                && protocol.is_none_or(|p| s.addr.protocol == p)
        });
        !self.services.is_empty()
    }

    /// Services by protocol, address and port, real servers by address (`ipvsadm --sort`).
    pub fn sort(&mut self) {
        self.services
            .sort_by_key(|s| (s.addr.protocol, s.addr.vip, s.addr.port));
        for s in &mut self.services {
            s.reals.sort_by_key(|r| r.addr);
        }
    }
}

/// `ipvsadm -l --timeout`.
pub fn render_timeouts(report: &StatusReport) -> String {
    let t = &report.timeouts;
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\nTimeout (syn_recv close): {} {}\n",
        t.tcp, t.tcp_fin, t.udp, t.syn_recv, t.close
    )
}

impl StatusReport {
    /// A report with nothing in it yet (before the daemon's first snapshot).
    pub fn empty() -> Self {
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_file: String::new(),
            conn_table_size: 0,
            conn_table_entries: 0,
            persistence_templates: 0,
            maglev_capacity: 0,
            interfaces: Vec::new(),
            services: Vec::new(),
            vrrp: Vec::new(),
            counters: BTreeMap::new(),
            config_load: ConfigLoad::default(),
            sweep_duration_secs: 0.0,
            recent_transitions: Vec::new(),
            timeouts: TimeoutStatus::default(),
            sync: None,
            health_views: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnEntry {
    pub protocol: String,
    pub expire_secs: u64,
    pub state: String,
    pub client: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub real: Option<SocketAddr>,
    /// For an entry learnt by connection sync: the director that dispatched the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_from: Option<u32>,
}

/// Which columns `xlb status` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Connections,
    Stats { exact: bool },
    Rate,
}

fn addr_str(addr: &ServiceAddr) -> String {
    addr.to_string()
}

/// ipvsadm's K/M/G suffixes (powers of 1000 as ipvsadm prints them).
fn human(n: u64, exact: bool) -> String {
    if exact || n < 100_000 {
        return n.to_string();
    }
    let units = [
        ("K", 1_000u64),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let mut out = n.to_string();
    for (suffix, div) in units {
        if n / div < 100_000 {
            out = format!("{}{}", n / div, suffix);
            break;
        }
    }
    out
}

/// The `ipvsadm -ln` layout (with `--stats` / `--rate` variants), plus health and VRRP.
pub fn render(report: &StatusReport, view: View) -> String {
    let mut o = String::new();
    let templates = match report.persistence_templates {
        0 => String::new(),
        n => format!(", templates={n}"),
    };
    let _ = writeln!(
        o,
        "xlb version {} (size={}, entries={}{templates})",
        report.version, report.conn_table_size, report.conn_table_entries
    );
    match view {
        View::Connections => {
            let _ = writeln!(o, "Prot LocalAddress:Port Scheduler Flags");
            let _ = writeln!(
                o,
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
            );
        }
        View::Stats { .. } => {
            let _ = writeln!(
                o,
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes"
            );
            let _ = writeln!(o, "  -> RemoteAddress:Port");
        }
        View::Rate => {
            let _ = writeln!(
                o,
                "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS"
            );
            let _ = writeln!(o, "  -> RemoteAddress:Port");
        }
    }
    for s in &report.services {
        let proto = s.addr.protocol.ipvsadm_name();
        match view {
            View::Connections => {
                let mut flags = String::new();
                if s.persistence_timeout > 0 {
                    let _ = write!(flags, " persistent {}", s.persistence_timeout);
                }
                let default_name =
                    crate::config::default_service_name(s.addr.vip, s.addr.port, protocol_of(s));
                if s.name != default_name {
                    let _ = write!(flags, "  ({})", s.name);
                }
                let mut notes = Vec::new();
                if !s.active {
                    notes.push(format!("not forwarding here: {}", s.role));
                }
                if !s.quorum_up {
                    notes.push("below quorum".to_string());
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", notes.join(", "))
                };
                let _ = writeln!(
                    o,
                    "{proto}  {} {}{flags}{notes}",
                    addr_str(&s.addr),
                    s.scheduler
                );
                for r in &s.reals {
                    let mut health = if r.forwarding && r.health == "up" {
                        String::new()
                    } else {
                        format!("  ({})", r.health)
                    };
                    // ActiveConn/InActConn count synced entries too (as IPVS's backup does);
                    // how many of them were learnt from peers follows the columns.
                    if r.synced_active_conns + r.synced_inactive_conns > 0 {
                        let _ = write!(
                            health,
                            "  (synced {} active, {} inactive)",
                            r.synced_active_conns, r.synced_inactive_conns
                        );
                    }
                    let _ = writeln!(
                        o,
                        "  -> {:<28} {:<7} {:<6} {:<10} {:<10}{}",
                        r.addr.to_string(),
                        ipvs_forward(&r.forward),
                        r.effective_weight,
                        r.active_conns,
                        r.inactive_conns,
                        health
                    );
                }
                if let Some(sorry) = s.sorry_server {
                    let _ = writeln!(
                        o,
                        "  -> {:<28} {:<7} (sorry server)",
                        sorry.to_string(),
                        "Route"
                    );
                }
            }
            View::Stats { exact } => {
                let t = &s.traffic;
                let _ = writeln!(
                    o,
                    "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    format!("{proto}  {}", addr_str(&s.addr)),
                    human(t.conns, exact),
                    human(t.packets, exact),
                    0,
                    human(t.bytes, exact),
                    0
                );
                for r in &s.reals {
                    let t = &r.traffic;
                    let _ = writeln!(
                        o,
                        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
                        format!("  -> {}", r.addr),
                        human(t.conns, exact),
                        human(t.packets, exact),
                        0,
                        human(t.bytes, exact),
                        0
                    );
                }
            }
            View::Rate => {
                let r0 = &s.rates;
                let _ = writeln!(
                    o,
                    "{:<33} {:>8.0} {:>8.0} {:>8} {:>8.0} {:>8}",
                    format!("{proto}  {}", addr_str(&s.addr)),
                    r0.cps,
                    r0.pps,
                    0,
                    r0.bps,
                    0
                );
                for r in &s.reals {
                    let _ = writeln!(
                        o,
                        "{:<33} {:>8.0} {:>8.0} {:>8} {:>8.0} {:>8}",
                        format!("  -> {}", r.addr),
                        r.rates.cps,
                        r.rates.pps,
                        0,
                        r.rates.bps,
                        0
                    );
                }
            }
        }
    }
    render_dataplane(&mut o, report);
    if let Some(sync) = &report.sync {
        o += &sync.render();
    }
    if !report.vrrp.is_empty() {
        let _ = writeln!(o, "VRRP");
        for v in &report.vrrp {
            let peer = v
                .last_master
                .map(|p| format!(", last heard master {p}"))
                .unwrap_or_default();
            let bad: u64 = v.bad_adverts.values().sum();
            let _ = writeln!(
                o,
                "  {} {} vrid {} on {} priority {}/{}{} (adverts rx {} tx {}, bad {})",
                v.name,
                v.state,
                v.vrid,
                v.interface,
                v.effective_priority,
                v.priority,
                peer,
                v.adverts_rx,
                v.adverts_tx,
                bad
            );
            for t in &v.tracked {
                let _ = writeln!(o, "    tracks {}: {}, {}", t.object, t.state, t.effect);
            }
        }
    }
    o
}

fn protocol_of(s: &ServiceStatus) -> crate::config::Protocol {
    match s.addr.protocol {
        Protocol::Tcp => crate::config::Protocol::Tcp,
        Protocol::Udp => crate::config::Protocol::Udp,
    }
}

/// The XDP attachments and the drop counters, under the table.
fn render_dataplane(o: &mut String, report: &StatusReport) {
    let modes: Vec<String> = report
        .interfaces
        .iter()
        .map(|i| format!("{} {} ({})", i.name, i.mode, i.how))
        .collect();
    if !modes.is_empty() {
        let _ = writeln!(o, "XDP {}", modes.join(", "));
    }
    let drops: Vec<String> = DROP_COUNTERS
        .iter()
        .filter_map(|n| report.counters.get(*n).map(|v| format!("{n} {v}")))
        .collect();
    if !drops.is_empty() {
        let _ = writeln!(o, "Dropped {}", drops.join(", "));
    }
}

/// The `ipvsadm -lnc` layout.
pub fn render_conns(entries: &[ConnEntry], total: u64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "xlb connection entries ({} shown of {total})",
        entries.len()
    );
    let _ = writeln!(
        o,
        "pro expire state       source                   virtual                  destination"
    );
    for e in entries {
        let mut dest = e.real.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
        if let Some(d) = e.synced_from {
            dest = format!("{dest:<24} synced from director {d}");
        }
        let _ = writeln!(
            o,
            "{:<3} {:02}:{:02}  {:<11} {:<24} {:<24} {}",
            e.protocol,
            e.expire_secs / 60,
            e.expire_secs % 60,
            e.state,
            e.client.to_string(),
            e.virtual_addr.to_string(),
            dest
        );
    }
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataplane::desired::Protocol;

    pub fn sample() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            config_file: "/etc/xlb/xlb.toml".into(),
            conn_table_size: 1_048_576,
            conn_table_entries: 3,
            persistence_templates: 0,
            maglev_capacity: 1 << 20,
            interfaces: vec![],
            services: vec![ServiceStatus {
                name: "web".into(),
                addr: ServiceAddr {
                    vip: "192.168.2.212".parse().unwrap(),
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                scheduler: "mh".into(),
                persistence_timeout: 0,
                active: true,
                role: "always".into(),
                quorum_up: true,
                sorry_server: None,
                traffic: Traffic {
                    conns: 3,
                    packets: 250_000,
                    bytes: 1_000,
                },
                rates: Rates::default(),
                reals: vec![
                    RealStatus {
                        addr: "192.168.2.220:80".parse().unwrap(),
                        weight: 1,
                        effective_weight: 1,
                        forwarding: true,
                        health: "up".into(),
                        forward: "dr".into(),
                        active_conns: 2,
                        inactive_conns: 0,
                        synced_active_conns: 0,
                        synced_inactive_conns: 0,
                        traffic: Traffic::default(),
                        rates: Rates::default(),
                        check: CheckStats::default(),
                    },
                    RealStatus {
                        addr: "192.168.2.221:80".parse().unwrap(),
                        weight: 1,
                        effective_weight: 1,
                        forwarding: false,
                        health: "down: refused".into(),
                        forward: "gue".into(),
                        active_conns: 0,
                        inactive_conns: 1,
                        synced_active_conns: 0,
                        synced_inactive_conns: 0,
                        traffic: Traffic::default(),
                        rates: Rates::default(),
                        check: CheckStats::default(),
                    },
                ],
            }],
            vrrp: vec![],
            counters: BTreeMap::new(),
            timeouts: TimeoutStatus {
                tcp: 900,
                tcp_fin: 120,
                syn_recv: 60,
                close: 10,
                udp: 300,
            },
            config_load: ConfigLoad::default(),
            sweep_duration_secs: 0.0,
            recent_transitions: vec![],
            sync: None,
            health_views: None,
        }
    }

    #[test]
    fn recent_transitions_are_bounded_and_ordered() {
        let mut a = RecentTransitions::default();
        for i in 0..(RecentTransitions::CAPACITY + 5) {
            a.push(
                "health",
                format!("web {i}"),
                "down".into(),
                "refused".into(),
            );
        }
        let v = a.to_vec();
        assert_eq!(v.len(), RecentTransitions::CAPACITY);
        assert_eq!(v[0].subject, "web 5");
        let mut b = RecentTransitions::default();
        b.push("vrrp", "VI_1".into(), "MASTER".into(), "".into());
        let m = RecentTransitions::merge([v, b.to_vec()]);
        assert_eq!(m.len(), RecentTransitions::CAPACITY);
        assert_eq!(m.last().map(|t| t.subject.as_str()), Some("VI_1"));
    }

    #[test]
    fn ipvsadm_layout() {
        let text = render(&sample(), View::Connections);
        let expected = "\
xlb version 0.1.0 (size=1048576, entries=3)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.2.212:80 mh  (web)
  -> 192.168.2.220:80             Route   1      2          0         
  -> 192.168.2.221:80             Tunnel  1      0          1           (down: refused)
";
        assert_eq!(text, expected);
        let stats = render(&sample(), View::Stats { exact: false });
        assert!(
            stats.contains(
                "TCP  192.168.2.212:80                    3     250K        0     1000        0"
            ),
            "{stats}"
        );
    }

    #[test]
    fn vrrp_lines_show_tracked_objects() {
        let mut r = sample();
        r.vrrp.push(VrrpStatus {
            name: "VI_1".into(),
            state: "BACKUP".into(),
            vrid: 51,
            interface: "eth0".into(),
            priority: 150,
            effective_priority: 90,
            last_master: None,
            adverts_rx: 7,
            adverts_tx: 0,
            bad_adverts: BTreeMap::new(),
            transitions: 2,
            last_bad_advert: None,
            tracked: vec![TrackedStatus {
                object: "vrrp_script chk_nginx".into(),
                state: "down".into(),
                effect: "-60".into(),
            }],
        });
        let text = render(&r, View::Connections);
        assert!(
            text.contains(
                "  VI_1 BACKUP vrid 51 on eth0 priority 90/150 (adverts rx 7 tx 0, bad 0)\n    \
                 tracks vrrp_script chk_nginx: down, -60\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn timeouts_filter_sort_and_dataplane_lines() {
        let mut r = sample();
        assert_eq!(
            render_timeouts(&r),
            "Timeout (tcp tcpfin udp): 900 120 300\nTimeout (syn_recv close): 60 10\n"
        );
        r.interfaces.push(InterfaceStatus {
            name: "eth0".into(),
            ifindex: 2,
            mode: "generic".into(),
            how: "adopted".into(),
        });
        r.counters.insert("no_real_server".into(), 4);
        let text = render(&r, View::Connections);
        assert!(text.contains("XDP eth0 generic (adopted)\n"), "{text}");
        assert!(text.contains("Dropped no_real_server 4\n"), "{text}");
        let mut second = r.services[0].clone();
        second.addr.port = 443;
        second.reals.reverse();
        r.services.insert(0, second);
        r.sort();
        assert_eq!(r.services[0].addr.port, 80);
        assert!(r.services[1].reals[0].addr < r.services[1].reals[1].addr);
        let mut only = r.clone();
        assert!(only.select("192.168.2.212:443".parse().unwrap(), Some(Protocol::Tcp)));
        assert_eq!(only.services.len(), 1);
        assert!(!r.select("192.168.2.212:443".parse().unwrap(), Some(Protocol::Udp)));
    }
}
