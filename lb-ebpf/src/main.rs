//! xlb's XDP program: IPVS direct routing at XDP speed.
//! destination MAC -> parse -> VIP pre-filter -> connection table (hit: service state and real
//! server by id) -> on a miss, service lookup and Maglev -> MAC rewrite -> TX/REDIRECT -> count.
#![no_std]
#![no_main]

mod bench;
mod conntable;
mod conntrack;
mod decap;
mod forward;
mod maps;
mod parse;
mod persist;
mod select;
mod sync;
mod tunnel;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use conntrack::{Dispatch, Lookup};
use lb_common::{
    hash::vip_filter_bit, stat, FlowKey, Service, ServiceKey, VipKey, MAX_IFACE_SLOTS, NO_REAL,
    PROTO_TCP, SCHED_ROUND_ROBIN, SVC_F_ACTIVE, VIP_F_FRAG_TCP, VIP_F_FRAG_UDP,
};
use maps::{
    count, count_traffic, AUX_COUNT, IFACE_MACS, REAL_STATS, SERVICES, SERVICE_STATS, VIPS,
    VIP_FILTER,
};
use parse::{parse, Parsed};

// inline(always): the macro wraps this function in the program's entry; left to LLVM it stays a
// BPF-to-BPF call (a call, four callee-saved pushes and pops, a return through the return thunk
// on every packet).
#[xdp]
#[inline(always)]
pub fn xlb(ctx: XdpContext) -> u32 {
    let action = process(&ctx);
    count_action(action);
    action
}

/// Counts the verdict (also by the programs the main one tail-calls: a tail call does not
/// return here).
#[inline(always)]
pub(crate) fn count_action(action: u32) {
    count(match action {
        xdp_action::XDP_DROP => stat::ACTION_DROP,
        xdp_action::XDP_TX => stat::ACTION_TX,
        xdp_action::XDP_REDIRECT => stat::ACTION_REDIRECT,
        _ => stat::ACTION_PASS,
    });
}

/// Whom the frame is addressed to, by its destination MAC.
enum Addressee {
    /// The receiving interface's MAC (or an interface whose MAC the daemon did not give).
    Us,
    /// Another unicast MAC: a frame a switch flooded to us, meant for another host.
    OtherHost,
    /// Broadcast or multicast (ARP, VRRP adverts, neighbour discovery).
    Group,
}

#[inline(always)]
fn addressee(ctx: &XdpContext) -> Addressee {
    let Some(dst) = parse::ptr_at::<[u8; 6]>(ctx, 0) else {
        // Shorter than a MAC: the parser counts it as malformed.
        return Addressee::Us;
    };
    // SAFETY: ptr_at proved 6 bytes.
    let dst = unsafe { core::ptr::read_unaligned(dst) };
    if dst[0] & 1 != 0 {
        return Addressee::Group;
    }
    let ifindex = ctx.ingress_ifindex() as u32;
    match IFACE_MACS.get(ifindex % MAX_IFACE_SLOTS) {
        Some(i) if i.ifindex == ifindex && i.mac != dst => Addressee::OtherHost,
        _ => Addressee::Us,
    }
}

#[inline(always)]
fn process(ctx: &XdpContext) -> u32 {
    match addressee(ctx) {
        Addressee::Us => {}
        Addressee::OtherHost => {
            count(stat::NOT_OUR_MAC);
            return xdp_action::XDP_PASS;
        }
        Addressee::Group => {
            count(stat::GROUP_MAC);
            return xdp_action::XDP_PASS;
        }
    }
    match parse(ctx) {
        Parsed::Other => {
            count(stat::NOT_SERVICE);
            xdp_action::XDP_PASS
        }
        Parsed::Malformed => {
            // The kernel's own checks drop what is really broken; we never forward it.
            count(stat::MALFORMED);
            xdp_action::XDP_PASS
        }
        Parsed::Flow { flow, tcp_flags } => flow_packet(ctx, &flow, tcp_flags),
        Parsed::Fragment { flow } => fragment(ctx, &flow),
        Parsed::IcmpError { flow } => icmp_error(ctx, &flow),
    }
}

/// Service of (VIP, port, protocol), falling back to the VIP's port-0 service.
#[inline(always)]
fn find_service(flow: &FlowKey, port: u16) -> Option<Service> {
    let mut key = ServiceKey {
        addr: flow.dst,
        port,
        proto: flow.proto,
        family: flow.family,
    };
    // SAFETY: the value is copied out at once; the daemon replaces entries whole.
    if let Some(svc) = unsafe { SERVICES.get(&key) } {
        return Some(*svc);
    }
    key.port = 0;
    unsafe { SERVICES.get(&key) }.copied()
}

/// The flow's service if this director forwards it now; otherwise counts why not (the packet is
/// then the kernel's).
#[inline(always)]
fn active_service(flow: &FlowKey) -> Option<Service> {
    let Some(svc) = find_service(flow, flow.dport) else {
        count(stat::NOT_SERVICE);
        return None;
    };
    if svc.flags & SVC_F_ACTIVE == 0 {
        count(stat::INACTIVE);
        return None;
    }
    Some(svc)
}

#[inline(always)]
fn packet_len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// Could `addr` be a VIP? One bit of the pre-filter: most non-VIP traffic ends here, before any
/// table lookup.
#[inline(always)]
fn maybe_vip(addr: &[u32; 4]) -> bool {
    let bit = vip_filter_bit(addr);
    match VIP_FILTER.get(bit >> 6) {
        Some(word) => *word & (1u64 << (bit & 63)) != 0,
        None => true,
    }
}

#[inline(always)]
fn flow_packet(ctx: &XdpContext, flow: &FlowKey, tcp_flags: u8) -> u32 {
    if !maybe_vip(&flow.dst) {
        count(stat::NOT_SERVICE);
        return xdp_action::XDP_PASS;
    }
    let opening = conntrack::is_opening(flow, tcp_flags);
    // Connection table first: an established packet needs no service lookup.
    let mut prior = Lookup::Miss;
    if !opening {
        match conntrack::lookup(flow, tcp_flags) {
            Lookup::Hit(d) => return forward(ctx, flow, &d),
            other => prior = other,
        }
    }
    let Some(svc) = active_service(flow) else {
        return xdp_action::XDP_PASS;
    };
    // A retransmitted SYN of a round-robin service keeps the real server of the first one.
    if opening && svc.sched == SCHED_ROUND_ROBIN {
        match conntrack::lookup(flow, tcp_flags) {
            Lookup::Hit(d) => return forward(ctx, flow, &d),
            other => prior = other,
        }
    }
    let Some(dispatch) = conntrack::dispatch(&svc, flow, tcp_flags, prior) else {
        count(stat::NO_REAL);
        return xdp_action::XDP_DROP;
    };
    forward(ctx, flow, &dispatch)
}

#[inline(always)]
fn forward(ctx: &XdpContext, flow: &FlowKey, d: &Dispatch) -> u32 {
    let bytes = packet_len(ctx);
    count_traffic(&SERVICE_STATS, d.service_id, bytes, d.new_conn);
    count_traffic(&REAL_STATS, d.real_id, bytes, d.new_conn);
    forward::to_real(ctx, flow, d.real_id, d.real)
}

/// Fragments: forwarded only for a VIP whose service hashes on the client address (every fragment
/// then lands where the first one does); otherwise fragments to a VIP are dropped and counted.
/// Fragments to other addresses are the kernel's.
#[inline(always)]
fn fragment(ctx: &XdpContext, flow: &FlowKey) -> u32 {
    let vip = VipKey {
        addr: flow.dst,
        family: flow.family,
        _pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let Some(info) = (unsafe { VIPS.get(&vip) }).copied() else {
        count(stat::NOT_SERVICE);
        return xdp_action::XDP_PASS;
    };
    let port = if flow.proto == PROTO_TCP {
        (info.flags & VIP_F_FRAG_TCP != 0).then_some(info.frag_tcp_port)
    } else {
        (info.flags & VIP_F_FRAG_UDP != 0).then_some(info.frag_udp_port)
    };
    let svc = port.and_then(|p| find_service(flow, p));
    let Some(svc) = svc.filter(|s| s.flags & SVC_F_ACTIVE != 0) else {
        count(stat::FRAGMENT_DROPPED);
        return xdp_action::XDP_DROP;
    };
    let real_id = select::pick(&svc, flow);
    let Some(real) = select::alive_real(real_id) else {
        count(stat::NO_REAL);
        return xdp_action::XDP_DROP;
    };
    count(stat::FRAGMENT_FORWARDED);
    let bytes = packet_len(ctx);
    count_traffic(&SERVICE_STATS, svc.id, bytes, false);
    count_traffic(&REAL_STATS, real_id, bytes, false);
    forward::to_real(ctx, flow, real_id, real)
}

/// ICMP errors about a flow (fragmentation needed, packet too big, unreachable) go to the flow's
/// real server, so path-MTU discovery works through the director.
#[inline(always)]
fn icmp_error(ctx: &XdpContext, flow: &FlowKey) -> u32 {
    let Some(svc) = active_service(flow) else {
        return xdp_action::XDP_PASS;
    };
    let real_id = conntrack::lookup_real(&svc, flow).unwrap_or_else(|| select::pick(&svc, flow));
    let Some(real) = select::alive_real(real_id) else {
        count(stat::NO_REAL);
        return xdp_action::XDP_DROP;
    };
    count(stat::ICMP_FORWARDED);
    forward::to_real(ctx, flow, real_id, real)
}

/// Always XDP_PASS: put on the peer of a veth that receives XDP_TX frames (a veth only transmits
/// them when its peer runs XDP) and on links that must keep their native XDP slot busy in tests.
#[xdp]
pub fn xlb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark floor: drop everything.
#[xdp]
pub fn xlb_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Benchmark floor: swap the MACs and send the frame back out (the least a DR forwarder does).
#[xdp]
pub fn xlb_macswap(ctx: XdpContext) -> u32 {
    let Some(eth) = parse::ptr_at_mut::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_at_mut proved 12 bytes.
    unsafe {
        let m = core::ptr::read_unaligned(eth);
        let mut s = [0u8; 12];
        s[..6].copy_from_slice(&m[6..]);
        s[6..].copy_from_slice(&m[..6]);
        core::ptr::write_unaligned(eth, s);
    }
    xdp_action::XDP_TX
}

/// Benchmark sink: count and drop (the receiving end of live-frames runs).
#[xdp]
pub fn xlb_count(_ctx: XdpContext) -> u32 {
    if let Some(c) = AUX_COUNT.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

const _: () = assert!(NO_REAL == u32::MAX);
