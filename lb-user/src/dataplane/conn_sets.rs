//! The set-associative IPv4 connection table (`CONN_SETS`, layout in `lb_common::conn`) mapped
//! into the daemon's memory: the sweep and `xlb conns` read it without a syscall per entry.
//!
//! aya 0.14 has no mmap API for maps, so the map's fd is mapped by [`MappedArray`] behind a safe,
//! typed interface: the mapping is seen as `AtomicU32` words, because the XDP program writes the
//! same memory from every CPU at the same time.
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmap::MappedArray;

use aya::maps::{MapData, MapError};
use lb_common::{
    conn::{self, ConnWay, WAYS},
    FlowEntry, FlowKey, AF_INET, PROTO_TCP, PROTO_UDP,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConnSetsError {
    #[error("map CONN_SETS: {0}")]
    Map(#[from] MapError),
    #[error("map CONN_SETS: value size {0}, expected {1} (another layout)")]
    Layout(u32, usize),
    #[error("cannot mmap map CONN_SETS: {0}")]
    Mmap(std::io::Error),
}

/// u32 words of a set (64 bytes).
const SET_WORDS: usize = 16;
/// u32 words of a way.
const WAY_WORDS: usize = 5;
/// Word of a way holding the timestamp and check word.
const STAMP_CHECK: usize = 4;

/// Where a way is: (set, way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WayIndex {
    pub set: u32,
    pub way: u32,
}

/// The mapping of `CONN_SETS`.
pub struct ConnSets {
    /// Reached only through atomics (the program writes the same words from every CPU).
    mem: MappedArray,
    sets: u32,
}

impl ConnSets {
    pub fn new(map: MapData) -> Result<Self, ConnSetsError> {
        let info = map.info().map_err(ConnSetsError::Map)?;
        if info.value_size() as usize != std::mem::size_of::<conn::ConnSet>() {
            return Err(ConnSetsError::Layout(
                info.value_size(),
                std::mem::size_of::<conn::ConnSet>(),
            ));
        }
        let sets = info.max_entries();
        let mem = MappedArray::new(map, sets as usize * SET_WORDS).map_err(ConnSetsError::Mmap)?;
        Ok(Self { mem, sets })
    }

    pub fn sets(&self) -> u32 {
        self.sets
    }

    /// Ways of the table (its capacity).
    pub fn ways(&self) -> u64 {
        self.sets as u64 * WAYS as u64
    }

    fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping holds sets * SET_WORDS initialised u32 words (the kernel zeroes
        // the array), lives as long as self, and AtomicU32 has u32's layout.
        unsafe {
            std::slice::from_raw_parts(
                self.mem.as_ptr().cast::<AtomicU32>(),
                self.sets as usize * SET_WORDS,
            )
        }
    }

    fn way_words(&self, at: WayIndex) -> &[AtomicU32] {
        assert!(
            at.set < self.sets && (at.way as usize) < WAYS,
            "way out of bounds"
        );
        let base = at.set as usize * SET_WORDS + at.way as usize * WAY_WORDS;
        &self.words()[base..base + WAY_WORDS]
    }

    /// A copy of a way, each word read once.
    pub fn read(&self, at: WayIndex) -> ConnWay {
        let w = self.way_words(at);
        let r = |i: usize| w[i].load(Ordering::Relaxed);
        ConnWay {
            src: r(0),
            dst: r(1),
            ports: r(2),
            meta: r(3),
            stamp_check: r(STAMP_CHECK),
        }
    }

    /// Writes a way as the XDP program does: key and meta first, the check word last (tests and
    /// the bench prefill).
    pub fn write(&self, at: WayIndex, way: &ConnWay) {
        let w = self.way_words(at);
        w[0].store(way.src, Ordering::Relaxed);
        w[1].store(way.dst, Ordering::Relaxed);
        w[2].store(way.ports, Ordering::Relaxed);
        w[3].store(way.meta, Ordering::Relaxed);
        w[STAMP_CHECK].store(way.stamp_check, Ordering::Release);
    }

    /// Frees a way if it still holds what was read (`seen`, its stamp-and-check word): a way
    /// the program refreshed or rewrote since is left alone.
    pub fn free_if_unchanged(&self, at: WayIndex, seen: u32) -> bool {
        self.way_words(at)[STAMP_CHECK]
            .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Does `key` have a way of its own (an IPv4 flow this director made)?
    pub fn holds(&self, key: &FlowKey) -> bool {
        self.find(key).is_some()
    }

    /// The way holding `key`, where it is and what it held when read.
    pub fn find(&self, key: &FlowKey) -> Option<(WayIndex, ConnWay)> {
        if key.family != AF_INET || self.sets() == 0 {
            return None;
        }
        let set = set_of(key, self.sets());
        (0..WAYS as u32).find_map(|way| {
            let at = WayIndex { set, way };
            let w = self.read(at);
            (!w.is_free() && w.is_consistent() && way_key(&w) == *key).then_some((at, w))
        })
    }

    /// Visits every consistent way (free and torn ways are skipped) in set order.
    pub fn for_each(&self, mut f: impl FnMut(WayIndex, &ConnWay)) {
        for set in 0..self.sets {
            for way in 0..WAYS as u32 {
                let at = WayIndex { set, way };
                let w = self.read(at);
                if w.is_consistent() {
                    f(at, &w);
                }
            }
        }
    }

    /// Frees every way (a test's or the bench's clean table).
    pub fn clear(&self) {
        for w in self.words() {
            w.store(0, Ordering::Relaxed);
        }
    }
}

/// The flow a way holds, as the LRU's key.
pub fn way_key(w: &ConnWay) -> FlowKey {
    FlowKey {
        src: [w.src, 0, 0, 0],
        dst: [w.dst, 0, 0, 0],
        sport: w.ports as u16,
        dport: (w.ports >> 16) as u16,
        proto: if w.meta & conn::meta::UDP != 0 {
            PROTO_UDP
        } else {
            PROTO_TCP
        },
        family: AF_INET,
        _pad: [0; 2],
    }
}

/// A way as an LRU entry (what status and `xlb conns` read): `last_seen_ns` is the end of the
/// stamp's unit, at most `now_ns` (an entry expires late by under a unit, never early);
/// generations are the way's low bits; the service id is the real server's (`service_of`).
pub fn way_entry(w: &ConnWay, service_id: u32, now_ns: u64) -> FlowEntry {
    let now_units = now_ns >> conn::STAMP_SHIFT;
    // A way the program stamped after `now_ns` was read is not 19 hours old: age 0.
    let age = conn::stamp_age(conn::stamp_from_ns(now_ns), conn::stamp_of(w.stamp_check)) as u64;
    let last_seen_ns = (now_units.saturating_sub(age) + 1)
        .checked_shl(conn::STAMP_SHIFT)
        .unwrap_or(now_ns)
        .min(now_ns);
    FlowEntry {
        real_id: conn::meta_real(w.meta),
        real_gen: (w.meta >> conn::meta::REAL_GEN_SHIFT) & conn::meta::REAL_GEN_MASK,
        service_id,
        service_gen: (w.meta >> conn::meta::SVC_GEN_SHIFT) & conn::meta::SVC_GEN_MASK,
        state: conn::meta_state(w.meta),
        flags_seen: 0,
        sync_flags: 0,
        _pad: 0,
        origin: 0,
        last_seen_ns,
    }
}

/// Idle for `conn::LONG_IDLE_UNITS` or more (the sweep moves such ways to the LRU).
pub fn is_long_idle(w: &ConnWay, now_ns: u64) -> bool {
    conn::stamp_age(conn::stamp_from_ns(now_ns), conn::stamp_of(w.stamp_check))
        >= conn::LONG_IDLE_UNITS
}

/// The way the XDP program would write for `key` (tests, bench prefill).
pub fn way_for(
    key: &FlowKey,
    real_id: u32,
    state: u8,
    real_gen: u32,
    svc_gen: u32,
    now_ns: u64,
) -> ConnWay {
    let meta = conn::meta_word(real_id, state, key.proto == PROTO_UDP, real_gen, svc_gen);
    ConnWay::new(
        key.src[0],
        key.dst[0],
        conn::ports_word(key.sport, key.dport),
        meta,
        conn::stamp_from_ns(now_ns),
    )
}

/// The set of a flow (the program's `conntable::set_of`).
pub fn set_of(key: &FlowKey, sets: u32) -> u32 {
    let ports = conn::ports_word(key.sport, key.dport);
    conn::set_index(conn::key_hash(key.src[0], key.dst[0], ports), sets - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::conn_state;

    fn key() -> FlowKey {
        FlowKey {
            src: [u32::from_ne_bytes([198, 18, 0, 10]), 0, 0, 0],
            dst: [u32::from_ne_bytes([198, 18, 0, 100]), 0, 0, 0],
            sport: 40_000u16.to_be(),
            dport: 80u16.to_be(),
            proto: PROTO_TCP,
            family: AF_INET,
            _pad: [0; 2],
        }
    }

    #[test]
    fn a_way_decodes_to_its_flow_and_entry() {
        let now = 5_000 * 1_000_000_000u64;
        let w = way_for(
            &key(),
            42,
            conn_state::ESTABLISHED,
            3,
            7,
            now - 10_000_000_000,
        );
        assert!(w.is_consistent());
        assert_eq!(way_key(&w), key());
        let e = way_entry(&w, 9, now);
        assert_eq!(e.real_id, 42);
        assert_eq!(e.service_id, 9);
        assert_eq!((e.real_gen, e.service_gen), (3, 7));
        assert_eq!(e.state, conn_state::ESTABLISHED);
        // Idle about 10 s: never more (no early expiry), at most one stamp unit less.
        let idle = now - e.last_seen_ns;
        assert!(
            idle <= 10_000_000_000 && idle + (1 << conn::STAMP_SHIFT) >= 10_000_000_000,
            "{idle}"
        );
        let mut udp = key();
        udp.proto = PROTO_UDP;
        let w = way_for(&udp, 1, conn_state::UDP, 0, 0, now);
        assert_eq!(way_key(&w), udp);
        assert_eq!(now - way_entry(&w, 0, now).last_seen_ns, 0);
    }

    /// The sweep reads the clock once, then scans: a way stamped in the next unit meanwhile is
    /// fresh, not expired (found by the resilience suite: such ways were freed).
    #[test]
    fn a_way_stamped_after_now_is_fresh() {
        let unit = 1u64 << conn::STAMP_SHIFT;
        let now = 5_000 * unit + unit - 1;
        let w = way_for(&key(), 1, conn_state::ESTABLISHED, 0, 0, now + 1);
        assert_eq!(way_entry(&w, 0, now).last_seen_ns, now);
    }

    #[test]
    fn stamps_wrap_around() {
        // A stamp taken just before the 16-bit unit counter wrapped.
        let unit = 1u64 << conn::STAMP_SHIFT;
        let then = 0xffffu64 * unit;
        let now = then + 3 * unit;
        let w = way_for(&key(), 1, conn_state::SYN_RECV, 0, 0, then);
        let idle = now - way_entry(&w, 0, now).last_seen_ns;
        assert_eq!(idle, 2 * unit);
    }
}
