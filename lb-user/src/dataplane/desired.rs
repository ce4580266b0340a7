//! What the kernel maps should hold: the output of config + health + VRRP role, the input of the
//! map writer. Plain data, no kernel handles, so it is built and compared in unit tests.
use std::{collections::BTreeMap, fmt, net::IpAddr};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lb_common::PROTO_TCP,
            Protocol::Udp => lb_common::PROTO_UDP,
        }
    }

    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// (VIP, port, protocol): what identifies a virtual server.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ServiceAddr {
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.vip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    Maglev,
    SourceHash,
    RoundRobin,
    WeightedRoundRobin,
}

impl Scheduler {
    /// The name `ipvsadm -ln` would show.
    pub fn ipvs_name(self) -> &'static str {
        match self {
            Scheduler::Maglev => "mh",
            Scheduler::SourceHash => "sh",
            Scheduler::RoundRobin => "rr",
            Scheduler::WeightedRoundRobin => "wrr",
        }
    }
}

/// A real server as the kernel should see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredReal {
    pub addr: IpAddr,
    pub port: u16,
    /// Effective weight: 0 = quiescent (keeps its flows, gets no new ones).
    pub weight: u32,
    /// false = failed or going away: its flows are dispatched afresh.
    pub alive: bool,
    pub mac: [u8; 6],
    /// The egress interface's MAC.
    pub src_mac: [u8; 6],
    pub ifindex: u32,
    /// Devmap key of the egress interface.
    pub tx_port: u32,
    /// Tunnel mode: how packets are encapsulated to it (`mac` is then the next hop's); `None` =
    /// direct routing.
    pub tunnel: Option<DesiredTunnel>,
}

/// The encapsulation of a tunnelled real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelKind {
    /// IP in IP (ip6ip6 to an IPv6 real server).
    Ipip,
    /// GUE (UDP) with the inner IP packet right after the UDP header (Katran's GUE).
    Gue,
}

impl TunnelKind {
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Ipip => "ipip",
            TunnelKind::Gue => "gue",
        }
    }
}

/// How packets to a tunnelled real server are wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredTunnel {
    pub kind: TunnelKind,
    /// Outer source: the director's address on the egress side (the real server's family).
    pub src: IpAddr,
    /// Largest outer IP packet the path carries.
    pub mtu: u16,
    /// GUE's UDP destination port (unused for IPIP).
    pub gue_port: u16,
}

impl DesiredTunnel {
    /// The `TUNNELS` map value.
    pub fn value(&self) -> lb_common::RealTunnel {
        lb_common::RealTunnel {
            src: addr_words(self.src).0,
            mtu: self.mtu,
            port: self.gue_port.to_be(),
            kind: match self.kind {
                TunnelKind::Ipip => lb_common::TUNNEL_IPIP,
                TunnelKind::Gue => lb_common::TUNNEL_GUE,
            },
            _pad: [0; 3],
        }
    }
}

/// IPVS persistence of a service (`persistence_timeout` > 0): a client network sticks to the real
/// server its first connection got, through a template in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DesiredPersistence {
    pub timeout_secs: u32,
    /// Leading bits of the client address that identify a client (`persistence_granularity`).
    pub prefix_len: u8,
}

impl DesiredPersistence {
    /// The client mask as the program applies it (address words in network byte order, IPv4 in
    /// word 0, like `FlowKey::src`).
    pub fn mask_words(&self, family: u8) -> [u32; 4] {
        let bits = if family == lb_common::AF_INET6 {
            128
        } else {
            32
        };
        let len = u32::from(self.prefix_len).min(bits);
        let mask: u128 = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        let octets = mask.to_be_bytes();
        let w =
            |i: usize| u32::from_ne_bytes([octets[i], octets[i + 1], octets[i + 2], octets[i + 3]]);
        let mut words = [w(0), w(4), w(8), w(12)];
        if bits == 32 {
            words[1..].fill(0);
        }
        words
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredService {
    pub addr: ServiceAddr,
    /// Forward here now (VRRP MASTER, BGP-announced, or standalone).
    pub active: bool,
    pub scheduler: Scheduler,
    /// Hash on the client address only (source_hash, or persistence).
    pub hash_client_only: bool,
    /// Persistent service: templates decide before the scheduler.
    pub persistence: Option<DesiredPersistence>,
    /// Maglev table size (prime), also the cap of a round-robin sequence.
    pub table_size: u32,
    pub reals: Vec<DesiredReal>,
    pub sorry: Option<DesiredReal>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub services: Vec<DesiredService>,
    /// New flows per second per CPU above which new flows are not inserted (0 = off).
    pub flood_threshold: u64,
    /// Devmap key -> ifindex of every egress interface.
    pub tx_ports: BTreeMap<u32, u32>,
    /// ifindex -> MAC of every attached interface: frames for other unicast MACs are not ours.
    pub interface_macs: BTreeMap<u32, [u8; 6]>,
}

/// Address words as the XDP program stores them (network byte order, IPv4 in word 0).
pub fn addr_words(addr: IpAddr) -> ([u32; 4], u8) {
    match addr {
        IpAddr::V4(a) => (
            [u32::from_ne_bytes(a.octets()), 0, 0, 0],
            lb_common::AF_INET,
        ),
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], lb_common::AF_INET6)
        }
    }
}

/// Inverse of `addr_words`.
pub fn words_addr(words: [u32; 4], family: u8) -> IpAddr {
    if family == lb_common::AF_INET6 {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    } else {
        IpAddr::from(words[0].to_ne_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_masks() {
        let p = |prefix_len| DesiredPersistence {
            timeout_secs: 1,
            prefix_len,
        };
        let (a, _) = addr_words("198.18.7.9".parse().unwrap());
        let masked = |m: [u32; 4]| words_addr([a[0] & m[0], 0, 0, 0], lb_common::AF_INET);
        assert_eq!(
            masked(p(24).mask_words(lb_common::AF_INET)).to_string(),
            "198.18.7.0"
        );
        assert_eq!(
            masked(p(32).mask_words(lb_common::AF_INET)).to_string(),
            "198.18.7.9"
        );
        assert_eq!(
            masked(p(0).mask_words(lb_common::AF_INET)).to_string(),
            "0.0.0.0"
        );
        assert_eq!(p(24).mask_words(lb_common::AF_INET)[1..], [0, 0, 0]);
        let (b, _) = addr_words("2001:db8:1:2:3:4:5:6".parse().unwrap());
        let m = p(64).mask_words(lb_common::AF_INET6);
        let masked6 = words_addr(
            [b[0] & m[0], b[1] & m[1], b[2] & m[2], b[3] & m[3]],
            lb_common::AF_INET6,
        );
        assert_eq!(masked6.to_string(), "2001:db8:1:2::");
        assert_eq!(p(128).mask_words(lb_common::AF_INET6), [u32::MAX; 4]);
    }
}
