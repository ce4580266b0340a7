//! The kernel's route to one address (`ip route get ADDR`): where a tunnelled real server's
//! packets leave, through which next hop, from which source address, and the route's MTU.
use std::net::IpAddr;

use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteMetric};

/// A resolved route to one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Output interface.
    pub ifindex: u32,
    /// The router to send through; `None` = the destination is on the link.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would use (`src` in `ip route get`).
    pub source: Option<IpAddr>,
    /// The route's `mtu` metric; the caller falls back to the link's MTU.
    pub mtu: Option<u32>,
}

impl Route {
    /// The address whose MAC frames to the destination are sent to.
    pub fn next_hop(&self, dst: IpAddr) -> IpAddr {
        self.gateway.unwrap_or(dst)
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// What a route message says; `None` without an output interface (unreachable, blackhole).
pub fn route_of(m: &RouteMessage) -> Option<Route> {
    let mut r = Route {
        ifindex: 0,
        gateway: None,
        source: None,
        mtu: None,
    };
    for a in &m.attributes {
        match a {
            RouteAttribute::Oif(i) => r.ifindex = *i,
            RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
            RouteAttribute::PrefSource(s) => r.source = ip_of(s),
            RouteAttribute::Metrics(ms) => {
                for metric in ms {
                    if let RouteMetric::Mtu(mtu) = metric {
                        r.mtu = Some(*mtu);
                    }
                }
            }
            _ => {}
        }
    }
    (r.ifindex != 0).then_some(r)
}

/// The name of interface `ifindex` in this network namespace (`if_indextoname`).
pub fn link_name(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateway_source_and_mtu() {
        let mut m = RouteMessage::default();
        m.attributes = vec![
            RouteAttribute::Oif(3),
            RouteAttribute::Gateway(RouteAddress::Inet("198.18.1.1".parse().unwrap())),
            RouteAttribute::PrefSource(RouteAddress::Inet("198.18.1.2".parse().unwrap())),
            RouteAttribute::Metrics(vec![RouteMetric::Mtu(1400)]),
        ];
        let r = route_of(&m).unwrap();
        assert_eq!(r.ifindex, 3);
        assert_eq!(
            r.next_hop("198.18.2.11".parse().unwrap()),
            "198.18.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(r.source, Some("198.18.1.2".parse().unwrap()));
        assert_eq!(r.mtu, Some(1400));
        m.attributes = vec![RouteAttribute::Oif(3)];
        let on_link = route_of(&m).unwrap();
        let dst: IpAddr = "198.18.1.9".parse().unwrap();
        assert_eq!(on_link.next_hop(dst), dst);
        m.attributes.clear();
        assert_eq!(route_of(&m), None, "no output interface: unreachable");
    }
}
