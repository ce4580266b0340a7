//! Direct-routing rewrite: only the Ethernet addresses change; VLAN tags, IP and L4 stay as sent.
//! A tunnelled real server's packets are first wrapped in an outer header ([`tunnel`]); the MACs
//! are then those of the next hop.
use core::{
    mem::offset_of,
    ptr::{read_unaligned, write_unaligned},
};

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
    write_macs(eth.cast::<u8>(), real);
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

// The real server's destination and source MACs are 12 bytes back to back in its map value.
const MACS_AT: usize = offset_of!(RealServer, mac);
const _: () = assert!(offset_of!(RealServer, src_mac) == MACS_AT + 6);

/// Writes destination and source MAC as one 8-byte and one 4-byte store, straight from the map
/// value. (A `[u8; 6]` store is a `memmove` call for LLVM's BPF backend: a BPF-to-BPF call with a
/// byte loop, twice per packet.)
#[inline(always)]
fn write_macs(eth: *mut u8, real: &RealServer) {
    let macs = (real as *const RealServer)
        .cast::<u8>()
        .wrapping_add(MACS_AT);
    // SAFETY: the caller proved 12 bytes of packet at `eth`; `macs` points at 12 bytes of `real`
    // (the assertion above); both accesses are unaligned-safe.
    unsafe {
        let head = read_unaligned(macs.cast::<u64>());
        let tail = read_unaligned(macs.add(8).cast::<u32>());
        write_unaligned(eth.cast::<u64>(), head);
        write_unaligned(eth.add(8).cast::<u32>(), tail);
    }
}
