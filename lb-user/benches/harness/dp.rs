//! The data path under BPF_PROG_TEST_RUN: the XDP object loaded with the benchmark wrapper wired
//! to the programs under test, a service state, frames, flow keys and table prefill.
use std::{
    net::IpAddr,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray, PerCpuValues, ProgramArray},
    programs::Xdp,
    Ebpf, EbpfLoader, VerifierLogLevel,
};
use etherparse::PacketBuilder;
use lb_common::{
    bench::{
        mode, BenchCfg, BENCH_CFG, BENCH_FRAME_MAX, BENCH_LINES, BENCH_LRU, BENCH_PROGS, BENCH_SEQ,
        BENCH_WRAPPERS,
    },
    conn, map_names, FlowEntry, FlowKey, AF_INET, AF_INET6, PROTO_TCP,
};
use xlb::dataplane::{
    batch, conn_sets,
    desired::{
        DesiredReal, DesiredService, DesiredState, DesiredTunnel, Protocol, Scheduler, ServiceAddr,
        TunnelKind,
    },
    loader::{load_program, CONN_SET_MASK},
    maps::KernelMaps,
    sweep::monotonic_ns,
    writer::MapWriter,
};

use super::sys;

pub const SLOT_XLB: u32 = 0;
pub const SLOT_MACSWAP: u32 = 1;
pub const SLOT_DROP: u32 = 2;
pub const SLOT_PASS: u32 = 3;
/// One kernel LRU-hash lookup (BENCH_LRU, filled with the same flows) + MAC-swap.
pub const SLOT_FLOOR_LRU: u32 = 4;
/// One random 64-byte line of BENCH_LINES + MAC-swap.
pub const SLOT_FLOOR_LINE: u32 = 5;
/// bpf_xdp_adjust_head(-20) + MAC-swap (an encapsulating forwarder's floor).
pub const SLOT_FLOOR_ENCAP: u32 = 6;

/// A 4-way set-associative lookup in BENCH_LINES (prototype flow table) + MAC-swap.
pub const SLOT_FLOOR_SET: u32 = 7;

/// The programs under test, by slot.
const SLOTS: [(u32, &str); 8] = [
    (SLOT_XLB, "xlb"),
    (SLOT_MACSWAP, "xlb_macswap"),
    (SLOT_DROP, "xlb_drop"),
    (SLOT_PASS, "xlb_pass"),
    (SLOT_FLOOR_LRU, "xlb_floor_lru"),
    (SLOT_FLOOR_LINE, "xlb_floor_line"),
    (SLOT_FLOOR_ENCAP, "xlb_floor_encap"),
    (SLOT_FLOOR_SET, "xlb_floor_set"),
];

pub const PROGRAMS: [&str; 9] = [
    "xlb",
    "xlb_pass",
    "xlb_drop",
    "xlb_macswap",
    "xlb_count",
    "xlb_floor_lru",
    "xlb_floor_line",
    "xlb_floor_encap",
    "xlb_floor_set",
];

/// The wrapper program that tail-calls `slot`.
pub fn wrapper(slot: u32) -> &'static str {
    BENCH_WRAPPERS[slot as usize]
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const VIP4: [u8; 4] = [198, 18, 0, 100];
pub const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
];
/// VIP of the tunnel-mode service (100 GUE-tunnelled real servers behind a router).
pub const VIP_TUN4: [u8; 4] = [198, 18, 0, 101];
/// VIP of the IPIP tunnel-mode service.
pub const VIP_IPIP4: [u8; 4] = [198, 18, 0, 102];
/// VIP of the ip6ip6 tunnel-mode service (IPv6 real servers, IPv6 outer header).
pub const VIP_IP6IP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02,
];
/// Maglev ring slots of the benchmark state: its five services of 65,537 slots.
pub const BENCH_RING_CAPACITY: u32 = 5 * 65_537;
pub const OTHER4: [u8; 4] = [198, 18, 0, 50];
pub const OTHER6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
];
pub const PORT: u16 = 80;
/// Source "spaces" (second octet of the IPv4 source): prefilled flows, fresh flows.
pub const SPACE_PREFILL: u8 = 18;
pub const SPACE_FRESH: u8 = 19;
/// IPv6 fresh flows: 2001:db8:0:f::<index>.
pub const V6_FRESH_NET: [u8; 8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x0f];

/// test_run delivers frames as if received on `lo`.
const TEST_RUN_IFINDEX: u32 = 1;

pub struct Dp {
    pub ebpf: Ebpf,
    pub writer: MapWriter,
    cfg: Array<MapData, BenchCfg>,
    seq: PerCpuArray<MapData, u64>,
    pub aux: PerCpuArray<MapData, u64>,
    _progs: ProgramArray<MapData>,
    /// BENCH_LINES, mapped (the set-associative prototype is filled through it).
    lines: Option<LinesMmap>,
    ncpus: usize,
    /// Template for prefilled entries (taken from an entry xlb itself inserted).
    entry: Option<FlowEntry>,
    /// BENCH_LRU (the LRU-lookup floor's table).
    lru_floor: MapData,
}

pub struct LoadSpec<'a> {
    pub conn_table_size: u32,
    pub maglev_capacity: u32,
    /// Use the map pinned here as CONN_TABLE (the global-LRU variant).
    pub conn_table_pin: Option<&'a Path>,
    /// Lines of the one-random-line floor's array (64 bytes each).
    pub lines: u32,
}

impl Dp {
    pub fn load(spec: &LoadSpec<'_>) -> Result<Dp> {
        let sets = conn::set_count(spec.conn_table_size);
        let set_mask = sets - 1;
        let mut loader = EbpfLoader::new();
        loader
            .map_max_entries(map_names::CONN_TABLE, spec.conn_table_size)
            .map_max_entries(map_names::CONN_SETS, sets)
            .override_global(CONN_SET_MASK, &set_mask, true)
            .map_max_entries(map_names::MAGLEV_RINGS, spec.maglev_capacity)
            .map_max_entries(BENCH_LINES, spec.lines.max(1))
            .map_max_entries(BENCH_LRU, spec.lines.max(1))
            .verifier_log_level(VerifierLogLevel::STATS);
        if let Some(p) = spec.conn_table_pin {
            loader.map_pin_path(map_names::CONN_TABLE, p);
        }
        let mut ebpf = loader
            .load(xlb::BPF_OBJECT)
            .context("loading the XDP object")?;
        for p in PROGRAMS.iter().chain(BENCH_WRAPPERS.iter()) {
            load_program(&mut ebpf, p)?;
        }
        let mut progs: ProgramArray<MapData> = ebpf
            .take_map(BENCH_PROGS)
            .context("BENCH_PROGS")?
            .try_into()?;
        for (slot, name) in SLOTS {
            let p: &Xdp = ebpf.program(name).context(name)?.try_into()?;
            progs.set(slot, p.fd()?, 0)?;
        }
        let cfg: Array<MapData, BenchCfg> =
            ebpf.take_map(BENCH_CFG).context("BENCH_CFG")?.try_into()?;
        let seq: PerCpuArray<MapData, u64> =
            ebpf.take_map(BENCH_SEQ).context("BENCH_SEQ")?.try_into()?;
        let aux: PerCpuArray<MapData, u64> = ebpf
            .take_map("AUX_COUNT")
            .context("AUX_COUNT")?
            .try_into()?;
        let lines = match ebpf.take_map(BENCH_LINES).context("BENCH_LINES")? {
            aya::maps::Map::Array(d) if spec.lines > 1 => Some(LinesMmap::new(d, spec.lines)?),
            _ => None,
        };
        let lru_floor = match ebpf.take_map(BENCH_LRU).context("BENCH_LRU")? {
            aya::maps::Map::LruHashMap(d) => d,
            _ => bail!("BENCH_LRU is not an LRU hash"),
        };
        let maps = KernelMaps::take(&mut ebpf)?;
        let writer = MapWriter::new(maps, Duration::from_secs(60));
        let ncpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow!("{m}: {e}"))?;
        Ok(Dp {
            ebpf,
            writer,
            cfg,
            seq,
            aux,
            _progs: progs,
            lines,
            ncpus,
            entry: None,
            lru_floor,
        })
    }

    pub fn prog_fd(&self, name: &str) -> Result<RawFd> {
        let p: &Xdp = self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        Ok(p.fd()?.as_fd().as_raw_fd())
    }

    pub fn table_fd(&self) -> RawFd {
        self.writer.maps().conn_table_fd().as_raw_fd()
    }

    pub fn set_cfg(&mut self, frame: &[u8], mode: u32, n: u64) -> Result<()> {
        self.set_cfg_stride(frame, mode, n, 1)
    }

    pub fn set_cfg_stride(&mut self, frame: &[u8], mode: u32, n: u64, stride: u32) -> Result<()> {
        if frame.len() > BENCH_FRAME_MAX || !frame.len().is_multiple_of(8) {
            bail!("template frames are multiples of 8 up to {BENCH_FRAME_MAX} bytes");
        }
        let mut c = BenchCfg {
            len: frame.len() as u32,
            mode,
            n: n.max(1),
            stride,
            ipv6: u32::from(u16::from_be_bytes([frame[12], frame[13]]) == 0x86dd),
            ..Default::default()
        };
        c.frame[..frame.len()].copy_from_slice(frame);
        self.cfg.set(0, c, 0)?;
        Ok(())
    }

    /// Sets every CPU's repetition counter.
    pub fn set_seq(&mut self, v: u64) -> Result<()> {
        self.seq
            .set(0, PerCpuValues::try_from(vec![v; self.ncpus])?, 0)?;
        Ok(())
    }

    pub fn counters(&self) -> Result<Vec<u64>> {
        Ok(self.writer.maps().global_counters()?)
    }

    pub fn aux_total(&self) -> Result<u64> {
        Ok(self.aux.get(&0, 0)?.iter().sum())
    }

    /// Applies the benchmark state: one TCP service on VIP4:80 and one on VIP6:80, 100 real
    /// servers each (Maglev, 65,537 slots), every real reached by XDP_TX on `ifindex`; and the
    /// same real servers tunnelled behind VIP_TUN4 (GUE), VIP_IPIP4 (IPIP), VIP_IP6IP6 (ip6ip6).
    pub fn apply_state(&mut self, ifindex: u32, real_mac: [u8; 6], src_mac: [u8; 6]) -> Result<()> {
        let state = bench_state(ifindex, real_mac, src_mac);
        self.writer.apply(&state, Instant::now())?;
        Ok(())
    }

    pub fn apply_test_state(&mut self) -> Result<()> {
        self.apply_state(TEST_RUN_IFINDEX, [0x02, 0, 0, 0, 1, 1], DIRECTOR_MAC)?;
        self.set_iface_mac(TEST_RUN_IFINDEX, DIRECTOR_MAC)
    }

    /// The receiving interface's MAC, as the daemon writes it (the destination-MAC check runs on
    /// every benchmarked packet).
    pub fn set_iface_mac(&mut self, ifindex: u32, mac: [u8; 6]) -> Result<()> {
        let macs = std::collections::BTreeMap::from([(ifindex, mac)]);
        self.writer.maps_mut().set_interface_macs(&macs)?;
        Ok(())
    }

    /// Every entry of the table (the sets' ways, then the LRU).
    pub fn keys(&self) -> Result<Vec<(FlowKey, FlowEntry)>> {
        let mut out = Vec::new();
        xlb::dataplane::sweep::for_each_flow(self.writer.maps(), |k, v| out.push((*k, *v)))?;
        Ok(out)
    }

    /// Empties the connection table.
    pub fn clear_table(&mut self) -> Result<u64> {
        let keys: Vec<FlowKey> = self.keys()?.into_iter().map(|(k, _)| k).collect();
        Ok(self.delete(&keys))
    }

    /// Removes flows: their ways (freed in place) and their LRU entries.
    pub fn delete(&mut self, keys: &[FlowKey]) -> u64 {
        let sets = &self.writer.maps().conn_sets;
        let mut freed = 0u64;
        for k in keys {
            let set = conn_sets::set_of(k, sets.sets());
            for way in 0..conn::WAYS as u32 {
                let at = conn_sets::WayIndex { set, way };
                let w = sets.read(at);
                if w.is_consistent()
                    && conn_sets::way_key(&w) == *k
                    && sets.free_if_unchanged(at, w.stamp_check)
                {
                    freed += 1;
                }
            }
        }
        let fd = self.table_fd();
        let table = &mut self.writer.maps_mut().conn_table;
        freed + batch::delete(fd, keys, |k| table.remove(k).is_ok())
    }

    /// Runs the wrapper once over flow 0 of the prefill space with a SYN, so xlb itself inserts
    /// the entry the prefill copies; checks that our key layout matches the program's.
    pub fn learn_entry(&mut self) -> Result<()> {
        let syn = tcp4([198, SPACE_PREFILL, 0, 0], 0, VIP4, PORT, true);
        self.set_cfg(&syn, mode::SPREAD, 1)?;
        self.set_seq(0)?;
        let fd = self.prog_fd(wrapper(SLOT_XLB))?;
        let r = sys::test_run(fd, &syn, 1)?;
        if r.retval != 3 {
            bail!(
                "xlb answered {} to the sample SYN (XDP_TX expected)",
                r.retval
            );
        }
        let want = flow_key_v4(SPACE_PREFILL, 0);
        let found = self
            .keys()?
            .into_iter()
            .find(|(k, _)| *k == want)
            .ok_or_else(|| anyhow!("the key layout of the harness does not match xlb's"))?;
        let mut e = found.1;
        e.state = lb_common::conn_state::ESTABLISHED;
        self.entry = Some(e);
        // Flow 0 is in its set now; the LRU-lookup floor needs it too.
        self.prefill_lru_floor(0, 1, e)
    }

    /// Inserts prefill flows `from..to` (IPv4, established) as xlb would: into their sets'
    /// free ways through the mapping, the rest (sets full) into CONN_TABLE. The same flows go
    /// into BENCH_LRU for the LRU-lookup floor. Returns the flows that went to CONN_TABLE.
    pub fn prefill(&mut self, from: u64, to: u64) -> Result<u64> {
        let mut entry = self.entry.context("learn_entry first")?;
        entry.last_seen_ns = monotonic_ns();
        let overflow = self.prefill_sets(from, to, &entry)?;
        let fd = self.table_fd();
        for chunk in overflow.chunks(65_536) {
            let vals = vec![entry; chunk.len()];
            batch::update(fd, chunk, &vals).context("BPF_MAP_UPDATE_BATCH (CONN_TABLE)")?;
        }
        self.prefill_lru_floor(from, to, entry)?;
        Ok(overflow.len() as u64)
    }

    /// The sets part of `prefill`: the keys whose set had no free way.
    fn prefill_sets(&self, from: u64, to: u64, e: &FlowEntry) -> Result<Vec<FlowKey>> {
        let sets = &self.writer.maps().conn_sets;
        let mut overflow = Vec::new();
        for i in from..to {
            let key = flow_key_v4(SPACE_PREFILL, i);
            let set = conn_sets::set_of(&key, sets.sets());
            let way = (0..conn::WAYS as u32)
                .map(|way| conn_sets::WayIndex { set, way })
                .find(|at| sets.read(*at).is_free());
            match way {
                Some(at) => sets.write(
                    at,
                    &conn_sets::way_for(
                        &key,
                        e.real_id,
                        e.state,
                        e.real_gen,
                        e.service_gen,
                        e.last_seen_ns,
                    ),
                ),
                None => overflow.push(key),
            }
        }
        Ok(overflow)
    }

    /// BENCH_LRU gets flows `from..to` with BPF_MAP_UPDATE_BATCH, spread evenly over every CPU
    /// (with per-CPU LRU lists each CPU's list owns 1/ncpu of the table: a prefill from one CPU
    /// would evict its own entries past that share).
    fn prefill_lru_floor(&self, from: u64, to: u64, entry: FlowEntry) -> Result<()> {
        let fd = self.lru_floor.fd().as_fd().as_raw_fd();
        let ncpus = self.ncpus as u64;
        let per = (to - from).div_ceil(ncpus);
        std::thread::scope(|s| -> Result<()> {
            let mut hs = Vec::new();
            for cpu in 0..ncpus {
                let a = from + cpu * per;
                let b = (a + per).min(to);
                hs.push(s.spawn(move || -> Result<()> {
                    sys::pin_to_cpu(cpu as usize)?;
                    let mut i = a;
                    while i < b {
                        let end = (i + 65_536).min(b);
                        let keys: Vec<FlowKey> =
                            (i..end).map(|k| flow_key_v4(SPACE_PREFILL, k)).collect();
                        let vals = vec![entry; keys.len()];
                        xlb::dataplane::batch::update(fd, &keys, &vals)
                            .context("BPF_MAP_UPDATE_BATCH (BENCH_LRU)")?;
                        i = end;
                    }
                    Ok(())
                }));
            }
            for h in hs {
                h.join().map_err(|_| anyhow!("prefill thread panicked"))??;
            }
            Ok(())
        })
    }
}

/// BENCH_LINES mapped into the harness (`BPF_F_MMAPABLE`: 64-byte elements back to back).
struct LinesMmap {
    ptr: *mut u64,
    lines: u32,
    bytes: usize,
    _map: MapData,
}

impl LinesMmap {
    fn new(map: MapData, lines: u32) -> Result<LinesMmap> {
        let bytes = (lines as usize * 64).div_ceil(4096) * 4096;
        // SAFETY: a shared mapping of an mmapable array of `lines` 64-byte elements.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap BENCH_LINES: {}", std::io::Error::last_os_error());
        }
        Ok(LinesMmap {
            ptr: ptr.cast(),
            lines,
            bytes,
            _map: map,
        })
    }
}

impl Drop for LinesMmap {
    fn drop(&mut self) {
        // SAFETY: unmapping what new() mapped.
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

impl Dp {
    /// Fills the set-associative prototype with prefill flows `0..n` (4 ways a set, set = flow
    /// hash mod n, first free way); returns how many flows found their set full.
    pub fn fill_sets(&mut self, n: u64) -> Result<u64> {
        let m = self.lines.as_ref().context("loaded without BENCH_LINES")?;
        if u64::from(m.lines) < n || !n.is_power_of_two() {
            bail!("{n} sets need a power-of-two BENCH_LINES of at least {n} lines");
        }
        let mut overflow = 0;
        for i in 0..n {
            let key = flow_key_v4(SPACE_PREFILL, i);
            let set = (u64::from(lb_common::hash::flow_hash(&key)) & (n - 1)) as usize;
            let (k0, k1) = lb_common::bench::set_way_key(&key);
            // SAFETY: set < n <= lines; 8 words a line.
            let line = unsafe { std::slice::from_raw_parts_mut(m.ptr.add(set * 8), 8) };
            match (0..4).find(|w| line[2 * w] == 0) {
                Some(w) => {
                    line[2 * w] = k0;
                    line[2 * w + 1] = (k1 << 32) | 1;
                }
                None => overflow += 1,
            }
        }
        Ok(overflow)
    }
}

pub fn bench_state(ifindex: u32, real_mac: [u8; 6], src_mac: [u8; 6]) -> DesiredState {
    let reals = |v6: bool| -> Vec<DesiredReal> {
        (1..=100u32)
            .map(|i| DesiredReal {
                addr: if v6 {
                    IpAddr::from([
                        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, i as u8,
                    ])
                } else {
                    IpAddr::from([198, 18, 2, i as u8])
                },
                port: PORT,
                weight: 1,
                alive: true,
                mac: real_mac,
                src_mac,
                ifindex,
                tx_port: 0,
                tunnel: None,
            })
            .collect()
    };
    let svc = |vip: IpAddr, reals: Vec<DesiredReal>| DesiredService {
        addr: ServiceAddr {
            vip,
            port: PORT,
            protocol: Protocol::Tcp,
        },
        active: true,
        scheduler: Scheduler::Maglev,
        hash_client_only: false,
        persistence: None,
        table_size: 65_537,
        reals,
        sorry: None,
    };
    // Tunnel mode: the same real servers, encapsulated (the frame's MACs go to the next hop).
    let tunnelled = |kind: TunnelKind, v6: bool| -> Vec<DesiredReal> {
        let src = if v6 {
            IpAddr::from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2])
        } else {
            IpAddr::from([198, 18, 1, 2])
        };
        reals(v6)
            .into_iter()
            .map(|mut r| {
                r.tunnel = Some(DesiredTunnel {
                    kind,
                    src,
                    mtu: 1500,
                    gue_port: lb_common::DEFAULT_GUE_PORT,
                });
                r
            })
            .collect()
    };
    DesiredState {
        services: vec![
            svc(IpAddr::from(VIP4), reals(false)),
            svc(IpAddr::from(VIP6), reals(true)),
            svc(IpAddr::from(VIP_TUN4), tunnelled(TunnelKind::Gue, false)),
            svc(IpAddr::from(VIP_IPIP4), tunnelled(TunnelKind::Ipip, false)),
            // IPIP to IPv6 real servers: ip6ip6.
            svc(IpAddr::from(VIP_IP6IP6), tunnelled(TunnelKind::Ipip, true)),
        ],
        flood_threshold: 0,
        tx_ports: Default::default(),
        interface_macs: Default::default(),
    }
}

fn pad8(mut v: Vec<u8>, min: usize) -> Vec<u8> {
    let len = v.len().max(min).div_ceil(8) * 8;
    v.resize(len, 0);
    v
}

/// A TCP frame (ACK, or SYN) padded to 64 bytes.
pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("frame");
    pad8(v, 64)
}

/// An IPv6 TCP frame padded to 80 bytes.
pub fn tcp6(src: [u8; 16], sport: u16, dst: [u8; 16], dport: u16, syn: bool) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(src, dst, 64)
        .tcp(sport, dport, 1000, 64240);
    let b = if syn { b.syn() } else { b.ack(1) };
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("frame");
    pad8(v, 80)
}

fn word(b: [u8; 4]) -> u32 {
    u32::from_ne_bytes(b)
}

/// The table key of IPv4 flow `i` of `space` to VIP4:80 (see lb_common::bench for the layout).
pub fn flow_key_v4(space: u8, i: u64) -> FlowKey {
    let hi = ((i >> 16) as u16).to_be_bytes();
    FlowKey {
        src: [word([198, space, hi[0], hi[1]]), 0, 0, 0],
        dst: [word(VIP4), 0, 0, 0],
        sport: u16::from_ne_bytes((i as u16).to_be_bytes()),
        dport: u16::from_ne_bytes(PORT.to_be_bytes()),
        proto: PROTO_TCP,
        family: AF_INET,
        _pad: [0; 2],
    }
}

/// The table key of IPv6 fresh flow `i` (2001:db8:0:f::<hi16>, port lo16).
pub fn flow_key_v6_fresh(i: u64) -> FlowKey {
    let mut src = [0u8; 16];
    src[..8].copy_from_slice(&V6_FRESH_NET);
    src[14..16].copy_from_slice(&((i >> 16) as u16).to_be_bytes());
    let w = |a: &[u8; 16], k: usize| word([a[k], a[k + 1], a[k + 2], a[k + 3]]);
    FlowKey {
        src: [w(&src, 0), w(&src, 4), w(&src, 8), w(&src, 12)],
        dst: [w(&VIP6, 0), w(&VIP6, 4), w(&VIP6, 8), w(&VIP6, 12)],
        sport: u16::from_ne_bytes((i as u16).to_be_bytes()),
        dport: u16::from_ne_bytes(PORT.to_be_bytes()),
        proto: PROTO_TCP,
        family: AF_INET6,
        _pad: [0; 2],
    }
}

pub fn v6_fresh_src() -> [u8; 16] {
    let mut src = [0u8; 16];
    src[..8].copy_from_slice(&V6_FRESH_NET);
    src
}

/// A global-LRU CONN_TABLE (no BPF_F_NO_COMMON_LRU), pinned so the loader adopts it instead of
/// creating the object's per-CPU-LRU map. The pin is removed when this drops (the loaded object
/// keeps its own fd).
pub struct GlobalLru {
    pub path: PathBuf,
    _fd: OwnedFd,
}

impl GlobalLru {
    pub fn create(entries: u32) -> Result<GlobalLru> {
        let dir = Path::new("/sys/fs/bpf");
        if !dir.exists() {
            bail!("/sys/fs/bpf is missing (mount -t bpf bpf /sys/fs/bpf)");
        }
        let path = dir.join(format!("xlb-bench-lru-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let fd = sys::create_map(
            sys::BPF_MAP_TYPE_LRU_HASH,
            std::mem::size_of::<FlowKey>() as u32,
            std::mem::size_of::<FlowEntry>() as u32,
            entries,
            0,
            "CONN_TABLE",
        )
        .context("creating the global-LRU table")?;
        sys::pin(fd.as_raw_fd(), &path).context("pinning the global-LRU table")?;
        Ok(GlobalLru { path, _fd: fd })
    }
}

impl Drop for GlobalLru {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Dp {
    /// Sets each CPU's repetition counter.
    pub fn set_seq_values(&mut self, v: Vec<u64>) -> Result<()> {
        self.seq.set(0, PerCpuValues::try_from(v)?, 0)?;
        Ok(())
    }
}
