//! Header parsing. Every read goes through `ptr_at`, whose bounds check sits next to the pointer it
//! guards, so the verifier sees each access proven against `data_end`.
use core::{mem::size_of, ptr::read_unaligned};

use aya_ebpf::programs::XdpContext;
use lb_common::{FlowKey, AF_INET, AF_INET6, PROTO_TCP, PROTO_UDP};

pub const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DSTOPTS: u8 = 60;
/// Extension headers walked before giving up (passed as "not a service" beyond that).
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Returns a pointer to `size_of::<T>()` bytes at `offset`, or `None` if the packet is shorter.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Two bytes at `offset`. There is deliberately no one-byte reader: LLVM folds a one-byte bound
/// check `p + 1 > end` into `p >= end`, which the verifier cannot use to prove the access.
#[inline(always)]
fn read_2(ctx: &XdpContext, offset: usize) -> Option<[u8; 2]> {
    // SAFETY: ptr_at proved both bytes are inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| unsafe { read_unaligned(p) })
}

#[inline(always)]
fn read_be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    // SAFETY: ptr_at proved both bytes are inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_be_bytes(unsafe { read_unaligned(p) }))
}

/// Raw (network-order) 16-bit field, as stored in `FlowKey` ports.
#[inline(always)]
fn read_raw16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    // SAFETY: ptr_at proved both bytes are inside the packet.
    ptr_at::<[u8; 2]>(ctx, offset).map(|p| u16::from_ne_bytes(unsafe { read_unaligned(p) }))
}

/// What the parser found.
pub enum Parsed {
    /// Not IPv4/IPv6 TCP/UDP/ICMP-error: hand to the kernel untouched.
    Other,
    /// Headers truncated or inconsistent.
    Malformed,
    /// A TCP or UDP packet (not a fragment).
    Flow { flow: FlowKey, tcp_flags: u8 },
    /// An IP fragment: `flow` has addresses and protocol; ports only if `first` (else zero).
    Fragment { flow: FlowKey },
    /// An ICMP/ICMPv6 error whose quoted packet is a flow's reply; `flow` is that flow as the
    /// client sends it (quoted destination -> source, ports swapped).
    IcmpError { flow: FlowKey },
}

/// Parses Ethernet (0-2 VLAN tags) and dispatches on the EtherType.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Parsed {
    let Some(mut ether_type) = read_be16(ctx, 12) else {
        return Parsed::Malformed;
    };
    let mut off = ETH_HLEN;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let Some(inner) = read_be16(ctx, off + 2) else {
            return Parsed::Malformed;
        };
        ether_type = inner;
        off += 4;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            let Some(inner) = read_be16(ctx, off + 2) else {
                return Parsed::Malformed;
            };
            ether_type = inner;
            off += 4;
        }
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, off),
        ETH_P_IPV6 => parse_ipv6(ctx, off),
        _ => Parsed::Other,
    }
}

/// A `T` at byte `at` of a header whose bytes `ptr_at` proved: one (misaligned) load, where
/// assembling a field from a byte array costs a load, a shift and an or per byte.
///
/// # Safety
/// `hdr + at .. hdr + at + size_of::<T>()` is inside the packet.
#[inline(always)]
unsafe fn field<T>(hdr: *const u8, at: usize) -> T {
    // SAFETY: the caller's promise; read_unaligned has no alignment requirement.
    unsafe { read_unaligned(hdr.add(at).cast::<T>()) }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Parsed {
    let Some(hdr) = ptr_at::<[u8; 20]>(ctx, off) else {
        return Parsed::Malformed;
    };
    let hdr = hdr.cast::<u8>();
    // SAFETY: ptr_at proved 20 bytes.
    let (version_ihl, total_len, frag, proto, src, dst) = unsafe {
        (
            field::<u8>(hdr, 0),
            u16::from_be(field::<u16>(hdr, 2)) as usize,
            u16::from_be(field::<u16>(hdr, 6)),
            field::<u8>(hdr, 9),
            field::<u32>(hdr, 12),
            field::<u32>(hdr, 16),
        )
    };
    if version_ihl >> 4 != 4 {
        return Parsed::Malformed;
    }
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if ihl < 20 || total_len < ihl || ctx.data() + off + total_len > ctx.data_end() {
        return Parsed::Malformed;
    }
    let mut flow = FlowKey {
        src: [src, 0, 0, 0],
        dst: [dst, 0, 0, 0],
        sport: 0,
        dport: 0,
        proto,
        family: AF_INET,
        _pad: [0; 2],
    };
    let l4 = off + ihl;
    if frag & 0x3fff != 0 {
        // MF set or offset non-zero.
        if proto != PROTO_TCP && proto != PROTO_UDP {
            return Parsed::Other;
        }
        if frag & 0x1fff == 0 {
            if let (Some(s), Some(d)) = (read_raw16(ctx, l4), read_raw16(ctx, l4 + 2)) {
                flow.sport = s;
                flow.dport = d;
            }
        }
        return Parsed::Fragment { flow };
    }
    match proto {
        PROTO_TCP | PROTO_UDP => l4_ports(ctx, l4, flow),
        IPPROTO_ICMP => icmp4_error(ctx, l4, &flow),
        _ => Parsed::Other,
    }
}

#[inline(always)]
fn l4_ports(ctx: &XdpContext, l4: usize, mut flow: FlowKey) -> Parsed {
    if flow.proto == PROTO_TCP {
        let Some(tcp) = ptr_at::<[u8; 20]>(ctx, l4) else {
            return Parsed::Malformed;
        };
        let tcp = tcp.cast::<u8>();
        // SAFETY: ptr_at proved 20 bytes.
        let (sport, dport, data_off, flags) = unsafe {
            (
                field::<u16>(tcp, 0),
                field::<u16>(tcp, 2),
                field::<u8>(tcp, 12),
                field::<u8>(tcp, 13),
            )
        };
        if (data_off >> 4) < 5 {
            return Parsed::Malformed;
        }
        flow.sport = sport;
        flow.dport = dport;
        Parsed::Flow {
            flow,
            tcp_flags: flags,
        }
    } else {
        let Some(udp) = ptr_at::<[u8; 8]>(ctx, l4) else {
            return Parsed::Malformed;
        };
        let udp = udp.cast::<u8>();
        // SAFETY: ptr_at proved 8 bytes.
        let (sport, dport, len) = unsafe {
            (
                field::<u16>(udp, 0),
                field::<u16>(udp, 2),
                u16::from_be(field::<u16>(udp, 4)),
            )
        };
        if (len as usize) < 8 {
            return Parsed::Malformed;
        }
        flow.sport = sport;
        flow.dport = dport;
        Parsed::Flow { flow, tcp_flags: 0 }
    }
}

/// ICMP destination unreachable (incl. fragmentation needed) and time exceeded quote the packet
/// that caused them: a reply from a real server (source = VIP). The error goes where that flow goes.
#[inline(always)]
fn icmp4_error(ctx: &XdpContext, l4: usize, outer: &FlowKey) -> Parsed {
    let Some([icmp_type, _code]) = read_2(ctx, l4) else {
        return Parsed::Malformed;
    };
    if icmp_type != 3 && icmp_type != 11 {
        return Parsed::Other;
    }
    let inner = l4 + 8;
    let Some(hdr) = ptr_at::<[u8; 20]>(ctx, inner) else {
        return Parsed::Malformed;
    };
    // SAFETY: ptr_at proved 20 bytes.
    let hdr = unsafe { read_unaligned(hdr) };
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    let proto = hdr[9];
    if hdr[0] >> 4 != 4 || ihl < 20 {
        return Parsed::Malformed;
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return Parsed::Other;
    }
    let quoted_src = u32::from_ne_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
    let quoted_dst = u32::from_ne_bytes([hdr[16], hdr[17], hdr[18], hdr[19]]);
    if quoted_src != outer.dst[0] {
        // Not about a packet sent from the address it was delivered to: not ours to steer.
        return Parsed::Other;
    }
    let (Some(qs), Some(qd)) = (
        read_raw16(ctx, inner + ihl),
        read_raw16(ctx, inner + ihl + 2),
    ) else {
        return Parsed::Malformed;
    };
    Parsed::IcmpError {
        flow: FlowKey {
            src: [quoted_dst, 0, 0, 0],
            dst: [quoted_src, 0, 0, 0],
            sport: qd,
            dport: qs,
            proto,
            family: AF_INET,
            _pad: [0; 2],
        },
    }
}

#[inline(always)]
fn addr6(hdr: &[u8; 40], at: usize) -> [u32; 4] {
    let w = |i: usize| {
        u32::from_ne_bytes([
            hdr[at + i],
            hdr[at + i + 1],
            hdr[at + i + 2],
            hdr[at + i + 3],
        ])
    };
    [w(0), w(4), w(8), w(12)]
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Parsed {
    // The fixed header is checked before the payload length: the verifier needs a constant-size
    // check to know these 40 bytes are there (LLVM drops later checks the length check implies).
    let Some(hdr) = ptr_at::<[u8; 40]>(ctx, off) else {
        return Parsed::Malformed;
    };
    // SAFETY: ptr_at proved 40 bytes.
    let hdr = unsafe { read_unaligned(hdr) };
    if hdr[0] >> 4 != 6 {
        return Parsed::Malformed;
    }
    let payload_len = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    if ctx.data() + off + 40 + payload_len > ctx.data_end() {
        return Parsed::Malformed;
    }
    let src = addr6(&hdr, 8);
    let dst = addr6(&hdr, 24);
    let mut next = hdr[6];
    let mut l4 = off + 40;
    let mut fragment = false;
    let mut first_fragment = true;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        match next {
            IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS | IPV6_AUTH => {
                let Some([nh, len]) = read_2(ctx, l4) else {
                    return Parsed::Malformed;
                };
                // The length unit is the skipped header's (AH: 4 bytes, others: 8), not the next one's.
                let skipped = next;
                next = nh;
                l4 += if skipped == IPV6_AUTH {
                    (len as usize + 2) * 4
                } else {
                    (len as usize + 1) * 8
                };
            }
            IPV6_FRAGMENT => {
                let (Some([nh, _reserved]), Some(fo)) = (read_2(ctx, l4), read_be16(ctx, l4 + 2))
                else {
                    return Parsed::Malformed;
                };
                next = nh;
                fragment = true;
                first_fragment = fo & 0xfff8 == 0;
                l4 += 8;
            }
            _ => break,
        }
    }
    let mut flow = FlowKey {
        src,
        dst,
        sport: 0,
        dport: 0,
        proto: next,
        family: AF_INET6,
        _pad: [0; 2],
    };
    if fragment {
        if next != PROTO_TCP && next != PROTO_UDP {
            return Parsed::Other;
        }
        if first_fragment {
            if let (Some(s), Some(d)) = (read_raw16(ctx, l4), read_raw16(ctx, l4 + 2)) {
                flow.sport = s;
                flow.dport = d;
            }
        }
        return Parsed::Fragment { flow };
    }
    match next {
        PROTO_TCP | PROTO_UDP => l4_ports(ctx, l4, flow),
        IPPROTO_ICMPV6 => icmp6_error(ctx, l4, &flow),
        _ => Parsed::Other,
    }
}

/// ICMPv6 destination unreachable (1), packet too big (2), time exceeded (3).
#[inline(always)]
fn icmp6_error(ctx: &XdpContext, l4: usize, outer: &FlowKey) -> Parsed {
    let Some([icmp_type, _code]) = read_2(ctx, l4) else {
        return Parsed::Malformed;
    };
    if icmp_type == 0 || icmp_type > 3 {
        return Parsed::Other;
    }
    let inner = l4 + 8;
    let Some(head) = ptr_at::<[u8; 40]>(ctx, inner) else {
        return Parsed::Malformed;
    };
    // SAFETY: ptr_at proved 40 bytes.
    let head = unsafe { read_unaligned(head) };
    let (ver, proto) = (head[0], head[6]);
    if ver >> 4 != 6 {
        return Parsed::Malformed;
    }
    if proto != PROTO_TCP && proto != PROTO_UDP {
        // Quoted packets with extension headers are left to the kernel.
        return Parsed::Other;
    }
    let qsrc = addr6(&head, 8);
    let qdst = addr6(&head, 24);
    if qsrc != outer.dst {
        return Parsed::Other;
    }
    let (Some(qs), Some(qd)) = (read_raw16(ctx, inner + 40), read_raw16(ctx, inner + 42)) else {
        return Parsed::Malformed;
    };
    Parsed::IcmpError {
        flow: FlowKey {
            src: qdst,
            dst: qsrc,
            sport: qd,
            dport: qs,
            proto,
            family: AF_INET6,
            _pad: [0; 2],
        },
    }
}
