//! Benchmark helpers (`cargo xtask bench`), never loaded by the daemon: the daemon loads only
//! `xlb`. Their maps are tiny (a one-entry array, a per-CPU counter, an 8-slot program array).
use core::ptr::{read_unaligned, write_unaligned};

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, PerCpuArray, ProgramArray},
    programs::XdpContext,
};
use lb_common::bench::{
    mode, BenchCfg, BENCH_FRAME_MAX, BENCH_PROG_SLOTS, V4_ADDR_OFF, V4_PORT_OFF, V6_ADDR_OFF,
    V6_PORT_OFF,
};

use crate::parse::ptr_at_mut;

#[map]
static BENCH_CFG: Array<BenchCfg> = Array::with_max_entries(1, 0);

/// Programs the wrapper tail-calls (slots chosen by the harness).
#[map]
static BENCH_PROGS: ProgramArray = ProgramArray::with_max_entries(BENCH_PROG_SLOTS, 0);

/// Per-CPU repetition counter (the harness sets it before a run).
#[map]
static BENCH_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn put_be16(ctx: &XdpContext, offset: usize, v: u16) {
    if let Some(p) = ptr_at_mut::<[u8; 2]>(ctx, offset) {
        // SAFETY: ptr_at_mut proved both bytes are inside the packet.
        unsafe { write_unaligned(p, v.to_be_bytes()) };
    }
}

/// Restores the template frame (the previous repetition's output is discarded), writes the
/// repetition's flow index into it, and tail-calls the program under test.
#[xdp]
pub fn xlb_bench_wrapper(ctx: XdpContext) -> u32 {
    let Some(cfg) = BENCH_CFG.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    let start = ctx.data();
    let end = ctx.data_end();
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
            put_be16(&ctx, a, (i >> 16) as u16);
            put_be16(&ctx, p, i as u16);
        }
    }
    // SAFETY: returns only when the slot is empty.
    unsafe { BENCH_PROGS.tail_call(&ctx, cfg.target) };
    xdp_action::XDP_ABORTED
}
