//! IPVS's connection-sync protocol, version 1 (Linux `net/netfilter/ipvs/ip_vs_sync.c`), so that
//! an xlb director and an LVS director (`ipvsadm --start-daemon`, keepalived's
//! `lvs_sync_daemon`) can exchange connections during a migration.
//!
//! ```text
//! message header (struct ip_vs_sync_mesg, 8 bytes)
//!   0  reserved, 0 (version 0's connection count: a v0 receiver drops v1 messages)
//!   1  sync id
//!   2  size of the whole message, big-endian
//!   4  connection count
//!   5  version, 1
//!   6  spare, 0
//! connection (struct ip_vs_sync_v4: 36 bytes, ip_vs_sync_v6: 72), at 4-byte alignment
//!   0  type: bit 0 = IPv6
//!   1  protocol
//!   2  version (high 4 bits, 0) | size of this connection with its options (low 12 bits)
//!   4  flags (IP_VS_CONN_F_*), big-endian 32 bits
//!   8  state (IP_VS_TCP_S_*), 16 bits
//!  10  client port, 12 virtual port, 14 destination (real server) port
//!  16  fwmark
//!  20  timeout, seconds
//!  24  client, virtual, destination addresses (4 or 16 bytes each)
//!  then options: type (1 byte), length (1 byte, > 0), data
//! ```
//!
//! There is no authentication in this protocol: a sync id is a filter, not a secret. xlb speaks
//! it only when configured to (`sync.protocol = "ipvs"`), on the segment the operator trusts, as
//! LVS itself does. What could not be tested here: the kernel on the build machine has no IPVS
//! module, so these codecs are checked against the struct layout above (hand-built bytes in the
//! tests), not against a running `ip_vs_sync` thread.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_common::{conn_state, PROTO_TCP, PROTO_UDP};

use super::record::{ConnRecord, Flow};

/// `IP_VS_SYNC_PORT`.
pub const PORT: u16 = 8848;
/// `IP_VS_SYNC_GROUP`.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// `SYNC_PROTO_VER`.
pub const VERSION: u8 = 1;
pub const MESSAGE_HEADER_LEN: usize = 8;
pub const CONN_V4_LEN: usize = 36;
pub const CONN_V6_LEN: usize = 72;
/// The most connections a message counts (one byte).
pub const MAX_CONNS: usize = 255;

const STYPE_F_INET6: u8 = 1;
const SVER_SHIFT: u16 = 12;
const SVER_MASK: u16 = 0x0fff;
/// Option types (`IPVS_OPT_*`); `IPVS_OPT_F_PARAM` marks an option a receiver may ignore.
const OPT_SEQ_DATA: u8 = 1;
const OPT_PE_DATA: u8 = 2;
const OPT_PE_NAME: u8 = 3;
const OPT_F_PARAM: u8 = 1 << 6;
/// Length of `struct ip_vs_sync_conn_options` (two `struct ip_vs_seq` of three u32).
const SEQ_OPTIONS_LEN: usize = 24;

/// `IP_VS_CONN_F_*` flags xlb reads or writes.
pub mod flags {
    /// Forwarding method mask; tunnel and direct routing. A receiver binds a synced connection
    /// to its own real server's method (IPVS's `ip_vs_bind_dest`: "connections inherit
    /// forwarding method from dest"), and so does xlb.
    pub const FWD_MASK: u32 = 0x0007;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    /// Set by a receiver on entries it learnt by sync (masked off on the wire by LVS).
    pub const SYNC: u32 = 0x0020;
    /// Not established (counted as InActConn).
    pub const INACTIVE: u32 = 0x0100;
    /// A persistence template, not a connection: xlb has no templates and skips them.
    pub const TEMPLATE: u32 = 0x1000;
}

/// `IP_VS_TCP_S_*`, the TCP states on the wire (UDP has one state, 0).
pub mod tcp_state {
    pub const ESTABLISHED: u16 = 1;
    pub const SYN_RECV: u16 = 3;
    pub const FIN_WAIT: u16 = 4;
    pub const TIME_WAIT: u16 = 5;
    pub const CLOSE: u16 = 6;
    pub const CLOSE_WAIT: u16 = 7;
    pub const LAST_ACK: u16 = 8;
    /// `IP_VS_TCP_S_LAST`: states are below it.
    pub const LAST: u16 = 11;
}

/// One connection of an IPVS sync message, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsConn {
    pub protocol: u8,
    pub flags: u32,
    pub state: u16,
    pub client: IpAddr,
    pub client_port: u16,
    pub vip: IpAddr,
    pub vip_port: u16,
    pub real: IpAddr,
    pub real_port: u16,
    pub fwmark: u32,
    pub timeout_s: u32,
    /// Options (type, data) as received; xlb sends none (it does no sequence adjustment and has
    /// no persistence engines).
    pub options: Vec<(u8, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMessage {
    pub sync_id: u8,
    pub conns: Vec<IpvsConn>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum IpvsError {
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    #[error("size field {field} does not match the datagram's {len} bytes")]
    Size { field: usize, len: usize },
    #[error("version 0 message (or reserved bytes set): only version 1 is spoken")]
    Version0,
    #[error("connection {index}: {reason}")]
    Conn { index: usize, reason: &'static str },
    #[error("{0} connections do not fit one message (at most {MAX_CONNS})")]
    TooMany(usize),
    #[error("addresses of different families in one connection")]
    MixedFamilies,
}

impl IpvsError {
    pub fn reason(&self) -> &'static str {
        match self {
            IpvsError::Truncated(_) => "truncated",
            IpvsError::Size { .. } | IpvsError::Conn { .. } => "malformed",
            IpvsError::Version0 => "version",
            IpvsError::TooMany(_) | IpvsError::MixedFamilies => "unencodable",
        }
    }
}

/// Encodes one message (at most [`MAX_CONNS`] connections; the caller splits by datagram size
/// with [`encoded_len`]).
pub fn encode(msg: &IpvsMessage) -> Result<Vec<u8>, IpvsError> {
    if msg.conns.len() > MAX_CONNS {
        return Err(IpvsError::TooMany(msg.conns.len()));
    }
    let mut out = vec![0, msg.sync_id, 0, 0, msg.conns.len() as u8, VERSION, 0, 0];
    for c in &msg.conns {
        out.resize(align4(out.len()), 0);
        put_conn(&mut out, c)?;
    }
    let size = u16::try_from(out.len()).map_err(|_| IpvsError::TooMany(msg.conns.len()))?;
    out[2..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// Bytes one connection takes in a message (alignment padding before it included, at worst).
pub fn encoded_len(c: &IpvsConn) -> usize {
    align4(conn_len(c)) + 3
}

fn conn_len(c: &IpvsConn) -> usize {
    let base = if c.client.is_ipv4() {
        CONN_V4_LEN
    } else {
        CONN_V6_LEN
    };
    base + c.options.iter().map(|(_, d)| 2 + d.len()).sum::<usize>()
}

fn put_conn(out: &mut Vec<u8>, c: &IpvsConn) -> Result<(), IpvsError> {
    let v6 = !c.client.is_ipv4();
    if c.vip.is_ipv4() == v6 || c.real.is_ipv4() == v6 {
        return Err(IpvsError::MixedFamilies);
    }
    let len = conn_len(c);
    if len > SVER_MASK as usize || c.options.iter().any(|(_, d)| d.is_empty() || d.len() > 255) {
        return Err(IpvsError::Conn {
            index: 0,
            reason: "options too long or empty",
        });
    }
    out.push(if v6 { STYPE_F_INET6 } else { 0 });
    out.push(c.protocol);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&c.flags.to_be_bytes());
    for v in [c.state, c.client_port, c.vip_port, c.real_port] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&c.fwmark.to_be_bytes());
    out.extend_from_slice(&c.timeout_s.to_be_bytes());
    for a in [c.client, c.vip, c.real] {
        match a {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
    }
    for (t, d) in &c.options {
        out.push(*t);
        out.push(d.len() as u8);
        out.extend_from_slice(d);
    }
    Ok(())
}

/// Decodes a message with the kernel's checks (`ip_vs_process_message`): the size field equals
/// the datagram length, reserved and spare bytes are zero, every connection lies inside the
/// message, has version 0 in its size word, a known type, and well-formed options.
pub fn decode(data: &[u8]) -> Result<IpvsMessage, IpvsError> {
    if data.len() < MESSAGE_HEADER_LEN {
        return Err(IpvsError::Truncated(data.len()));
    }
    let field = u16::from_be_bytes([data[2], data[3]]) as usize;
    if field != data.len() {
        return Err(IpvsError::Size {
            field,
            len: data.len(),
        });
    }
    if data[0] != 0 || data[5] != VERSION || data[6] != 0 || data[7] != 0 {
        return Err(IpvsError::Version0);
    }
    let count = data[4] as usize;
    let mut conns = Vec::with_capacity(count);
    let mut at = MESSAGE_HEADER_LEN;
    for index in 0..count {
        let bad = |reason| IpvsError::Conn { index, reason };
        if at + CONN_V4_LEN > data.len() {
            return Err(IpvsError::Truncated(data.len()));
        }
        let ver_size = u16::from_be_bytes([data[at + 2], data[at + 3]]);
        let size = (ver_size & SVER_MASK) as usize;
        if at + size > data.len() {
            return Err(bad("extends past the message"));
        }
        if ver_size >> SVER_SHIFT != 0 {
            return Err(bad("unknown connection version"));
        }
        conns.push(parse_conn(&data[at..at + size]).map_err(bad)?);
        at += align4(size);
    }
    Ok(IpvsMessage {
        sync_id: data[1],
        conns,
    })
}

fn parse_conn(b: &[u8]) -> Result<IpvsConn, &'static str> {
    let v6 = match b[0] {
        t if t & STYPE_F_INET6 != 0 => true,
        0 => false,
        _ => return Err("unknown type"),
    };
    let base = if v6 { CONN_V6_LEN } else { CONN_V4_LEN };
    if b.len() < base {
        return Err("shorter than its fixed part");
    }
    let w = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let d = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let addr = |i: usize| -> IpAddr {
        if v6 {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[24 + 16 * i..40 + 16 * i]);
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                b[24 + 4 * i],
                b[25 + 4 * i],
                b[26 + 4 * i],
                b[27 + 4 * i],
            ))
        }
    };
    Ok(IpvsConn {
        protocol: b[1],
        flags: d(4),
        state: w(8),
        client_port: w(10),
        vip_port: w(12),
        real_port: w(14),
        fwmark: d(16),
        timeout_s: d(20),
        client: addr(0),
        vip: addr(1),
        real: addr(2),
        options: parse_options(&b[base..])?,
    })
}

/// The kernel's option rules: each has a non-zero length within the connection; sequence data
/// is 24 bytes; no option twice; an unknown option without `IPVS_OPT_F_PARAM` is mandatory
/// (the kernel drops that connection; xlb refuses the message, having no partial form).
fn parse_options(mut b: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, &'static str> {
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    while !b.is_empty() {
        if b.len() < 2 {
            return Err("option header cut");
        }
        let (t, len) = (b[0], b[1] as usize);
        if len == 0 || 2 + len > b.len() {
            return Err("option length");
        }
        let kind = t & !OPT_F_PARAM;
        match kind {
            OPT_SEQ_DATA if len != SEQ_OPTIONS_LEN => return Err("sequence option length"),
            OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME
                if out.iter().any(|(o, _)| o & !OPT_F_PARAM == kind) =>
            {
                return Err("option twice")
            }
            OPT_SEQ_DATA | OPT_PE_DATA | OPT_PE_NAME => {}
            _ if t & OPT_F_PARAM == 0 => return Err("unknown mandatory option"),
            _ => {}
        }
        out.push((t, b[2..2 + len].to_vec()));
        b = &b[2 + len..];
    }
    Ok(out)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// An xlb connection as IPVS describes it (direct routing; idle timeout rounded up to seconds).
pub fn from_record(r: &ConnRecord) -> IpvsConn {
    let inactive = r.state != conn_state::ESTABLISHED && r.state != conn_state::UDP;
    IpvsConn {
        protocol: r.flow.proto,
        flags: flags::DROUTE | if inactive { flags::INACTIVE } else { 0 },
        state: match r.state {
            conn_state::SYN_RECV => tcp_state::SYN_RECV,
            conn_state::ESTABLISHED => tcp_state::ESTABLISHED,
            conn_state::FIN_WAIT => tcp_state::FIN_WAIT,
            conn_state::CLOSE => tcp_state::CLOSE,
            _ => 0,
        },
        client: r.flow.client,
        client_port: r.flow.client_port,
        vip: r.flow.vip,
        vip_port: r.flow.vip_port,
        real: r.real,
        real_port: r.real_port,
        fwmark: 0,
        timeout_s: r.remaining_ms.div_ceil(1000),
        options: Vec::new(),
    }
}

/// Why an IPVS connection has no xlb form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmappable {
    /// A persistence template (xlb keeps persistence in its hash, not in entries).
    Template,
    /// Not TCP or UDP (SCTP), or a state out of range.
    Protocol,
    /// A firewall-mark service (xlb has none).
    Fwmark,
}

/// An IPVS connection as an xlb record; `service_port` is the virtual port (an LVS port-0
/// service syncs its connections with the flow's port: the receiver falls back to port 0).
pub fn to_record(c: &IpvsConn, origin: u32) -> Result<ConnRecord, Unmappable> {
    if c.flags & flags::TEMPLATE != 0 {
        return Err(Unmappable::Template);
    }
    // The forwarding bits are not looked at: the flow takes this director's configured method
    // for that real server (DR or tunnel), as an IPVS backup binds it to its own dest's.
    if c.fwmark != 0 {
        return Err(Unmappable::Fwmark);
    }
    let state = match (c.protocol, c.state) {
        (PROTO_UDP, _) => conn_state::UDP,
        (PROTO_TCP, tcp_state::ESTABLISHED) => conn_state::ESTABLISHED,
        (PROTO_TCP, tcp_state::SYN_RECV) => conn_state::SYN_RECV,
        (PROTO_TCP, tcp_state::FIN_WAIT | tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK) => {
            conn_state::FIN_WAIT
        }
        (PROTO_TCP, tcp_state::TIME_WAIT | tcp_state::CLOSE) => conn_state::CLOSE,
        (PROTO_TCP, s) if s < tcp_state::LAST => conn_state::SYN_RECV,
        _ => return Err(Unmappable::Protocol),
    };
    Ok(ConnRecord {
        flow: Flow {
            proto: c.protocol,
            client: c.client,
            client_port: c.client_port,
            vip: c.vip,
            vip_port: c.vip_port,
        },
        service_port: c.vip_port,
        real: c.real,
        real_port: c.real_port,
        state,
        remaining_ms: c.timeout_s.saturating_mul(1000),
        origin,
    })
}

#[cfg(test)]
mod tests;
