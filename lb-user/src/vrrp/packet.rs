//! VRRP advertisement codec: VRRPv2 (RFC 3768, auth none or PASS) over IPv4, VRRPv3 (RFC 5798)
//! over IPv4 and IPv6.
//!
//! Checksums: v2 covers the VRRP message only; v3 adds the IP pseudo-header (for IPv4 too, as
//! keepalived does). Decoding checks structure and checksum; authentication, VRID, TTL and the
//! advert interval are checked by the caller with the instance's configuration
//! ([`Advert::check_for`]).

use std::net::IpAddr;
use std::time::Duration;

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group of VRRP.
pub const MCAST_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
/// The IPv6 multicast group of VRRP.
pub const MCAST_V6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// TTL / hop limit every advert is sent with and must arrive with.
pub const VRRP_TTL: u8 = 255;
/// Length of the VRRPv2 PASS authentication data.
pub const AUTH_LEN: usize = 8;

/// Why a received advert was dropped. [`RxError::as_str`] names the `bad_adverts` counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum RxError {
    #[error("packet too short")]
    TooShort,
    #[error("unsupported VRRP version")]
    Version,
    #[error("not an advertisement (type != 1)")]
    Type,
    #[error("bad checksum")]
    Checksum,
    #[error("authentication mismatch")]
    Auth,
    #[error("address count does not match the length")]
    AddressCount,
    #[error("IP TTL / hop limit is not 255")]
    Ttl,
    #[error("VRID of none of our instances")]
    Vrid,
    #[error("advert interval differs from ours (VRRPv2)")]
    Interval,
    #[error("address family differs from the instance's")]
    Family,
    #[error("malformed IP header")]
    IpHeader,
}

impl RxError {
    /// Every reason, for counters that start at 0.
    pub const ALL: [RxError; 11] = [
        RxError::TooShort,
        RxError::Version,
        RxError::Type,
        RxError::Checksum,
        RxError::Auth,
        RxError::AddressCount,
        RxError::Ttl,
        RxError::Vrid,
        RxError::Interval,
        RxError::Family,
        RxError::IpHeader,
    ];

    /// What an operator should look at when adverts are dropped for this reason.
    pub fn hint(self) -> &'static str {
        match self {
            RxError::Auth => {
                "the peer's authentication (auth_type/auth_pass) differs from ours: neither \
                 side accepts the other's adverts, so both become MASTER (split brain)"
            }
            RxError::Vrid => {
                "a VRID none of our instances use on this link: a peer configured with another \
                 virtual_router_id, or another VRRP router sharing the segment"
            }
            RxError::Interval => {
                "the peer's advert_int differs from ours (VRRPv2 drops such adverts, as keepalived)"
            }
            RxError::Version => "the peer speaks another VRRP version: set the same `version`",
            RxError::Checksum => "corrupted, or the peer computes the checksum differently",
            RxError::Ttl => {
                "IP TTL / hop limit not 255: the advert crossed a router, or is spoofed"
            }
            RxError::Family => "an advert of the other address family than the instance's",
            RxError::TooShort | RxError::AddressCount | RxError::Type | RxError::IpHeader => {
                "malformed advertisement"
            }
        }
    }

    /// Counter name.
    pub fn as_str(self) -> &'static str {
        match self {
            RxError::TooShort => "too_short",
            RxError::Version => "version",
            RxError::Type => "type",
            RxError::Checksum => "checksum",
            RxError::Auth => "auth",
            RxError::AddressCount => "address_count",
            RxError::Ttl => "ttl",
            RxError::Vrid => "vrid",
            RxError::Interval => "interval",
            RxError::Family => "family",
            RxError::IpHeader => "ip_header",
        }
    }
}

/// A VRRP advertisement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// 2 or 3.
    pub version: u8,
    pub vrid: u8,
    pub priority: u8,
    /// Advert interval in centiseconds (v2 carries whole seconds: multiples of 100).
    pub interval_cs: u16,
    /// v2 only: `Some(password)` for auth type PASS (type 1), `None` for no authentication.
    pub auth: Option<[u8; AUTH_LEN]>,
    /// The virtual addresses (all of the family of the carrying IP packet).
    pub addrs: Vec<IpAddr>,
}

/// The 8-byte PASS field for `pass` (truncated / zero padded like keepalived).
pub fn auth_field(pass: &str) -> [u8; AUTH_LEN] {
    let mut a = [0u8; AUTH_LEN];
    for (d, s) in a.iter_mut().zip(pass.as_bytes()) {
        *d = *s;
    }
    a
}

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The Internet checksum of `data`, with the IP pseudo-header of `(src, dst)` when given.
pub fn checksum(data: &[u8], pseudo: Option<(IpAddr, IpAddr)>, proto: u8) -> u16 {
    let mut acc = 0u32;
    match pseudo {
        Some((IpAddr::V4(s), IpAddr::V4(d))) => {
            acc = sum16(&s.octets(), acc);
            acc = sum16(&d.octets(), acc);
            acc += u32::from(proto);
            acc += data.len() as u32;
        }
        Some((IpAddr::V6(s), IpAddr::V6(d))) => {
            acc = sum16(&s.octets(), acc);
            acc = sum16(&d.octets(), acc);
            acc += data.len() as u32;
            acc += u32::from(proto);
        }
        _ => {}
    }
    fold(sum16(data, acc))
}

impl Advert {
    /// The advert interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_cs) * 10)
    }

    /// Encodes the VRRP message (no IP header). `src`/`dst` are the IP addresses of the carrying
    /// packet (used by the v3 checksum).
    pub fn encode(&self, src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 16 * self.addrs.len() + AUTH_LEN);
        b.push((self.version << 4) | 1);
        b.push(self.vrid);
        b.push(self.priority);
        b.push(self.addrs.len() as u8);
        if self.version == 2 {
            b.push(if self.auth.is_some() { 1 } else { 0 });
            b.push((self.interval_cs / 100).clamp(1, 255) as u8);
        } else {
            b.extend_from_slice(&(self.interval_cs & 0x0fff).to_be_bytes());
        }
        b.extend_from_slice(&[0, 0]);
        for a in &self.addrs {
            match a {
                IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
            }
        }
        if self.version == 2 {
            // RFC 3768: the authentication data is always present (zero without auth).
            b.extend_from_slice(&self.auth.unwrap_or([0; AUTH_LEN]));
        }
        let pseudo = (self.version == 3).then_some((src, dst));
        let c = checksum(&b, pseudo, IPPROTO_VRRP);
        b[6..8].copy_from_slice(&c.to_be_bytes());
        b
    }

    /// Decodes and checks (structure, checksum) the VRRP message `buf` carried from `src` to
    /// `dst`. The address family of the addresses is that of `src`.
    pub fn decode(buf: &[u8], src: IpAddr, dst: IpAddr) -> Result<Advert, RxError> {
        if buf.len() < 8 {
            return Err(RxError::TooShort);
        }
        let version = buf[0] >> 4;
        let v6 = src.is_ipv6();
        match (version, v6) {
            (2, false) | (3, _) => {}
            _ => return Err(RxError::Version),
        }
        if buf[0] & 0x0f != 1 {
            return Err(RxError::Type);
        }
        let count = usize::from(buf[3]);
        let alen = if v6 { 16 } else { 4 };
        let expect = 8 + count * alen + if version == 2 { AUTH_LEN } else { 0 };
        if buf.len() < expect {
            // keepalived: too short for the announced address count.
            return Err(if buf.len() < 8 + if version == 2 { AUTH_LEN } else { 0 } {
                RxError::TooShort
            } else {
                RxError::AddressCount
            });
        }
        // Bytes past `expect` (padding) are tolerated, as keepalived does, but not checksummed
        // separately: the checksum covers the whole VRRP payload.
        let pseudo = (version == 3).then_some((src, dst));
        if checksum(buf, pseudo, IPPROTO_VRRP) != 0 {
            return Err(RxError::Checksum);
        }
        let (interval_cs, auth) = if version == 2 {
            let auth = match buf[4] {
                0 => None,
                1 => {
                    let mut a = [0u8; AUTH_LEN];
                    a.copy_from_slice(&buf[expect - AUTH_LEN..expect]);
                    Some(a)
                }
                _ => return Err(RxError::Auth),
            };
            (u16::from(buf[5]) * 100, auth)
        } else {
            (u16::from_be_bytes([buf[4], buf[5]]) & 0x0fff, None)
        };
        let addrs = buf[8..8 + count * alen]
            .chunks_exact(alen)
            .map(|c| {
                if v6 {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(c);
                    IpAddr::from(o)
                } else {
                    IpAddr::from([c[0], c[1], c[2], c[3]])
                }
            })
            .collect();
        Ok(Advert {
            version,
            vrid: buf[1],
            priority: buf[2],
            interval_cs,
            auth,
            addrs,
        })
    }

    /// Checks a decoded advert against the receiving instance: version, authentication and (v2
    /// only, like keepalived) the advert interval. The VRID is matched by the caller.
    pub fn check_for(
        &self,
        version: u8,
        auth: Option<&[u8; AUTH_LEN]>,
        interval_cs: u16,
    ) -> Result<(), RxError> {
        if self.version != version {
            return Err(RxError::Version);
        }
        if self.version == 2 {
            if self.auth.as_ref() != auth {
                return Err(RxError::Auth);
            }
            if self.interval_cs != interval_cs {
                return Err(RxError::Interval);
            }
        }
        Ok(())
    }
}

/// A parsed IPv4 header: `(src, dst, ttl, protocol, payload)`.
pub fn parse_ipv4(pkt: &[u8]) -> Result<(IpAddr, IpAddr, u8, u8, &[u8]), RxError> {
    if pkt.len() < 20 {
        return Err(RxError::TooShort);
    }
    if pkt[0] >> 4 != 4 {
        return Err(RxError::IpHeader);
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    if ihl < 20 || pkt.len() < ihl {
        return Err(RxError::IpHeader);
    }
    // The kernel hands raw sockets the whole datagram; trust `total` only when consistent.
    let end = if total >= ihl && total <= pkt.len() {
        total
    } else {
        pkt.len()
    };
    let src = IpAddr::from([pkt[12], pkt[13], pkt[14], pkt[15]]);
    let dst = IpAddr::from([pkt[16], pkt[17], pkt[18], pkt[19]]);
    Ok((src, dst, pkt[8], pkt[9], &pkt[ihl..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    const V2: &str = "21 33 96 01 01 01 dd db c6 12 00 65 6c 61 62 70 61 73 73 31";
    const V3: &str = "31 33 96 01 00 64 cb 4a c6 12 00 65";
    const MC: IpAddr = IpAddr::V4(MCAST_V4);

    fn v2_expected() -> Advert {
        Advert {
            version: 2,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            auth: Some(auth_field("labpass1")),
            addrs: vec!["198.18.0.101".parse().unwrap()],
        }
    }

    #[test]
    fn keepalived_v2_capture_decodes_and_reencodes() {
        let b = hex(V2);
        // v2 ignores the IP addresses: any src works.
        let a = Advert::decode(&b, "198.18.0.1".parse().unwrap(), MC).unwrap();
        assert_eq!(a, v2_expected());
        assert_eq!(a.encode("198.18.0.1".parse().unwrap(), MC), b);
        assert_eq!(a.check_for(2, Some(&auth_field("labpass1")), 100), Ok(()));
        assert_eq!(
            a.check_for(2, Some(&auth_field("other")), 100),
            Err(RxError::Auth)
        );
        assert_eq!(a.check_for(2, None, 100), Err(RxError::Auth));
        assert_eq!(
            a.check_for(2, Some(&auth_field("labpass1")), 200),
            Err(RxError::Interval)
        );
        assert_eq!(a.check_for(3, None, 100), Err(RxError::Version));
    }

    /// The v3 capture's checksum includes the pseudo-header; the capture does not record the
    /// sender, so find the lab source address (198.18.0.0/24) that makes it valid, then check
    /// that exactly one does and that re-encoding reproduces the bytes.
    #[test]
    fn keepalived_v3_capture_checksum_uses_pseudo_header() {
        let b = hex(V3);
        let srcs: Vec<IpAddr> = (0..=255u8)
            .map(|i| IpAddr::from([198, 18, 0, i]))
            .filter(|s| Advert::decode(&b, *s, MC).is_ok())
            .collect();
        assert_eq!(srcs.len(), 1, "{srcs:?}");
        let a = Advert::decode(&b, srcs[0], MC).unwrap();
        assert_eq!(a.version, 3);
        assert_eq!(a.vrid, 51);
        assert_eq!(a.priority, 150);
        assert_eq!(a.interval_cs, 100);
        assert_eq!(a.auth, None);
        assert_eq!(a.addrs, vec!["198.18.0.101".parse::<IpAddr>().unwrap()]);
        assert_eq!(a.encode(srcs[0], MC), b);
        // Without the pseudo-header (v2 style) the checksum would differ.
        assert_ne!(checksum(&b, None, IPPROTO_VRRP), 0);
        assert_eq!(a.check_for(3, None, 300), Ok(()), "v3 tolerates intervals");
    }

    #[test]
    fn v3_ipv6_roundtrip() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MCAST_V6);
        let a = Advert {
            version: 3,
            vrid: 7,
            priority: 200,
            interval_cs: 50,
            auth: None,
            addrs: vec![
                "2001:db8::100".parse().unwrap(),
                "2001:db8::101".parse().unwrap(),
            ],
        };
        let b = a.encode(src, dst);
        assert_eq!(b.len(), 8 + 32);
        assert_eq!(Advert::decode(&b, src, dst).unwrap(), a);
        let other: IpAddr = "fe80::2".parse().unwrap();
        assert_eq!(Advert::decode(&b, other, dst), Err(RxError::Checksum));
    }

    #[test]
    fn decode_errors() {
        let src: IpAddr = "198.18.0.1".parse().unwrap();
        let good = hex(V2);
        assert_eq!(Advert::decode(&good[..7], src, MC), Err(RxError::TooShort));
        assert_eq!(Advert::decode(&good[..12], src, MC), Err(RxError::TooShort));
        let mut b = good.clone();
        b[0] = 0x11;
        assert_eq!(Advert::decode(&b, src, MC), Err(RxError::Version));
        let mut b = good.clone();
        b[0] = 0x22;
        assert_eq!(Advert::decode(&b, src, MC), Err(RxError::Type));
        let mut b = good.clone();
        b[2] = 0x97;
        assert_eq!(Advert::decode(&b, src, MC), Err(RxError::Checksum));
        let mut b = good.clone();
        b[3] = 3;
        assert_eq!(Advert::decode(&b, src, MC), Err(RxError::AddressCount));
        // v2 over IPv6 does not exist.
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(Advert::decode(&good, v6, v6), Err(RxError::Version));
        // Unknown auth type (with a fixed-up checksum).
        let mut b = good.clone();
        b[4] = 2;
        b[6] = 0;
        b[7] = 0;
        let c = checksum(&b, None, IPPROTO_VRRP);
        b[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(Advert::decode(&b, src, MC), Err(RxError::Auth));
    }

    #[test]
    fn ipv4_header() {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 255, 112, 0, 0];
        p.extend_from_slice(&[198, 18, 0, 1, 224, 0, 0, 18]);
        p.extend_from_slice(&hex(V2));
        let (s, d, ttl, proto, pl) = parse_ipv4(&p).unwrap();
        assert_eq!(s, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(d, MC);
        assert_eq!((ttl, proto, pl.len()), (255, 112, 20));
    }
}
