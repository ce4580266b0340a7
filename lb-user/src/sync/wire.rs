//! The sync socket and the wire format in use (xlb's signed messages or IPVS's sync v1):
//! datagrams <-> records, no table work. Used by the task (`super::task`).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

use crate::config::model::{SyncPeers, SyncProtocol, SyncSettings};

use super::task::{PeerBatch, Settings, SyncError};
use super::{ipvs, DropCounts, Inbound, Outbound, Record};
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn socket(s: &SyncSettings) -> Result<(UdpSocket, Vec<SocketAddr>), SyncError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| SyncError::Socket {
        port: s.port,
        source,
    };
    let v6 = match &s.peers {
        SyncPeers::Group(g) => g.is_ipv6(),
        SyncPeers::Unicast(p) => p.first().is_some_and(IpAddr::is_ipv6),
    };
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    if let Some(i) = &s.interface {
        sock.bind_device(Some(i.as_bytes())).map_err(err)?;
    }
    let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    };
    sock.bind(&SocketAddr::new(any, s.port).into())
        .map_err(err)?;
    let dests = match &s.peers {
        SyncPeers::Unicast(p) => p.iter().map(|a| SocketAddr::new(*a, s.port)).collect(),
        SyncPeers::Group(g) => {
            join_group(&sock, *g, s.interface.as_deref()).map_err(err)?;
            vec![SocketAddr::new(*g, s.port)]
        }
    };
    sock.set_nonblocking(true).map_err(err)?;
    let std: std::net::UdpSocket = sock.into();
    Ok((UdpSocket::from_std(std).map_err(err)?, dests))
}

/// Joins the group on the interface, sends there with TTL 1 and without loopback (IPVS's
/// settings: sync traffic stays on the link).
fn join_group(sock: &socket2::Socket, group: IpAddr, iface: Option<&str>) -> std::io::Result<()> {
    let ifindex = iface.map_or(0, |i| {
        let c = std::ffi::CString::new(i).unwrap_or_default();
        // SAFETY: a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    });
    match group {
        IpAddr::V4(g) => {
            sock.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
            // Egress: the socket is bound to the interface (bind_device) when one is named.
            sock.set_multicast_loop_v4(false)?;
            sock.set_multicast_ttl_v4(1)
        }
        IpAddr::V6(g) => {
            sock.join_multicast_v6(&g, ifindex)?;
            sock.set_multicast_if_v6(ifindex)?;
            sock.set_multicast_loop_v6(false)?;
            sock.set_multicast_hops_v6(1)
        }
    }
}

/// The wire in use.
pub(super) enum Wire {
    Xlb {
        out: Outbound,
        inb: Inbound,
    },
    Ipvs {
        sync_id: u8,
        origin: u32,
        dropped: DropCounts,
        max_bytes: usize,
    },
}

impl Wire {
    pub(super) fn encode(&mut self, records: &[Record]) -> Vec<Vec<u8>> {
        match self {
            Wire::Xlb { out, .. } => out.encode(records, unix_ms()),
            Wire::Ipvs {
                sync_id, max_bytes, ..
            } => {
                let conns: Vec<ipvs::IpvsConn> = records
                    .iter()
                    .filter_map(|r| match r {
                        Record::Conn(c) => Some(ipvs::from_record(c)),
                        _ => None,
                    })
                    .collect();
                let mut out = Vec::new();
                let mut msg = ipvs::IpvsMessage {
                    sync_id: *sync_id,
                    conns: Vec::new(),
                };
                let mut len = ipvs::MESSAGE_HEADER_LEN;
                for c in conns {
                    let l = ipvs::encoded_len(&c);
                    if !msg.conns.is_empty()
                        && (len + l > *max_bytes || msg.conns.len() == ipvs::MAX_CONNS)
                    {
                        out.extend(ipvs::encode(&msg).ok());
                        msg.conns.clear();
                        len = ipvs::MESSAGE_HEADER_LEN;
                    }
                    len += l;
                    msg.conns.push(c);
                }
                if !msg.conns.is_empty() {
                    out.extend(ipvs::encode(&msg).ok());
                }
                out
            }
        }
    }

    pub(super) fn decode(&mut self, data: &[u8]) -> Option<PeerBatch> {
        match self {
            Wire::Xlb { inb, .. } => inb.receive(data, unix_ms()).map(|m| PeerBatch {
                sender: Some(m.header.director_id),
                records: m.records,
            }),
            Wire::Ipvs {
                sync_id,
                origin,
                dropped,
                ..
            } => match ipvs::decode(data) {
                Ok(m) if *sync_id == 0 || m.sync_id == *sync_id => Some(PeerBatch {
                    records: m
                        .conns
                        .iter()
                        .filter_map(|c| ipvs::to_record(c, *origin).ok())
                        .map(Record::Conn)
                        .collect(),
                    sender: None,
                }),
                Ok(_) => {
                    dropped.add("other_sync_id");
                    None
                }
                Err(e) => {
                    dropped.add(e.reason());
                    None
                }
            },
        }
    }

    pub(super) fn dropped(&self) -> &DropCounts {
        match self {
            Wire::Xlb { inb, .. } => &inb.dropped,
            Wire::Ipvs { dropped, .. } => dropped,
        }
    }

    pub(super) fn peers(&self) -> Vec<u32> {
        match self {
            Wire::Xlb { inb, .. } => inb.peers(),
            Wire::Ipvs { .. } => Vec::new(),
        }
    }
}

pub(super) fn new_wire(s: &Settings) -> Wire {
    let settings = &s.sync;
    match (&s.key, settings.protocol) {
        (Some(key), SyncProtocol::Xlb) => {
            let epoch = (unix_ms() / 1000) as u32;
            let max_age_ms = (settings.max_age * 1000.0) as u64;
            Wire::Xlb {
                out: Outbound::new(
                    key.clone(),
                    settings.director_id,
                    epoch,
                    settings.max_message_bytes as usize,
                ),
                inb: Inbound::new(key.clone(), settings.director_id, max_age_ms),
            }
        }
        _ => Wire::Ipvs {
            sync_id: settings.sync_id,
            origin: 0,
            dropped: DropCounts::default(),
            max_bytes: settings.max_message_bytes as usize,
        },
    }
}
