//! What xlb reads out of rtnetlink messages, and which kernel answers mean "already so": pure
//! functions over the decoded messages, so they are tested without a socket.
use std::net::IpAddr;

use netlink_packet_route::{
    address::{AddressAttribute, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage, LinkXdp, XdpAttached},
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
};

use super::{LinkState, XdpAttachment};

/// The interface's own address in an address message. `IFA_LOCAL` is preferred: on
/// point-to-point links `IFA_ADDRESS` is the peer's; IPv6 messages carry only `IFA_ADDRESS`.
pub fn address_of(m: &AddressMessage) -> Option<IpAddr> {
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// (address, prefix length) of an address message.
pub fn prefixed_address_of(m: &AddressMessage) -> Option<(IpAddr, u8)> {
    address_of(m).map(|ip| (ip, m.header.prefix_len))
}

/// A 6-byte link-layer address (Ethernet MAC); `None` for other lengths.
fn mac_of(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

/// Index, MAC (zero when the link has none, as `lo`), operational state and MTU of a link
/// message.
pub fn link_state_of(m: &LinkMessage) -> LinkState {
    let mac = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => mac_of(bytes),
            _ => None,
        })
        .unwrap_or_default();
    let mtu = m
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or_default();
    let flags = m.header.flags;
    LinkState {
        index: m.header.index,
        mac,
        // IFF_RUNNING is the kernel's "operationally up": carrier present and not dormant.
        up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running),
        mtu,
        xdp: xdp_attachment_of(m),
    }
}

/// The XDP attachment the kernel reports for a link (none when it says nothing).
pub fn xdp_attachment_of(m: &LinkMessage) -> XdpAttachment {
    let attached = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::Attached(a) => Some(*a),
            _ => None,
        }),
        _ => None,
    });
    match attached {
        Some(XdpAttached::Driver) => XdpAttachment::Native,
        Some(XdpAttached::SocketBuffer) => XdpAttachment::Generic,
        Some(XdpAttached::Hardware) => XdpAttachment::Offload,
        Some(XdpAttached::Multiple) => XdpAttachment::Multiple,
        _ => XdpAttachment::None,
    }
}

/// Does this neighbour entry hold a MAC the kernel would use (reachable, stale, delay, probe,
/// permanent, noarp)?
fn neighbour_usable(state: NeighbourState) -> bool {
    !matches!(
        state,
        NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
    )
}

/// (ip, ifindex, MAC) of a usable neighbour entry.
pub fn neighbour_of(m: &NeighbourMessage) -> Option<(IpAddr, u32, [u8; 6])> {
    if !neighbour_usable(m.header.state) {
        return None;
    }
    let ip = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })?;
    let mac = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(l) => mac_of(l),
        _ => None,
    })?;
    Some((ip, m.header.ifindex, mac))
}

/// The errno of a kernel refusal (`None` for errors of the library itself).
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Adding an address that is there already.
pub fn is_already_present(e: &rtnetlink::Error) -> bool {
    errno(e) == Some(libc::EEXIST)
}

/// Deleting an address that went away in between (another process, DAD failure, link down).
pub fn is_already_absent(e: &rtnetlink::Error) -> bool {
    matches!(errno(e), Some(libc::EADDRNOTAVAIL | libc::ENOENT))
}

/// Looking up a link by a name that does not exist.
pub fn is_no_such_link(e: &rtnetlink::Error) -> bool {
    errno(e) == Some(libc::ENODEV)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroI32;

    use rtnetlink::packet_core::ErrorMessage;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr_msg(prefix_len: u8, attrs: Vec<AddressAttribute>) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.prefix_len = prefix_len;
        m.attributes = attrs;
        m
    }

    #[test]
    fn address_prefers_local_over_peer() {
        let ptp = addr_msg(
            32,
            vec![
                AddressAttribute::Address(ip("198.18.0.9")),
                AddressAttribute::Local(ip("198.18.0.1")),
            ],
        );
        assert_eq!(prefixed_address_of(&ptp), Some((ip("198.18.0.1"), 32)));
        let v6 = addr_msg(64, vec![AddressAttribute::Address(ip("2001:db8::2"))]);
        assert_eq!(prefixed_address_of(&v6), Some((ip("2001:db8::2"), 64)));
        assert_eq!(address_of(&addr_msg(24, vec![])), None);
    }

    #[test]
    fn xdp_attachment_as_the_kernel_reports_it() {
        let mut m = LinkMessage::default();
        assert_eq!(xdp_attachment_of(&m), XdpAttachment::None);
        m.attributes = vec![LinkAttribute::Xdp(vec![
            LinkXdp::ProgId(7),
            LinkXdp::Attached(XdpAttached::SocketBuffer),
        ])];
        assert_eq!(xdp_attachment_of(&m), XdpAttachment::Generic);
        m.attributes = vec![LinkAttribute::Xdp(vec![LinkXdp::Attached(
            XdpAttached::Driver,
        )])];
        assert_eq!(link_state_of(&m).xdp, XdpAttachment::Native);
    }

    #[test]
    fn link_state_needs_up_and_running() {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.header.flags = LinkFlags::Up;
        m.attributes = vec![
            LinkAttribute::Mtu(1500),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 1]),
        ];
        let down = link_state_of(&m);
        assert_eq!(
            (down.index, down.mac, down.up, down.mtu),
            (7, [2, 0, 0, 0, 0, 1], false, 1500)
        );
        m.header.flags = LinkFlags::Up | LinkFlags::Running;
        assert!(link_state_of(&m).up);
        m.header.flags = LinkFlags::Running;
        assert!(!link_state_of(&m).up, "administratively down");
        // lo and tunnels: no 6-byte address.
        m.attributes = vec![LinkAttribute::Address(vec![0; 4])];
        assert_eq!(link_state_of(&m).mac, [0; 6]);
    }

    #[test]
    fn neighbours_need_a_usable_state_an_ip_and_a_mac() {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = 3;
        m.header.state = NeighbourState::Reachable;
        m.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet("198.18.0.11".parse().unwrap())),
            NeighbourAttribute::LinkLayerAddress(vec![2, 0, 0, 0, 0, 0x11]),
        ];
        assert_eq!(
            neighbour_of(&m),
            Some((ip("198.18.0.11"), 3, [2, 0, 0, 0, 0, 0x11]))
        );
        m.header.state = NeighbourState::Stale;
        assert!(neighbour_of(&m).is_some(), "stale MACs are still used");
        for bad in [NeighbourState::Incomplete, NeighbourState::Failed] {
            m.header.state = bad;
            assert_eq!(neighbour_of(&m), None);
        }
        m.header.state = NeighbourState::Reachable;
        m.attributes.truncate(1);
        assert_eq!(neighbour_of(&m), None, "no MAC yet");
    }

    fn kernel_error(errno: i32) -> rtnetlink::Error {
        let mut m = ErrorMessage::default();
        m.code = NonZeroI32::new(-errno);
        rtnetlink::Error::NetlinkError(m)
    }

    #[test]
    fn errno_tolerance() {
        assert!(is_already_present(&kernel_error(libc::EEXIST)));
        assert!(!is_already_present(&kernel_error(libc::EPERM)));
        assert!(is_already_absent(&kernel_error(libc::EADDRNOTAVAIL)));
        assert!(is_already_absent(&kernel_error(libc::ENOENT)));
        assert!(!is_already_absent(&kernel_error(libc::EPERM)));
        assert!(is_no_such_link(&kernel_error(libc::ENODEV)));
        assert!(!is_no_such_link(&rtnetlink::Error::RequestFailed));
        assert!(!is_already_present(&rtnetlink::Error::RequestFailed));
    }
}
