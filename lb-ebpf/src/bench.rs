//! Benchmark helpers (`cargo xtask bench`), never loaded by the daemon: the daemon loads only
//! `xlb`. Their maps are tiny unless the harness sizes them (a one-entry array, a per-CPU counter,
//! an 8-slot program array, a one-line array).
//!
//! One wrapper program per `BENCH_PROGS` slot (`xlb_bench_w0` ...): a tail call with a constant
//! index is patched by the kernel into a direct jump, while a runtime index goes through an
//! indirect jump (a retpoline on this kind of VM, ~20 ns more).
use core::ptr::{read_unaligned, write_unaligned};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_xdp_adjust_head, bpf_xdp_get_buff_len},
    macros::{map, xdp},
    maps::{Array, LruHashMap, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use lb_common::{
    bench::{
        mode, BenchCfg, BenchLine, BENCH_FRAME_MAX, BENCH_PROG_SLOTS, V4_ADDR_OFF, V4_PORT_OFF,
        V6_ADDR_OFF, V6_PORT_OFF,
    },
    hash::flow_hash,
    FlowEntry, FlowKey, AF_INET, PROTO_TCP,
};

use crate::parse::{ptr_at, ptr_at_mut};

#[map]
static BENCH_CFG: Array<BenchCfg> = Array::with_max_entries(1, 0);

/// Programs the wrappers tail-call (slot k from `xlb_bench_wk`).
#[map]
static BENCH_PROGS: ProgramArray = ProgramArray::with_max_entries(BENCH_PROG_SLOTS, 0);

/// Per-CPU repetition counter (the harness sets it before a run).
#[map]
static BENCH_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// BPF_F_MMAPABLE: page-aligned, so every element is one whole cache line.
const MMAPABLE: u32 = 1 << 10;

/// The one-random-line floor's array (sized by the harness: one 64-byte line per flow).
#[map]
static BENCH_LINES: Array<BenchLine> = Array::with_max_entries(1, MMAPABLE);

/// The LRU-lookup floor's table: a kernel LRU hash like the overflow `CONN_TABLE` (per-CPU
/// lists), filled by the harness with all N spread flows; sized by the harness. A map of its own,
/// so `CONN_TABLE` holds only what xlb puts there (flows whose set is full).
#[map]
static BENCH_LRU: LruHashMap<FlowKey, FlowEntry> = LruHashMap::with_max_entries(1, 2);

#[inline(always)]
fn put_be16(ctx: &XdpContext, offset: usize, v: u16) {
    if let Some(p) = ptr_at_mut::<[u8; 2]>(ctx, offset) {
        // SAFETY: ptr_at_mut proved both bytes are inside the packet.
        unsafe { write_unaligned(p, v.to_be_bytes()) };
    }
}

/// Undoes a `bpf_xdp_adjust_head` of the previous repetition (the kernel keeps the moved `data`
/// between repetitions): `data` goes back to `data_end - len`. Programs under test must not move
/// `data_end`.
#[inline(always)]
fn restore_head(ctx: &XdpContext, len: u32) -> bool {
    // A pointer comparison on the common path; the verifier forbids arithmetic on the
    // difference of packet pointers, so the length comes from a helper when it changed.
    if ctx.data() + len as usize == ctx.data_end() {
        return true;
    }
    // SAFETY: ctx is the program's context; the helpers check the bounds themselves.
    unsafe {
        let cur = bpf_xdp_get_buff_len(ctx.ctx) as i64;
        bpf_xdp_adjust_head(ctx.ctx, (cur - len as i64) as i32) == 0
    }
}

/// Restores the template frame (the previous repetition's output is discarded), writes the
/// repetition's flow index into it, and returns true when the tail call may follow.
#[inline(always)]
fn prepare(ctx: &XdpContext) -> bool {
    let Some(cfg) = BENCH_CFG.get(0) else {
        return false;
    };
    if !restore_head(ctx, cfg.len) {
        return false;
    }
    // Volatile reads: after the fast-path check above, LLVM would otherwise know end - start ==
    // len and bound the copy with that scalar, which the verifier cannot use.
    // SAFETY: ctx.ctx is the program's context.
    let (start, end) = unsafe {
        (
            core::ptr::read_volatile(&(*ctx.ctx).data) as usize,
            core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize,
        )
    };
    let mut off = 0usize;
    while off < BENCH_FRAME_MAX {
        if start + off + 8 > end {
            break;
        }
        // SAFETY: the check above proved 8 bytes of packet at `off`; the template holds
        // BENCH_FRAME_MAX bytes.
        unsafe {
            let w = read_unaligned(cfg.frame.as_ptr().add(off) as *const u64);
            write_unaligned((start + off) as *mut u64, w);
        }
        off += 8;
    }
    if cfg.mode != mode::FIXED {
        if let Some(seq) = BENCH_SEQ.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, only this CPU touches it while the program runs.
            let i = unsafe {
                let s = *seq;
                *seq = s + 1;
                s
            };
            let i = if cfg.mode == mode::SPREAD && cfg.n != 0 {
                i.wrapping_mul(cfg.stride as u64) % cfg.n
            } else {
                i
            };
            let (a, p) = if cfg.ipv6 != 0 {
                (V6_ADDR_OFF, V6_PORT_OFF)
            } else {
                (V4_ADDR_OFF, V4_PORT_OFF)
            };
            put_be16(ctx, a, (i >> 16) as u16);
            put_be16(ctx, p, i as u16);
        }
    }
    true
}

macro_rules! wrapper {
    ($name:ident, $slot:literal) => {
        /// Benchmark wrapper tail-calling a constant `BENCH_PROGS` slot.
        #[xdp]
        pub fn $name(ctx: XdpContext) -> u32 {
            if !prepare(&ctx) {
                return xdp_action::XDP_ABORTED;
            }
            // SAFETY: returns only when the slot is empty.
            unsafe { BENCH_PROGS.tail_call(&ctx, $slot) };
            xdp_action::XDP_ABORTED
        }
    };
}

wrapper!(xlb_bench_w0, 0);
wrapper!(xlb_bench_w1, 1);
wrapper!(xlb_bench_w2, 2);
wrapper!(xlb_bench_w3, 3);
wrapper!(xlb_bench_w4, 4);
wrapper!(xlb_bench_w5, 5);
wrapper!(xlb_bench_w6, 6);
wrapper!(xlb_bench_w7, 7);

#[inline(always)]
fn macswap_tx(ctx: &XdpContext) -> u32 {
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: ptr_at_mut proved 12 bytes.
    unsafe {
        let m = read_unaligned(eth);
        let mut s = [0u8; 12];
        s[..6].copy_from_slice(&m[6..]);
        s[6..].copy_from_slice(&m[..6]);
        write_unaligned(eth, s);
    }
    xdp_action::XDP_TX
}

/// The wrapper's flow index back out of the frame (IPv4 template).
#[inline(always)]
fn flow_index(ctx: &XdpContext) -> Option<u64> {
    let a = ptr_at::<[u8; 2]>(ctx, V4_ADDR_OFF)?;
    let p = ptr_at::<[u8; 2]>(ctx, V4_PORT_OFF)?;
    // SAFETY: ptr_at proved both.
    let (a, p) = unsafe { (read_unaligned(a), read_unaligned(p)) };
    Some(((u16::from_be_bytes(a) as u64) << 16) | u16::from_be_bytes(p) as u64)
}

/// The IPv4 TCP flow of a template frame (fixed offsets: untagged, no IP options).
#[inline(always)]
fn template_flow(ctx: &XdpContext) -> Option<FlowKey> {
    let ip = ptr_at::<[u8; 12]>(ctx, 26)?;
    // SAFETY: ptr_at proved 12 bytes (addresses at 26..34, ports at 34..38).
    let b = unsafe { read_unaligned(ip) };
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some(FlowKey {
        src: [w(0), 0, 0, 0],
        dst: [w(4), 0, 0, 0],
        sport: u16::from_ne_bytes([b[8], b[9]]),
        dport: u16::from_ne_bytes([b[10], b[11]]),
        proto: PROTO_TCP,
        family: AF_INET,
        _pad: [0; 2],
    })
}

/// Floor: one kernel LRU-hash lookup (BENCH_LRU) of the frame's IPv4 flow, then MAC-swap.
/// Passes on a miss, so the harness sees a lookup that did not find its flow.
#[xdp]
pub fn xlb_floor_lru(ctx: XdpContext) -> u32 {
    let Some(key) = template_flow(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: only tested for presence.
    if unsafe { BENCH_LRU.get(&key) }.is_none() {
        return xdp_action::XDP_PASS;
    }
    macswap_tx(&ctx)
}

/// Floor: one 64-byte line of BENCH_LINES (line = the wrapper's flow index), then MAC-swap.
#[xdp]
pub fn xlb_floor_line(ctx: XdpContext) -> u32 {
    let Some(i) = flow_index(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Some(line) = BENCH_LINES.get(i as u32) else {
        return xdp_action::XDP_PASS;
    };
    // A word of the line decides the action, so the read cannot be optimised away.
    if line.words[0] == u64::MAX {
        return xdp_action::XDP_PASS;
    }
    macswap_tx(&ctx)
}

/// Prototype of a set-associative flow table (the measurement behind the table decision in
/// bench/README.md): BENCH_LINES as `n` sets of four 16-byte IPv4 ways (word 0: source and
/// destination address, word 1: ports in the high half, a payload in the low half), set =
/// flow hash mod n. Finds the frame's flow among the four ways, then MAC-swap.
#[xdp]
pub fn xlb_floor_set(ctx: XdpContext) -> u32 {
    let Some(key) = template_flow(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Some(cfg) = BENCH_CFG.get(0) else {
        return xdp_action::XDP_PASS;
    };
    let set = (flow_hash(&key) as u64 & cfg.n.wrapping_sub(1)) as u32;
    let Some(line) = BENCH_LINES.get(set) else {
        return xdp_action::XDP_PASS;
    };
    let (k0, k1) = lb_common::bench::set_way_key(&key);
    let mut found = false;
    for way in 0..4 {
        if line.words[2 * way] == k0 && line.words[2 * way + 1] >> 32 == k1 {
            found = true;
        }
    }
    // A flow that did not fit its set at prefill is counted (AUX_COUNT), and forwarded alike so
    // every repetition costs the same.
    if !found {
        if let Some(c) = crate::maps::AUX_COUNT.get_ptr_mut(0) {
            // SAFETY: per-CPU slot.
            unsafe { *c += 1 };
        }
    }
    macswap_tx(&ctx)
}

/// Floor of an encapsulating forwarder: grows the head by 20 bytes (an outer IPv4 header), moves
/// the Ethernet header to the new front, then XDP_TX. Proves the wrapper restores `data`.
#[xdp]
pub fn xlb_floor_encap(ctx: XdpContext) -> u32 {
    // SAFETY: ctx is the program's context; the helper checks the bounds.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -20) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(src) = ptr_at::<[u8; 34]>(&ctx, 20) else {
        return xdp_action::XDP_PASS;
    };
    let Some(dst) = ptr_at_mut::<[u8; 14]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: both proved inside the packet.
    unsafe {
        let s = read_unaligned(src);
        let mut eth = [0u8; 14];
        eth[..6].copy_from_slice(&s[6..12]);
        eth[6..12].copy_from_slice(&s[..6]);
        eth[12..].copy_from_slice(&s[12..14]);
        write_unaligned(dst, eth);
        // Outer header stand-in: the inner IPv4 header's first 20 bytes.
        let mut outer = [0u8; 20];
        outer.copy_from_slice(&s[14..34]);
        if let Some(o) = ptr_at_mut::<[u8; 20]>(&ctx, 14) {
            write_unaligned(o, outer);
        }
    }
    xdp_action::XDP_TX
}
