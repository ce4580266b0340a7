//! Tunnel mode (LVS-TUN) in the desired state: a tunnelled real server is reached through the
//! kernel's route to it. The frame goes out of the route's interface to the route's next hop
//! (the router's MAC, from the neighbour table), the outer source is the route's source address
//! on that side, and the MTU is the configured `tunnel_mtu`, else the route's, else the link's.
//! Pure: the daemon looks the routes up (`net::Net::route_to`) and passes them in.
use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    config,
    dataplane::desired::{DesiredReal, DesiredTunnel, TunnelKind},
    net::{Interface, Route},
};

/// An MTU for a route the daemon could not learn the link's MTU of.
pub const FALLBACK_MTU: u16 = 1500;

/// Why a tunnelled real server cannot be forwarded to (the note `xlb status` shows).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TunnelError {
    #[error("no route to {0} (tunnel mode forwards along the kernel's route)")]
    NoRoute(IpAddr),
    #[error(
        "the route to {ip} leaves through interface #{ifindex}, which is not one of \
         global.interfaces (the XDP program can only send out of those)"
    )]
    NotAttached { ip: IpAddr, ifindex: u32 },
    #[error("the route to {ip} leaves through interface #{ifindex}, not the configured `interface` {wanted}")]
    OtherInterface {
        ip: IpAddr,
        ifindex: u32,
        wanted: String,
    },
    #[error("MAC of next hop {hop} unknown (ARP/ND unresolved on {interface})")]
    MacUnknown { hop: IpAddr, interface: String },
    #[error("no address of {ip}'s family on {interface} to send tunnelled packets from")]
    NoSource { ip: IpAddr, interface: String },
}

/// What the tunnel resolution needs of the daemon's observations.
pub struct Seen<'a> {
    pub interfaces: &'a [Interface],
    pub neighbours: &'a BTreeMap<IpAddr, (u32, [u8; 6])>,
    /// Route to each tunnelled real server, `mtu` filled from the link when the route has none.
    pub routes: &'a BTreeMap<IpAddr, Route>,
}

pub fn kind(t: config::TunnelType) -> TunnelKind {
    match t {
        config::TunnelType::Ipip => TunnelKind::Ipip,
        config::TunnelType::Gue => TunnelKind::Gue,
    }
}

/// The interface's own address of `ip`'s family that is neither link-local nor a VIP-like host
/// route: the fallback outer source when the route names none.
fn source_on(iface: &Interface, ip: IpAddr) -> Option<IpAddr> {
    iface.addrs.iter().map(|(a, _)| *a).find(|a| match (a, ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => true,
        (IpAddr::V6(v6), IpAddr::V6(_)) => v6.segments()[0] & 0xffc0 != 0xfe80,
        _ => false,
    })
}

/// The real server at `ip`:`port` as the kernel should reach it through its tunnel (weight and
/// health are the caller's).
pub fn desired_real(
    seen: &Seen<'_>,
    ip: IpAddr,
    port: u16,
    rs: &config::RealServer,
    t: &config::Tunnel,
) -> Result<DesiredReal, TunnelError> {
    let route = seen.routes.get(&ip).ok_or(TunnelError::NoRoute(ip))?;
    let pos = seen
        .interfaces
        .iter()
        .position(|i| i.index == route.ifindex)
        .ok_or(TunnelError::NotAttached {
            ip,
            ifindex: route.ifindex,
        })?;
    let iface = &seen.interfaces[pos];
    if let Some(wanted) = rs.interface.as_deref().filter(|w| *w != iface.name) {
        return Err(TunnelError::OtherInterface {
            ip,
            ifindex: route.ifindex,
            wanted: wanted.to_owned(),
        });
    }
    let hop = route.next_hop(ip);
    let mac = match (rs.mac.as_ref(), seen.neighbours.get(&hop)) {
        (Some(m), _) => m.0,
        (None, Some((_, m))) => *m,
        (None, None) => {
            return Err(TunnelError::MacUnknown {
                hop,
                interface: iface.name.clone(),
            })
        }
    };
    let src = route
        .source
        .filter(|s| s.is_ipv6() == ip.is_ipv6())
        .or_else(|| source_on(iface, ip))
        .ok_or(TunnelError::NoSource {
            ip,
            interface: iface.name.clone(),
        })?;
    let mtu = t
        .mtu
        .or(route.mtu.map(|m| m.min(u16::MAX as u32) as u16))
        .unwrap_or(FALLBACK_MTU);
    Ok(DesiredReal {
        addr: ip,
        port,
        weight: 0,
        alive: true,
        mac,
        src_mac: iface.mac,
        ifindex: iface.index,
        tx_port: pos as u32,
        tunnel: Some(DesiredTunnel {
            kind: kind(t.kind),
            src,
            mtu,
            gue_port: t.gue_port,
        }),
    })
}

/// The addresses whose routes the daemon must look up: every tunnelled real server.
pub fn tunnelled_addresses(cfg: &config::Config) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = cfg
        .virtual_servers
        .iter()
        .flat_map(|vs| vs.real_servers.iter())
        .filter(|rs| rs.tunnel.is_some())
        .map(|rs| rs.address)
        .collect();
    v.sort();
    v.dedup();
    v
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
forward = "tunnel"
tunnel = "gue"
[[virtual_server.real_server]]
address = "198.18.2.11"
[[virtual_server.real_server]]
address = "198.18.3.12"
tunnel = "ipip"
[[virtual_server.real_server]]
address = "198.18.0.13"
forward = "dr"
"#;

    fn cfg() -> config::Config {
        config::parse(CFG, "t.toml").unwrap()
    }

    fn route(gw: &str, mtu: Option<u32>) -> Route {
        Route {
            ifindex: 7,
            gateway: Some(gw.parse().unwrap()),
            source: Some("198.18.0.2".parse().unwrap()),
            mtu,
        }
    }

    #[test]
    fn forward_and_tunnel_resolve_per_real_with_overrides() {
        let c = cfg();
        let reals = &c.virtual_servers[0].real_servers;
        assert_eq!(reals[0].tunnel.unwrap().kind, config::TunnelType::Gue);
        assert_eq!(reals[0].tunnel.unwrap().gue_port, 6080);
        assert_eq!(reals[1].tunnel.unwrap().kind, config::TunnelType::Ipip);
        assert_eq!(
            reals[2].tunnel, None,
            "forward = dr overrides the service's"
        );
        assert_eq!(
            tunnelled_addresses(&c),
            vec![
                "198.18.2.11".parse::<IpAddr>().unwrap(),
                "198.18.3.12".parse().unwrap()
            ]
        );
    }

    #[test]
    fn next_hop_mac_source_and_mtu_come_from_the_route() {
        let c = cfg();
        let rs = &c.virtual_servers[0].real_servers[0];
        let ifaces = [crate::net::testing::eth0()];
        let mut neigh = BTreeMap::new();
        let mut routes = BTreeMap::new();
        routes.insert(rs.address, route("198.18.0.1", Some(1400)));
        let t = rs.tunnel.unwrap();
        let unknown = Seen {
            interfaces: &ifaces,
            neighbours: &BTreeMap::new(),
            routes: &routes,
        };
        assert_eq!(
            desired_real(&unknown, rs.address, 80, rs, &t),
            Err(TunnelError::MacUnknown {
                hop: "198.18.0.1".parse().unwrap(),
                interface: "eth0".into()
            })
        );
        neigh.insert("198.18.0.1".parse().unwrap(), (7, [2, 0, 0, 0, 0, 1]));
        let seen = Seen {
            interfaces: &ifaces,
            neighbours: &neigh,
            routes: &routes,
        };
        let r = desired_real(&seen, rs.address, 80, rs, &t).unwrap();
        assert_eq!(r.mac, [2, 0, 0, 0, 0, 1], "the router's MAC");
        assert_eq!(
            (r.ifindex, r.tx_port, r.src_mac),
            (7, 0, [2, 0, 0, 0, 0, 2])
        );
        let tun = r.tunnel.unwrap();
        assert_eq!(tun.src, "198.18.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (tun.mtu, tun.gue_port, tun.kind),
            (1400, 6080, TunnelKind::Gue)
        );
        // A configured tunnel_mtu wins over the route's.
        let t2 = config::Tunnel {
            mtu: Some(1300),
            ..t
        };
        assert_eq!(
            desired_real(&seen, rs.address, 80, rs, &t2)
                .unwrap()
                .tunnel
                .unwrap()
                .mtu,
            1300
        );
        // A route out of an interface xlb is not attached to.
        let mut other = route("198.18.0.1", None);
        other.ifindex = 9;
        let routes2 = BTreeMap::from([(rs.address, other)]);
        let seen2 = Seen {
            routes: &routes2,
            ..seen
        };
        assert!(matches!(
            desired_real(&seen2, rs.address, 80, rs, &t),
            Err(TunnelError::NotAttached { ifindex: 9, .. })
        ));
        let none = BTreeMap::new();
        let seen3 = Seen {
            routes: &none,
            ..seen
        };
        assert_eq!(
            desired_real(&seen3, rs.address, 80, rs, &t),
            Err(TunnelError::NoRoute(rs.address))
        );
    }
}
