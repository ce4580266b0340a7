//! DesiredState = f(config, health, VRRP role, interfaces, neighbours). Pure: no IO, unit-tested.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    config::{self, Announce, Config},
    dataplane::desired::{
        DesiredReal, DesiredService, DesiredState, Protocol, Scheduler, ServiceAddr,
    },
    net::Interface,
};

/// Health of one real server as the checkers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealHealthInput {
    pub up: bool,
    /// Weight from the check (misc_dynamic) or the configured one.
    pub weight: u32,
    pub reason: String,
}

/// Everything the desired state depends on besides the config.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The configured XDP interfaces, in config order (their position is the devmap key).
    pub interfaces: &'a [Interface],
    /// ip -> (ifindex, MAC) from the neighbour table.
    pub neighbours: &'a BTreeMap<IpAddr, (u32, [u8; 6])>,
    /// (service name, real address:port) -> health; missing = no check = up.
    pub health: &'a BTreeMap<(String, SocketAddr), RealHealthInput>,
    /// VIPs whose VRRP instance is MASTER here.
    pub master_vips: &'a BTreeSet<IpAddr>,
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
    let neighbour = inputs.neighbours.get(&ip);
    let (tx_port, iface) = egress(inputs.interfaces, wanted_iface, ip, neighbour.map(|n| n.0))
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
    })
}

/// Builds the desired state. Real servers without a known MAC are kept out of the ring (and
/// listed in the notes) rather than forwarded into a black hole.
pub fn build(cfg: &Config, inputs: &Inputs<'_>) -> (DesiredState, Vec<RealNote>) {
    let mut notes = Vec::new();
    let mut services = Vec::new();
    for vs in &cfg.virtual_servers {
        let name = vs.name.clone();
        let mut reals = Vec::new();
        for rs in &vs.real_servers {
            let ip = rs.address;
            let port = rs.port;
            let sock = SocketAddr::new(ip, port);
            let mac = rs.mac.as_ref().map(|m| m.0);
            let iface = rs.interface.as_deref();
            let mut real = match desired_real(inputs, ip, port, mac, iface) {
                Ok(r) => r,
                Err(note) => {
                    notes.push(RealNote {
                        service: name.clone(),
                        real: sock,
                        note: note.to_string(),
                    });
                    continue;
                }
            };
            let configured = rs.weight;
            match inputs.health.get(&(name.clone(), sock)) {
                Some(h) if !h.up => {
                    if vs.inhibit_on_failure {
                        // keepalived's inhibit_on_failure: weight 0, flows stay.
                        real.weight = 0;
                    } else {
                        real.alive = false;
                    }
                    notes.push(RealNote {
                        service: name.clone(),
                        real: sock,
                        note: format!("down: {}", h.reason),
                    });
                }
                Some(h) => real.weight = h.weight,
                None => real.weight = configured,
            }
            reals.push(real);
        }
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
        if !at_quorum && sorry.is_some() {
            // Below quorum with a sorry server: keepalived sends everything to the sorry server.
            for r in &mut reals {
                r.weight = 0;
            }
        }
        services.push(DesiredService {
            addr: service_addr(vs),
            active: is_active(vs, inputs.master_vips),
            scheduler: scheduler(vs.scheduler),
            hash_client_only: vs.persistence_timeout > 0,
            table_size: vs.maglev_table_size,
            reals,
            sorry,
        });
    }
    let tx_ports = inputs
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, iface)| (i as u32, iface.index))
        .collect();
    (
        DesiredState {
            services,
            flood_threshold: cfg.global.flood_threshold as u64,
            tx_ports,
        },
        notes,
    )
}

/// Sum of the weights of the live real servers of every service (for quorum).
pub fn alive_weights(
    cfg: &Config,
    health: &BTreeMap<(String, SocketAddr), RealHealthInput>,
) -> BTreeMap<String, u64> {
    cfg.virtual_servers
        .iter()
        .map(|vs| {
            let name = vs.name.clone();
            let sum = vs
                .real_servers
                .iter()
                .map(|rs| {
                    let sock = SocketAddr::new(rs.address, rs.port);
                    match health.get(&(name.clone(), sock)) {
                        Some(h) if !h.up => 0,
                        Some(h) => h.weight as u64,
                        None => rs.weight as u64,
                    }
                })
                .sum();
            (name, sum)
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

    fn iface() -> Interface {
        Interface {
            name: "eth0".into(),
            index: 7,
            mac: [2, 0, 0, 0, 0, 2],
            addrs: vec![("198.18.0.2".parse().unwrap(), 24)],
        }
    }

    #[test]
    fn builds_reals_with_neighbour_macs_and_notes_unresolved() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let ifaces = [iface()];
        let mut neigh = BTreeMap::new();
        neigh.insert("198.18.0.11".parse().unwrap(), (7, [2, 0, 0, 0, 0, 0x11]));
        let health = BTreeMap::new();
        let vips = BTreeSet::new();
        let quorum = BTreeMap::new();
        let inputs = Inputs {
            interfaces: &ifaces,
            neighbours: &neigh,
            health: &health,
            master_vips: &vips,
            quorum_up: &quorum,
        };
        let (state, notes) = build(&cfg, &inputs);
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
    }

    #[test]
    fn failed_real_is_not_alive_and_alive_weight_counts_the_others() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let ifaces = [iface()];
        let mut neigh = BTreeMap::new();
        neigh.insert("198.18.0.11".parse().unwrap(), (7, [2, 0, 0, 0, 0, 0x11]));
        let mut health = BTreeMap::new();
        let name = cfg.virtual_servers[0].name.clone();
        health.insert(
            (name.clone(), "198.18.0.11:80".parse().unwrap()),
            RealHealthInput {
                up: false,
                weight: 2,
                reason: "refused".into(),
            },
        );
        let vips = BTreeSet::new();
        let quorum = BTreeMap::new();
        let inputs = Inputs {
            interfaces: &ifaces,
            neighbours: &neigh,
            health: &health,
            master_vips: &vips,
            quorum_up: &quorum,
        };
        let (state, _) = build(&cfg, &inputs);
        assert!(!state.services[0].reals[0].alive);
        assert_eq!(alive_weights(&cfg, &health)[&name], 2);
    }
}
