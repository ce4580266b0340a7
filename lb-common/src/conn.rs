//! The set-associative IPv4 connection table (`CONN_SETS`): one 64-byte set (a cache line) per
//! slot of a `BPF_F_MMAPABLE` array, set index = `set_index(key_hash(..))` (a hash of the IPv4
//! key words) masked to the set count (a power of two), three ways of five words. IPv6 flows and
//! IPv4 flows whose set is full live in the kernel LRU hash `CONN_TABLE` (`FlowKey` ->
//! `FlowEntry`).
//!
//! Why three 20-byte ways and not four 16-byte ones: a way must hold the whole key (96 bits of
//! addresses and ports, so no other flow can ever match it), the real server, generations, the
//! state, a timestamp and a check word; 16 bytes leave 32 bits for all but the key. The service
//! is not stored: a real-server slot belongs to one service (`RealServer::service_id`).
//!
//! Several CPUs write ways with plain stores, so a reader can see a way half old, half new. The
//! check word is a hash of the other four words, recomputed on every read: a way whose check does
//! not match is no flow's (a miss, dispatched afresh), never another flow's real server. A way is
//! free when its `stamp_check` word is 0 (the check is never 0); writers store that word last,
//! and the daemon's sweep frees an expired way by a compare-and-swap of that word alone.

/// Ways of a set.
pub const WAYS: usize = 3;

/// `meta` bits: real-server slot (16), state (4), UDP (1), real generation (5), service
/// generation (6).
pub mod meta {
    pub const REAL_MASK: u32 = 0xffff;
    pub const STATE_SHIFT: u32 = 16;
    pub const STATE_MASK: u32 = 0xf;
    pub const UDP: u32 = 1 << 20;
    pub const REAL_GEN_SHIFT: u32 = 21;
    pub const REAL_GEN_MASK: u32 = 0x1f;
    pub const SVC_GEN_SHIFT: u32 = 26;
    pub const SVC_GEN_MASK: u32 = 0x3f;
}

/// Timestamps are CLOCK_MONOTONIC_COARSE >> `STAMP_SHIFT` (units of 1.07 s), 16 bits: a shift,
/// not a division, on the hit path; ages up to 9.7 hours are told apart (`stamp_age`).
pub const STAMP_SHIFT: u32 = 30;
pub const STAMP_MASK: u32 = 0xffff;

/// Ways idle this long (2^14 units, 4.9 h) are moved by the daemon's sweep to the LRU, whose
/// entries keep the time in ns: so every idle timeout up to the configuration's 30 days holds,
/// while a way never gets old enough (2^15 units) to look young again. The sweep runs at least
/// every 60 s (`sweep_interval`), hours within the margin.
pub const LONG_IDLE_UNITS: u32 = 1 << 14;

/// One way: an IPv4 flow. Addresses and ports as in `FlowKey` (network byte order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnWay {
    pub src: u32,
    pub dst: u32,
    /// `sport | dport << 16` (the two network-order u16 of `FlowKey`).
    pub ports: u32,
    /// See [`meta`].
    pub meta: u32,
    /// Timestamp (low 16 bits) and check word (high 16 bits); 0 = free way.
    pub stamp_check: u32,
}

/// One set: a cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConnSet {
    pub ways: [ConnWay; WAYS],
    pub _reserved: u32,
}

/// Sets for a table of `flows` flows: one set (three ways) per flow, rounded up to a power of two
/// so the set index is a mask; at one flow per set about 2.3 % of flows find their set full
/// (Poisson) and go to the LRU.
pub const fn set_count(flows: u32) -> u32 {
    let n = if flows < 1024 { 1024 } else { flows };
    n.next_power_of_two()
}

#[inline(always)]
pub fn ports_word(sport: u16, dport: u16) -> u32 {
    sport as u32 | (dport as u32) << 16
}

#[inline(always)]
pub fn meta_word(real_id: u32, state: u8, udp: bool, real_gen: u32, svc_gen: u32) -> u32 {
    (real_id & meta::REAL_MASK)
        | ((state as u32) & meta::STATE_MASK) << meta::STATE_SHIFT
        | if udp { meta::UDP } else { 0 }
        | (real_gen & meta::REAL_GEN_MASK) << meta::REAL_GEN_SHIFT
        | (svc_gen & meta::SVC_GEN_MASK) << meta::SVC_GEN_SHIFT
}

#[inline(always)]
pub fn meta_real(m: u32) -> u32 {
    m & meta::REAL_MASK
}

#[inline(always)]
pub fn meta_state(m: u32) -> u8 {
    ((m >> meta::STATE_SHIFT) & meta::STATE_MASK) as u8
}

/// Does the way's real generation match `gen` (its low bits)?
#[inline(always)]
pub fn meta_real_gen_is(m: u32, gen: u32) -> bool {
    (m >> meta::REAL_GEN_SHIFT) & meta::REAL_GEN_MASK == gen & meta::REAL_GEN_MASK
}

#[inline(always)]
pub fn meta_svc_gen_is(m: u32, gen: u32) -> bool {
    (m >> meta::SVC_GEN_SHIFT) & meta::SVC_GEN_MASK == gen & meta::SVC_GEN_MASK
}

/// The meta word with another state.
#[inline(always)]
pub fn meta_with_state(m: u32, state: u8) -> u32 {
    (m & !(meta::STATE_MASK << meta::STATE_SHIFT))
        | ((state as u32) & meta::STATE_MASK) << meta::STATE_SHIFT
}

/// The hash of a way's key words, computed once per packet: the set index and the check word
/// both finish it (`set_index`, `check_with`), so the hit path mixes the key three times, not
/// fourteen (the full `hash::flow_hash` over the 40-byte key was the set index before). Every
/// director computes it alike (no seed of its own), as `flow_hash`.
#[inline(always)]
pub fn key_hash(src: u32, dst: u32, ports: u32) -> u32 {
    let h = crate::hash::mix(0x636f_6e6e, src); // "conn"
    let h = crate::hash::mix(h, dst);
    crate::hash::mix(h, ports)
}

/// Set of a flow of key hash `key_hash` in a table of `mask + 1` sets (a power of two). TCP and
/// UDP flows of the same addresses and ports share a set (the way's UDP bit tells them apart).
#[inline(always)]
pub fn set_index(key_hash: u32, mask: u32) -> u32 {
    crate::hash::finalize(key_hash, 12) & mask
}

/// The check word of a way whose key words hash to `key_hash`: never 0 (0 marks a free way).
#[inline(always)]
pub fn check_with(key_hash: u32, meta: u32) -> u32 {
    let c = crate::hash::finalize(crate::hash::mix(key_hash, meta), 16) >> 16;
    if c == 0 {
        1
    } else {
        c
    }
}

/// The check word over a way's key and meta.
#[inline(always)]
pub fn check(src: u32, dst: u32, ports: u32, meta: u32) -> u32 {
    check_with(key_hash(src, dst, ports), meta)
}

#[inline(always)]
pub fn stamp_check_word(check: u32, stamp: u32) -> u32 {
    check << 16 | (stamp & STAMP_MASK)
}

#[inline(always)]
pub fn stamp_of(word: u32) -> u32 {
    word & STAMP_MASK
}

#[inline(always)]
pub fn check_of(word: u32) -> u32 {
    word >> 16
}

/// Age in stamp units of a way stamped `stamp`, as of `now`. A stamp up to half the range ahead
/// of `now` was written after `now` was read (another CPU, or the program while the daemon's
/// sweep scans): age 0, never "oldest" (which would evict it, or expire it). So ages up to 2^15
/// units (9.7 hours) are told apart.
#[inline(always)]
pub fn stamp_age(now: u32, stamp: u32) -> u32 {
    let age = now.wrapping_sub(stamp) & STAMP_MASK;
    if age > STAMP_MASK / 2 {
        0
    } else {
        age
    }
}

/// A timestamp from CLOCK_MONOTONIC_COARSE ns.
#[inline(always)]
pub fn stamp_from_ns(ns: u64) -> u32 {
    (ns >> STAMP_SHIFT) as u32 & STAMP_MASK
}

impl ConnWay {
    /// A complete, valid way.
    #[inline(always)]
    pub fn new(src: u32, dst: u32, ports: u32, meta: u32, stamp: u32) -> Self {
        Self {
            src,
            dst,
            ports,
            meta,
            stamp_check: stamp_check_word(check(src, dst, ports, meta), stamp),
        }
    }

    #[inline(always)]
    pub fn is_free(&self) -> bool {
        self.stamp_check == 0
    }

    /// Are the words consistent (one writer's, not a torn mix of two)?
    #[inline(always)]
    pub fn is_consistent(&self) -> bool {
        self.stamp_check != 0
            && check_of(self.stamp_check) == check(self.src, self.dst, self.ports, self.meta)
    }
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], Copy, u32 fields only, no implicit padding.
unsafe impl aya::Pod for ConnSet {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_one_cache_line() {
        assert_eq!(core::mem::size_of::<ConnWay>(), 20);
        assert_eq!(core::mem::size_of::<ConnSet>(), 64);
    }

    #[test]
    fn meta_round_trips() {
        let m = meta_word(65_535, 5, true, 33, 65);
        assert_eq!(meta_real(m), 65_535);
        assert_eq!(meta_state(m), 5);
        assert!(m & meta::UDP != 0);
        assert!(meta_real_gen_is(m, 1) && !meta_real_gen_is(m, 2));
        assert!(meta_svc_gen_is(m, 1) && !meta_svc_gen_is(m, 0));
        assert_eq!(meta_state(meta_with_state(m, 2)), 2);
        assert_eq!(meta_real(meta_with_state(m, 2)), 65_535);
    }

    #[test]
    fn a_torn_way_is_inconsistent() {
        let a = ConnWay::new(1, 2, ports_word(3, 4), meta_word(7, 2, false, 1, 1), 9);
        let b = ConnWay::new(5, 2, ports_word(3, 4), meta_word(8, 2, false, 1, 1), 9);
        assert!(a.is_consistent() && b.is_consistent());
        // Key of one writer, meta of the other.
        let torn = ConnWay { meta: b.meta, ..a };
        assert!(!torn.is_consistent());
        assert!(!ConnWay::default().is_consistent());
        assert!(ConnWay::default().is_free());
    }

    #[test]
    fn the_check_word_finishes_the_key_hash() {
        let (src, dst, ports, m) = (0x0a00_12c6, 0x6400_12c6, ports_word(0x3930, 0x5000), 77);
        let h = key_hash(src, dst, ports);
        assert_eq!(check(src, dst, ports, m), check_with(h, m));
        assert_ne!(check_with(h, m), check_with(h, m + 1));
        assert_ne!(key_hash(src, dst, ports_word(0x3931, 0x5000)), h);
    }

    #[test]
    fn a_stamp_from_the_future_is_age_zero() {
        assert_eq!(stamp_age(10, 7), 3);
        assert_eq!(stamp_age(2, 0xfffe), 4, "wrapped");
        assert_eq!(stamp_age(10, 11), 0, "written after now was read");
    }

    #[test]
    fn set_counts_are_powers_of_two() {
        assert_eq!(set_count(100), 1024);
        assert_eq!(set_count(1_048_576), 1_048_576);
        assert_eq!(set_count(1_000_000), 1_048_576);
        assert_eq!(set_count(16_777_216), 16_777_216);
    }
}
