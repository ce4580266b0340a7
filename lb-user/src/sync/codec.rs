//! xlb's sync message: a header, records, and an HMAC-SHA256 over both with the shared key.
//!
//! ```text
//! offset  size  field (big-endian)
//!  0       4    magic "XLBS"
//!  4       1    version (1)
//!  5       1    reserved, 0
//!  6       2    record count
//!  8       4    sender's director id
//! 12       4    sender's epoch (unix seconds of its start: a restart starts a new sequence)
//! 16       8    sequence number (per sender and epoch, from 1)
//! 24       8    sender's clock at sending, unix milliseconds
//! 32       ...  records: type (1 byte), body length (1 byte), body
//! end-32  32    HMAC-SHA256(key, every byte before it)
//! ```
//!
//! Addresses take 16 bytes (IPv4 in the first 4, the rest zero) after a family byte (4 or 6).
//! A record of an unknown type is skipped by its length (a newer peer's addition); a known type
//! with another length is malformed. Decoding checks, in order: length, magic, version, HMAC,
//! records, then (in [`super::replay`]) freshness and the sequence window: nothing an
//! unauthenticated sender controls is looked at beyond the fixed header.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::record::{
    is_conn_state, ConnRecord, Flow, HealthRecord, HealthState, Record, StateChange,
};

pub const MAGIC: [u8; 4] = *b"XLBS";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
pub const MAC_LEN: usize = 32;
/// The smallest datagram that can carry one record of every type (the configured
/// `max_message_bytes` may not go lower).
pub const MIN_MESSAGE_LEN: usize = HEADER_LEN + 2 + CONN_LEN + MAC_LEN;

const T_CONN: u8 = 1;
const T_STATE: u8 = 2;
const T_EXPIRY: u8 = 3;
const T_HEALTH: u8 = 4;
const CONN_LEN: usize = 68;
const STATE_LEN: usize = 44;
const EXPIRY_LEN: usize = 40;
const HEALTH_LEN: usize = 40;

type HmacSha256 = Hmac<Sha256>;

/// The shared key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SyncKey(Vec<u8>);

/// Shorter keys are refused by the configuration (HMAC-SHA256 wants at least 128 bits).
pub const MIN_KEY_LEN: usize = 16;

impl SyncKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, CodecError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(CodecError::ShortKey(bytes.len()));
        }
        Ok(SyncKey(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length: this cannot fail.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of every length"),
        }
    }
}

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncKey({} bytes)", self.0.len())
    }
}

/// The header fields a message carries besides its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub director_id: u32,
    pub epoch: u32,
    pub sequence: u64,
    pub sent_unix_ms: u64,
}

/// A verified message (authenticity and layout; freshness and replay are checked by the caller's
/// [`super::replay::ReplayGuard`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub records: Vec<Record>,
    /// Records of types this version does not know, skipped.
    pub unknown_records: usize,
}

/// Why a datagram was dropped. Each reason is a counter of the sync task.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum CodecError {
    #[error("sync key of {0} bytes: at least {MIN_KEY_LEN} needed")]
    ShortKey(usize),
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    #[error("not an xlb sync message (bad magic)")]
    BadMagic,
    #[error("sync protocol version {0}, this xlb speaks {VERSION}")]
    Version(u8),
    #[error("HMAC does not match (wrong key or altered message)")]
    BadMac,
    #[error("malformed record at byte {0}")]
    Malformed(usize),
}

impl CodecError {
    /// The counter name (`xlb_sync_dropped_total{reason=...}`).
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::ShortKey(_) => "short_key",
            CodecError::Truncated(_) => "truncated",
            CodecError::BadMagic => "bad_magic",
            CodecError::Version(_) => "version",
            CodecError::BadMac => "bad_mac",
            CodecError::Malformed(_) => "malformed",
        }
    }
}

/// Encoded length of a record (type and length bytes included).
pub fn record_len(r: &Record) -> usize {
    2 + match r {
        Record::Conn(_) => CONN_LEN,
        Record::State(_) => STATE_LEN,
        Record::Expiry(_) => EXPIRY_LEN,
        Record::Health(_) => HEALTH_LEN,
    }
}

/// One message of `records` (the caller keeps it under its datagram size, see [`batches`]).
pub fn encode(key: &SyncKey, header: &Header, records: &[Record]) -> Vec<u8> {
    let body: usize = records.iter().map(record_len).sum();
    let mut out = Vec::with_capacity(HEADER_LEN + body + MAC_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&(records.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&header.director_id.to_be_bytes());
    out.extend_from_slice(&header.epoch.to_be_bytes());
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.sent_unix_ms.to_be_bytes());
    for r in records {
        put_record(&mut out, r);
    }
    let tag = sign(key, &out);
    out.extend_from_slice(&tag);
    out
}

/// The HMAC tag of `signed` (the message without its tag).
pub fn sign(key: &SyncKey, signed: &[u8]) -> [u8; MAC_LEN] {
    let mut mac = key.mac();
    mac.update(signed);
    mac.finalize().into_bytes().into()
}

/// Splits `records` into runs that each encode within `max_len` bytes (at least one record a run).
pub fn batches(records: &[Record], max_len: usize) -> Vec<&[Record]> {
    let room = max_len.saturating_sub(HEADER_LEN + MAC_LEN);
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, r) in records.iter().enumerate() {
        let len = record_len(r);
        if i > start && (used + len > room || i - start == u16::MAX as usize) {
            out.push(&records[start..i]);
            start = i;
            used = 0;
        }
        used += len;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// Checks and decodes a datagram.
pub fn decode(key: &SyncKey, data: &[u8]) -> Result<Message, CodecError> {
    if data.len() < HEADER_LEN + MAC_LEN {
        return Err(CodecError::Truncated(data.len()));
    }
    if data[0..4] != MAGIC {
        return Err(CodecError::BadMagic);
    }
    if data[4] != VERSION {
        return Err(CodecError::Version(data[4]));
    }
    let (signed, tag) = data.split_at(data.len() - MAC_LEN);
    let mut mac = key.mac();
    mac.update(signed);
    // Constant-time comparison (a timing oracle would let a sender guess the tag bytewise).
    mac.verify_slice(tag).map_err(|_| CodecError::BadMac)?;
    if signed[5] != 0 {
        return Err(CodecError::Malformed(5));
    }
    let header = Header {
        director_id: be32(&signed[8..12]),
        epoch: be32(&signed[12..16]),
        sequence: be64(&signed[16..24]),
        sent_unix_ms: be64(&signed[24..32]),
    };
    let count = u16::from_be_bytes([signed[6], signed[7]]) as usize;
    let (records, unknown_records) = decode_records(signed, count)?;
    Ok(Message {
        header,
        records,
        unknown_records,
    })
}

/// The `count` records after the header; they must fill the body exactly.
fn decode_records(signed: &[u8], count: usize) -> Result<(Vec<Record>, usize), CodecError> {
    let mut records = Vec::with_capacity(count.min(signed.len() / 2));
    let mut unknown = 0;
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let Some(&[kind, len]) = signed
            .get(at..at + 2)
            .and_then(|s| <&[u8; 2]>::try_from(s).ok())
        else {
            return Err(CodecError::Malformed(at));
        };
        let body = signed
            .get(at + 2..at + 2 + len as usize)
            .ok_or(CodecError::Malformed(at))?;
        match parse_record(kind, body) {
            Parsed::Record(r) => records.push(r),
            Parsed::Unknown => unknown += 1,
            Parsed::Bad => return Err(CodecError::Malformed(at)),
        }
        at += 2 + len as usize;
    }
    if at != signed.len() {
        return Err(CodecError::Malformed(at));
    }
    Ok((records, unknown))
}

enum Parsed {
    Record(Record),
    Unknown,
    Bad,
}

fn parse_record(kind: u8, b: &[u8]) -> Parsed {
    let expected = match kind {
        T_CONN => CONN_LEN,
        T_STATE => STATE_LEN,
        T_EXPIRY => EXPIRY_LEN,
        T_HEALTH => HEALTH_LEN,
        _ => return Parsed::Unknown,
    };
    if b.len() != expected {
        return Parsed::Bad;
    }
    let r = match kind {
        T_CONN => parse_conn(b).map(Record::Conn),
        T_STATE => parse_state(b).map(Record::State),
        T_EXPIRY => parse_flow(b).map(Record::Expiry),
        _ => parse_health(b).map(Record::Health),
    };
    r.map_or(Parsed::Bad, Parsed::Record)
}

fn put_record(out: &mut Vec<u8>, r: &Record) {
    match r {
        Record::Conn(c) => {
            out.extend_from_slice(&[T_CONN, CONN_LEN as u8]);
            put_flow(out, &c.flow, c.state);
            put_addr(out, c.real);
            put16(out, c.service_port);
            put16(out, c.real_port);
            out.extend_from_slice(&c.remaining_ms.to_be_bytes());
            out.extend_from_slice(&c.origin.to_be_bytes());
        }
        Record::State(s) => {
            out.extend_from_slice(&[T_STATE, STATE_LEN as u8]);
            put_flow(out, &s.flow, s.state);
            out.extend_from_slice(&s.remaining_ms.to_be_bytes());
        }
        Record::Expiry(f) => {
            out.extend_from_slice(&[T_EXPIRY, EXPIRY_LEN as u8]);
            put_flow(out, f, 0);
        }
        Record::Health(h) => {
            out.extend_from_slice(&[T_HEALTH, HEALTH_LEN as u8]);
            out.extend_from_slice(&[family(h.vip), h.proto, h.state.to_wire(), h.failures]);
            put_addr(out, h.vip);
            put_addr(out, h.real);
            put16(out, h.service_port);
            put16(out, h.real_port);
        }
    }
}

/// family, proto, state, 0, client, vip, client port, vip port (40 bytes).
fn put_flow(out: &mut Vec<u8>, f: &Flow, state: u8) {
    out.extend_from_slice(&[family(f.client), f.proto, state, 0]);
    put_addr(out, f.client);
    put_addr(out, f.vip);
    put16(out, f.client_port);
    put16(out, f.vip_port);
}

/// The flow of a record that starts with [`put_flow`]'s 40 bytes, and its state byte.
fn parse_flow_state(b: &[u8]) -> Option<(Flow, u8)> {
    let fam = b[0];
    let flow = Flow {
        proto: b[1],
        client: addr(fam, &b[4..20])?,
        vip: addr(fam, &b[20..36])?,
        client_port: be16(&b[36..38]),
        vip_port: be16(&b[38..40]),
    };
    (b[3] == 0 && flow.is_well_formed()).then_some((flow, b[2]))
}

fn parse_flow(b: &[u8]) -> Option<Flow> {
    let (flow, state) = parse_flow_state(b)?;
    (state == 0).then_some(flow)
}

fn parse_conn(b: &[u8]) -> Option<ConnRecord> {
    let (flow, state) = parse_flow_state(b)?;
    let real = addr(b[0], &b[40..56])?;
    is_conn_state(state).then_some(ConnRecord {
        flow,
        service_port: be16(&b[56..58]),
        real,
        real_port: be16(&b[58..60]),
        state,
        remaining_ms: be32(&b[60..64]),
        origin: be32(&b[64..68]),
    })
}

fn parse_state(b: &[u8]) -> Option<StateChange> {
    let (flow, state) = parse_flow_state(b)?;
    is_conn_state(state).then_some(StateChange {
        flow,
        state,
        remaining_ms: be32(&b[40..44]),
    })
}

fn parse_health(b: &[u8]) -> Option<HealthRecord> {
    let fam = b[0];
    let r = HealthRecord {
        proto: b[1],
        state: HealthState::from_wire(b[2])?,
        failures: b[3],
        vip: addr(fam, &b[4..20])?,
        real: addr(fam, &b[20..36])?,
        service_port: be16(&b[36..38]),
        real_port: be16(&b[38..40]),
    };
    super::record::is_forwarded_proto(r.proto).then_some(r)
}

fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() {
        lb_common::AF_INET
    } else {
        lb_common::AF_INET6
    }
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&v4.octets());
            out.extend_from_slice(&[0; 12]);
        }
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

/// A 16-byte address field of family `fam`; an IPv4 one must have its last 12 bytes zero.
fn addr(fam: u8, b: &[u8]) -> Option<IpAddr> {
    let b: [u8; 16] = b.try_into().ok()?;
    match fam {
        lb_common::AF_INET if b[4..].iter().all(|&x| x == 0) => {
            Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        }
        lb_common::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_be_bytes(w)
}

#[cfg(test)]
mod tests;
