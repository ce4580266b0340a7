//! Connection sync, XDP side: new flows and FIN/RST state changes go to the daemon through a
//! BPF ring buffer, which batches them to the peer directors. Nothing is emitted unless the
//! daemon set `SYNC_F_ENABLED` (one array read: the cost without sync is that load).
use aya_ebpf::{
    macros::map,
    maps::{Array, RingBuf},
};
use lb_common::{conn_state, stat, sync_event, FlowKey, SyncConfig, SyncEvent, SYNC_F_ENABLED};

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

/// What an event says of a flow (passed by value: BPF calls take five registers).
#[derive(Clone, Copy)]
pub struct FlowFacts {
    pub real_id: u32,
    pub real_gen: u32,
    pub service_id: u32,
    pub state: u8,
}

/// Not inlined: the event is built in the ring buffer's own memory, and this frame stays off
/// the main program's stack (one 512-byte limit for the whole call chain).
#[inline(never)]
fn emit(kind: u8, flow: &FlowKey, facts: &FlowFacts) {
    if !enabled() {
        return;
    }
    let Some(mut slot) = SYNC_EVENTS.reserve::<SyncEvent>(0) else {
        count(stat::SYNC_RING_FULL);
        return;
    };
    slot.write(SyncEvent {
        flow: *flow,
        real_id: facts.real_id,
        real_gen: facts.real_gen,
        service_id: facts.service_id,
        kind,
        state: facts.state,
        _pad: [0; 2],
    });
    slot.submit(0);
}

/// At the flow-insert site: the flow just inserted.
#[inline(always)]
pub fn emit_new(flow: &FlowKey, facts: &FlowFacts) {
    emit(sync_event::NEW, flow, facts);
}

/// At a state change: ESTABLISHED (the peers' copies, made at the SYN, move from InActConn to
/// ActiveConn at once, as an IPVS backup's do, not at the next full resend), FIN and RST (they
/// drain the counters). Once per state a flow enters: the hit path pays nothing more.
#[inline(always)]
pub fn emit_state(flow: &FlowKey, facts: &FlowFacts) {
    if facts.state == conn_state::ESTABLISHED
        || facts.state == conn_state::FIN_WAIT
        || facts.state == conn_state::CLOSE
    {
        emit(sync_event::STATE, flow, facts);
    }
}
