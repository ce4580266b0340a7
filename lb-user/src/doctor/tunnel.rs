//! Tunnel mode: each tunnelled real server must be reachable by a route out of an XDP interface
//! (the program can only send there), and the tunnel's MTU must leave room for the outer header:
//! client packets that no longer fit are answered with ICMP "fragmentation needed", which works
//! only while ICMP reaches the clients.
use std::net::IpAddr;

use serde::Serialize;

use super::{f, ok, Finding, Severity};

const CHECK: &str = "tunnel route";
const CHECK_MTU: &str = "tunnel MTU";

/// What was found about one tunnelled real server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunnelFacts {
    pub service: String,
    pub real: IpAddr,
    /// `ipip` or `gue`.
    pub kind: String,
    /// Bytes of outer header (20/40 IP, + 8 UDP for GUE).
    pub overhead: u32,
    /// The route: (output interface name, gateway); `None`: no route.
    pub route: Option<(String, Option<IpAddr>)>,
    /// Is the route's interface one of `global.interfaces`?
    pub via_xdp_interface: bool,
    /// The tunnel MTU in force: `tunnel_mtu`, else the route's, else the link's.
    pub mtu: Option<u32>,
    /// The largest MTU of the XDP interfaces (what client packets can be).
    pub ingress_mtu: Option<u32>,
}

pub fn check(facts: &[TunnelFacts], out: &mut Vec<Finding>) {
    for t in facts {
        let who = format!("{} {} ({})", t.service, t.real, t.kind);
        let Some((iface, gw)) = &t.route else {
            out.push(f(
                Severity::Error,
                CHECK,
                format!("{who}: no route"),
                format!(
                    "add a route to {} (tunnel mode forwards along the kernel's route)",
                    t.real
                ),
            ));
            continue;
        };
        let via = gw.map_or("on link".to_string(), |g| format!("via {g}"));
        if !t.via_xdp_interface {
            out.push(f(
                Severity::Error,
                CHECK,
                format!("{who}: the route leaves through {iface} {via}, not an XDP interface"),
                format!(
                    "route {} out of one of global.interfaces, or add {iface} there",
                    t.real
                ),
            ));
            continue;
        }
        out.push(ok(CHECK, format!("{who}: {iface} {via}")));
        let Some(mtu) = t.mtu else {
            continue;
        };
        let fits = mtu.saturating_sub(t.overhead);
        match t.ingress_mtu {
            Some(ingress) if ingress > fits => out.push(f(
                Severity::Warn,
                CHECK_MTU,
                format!(
                    "{who}: tunnel MTU {mtu} leaves {fits} bytes for client packets, the XDP \
                     interfaces carry up to {ingress}: larger packets are answered with ICMP \
                     fragmentation needed / packet too big (dropped without DF)"
                ),
                format!(
                    "let ICMP type 3 code 4 / ICMPv6 type 2 reach the clients, or raise the \
                     path MTU to {} (tunnel_mtu), or clamp the MSS on the real servers (advmss {})",
                    ingress + t.overhead,
                    fits.saturating_sub(40)
                ),
            )),
            _ => out.push(ok(
                CHECK_MTU,
                format!("{who}: tunnel MTU {mtu}, {fits} bytes for client packets"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> TunnelFacts {
        TunnelFacts {
            service: "web".into(),
            real: "198.18.2.11".parse().unwrap(),
            kind: "gue".into(),
            overhead: 28,
            route: Some(("eth0".into(), Some("198.18.1.1".parse().unwrap()))),
            via_xdp_interface: true,
            mtu: Some(1500),
            ingress_mtu: Some(1500),
        }
    }

    #[test]
    fn route_and_headroom() {
        let mut out = Vec::new();
        check(&[facts()], &mut out);
        assert_eq!(out[0].severity, Severity::Ok, "{out:?}");
        assert!(out[0].detail.contains("eth0 via 198.18.1.1"));
        assert_eq!(out[1].severity, Severity::Warn);
        assert!(out[1].detail.contains("1472 bytes"), "{}", out[1].detail);
        assert!(out[1].fix.contains("1528"), "{}", out[1].fix);
        let roomy = TunnelFacts {
            mtu: Some(9000),
            ..facts()
        };
        out.clear();
        check(&[roomy], &mut out);
        assert_eq!(out[1].severity, Severity::Ok);
        let lost = TunnelFacts {
            route: None,
            ..facts()
        };
        out.clear();
        check(&[lost], &mut out);
        assert_eq!((out.len(), out[0].severity), (1, Severity::Error));
        let elsewhere = TunnelFacts {
            via_xdp_interface: false,
            ..facts()
        };
        out.clear();
        check(&[elsewhere], &mut out);
        assert_eq!(out[0].severity, Severity::Error);
    }
}
