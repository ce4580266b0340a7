//! DesiredState = f(config, health, VRRP role, interfaces, neighbours). Pure: no IO, unit-tested.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    config::{self, Announce, Config},
    dataplane::desired::{
        DesiredPersistence, DesiredReal, DesiredService, DesiredState, Protocol, Scheduler,
        ServiceAddr,
    },
    net::{Interface, Route},
    overlay::{Overlay, RealOverride},
};

/// Health of one real server as the checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealHealthInput {
    pub up: bool,
    /// Weight from the check (misc_dynamic) or the configured one.
    pub weight: u32,
    pub reason: String,
    /// Down here but not confirmed (`confirm_failure`): drained (weight 0, flows kept) rather
    /// than removed.
    pub suspect: bool,
}

/// What the daemon observed, besides the configuration.
#[derive(Debug)]
pub struct Observed<'a> {
    /// The attached XDP interfaces, in config order (their position is the devmap key).
    pub interfaces: &'a [Interface],
    /// ip -> (ifindex, MAC) from the neighbour table.
    pub neighbours: &'a BTreeMap<IpAddr, (u32, [u8; 6])>,
    /// Route to each tunnelled real server (tunnel mode).
    pub routes: &'a BTreeMap<IpAddr, Route>,
    /// (service name, real address:port) -> health; missing = no check = up.
    pub health: &'a BTreeMap<(String, SocketAddr), RealHealthInput>,
    /// VIPs whose VRRP instance is MASTER here.
    pub master_vips: &'a BTreeSet<IpAddr>,
    /// The operator's run-time changes (drain, weight, disable).
    pub overlay: &'a Overlay,
}

/// Everything the desired state depends on besides the config.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub seen: &'a Observed<'a>,
    /// Service name -> is the service at quorum (kept by the caller with hysteresis).
    pub quorum_up: &'a BTreeMap<String, bool>,
}

/// Why a real server is not forwarded to (shown in status).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealNote {
    pub service: String,
    pub real: SocketAddr,
    pub note: String,
}

pub fn protocol(p: config::Protocol) -> Protocol {
    match p {
        config::Protocol::Tcp => Protocol::Tcp,
        config::Protocol::Udp => Protocol::Udp,
    }
}

pub fn scheduler(s: config::Scheduler) -> Scheduler {
    match s {
        config::Scheduler::Maglev => Scheduler::Maglev,
        config::Scheduler::SourceHash => Scheduler::SourceHash,
        config::Scheduler::RoundRobin => Scheduler::RoundRobin,
        config::Scheduler::WeightedRoundRobin => Scheduler::WeightedRoundRobin,
    }
}

pub fn service_addr(vs: &config::VirtualServer) -> ServiceAddr {
    ServiceAddr {
        vip: vs.vip,
        port: vs.port,
        protocol: protocol(vs.protocol),
    }
}

/// Is the service forwarded on this director now?
pub fn is_active(vs: &config::VirtualServer, master_vips: &BTreeSet<IpAddr>) -> bool {
    match vs.announce {
        Announce::Vrrp => master_vips.contains(&vs.vip),
        Announce::Bgp | Announce::Always => true,
    }
}

/// Egress interface of a real server: the configured one, else the XDP interface whose subnet
/// holds it, else the one the neighbour table knows it on, else the first.
fn egress<'a>(
    interfaces: &'a [Interface],
    wanted: Option<&str>,
    ip: IpAddr,
    neighbour_ifindex: Option<u32>,
) -> Option<(u32, &'a Interface)> {
    let pos = match wanted {
        Some(name) => interfaces.iter().position(|i| i.name == name),
        None => interfaces
            .iter()
            .position(|i| i.on_link(ip))
            .or_else(|| {
                neighbour_ifindex.and_then(|x| interfaces.iter().position(|i| i.index == x))
            })
            .or(if interfaces.is_empty() { None } else { Some(0) }),
    }?;
    Some((pos as u32, &interfaces[pos]))
}

/// Why a real server cannot be forwarded to (the note `xlb status` shows).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("no usable egress interface")]
    NoEgress,
    #[error("MAC of {ip} unknown (ARP/ND unresolved on {interface})")]
    MacUnknown { ip: IpAddr, interface: String },
}

fn desired_real(
    inputs: &Inputs<'_>,
    ip: IpAddr,
    port: u16,
    configured_mac: Option<[u8; 6]>,
    wanted_iface: Option<&str>,
) -> Result<DesiredReal, Unusable> {
    let neighbour = inputs.seen.neighbours.get(&ip);
    let (tx_port, iface) = egress(
        inputs.seen.interfaces,
        wanted_iface,
        ip,
        neighbour.map(|n| n.0),
    )
    .ok_or(Unusable::NoEgress)?;
    let mac = match (configured_mac, neighbour) {
        (Some(m), _) => m,
        (None, Some((_, m))) => *m,
        (None, None) => {
            return Err(Unusable::MacUnknown {
                ip,
                interface: iface.name.clone(),
            })
        }
    };
    Ok(DesiredReal {
        addr: ip,
        port,
        weight: 0,
        alive: true,
        mac,
        src_mac: iface.mac,
        ifindex: iface.index,
        tx_port,
        tunnel: None,
    })
}

fn tunnel_seen<'a>(inputs: &Inputs<'a>) -> crate::tunnel::Seen<'a> {
    crate::tunnel::Seen {
        interfaces: inputs.seen.interfaces,
        neighbours: inputs.seen.neighbours,
        routes: inputs.seen.routes,
    }
}

/// The real server as it is forwarded to now: its egress and MAC, then health (a failed one is
/// not alive, or quiescent with `inhibit_on_failure`), then the operator's overlay. `None` (and a
/// note) when it cannot be forwarded to at all.
fn real_in_force(
    vs: &config::VirtualServer,
    rs: &config::RealServer,
    inputs: &Inputs<'_>,
    notes: &mut Vec<RealNote>,
) -> Option<DesiredReal> {
    let sock = rs.socket_addr();
    let mut note = |text: String| {
        notes.push(RealNote {
            service: vs.name.clone(),
            real: sock,
            note: text,
        })
    };
    let mac = rs.mac.as_ref().map(|m| m.0);
    let resolved = match &rs.tunnel {
        Some(t) => crate::tunnel::desired_real(&tunnel_seen(inputs), rs.address, rs.port, rs, t)
            .map_err(|e| e.to_string()),
        None => desired_real(inputs, rs.address, rs.port, mac, rs.interface.as_deref())
            .map_err(|e| e.to_string()),
    };
    let mut real = match resolved {
        Ok(r) => r,
        Err(why) => {
            note(why);
            return None;
        }
    };
    let mut why = Vec::new();
    match inputs.seen.health.get(&(vs.name.clone(), sock)) {
        Some(h) if !h.up => {
            if vs.inhibit_on_failure || h.suspect {
                // keepalived's inhibit_on_failure, or a suspect real server: weight 0, flows
                // stay.
                real.weight = 0;
            } else {
                real.alive = false;
            }
            why.push(format!("down: {}", h.reason));
        }
        Some(h) => real.weight = h.weight,
        None => real.weight = rs.weight,
    }
    if let Some(o) = inputs.seen.overlay.get(&vs.name, sock) {
        match o {
            RealOverride::Drain => real.weight = 0,
            RealOverride::Weight(w) if real.alive && why.is_empty() => real.weight = w,
            RealOverride::Weight(_) => {}
            RealOverride::Disable => real.alive = false,
        }
        why.push(o.to_string());
    }
    if !why.is_empty() {
        note(why.join("; "));
    }
    Some(real)
}

/// Builds the desired state. Real servers without a known MAC are kept out of the ring (and
/// listed in the notes) rather than forwarded into a black hole.
pub fn build(cfg: &Config, inputs: &Inputs<'_>) -> (DesiredState, Vec<RealNote>) {
    let mut notes = Vec::new();
    let mut services = Vec::new();
    for vs in &cfg.virtual_servers {
        let name = vs.name.clone();
        let reals: Vec<DesiredReal> = vs
            .real_servers
            .iter()
            .filter_map(|rs| real_in_force(vs, rs, inputs, &mut notes))
            .collect();
        let at_quorum = inputs.quorum_up.get(&name).copied().unwrap_or(true);
        let sorry = vs.sorry_server.and_then(|ip| {
            let mac = vs.sorry_server_mac.as_ref().map(|m| m.0);
            match desired_real(inputs, ip, vs.port, mac, None) {
                Ok(mut r) => {
                    r.weight = 1;
                    Some(r)
                }
                Err(note) => {
                    notes.push(RealNote {
                        service: name.clone(),
                        real: SocketAddr::new(ip, vs.port),
                        note: note.to_string(),
                    });
                    None
                }
            }
        });
        let mut reals = reals;
        if !at_quorum && sorry.is_some() {
            // Below quorum with a sorry server: keepalived sends everything to the sorry server.
            for r in &mut reals {
                r.weight = 0;
            }
        }
        services.push(DesiredService {
            addr: service_addr(vs),
            active: is_active(vs, inputs.seen.master_vips),
            scheduler: scheduler(vs.scheduler),
            hash_client_only: vs.persistence_timeout > 0,
            persistence: (vs.persistence_timeout > 0).then_some(DesiredPersistence {
                timeout_secs: vs.persistence_timeout,
                prefix_len: vs.persistence_prefix_len,
            }),
            table_size: vs.maglev_table_size,
            reals,
            sorry,
        });
    }
    let tx_ports = inputs
        .seen
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, iface)| (i as u32, iface.index))
        .collect();
    let interface_macs = inputs
        .seen
        .interfaces
        .iter()
        .map(|iface| (iface.index, iface.mac))
        .collect();
    (
        DesiredState {
            services,
            flood_threshold: cfg.global.flood_threshold as u64,
            tx_ports,
            interface_macs,
        },
        notes,
    )
}

/// The weight a real server contributes to its service's quorum: 0 when down, drained or
/// disabled.
fn live_weight(
    vs: &config::VirtualServer,
    rs: &config::RealServer,
    health: &BTreeMap<(String, SocketAddr), RealHealthInput>,
    overlay: &Overlay,
) -> u64 {
    let health_weight = match health.get(&(vs.name.clone(), rs.socket_addr())) {
        Some(h) if !h.up => return 0,
        Some(h) => h.weight,
        None => rs.weight,
    };
    match overlay.get(&vs.name, rs.socket_addr()) {
        Some(RealOverride::Drain | RealOverride::Disable) => 0,
        Some(RealOverride::Weight(w)) => w as u64,
        None => health_weight as u64,
    }
}

/// Sum of the weights of the live real servers of every service (for quorum).
pub fn alive_weights(
    cfg: &Config,
    health: &BTreeMap<(String, SocketAddr), RealHealthInput>,
    overlay: &Overlay,
) -> BTreeMap<String, u64> {
    cfg.virtual_servers
        .iter()
        .map(|vs| {
            let sum = vs
                .real_servers
                .iter()
                .map(|rs| live_weight(vs, rs, health, overlay))
                .sum();
            (vs.name.clone(), sum)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[global]
interfaces = ["eth0"]
[[virtual_server]]
vip = "198.18.0.100"
port = 80
inhibit_on_failure = false
[[virtual_server.real_server]]
address = "198.18.0.11"
weight = 2
[[virtual_server.real_server]]
address = "198.18.0.12"
mac = "02:00:00:00:00:12"
[[virtual_server.real_server]]
address = "198.18.0.13"
"#;

    /// Builds the desired state of CFG with 198.18.0.11's MAC known.
    fn build_with(
        health: &BTreeMap<(String, SocketAddr), RealHealthInput>,
        overlay: &Overlay,
    ) -> (DesiredState, Vec<RealNote>) {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let ifaces = [iface()];
        let mut neigh = BTreeMap::new();
        neigh.insert("198.18.0.11".parse().unwrap(), (7, [2, 0, 0, 0, 0, 0x11]));
        let seen = Observed {
            interfaces: &ifaces,
            neighbours: &neigh,
            routes: &BTreeMap::new(),
            health,
            master_vips: &BTreeSet::new(),
            overlay,
        };
        let inputs = Inputs {
            seen: &seen,
            quorum_up: &BTreeMap::new(),
        };
        build(&cfg, &inputs)
    }

    fn iface() -> Interface {
        crate::net::testing::eth0()
    }

    #[test]
    fn builds_reals_with_neighbour_macs_and_notes_unresolved() {
        let (state, notes) = build_with(&BTreeMap::new(), &Overlay::default());
        let s = &state.services[0];
        assert!(s.active, "no VRRP instance lists the VIP: always active");
        assert_eq!(s.reals.len(), 2);
        assert_eq!(s.reals[0].mac, [2, 0, 0, 0, 0, 0x11]);
        assert_eq!(s.reals[0].weight, 2);
        assert_eq!(s.reals[0].src_mac, [2, 0, 0, 0, 0, 2]);
        assert_eq!(s.reals[0].ifindex, 7);
        assert_eq!(s.reals[1].mac, [2, 0, 0, 0, 0, 0x12]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].note.contains("198.18.0.13"), "{notes:?}");
        assert_eq!(state.tx_ports.get(&0), Some(&7));
        assert_eq!(state.interface_macs.get(&7), Some(&[2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn failed_real_is_not_alive_and_alive_weight_counts_the_others() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let mut health = BTreeMap::new();
        let name = cfg.virtual_servers[0].name.clone();
        health.insert(
            (name.clone(), "198.18.0.11:80".parse().unwrap()),
            RealHealthInput {
                up: false,
                weight: 2,
                reason: "refused".into(),
                suspect: false,
            },
        );
        let (state, _) = build_with(&health, &Overlay::default());
        assert!(!state.services[0].reals[0].alive);
        assert_eq!(alive_weights(&cfg, &health, &Overlay::default())[&name], 2);
    }

    /// `confirm_failure`: a suspect real server is drained (alive, weight 0: its flows stay,
    /// new flows avoid it) and counts as down for quorum.
    #[test]
    fn suspect_real_is_drained_not_removed() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let name = cfg.virtual_servers[0].name.clone();
        let mut health = BTreeMap::new();
        health.insert(
            (name.clone(), "198.18.0.11:80".parse().unwrap()),
            RealHealthInput {
                up: false,
                weight: 2,
                reason: "refused (suspect)".into(),
                suspect: true,
            },
        );
        let (state, notes) = build_with(&health, &Overlay::default());
        let r = &state.services[0].reals[0];
        assert_eq!((r.alive, r.weight), (true, 0));
        assert!(
            notes.iter().any(|n| n.note.contains("suspect")),
            "{notes:?}"
        );
        assert_eq!(alive_weights(&cfg, &health, &Overlay::default())[&name], 2);
    }

    #[test]
    fn operator_overrides_drain_weigh_and_disable_on_top_of_health() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let name = cfg.virtual_servers[0].name.clone();
        let r11 = crate::overlay::RealRef {
            service: name.clone(),
            real: "198.18.0.11:80".parse().unwrap(),
        };
        let r12 = crate::overlay::RealRef {
            service: name.clone(),
            real: "198.18.0.12:80".parse().unwrap(),
        };
        let mut overlay = Overlay::default();
        overlay.set(&r11, RealOverride::Drain);
        overlay.set(&r12, RealOverride::Weight(7));
        let health = BTreeMap::new();
        let (state, notes) = build_with(&health, &overlay);
        let reals = &state.services[0].reals;
        assert_eq!(
            (reals[0].weight, reals[0].alive),
            (0, true),
            "drained keeps its flows"
        );
        assert_eq!(reals[1].weight, 7);
        assert!(notes
            .iter()
            .any(|n| n.real == r11.real && n.note == "drained by operator"));
        // 0 (drained) + 7 + 1 (198.18.0.13: no MAC yet, but its checks count for quorum).
        assert_eq!(alive_weights(&cfg, &health, &overlay)[&name], 8);
        overlay.set(&r11, RealOverride::Disable);
        let (state, _) = build_with(&health, &overlay);
        assert!(
            !state.services[0].reals[0].alive,
            "disabled: flows dispatched afresh"
        );
    }
}
