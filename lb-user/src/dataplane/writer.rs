//! The one writer of the kernel maps. It keeps a mirror of what it wrote, applies only the
//! difference to a new `DesiredState`, and orders writes so that no packet sees a half-written
//! service: real-server slots first, then the new ring into a free region, then the service entry
//! (one atomic map update switches to the new ring), and only then the retirement of removed
//! real servers and the release of regions nothing points at any more.
//!
//! Why one file of this size: the ordering of writes is the writer's whole correctness argument
//! (a packet never sees a half-written service), so adopt, apply and retire stay side by side;
//! the pure decisions are in [`super::ring_plan`].
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::maps::MapError;
use lb_common::{
    LbConfig, Persistence, RealServer, RealTunnel, Service, ServiceKey, VipInfo, VipKey, MAX_REALS,
    MAX_SERVICES, NO_REAL, PROTO_TCP, REAL_F_ALIVE, REAL_F_IN_USE, SVC_F_FORWARD_FRAGMENTS,
    VIP_F_FRAG_TCP, VIP_F_FRAG_UDP,
};
use thiserror::Error;

use super::{
    alloc::{IdPool, Region, RegionAlloc},
    desired::{addr_words, words_addr, DesiredReal, DesiredService, DesiredState, ServiceAddr},
    maglev,
    maps::KernelMaps,
    ring_plan::{
        positional_ring_inputs, previous_ring_after_switch, ring_inputs, set_service_fields,
        wanted_reals, PreviousRing, RingInputs, RingSwitch,
    },
};

#[derive(Debug, Error)]
pub enum WriteError {
    #[error("kernel map update failed: {0}")]
    Map(#[from] MapError),
    #[error(transparent)]
    Maps(#[from] super::maps::MapsError),
    #[error("devmap update failed: {0}")]
    DevMap(#[from] aya::maps::xdp::XdpMapError),
    #[error("more than {MAX_SERVICES} virtual servers")]
    TooManyServices,
    #[error("more than {MAX_REALS} real servers in all virtual servers")]
    TooManyReals,
    #[error(
        "the Maglev ring map is full ({capacity} slots, {free} free, {needed} needed for {service}); \
         raise global.maglev_capacity or lower maglev_table_size, then restart with --release-on-exit once"
    )]
    RingCapacity {
        service: String,
        capacity: u32,
        free: u64,
        needed: u32,
    },
}

/// Identity of a real-server slot within a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RealKey {
    pub addr: IpAddr,
    pub port: u16,
    pub sorry: bool,
}

#[derive(Debug, Clone)]
struct WrittenService {
    key: ServiceKey,
    value: Service,
    prev_since: Option<Instant>,
    /// What `ring` was built from: an apply with the same inputs skips the build (a reload of
    /// 1,000 unchanged services must not rebuild 1,000 Maglev tables).
    ring_inputs: Option<RingInputs>,
    /// The current ring was written while nobody sent this director the service's traffic (a
    /// withdrawn BGP service): when replaced it does not become the previous ring.
    ring_unserved: bool,
    reals: BTreeMap<RealKey, u32>,
}

/// What one `apply` changed (logged by the daemon, checked by tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub services_added: usize,
    pub services_removed: usize,
    pub services_updated: usize,
    pub rings_rebuilt: usize,
    pub reals_written: usize,
    pub reals_retired: usize,
}

impl ApplyReport {
    pub fn is_empty(&self) -> bool {
        *self == ApplyReport::default()
    }
}

/// `bpf_map_update_elem` flag: update an existing element only.
const BPF_EXIST: u64 = 2;

/// A Maglev table built before its service was written (an apply's changed rings are built on
/// worker threads while earlier services are written): `table` holds backend positions of
/// `inputs`, not slots.
struct PrebuiltRing<'a> {
    inputs: &'a RingInputs,
    table: Vec<u32>,
}

/// What one service's real-server slots need written (see `MapWriter::flush_real_writes`).
#[derive(Default)]
struct RealWrites {
    /// Slots just handed to a real server: their counters start at zero.
    fresh: Vec<u32>,
    reals: Vec<(u32, RealServer)>,
    tunnels: Vec<(u32, RealTunnel)>,
}

/// The ring an apply installs: built on the writer's thread with the slots in it, or a
/// prebuilt table of backend positions, mapped to `slots` as it is copied into the ring map.
enum NextRing {
    Built(Vec<u32>),
    Positional { table: Vec<u32>, slots: Vec<u32> },
}

impl NextRing {
    fn len(&self) -> usize {
        match self {
            NextRing::Built(ring) => ring.len(),
            NextRing::Positional { table, .. } => table.len(),
        }
    }

    /// Whether this is the ring of `len` slots whose slot `i` is `at(i)` (position by position,
    /// after the mapping to slots). The ring in force is read from the ring map itself: the
    /// writer keeps no copy (1,000 services of 65,537 slots would be 256 MiB of copies, and a
    /// reload that changes them all would fault in as much fresh memory).
    fn is(&self, len: usize, at: impl Fn(usize) -> u32) -> bool {
        self.len() == len
            && match self {
                NextRing::Built(r) => r.iter().enumerate().all(|(i, &s)| at(i) == s),
                NextRing::Positional { table, slots } => table
                    .iter()
                    .enumerate()
                    .all(|(i, &p)| slots[p as usize] == at(i)),
            }
    }
}

/// Where a service is in the kernel (for status and counters).
#[derive(Debug, Clone)]
pub struct ServiceSlots {
    pub id: u32,
    pub reals: BTreeMap<RealKey, u32>,
}

/// A connection a peer director dispatched, named by this director's slots (see
/// `crate::sync::names`), for [`MapWriter::insert_synced_conns`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedConn {
    pub flow: lb_common::FlowKey,
    pub service_id: u32,
    pub real_id: u32,
    /// One of `lb_common::conn_state`.
    pub state: u8,
    /// Stamp that makes the entry expire when it does on its origin (CLOCK_MONOTONIC_COARSE).
    pub last_seen_ns: u64,
    /// The origin's `sync.director_id`.
    pub origin: u32,
    /// Relayed by a director other than its origin (a full resend): it may create a missing
    /// entry and extend an entry's time, never change the state of one held here (the origin
    /// speaks of its flow's state itself; a relayed copy may predate its FIN).
    pub relayed: bool,
}

/// A peer's flow changed state (ESTABLISHED, FIN or RST seen there), for
/// [`MapWriter::update_peers_states`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncedState {
    pub flow: lb_common::FlowKey,
    /// One of `lb_common::conn_state`.
    pub state: u8,
    /// Stamp that makes the entry expire when it does on its origin in its new state.
    pub last_seen_ns: u64,
}

/// What [`MapWriter::update_peers_states`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatesApplied {
    /// Synced entries moved to their origin's state.
    pub synced: usize,
    /// Own entries of flows that moved to the peer (`sync::apply::moved_away`).
    pub own: usize,
}

/// What [`MapWriter::insert_synced_conns`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncedInsert {
    pub written: usize,
    /// Flows this director dispatched itself: its own entry stands.
    pub own_kept: usize,
    /// The slot is not (or no longer) a real server of that service here.
    pub unknown_slot: usize,
}

pub struct MapWriter {
    maps: KernelMaps,
    services: BTreeMap<ServiceAddr, WrittenService>,
    /// Last generation written to each real slot (slots are reused; generations only grow).
    generations: Vec<u32>,
    written_reals: HashMap<u32, RealServer>,
    service_ids: IdPool,
    real_slots: IdPool,
    regions: RegionAlloc,
    prev_ring_hold: Duration,
    /// The interface MACs last written (IFACE_MACS is rewritten only when they change).
    interface_macs: Option<BTreeMap<u32, [u8; 6]>>,
}

fn region_of(offset: u32, size: u32) -> Region {
    Region { offset, len: size }
}

fn service_key(addr: &ServiceAddr) -> ServiceKey {
    let (words, family) = addr_words(addr.vip);
    ServiceKey {
        addr: words,
        port: addr.port.to_be(),
        proto: addr.protocol.number(),
        family,
    }
}

fn real_value(r: &DesiredReal, generation: u32, service_id: u32) -> RealServer {
    let (words, family) = addr_words(r.addr);
    RealServer {
        addr: words,
        mac: r.mac,
        src_mac: r.src_mac,
        ifindex: r.ifindex,
        tx_port: r.tx_port,
        generation,
        flags: REAL_F_IN_USE | if r.alive { REAL_F_ALIVE } else { 0 },
        service_id,
        port: r.port.to_be(),
        family,
        _pad: 0,
    }
}

/// Keeps the memory of freed Maglev tables in the heap for the next ones. A reload of 1,000
/// services builds 1,000 tables of 256 KiB (65,537 slots) and frees the 1,000 it replaces;
/// glibc's defaults hand tables this size back to the kernel (munmap, or a trim of the heap's
/// top) and fault them in again page by page, zeroed: ~15 % of a reload's CPU time (perf). Once
/// per process: a table up to 8 MiB (2M slots) comes from the heap, and up to 256 MiB of free
/// heap stays mapped (what one reload frees and the next one reuses).
fn keep_ring_tables_in_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets allocator parameters; a refused value leaves the default.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        }
    });
}

impl MapWriter {
    /// A writer over freshly created maps.
    pub fn new(maps: KernelMaps, prev_ring_hold: Duration) -> Self {
        keep_ring_tables_in_heap();
        let capacity = maps.rings.slots();
        Self {
            maps,
            services: BTreeMap::new(),
            generations: vec![0; MAX_REALS as usize],
            written_reals: HashMap::new(),
            service_ids: IdPool::new(MAX_SERVICES),
            real_slots: IdPool::new(MAX_REALS),
            regions: RegionAlloc::new(capacity),
            prev_ring_hold,
            interface_macs: None,
        }
    }

    /// A writer over maps a previous daemon left pinned: rebuilds the mirror from the kernel so the
    /// next `apply` keeps every slot, generation and ring that is still wanted (established flows
    /// keep their real servers).
    pub fn adopt(
        maps: KernelMaps,
        prev_ring_hold: Duration,
        now: Instant,
    ) -> Result<Self, WriteError> {
        let mut w = Self::new(maps, prev_ring_hold);
        let mut by_id: HashMap<u32, ServiceAddr> = HashMap::new();
        let keys: Vec<ServiceKey> = w.maps.services.keys().collect::<Result<_, _>>()?;
        for key in keys {
            let value = w.maps.services.get(&key, 0)?;
            let vip = words_addr(key.addr, key.family);
            let protocol = if key.proto == PROTO_TCP {
                super::desired::Protocol::Tcp
            } else {
                super::desired::Protocol::Udp
            };
            let addr = ServiceAddr {
                vip,
                port: u16::from_be(key.port),
                protocol,
            };
            w.service_ids.claim(value.id);
            w.regions
                .claim(region_of(value.ring_offset, value.ring_size));
            w.regions
                .claim(region_of(value.prev_ring_offset, value.prev_ring_size));
            by_id.insert(value.id, addr);
            w.services.insert(
                addr,
                WrittenService {
                    key,
                    value,
                    prev_since: (value.prev_ring_size > 0).then_some(now),
                    ring_inputs: None,
                    ring_unserved: false,
                    reals: BTreeMap::new(),
                },
            );
        }
        for slot in 0..MAX_REALS {
            let v = w.maps.reals.get(&slot, 0)?;
            w.generations[slot as usize] = v.generation;
            if v.flags & REAL_F_IN_USE == 0 {
                continue;
            }
            let Some(addr) = by_id.get(&v.service_id) else {
                continue;
            };
            let Some(ws) = w.services.get_mut(addr) else {
                continue;
            };
            w.real_slots.claim(slot);
            w.written_reals.insert(slot, v);
            let key = RealKey {
                addr: words_addr(v.addr, v.family),
                port: u16::from_be(v.port),
                sorry: ws.value.sorry_real == slot,
            };
            ws.reals.insert(key, slot);
        }
        Ok(w)
    }

    pub fn maps(&self) -> &KernelMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut KernelMaps {
        &mut self.maps
    }

    pub fn maglev_capacity(&self) -> u32 {
        self.regions.capacity()
    }

    /// Slot ids of every service and real server now written.
    pub fn slots(&self) -> BTreeMap<ServiceAddr, ServiceSlots> {
        self.services
            .iter()
            .map(|(a, ws)| {
                (
                    *a,
                    ServiceSlots {
                        id: ws.value.id,
                        reals: ws.reals.clone(),
                    },
                )
            })
            .collect()
    }

    /// Inserts (or refreshes) peers' connections, marked `FLOW_F_SYNCED`, with the generations
    /// now in force so the XDP hit path takes them as valid. This director's own entry for a
    /// flow is kept: it forwards that flow already. The only writer of synced entries (the
    /// table layout lives here and in lb-ebpf/src/conntrack.rs).
    pub fn insert_synced_conns(
        &mut self,
        conns: &[SyncedConn],
    ) -> Result<SyncedInsert, WriteError> {
        use lb_common::{FlowEntry, FLOW_F_SYNCED};
        let mut report = SyncedInsert::default();
        for c in conns {
            let real = self.written_reals.get(&c.real_id);
            let Some(real) = real.filter(|r| r.service_id == c.service_id) else {
                report.unknown_slot += 1;
                continue;
            };
            // An own IPv4 flow lives in the set table: it stays as this director made it.
            if self.maps.conn_sets.holds(&c.flow) {
                report.own_kept += 1;
                continue;
            }
            // A synced entry keeps its latest activity (a relayed copy may be older), and the
            // flags of packets forwarded here (`sync::apply::taken_over_here`) with the state
            // they gave it: this director is the flow's director now.
            let mut last_seen_ns = c.last_seen_ns;
            let (mut state, mut flags_seen) = (c.state, 0);
            if let Ok(old) = self.maps.conn_table.get(&c.flow, 0) {
                if old.sync_flags & FLOW_F_SYNCED == 0 {
                    report.own_kept += 1;
                    continue;
                }
                last_seen_ns = last_seen_ns.max(old.last_seen_ns);
                if old.flags_seen != 0 || c.relayed {
                    (state, flags_seen) = (old.state, old.flags_seen);
                }
            }
            let entry = FlowEntry {
                real_id: c.real_id,
                real_gen: real.generation,
                service_id: c.service_id,
                service_gen: self.maps.services.state(c.service_id)?.generation,
                state,
                flags_seen,
                sync_flags: FLOW_F_SYNCED,
                _pad: 0,
                origin: c.origin,
                last_seen_ns,
            };
            self.maps.conn_table.insert(c.flow, entry, 0)?;
            report.written += 1;
        }
        Ok(report)
    }

    /// Applies peers' state changes (ESTABLISHED, FIN, RST): the new state and the sender's
    /// remaining time in it, so ActiveConn/InActConn follow the flow here as there. To synced
    /// entries, and to own entries of flows that moved to the sender (`sync::apply::moved_away`);
    /// an own flow still forwarded here and a flow without an entry are left alone.
    pub fn update_peers_states(
        &mut self,
        changes: &[SyncedState],
    ) -> Result<StatesApplied, WriteError> {
        let now = super::sweep::monotonic_ns();
        let mut applied = StatesApplied::default();
        for c in changes {
            if let Some((at, way)) = self.maps.conn_sets.find(&c.flow) {
                applied.own += usize::from(self.move_away_way(at, &way, c, now));
                continue;
            }
            let Ok(old) = self.maps.conn_table.get(&c.flow, 0) else {
                continue;
            };
            let synced = old.sync_flags & lb_common::FLOW_F_SYNCED != 0;
            if old.state == c.state || !(synced || crate::sync::apply::moved_away(&old, now)) {
                continue;
            }
            let entry = lb_common::FlowEntry {
                state: c.state,
                last_seen_ns: c.last_seen_ns,
                ..old
            };
            // BPF_EXIST: an entry the program or a sweep removed meanwhile is not brought back.
            if self
                .maps
                .conn_table
                .insert(c.flow, entry, BPF_EXIST)
                .is_ok()
            {
                *(if synced {
                    &mut applied.synced
                } else {
                    &mut applied.own
                }) += 1;
            }
        }
        Ok(applied)
    }

    /// An own IPv4 flow's way, read as `way`, takes a peer's state if the flow moved away: the
    /// way moves to the LRU in that state (a way cannot be rewritten in place without a moment
    /// in which the program would read it torn, a miss, and dispatch the flow afresh).
    fn move_away_way(
        &mut self,
        at: super::conn_sets::WayIndex,
        way: &lb_common::conn::ConnWay,
        c: &SyncedState,
        now: u64,
    ) -> bool {
        // The way's own fields decide first; the generations (two map reads) only for a move.
        let seen = super::conn_sets::way_entry(way, 0, now);
        if seen.state == c.state || !crate::sync::apply::moved_away(&seen, now) {
            return false;
        }
        let Some(entry) = super::sweep::way_as_lru_entry(&self.maps, way, now) else {
            return false;
        };
        let entry = lb_common::FlowEntry {
            state: c.state,
            last_seen_ns: c.last_seen_ns,
            ..entry
        };
        super::sweep::move_way_to_lru(&mut self.maps, at, way, entry)
    }

    /// Removes synced entries of `flows` (their origin expired them); own entries stay, and so
    /// do synced flows this director forwards itself now (`sync::apply::taken_over_here`).
    pub fn remove_synced_conns(
        &mut self,
        flows: &[lb_common::FlowKey],
        timeouts: &super::sweep::Timeouts,
    ) -> Result<usize, WriteError> {
        let now = super::sweep::monotonic_ns();
        let mut removed = 0;
        for f in flows {
            let removable = self.maps.conn_table.get(f, 0).is_ok_and(|e| {
                e.sync_flags & lb_common::FLOW_F_SYNCED != 0
                    && !crate::sync::apply::taken_over_here(&e, timeouts, now)
            });
            if removable && self.maps.conn_table.remove(f).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The ring now in force for a service (tests, `xlb status --verbose`), read from the map.
    pub fn ring(&self, addr: &ServiceAddr) -> Option<Vec<u32>> {
        let v = self.services.get(addr)?.value;
        Some(self.maps.rings.read(v.ring_offset, v.ring_size))
    }

    pub fn apply(
        &mut self,
        desired: &DesiredState,
        now: Instant,
    ) -> Result<ApplyReport, WriteError> {
        let mut report = ApplyReport::default();
        let wanted: BTreeMap<ServiceAddr, &DesiredService> =
            desired.services.iter().map(|s| (s.addr, s)).collect();
        let gone: Vec<ServiceAddr> = self
            .services
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            self.remove_service(&addr, &mut report)?;
        }
        let changed = self.changed_rings(wanted.values().copied());
        let jobs: Vec<(&[maglev::Backend], u32)> = changed
            .iter()
            .map(|(_, i)| (i.backends.as_slice(), i.table_size))
            .collect();
        // Workers build the changed rings, in this order, while this thread writes services.
        maglev::with_builds(&jobs, |builds| {
            let mut changed = changed.iter().peekable();
            for ds in wanted.values() {
                let ring = match changed.next_if(|(addr, _)| *addr == ds.addr) {
                    Some((_, inputs)) => builds
                        .next_table()
                        .map(|table| PrebuiltRing { inputs, table }),
                    None => None,
                };
                self.upsert_service(ds, ring, now, &mut report)?;
            }
            Ok::<(), WriteError>(())
        })?;
        self.write_vips()?;
        let cfg = LbConfig {
            flood_threshold: desired.flood_threshold,
        };
        if self.maps.lb_config.get(&0, 0)? != cfg {
            self.maps.lb_config.set(0, cfg, 0)?;
        }
        for (&port, &ifindex) in &desired.tx_ports {
            let current = self.maps.tx_ports.get(port, 0).map(|v| v.if_index).ok();
            if current != Some(ifindex) {
                self.maps.tx_ports.set(port, ifindex, None, 0)?;
            }
        }
        if self.interface_macs.as_ref() != Some(&desired.interface_macs) {
            // Recorded first: a slot collision is reported once, not at every apply.
            self.interface_macs = Some(desired.interface_macs.clone());
            self.maps.set_interface_macs(&desired.interface_macs)?;
        }
        Ok(report)
    }

    /// Whether the current ring of `addr` is one flows were dispatched with. A ring marked
    /// unserved (written while the service was withdrawn from the routers) does not become the
    /// previous ring when it is replaced. Without this, a director coming back after a local
    /// outage would keep, for `prev_ring_hold`, a ring from its recovery (one real server up, the
    /// other not yet) that no director ever served with, and send mid-stream flows arriving from
    /// the other directors to the wrong server.
    pub fn set_ring_served(&mut self, addr: &ServiceAddr, served: bool) {
        if let Some(ws) = self.services.get_mut(addr) {
            ws.ring_unserved = !served;
        }
    }

    /// Zeroes the traffic counters of the service at `addr` and its real servers, or of every
    /// service (`ipvsadm -Z`); the number of services zeroed.
    pub fn zero_traffic(&mut self, addr: Option<&ServiceAddr>) -> Result<usize, WriteError> {
        let mut zeroed = 0;
        for (a, ws) in &self.services {
            if addr.is_some_and(|x| x != a) {
                continue;
            }
            self.maps.reset_service_traffic(ws.value.id)?;
            for slot in ws.reals.values() {
                self.maps.reset_real_traffic(*slot)?;
            }
            zeroed += 1;
        }
        Ok(zeroed)
    }

    /// Drops previous rings held longer than `prev_ring_hold`.
    pub fn expire_previous_rings(&mut self, now: Instant) -> Result<usize, WriteError> {
        let mut expired = 0;
        for ws in self.services.values_mut() {
            let Some(since) = ws.prev_since else { continue };
            if now.duration_since(since) < self.prev_ring_hold {
                continue;
            }
            let old = region_of(ws.value.prev_ring_offset, ws.value.prev_ring_size);
            let mut value = ws.value;
            value.prev_ring_offset = 0;
            value.prev_ring_size = 0;
            self.maps.services.insert(ws.key, value, 0)?;
            ws.value = value;
            ws.prev_since = None;
            self.regions.release(old);
            expired += 1;
        }
        Ok(expired)
    }

    fn remove_service(
        &mut self,
        addr: &ServiceAddr,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        let Some(ws) = self.services.remove(addr) else {
            return Ok(());
        };
        self.maps.services.remove(&ws.key)?;
        for slot in ws.reals.values() {
            self.retire_real(*slot)?;
            report.reals_retired += 1;
        }
        self.regions
            .release(region_of(ws.value.ring_offset, ws.value.ring_size));
        self.regions.release(region_of(
            ws.value.prev_ring_offset,
            ws.value.prev_ring_size,
        ));
        self.service_ids.free(ws.value.id);
        report.services_removed += 1;
        Ok(())
    }

    fn retire_real(&mut self, slot: u32) -> Result<(), WriteError> {
        let generation = self.generations[slot as usize].wrapping_add(1);
        self.generations[slot as usize] = generation;
        let value = RealServer {
            generation,
            ..Default::default()
        };
        self.maps.reals.set(slot, value, 0)?;
        self.maps.tunnels.set(slot, Default::default())?;
        self.written_reals.remove(&slot);
        self.real_slots.free(slot);
        Ok(())
    }

    /// The services whose ring inputs differ from those of their ring in force (ignoring slot
    /// ids, which new real servers get only later), in `wanted`'s order, with positional inputs.
    fn changed_rings<'a>(
        &self,
        wanted: impl Iterator<Item = &'a DesiredService>,
    ) -> Vec<(ServiceAddr, RingInputs)> {
        wanted
            .map(|ds| (ds.addr, positional_ring_inputs(ds)))
            .filter(|(addr, inputs)| {
                let in_force = self
                    .services
                    .get(addr)
                    .and_then(|ws| ws.ring_inputs.as_ref());
                !inputs.round_robin && !in_force.is_some_and(|r| r.same_shape(inputs))
            })
            .collect()
    }

    fn upsert_service(
        &mut self,
        ds: &DesiredService,
        prebuilt: Option<PrebuiltRing<'_>>,
        now: Instant,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        let key = service_key(&ds.addr);
        let existing = self.services.remove(&ds.addr);
        let is_new = existing.is_none();
        let mut ws = match existing {
            Some(ws) => ws,
            None => {
                let id = self
                    .service_ids
                    .alloc()
                    .ok_or(WriteError::TooManyServices)?;
                self.maps.reset_service_traffic(id)?;
                report.services_added += 1;
                WrittenService {
                    key,
                    value: Service {
                        id,
                        sorry_real: NO_REAL,
                        ..Default::default()
                    },
                    prev_since: None,
                    ring_inputs: None,
                    ring_unserved: false,
                    reals: BTreeMap::new(),
                }
            }
        };
        let result = self.upsert_service_inner(ds, &mut ws, is_new, prebuilt, now, report);
        // Keep the mirror even when a step failed, so the next apply retries from the truth.
        self.services.insert(ds.addr, ws);
        result
    }

    /// The steps of writing one service, in the order that keeps every packet on a whole
    /// service: real-server slots, the ring into a free region, the switch (one map update), and
    /// only then the retirement of what nothing points at any more.
    fn upsert_service_inner(
        &mut self,
        ds: &DesiredService,
        ws: &mut WrittenService,
        is_new: bool,
        prebuilt: Option<PrebuiltRing<'_>>,
        now: Instant,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        let slots = self.write_reals(ds, ws, report)?;
        let inputs = ring_inputs(ds, &slots);
        let mut value = ws.value;
        let mut release_after_switch = Vec::new();
        if let Some(ring) = self.next_ring(ws, &inputs, prebuilt) {
            release_after_switch = self.install_ring(ds, ws, &mut value, ring, &inputs, now)?;
            report.rings_rebuilt += 1;
        }
        set_service_fields(&mut value, ds, &slots);
        let family = ws.key.family;
        self.maps.set_persistence(
            value.id,
            ds.persistence.map(|p| Persistence {
                mask: p.mask_words(family),
                timeout_secs: p.timeout_secs,
                _pad: 0,
            }),
        )?;
        self.switch(ws, value, is_new, report)?;
        for r in release_after_switch {
            self.regions.release(r);
        }
        // Only now is the ring for these inputs in force (an error above retries the build).
        ws.ring_inputs = Some(inputs);
        self.retire_unwanted(ws, &slots, report)
    }

    /// Step 1: real-server slots (new ones get a fresh generation; kept ones keep theirs).
    fn write_reals(
        &mut self,
        ds: &DesiredService,
        ws: &mut WrittenService,
        report: &mut ApplyReport,
    ) -> Result<BTreeMap<RealKey, u32>, WriteError> {
        let mut slots = BTreeMap::new();
        let mut writes = RealWrites::default();
        let claimed = self.claim_real_slots(ds, ws, &mut slots, &mut writes);
        // What was claimed is written even when a later real server got no slot, as when each
        // was written in turn: the mirror stays the truth for the next apply.
        self.flush_real_writes(writes, report)?;
        claimed.map(|()| slots)
    }

    /// The slots of `ds`'s real servers (new ones get a fresh generation; kept ones keep theirs)
    /// and what must be written to them, gathered so that a service costs one syscall per map.
    fn claim_real_slots(
        &mut self,
        ds: &DesiredService,
        ws: &mut WrittenService,
        slots: &mut BTreeMap<RealKey, u32>,
        writes: &mut RealWrites,
    ) -> Result<(), WriteError> {
        for (rk, r) in wanted_reals(ds) {
            let slot = match ws.reals.get(&rk) {
                Some(&slot) => slot,
                None => {
                    let slot = self.real_slots.alloc().ok_or(WriteError::TooManyReals)?;
                    self.generations[slot as usize] =
                        self.generations[slot as usize].wrapping_add(1);
                    writes.fresh.push(slot);
                    ws.reals.insert(rk, slot);
                    slot
                }
            };
            let value = real_value(r, self.generations[slot as usize], ws.value.id);
            if self.written_reals.get(&slot) != Some(&value) {
                writes.reals.push((slot, value));
            }
            let tunnel = r.tunnel.map(|t| t.value()).unwrap_or_default();
            writes.tunnels.push((slot, tunnel));
            slots.insert(rk, slot);
        }
        Ok(())
    }

    /// Writes one service's real-server slots: counters of fresh slots zeroed, then the slots'
    /// values, then their tunnels (per slot the order of one-by-one writes), each map in one
    /// batch. A reload of 1,000 new services x 10 real servers made 30,000 syscalls here.
    fn flush_real_writes(
        &mut self,
        writes: RealWrites,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        self.maps.reset_reals_traffic(&writes.fresh)?;
        self.maps.set_reals(&writes.reals)?;
        for (slot, value) in writes.reals {
            self.written_reals.insert(slot, value);
            report.reals_written += 1;
        }
        self.maps.tunnels.set_many(&writes.tunnels)?;
        Ok(())
    }

    /// Step 2a: the ring these inputs give, if it differs from the one in force (inputs equal to
    /// those of the ring in force skip the build; a table prebuilt from the same shape is used).
    fn next_ring(
        &self,
        ws: &WrittenService,
        inputs: &RingInputs,
        prebuilt: Option<PrebuiltRing<'_>>,
    ) -> Option<NextRing> {
        if ws.ring_inputs.as_ref() == Some(inputs) {
            return None;
        }
        let ring = match prebuilt {
            _ if inputs.round_robin => {
                NextRing::Built(maglev::round_robin(&inputs.backends, inputs.table_size))
            }
            Some(p) if p.inputs.same_shape(inputs) => NextRing::Positional {
                table: p.table,
                slots: inputs.slots(),
            },
            _ => NextRing::Built(maglev::build(&inputs.backends, inputs.table_size)),
        };
        let (offset, len) = (ws.value.ring_offset, ws.value.ring_size);
        let in_force = self.maps.rings.region(offset, len);
        (!ring.is(len as usize, in_force)).then_some(ring)
    }

    /// Step 2b: writes `ring` into a free region and points `value` at it, choosing the previous
    /// ring. Returns the regions to release once the switch is done.
    fn install_ring(
        &mut self,
        ds: &DesiredService,
        ws: &mut WrittenService,
        value: &mut Service,
        next: NextRing,
        inputs: &RingInputs,
        now: Instant,
    ) -> Result<Vec<Region>, WriteError> {
        let region =
            self.regions
                .alloc(next.len() as u32)
                .ok_or_else(|| WriteError::RingCapacity {
                    service: ds.addr.to_string(),
                    capacity: self.regions.capacity(),
                    free: self.regions.free_slots(),
                    needed: next.len() as u32,
                })?;
        let ring = match next {
            NextRing::Built(ring) => {
                self.maps.rings.write(region.offset, &ring);
                ring
            }
            NextRing::Positional { mut table, slots } => {
                self.maps
                    .rings
                    .write_mapped(region.offset, &mut table, &slots);
                table
            }
        };
        let current = region_of(value.ring_offset, value.ring_size);
        let previous = region_of(value.prev_ring_offset, value.prev_ring_size);
        let choice = previous_ring_after_switch(RingSwitch {
            current_served: !ws.ring_unserved,
            round_robin: inputs.round_robin,
            current_len: current.len,
            new_is_empty: ring.is_empty(),
        });
        let release = match choice {
            PreviousRing::Keep => vec![current],
            PreviousRing::Current => {
                value.prev_ring_offset = current.offset;
                value.prev_ring_size = current.len;
                ws.prev_since = Some(now);
                vec![previous]
            }
            PreviousRing::None => {
                value.prev_ring_offset = 0;
                value.prev_ring_size = 0;
                ws.prev_since = None;
                vec![previous, current]
            }
        };
        value.ring_offset = region.offset;
        value.ring_size = region.len;
        ws.ring_unserved = false;
        Ok(release)
    }

    /// Step 3: the switch, one map update. A new service is always written, even when its value
    /// equals the blank mirror entry.
    fn switch(
        &mut self,
        ws: &mut WrittenService,
        value: Service,
        is_new: bool,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        if value != ws.value || is_new {
            self.maps.services.insert(ws.key, value, 0)?;
            if !is_new {
                report.services_updated += 1;
            }
            ws.value = value;
        }
        Ok(())
    }

    /// Step 4: retires real servers no longer wanted (after the switch: no ring points at them).
    fn retire_unwanted(
        &mut self,
        ws: &mut WrittenService,
        slots: &BTreeMap<RealKey, u32>,
        report: &mut ApplyReport,
    ) -> Result<(), WriteError> {
        let gone: Vec<(RealKey, u32)> = ws
            .reals
            .iter()
            .filter(|(k, _)| !slots.contains_key(k))
            .map(|(k, s)| (*k, *s))
            .collect();
        for (k, slot) in gone {
            self.retire_real(slot)?;
            ws.reals.remove(&k);
            report.reals_retired += 1;
        }
        Ok(())
    }

    fn write_vips(&mut self) -> Result<(), WriteError> {
        let mut wanted: BTreeMap<([u32; 4], u8), VipInfo> = BTreeMap::new();
        for ws in self.services.values() {
            let k = (ws.key.addr, ws.key.family);
            let info = wanted.entry(k).or_default();
            if ws.value.flags & SVC_F_FORWARD_FRAGMENTS == 0 {
                continue;
            }
            // Prefer the port-0 service when there are several client-hashed ones.
            let (flag, port) = if ws.key.proto == PROTO_TCP {
                (VIP_F_FRAG_TCP, &mut info.frag_tcp_port)
            } else {
                (VIP_F_FRAG_UDP, &mut info.frag_udp_port)
            };
            if info.flags & flag == 0 || ws.key.port == 0 {
                info.flags |= flag;
                *port = ws.key.port;
            }
        }
        let current: Vec<VipKey> = self.maps.vips.keys().collect::<Result<_, _>>()?;
        for k in current {
            if !wanted.contains_key(&(k.addr, k.family)) {
                self.maps.vips.remove(&k)?;
            }
        }
        for ((addr, family), info) in wanted {
            let key = VipKey {
                addr,
                family,
                _pad: [0; 3],
            };
            if self.maps.vips.get(&key, 0).ok() != Some(info) {
                self.maps.vips.insert(key, info, 0)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::NextRing;

    /// A prebuilt table is compared with the ring in force through its slot mapping: equal only
    /// when every position maps to the slot the ring holds there (an equal ring is not written).
    #[test]
    fn a_positional_ring_is_the_ring_its_slots_give() {
        let ring = NextRing::Positional {
            table: vec![0, 1, 1, 0],
            slots: vec![7, 9],
        };
        let is = |r: &NextRing, in_force: &[u32]| r.is(in_force.len(), |i| in_force[i]);
        assert!(is(&ring, &[7, 9, 9, 7]));
        assert!(!is(&ring, &[7, 9, 9, 9]));
        assert!(!is(&ring, &[0, 1, 1, 0]));
        assert!(!is(&ring, &[7, 9, 9]));
        assert!(!is(&ring, &[]));
        assert_eq!(ring.len(), 4);
        assert!(is(&NextRing::Built(vec![3, 4]), &[3, 4]));
        assert!(!is(&NextRing::Built(vec![3, 4]), &[4, 3]));
    }
}
