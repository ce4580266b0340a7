//! Tunnel mode (LVS-TUN): the chosen real server sits behind a router, so the packet is wrapped
//! in an outer IP header to it (IPIP / ip6ip6, or GUE over UDP) and sent to the next hop; the
//! real server strips the outer header and answers the client itself (direct return as in DR).
//!
//! The Ethernet header and any VLAN tags stay in front; only the innermost EtherType changes to
//! the outer family. The outer header copies the inner DSCP/ECN, carries DF when the inner packet
//! may not be fragmented, TTL 64, and its length comes from the inner IP header (Ethernet padding
//! stays padding). A packet that would exceed the tunnel's MTU is not encapsulated: see
//! [`Encapsulated::TooBig`].
use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use core::ptr::{read_unaligned, write_unaligned};
use lb_common::{
    hash::tunnel_entropy, stat, FlowKey, RealServer, RealTunnel, AF_INET6, TUNNEL_GUE, TUNNEL_NONE,
};

use crate::{
    maps::{count, TUNNELS},
    parse::{ptr_at, ptr_at_mut},
};

mod too_big;
pub use too_big::tail_call as too_big;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_UDP: u8 = 17;
const OUTER_TTL: u8 = 64;
pub(crate) const IPV4_HLEN: usize = 20;
pub(crate) const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
/// GUE source ports come from the flow's tunnel entropy inside the dynamic range
/// (49152..=65535), so a firewall sees ordinary ephemeral ports and the real server's RSS
/// spreads flows.
const GUE_SPORT_BASE: u16 = 0xc000;

/// The GUE source port of a flow with tunnel entropy `h` (its high 14 bits).
#[inline(always)]
fn gue_sport(h: u32) -> u16 {
    GUE_SPORT_BASE | (h >> 18) as u16
}

/// The outer IPv6 flow label of a flow with tunnel entropy `h` (its high 20 bits).
#[inline(always)]
fn flow_label(h: u32) -> u32 {
    h >> 12
}

/// What encapsulation did to the frame.
pub enum Encapsulated {
    /// Not a tunnelled real server: the frame is as it was (direct routing).
    No,
    /// The frame now carries the outer header.
    Yes,
    /// Encapsulated it would exceed the tunnel's MTU, and it may not be fragmented: the frame
    /// is untouched; answer it with [`too_big`], announcing `fits` (the largest inner packet
    /// that fits).
    TooBig { fits: u16 },
    /// Encapsulated it would exceed the tunnel's MTU, and IPv4 without DF: drop it (fragmenting
    /// in XDP is not worth it; the client's stack retransmits smaller only with PMTU discovery).
    TooBigDrop,
    /// The frame could not be encapsulated (truncated headers, no headroom): drop it.
    Failed,
}

/// The inner packet, read before the headroom moves.
pub(crate) struct Inner {
    /// Bytes of Ethernet header (with VLAN tags) before the inner IP header.
    l2_len: usize,
    /// The EtherType field and VLAN tags after the MACs (bytes 12..22), rewritten in front.
    tags: [u8; 10],
    ipv6: bool,
    /// Inner IP packet length from its own header (Ethernet padding excluded).
    len: usize,
    /// DSCP and ECN (IPv4 TOS / IPv6 traffic class).
    tos: u8,
    /// May not be fragmented: IPv4 with DF, and every IPv6 packet (routers never fragment it).
    dont_fragment: bool,
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Reads the L2 header and the inner IP header's length, TOS and DF.
#[inline(always)]
pub(crate) fn inner(ctx: &XdpContext) -> Option<Inner> {
    // SAFETY: ptr_at proved the 10 bytes.
    let tags = unsafe { read_unaligned(ptr_at::<[u8; 10]>(ctx, 12)?) };
    let mut l2_len = 14;
    let mut ether_type = be16([tags[0], tags[1]]);
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        l2_len = 18;
        ether_type = be16([tags[4], tags[5]]);
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            l2_len = 22;
            ether_type = be16([tags[8], tags[9]]);
        }
    }
    let ipv6 = match ether_type {
        ETH_P_IPV4 => false,
        ETH_P_IPV6 => true,
        _ => return None,
    };
    // SAFETY: ptr_at proved the 8 bytes (the parser already checked the whole header).
    let head = unsafe { read_unaligned(ptr_at::<[u8; 8]>(ctx, l2_len)?) };
    let (len, tos, dont_fragment) = if ipv6 {
        let len = be16([head[4], head[5]]) as usize + IPV6_HLEN;
        (len, (head[0] << 4) | (head[1] >> 4), true)
    } else {
        (
            be16([head[2], head[3]]) as usize,
            head[1],
            head[6] & 0x40 != 0,
        )
    };
    Some(Inner {
        l2_len,
        tags,
        ipv6,
        len,
        tos,
        dont_fragment,
    })
}

/// Stores `v` big-endian at `p + off`.
///
/// # Safety
/// `p + off .. p + off + 2` must be proven packet bytes.
#[inline(always)]
pub(crate) unsafe fn put16(p: *mut u8, off: usize, v: u16) {
    unsafe { write_unaligned(p.add(off) as *mut [u8; 2], v.to_be_bytes()) }
}

/// Stores a word already in network order at `p + off`.
///
/// # Safety
/// `p + off .. p + off + 4` must be proven packet bytes.
#[inline(always)]
pub(crate) unsafe fn put_word(p: *mut u8, off: usize, w: u32) {
    unsafe { write_unaligned(p.add(off) as *mut u32, w) }
}

/// One's-complement sum of a network-order word, as two 16-bit halves.
#[inline(always)]
pub(crate) fn word_sum(w: u32) -> u32 {
    let h = u32::from_be(w);
    (h >> 16) + (h & 0xffff)
}

/// Finishes an IPv4 header checksum from the sum of its 16-bit words.
#[inline(always)]
pub(crate) fn finish_checksum(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Writes the outer IPv4 header at `l2`. The headers are written straight into the packet
/// (no header image on the stack: the program's 512-byte stack is shared with its callers).
#[inline(always)]
fn write_ipv4(
    ctx: &XdpContext,
    l2: usize,
    src: u32,
    dst: u32,
    inner: &Inner,
    proto: u8,
    total: usize,
) -> bool {
    let Some(p) = ptr_at_mut::<[u8; IPV4_HLEN]>(ctx, l2) else {
        return false;
    };
    let p = p as *mut u8;
    let w0 = 0x4500 | inner.tos as u16;
    let flags = if inner.dont_fragment { 0x4000 } else { 0 };
    let w4 = ((OUTER_TTL as u16) << 8) | proto as u16;
    let sum = w0 as u32 + total as u32 + flags as u32 + w4 as u32 + word_sum(src) + word_sum(dst);
    // SAFETY: ptr_at_mut proved the 20 bytes.
    unsafe {
        put16(p, 0, w0);
        put16(p, 2, total as u16);
        put16(p, 4, 0);
        put16(p, 6, flags);
        put16(p, 8, w4);
        put16(p, 10, finish_checksum(sum));
        put_word(p, 12, src);
        put_word(p, 16, dst);
    }
    true
}

/// Writes the outer IPv6 header at `l2`; the flow label comes from the flow's tunnel entropy
/// (RFC 6438: routers' ECMP then spreads tunnelled flows as it would spread the inner ones).
#[inline(always)]
fn write_ipv6(
    ctx: &XdpContext,
    l2: usize,
    t: &RealTunnel,
    real: &RealServer,
    inner: &Inner,
    proto: u8,
    payload: usize,
    hash: u32,
) -> bool {
    let Some(p) = ptr_at_mut::<[u8; IPV6_HLEN]>(ctx, l2) else {
        return false;
    };
    let p = p as *mut u8;
    let first = (6u32 << 28) | ((inner.tos as u32) << 20) | flow_label(hash);
    // SAFETY: ptr_at_mut proved the 40 bytes.
    unsafe {
        put_word(p, 0, first.to_be());
        put16(p, 4, payload as u16);
        put16(p, 6, ((proto as u16) << 8) | OUTER_TTL as u16);
        let mut i = 0;
        while i < 4 {
            put_word(p, 8 + i * 4, t.src[i]);
            put_word(p, 24 + i * 4, real.addr[i]);
            i += 1;
        }
    }
    true
}

/// Writes the UDP header of a GUE packet at `off`. The checksum is zero: allowed for IPv4, and
/// for IPv6 tunnels by RFC 6935 (the receiver must accept it: Linux FOU needs
/// `udp6zerocsumrx`, xlb's decap program does not check it); the inner packet has its own.
#[inline(always)]
fn write_gue_udp(
    ctx: &XdpContext,
    off: usize,
    t: &RealTunnel,
    inner_len: usize,
    hash: u32,
) -> bool {
    let Some(p) = ptr_at_mut::<[u8; UDP_HLEN]>(ctx, off) else {
        return false;
    };
    let p = p as *mut u8;
    // SAFETY: ptr_at_mut proved the 8 bytes.
    unsafe {
        put16(p, 0, gue_sport(hash));
        put16(p, 2, u16::from_be(t.port));
        put16(p, 4, (inner_len + UDP_HLEN) as u16);
        put16(p, 6, 0);
    }
    true
}

/// Wraps the frame for `real` (slot `real_id`) if that real server is tunnelled.
#[inline(always)]
pub fn encapsulate(
    ctx: &XdpContext,
    flow: &FlowKey,
    real_id: u32,
    real: &RealServer,
) -> Encapsulated {
    let Some(t) = TUNNELS.get(real_id) else {
        return Encapsulated::No;
    };
    if t.kind == TUNNEL_NONE {
        return Encapsulated::No;
    }
    let Some(inner) = inner(ctx) else {
        return Encapsulated::Failed;
    };
    let outer_v6 = real.family == AF_INET6;
    let gue = t.kind == TUNNEL_GUE;
    let ip_hlen = if outer_v6 { IPV6_HLEN } else { IPV4_HLEN };
    let overhead = ip_hlen + if gue { UDP_HLEN } else { 0 };
    if inner.len + overhead > t.mtu as usize {
        if !inner.dont_fragment {
            count(stat::TOO_BIG_DROPPED);
            return Encapsulated::TooBigDrop;
        }
        return Encapsulated::TooBig {
            fits: t.mtu.saturating_sub(overhead as u16),
        };
    }
    let proto = if gue {
        IPPROTO_UDP
    } else if inner.ipv6 {
        IPPROTO_IPV6
    } else {
        IPPROTO_IPIP
    };
    // The entropy is the flow's (the client's direction), also for an ICMP error about the
    // flow: the error then arrives on the same GUE port / flow label as the flow.
    let hash = if gue || outer_v6 {
        tunnel_entropy(flow)
    } else {
        0
    };
    // SAFETY: the helper only moves ctx's data pointer; every pointer is re-derived after it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(overhead as i32)) } != 0 {
        return Encapsulated::Failed;
    }
    let mut tags = inner.tags;
    let outer_type = if outer_v6 { ETH_P_IPV6 } else { ETH_P_IPV4 }.to_be_bytes();
    let at = inner.l2_len - 14;
    if at + 2 > tags.len() {
        return Encapsulated::Failed;
    }
    tags[at] = outer_type[0];
    tags[at + 1] = outer_type[1];
    let Some(tag_p) = ptr_at_mut::<[u8; 10]>(ctx, 12) else {
        return Encapsulated::Failed;
    };
    // SAFETY: ptr_at_mut proved the bytes. The tag bytes past the L2 header are overwritten by
    // the outer IP header right after.
    unsafe { write_unaligned(tag_p, tags) };
    let l2 = inner.l2_len;
    let written = if outer_v6 {
        let payload = inner.len + overhead - IPV6_HLEN;
        write_ipv6(ctx, l2, t, real, &inner, proto, payload, hash)
    } else {
        let total = inner.len + overhead;
        write_ipv4(ctx, l2, t.src[0], real.addr[0], &inner, proto, total)
    };
    if !written || (gue && !write_gue_udp(ctx, l2 + ip_hlen, t, inner.len, hash)) {
        return Encapsulated::Failed;
    }
    count(stat::TUNNELLED);
    Encapsulated::Yes
}
