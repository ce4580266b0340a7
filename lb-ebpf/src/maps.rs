//! Every map of the program, in one place. Sizes marked "set by the loader" come from the config
//! (`EbpfLoader::set_max_entries`). The daemon pins every map under its bpffs directory (tests load
//! them unpinned), so a restarted daemon adopts them.
use aya_ebpf::{
    macros::map,
    maps::{Array, DevMap, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    Global,
};
use lb_common::{
    conn::ConnSet, stat, FloodState, FlowEntry, FlowKey, IfaceMac, LbConfig, PersistEntry,
    PersistKey, Persistence, RealServer, RealTunnel, Service, ServiceKey, ServiceState,
    TrafficStats, VipInfo, VipKey, DEFAULT_CONN_TABLE_SIZE, DEFAULT_PERSIST_TABLE_SIZE,
    MAX_IFACE_SLOTS, MAX_REALS, MAX_SERVICES, MAX_TX_PORTS, VIP_FILTER_WORDS,
};
use lb_common::{decap_stat, DecapConfig, DecapKey, MAX_DECAP_ADDRS};

/// BPF_F_NO_COMMON_LRU: per-CPU LRU lists over one shared table. Every CPU can find every flow
/// (RSS changes and the daemon's sweep need one table), while inserts, the hot operation under a
/// SYN flood, take only the local CPU's LRU lock instead of one global lock. Measured with
/// `cargo xtask bench` (bench/README.md): inserts into a full 1M table cost the same within noise
/// on 2 CPUs (per-CPU 754/946 ns on one/both CPUs, common 886/923 ns), and a shared lock only
/// gets worse with more cores, so per-CPU lists it is. Their cost: each CPU owns
/// conn_table_size / CPUs entries, so a CPU that gets more than its share of flows evicts early.
const NO_COMMON_LRU: u32 = 2;

#[map]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Generation and flags of each service id: the hit path's service check, an array read instead
/// of a SERVICES hash lookup (written by the daemon next to SERVICES).
#[map]
pub static SERVICE_STATE: Array<ServiceState> = Array::with_max_entries(MAX_SERVICES, 0);

/// VIP pre-filter bitmap (see `lb_common::VIP_FILTER_WORDS`), written by the daemon next to VIPS.
#[map]
pub static VIP_FILTER: Array<u64> = Array::with_max_entries(VIP_FILTER_WORDS, 0);

/// Addresses that are VIPs of some service: decides what happens to fragments.
#[map]
pub static VIPS: HashMap<VipKey, VipInfo> = HashMap::with_max_entries(MAX_SERVICES, 0);

#[map]
pub static REALS: Array<RealServer> = Array::with_max_entries(MAX_REALS, 0);

/// BPF_F_MMAPABLE: the daemon writes a 65,537-slot ring with one memcpy instead of 65,537 syscalls.
const MMAPABLE: u32 = 1 << 10;

/// All services' rings back to back (real-server slots); size set by the loader.
#[map]
pub static MAGLEV_RINGS: Array<u32> = Array::with_max_entries(65_537 * 4, MMAPABLE);

/// The set-associative IPv4 connection table (`lb_common::conn`): `conn::set_count(
/// conn_table_size)` sets of one cache line, set by the loader; mmapable so the daemon's sweep
/// reads it without syscalls.
#[map]
pub static CONN_SETS: Array<ConnSet> = Array::with_max_entries(1024, MMAPABLE);

/// Sets - 1 (the set count is a power of two), written by the loader.
#[unsafe(no_mangle)]
pub static CONN_SET_MASK: Global<u32> = Global::new(1023);

/// The connection table of IPv6 flows and of IPv4 flows whose set is full; size set by the
/// loader (`conn_table_size`).
#[map]
pub static CONN_TABLE: LruHashMap<FlowKey, FlowEntry> =
    LruHashMap::with_max_entries(DEFAULT_CONN_TABLE_SIZE, NO_COMMON_LRU);

/// Timeout and client mask of each persistent service, by service id (written by the daemon
/// before the service's `SVC_F_PERSISTENT` flag).
#[map]
pub static PERSISTENCE: Array<Persistence> = Array::with_max_entries(MAX_SERVICES, 0);

/// Persistence templates (client network, service) -> real server; size set by the loader
/// (`persist_table_size`). Looked up on a connection-table miss of a persistent service only.
/// A common LRU (unlike the connection table): it is written once per new connection only, and
/// a full table should evict the globally oldest template, not the oldest of one CPU's share.
#[map]
pub static PERSIST_TEMPLATES: LruHashMap<PersistKey, PersistEntry> =
    LruHashMap::with_max_entries(DEFAULT_PERSIST_TABLE_SIZE, 0);

#[map]
pub static GLOBAL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[map]
pub static SERVICE_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map]
pub static REAL_STATS: PerCpuArray<TrafficStats> = PerCpuArray::with_max_entries(MAX_REALS, 0);

/// Per-CPU round-robin position of each service.
#[map]
pub static RR_STATE: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map]
pub static FLOOD_STATE: PerCpuArray<FloodState> = PerCpuArray::with_max_entries(1, 0);

/// The coarse clock as this CPU last read it, and the jiffies of that read (conntrack.rs
/// `now_ns`). Not pinned: a new program starts with an empty cache.
#[repr(C)]
pub struct ClockCache {
    pub jiffies: u64,
    pub ns: u64,
}

#[map]
pub static CLOCK_CACHE: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static LB_CONFIG: Array<LbConfig> = Array::with_max_entries(1, 0);

/// Egress interfaces for real servers behind another interface than the receiving one.
#[map]
pub static TX_PORTS: DevMap = DevMap::with_max_entries(MAX_TX_PORTS, 0);

/// MAC of every interface the program is attached to (written by the daemon), by
/// `ifindex % MAX_IFACE_SLOTS`: an array, so the per-packet lookup is inlined by the JIT.
#[map]
pub static IFACE_MACS: Array<IfaceMac> = Array::with_max_entries(MAX_IFACE_SLOTS, 0);

/// How packets to each real-server slot are encapsulated (tunnel mode), next to `REALS`.
#[map]
pub static TUNNELS: Array<RealTunnel> = Array::with_max_entries(MAX_REALS, 0);

/// The tunnel-mode programs the main one tail-calls (`lb_common::TUNNEL_PROG_*`), set by the
/// loader.
#[map]
pub static TUNNEL_PROGS: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The MTU a tail-called "too big" answer announces (per CPU: set just before the tail call).
#[map]
pub static TOO_BIG_MTU: PerCpuArray<u16> = PerCpuArray::with_max_entries(1, 0);

/// Real servers' decapsulation program (`xlb_decap`): the directors whose tunnel packets are
/// decapsulated (anyone else's pass untouched).
#[map]
pub static DECAP_DIRECTORS: HashMap<DecapKey, u32> = HashMap::with_max_entries(MAX_DECAP_ADDRS, 0);

/// `xlb_decap`: the inner destinations (VIPs) delivered.
#[map]
pub static DECAP_VIPS: HashMap<DecapKey, u32> = HashMap::with_max_entries(MAX_DECAP_ADDRS, 0);

#[map]
pub static DECAP_CONFIG: Array<DecapConfig> = Array::with_max_entries(1, 0);

#[map]
pub static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(decap_stat::COUNT, 0);

/// Counters of the bench/test helper programs (packets seen), not used by `xlb`.
#[map]
pub static AUX_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = GLOBAL_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub fn count_traffic(map: &PerCpuArray<TrafficStats>, index: u32, bytes: u64, new_conn: bool) {
    if let Some(s) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += bytes;
            if new_conn {
                (*s).conns += 1;
            }
        }
    }
}
