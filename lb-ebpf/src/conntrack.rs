//! Connection table: the hit path (table first: no service lookup, no precise clock), IPVS-style
//! state from the client's TCP flags, insert with the flood guard, and re-dispatch of flows whose
//! real server (or service) went away. IPv4 flows live in the set-associative table
//! (conntable.rs), IPv6 flows and IPv4 flows whose set is full in the kernel LRU (`CONN_TABLE`).
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use lb_common::{
    conn, conn_state, stat, tcp_flags, FlowEntry, FlowKey, RealServer, Service, NO_REAL, PROTO_TCP,
    SVC_F_ACTIVE, SVC_F_PERSISTENT,
};

use crate::{
    conntable::{self, WayKey},
    maps::{count, CLOCK_CACHE, CONN_TABLE, FLOOD_STATE, LB_CONFIG, SERVICE_STATE},
    persist,
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
    /// A SYN on a closed connection's entry: a new connection on a reused client port.
    Reused,
    Miss,
}

/// CLOCK_MONOTONIC_COARSE: the timekeeper's last tick, where `bpf_ktime_get_ns` reads the
/// clocksource (~30 ns under KVM). Idle timeouts and the flood guard's window need no more than a
/// tick's resolution. The coarse clock only moves when the tick advances jiffies, so each CPU keeps
/// its last reading with the jiffies it was taken at: `bpf_jiffies64` is inlined by the verifier
/// (one load), where the coarse-clock helper is a call (and its return goes through the return
/// thunk on this kind of CPU); the helper then runs once per tick and CPU, not once per packet. A
/// reading taken between the tick's jiffies update and its timekeeper update is one tick old until
/// the next tick: nothing here needs better than a tick.
#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(cache) = CLOCK_CACHE.get_ptr_mut(0) else {
        return read_coarse_clock();
    };
    // SAFETY: per-CPU slot, only this CPU touches it while the program runs.
    unsafe {
        if (*cache).jiffies != jiffies {
            (*cache).ns = read_coarse_clock();
            (*cache).jiffies = jiffies;
        }
        (*cache).ns
    }
}

#[inline(always)]
fn read_coarse_clock() -> u64 {
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

/// Connection reuse, IPVS's `conn_reuse_mode=1`: a SYN without ACK that finds the entry of a
/// closed connection (FIN_WAIT or CLOSE; in DR the director sees only the client, so FIN_WAIT
/// stands for IPVS's FIN_WAIT and TIME_WAIT, and CLOSE_WAIT/LAST_ACK are never entered) opens a
/// new connection on a reused client port: a client's TCP reuses a port only once its side of the
/// old connection is closed. It is a table miss, not a hit (`Lookup::Reused`): `dispatch` counts
/// it in the service's and the real server's Conns (CPS), resets the state to SYN_RECV (the old
/// flags are dropped) and schedules it afresh — or, for a persistent service, where the client's
/// template says (IPVS does not reschedule a connection controlled by a template at all and does
/// not count it; xlb counts it, and the template sends it to the same real server while the
/// template holds). A SYN on a SYN_RECV or ESTABLISHED entry is a retransmission and keeps it.
#[inline(always)]
fn is_closing(state: u8) -> bool {
    state == conn_state::FIN_WAIT || state == conn_state::CLOSE
}

/// The real server of an entry of (real slot, real generation, service generation), if it still
/// holds: its service is active with the same generation, the real server is alive with the same
/// generation. `same_gen` compares a stored generation with the live one (ways keep low bits).
#[inline(always)]
fn valid_real(
    real_id: u32,
    service_id: Option<u32>,
    same_real_gen: impl Fn(u32) -> bool,
    same_svc_gen: impl Fn(u32) -> bool,
) -> Option<&'static RealServer> {
    let real = alive_real(real_id)?;
    if !same_real_gen(real.generation) {
        return None;
    }
    // A real-server slot belongs to one service: a way need not store the service id.
    let service_id = service_id.unwrap_or(real.service_id);
    let svc = SERVICE_STATE.get(service_id)?;
    if !same_svc_gen(svc.generation) || svc.flags & SVC_F_ACTIVE == 0 {
        return None;
    }
    Some(real)
}

#[inline(always)]
fn valid_entry_real(e: &FlowEntry) -> Option<&'static RealServer> {
    let real = valid_real(
        e.real_id,
        Some(e.service_id),
        |g| g == e.real_gen,
        |g| g == e.service_gen,
    )?;
    Some(real)
}

#[inline(always)]
fn valid_way_real(meta: u32) -> Option<&'static RealServer> {
    valid_real(
        conn::meta_real(meta),
        None,
        |g| conn::meta_real_gen_is(meta, g),
        |g| conn::meta_svc_gen_is(meta, g),
    )
}

/// The hit path: the flow's set (IPv4), else the LRU (IPv6, flows whose set was full); then the
/// real server by id and its service's state by id.
#[inline(always)]
pub fn lookup(flow: &FlowKey, flags: u8) -> Lookup {
    if let Some(key) = WayKey::of(flow) {
        if let Some(set) = conntable::set_of(&key) {
            if let Some(way) = conntable::find(set, &key) {
                return way_hit(flow, flags, &key, &way);
            }
        }
    }
    lru_lookup(flow, flags)
}

#[inline(always)]
fn way_hit(flow: &FlowKey, flags: u8, key: &WayKey, way: &conntable::Way) -> Lookup {
    let meta = way.value.meta;
    let old_state = conn::meta_state(meta);
    if is_opening(flow, flags) && is_closing(old_state) {
        return Lookup::Reused;
    }
    let Some(real) = valid_way_real(meta) else {
        return Lookup::Stale {
            state: old_state,
            flags: 0,
        };
    };
    count(stat::CONN_HIT);
    let state = next_state(old_state, flow.proto, flags);
    way.touch(key, state, conn::stamp_from_ns(now_ns()));
    if state != old_state {
        let facts = crate::sync::FlowFacts {
            real_id: conn::meta_real(meta),
            real_gen: real.generation,
            service_id: real.service_id,
            state,
        };
        crate::sync::emit_state(flow, &facts);
    }
    Lookup::Hit(Dispatch {
        service_id: real.service_id,
        real_id: conn::meta_real(meta),
        real,
        new_conn: false,
    })
}

#[inline(always)]
fn lru_lookup(flow: &FlowKey, flags: u8) -> Lookup {
    let Some(entry) = CONN_TABLE.get_ptr_mut(flow) else {
        return Lookup::Miss;
    };
    // SAFETY: the kernel keeps the element alive for this program run; fields are plain data.
    let e = unsafe { &mut *entry };
    if is_opening(flow, flags) && is_closing(e.state) {
        return Lookup::Reused;
    }
    let Some(real) = valid_entry_real(e) else {
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
        let facts = crate::sync::FlowFacts {
            real_id: e.real_id,
            real_gen: e.real_gen,
            service_id: e.service_id,
            state,
        };
        crate::sync::emit_state(flow, &facts);
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
    if let Some(key) = WayKey::of(flow) {
        if let Some(way) = conntable::set_of(&key).and_then(|set| conntable::find(set, &key)) {
            let real = valid_way_real(way.value.meta)?;
            return (real.service_id == svc.id).then_some(conn::meta_real(way.value.meta));
        }
    }
    // SAFETY: copied out at once.
    let entry = unsafe { CONN_TABLE.get(flow) }?;
    valid_entry_real(entry)?;
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

/// The real server for a flow of `svc` without a valid entry: the previous ring for a mid-stream
/// TCP packet, else the client's persistence template (a persistent service) or the current
/// ring, else the sorry server.
#[inline(always)]
fn choose_real(
    svc: &Service,
    flow: &FlowKey,
    flags: u8,
    now: u64,
) -> Option<(u32, &'static RealServer)> {
    // A mid-stream TCP packet without an entry may belong to a flow another director served
    // under the previous real-server set: its old real server is the one that knows the flow.
    if flow.proto == PROTO_TCP && flags & tcp_flags::SYN == 0 && svc.prev_ring_size != 0 {
        let prev = pick_previous(svc, flow);
        if let Some(r) = alive_real(prev) {
            count(stat::PREV_RING_HIT);
            return Some((prev, r));
        }
    }
    if svc.flags & SVC_F_PERSISTENT != 0 {
        if let Some(chosen) = persist::schedule(svc, flow, now) {
            return Some(chosen);
        }
    } else {
        let real_id = pick(svc, flow);
        if let Some(r) = alive_real(real_id) {
            return Some((real_id, r));
        }
    }
    if svc.sorry_real != NO_REAL {
        if let Some(r) = alive_real(svc.sorry_real) {
            count(stat::SORRY);
            return Some((svc.sorry_real, r));
        }
    }
    None
}

/// A flow about to be inserted: its service, real server and state.
pub struct NewFlow {
    pub service_id: u32,
    pub service_gen: u32,
    pub real_id: u32,
    pub real: &'static RealServer,
    pub state: u8,
    pub flags_seen: u8,
}

impl NewFlow {
    /// The flow as a kernel-LRU entry (the overflow store, and what sync events carry).
    #[inline(always)]
    fn entry(&self, now: u64) -> FlowEntry {
        FlowEntry {
            real_id: self.real_id,
            real_gen: self.real.generation,
            service_id: self.service_id,
            service_gen: self.service_gen,
            state: self.state,
            flags_seen: self.flags_seen,
            sync_flags: 0,
            _pad: 0,
            origin: 0,
            last_seen_ns: now,
        }
    }
}

/// What the insert did.
pub enum Inserted {
    /// The flow has an entry now (a new connection).
    New,
    /// A SYN found its flow's valid, open way (a retransmission): that real server stays.
    Kept(Dispatch),
    Failed,
}

/// The one insert: the flow's set for IPv4 (one line, no lookup first), the LRU for IPv6 and
/// when every way of the set is protected.
#[inline(always)]
pub fn insert(flow: &FlowKey, flags: u8, f: &NewFlow, now: u64) -> Inserted {
    if let Some(key) = WayKey::of(flow) {
        if let Some(set) = conntable::set_of(&key) {
            let opening = is_opening(flow, flags);
            let stamp = conn::stamp_from_ns(now);
            let meta = conn::meta_word(
                f.real_id,
                f.state,
                key.udp,
                f.real.generation,
                f.service_gen,
            );
            let way = match conntable::place(set, &key, stamp, !opening) {
                conntable::Placement::Same(w) => {
                    let m = w.value.meta;
                    if opening && !is_closing(conn::meta_state(m)) {
                        if let Some(real) = valid_way_real(m) {
                            return Inserted::Kept(Dispatch {
                                service_id: real.service_id,
                                real_id: conn::meta_real(m),
                                real,
                                new_conn: false,
                            });
                        }
                    }
                    Some(w)
                }
                conntable::Placement::Victim(w) => Some(w),
                conntable::Placement::Full => None,
            };
            if let Some(w) = way {
                conntable::write(&w, &key, meta, stamp);
                return Inserted::New;
            }
            count(stat::SET_FULL);
        }
    }
    match CONN_TABLE.insert(flow, &f.entry(now), 0) {
        Ok(()) => Inserted::New,
        Err(_) => Inserted::Failed,
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
        Lookup::Reused => {
            // Counted where a SYN looks at the table (round-robin services); a Maglev SYN is
            // inserted without a lookup and overwrites its closed way as a new connection.
            count(stat::CONN_REUSED);
            (0, 0)
        }
        _ => {
            count(stat::CONN_MISS);
            (0, 0)
        }
    };
    let now = now_ns();
    let (real_id, real) = choose_real(svc, flow, flags, now)?;
    let mut new_conn = false;
    if may_insert(now) {
        let f = NewFlow {
            service_id: svc.id,
            service_gen: SERVICE_STATE.get(svc.id).map_or(0, |s| s.generation),
            real_id,
            real,
            state: next_state(old_state, flow.proto, flags),
            flags_seen: old_flags | flags,
        };
        match insert(flow, flags, &f, now) {
            Inserted::New => {
                new_conn = true;
                let facts = crate::sync::FlowFacts {
                    real_id: f.real_id,
                    real_gen: f.real.generation,
                    service_id: f.service_id,
                    state: f.state,
                };
                crate::sync::emit_new(flow, &facts);
            }
            Inserted::Kept(d) => return Some(d),
            Inserted::Failed => count(stat::INSERT_FAILED),
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
