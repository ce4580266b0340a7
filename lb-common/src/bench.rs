//! Layout shared by the benchmark wrapper program (`xlb_bench_wrapper` in lb-ebpf) and the
//! benchmark harness (`cargo xtask bench`). Nothing of the daemon uses it.
//!
//! `BPF_PROG_TEST_RUN` with `repeat` does not reset the frame between repetitions, and `xlb`
//! rewrites it. The wrapper restores `data` and the template frame before every repetition,
//! optionally writes a per-repetition flow index into it, then tail-calls the program under test.

/// Largest template frame (bytes); frames are copied in 8-byte words.
pub const BENCH_FRAME_MAX: usize = 128;
/// Slots of `BENCH_PROGS`; slot k is tail-called by the wrapper program `xlb_bench_w<k>`.
pub const BENCH_PROG_SLOTS: u32 = 8;
/// The wrapper program of each slot (a constant slot per program: a direct jump once JITed).
pub const BENCH_WRAPPERS: [&str; BENCH_PROG_SLOTS as usize] = [
    "xlb_bench_w0",
    "xlb_bench_w1",
    "xlb_bench_w2",
    "xlb_bench_w3",
    "xlb_bench_w4",
    "xlb_bench_w5",
    "xlb_bench_w6",
    "xlb_bench_w7",
];

/// Map names.
pub const BENCH_CFG: &str = "BENCH_CFG";
pub const BENCH_PROGS: &str = "BENCH_PROGS";
pub const BENCH_SEQ: &str = "BENCH_SEQ";
pub const BENCH_LINES: &str = "BENCH_LINES";
pub const BENCH_LRU: &str = "BENCH_LRU";

/// One element of `BENCH_LINES`: a cache line.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BenchLine {
    pub words: [u64; 8],
}

/// The key words of an IPv4 flow in a way of the set-associative prototype (`xlb_floor_set`):
/// (source and destination address, ports). The ports word sits in the high half of word 1.
#[inline(always)]
pub fn set_way_key(key: &crate::FlowKey) -> (u64, u64) {
    (
        ((key.src[0] as u64) << 32) | key.dst[0] as u64,
        ((key.sport as u64) << 16) | key.dport as u64,
    )
}

/// How the wrapper varies the flow per repetition (`BenchCfg::mode`).
pub mod mode {
    /// The template as is, every repetition.
    pub const FIXED: u32 = 0;
    /// Flow index `(seq * stride) % n`: lookups spread over all `n` flows (`stride` odd and `n` a
    /// power of two, so every flow is visited once per `n` repetitions).
    pub const SPREAD: u32 = 1;
    /// Flow index `seq`: a new flow every repetition.
    pub const FRESH: u32 = 2;
}

/// Where the flow index goes: its high 16 bits replace the last two bytes of the source address,
/// its low 16 bits the source port (both big endian). IPv4 in an untagged Ethernet frame: source
/// address bytes 2..4 at 28, source port at 34.
pub const V4_ADDR_OFF: usize = 28;
pub const V4_PORT_OFF: usize = 34;
/// IPv6: source address bytes 14..16 at 36, source port at 54.
pub const V6_ADDR_OFF: usize = 36;
pub const V6_PORT_OFF: usize = 54;

/// The single entry of `BENCH_CFG`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BenchCfg {
    /// The template; the wrapper copies `min(frame length, BENCH_FRAME_MAX)` rounded down to 8.
    pub frame: [u8; BENCH_FRAME_MAX],
    /// Template length in bytes: the wrapper moves `data` back to `data_end - len` first (undoing
    /// the previous repetition's `bpf_xdp_adjust_head`).
    pub len: u32,
    /// One of [`mode`].
    pub mode: u32,
    /// Modulus of [`mode::SPREAD`].
    pub n: u64,
    /// 0: IPv4 offsets, else IPv6 offsets.
    pub ipv6: u32,
    /// Multiplier of [`mode::SPREAD`].
    pub stride: u32,
}

impl Default for BenchCfg {
    fn default() -> Self {
        Self {
            frame: [0; BENCH_FRAME_MAX],
            len: 0,
            mode: mode::FIXED,
            n: 1,
            ipv6: 0,
            stride: 1,
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: #[repr(C)], Copy, integers and a byte array only, no implicit padding.
unsafe impl aya::Pod for BenchCfg {}
#[cfg(feature = "user")]
// SAFETY: #[repr(C)], Copy, integers only.
unsafe impl aya::Pod for BenchLine {}

#[cfg(test)]
mod tests {
    #[test]
    fn layout() {
        assert_eq!(
            core::mem::size_of::<super::BenchCfg>(),
            super::BENCH_FRAME_MAX + 24
        );
    }
}
