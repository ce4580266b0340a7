//! Address arithmetic: subnets, host prefixes and the choice of an interface's own address.
use std::net::{IpAddr, Ipv6Addr};

use crate::config::IpPrefix;

/// Do `a` and `b` share their first `len` bits? Never across families.
pub fn same_subnet(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// The prefix length of a single address: 32 or 128.
pub fn host_prefix_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

// The arithmetic of the config type lives with the rest of the subnet math.
impl IpPrefix {
    /// `ip` alone: /32 or /128.
    pub fn host(ip: IpAddr) -> IpPrefix {
        IpPrefix {
            addr: ip,
            prefix_len: host_prefix_len(ip),
        }
    }

    /// Is `ip` inside this prefix?
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_subnet(self.addr, ip, self.prefix_len)
    }
}

fn is_link_local_v6(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// The interface's own address to send from, among `addrs` in the kernel's order: for IPv4 the
/// first that is not one of `floating` (VIPs come and go with mastership), for IPv6 the
/// link-local one (VRRPv3 and neighbour discovery speak from it).
pub fn primary_address(addrs: &[(IpAddr, u8)], v6: bool, floating: &[IpAddr]) -> Option<IpAddr> {
    addrs.iter().map(|(ip, _)| *ip).find(|ip| match ip {
        IpAddr::V4(_) => !v6 && !floating.contains(ip),
        IpAddr::V6(a) => v6 && is_link_local_v6(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        assert!(same_subnet(ip("198.18.0.2"), ip("198.18.0.11"), 24));
        assert!(!same_subnet(ip("198.18.0.2"), ip("198.18.1.11"), 24));
        assert!(same_subnet(ip("2001:db8::2"), ip("2001:db8::11"), 64));
        assert!(!same_subnet(ip("2001:db8::2"), ip("198.18.0.2"), 24));
        assert!(
            same_subnet(ip("198.18.0.2"), ip("198.19.255.1"), 0),
            "/0 is everything"
        );
        assert!(same_subnet(ip("2001:db8::2"), ip("2001:db9::1"), 0));
        assert!(!same_subnet(ip("198.18.0.2"), ip("198.18.0.3"), 32));
        assert!(
            !same_subnet(ip("198.18.0.2"), ip("198.18.0.3"), 200),
            "clamped to /32"
        );
        assert!(same_subnet(ip("198.18.0.2"), ip("198.18.0.3"), 31));
        assert!(!same_subnet(ip("2001:db8::2"), ip("2001:db8::3"), 128));
    }

    #[test]
    fn prefixes() {
        let p: IpPrefix = "198.18.0.0/15".parse().unwrap();
        assert!(p.contains(ip("198.19.1.2")) && !p.contains(ip("198.20.0.1")));
        assert!(!p.contains(ip("2001:db8::1")));
        assert_eq!(
            IpPrefix::host(ip("2001:db8::1")).to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(IpPrefix::host(ip("198.18.0.1")).prefix_len, 32);
    }

    #[test]
    fn primary_address_skips_vips_and_global_v6() {
        let addrs = [
            (ip("198.18.0.101"), 24),
            (ip("2001:db8::2"), 64),
            (ip("198.18.0.2"), 24),
            (ip("fe80::1"), 64),
        ];
        let vips = [ip("198.18.0.101")];
        assert_eq!(
            primary_address(&addrs, false, &vips),
            Some(ip("198.18.0.2"))
        );
        assert_eq!(
            primary_address(&addrs, false, &[]),
            Some(ip("198.18.0.101"))
        );
        assert_eq!(primary_address(&addrs, true, &vips), Some(ip("fe80::1")));
        assert_eq!(
            primary_address(&addrs[..3], true, &[]),
            None,
            "no link-local"
        );
        assert_eq!(primary_address(&addrs[..1], false, &vips), None);
    }
}
