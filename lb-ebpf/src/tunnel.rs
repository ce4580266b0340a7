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
    hash::flow_hash, stat, FlowKey, RealServer, RealTunnel, AF_INET6, TUNNEL_GUE, TUNNEL_NONE,
};

use crate::{
    maps::{count, TUNNELS},
    parse::{ptr_at, ptr_at_mut},
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_UDP: u8 = 17;
const OUTER_TTL: u8 = 64;
const IPV4_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const UDP_HLEN: usize = 8;
/// GUE source ports come from the flow hash inside the dynamic range (49152..=65535), so a
/// firewall sees ordinary ephemeral ports and the real server's RSS spreads flows.
const GUE_SPORT_BASE: u16 = 0xc000;

/// What encapsulation did to the frame.
pub enum Encapsulated {
    /// Not a tunnelled real server: the frame is as it was (direct routing).
    No,
    /// The frame now carries the outer header.
    Yes,
    /// Encapsulated it would exceed the tunnel's MTU: the frame is untouched; `mtu` is the
    /// largest inner packet that fits (what an ICMP "too big" announces).
    #[allow(dead_code)] // read by the path-MTU answer
    TooBig { mtu: u16 },
    /// The frame could not be encapsulated (truncated headers, no headroom): drop it.
    Failed,
}

/// The inner packet, read before the headroom moves.
struct Inner {
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
fn inner(ctx: &XdpContext) -> Option<Inner> {
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

/// The one's-complement checksum of an IPv4 header whose checksum field is zero.
#[inline(always)]
fn ipv4_checksum(h: &[u8; IPV4_HLEN]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < IPV4_HLEN {
        sum += be16([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn outer_ipv4(
    t: &RealTunnel,
    real: &RealServer,
    inner: &Inner,
    proto: u8,
    total: usize,
) -> [u8; 20] {
    let mut h = [0u8; IPV4_HLEN];
    h[0] = 0x45;
    h[1] = inner.tos;
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    if inner.dont_fragment {
        h[6] = 0x40;
    }
    h[8] = OUTER_TTL;
    h[9] = proto;
    h[12..16].copy_from_slice(&t.src[0].to_ne_bytes());
    h[16..20].copy_from_slice(&real.addr[0].to_ne_bytes());
    let sum = ipv4_checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

#[inline(always)]
fn outer_ipv6(
    t: &RealTunnel,
    real: &RealServer,
    inner: &Inner,
    proto: u8,
    payload: usize,
    hash: u32,
) -> [u8; 40] {
    let mut h = [0u8; IPV6_HLEN];
    // Version 6, traffic class copied, flow label from the flow hash (RFC 6438: routers' ECMP
    // then spreads tunnelled flows as it would spread the inner ones).
    let label = hash & 0x000f_ffff;
    let first = (6u32 << 28) | ((inner.tos as u32) << 20) | label;
    h[0..4].copy_from_slice(&first.to_be_bytes());
    h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
    h[6] = proto;
    h[7] = OUTER_TTL;
    let mut i = 0;
    while i < 4 {
        h[8 + i * 4..12 + i * 4].copy_from_slice(&t.src[i].to_ne_bytes());
        h[24 + i * 4..28 + i * 4].copy_from_slice(&real.addr[i].to_ne_bytes());
        i += 1;
    }
    h
}

/// UDP header of a GUE packet. The checksum is zero: allowed for IPv4, and for IPv6 tunnels
/// by RFC 6935 (the receiver must accept it: Linux FOU needs `udp6zerocsumrx`, xlb's decap
/// program does not check it); the inner packet has its own checksums.
#[inline(always)]
fn gue_udp(t: &RealTunnel, inner_len: usize, hash: u32) -> [u8; UDP_HLEN] {
    let mut u = [0u8; UDP_HLEN];
    let sport = GUE_SPORT_BASE | (hash as u16 & 0x3fff);
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&t.port.to_ne_bytes());
    u[4..6].copy_from_slice(&((inner_len + UDP_HLEN) as u16).to_be_bytes());
    u
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
        return Encapsulated::TooBig {
            mtu: t.mtu.saturating_sub(overhead as u16),
        };
    }
    let proto = if gue {
        IPPROTO_UDP
    } else if inner.ipv6 {
        IPPROTO_IPV6
    } else {
        IPPROTO_IPIP
    };
    // The hash is the flow's (the client's direction), also for an ICMP error about the flow:
    // the error then arrives on the same GUE port / flow label as the flow.
    let hash = if gue || outer_v6 { flow_hash(flow) } else { 0 };
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
    if outer_v6 {
        let Some(p) = ptr_at_mut::<[u8; IPV6_HLEN]>(ctx, inner.l2_len) else {
            return Encapsulated::Failed;
        };
        let payload = inner.len + overhead - IPV6_HLEN;
        // SAFETY: ptr_at_mut proved the bytes.
        unsafe { write_unaligned(p, outer_ipv6(t, real, &inner, proto, payload, hash)) };
    } else {
        let Some(p) = ptr_at_mut::<[u8; IPV4_HLEN]>(ctx, inner.l2_len) else {
            return Encapsulated::Failed;
        };
        let total = inner.len + overhead;
        // SAFETY: ptr_at_mut proved the bytes.
        unsafe { write_unaligned(p, outer_ipv4(t, real, &inner, proto, total)) };
    }
    if gue {
        let Some(p) = ptr_at_mut::<[u8; UDP_HLEN]>(ctx, inner.l2_len + ip_hlen) else {
            return Encapsulated::Failed;
        };
        // SAFETY: ptr_at_mut proved the bytes.
        unsafe { write_unaligned(p, gue_udp(t, inner.len, hash)) };
    }
    count(stat::TUNNELLED);
    Encapsulated::Yes
}
