//! Tunnel mode, real-server side: the MSS the server's SYN-ACKs advertise.
//!
//! The client's segments reach the real server inside the director's outer header, so they
//! must be `outer` bytes smaller than the path's MTU. The director answers oversize ones with
//! ICMP "fragmentation needed" (path MTU discovery), but the cheap way is to have the real
//! server advertise an MSS that fits from the start: `path MTU - outer header - 40` (IPv4 +
//! TCP; 60 for IPv6), the route metric `advmss`.
//!
//! Which routes: only those of the replies from the VIPs, so the server's other traffic (its
//! own outgoing connections, its other addresses' services) keeps its MSS. A policy rule per VIP
//! (`from VIP lookup ADVMSS_TABLE`, priority [`RULE_PRIORITY`]: after the `local` table, before
//! `main`) sends the VIPs' replies to a table holding a copy of the main table's unicast routes,
//! each with `advmss`. So the replies take the same next hops as before. The copy is taken at
//! `up`: after a change of the main table, run `up` again (it refreshes the copy); `status`
//! says when the copy no longer matches. `down` removes the rules and the table's routes.
use std::net::IpAddr;

use netlink_packet_route::{
    route::{RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric, RouteType},
    rule::{RuleAttribute, RuleMessage},
    AddressFamily,
};
use serde::{Deserialize, Serialize};

use crate::dataplane::desired::TunnelKind;

/// The routing table of the VIPs' replies ("xlb" in ASCII: out of the way of tables admins
/// number by hand).
pub const ADVMSS_TABLE: u32 = 0x0078_6c62;
/// Priority of the `from VIP` rules: after `local` (0), before `main` (32766), after the small
/// numbers admins usually give their own rules.
pub const RULE_PRIORITY: u32 = 31_000;

/// What `up` installed (in the real server's state file, for `down` and `status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvmssState {
    /// MSS per VIP family.
    pub mss_v4: u32,
    pub mss_v6: u32,
    pub table: u32,
    pub priority: u32,
    /// The VIPs with a rule.
    pub vips: Vec<IpAddr>,
}

/// The outer header's size: IPIP 20 / GUE 28 over IPv4, 20 more over IPv6.
pub fn outer_len(kind: TunnelKind, outer_v6: bool) -> u32 {
    let ip = if outer_v6 { 40 } else { 20 };
    match kind {
        TunnelKind::Gue => ip + 8,
        _ => ip,
    }
}

/// The MSS that fits: `path_mtu` less the outer header and the inner IP + TCP headers.
pub fn tunnel_mss(path_mtu: u32, outer: u32, inner_v6: bool) -> u32 {
    let inner = if inner_v6 { 60 } else { 40 };
    path_mtu.saturating_sub(outer + inner)
}

/// The route's table (the attribute when the 8-bit header field cannot hold it).
pub fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(m.header.table as u32)
}

/// The copies of `main`'s unicast routes for `table`, each with `advmss mss` (other metrics
/// kept). Kernel-filled attributes an add would refuse (cache info) are left out.
pub fn advmss_copies(main: &[RouteMessage], table: u32, mss: u32) -> Vec<RouteMessage> {
    main.iter()
        .filter(|m| table_of(m) == RouteHeader::RT_TABLE_MAIN as u32)
        .filter(|m| m.header.kind == RouteType::Unicast)
        .map(|m| {
            let mut c = m.clone();
            // The kernel's state flags (linkdown, dead, offload) are refused in a request; only
            // `onlink` is the route's own.
            c.header.flags &= RouteFlags::Onlink;
            c.header.table = if table < 256 {
                table as u8
            } else {
                RouteHeader::RT_TABLE_UNSPEC
            };
            let mut metrics = Vec::new();
            c.attributes.retain(|a| match a {
                RouteAttribute::Metrics(ms) => {
                    metrics.extend(
                        ms.iter()
                            .filter(|x| !matches!(x, RouteMetric::Advmss(_)))
                            .cloned(),
                    );
                    false
                }
                RouteAttribute::Table(_) | RouteAttribute::CacheInfo(_) => false,
                _ => true,
            });
            metrics.push(RouteMetric::Advmss(mss));
            c.attributes.push(RouteAttribute::Table(table));
            c.attributes.push(RouteAttribute::Metrics(metrics));
            c
        })
        .collect()
}

/// A route's identity for comparing the copy with the main table: destination, prefix length,
/// gateway, output interface, priority (everything but the table and metrics).
pub fn route_identity(m: &RouteMessage) -> (AddressFamily, u8, Vec<RouteAttribute>) {
    let attrs = m
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
            )
        })
        .cloned()
        .collect();
    (
        m.header.address_family,
        m.header.destination_prefix_length,
        attrs,
    )
}

/// The MSS advertised by a route (its `advmss` metric).
pub fn advmss_of(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Metrics(ms) => ms.iter().find_map(|x| match x {
            RouteMetric::Advmss(v) => Some(*v),
            _ => None,
        }),
        _ => None,
    })
}

/// Is `r` one of our `from VIP lookup table` rules?
pub fn is_vip_rule(r: &RuleMessage, table: u32, priority: u32) -> bool {
    let mut t = r.header.table as u32;
    let mut prio = 0;
    for a in &r.attributes {
        match a {
            RuleAttribute::Table(x) => t = *x,
            RuleAttribute::Priority(p) => prio = *p,
            _ => {}
        }
    }
    t == table && prio == priority
}

/// The source address of a rule (`from ADDR/len`), if it has one.
pub fn rule_source(r: &RuleMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RuleAttribute::Source(ip) => Some(*ip),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteAddress, RouteProtocol, RouteScope};

    fn main_route(dst: Option<(&str, u8)>, gw: Option<&str>) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.kind = RouteType::Unicast;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.attributes.push(RouteAttribute::Table(254));
        if let Some((d, len)) = dst {
            m.header.destination_prefix_length = len;
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    d.parse().unwrap(),
                )));
        }
        if let Some(g) = gw {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(
                    g.parse().unwrap(),
                )));
        }
        m.attributes.push(RouteAttribute::Oif(2));
        m
    }

    #[test]
    fn mss_fits_the_tunnel() {
        assert_eq!(
            tunnel_mss(1500, outer_len(TunnelKind::Ipip, false), false),
            1440
        );
        assert_eq!(
            tunnel_mss(1500, outer_len(TunnelKind::Gue, false), false),
            1432
        );
        assert_eq!(
            tunnel_mss(1500, outer_len(TunnelKind::Gue, true), true),
            1392
        );
        assert_eq!(tunnel_mss(40, 28, false), 0, "no underflow");
    }

    #[test]
    fn copies_keep_next_hops_and_add_advmss() {
        let mut local = main_route(Some(("198.18.0.100", 32)), None);
        local.header.table = 255;
        local.attributes[0] = RouteAttribute::Table(255);
        let mut metric = main_route(Some(("198.18.9.0", 24)), Some("198.18.2.1"));
        metric.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(1400),
            RouteMetric::Advmss(9),
        ]));
        let mut main = vec![
            main_route(None, Some("198.18.2.1")),
            main_route(Some(("198.18.2.0", 24)), None),
            local,
            metric,
        ];
        main[1].header.flags = RouteFlags::Linkdown | RouteFlags::Onlink;
        let mut broadcast = main_route(Some(("198.18.2.255", 32)), None);
        broadcast.header.kind = RouteType::Broadcast;
        main.push(broadcast);
        let c = advmss_copies(&main, ADVMSS_TABLE, 1432);
        assert_eq!(c.len(), 3, "main-table unicast routes only");
        assert_eq!(
            c[1].header.flags,
            RouteFlags::Onlink,
            "kernel state flags dropped"
        );
        for (copy, orig) in c.iter().zip([&main[0], &main[1], &main[3]]) {
            assert_eq!(route_identity(copy), route_identity(orig));
            assert_eq!(table_of(copy), ADVMSS_TABLE);
            assert_eq!(copy.header.table, RouteHeader::RT_TABLE_UNSPEC);
            assert_eq!(advmss_of(copy), Some(1432));
        }
        let metrics: Vec<_> = c[2]
            .attributes
            .iter()
            .filter_map(|a| match a {
                RouteAttribute::Metrics(m) => Some(m.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            metrics,
            vec![vec![RouteMetric::Mtu(1400), RouteMetric::Advmss(1432)]],
            "other metrics kept, one advmss"
        );
    }
}
