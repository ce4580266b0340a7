//! The set-associative IPv4 table (`CONN_SETS`, layout in `lb_common::conn`): finding a flow's
//! way in its set (one cache line) and placing a new flow in it. Policy (states, validity, the
//! flood guard) is conntrack.rs's; this module only knows ways.
use core::ptr::{read_volatile, write_volatile};

use lb_common::{
    conn::{self, ConnSet, ConnWay, WAYS},
    conn_state, FlowKey, AF_INET, PROTO_TCP, PROTO_UDP,
};

use crate::maps::{CONN_SETS, CONN_SET_MASK};

/// The words of a flow that a way stores as its key, and their hash (`conn::key_hash`: the set
/// index and the check word both finish it, so the key is hashed once per packet).
#[derive(Clone, Copy)]
pub struct WayKey {
    pub src: u32,
    pub dst: u32,
    pub ports: u32,
    pub udp: bool,
    pub hash: u32,
}

impl WayKey {
    /// IPv4 TCP and UDP flows have a way key; other flows live in the LRU only.
    #[inline(always)]
    pub fn of(flow: &FlowKey) -> Option<Self> {
        if flow.family != AF_INET || (flow.proto != PROTO_TCP && flow.proto != PROTO_UDP) {
            return None;
        }
        let ports = conn::ports_word(flow.sport, flow.dport);
        Some(Self {
            src: flow.src[0],
            dst: flow.dst[0],
            ports,
            udp: flow.proto == PROTO_UDP,
            hash: conn::key_hash(flow.src[0], flow.dst[0], ports),
        })
    }

    /// The way holds this flow and is consistent (one writer's words): its check word is that
    /// of this key and the way's meta, so only the meta is mixed (the key's hash is known).
    #[inline(always)]
    fn holds(&self, w: &ConnWay) -> bool {
        self.matches(w)
            && w.stamp_check != 0
            && conn::check_of(w.stamp_check) == conn::check_with(self.hash, w.meta)
    }

    /// Same flow: the key words and the protocol bit (of a consistent way).
    #[inline(always)]
    fn matches(&self, w: &ConnWay) -> bool {
        w.src == self.src
            && w.dst == self.dst
            && w.ports == self.ports
            && (w.meta & conn::meta::UDP != 0) == self.udp
    }
}

/// A way of the table: where it is and what it held when read.
pub struct Way {
    ptr: *mut ConnWay,
    pub value: ConnWay,
}

impl Way {
    /// Rewrites the state and timestamp of the way (found for `key`), only the words that
    /// changed (an unchanged line is not dirtied, nor bounced between CPUs). The check word
    /// goes last.
    #[inline(always)]
    pub fn touch(&self, key: &WayKey, state: u8, stamp: u32) {
        let old = &self.value;
        let meta = conn::meta_with_state(old.meta, state);
        // SAFETY: `ptr` points into the array element the kernel keeps for this program run.
        unsafe {
            if meta != old.meta {
                write_volatile(&raw mut (*self.ptr).meta, meta);
                let check = conn::check_with(key.hash, meta);
                write_volatile(
                    &raw mut (*self.ptr).stamp_check,
                    conn::stamp_check_word(check, stamp),
                );
            } else if conn::stamp_of(old.stamp_check) != stamp {
                let word = conn::stamp_check_word(conn::check_of(old.stamp_check), stamp);
                write_volatile(&raw mut (*self.ptr).stamp_check, word);
            }
        }
    }
}

/// The flow's set.
#[inline(always)]
pub fn set_of(key: &WayKey) -> Option<*mut ConnSet> {
    CONN_SETS.get_ptr_mut(conn::set_index(key.hash, CONN_SET_MASK.load()))
}

/// One way, copied out with each word read once (another CPU may be writing it).
#[inline(always)]
fn read_way(set: *mut ConnSet, i: usize) -> Way {
    // SAFETY: `set` is an element of CONN_SETS and i < WAYS.
    unsafe {
        let ptr = &raw mut (*set).ways[i];
        Way {
            ptr,
            value: read_volatile(ptr),
        }
    }
}

/// The flow's way in its set, if a consistent one holds it.
#[inline(always)]
pub fn find(set: *mut ConnSet, key: &WayKey) -> Option<Way> {
    for i in 0..WAYS {
        let way = read_way(set, i);
        if key.holds(&way.value) {
            return Some(way);
        }
    }
    None
}

/// Where a new flow goes in its set.
pub enum Placement {
    /// The way that held this flow (consistent), to be judged by the caller.
    Same(Way),
    /// A free or evictable way.
    Victim(Way),
    /// Every way holds a flow that may not be evicted: the flow goes to the LRU.
    Full,
}

/// Protected from eviction by a SYN: established TCP flows and UDP flows (the flood guard).
#[inline(always)]
fn is_protected(state: u8) -> bool {
    state == conn_state::ESTABLISHED || state == conn_state::UDP
}

/// Chooses the way for `key`: its own way (a torn copy of it first), else a free way, else the
/// oldest way whose flow is not established, else (only when `may_evict_established`, never for
/// a SYN) the oldest way. Free ways are the expired ones: the daemon's sweep frees them.
#[inline(always)]
pub fn place(set: *mut ConnSet, key: &WayKey, now: u32, may_evict_established: bool) -> Placement {
    let mut victim: Option<Way> = None;
    // Age of the victim (stamp units, < 2^16); larger is taken first.
    let mut victim_age = 0u32;
    for i in 0..WAYS {
        let way = read_way(set, i);
        // The check word is computed only for the flow's own way: another flow's way, even
        // torn, is judged by its words as read (a torn way is at worst kept until the sweep
        // frees it, or evicted), so a SYN costs one check, not three.
        if key.holds(&way.value) {
            return Placement::Same(way);
        }
        let age = if key.matches(&way.value) {
            // This flow's words under a bad check (torn): replaced first, so no junk copy stays.
            u32::MAX
        } else if way.value.is_free() {
            u32::MAX - 1
        } else if is_protected(conn::meta_state(way.value.meta)) && !may_evict_established {
            continue;
        } else {
            conn::stamp_age(now, conn::stamp_of(way.value.stamp_check))
        };
        if victim.is_none() || age > victim_age {
            victim_age = age;
            victim = Some(way);
        }
    }
    match victim {
        Some(w) => Placement::Victim(w),
        None => Placement::Full,
    }
}

/// Writes a flow into `way`: key and meta first, the check word last, so a reader sees either a
/// consistent way or a check mismatch.
#[inline(always)]
pub fn write(way: &Way, key: &WayKey, meta: u32, stamp: u32) {
    let check = conn::check_with(key.hash, meta);
    let p = way.ptr;
    // SAFETY: `p` points into the array element the kernel keeps for this program run.
    unsafe {
        write_volatile(&raw mut (*p).src, key.src);
        write_volatile(&raw mut (*p).dst, key.dst);
        write_volatile(&raw mut (*p).ports, key.ports);
        write_volatile(&raw mut (*p).meta, meta);
        write_volatile(
            &raw mut (*p).stamp_check,
            conn::stamp_check_word(check, stamp),
        );
    }
}
