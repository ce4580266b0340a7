//! The real servers' side of tunnel mode (`xlb_decap`, attached by `xlb realserver up --tunnel`
//! where the kernel has no ipip/fou modules): strips the IPIP / ip6ip6 / GUE outer header of
//! packets from a configured director to a configured VIP and passes the inner packet to the
//! kernel, as if it had arrived bare on this interface. Everything else passes untouched: other
//! traffic, tunnel packets from anyone else (never decapsulate anything from anyone), inner
//! destinations that are not VIPs, and anything truncated or inconsistent.
//!
//! Two entries share the parsing: `xlb_decap` (XDP) and `xlb_decap_tc` (TC ingress, for links
//! where XDP cannot run). They differ only in how the outer header is removed: XDP moves the
//! L2 header forward and drops the front (`bpf_xdp_adjust_head`); TC asks the kernel to remove
//! the bytes after the MAC header (`bpf_skb_adjust_room`, which also fixes the skb's offsets,
//! checksum state and, across families, its protocol).
use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, xdp_action, BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_OK,
    },
    helpers::bpf_xdp_adjust_head,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use core::ptr::{read_unaligned, write_unaligned};
use lb_common::{decap_stat, DecapKey, AF_INET, AF_INET6};

use crate::maps::{DECAP_CONFIG, DECAP_DIRECTORS, DECAP_STATS, DECAP_VIPS};

/// Direct packet access, as XDP and TC both give it.
trait Frame {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
    /// The whole frame's length (a TC skb may hold more than its linear part `start..end`).
    fn len(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
    #[inline(always)]
    fn len(&self) -> usize {
        self.data_end() - self.data()
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
    #[inline(always)]
    fn len(&self) -> usize {
        TcContext::len(self) as usize
    }
}

/// A pointer to `size_of::<T>()` bytes at `offset`, or `None` if the frame is shorter there.
#[inline(always)]
fn ptr_at<T>(f: &impl Frame, offset: usize) -> Option<*const T> {
    let start = f.start();
    if start + offset + core::mem::size_of::<T>() > f.end() {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn ptr_at_mut<T>(f: &impl Frame, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(f, offset).map(|p| p as *mut T)
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_UDP: u8 = 17;

/// Why a frame is passed untouched.
enum Skip {
    NotTunnel,
    NotAllowed,
    Malformed,
}

#[xdp]
pub fn xlb_decap(ctx: XdpContext) -> u32 {
    count(find(&ctx).and_then(|t| strip_xdp(&ctx, &t)));
    xdp_action::XDP_PASS
}

/// Headers the TC entry needs in the linear part: VLAN tags, outer IPv6 + UDP, inner IPv6.
const TC_HEADERS: u32 = 22 + 40 + 8 + 40;

#[classifier]
pub fn xlb_decap_tc(ctx: TcContext) -> i32 {
    // Packet pointers see only the skb's linear part: make sure the headers are in it (an
    // error leaves the frame as it was; the parser then finds it short and passes it).
    let _ = ctx.pull_data(TC_HEADERS.min(ctx.len()));
    count(find(&ctx).and_then(|t| strip_tc(&ctx, &t)));
    TC_ACT_OK as i32
}

#[inline(always)]
fn count(result: Result<(), Skip>) {
    let stat = match result {
        Ok(()) => decap_stat::DECAPSULATED,
        Err(Skip::NotTunnel) => decap_stat::NOT_TUNNEL,
        Err(Skip::NotAllowed) => decap_stat::NOT_ALLOWED,
        Err(Skip::Malformed) => decap_stat::MALFORMED,
    };
    if let Some(c) = DECAP_STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn be16_at(ctx: &impl Frame, off: usize) -> Result<u16, Skip> {
    let p = ptr_at::<[u8; 2]>(ctx, off).ok_or(Skip::Malformed)?;
    // SAFETY: ptr_at proved the 2 bytes.
    Ok(u16::from_be_bytes(unsafe { read_unaligned(p) }))
}

/// The outer header: its length (IP + UDP) and the inner packet's family.
struct Outer {
    len: usize,
    inner_v6: bool,
}

/// A tunnel packet to strip: its L2 header's length and its outer header.
struct Tunnel {
    l2: usize,
    outer_v6: bool,
    outer: Outer,
}

/// Is `src` a configured director?
#[inline(always)]
fn from_director(addr: [u32; 4], family: u8) -> bool {
    let key = DecapKey {
        addr,
        family,
        _pad: [0; 3],
    };
    // SAFETY: read only to test presence.
    unsafe { DECAP_DIRECTORS.get(&key) }.is_some()
}

#[inline(always)]
fn gue_port() -> u16 {
    DECAP_CONFIG.get(0).map_or(0, |c| c.gue_port)
}

/// Is the UDP datagram at `off` addressed to the GUE port?
#[inline(always)]
fn to_gue_port(ctx: &impl Frame, off: usize) -> Result<bool, Skip> {
    let port = gue_port();
    let p = ptr_at::<[u8; 4]>(ctx, off).ok_or(Skip::Malformed)?;
    // SAFETY: ptr_at proved the 4 bytes.
    let udp = unsafe { read_unaligned(p) };
    Ok(port != 0 && u16::from_ne_bytes([udp[2], udp[3]]) == port)
}

/// The GUE packet whose UDP header is at `off`: the inner family from the first nibble after
/// the UDP header (GUE variant 1, direct IP encapsulation).
#[inline(always)]
fn gue(ctx: &impl Frame, off: usize, outer_len: usize) -> Result<Outer, Skip> {
    let version = be16_at(ctx, off + 8)? >> 12;
    let inner_v6 = match version {
        4 => false,
        6 => true,
        // GUE variant 0 (a GUE header) and anything else: not what directors send.
        _ => return Err(Skip::Malformed),
    };
    Ok(Outer {
        len: outer_len + 8,
        inner_v6,
    })
}

#[inline(always)]
fn outer_v4(ctx: &impl Frame, l2: usize) -> Result<Outer, Skip> {
    let h = ptr_at::<[u8; 20]>(ctx, l2).ok_or(Skip::Malformed)?;
    // SAFETY: ptr_at proved the 20 bytes.
    let h = unsafe { read_unaligned(h) };
    let proto = h[9];
    if proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 && proto != IPPROTO_UDP {
        return Err(Skip::NotTunnel);
    }
    // Options and fragments: not what directors send (the kernel reassembles fragments, and
    // no one decapsulates them then: they are dropped, as they would be without xlb).
    if h[0] != 0x45 || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return Err(Skip::NotTunnel);
    }
    if proto == IPPROTO_UDP && !to_gue_port(ctx, l2 + 20)? {
        return Err(Skip::NotTunnel);
    }
    let src = [u32::from_ne_bytes([h[12], h[13], h[14], h[15]]), 0, 0, 0];
    if !from_director(src, AF_INET) {
        return Err(Skip::NotAllowed);
    }
    let total = u16::from_be_bytes([h[2], h[3]]) as usize;
    if total < 20 || l2 + total > ctx.len() {
        return Err(Skip::Malformed);
    }
    match proto {
        IPPROTO_IPIP => Ok(Outer {
            len: 20,
            inner_v6: false,
        }),
        IPPROTO_IPV6 => Ok(Outer {
            len: 20,
            inner_v6: true,
        }),
        _ => gue(ctx, l2 + 20, 20),
    }
}

#[inline(always)]
fn outer_v6(ctx: &impl Frame, l2: usize) -> Result<Outer, Skip> {
    let h = ptr_at::<[u8; 40]>(ctx, l2).ok_or(Skip::Malformed)?;
    // SAFETY: ptr_at proved the 40 bytes.
    let h = unsafe { read_unaligned(h) };
    let next = h[6];
    if next != IPPROTO_IPIP && next != IPPROTO_IPV6 && next != IPPROTO_UDP {
        return Err(Skip::NotTunnel);
    }
    if next == IPPROTO_UDP && !to_gue_port(ctx, l2 + 40)? {
        return Err(Skip::NotTunnel);
    }
    let w = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if !from_director([w(8), w(12), w(16), w(20)], AF_INET6) {
        return Err(Skip::NotAllowed);
    }
    let payload = u16::from_be_bytes([h[4], h[5]]) as usize;
    if l2 + 40 + payload > ctx.len() {
        return Err(Skip::Malformed);
    }
    match next {
        IPPROTO_IPIP => Ok(Outer {
            len: 40,
            inner_v6: false,
        }),
        IPPROTO_IPV6 => Ok(Outer {
            len: 40,
            inner_v6: true,
        }),
        _ => gue(ctx, l2 + 40, 40),
    }
}

/// The inner packet at `off` must be a whole IP packet of the announced family, to a VIP.
#[inline(always)]
fn inner_ok(ctx: &impl Frame, off: usize, v6: bool) -> Result<(), Skip> {
    let (addr, family, len) = if v6 {
        let h = ptr_at::<[u8; 40]>(ctx, off).ok_or(Skip::Malformed)?;
        // SAFETY: ptr_at proved the 40 bytes.
        let h = unsafe { read_unaligned(h) };
        if h[0] >> 4 != 6 {
            return Err(Skip::Malformed);
        }
        let w = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let len = 40 + u16::from_be_bytes([h[4], h[5]]) as usize;
        ([w(24), w(28), w(32), w(36)], AF_INET6, len)
    } else {
        let h = ptr_at::<[u8; 20]>(ctx, off).ok_or(Skip::Malformed)?;
        // SAFETY: ptr_at proved the 20 bytes.
        let h = unsafe { read_unaligned(h) };
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        if h[0] >> 4 != 4 || (h[0] & 0xf) < 5 || len < ((h[0] & 0xf) as usize) * 4 {
            return Err(Skip::Malformed);
        }
        let dst = u32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
        ([dst, 0, 0, 0], AF_INET, len)
    };
    if off + len > ctx.len() {
        return Err(Skip::Malformed);
    }
    let key = DecapKey {
        addr,
        family,
        _pad: [0; 3],
    };
    // SAFETY: read only to test presence.
    if unsafe { DECAP_VIPS.get(&key) }.is_none() {
        return Err(Skip::NotAllowed);
    }
    Ok(())
}

/// Copies the L2 header (`l2` bytes) forward by `by` bytes, the innermost EtherType set to the
/// inner family, then drops the `by` bytes in front.
#[inline(always)]
fn strip_xdp(ctx: &XdpContext, t: &Tunnel) -> Result<(), Skip> {
    let (l2, by, inner_v6) = (t.l2, t.outer.len, t.outer.inner_v6);
    let (Some(macs), Some(tags)) = (ptr_at::<[u8; 12]>(ctx, 0), ptr_at::<[u8; 10]>(ctx, 12)) else {
        return Err(Skip::Malformed);
    };
    // SAFETY: ptr_at proved the bytes.
    let (macs, mut tags) = unsafe { (read_unaligned(macs), read_unaligned(tags)) };
    let ether_type = if inner_v6 { ETH_P_IPV6 } else { ETH_P_IPV4 }.to_be_bytes();
    let at = l2 - 14;
    if at + 2 > tags.len() {
        return Err(Skip::Malformed);
    }
    tags[at] = ether_type[0];
    tags[at + 1] = ether_type[1];
    let Some(m) = ptr_at_mut::<[u8; 12]>(ctx, by) else {
        return Err(Skip::Malformed);
    };
    // SAFETY: ptr_at_mut proved the bytes; `by` >= 20 > the tags' extent, so only the outer
    // header (about to be dropped) is overwritten.
    unsafe { write_unaligned(m, macs) };
    // Only the L2 header's own tag bytes: what follows them is the inner packet.
    let mut i = 0;
    while i < 5 {
        if 12 + 2 * i + 2 > l2 {
            break;
        }
        let Some(p) = ptr_at_mut::<[u8; 2]>(ctx, by + 12 + 2 * i) else {
            return Err(Skip::Malformed);
        };
        // SAFETY: ptr_at_mut proved the 2 bytes.
        unsafe { write_unaligned(p, [tags[2 * i], tags[2 * i + 1]]) };
        i += 1;
    }
    // SAFETY: the helper only moves ctx's data pointer.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, by as i32) } != 0 {
        return Err(Skip::Malformed);
    }
    Ok(())
}

/// TC: the kernel removes the outer header after the MAC header. At TC ingress the kernel has
/// already taken the outer VLAN tag off the data into the skb (`skb_vlan_untag`); a tag still in
/// the data (stacked tags) makes `bpf_skb_adjust_room` refuse the skb, so such frames are
/// passed untouched (counted malformed), not decapsulated.
#[inline(always)]
fn strip_tc(ctx: &TcContext, t: &Tunnel) -> Result<(), Skip> {
    if t.l2 != 14 {
        return Err(Skip::Malformed);
    }
    let mut flags = BPF_F_ADJ_ROOM_FIXED_GSO as u64;
    // Across families the skb's protocol must change with the packet (kernel 6.3+; an older
    // kernel refuses the flag and the frame passes untouched).
    if t.outer.inner_v6 != t.outer_v6 {
        flags |= if t.outer.inner_v6 {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV6
        } else {
            BPF_F_ADJ_ROOM_DECAP_L3_IPV4
        } as u64;
    }
    ctx.adjust_room(-(t.outer.len as i32), BPF_ADJ_ROOM_MAC, flags)
        .map_err(|_| Skip::Malformed)?;
    if t.outer.inner_v6 != t.outer_v6 {
        let ether_type = if t.outer.inner_v6 {
            ETH_P_IPV6
        } else {
            ETH_P_IPV4
        }
        .to_be_bytes();
        // The frame is now the inner packet; a failure here would leave the old EtherType,
        // which the stack ignores (it reads the skb's protocol), so it is not an error.
        let _ = ctx.store(12, &ether_type, 0);
    }
    Ok(())
}

/// Parses the frame: a tunnel packet from a director to a VIP, or why not.
#[inline(always)]
fn find(ctx: &impl Frame) -> Result<Tunnel, Skip> {
    let mut l2 = 14;
    let mut ether_type = be16_at(ctx, 12)?;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        l2 = 18;
        ether_type = be16_at(ctx, 16)?;
        if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
            l2 = 22;
            ether_type = be16_at(ctx, 20)?;
        }
    }
    let (outer, outer_v6) = match ether_type {
        ETH_P_IPV4 => (outer_v4(ctx, l2)?, false),
        ETH_P_IPV6 => (outer_v6(ctx, l2)?, true),
        _ => return Err(Skip::NotTunnel),
    };
    inner_ok(ctx, l2 + outer.len, outer.inner_v6)?;
    Ok(Tunnel {
        l2,
        outer_v6,
        outer,
    })
}
