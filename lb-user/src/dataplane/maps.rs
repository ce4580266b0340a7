//! Typed handles on the program's maps, taken out of a loaded `Ebpf`.
use std::{
    borrow::Borrow,
    collections::{BTreeMap, HashMap as StdHashMap, HashSet},
};

use super::mmap::MappedArray;

use aya::{
    maps::{Array, HashMap, IterableMap as _, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use lb_common::{
    hash::vip_filter_bit, map_names, stat, FlowEntry, FlowKey, IfaceMac, LbConfig, PersistEntry,
    PersistKey, Persistence, RealServer, RealTunnel, Service, ServiceKey, ServiceState, SyncConfig,
    TrafficStats, VipInfo, VipKey, MAX_IFACE_SLOTS, SYNC_F_ENABLED,
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum MapsError {
    #[error("map {0} is missing from the XDP object")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("cannot mmap the Maglev ring map: {0}")]
    Mmap(std::io::Error),
    #[error(
        "interfaces {a} and {b} share IFACE_MACS slot {slot} (ifindex % {MAX_IFACE_SLOTS}); \
         the destination-MAC check is off for {b}"
    )]
    IfaceSlotTaken { a: u32, b: u32, slot: u32 },
    #[error(transparent)]
    ConnSets(#[from] super::conn_sets::ConnSetsError),
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, MapsError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(MapsError::Missing(name))?;
    T::try_from(map).map_err(|source| MapsError::Map { name, source })
}

/// An array map's data, for a mapping of our own.
fn take_array_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, MapsError> {
    match ebpf.take_map(name) {
        Some(aya::maps::Map::Array(d)) => Ok(d),
        _ => Err(MapsError::Missing(name)),
    }
}

/// Writes `values` at `keys` of `map` with one BPF_MAP_UPDATE_BATCH (per-CPU maps: one value
/// per possible CPU and key); true also when there is nothing to write. False when the kernel
/// refused: the caller then writes one by one, which names the failing element.
fn batch_written<K: Copy, V: Copy>(map: &MapData, keys: &[K], values: &[V]) -> bool {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    if keys.is_empty() {
        return values.is_empty();
    }
    super::batch::update_values(map.fd().as_fd().as_raw_fd(), keys, values).is_ok()
}

/// The ring array, mapped into our memory (`BPF_F_MMAPABLE`): rings are written with a copy.
/// The kernel lays array elements out at a stride of `round_up(value_size, 8)`: each u32 slot
/// occupies 8 bytes of the mapping (found by the packet tests, which compare the kernel's picks
/// with the table).
pub struct RingMmap {
    /// Written only through `&mut self`.
    mem: MappedArray,
    slots: u32,
}

impl RingMmap {
    fn new(map: MapData) -> Result<Self, MapsError> {
        let info = map.info().map_err(|source| MapsError::Map {
            name: map_names::MAGLEV_RINGS,
            source,
        })?;
        let slots = info.max_entries();
        let mem =
            MappedArray::new(map, slots as usize * RING_STRIDE_WORDS).map_err(MapsError::Mmap)?;
        Ok(Self { mem, slots })
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Copies `ring` into slots `offset..offset + ring.len()`. The caller guarantees that no live
    /// service points at that region.
    pub fn write(&mut self, offset: u32, ring: &[u32]) {
        assert!(
            offset as usize + ring.len() <= self.slots as usize,
            "ring region out of bounds"
        );
        let base = self.mem.as_ptr();
        for (i, &slot) in ring.iter().enumerate() {
            // SAFETY: bounds checked above; the mapping lives as long as self.
            unsafe {
                base.add((offset as usize + i) * RING_STRIDE_WORDS)
                    .write(slot)
            };
        }
    }

    /// Copies a table of backend positions into slots `offset..offset + table.len()`, each
    /// position replaced by its slot (`slots[position]`), and leaves the slots in `table`: one
    /// pass over a prebuilt table (a reload of 1,000 rings spent as long mapping positions in
    /// a pass of their own as copying). The caller guarantees that no live service points at
    /// that region.
    pub fn write_mapped(&mut self, offset: u32, table: &mut [u32], slots: &[u32]) {
        assert!(
            offset as usize + table.len() <= self.slots as usize,
            "ring region out of bounds"
        );
        let base = self.mem.as_ptr();
        for (i, v) in table.iter_mut().enumerate() {
            let slot = slots[*v as usize];
            *v = slot;
            // SAFETY: bounds checked above; the mapping lives as long as self.
            unsafe {
                base.add((offset as usize + i) * RING_STRIDE_WORDS)
                    .write(slot)
            };
        }
    }

    /// Slot `i` of the region `offset..offset + len` (the region bounds-checked once here).
    pub fn region(&self, offset: u32, len: u32) -> impl Fn(usize) -> u32 + '_ {
        assert!(
            offset as usize + len as usize <= self.slots as usize,
            "ring region out of bounds"
        );
        let base = self.mem.as_ptr();
        move |i| {
            assert!(i < len as usize, "ring slot out of its region");
            // SAFETY: inside the region, which is inside the mapping (checked above).
            unsafe { base.add((offset as usize + i) * RING_STRIDE_WORDS).read() }
        }
    }

    pub fn read(&self, offset: u32, len: u32) -> Vec<u32> {
        assert!(
            offset as usize + len as usize <= self.slots as usize,
            "ring region out of bounds"
        );
        let base = self.mem.as_ptr();
        (0..len as usize)
            // SAFETY: bounds checked above.
            .map(|i| unsafe { base.add((offset as usize + i) * RING_STRIDE_WORDS).read() })
            .collect()
    }
}

/// u32 words per array element in the mapping (8-byte element stride).
const RING_STRIDE_WORDS: usize = 2;

/// SERVICES and, kept in step with it, SERVICE_STATE (generation and flags by service id: the
/// connection table's hit path reads these instead of looking the service up). Same calls as
/// the aya map it wraps.
pub struct ServiceMap {
    map: HashMap<MapData, ServiceKey, Service>,
    state: Array<MapData, ServiceState>,
    /// Service id of every key in `map`.
    ids: StdHashMap<ServiceKey, u32>,
}

impl ServiceMap {
    /// Adopts what the maps hold (a restarted daemon): SERVICE_STATE's flags follow SERVICES.
    fn new(
        map: HashMap<MapData, ServiceKey, Service>,
        mut state: Array<MapData, ServiceState>,
    ) -> Result<Self, MapError> {
        let mut ids = StdHashMap::new();
        for item in map.iter() {
            let (key, svc) = item?;
            ids.insert(key, svc.id);
            let mut st = state.get(&svc.id, 0)?;
            if st.flags != svc.flags {
                st.flags = svc.flags;
                state.set(svc.id, st, 0)?;
            }
        }
        Ok(Self { map, state, ids })
    }

    pub fn keys(&self) -> impl Iterator<Item = Result<ServiceKey, MapError>> + '_ {
        self.map.keys()
    }

    pub fn get(&self, key: &ServiceKey, flags: u64) -> Result<Service, MapError> {
        self.map.get(key, flags)
    }

    /// Writes the service; its id gets a new generation unless `key` already had that id (so an
    /// id handed to another service never matches the earlier holder's table entries).
    pub fn insert(
        &mut self,
        key: impl Borrow<ServiceKey>,
        value: impl Borrow<Service>,
        flags: u64,
    ) -> Result<(), MapError> {
        let (key, svc) = (*key.borrow(), *value.borrow());
        let mut st = self.state.get(&svc.id, 0)?;
        if self.ids.get(&key) != Some(&svc.id) {
            st.generation = st.generation.wrapping_add(1);
        }
        st.flags = svc.flags;
        self.state.set(svc.id, st, 0)?;
        self.map.insert(key, svc, flags)?;
        self.ids.insert(key, svc.id);
        Ok(())
    }

    /// Removes the service; its id's entries stop matching at once (new generation, inactive).
    pub fn remove(&mut self, key: &ServiceKey) -> Result<(), MapError> {
        if let Some(id) = self.ids.remove(key) {
            let st = self.state.get(&id, 0)?;
            self.state.set(
                id,
                ServiceState {
                    generation: st.generation.wrapping_add(1),
                    flags: 0,
                },
                0,
            )?;
        }
        self.map.remove(key)
    }

    /// The hit path's view of a service id.
    pub fn state(&self, id: u32) -> Result<ServiceState, MapError> {
        self.state.get(&id, 0)
    }
}

/// VIPS and, kept in step with it, the VIP_FILTER bitmap (one bit per hashed VIP address, the
/// XDP program's pre-filter). Same calls as the aya map it wraps.
pub struct VipMap {
    map: HashMap<MapData, VipKey, VipInfo>,
    filter: Array<MapData, u64>,
    keys: HashSet<VipKey>,
    /// VIPs per filter bit (a bit is cleared when its last VIP goes).
    bits: StdHashMap<u32, u32>,
}

impl VipMap {
    /// Adopts what VIPS holds and rewrites the bitmap from it.
    fn new(
        map: HashMap<MapData, VipKey, VipInfo>,
        filter: Array<MapData, u64>,
    ) -> Result<Self, MapError> {
        let keys: HashSet<VipKey> = map.keys().collect::<Result<_, _>>()?;
        let mut v = Self {
            map,
            filter,
            keys: HashSet::new(),
            bits: StdHashMap::new(),
        };
        for k in &keys {
            *v.bits.entry(vip_filter_bit(&k.addr)).or_default() += 1;
        }
        v.keys = keys;
        v.write_filter()?;
        Ok(v)
    }

    fn write_filter(&mut self) -> Result<(), MapError> {
        let mut words = vec![0u64; lb_common::VIP_FILTER_WORDS as usize];
        for &bit in self.bits.keys() {
            words[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
        for (i, w) in words.into_iter().enumerate() {
            if self.filter.get(&(i as u32), 0)? != w {
                self.filter.set(i as u32, w, 0)?;
            }
        }
        Ok(())
    }

    fn set_bit(&mut self, bit: u32, on: bool) -> Result<(), MapError> {
        let idx = bit >> 6;
        let w = self.filter.get(&idx, 0)?;
        let w = if on {
            w | 1 << (bit & 63)
        } else {
            w & !(1 << (bit & 63))
        };
        self.filter.set(idx, w, 0)
    }

    pub fn keys(&self) -> impl Iterator<Item = Result<VipKey, MapError>> + '_ {
        self.map.keys()
    }

    pub fn get(&self, key: &VipKey, flags: u64) -> Result<VipInfo, MapError> {
        self.map.get(key, flags)
    }

    /// Writes the VIP; its filter bit is set before the VIP exists.
    pub fn insert(
        &mut self,
        key: impl Borrow<VipKey>,
        value: impl Borrow<VipInfo>,
        flags: u64,
    ) -> Result<(), MapError> {
        let key = *key.borrow();
        if !self.keys.contains(&key) {
            let bit = vip_filter_bit(&key.addr);
            let n = self.bits.entry(bit).or_default();
            *n += 1;
            if *n == 1 {
                self.set_bit(bit, true)?;
            }
        }
        self.map.insert(key, value, flags)?;
        self.keys.insert(key);
        Ok(())
    }

    pub fn remove(&mut self, key: &VipKey) -> Result<(), MapError> {
        self.map.remove(key)?;
        if self.keys.remove(key) {
            let bit = vip_filter_bit(&key.addr);
            if let Some(n) = self.bits.get_mut(&bit) {
                *n -= 1;
                if *n == 0 {
                    self.bits.remove(&bit);
                    self.set_bit(bit, false)?;
                }
            }
        }
        Ok(())
    }
}

/// TUNNELS (tunnel mode per real-server slot), with a mirror of what was written so an
/// unchanged slot costs no syscall.
pub struct TunnelMap {
    map: Array<MapData, RealTunnel>,
    written: StdHashMap<u32, RealTunnel>,
}

impl TunnelMap {
    /// Makes slot `slot` hold `value` (the default value = direct routing).
    pub fn set(&mut self, slot: u32, value: RealTunnel) -> Result<(), MapError> {
        let old = self.written.get(&slot).copied().unwrap_or_default();
        if old != value || !self.written.contains_key(&slot) {
            self.map.set(slot, value, 0)?;
            self.written.insert(slot, value);
        }
        Ok(())
    }

    /// [`TunnelMap::set`] for many slots, the changed ones in one batch (one syscall).
    pub fn set_many(&mut self, values: &[(u32, RealTunnel)]) -> Result<(), MapError> {
        let changed: Vec<(u32, RealTunnel)> = values
            .iter()
            .filter(|(slot, value)| self.written.get(slot) != Some(value))
            .copied()
            .collect();
        let (slots, tunnels): (Vec<u32>, Vec<RealTunnel>) = changed.iter().copied().unzip();
        if batch_written(self.map.map(), &slots, &tunnels) {
            self.written.extend(changed);
            return Ok(());
        }
        for (slot, value) in changed {
            self.set(slot, value)?;
        }
        Ok(())
    }

    pub fn get(&self, slot: u32) -> Result<RealTunnel, MapError> {
        self.map.get(&slot, 0)
    }
}

/// Everything the map writer and the readers need.
pub struct KernelMaps {
    pub services: ServiceMap,
    pub vips: VipMap,
    pub reals: Array<MapData, RealServer>,
    pub rings: RingMmap,
    /// IPv6 flows and IPv4 flows whose set was full.
    pub conn_table: HashMap<MapData, FlowKey, FlowEntry>,
    /// The IPv4 connection table's sets, mapped.
    pub conn_sets: super::conn_sets::ConnSets,
    pub global_stats: PerCpuArray<MapData, u64>,
    pub service_stats: PerCpuArray<MapData, TrafficStats>,
    pub real_stats: PerCpuArray<MapData, TrafficStats>,
    pub lb_config: Array<MapData, LbConfig>,
    pub tx_ports: aya::maps::DevMap<MapData>,
    pub iface_macs: Array<MapData, IfaceMac>,
    /// Timeout and client mask of each persistent service, by service id.
    pub persistence: Array<MapData, Persistence>,
    /// Persistence templates (see `lb-ebpf/src/persist.rs`).
    pub persist_templates: HashMap<MapData, PersistKey, PersistEntry>,
    /// What `persistence` holds for each persistent service id (written only when it changes).
    persistence_written: StdHashMap<u32, Persistence>,
    pub tunnels: TunnelMap,
    pub sync_config: Array<MapData, SyncConfig>,
    /// The ring buffer of sync events; the sync task takes it (`Option::take`), its only reader.
    pub sync_events: Option<aya::maps::RingBuf<MapData>>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, MapsError> {
        let rings_map = ebpf
            .take_map(map_names::MAGLEV_RINGS)
            .ok_or(MapsError::Missing(map_names::MAGLEV_RINGS))?;
        let rings_data = match rings_map {
            aya::maps::Map::Array(d) => d,
            _ => return Err(MapsError::Missing(map_names::MAGLEV_RINGS)),
        };
        Ok(Self {
            services: ServiceMap::new(
                take(ebpf, map_names::SERVICES)?,
                take(ebpf, map_names::SERVICE_STATE)?,
            )
            .map_err(|source| MapsError::Map {
                name: map_names::SERVICE_STATE,
                source,
            })?,
            vips: VipMap::new(
                take(ebpf, map_names::VIPS)?,
                take(ebpf, map_names::VIP_FILTER)?,
            )
            .map_err(|source| MapsError::Map {
                name: map_names::VIP_FILTER,
                source,
            })?,
            reals: take(ebpf, map_names::REALS)?,
            rings: RingMmap::new(rings_data)?,
            conn_table: take(ebpf, map_names::CONN_TABLE)?,
            conn_sets: super::conn_sets::ConnSets::new(take_array_data(
                ebpf,
                map_names::CONN_SETS,
            )?)?,
            global_stats: take(ebpf, map_names::GLOBAL_STATS)?,
            service_stats: take(ebpf, map_names::SERVICE_STATS)?,
            real_stats: take(ebpf, map_names::REAL_STATS)?,
            lb_config: take(ebpf, map_names::LB_CONFIG)?,
            tx_ports: take(ebpf, map_names::TX_PORTS)?,
            iface_macs: take(ebpf, map_names::IFACE_MACS)?,
            persistence: take(ebpf, map_names::PERSISTENCE)?,
            persist_templates: take(ebpf, map_names::PERSIST_TEMPLATES)?,
            persistence_written: StdHashMap::new(),
            tunnels: TunnelMap {
                map: take(ebpf, map_names::TUNNELS)?,
                written: StdHashMap::new(),
            },
            sync_config: take(ebpf, map_names::SYNC_CONFIG)?,
            sync_events: Some(take(ebpf, map_names::SYNC_EVENTS)?),
        })
    }

    /// Turns the program's sync events (new flows, ESTABLISHED/FIN/RST) on or off.
    pub fn set_sync_enabled(&mut self, on: bool) -> Result<(), MapsError> {
        let want = SyncConfig {
            flags: if on { SYNC_F_ENABLED } else { 0 },
            _pad: 0,
        };
        let map_err = |source| MapsError::Map {
            name: map_names::SYNC_CONFIG,
            source,
        };
        if self.sync_config.get(&0, 0).map_err(map_err)? != want {
            self.sync_config.set(0, want, 0).map_err(map_err)?;
        }
        Ok(())
    }

    /// Writes a service's persistence parameters (before its `SVC_F_PERSISTENT` flag is set, so
    /// the program never reads a half-configured service); `None` forgets them (the sweep then
    /// drops the id's templates).
    pub fn set_persistence(&mut self, id: u32, value: Option<Persistence>) -> Result<(), MapError> {
        match value {
            Some(v) if self.persistence_written.get(&id) != Some(&v) => {
                self.persistence.set(id, v, 0)?;
                self.persistence_written.insert(id, v);
            }
            None => {
                self.persistence_written.remove(&id);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Is any service persistent? (The sweep then maps flows to their templates.)
    pub fn has_persistence(&self) -> bool {
        !self.persistence_written.is_empty()
    }

    /// The persistence parameters written for a service id, if it is persistent.
    pub fn persistence_of(&self, id: u32) -> Option<&Persistence> {
        self.persistence_written.get(&id)
    }

    pub fn persist_templates_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        self.persist_templates.map().fd().as_fd()
    }

    /// Makes IFACE_MACS hold exactly `macs` (ifindex -> MAC of every interface the program is
    /// attached to): frames for other unicast MACs received there are then passed untouched.
    /// Interfaces left out are not checked. On a slot collision the first interface (lowest
    /// ifindex) keeps the slot, the rest are written and the collision is returned.
    pub fn set_interface_macs(&mut self, macs: &BTreeMap<u32, [u8; 6]>) -> Result<(), MapsError> {
        let map_err = |source| MapsError::Map {
            name: map_names::IFACE_MACS,
            source,
        };
        let mut want: BTreeMap<u32, IfaceMac> = BTreeMap::new();
        let mut collision = None;
        for (&ifindex, &mac) in macs {
            let slot = ifindex % MAX_IFACE_SLOTS;
            match want.get(&slot) {
                Some(taken) => {
                    collision.get_or_insert(MapsError::IfaceSlotTaken {
                        a: taken.ifindex,
                        b: ifindex,
                        slot,
                    });
                }
                None => {
                    want.insert(
                        slot,
                        IfaceMac {
                            ifindex,
                            mac,
                            _pad: [0; 2],
                        },
                    );
                }
            }
        }
        for slot in 0..MAX_IFACE_SLOTS {
            let value = want.get(&slot).copied().unwrap_or_default();
            if self.iface_macs.get(&slot, 0).map_err(map_err)? != value {
                self.iface_macs.set(slot, value, 0).map_err(map_err)?;
            }
        }
        collision.map_or(Ok(()), Err)
    }

    pub fn conn_table_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use aya::maps::IterableMap as _;
        use std::os::fd::AsFd as _;
        self.conn_table.map().fd().as_fd()
    }

    /// Global counters summed over CPUs, in `stat` index order.
    pub fn global_counters(&self) -> Result<Vec<u64>, MapError> {
        // A table pinned by an older xlb may have fewer counters: the missing ones read 0.
        (0..stat::COUNT)
            .map(|i| match self.global_stats.get(&i, 0) {
                Ok(v) => Ok(sum_u64(&v)),
                Err(MapError::OutOfBounds { .. }) => Ok(0),
                Err(e) => Err(e),
            })
            .collect()
    }

    pub fn service_traffic(&self, id: u32) -> Result<TrafficStats, MapError> {
        Ok(sum_traffic(&self.service_stats.get(&id, 0)?))
    }

    pub fn real_traffic(&self, slot: u32) -> Result<TrafficStats, MapError> {
        Ok(sum_traffic(&self.real_stats.get(&slot, 0)?))
    }

    /// Zeroes a slot's per-CPU counters (a slot handed to a new real server or service).
    pub fn reset_real_traffic(&mut self, slot: u32) -> Result<(), MapError> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| {
            MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            })
        })?;
        self.real_stats.set(
            slot,
            PerCpuValues::try_from(vec![TrafficStats::default(); n])?,
            0,
        )
    }

    /// [`KernelMaps::reset_real_traffic`] for many slots, in one batch (one syscall).
    pub fn reset_reals_traffic(&mut self, slots: &[u32]) -> Result<(), MapError> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| {
            MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            })
        })?;
        let zeros = vec![TrafficStats::default(); slots.len() * n];
        if batch_written(self.real_stats.map(), slots, &zeros) {
            return Ok(());
        }
        slots.iter().try_for_each(|&s| self.reset_real_traffic(s))
    }

    /// Writes real-server slots (`REALS`) in one batch (one syscall).
    pub fn set_reals(&mut self, values: &[(u32, RealServer)]) -> Result<(), MapError> {
        let (slots, reals): (Vec<u32>, Vec<RealServer>) = values.iter().copied().unzip();
        if batch_written(self.reals.map(), &slots, &reals) {
            return Ok(());
        }
        values
            .iter()
            .try_for_each(|&(slot, value)| self.reals.set(slot, value, 0))
    }

    pub fn reset_service_traffic(&mut self, id: u32) -> Result<(), MapError> {
        let n = aya::util::nr_cpus().map_err(|(_, e)| {
            MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: e,
            })
        })?;
        self.service_stats.set(
            id,
            PerCpuValues::try_from(vec![TrafficStats::default(); n])?,
            0,
        )
    }
}

fn sum_u64(v: &PerCpuValues<u64>) -> u64 {
    v.iter().sum()
}

fn sum_traffic(v: &PerCpuValues<TrafficStats>) -> TrafficStats {
    v.iter().fold(TrafficStats::default(), |a, s| TrafficStats {
        packets: a.packets + s.packets,
        bytes: a.bytes + s.bytes,
        conns: a.conns + s.conns,
    })
}
