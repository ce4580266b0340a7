//! Real-server selection on a connection-table miss.
use lb_common::{
    hash::{flow_hash, source_hash},
    FlowKey, RealServer, Service, NO_REAL, REAL_F_ALIVE, SCHED_ROUND_ROBIN, SVC_F_HASH_SRC_ONLY,
};

use crate::maps::{MAGLEV_RINGS, REALS, RR_STATE};

/// The real server a live slot points to, if it may receive packets.
#[inline(always)]
pub fn alive_real(real_id: u32) -> Option<&'static RealServer> {
    if real_id == NO_REAL {
        return None;
    }
    let real = REALS.get(real_id)?;
    if real.flags & REAL_F_ALIVE == 0 {
        return None;
    }
    Some(real)
}

#[inline(always)]
fn ring_slot(offset: u32, size: u32, hash: u32) -> u32 {
    if size == 0 {
        return NO_REAL;
    }
    match MAGLEV_RINGS.get(offset.wrapping_add(hash % size)) {
        Some(id) => *id,
        None => NO_REAL,
    }
}

#[inline(always)]
fn key_hash(svc: &Service, flow: &FlowKey) -> u32 {
    if svc.flags & SVC_F_HASH_SRC_ONLY != 0 {
        source_hash(flow)
    } else {
        flow_hash(flow)
    }
}

/// Picks from the service's current ring (Maglev lookup table, or round-robin sequence).
#[inline(always)]
pub fn pick(svc: &Service, flow: &FlowKey) -> u32 {
    if svc.sched == SCHED_ROUND_ROBIN {
        let Some(pos) = RR_STATE.get_ptr_mut(svc.id) else {
            return NO_REAL;
        };
        // SAFETY: per-CPU slot, only this CPU touches it while the program runs.
        let n = unsafe {
            let n = *pos;
            *pos = n.wrapping_add(1);
            n
        };
        return ring_slot(svc.ring_offset, svc.ring_size, n);
    }
    ring_slot(svc.ring_offset, svc.ring_size, key_hash(svc, flow))
}

/// Picks from the ring in force before the last real-server change (see `Service`).
#[inline(always)]
pub fn pick_previous(svc: &Service, flow: &FlowKey) -> u32 {
    if svc.sched == SCHED_ROUND_ROBIN {
        return NO_REAL;
    }
    ring_slot(
        svc.prev_ring_offset,
        svc.prev_ring_size,
        key_hash(svc, flow),
    )
}
