//! Links, addresses and neighbours through rtnetlink: what the daemon needs to know about the
//! director's interfaces and its real servers' MAC addresses.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    address::AddressAttribute,
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
};
use rtnetlink::Handle;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("cannot open a netlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("no such interface: {0}")]
    NoInterface(String),
}

/// An interface of the director.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// (address, prefix length) of every address on it.
    pub addrs: Vec<(IpAddr, u8)>,
}

impl Interface {
    /// Is `ip` inside one of this interface's subnets?
    pub fn on_link(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|(a, len)| same_subnet(*a, ip, *len))
    }
}

fn same_subnet(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len.min(32))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len.min(128))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// A netlink handle plus its connection task.
#[derive(Clone)]
pub struct Net {
    handle: Handle,
}

impl Net {
    /// Opens a netlink connection; its task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub async fn interface(&self, name: &str) -> Result<Interface, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            Ok(None) | Err(_) => return Err(NetError::NoInterface(name.to_owned())),
        };
        let mut mac = [0u8; 6];
        for attr in &link.attributes {
            if let LinkAttribute::Address(a) = attr {
                if a.len() == 6 {
                    mac.copy_from_slice(a);
                }
            }
        }
        let index = link.header.index;
        let mut addrs = Vec::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = stream.try_next().await? {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(ip) = attr {
                    addrs.push((*ip, msg.header.prefix_len));
                }
            }
        }
        Ok(Interface {
            name: name.to_owned(),
            index,
            mac,
            addrs,
        })
    }

    /// Adds `ip` as a host address (/32 or /128) on the interface `index`; already present is fine.
    pub async fn add_host_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        self.handle
            .address()
            .add(index, ip, len)
            .replace()
            .execute()
            .await?;
        Ok(())
    }

    /// Removes `ip` from the interface `index` if it is there.
    pub async fn del_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(ip)
            .execute();
        while let Some(msg) = stream.try_next().await? {
            self.handle.address().del(msg).execute().await?;
        }
        Ok(())
    }

    /// Usable (reachable, stale, delay, probe, permanent, noarp) neighbour entries: ip -> (ifindex, MAC).
    pub async fn neighbours(&self) -> Result<BTreeMap<IpAddr, (u32, [u8; 6])>, NetError> {
        let mut out = BTreeMap::new();
        let mut stream = self.handle.neighbours().get().execute();
        while let Some(msg) = stream.try_next().await? {
            if matches!(
                msg.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            ) {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for attr in &msg.attributes {
                match attr {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        ip = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        ip = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(l);
                        mac = Some(m);
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.insert(ip, (msg.header.ifindex, mac));
            }
        }
        Ok(out)
    }
}

/// Makes the kernel resolve `ip`'s MAC (ARP or neighbour discovery) by sending one empty UDP
/// datagram to the discard port; the neighbour table then has the answer.
pub fn probe_neighbour(ip: IpAddr) {
    let bind: SocketAddr = match ip {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
    };
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(&[], SocketAddr::new(ip, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_subnet(ip("198.18.0.2"), ip("198.18.0.11"), 24));
        assert!(!same_subnet(ip("198.18.0.2"), ip("198.18.1.11"), 24));
        assert!(same_subnet(ip("2001:db8::2"), ip("2001:db8::11"), 64));
        assert!(!same_subnet(ip("2001:db8::2"), ip("198.18.0.2"), 24));
    }
}
