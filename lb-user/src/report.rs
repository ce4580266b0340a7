//! What the daemon answers to queries (`xlb status`, `xlb conns`, metrics), built from what the
//! shell read passed in: the configuration, the controller's decisions, the writer's slots, a
//! census of the connection table and a traffic sample. Building a report never changes anything
//! (the sweep that expires entries runs on its own tick).
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use lb_common::{stat, FlowEntry, FlowKey, PersistEntry, PersistKey, Persistence, TrafficStats};

use crate::{
    config::{self, Config},
    controller::Controller,
    dataplane::{
        desired::{words_addr, ServiceAddr},
        sweep::{self, SweepResult, Timeouts},
        writer::{RealKey, ServiceSlots},
    },
    state,
    status::{
        CheckStats, ConfigLoad, ConnEntry, InterfaceStatus, Rates, RealStatus, ServiceStatus,
        StatusReport, TimeoutStatus, Traffic, Transition, VrrpStatus,
    },
};

/// Traffic counters of every written service and real server at one instant.
#[derive(Clone, Debug)]
pub struct TrafficSample {
    pub at: Instant,
    /// Service id -> counters.
    pub services: HashMap<u32, TrafficStats>,
    /// Real-server slot -> counters.
    pub reals: HashMap<u32, TrafficStats>,
}

/// CPS / PPS / BPS between the last two samples (`ipvsadm --rate`).
#[derive(Debug, Default)]
pub struct RateTracker {
    last: Option<TrafficSample>,
    services: HashMap<u32, Rates>,
    reals: HashMap<u32, Rates>,
}

fn rate(new: &TrafficStats, old: Option<&TrafficStats>, secs: f64) -> Rates {
    let old = old.copied().unwrap_or_default();
    Rates {
        cps: new.conns.saturating_sub(old.conns) as f64 / secs,
        pps: new.packets.saturating_sub(old.packets) as f64 / secs,
        bps: new.bytes.saturating_sub(old.bytes) as f64 / secs,
    }
}

impl RateTracker {
    pub fn update(&mut self, sample: TrafficSample) {
        if let Some(last) = &self.last {
            let secs = sample.at.duration_since(last.at).as_secs_f64().max(1e-3);
            self.services = sample
                .services
                .iter()
                .map(|(k, v)| (*k, rate(v, last.services.get(k), secs)))
                .collect();
            self.reals = sample
                .reals
                .iter()
                .map(|(k, v)| (*k, rate(v, last.reals.get(k), secs)))
                .collect();
        }
        self.last = Some(sample);
    }

    fn service(&self, id: u32) -> Rates {
        self.services.get(&id).cloned().unwrap_or_default()
    }

    fn real(&self, slot: u32) -> Rates {
        self.reals.get(&slot).cloned().unwrap_or_default()
    }
}

/// Everything a status report is built from.
pub struct StatusInputs<'a> {
    pub cfg: &'a Config,
    pub config_file: String,
    pub controller: &'a Controller,
    pub master_vips: &'a BTreeSet<IpAddr>,
    pub slots: &'a BTreeMap<ServiceAddr, ServiceSlots>,
    pub census: &'a SweepResult,
    pub traffic: &'a TrafficSample,
    pub rates: &'a RateTracker,
    pub interfaces: Vec<InterfaceStatus>,
    pub vrrp: Vec<VrrpStatus>,
    /// Global counters in `lb_common::stat::NAMES` order.
    pub counters: Vec<u64>,
    pub conn_table_size: u32,
    pub maglev_capacity: u32,
    /// Health-check results per (service, real server).
    pub check_stats: &'a BTreeMap<(String, SocketAddr), CheckStats>,
    pub config_load: ConfigLoad,
    pub sweep_duration_secs: f64,
    pub recent_transitions: Vec<Transition>,
}

fn traffic(t: Option<&TrafficStats>) -> Traffic {
    t.map(|t| Traffic {
        conns: t.conns,
        packets: t.packets,
        bytes: t.bytes,
    })
    .unwrap_or_default()
}

/// `xlb status`.
pub fn status(inp: &StatusInputs<'_>) -> StatusReport {
    let services = inp
        .cfg
        .virtual_servers
        .iter()
        .map(|vs| service_status(inp, vs))
        .collect();
    let counters = stat::NAMES
        .iter()
        .zip(&inp.counters)
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config_file: inp.config_file.clone(),
        conn_table_size: inp.conn_table_size,
        conn_table_entries: inp.census.entries,
        persistence_templates: inp.census.templates,
        maglev_capacity: inp.maglev_capacity,
        interfaces: inp.interfaces.clone(),
        services,
        vrrp: inp.vrrp.clone(),
        counters,
        config_load: inp.config_load.clone(),
        sweep_duration_secs: inp.sweep_duration_secs,
        recent_transitions: inp.recent_transitions.clone(),
        timeouts: TimeoutStatus {
            tcp: inp.cfg.timeouts.tcp,
            tcp_fin: inp.cfg.timeouts.tcp_fin,
            syn_recv: inp.cfg.timeouts.syn_recv,
            close: inp.cfg.timeouts.close,
            udp: inp.cfg.timeouts.udp,
        },
        sync: None,
        health_views: None,
    }
}

/// How the service's VIP is claimed, and whether this director holds it.
fn role(inp: &StatusInputs<'_>, vs: &config::VirtualServer) -> String {
    match vs.announce {
        config::Announce::Always => "always".to_string(),
        config::Announce::Bgp => "bgp".to_string(),
        config::Announce::Vrrp => {
            let vip = vs.vip;
            let inst = inp
                .cfg
                .vrrp_instance_for(vip)
                .map(|i| i.name.clone())
                .unwrap_or_default();
            let master = inp.master_vips.contains(&vip);
            format!(
                "vrrp {inst} {}",
                if master { "MASTER" } else { "not MASTER" }
            )
        }
    }
}

fn service_status(inp: &StatusInputs<'_>, vs: &config::VirtualServer) -> ServiceStatus {
    let name = vs.name.clone();
    let addr = state::service_addr(vs);
    let slots = inp.slots.get(&addr);
    let desired = inp
        .controller
        .desired()
        .services
        .iter()
        .find(|d| d.addr == addr);
    let reals = vs
        .real_servers
        .iter()
        .map(|rs| {
            let ip = rs.address;
            let port = rs.port;
            let key = RealKey {
                addr: ip,
                port,
                sorry: false,
            };
            let slot = slots.and_then(|s| s.reals.get(&key)).copied();
            let d = desired.and_then(|d| d.reals.iter().find(|r| r.addr == ip && r.port == port));
            let sock = SocketAddr::new(ip, port);
            let note = inp
                .controller
                .notes()
                .iter()
                .find(|n| n.service == name && n.real == sock)
                .map(|n| n.note.clone());
            let counts = slot
                .and_then(|s| inp.census.per_real.get(&s))
                .copied()
                .unwrap_or_default();
            RealStatus {
                addr: sock,
                weight: rs.weight,
                effective_weight: d.map(|d| d.weight).unwrap_or(0),
                forwarding: d.is_some_and(|d| d.alive && d.weight > 0),
                health: note.unwrap_or_else(|| "up".into()),
                forward: rs
                    .tunnel
                    .map_or("dr", |t| crate::tunnel::kind(t.kind).name())
                    .into(),
                active_conns: counts.active,
                inactive_conns: counts.inactive,
                synced_active_conns: counts.synced_active,
                synced_inactive_conns: counts.synced_inactive,
                traffic: traffic(slot.and_then(|s| inp.traffic.reals.get(&s))),
                rates: slot.map(|s| inp.rates.real(s)).unwrap_or_default(),
                check: inp
                    .check_stats
                    .get(&(name.clone(), sock))
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    ServiceStatus {
        role: role(inp, vs),
        addr,
        scheduler: state::scheduler(vs.scheduler).ipvs_name().to_string(),
        persistence_timeout: vs.persistence_timeout,
        active: desired.is_some_and(|d| d.active),
        quorum_up: inp.controller.is_at_quorum(&name),
        sorry_server: vs.sorry_server.map(|s| SocketAddr::new(s, vs.port)),
        traffic: traffic(slots.and_then(|s| inp.traffic.services.get(&s.id))),
        rates: slots.map(|s| inp.rates.service(s.id)).unwrap_or_default(),
        reals,
        name,
    }
}

/// Which flows `xlb conns` lists.
#[derive(Clone, Debug, Default)]
pub struct ConnFilter {
    pub service: Option<String>,
    pub real: Option<IpAddr>,
    pub client: Option<IpAddr>,
    pub limit: usize,
}

/// `xlb conns`: fed every connection-table entry by the shell, keeps the ones the filter
/// selects (up to the limit) and counts all that match.
pub struct ConnListing<'a> {
    filter: ConnFilter,
    timeouts: &'a Timeouts,
    now_ns: u64,
    services: HashMap<u32, (String, ServiceAddr)>,
    reals: HashMap<u32, SocketAddr>,
    pub entries: Vec<ConnEntry>,
    pub total: u64,
}

impl<'a> ConnListing<'a> {
    pub fn new(
        cfg: &Config,
        slots: &BTreeMap<ServiceAddr, ServiceSlots>,
        timeouts: &'a Timeouts,
        filter: ConnFilter,
        now_ns: u64,
    ) -> Self {
        let mut services = HashMap::new();
        let mut reals = HashMap::new();
        for vs in &cfg.virtual_servers {
            let addr = state::service_addr(vs);
            if let Some(s) = slots.get(&addr) {
                services.insert(s.id, (vs.name.clone(), addr));
                for (k, slot) in &s.reals {
                    reals.insert(*slot, SocketAddr::new(k.addr, k.port));
                }
            }
        }
        Self {
            filter,
            timeouts,
            now_ns,
            services,
            reals,
            entries: Vec::new(),
            total: 0,
        }
    }

    fn selects(&self, name: &str, dest: Option<SocketAddr>, client: IpAddr) -> bool {
        let f = &self.filter;
        f.service.as_ref().is_none_or(|s| s == name)
            && f.real.is_none_or(|r| dest.map(|d| d.ip()) == Some(r))
            && f.client.is_none_or(|c| c == client)
    }

    /// A live entry of a known service that the filter selects is counted; it is listed (its
    /// service and real server returned) while the listing is under its limit.
    fn admit(
        &mut self,
        service_id: u32,
        real_id: u32,
        client: IpAddr,
    ) -> Option<(ServiceAddr, Option<SocketAddr>)> {
        let (name, service) = self.services.get(&service_id)?;
        let dest = self.reals.get(&real_id).copied();
        if !self.selects(name, dest, client) {
            return None;
        }
        self.total += 1;
        (self.entries.len() < self.filter.limit).then_some((*service, dest))
    }

    pub fn visit(&mut self, k: &FlowKey, v: &FlowEntry) {
        if sweep::is_expired(v, self.timeouts, self.now_ns) {
            return;
        }
        let client = words_addr(k.src, k.family);
        let Some((service, dest)) = self.admit(v.service_id, v.real_id, client) else {
            return;
        };
        let entry = ConnEntry {
            protocol: service.protocol.ipvsadm_name().to_string(),
            expire_secs: sweep::expires_in(v, self.timeouts, self.now_ns).as_secs(),
            state: sweep::state_name(v.state).to_string(),
            client: SocketAddr::new(client, u16::from_be(k.sport)),
            virtual_addr: SocketAddr::new(service.vip, u16::from_be(k.dport)),
            real: dest,
            synced_from: (v.sync_flags & lb_common::FLOW_F_SYNCED != 0).then_some(v.origin),
        };
        self.entries.push(entry);
    }

    /// A persistence template, as `ipvsadm -lnc` shows IPVS's: state NONE, client port 0, the
    /// service's own port, the real server; it expires `persistence_timeout` after last use.
    pub fn visit_template(&mut self, k: &PersistKey, v: &PersistEntry, p: &Persistence) {
        if sweep::template_expired(v, p, self.now_ns) {
            return;
        }
        let client = words_addr(k.client, k.family);
        let Some((service, dest)) = self.admit(k.service_id, v.real_id, client) else {
            return;
        };
        let entry = ConnEntry {
            protocol: service.protocol.ipvsadm_name().to_string(),
            expire_secs: sweep::template_expires_in(v, p, self.now_ns).as_secs(),
            state: "NONE".to_string(),
            client: SocketAddr::new(client, 0),
            virtual_addr: SocketAddr::new(service.vip, service.port),
            real: dest,
            synced_from: None,
        };
        self.entries.push(entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(conns: u64, packets: u64, bytes: u64) -> TrafficStats {
        TrafficStats {
            conns,
            packets,
            bytes,
        }
    }

    #[test]
    fn rates_are_the_difference_over_the_elapsed_time() {
        let t0 = Instant::now();
        let sample = |at, c, p, b| TrafficSample {
            at,
            services: [(1, stats(c, p, b))].into(),
            reals: [(4, stats(c, p, b))].into(),
        };
        let mut r = RateTracker::default();
        r.update(sample(t0, 10, 100, 1000));
        assert_eq!(r.service(1), Rates::default(), "one sample: no rate yet");
        r.update(sample(
            t0 + std::time::Duration::from_secs(2),
            30,
            300,
            5000,
        ));
        assert_eq!(
            r.service(1),
            Rates {
                cps: 10.0,
                pps: 100.0,
                bps: 2000.0
            }
        );
        assert_eq!(r.real(4).cps, 10.0);
        assert_eq!(r.real(5), Rates::default(), "unknown slot");
    }

    #[test]
    fn counters_that_went_backwards_give_zero_not_a_wrap() {
        let t0 = Instant::now();
        let mut r = RateTracker::default();
        let s = |at, c| TrafficSample {
            at,
            services: [(1, stats(c, 0, 0))].into(),
            reals: HashMap::new(),
        };
        r.update(s(t0, 50));
        r.update(s(t0 + std::time::Duration::from_secs(1), 0));
        assert_eq!(r.service(1).cps, 0.0);
    }

    #[test]
    fn conn_listing_filters_counts_and_limits() {
        let cfg =
            config::testing::web("[[virtual_server.real_server]]\naddress = \"198.18.0.11\"\n");
        let addr = state::service_addr(&cfg.virtual_servers[0]);
        let rk = RealKey {
            addr: "198.18.0.11".parse().unwrap(),
            port: 80,
            sorry: false,
        };
        let slots: BTreeMap<_, _> = [(
            addr,
            ServiceSlots {
                id: 3,
                reals: [(rk, 9)].into(),
            },
        )]
        .into();
        let timeouts = Timeouts::default();
        let filter = ConnFilter {
            limit: 1,
            ..Default::default()
        };
        let mut l = ConnListing::new(&cfg, &slots, &timeouts, filter, 0);
        let flow = |last: u8| {
            let (src, family) =
                crate::dataplane::desired::addr_words(format!("198.18.1.{last}").parse().unwrap());
            FlowKey {
                src,
                sport: 40000u16.to_be(),
                dport: 80u16.to_be(),
                family,
                ..Default::default()
            }
        };
        let entry = |service_id| FlowEntry {
            service_id,
            real_id: 9,
            state: lb_common::conn_state::ESTABLISHED,
            ..Default::default()
        };
        l.visit(&flow(1), &entry(3));
        l.visit(&flow(2), &entry(3));
        l.visit(&flow(3), &entry(8)); // a service not in the config: not listed
        assert_eq!(l.total, 2);
        assert_eq!(l.entries.len(), 1, "limit");
        let e = &l.entries[0];
        assert_eq!(e.client, "198.18.1.1:40000".parse().unwrap());
        assert_eq!(e.real, Some("198.18.0.11:80".parse().unwrap()));
        assert_eq!(e.state, "ESTABLISHED");
        let filter = ConnFilter {
            client: Some("198.18.1.2".parse().unwrap()),
            limit: 10,
            ..Default::default()
        };
        let mut l = ConnListing::new(&cfg, &slots, &timeouts, filter.clone(), 0);
        l.visit(&flow(1), &entry(3));
        l.visit(&flow(2), &entry(3));
        assert_eq!(l.total, 1);
        // Past the established timeout (900 s idle): gone, even before a sweep removes it.
        let mut l = ConnListing::new(&cfg, &slots, &timeouts, filter, 901_000_000_000);
        l.visit(&flow(2), &entry(3));
        assert_eq!(l.total, 0);
        // A persistence template: state NONE, client port 0, the service port, its own timeout.
        let p = Persistence {
            timeout_secs: 50,
            ..Default::default()
        };
        let key = PersistKey {
            client: flow(7).src,
            service_id: 3,
            family: lb_common::AF_INET,
            _pad: [0; 3],
        };
        let t = PersistEntry {
            real_id: 9,
            last_used_ns: 10_000_000_000,
            ..Default::default()
        };
        let all = ConnFilter {
            limit: 10,
            ..Default::default()
        };
        let mut l = ConnListing::new(&cfg, &slots, &timeouts, all.clone(), 30_000_000_000);
        l.visit_template(&key, &t, &p);
        assert_eq!(l.total, 1);
        let e = &l.entries[0];
        assert_eq!(
            (e.protocol.as_str(), e.state.as_str(), e.expire_secs),
            ("TCP", "NONE", 30)
        );
        assert_eq!(e.client, "198.18.1.7:0".parse().unwrap());
        assert_eq!(e.virtual_addr, SocketAddr::new(addr.vip, 80));
        assert_eq!(e.real, Some("198.18.0.11:80".parse().unwrap()));
        let mut l = ConnListing::new(&cfg, &slots, &timeouts, all, 61_000_000_000);
        l.visit_template(&key, &t, &p);
        assert_eq!(l.total, 0, "past persistence_timeout");
    }
}
