//! Connection table: the hit path (table first: no service lookup, no precise clock), IPVS-style
//! state from the client's TCP flags, insert with the flood guard, and re-dispatch of flows whose
//! real server (or service) went away.
use aya_ebpf::helpers::bpf_ktime_get_coarse_ns;
use lb_common::{
    conn_state, stat, tcp_flags, FlowEntry, FlowKey, RealServer, Service, NO_REAL, PROTO_TCP,
    SVC_F_ACTIVE,
};

use crate::{
    maps::{count, CONN_TABLE, FLOOD_STATE, LB_CONFIG, SERVICE_STATE},
    select::{alive_real, pick, pick_previous},
};

const NS_PER_SEC: u64 = 1_000_000_000;

pub struct Dispatch {
    pub service_id: u32,
    pub real_id: u32,
    pub real: &'static RealServer,
    /// A table entry was created (counts as a new connection).
    pub new_conn: bool,
}

/// What the table holds for a flow.
pub enum Lookup {
    /// A valid entry: forward to its real server.
    Hit(Dispatch),
    /// An entry whose service or real server went away: its state and flags carry over.
    Stale {
        state: u8,
        flags: u8,
    },
    Miss,
}

/// CLOCK_MONOTONIC_COARSE: a load of the timekeeper's last tick, where `bpf_ktime_get_ns` reads
/// the clocksource (~30 ns under KVM). Idle timeouts and the flood guard's window need no more
/// than a tick's resolution.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// IPVS's TCP states as the client's flags drive them (DR: the director never sees replies).
#[inline(always)]
fn next_state(old: u8, proto: u8, flags: u8) -> u8 {
    if proto != PROTO_TCP {
        return conn_state::UDP;
    }
    if flags & tcp_flags::RST != 0 {
        conn_state::CLOSE
    } else if flags & tcp_flags::FIN != 0 {
        conn_state::FIN_WAIT
    } else if flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0 {
        conn_state::SYN_RECV
    } else if flags & tcp_flags::ACK != 0 {
        if old == conn_state::FIN_WAIT || old == conn_state::CLOSE {
            old
        } else {
            conn_state::ESTABLISHED
        }
    } else if old == 0 {
        conn_state::SYN_RECV
    } else {
        old
    }
}

/// A SYN without ACK opens a flow: it is dispatched and inserted without a lookup first.
#[inline(always)]
pub fn is_opening(flow: &FlowKey, flags: u8) -> bool {
    flow.proto == PROTO_TCP && flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}

/// The entry's real server, if the entry still holds: its service id has the same generation
/// and is active, its real server is alive with the same generation.
#[inline(always)]
fn valid_real(e: &FlowEntry) -> Option<&'static RealServer> {
    let svc = SERVICE_STATE.get(e.service_id)?;
    if svc.generation != e.service_gen || svc.flags & SVC_F_ACTIVE == 0 {
        return None;
    }
    let real = alive_real(e.real_id)?;
    (real.generation == e.real_gen).then_some(real)
}

/// The hit path: one table lookup, the service's state by id, the real server by id.
#[inline(always)]
pub fn lookup(flow: &FlowKey, flags: u8) -> Lookup {
    let Some(entry) = CONN_TABLE.get_ptr_mut(flow) else {
        return Lookup::Miss;
    };
    // SAFETY: the kernel keeps the element alive for this program run; fields are plain data.
    let e = unsafe { &mut *entry };
    let Some(real) = valid_real(e) else {
        return Lookup::Stale {
            state: e.state,
            flags: e.flags_seen,
        };
    };
    count(stat::CONN_HIT);
    // Written only when changed: an unchanged line is not dirtied (nor bounced between CPUs).
    let now = now_ns();
    if e.last_seen_ns != now {
        e.last_seen_ns = now;
    }
    let state = next_state(e.state, flow.proto, flags);
    if state != e.state {
        e.state = state;
        crate::sync::emit_state(flow, e);
    }
    if e.flags_seen | flags != e.flags_seen {
        e.flags_seen |= flags;
    }
    Lookup::Hit(Dispatch {
        service_id: e.service_id,
        real_id: e.real_id,
        real,
        new_conn: false,
    })
}

/// The real server the table has for this flow of `svc`, if it is still valid (ICMP errors).
#[inline(always)]
pub fn lookup_real(svc: &Service, flow: &FlowKey) -> Option<u32> {
    // SAFETY: copied out at once.
    let entry = unsafe { CONN_TABLE.get(flow) }?;
    valid_real(entry)?;
    (entry.service_id == svc.id).then_some(entry.real_id)
}

/// Flood guard: above `flood_threshold` new flows per second on this CPU, new flows are still
/// forwarded (Maglev picks the same real server every time) but not inserted, so a SYN flood cannot
/// evict established flows' entries.
#[inline(always)]
fn may_insert(now: u64) -> bool {
    let threshold = match LB_CONFIG.get(0) {
        Some(cfg) => cfg.flood_threshold,
        None => 0,
    };
    if threshold == 0 {
        return true;
    }
    let Some(st) = FLOOD_STATE.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU slot, only this CPU touches it while the program runs.
    unsafe {
        if now.wrapping_sub((*st).window_start_ns) >= NS_PER_SEC {
            (*st).window_start_ns = now;
            (*st).new_flows = 0;
        }
        (*st).new_flows += 1;
        (*st).new_flows <= threshold
    }
}

/// The miss path: picks a real server for a flow of `svc` without a valid entry (`prior`: the
/// stale entry's state and flags) and inserts the entry.
#[inline(always)]
pub fn dispatch(svc: &Service, flow: &FlowKey, flags: u8, prior: Lookup) -> Option<Dispatch> {
    let (old_state, old_flags) = match prior {
        Lookup::Stale { state, flags } => {
            // Its real server was removed or failed (or the service changed): dispatch afresh,
            // so the client gets an answer (a reset from the new real server), not silence.
            count(stat::REDISPATCHED);
            (state, flags)
        }
        _ => {
            count(stat::CONN_MISS);
            (0, 0)
        }
    };
    let mut real_id = NO_REAL;
    let mut real = None;
    // A mid-stream TCP packet without an entry may belong to a flow another director served
    // under the previous real-server set: its old real server is the one that knows the flow.
    if flow.proto == PROTO_TCP && flags & tcp_flags::SYN == 0 && svc.prev_ring_size != 0 {
        let prev = pick_previous(svc, flow);
        if let Some(r) = alive_real(prev) {
            count(stat::PREV_RING_HIT);
            real_id = prev;
            real = Some(r);
        }
    }
    if real.is_none() {
        real_id = pick(svc, flow);
        real = alive_real(real_id);
    }
    if real.is_none() && svc.sorry_real != NO_REAL {
        real_id = svc.sorry_real;
        real = alive_real(real_id);
        if real.is_some() {
            count(stat::SORRY);
        }
    }
    let real = real?;

    let now = now_ns();
    let mut new_conn = false;
    if may_insert(now) {
        let entry = FlowEntry {
            real_id,
            real_gen: real.generation,
            service_id: svc.id,
            service_gen: SERVICE_STATE.get(svc.id).map_or(0, |s| s.generation),
            state: next_state(old_state, flow.proto, flags),
            flags_seen: old_flags | flags,
            sync_flags: 0,
            _pad: 0,
            origin: 0,
            last_seen_ns: now,
        };
        if CONN_TABLE.insert(flow, &entry, 0).is_ok() {
            new_conn = true;
            crate::sync::emit_new(flow, &entry);
        } else {
            count(stat::INSERT_FAILED);
        }
    } else {
        count(stat::FLOOD_NOT_INSERTED);
    }
    Some(Dispatch {
        service_id: svc.id,
        real_id,
        real,
        new_conn,
    })
}
