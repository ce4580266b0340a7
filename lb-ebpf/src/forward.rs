//! Direct-routing rewrite: only the Ethernet addresses change; VLAN tags, IP and L4 stay as sent.
//! A tunnelled real server's packets are first wrapped in an outer header ([`tunnel`]); the MACs
//! are then those of the next hop.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::{stat, FlowKey, RealServer};

use crate::{
    maps::{count, TX_PORTS},
    parse::ptr_at_mut,
    tunnel::{self, Encapsulated},
};

/// Sends the frame of `flow` to `real` (slot `real_id`).
#[inline(always)]
pub fn to_real(ctx: &XdpContext, flow: &FlowKey, real_id: u32, real: &RealServer) -> u32 {
    match tunnel::encapsulate(ctx, flow, real_id, real) {
        Encapsulated::No | Encapsulated::Yes => {}
        Encapsulated::TooBig { fits } => return tunnel::too_big(ctx, fits),
        Encapsulated::TooBigDrop | Encapsulated::Failed => return xdp_action::XDP_DROP,
    }
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    let eth = eth.cast::<[u8; 6]>();
    // SAFETY: ptr_at_mut proved 12 bytes: destination MAC, then source MAC. Written straight
    // from the map value (no copy on the stack first).
    unsafe {
        core::ptr::write_unaligned(eth, real.mac);
        core::ptr::write_unaligned(eth.add(1), real.src_mac);
    }
    if real.ifindex == ctx.ingress_ifindex() as u32 {
        return xdp_action::XDP_TX;
    }
    match TX_PORTS.redirect(real.tx_port, 0) {
        Ok(action) => action,
        Err(_) => {
            count(stat::REDIRECT_FAILED);
            xdp_action::XDP_DROP
        }
    }
}
