//! Path MTU for tunnelled flows: a client packet that would exceed the tunnel's MTU once
//! encapsulated is answered here, in XDP, with ICMP "fragmentation needed" (IPv4 with DF) or
//! ICMPv6 "packet too big", announcing the largest inner packet that fits, and sent back out of
//! the receiving interface (XDP_TX). TCP then lowers its segment size; nothing is fragmented.
//!
//! The frame is rewritten in place: trimmed to its L2 header plus the quoted start of the
//! packet, the L2 header moved forward with its MACs swapped, and the new IP + ICMP headers
//! written between them. The error comes from the address the client sent to (the VIP).
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    macros::xdp,
    programs::XdpContext,
};
use core::ptr::{read_unaligned, write_unaligned};

use lb_common::{stat, TUNNEL_PROG_TOO_BIG};

use super::{finish_checksum, put16, put_word, word_sum, IPV4_HLEN, IPV6_HLEN};
use crate::{
    maps::{count, TOO_BIG_MTU, TUNNEL_PROGS},
    parse::{ptr_at, ptr_at_mut},
};

const ICMP_HLEN: usize = 8;
/// Bytes of the offending IPv4 packet quoted: the longest header (60) plus the 8 bytes RFC 792
/// asks for (the ports, which the client's kernel needs to find the socket).
const QUOTE_V4: usize = 68;
/// Bytes of the offending IPv6 packet quoted (RFC 4443 asks for as much as fits in 1280; the
/// header and the ports are what the client's kernel reads, and `bpf_csum_diff` sums at most
/// 512 bytes).
const QUOTE_V6: usize = 120;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const TTL: u8 = 64;

/// Folds a 32-bit one's-complement sum (of native-order words) into a checksum to store as is.
#[inline(always)]
fn fold(sum: u64) -> u16 {
    let mut s = (sum & 0xffff_ffff) + (sum >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    !(s as u16)
}

/// Trims the frame to `keep` bytes, then makes `room` bytes of headroom; false if either fails.
#[inline(always)]
fn reshape(ctx: &XdpContext, keep: usize, room: usize) -> bool {
    let len = ctx.data_end() - ctx.data();
    if len < keep {
        return false;
    }
    // SAFETY: the helpers only move ctx's data pointers; every pointer is re-derived after.
    unsafe {
        bpf_xdp_adjust_tail(ctx.ctx, -((len - keep) as i32)) == 0
            && bpf_xdp_adjust_head(ctx.ctx, -(room as i32)) == 0
    }
}

/// Moves the L2 header (now at `room`) to the front with its MACs swapped (back to the
/// sender); the tags and EtherType stay.
#[inline(always)]
fn l2_back(ctx: &XdpContext, room: usize) -> bool {
    let (Some(dst), Some(src), Some(tags), Some(out), Some(out_tags)) = (
        ptr_at::<[u8; 6]>(ctx, room),
        ptr_at::<[u8; 6]>(ctx, room + 6),
        ptr_at::<[u8; 10]>(ctx, room + 12),
        ptr_at_mut::<[u8; 12]>(ctx, 0),
        ptr_at_mut::<[u8; 10]>(ctx, 12),
    ) else {
        return false;
    };
    // SAFETY: ptr_at/ptr_at_mut proved every range; `room` (28 or 48) exceeds the longest L2
    // header (22), so the source and destination do not overlap. The tag bytes past the L2
    // header are overwritten by the IP header right after.
    unsafe {
        let (d, s, t) = (
            read_unaligned(dst),
            read_unaligned(src),
            read_unaligned(tags),
        );
        write_unaligned(out as *mut [u8; 6], s);
        write_unaligned((out as *mut u8).add(6) as *mut [u8; 6], d);
        write_unaligned(out_tags, t);
    }
    true
}

/// Hands the frame to the "too big" program (a tail call: the answer is built on a stack of
/// its own, the main program's being nearly full), announcing `mtu` (the largest packet that
/// fits the tunnel). Returns only if that fails: the frame is then dropped.
#[inline(always)]
pub fn tail_call(ctx: &XdpContext, mtu: u16) -> u32 {
    if let Some(slot) = TOO_BIG_MTU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, read by the tail-called program on this CPU right after.
        unsafe { *slot = mtu };
    }
    // SAFETY: returns only when the slot is empty (loader did not set it).
    let _ = unsafe { TUNNEL_PROGS.tail_call(ctx, TUNNEL_PROG_TOO_BIG) };
    count(stat::TOO_BIG_DROPPED);
    xdp_action::XDP_DROP
}

/// The tail-called program: answers the frame with an ICMP error announcing `TOO_BIG_MTU`.
#[xdp]
pub fn xlb_too_big(ctx: XdpContext) -> u32 {
    let action = answer(&ctx);
    crate::count_action(action);
    action
}

#[inline(always)]
fn answer(ctx: &XdpContext) -> u32 {
    let Some(mtu) = TOO_BIG_MTU.get(0).copied() else {
        return xdp_action::XDP_DROP;
    };
    let Some(inner) = super::inner(ctx) else {
        return xdp_action::XDP_DROP;
    };
    let done = if inner.ipv6 {
        answer_v6(ctx, inner.l2_len, mtu)
    } else {
        answer_v4(ctx, inner.l2_len, mtu)
    };
    if done {
        count(stat::TOO_BIG_ANSWERED);
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// Sums `len` bytes at `p` (proven by the caller) into `seed` and stores the folded checksum at
/// `p + 2`.
///
/// # Safety
/// `p .. p + len` must be proven packet bytes; `len` a multiple of 4, at most 512.
#[inline(always)]
unsafe fn store_icmp_checksum(p: *mut u8, len: u32, seed: u32) -> bool {
    let sum = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, p as *mut u32, len, seed) };
    if sum < 0 {
        return false;
    }
    unsafe { write_unaligned(p.add(2) as *mut [u8; 2], fold(sum as u64).to_ne_bytes()) };
    true
}

#[inline(always)]
fn answer_v4(ctx: &XdpContext, l2: usize, mtu: u16) -> bool {
    const ROOM: usize = IPV4_HLEN + ICMP_HLEN;
    if !reshape(ctx, l2 + QUOTE_V4, ROOM) || !l2_back(ctx, ROOM) {
        return false;
    }
    // The offending packet's header now starts at ROOM + l2, right after the ICMP header.
    let (Some(orig), Some(ip), Some(icmp)) = (
        ptr_at::<[u32; 5]>(ctx, ROOM + l2),
        ptr_at_mut::<[u8; IPV4_HLEN]>(ctx, l2),
        ptr_at_mut::<[u8; ICMP_HLEN + QUOTE_V4]>(ctx, l2 + IPV4_HLEN),
    ) else {
        return false;
    };
    let (ip, icmp) = (ip as *mut u8, icmp as *mut u8);
    // SAFETY: ptr_at/ptr_at_mut proved every range; the new headers end where `orig` starts.
    unsafe {
        let orig_src = read_unaligned(&(*orig)[3]);
        let orig_dst = read_unaligned(&(*orig)[4]);
        let total = (ROOM + QUOTE_V4) as u16;
        let w4 = ((TTL as u16) << 8) | IPPROTO_ICMP as u16;
        let sum =
            0x4500 + total as u32 + 0x4000 + w4 as u32 + word_sum(orig_src) + word_sum(orig_dst);
        put16(ip, 0, 0x4500);
        put16(ip, 2, total);
        put16(ip, 4, 0);
        put16(ip, 6, 0x4000);
        put16(ip, 8, w4);
        put16(ip, 10, finish_checksum(sum));
        put_word(ip, 12, orig_dst);
        put_word(ip, 16, orig_src);
        // Destination unreachable, fragmentation needed and DF set; RFC 1191's next-hop MTU.
        put16(icmp, 0, 0x0304);
        put16(icmp, 2, 0);
        put16(icmp, 4, 0);
        put16(icmp, 6, mtu);
        store_icmp_checksum(icmp, (ICMP_HLEN + QUOTE_V4) as u32, 0)
    }
}

#[inline(always)]
fn answer_v6(ctx: &XdpContext, l2: usize, mtu: u16) -> bool {
    const ROOM: usize = IPV6_HLEN + ICMP_HLEN;
    if !reshape(ctx, l2 + QUOTE_V6, ROOM) || !l2_back(ctx, ROOM) {
        return false;
    }
    let (Some(orig), Some(ip), Some(icmp)) = (
        ptr_at::<[u32; 10]>(ctx, ROOM + l2),
        ptr_at_mut::<[u8; IPV6_HLEN]>(ctx, l2),
        ptr_at_mut::<[u8; ICMP_HLEN + QUOTE_V6]>(ctx, l2 + IPV6_HLEN),
    ) else {
        return false;
    };
    let (ip, icmp) = (ip as *mut u8, icmp as *mut u8);
    let icmp_len = (ICMP_HLEN + QUOTE_V6) as u32;
    // Pseudo-header (RFC 8200 8.1) in native-order words: addresses, length, next header.
    let mut seed: u64 = u32::from_ne_bytes(icmp_len.to_be_bytes()) as u64
        + u32::from_ne_bytes((IPPROTO_ICMPV6 as u32).to_be_bytes()) as u64;
    // SAFETY: ptr_at/ptr_at_mut proved every range; the new headers end where `orig` starts.
    unsafe {
        put_word(ip, 0, (6u32 << 28).to_be());
        put16(ip, 4, icmp_len as u16);
        put16(ip, 6, ((IPPROTO_ICMPV6 as u16) << 8) | TTL as u16);
        let mut i = 0;
        while i < 4 {
            let src = read_unaligned(&(*orig)[2 + i]);
            let dst = read_unaligned(&(*orig)[6 + i]);
            put_word(ip, 8 + i * 4, dst);
            put_word(ip, 24 + i * 4, src);
            seed += src as u64 + dst as u64;
            i += 1;
        }
        // Packet too big: the MTU as 32 bits.
        put16(icmp, 0, 0x0200);
        put16(icmp, 2, 0);
        put_word(icmp, 4, (mtu as u32).to_be());
        let seed = (seed & 0xffff_ffff) + (seed >> 32);
        let seed = (seed & 0xffff_ffff) + (seed >> 32);
        store_icmp_checksum(icmp, icmp_len, seed as u32)
    }
}
