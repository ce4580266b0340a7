//! Connection sync, XDP side: new flows and FIN/RST state changes go to the daemon through a
//! BPF ring buffer, which batches them to the peer directors. Nothing is emitted unless the
//! daemon set `SYNC_F_ENABLED` (one array read: the cost without sync is that load).
use aya_ebpf::{
    macros::map,
    maps::{Array, RingBuf},
};
use lb_common::{
    conn_state, stat, sync_event, FlowEntry, FlowKey, SyncConfig, SyncEvent, SYNC_F_ENABLED,
};

use crate::maps::count;

/// 1 MiB: 16,384 events of 64 bytes (56 + the ring's 8-byte header), about 0.1 s of new flows
/// at 150k/s before the daemon must have drained it.
const SYNC_RING_BYTES: u32 = 1 << 20;

#[map]
pub static SYNC_EVENTS: RingBuf = RingBuf::with_byte_size(SYNC_RING_BYTES, 0);

#[map]
pub static SYNC_CONFIG: Array<SyncConfig> = Array::with_max_entries(1, 0);

#[inline(always)]
fn enabled() -> bool {
    SYNC_CONFIG
        .get(0)
        .is_some_and(|c| c.flags & SYNC_F_ENABLED != 0)
}

#[inline(always)]
fn emit(kind: u8, flow: &FlowKey, e: &FlowEntry) {
    if !enabled() {
        return;
    }
    let ev = SyncEvent {
        flow: *flow,
        real_id: e.real_id,
        real_gen: e.real_gen,
        service_id: e.service_id,
        kind,
        state: e.state,
        _pad: [0; 2],
    };
    if SYNC_EVENTS.output::<SyncEvent>(&ev, 0).is_err() {
        count(stat::SYNC_RING_FULL);
    }
}

/// At the flow-insert site: the entry just inserted for `flow`.
#[inline(always)]
pub fn emit_new(flow: &FlowKey, e: &FlowEntry) {
    emit(sync_event::NEW, flow, e);
}

/// At a state change: only FIN and RST matter to peers (they drain the counters); SYN_RECV ->
/// ESTABLISHED is implied by the flow's next packet on whichever director gets it.
#[inline(always)]
pub fn emit_state(flow: &FlowKey, e: &FlowEntry) {
    if e.state == conn_state::FIN_WAIT || e.state == conn_state::CLOSE {
        emit(sync_event::STATE, flow, e);
    }
}
