//! Links, addresses and neighbours through rtnetlink, for every part of xlb: the daemon (its
//! interfaces, real servers' MACs, BGP VIPs on `lo`), VRRP (link state, VIPs, the advert source
//! address), `xlb realserver` and `xlb doctor` (VIPs on `lo`, through [`blocking`]).
//!
//! - [`message`]: what is read out of the kernel's messages, and which refusals mean "already so";
//! - [`subnet`]: prefix arithmetic and the choice of an interface's own address;
//! - [`blocking`]: the same calls for synchronous code, on one private current-thread runtime.
//!
//! A [`Net`] is bound to the network namespace of the thread that connected it.
pub mod blocking;
pub mod message;
pub mod route;
pub mod subnet;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
};

use futures::TryStreamExt as _;
use netlink_packet_route::address::{AddressHeaderFlags, AddressMessage};
use rtnetlink::Handle;
use thiserror::Error;

pub use blocking::BlockingNet;
pub use route::Route;
pub use subnet::{host_prefix_len, primary_address, same_subnet};

use crate::config::IpPrefix;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("cannot start a runtime for netlink: {0}")]
    Runtime(std::io::Error),
    #[error("no such interface: {0}")]
    NoInterface(String),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("interface #{index} has no {family} address to send from")]
    NoSourceAddress { index: u32, family: &'static str },
}

/// Wraps a failed request with what it was doing.
fn failed(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Netlink { what, source }
}

/// The state of a link, without its addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    /// All zero when the link has no Ethernet address (`lo`).
    pub mac: [u8; 6],
    /// Administratively up and operationally running (carrier present).
    pub up: bool,
    pub mtu: u32,
    /// How an XDP program is attached to it, as the kernel reports (`ip -d link`).
    pub xdp: XdpAttachment,
}

/// An XDP attachment as the kernel reports it (IFLA_XDP_ATTACHED).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpAttachment {
    #[default]
    None,
    /// In the driver (native, `xdp` in `ip -d link`).
    Native,
    /// Generic, after the skb is built (`xdpgeneric`).
    Generic,
    /// Offloaded to the NIC.
    Offload,
    /// Several programs in several modes.
    Multiple,
}

impl XdpAttachment {
    /// The name `xlb status` and the config use (`native`, `generic`).
    pub fn name(self) -> &'static str {
        match self {
            XdpAttachment::None => "none",
            XdpAttachment::Native => "native",
            XdpAttachment::Generic => "generic",
            XdpAttachment::Offload => "offload",
            XdpAttachment::Multiple => "multiple",
        }
    }
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

/// Could a link be called `name`? The kernel answers a lookup of a too long name with ERANGE
/// where the answer a caller wants is "no such link" (as for an empty name).
fn is_valid_link_name(name: &str) -> bool {
    !name.is_empty() && name.len() < libc::IFNAMSIZ
}

/// Whether the kernel runs duplicate address detection on a new IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dad {
    Run,
    /// `nodad`: for shared addresses (VIPs), which are duplicates by design and must be usable
    /// at once rather than after a tentative second.
    Skip,
}

/// A netlink handle; its connection task runs on the runtime it was opened on.
#[derive(Clone)]
pub struct Net {
    handle: Handle,
}

impl Net {
    /// Opens a netlink connection; its task runs on the current tokio runtime.
    pub fn connect() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The link `name`; `None` when there is none.
    pub async fn link(&self, name: &str) -> Result<Option<LinkState>, NetError> {
        if !is_valid_link_name(name) {
            return Ok(None);
        }
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.as_ref().map(message::link_state_of)),
            Err(e) if message::is_no_such_link(&e) => Ok(None),
            Err(e) => Err(failed(format!("reading link {name}"))(e)),
        }
    }

    /// The link `name` with its addresses.
    pub async fn interface(&self, name: &str) -> Result<Interface, NetError> {
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| NetError::NoInterface(name.to_owned()))?;
        Ok(Interface {
            name: name.to_owned(),
            index: link.index,
            mac: link.mac,
            addrs: self.addresses(link.index).await?,
        })
    }

    async fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetError> {
        self.handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(failed(format!(
                "listing the addresses of interface #{index}"
            )))
    }

    /// (address, prefix length) of every address on interface `index`, in the kernel's order.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetError> {
        let msgs = self.address_messages(index).await?;
        Ok(msgs
            .iter()
            .filter_map(message::prefixed_address_of)
            .collect())
    }

    /// Interface `index`'s own address to send from (see [`primary_address`]).
    pub async fn primary_address(
        &self,
        index: u32,
        v6: bool,
        floating: &[IpAddr],
    ) -> Result<IpAddr, NetError> {
        let addrs = self.addresses(index).await?;
        primary_address(&addrs, v6, floating).ok_or(NetError::NoSourceAddress {
            index,
            family: if v6 { "IPv6 link-local" } else { "IPv4" },
        })
    }

    /// Puts `prefix` on interface `index`; already present is fine (its flags are refreshed).
    pub async fn add_address(
        &self,
        index: u32,
        prefix: IpPrefix,
        dad: Dad,
    ) -> Result<(), NetError> {
        let mut req = self
            .handle
            .address()
            .add(index, prefix.addr, prefix.prefix_len)
            .replace();
        if prefix.addr.is_ipv6() && dad == Dad::Skip {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Err(e) if !message::is_already_present(&e) => {
                Err(failed(format!("adding {prefix} to interface #{index}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Adds `ip` as a host address (/32 or /128, no DAD: a VIP) on interface `index`.
    pub async fn add_host_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        self.add_address(index, IpPrefix::host(ip), Dad::Skip).await
    }

    /// Removes `ip` (with whatever prefix length it has) from interface `index`; absent is fine.
    pub async fn del_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        for msg in self.address_messages(index).await? {
            if message::address_of(&msg) != Some(ip) {
                continue;
            }
            match self.handle.address().del(msg).execute().await {
                Err(e) if !message::is_already_absent(&e) => {
                    return Err(failed(format!("removing {ip} from interface #{index}"))(e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Usable neighbour entries (see [`message::neighbour_of`]): ip -> (ifindex, MAC).
    pub async fn neighbours(&self) -> Result<BTreeMap<IpAddr, (u32, [u8; 6])>, NetError> {
        let msgs: Vec<_> = self
            .handle
            .neighbours()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(failed("reading the neighbour table"))?;
        Ok(msgs
            .iter()
            .filter_map(message::neighbour_of)
            .map(|(ip, index, mac)| (ip, (index, mac)))
            .collect())
    }
}

impl Net {
    /// The route the kernel uses to `dst` (`ip route get`); `None` when it has none.
    pub async fn route_to(&self, dst: IpAddr) -> Result<Option<Route>, NetError> {
        let msg = match dst {
            IpAddr::V4(a) => rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(a, 32)
                .build(),
            IpAddr::V6(a) => rtnetlink::RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(a, 128)
                .build(),
        };
        let mut replies = self.handle.route().get(msg).execute();
        match replies.try_next().await {
            Ok(m) => Ok(m.as_ref().and_then(route::route_of)),
            // ENETUNREACH / EHOSTUNREACH: no route.
            Err(rtnetlink::Error::NetlinkError(e))
                if matches!(e.raw_code().abs(), libc::ENETUNREACH | libc::EHOSTUNREACH) =>
            {
                Ok(None)
            }
            Err(e) => Err(failed(format!("looking up the route to {dst}"))(e)),
        }
    }
}

/// Makes the kernel resolve `ip`'s MAC (ARP or neighbour discovery) by sending one empty UDP
/// datagram to the discard port; the neighbour table then has the answer.
pub fn probe_neighbour(ip: IpAddr) {
    let bind = match ip {
        IpAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    if let Ok(sock) = UdpSocket::bind(bind) {
        let _ = sock.send_to(&[], SocketAddr::new(ip, 9));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link() {
        let eth = Interface {
            name: "eth0".into(),
            index: 2,
            mac: [2, 0, 0, 0, 0, 2],
            addrs: vec![
                ("198.18.0.2".parse().unwrap(), 24),
                ("2001:db8::2".parse().unwrap(), 64),
            ],
        };
        assert!(eth.on_link("198.18.0.11".parse().unwrap()));
        assert!(eth.on_link("2001:db8::11".parse().unwrap()));
        assert!(!eth.on_link("198.18.1.11".parse().unwrap()));
    }

    #[test]
    fn link_names() {
        assert!(is_valid_link_name("eth0") && is_valid_link_name("a23456789012345"));
        assert!(
            !is_valid_link_name("a234567890123456"),
            "16 bytes: over IFNAMSIZ"
        );
        assert!(!is_valid_link_name(""));
    }

    #[test]
    fn errors_say_what_failed() {
        let e = failed("adding 198.18.0.1/32 to interface #1")(rtnetlink::Error::RequestFailed);
        assert_eq!(
            e.to_string(),
            "adding 198.18.0.1/32 to interface #1: A netlink request failed"
        );
    }
}

/// Interfaces written for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// eth0, ifindex 7, MAC 02:00:00:00:00:02, 198.18.0.2/24.
    pub fn eth0() -> super::Interface {
        super::Interface {
            name: "eth0".into(),
            index: 7,
            mac: [2, 0, 0, 0, 0, 2],
            addrs: vec![("198.18.0.2".parse().unwrap(), 24)],
        }
    }
}
