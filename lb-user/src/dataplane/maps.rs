//! Typed handles on the program's maps, taken out of a loaded `Ebpf`.
use std::{collections::BTreeMap, os::fd::AsRawFd as _, ptr::NonNull};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues},
    Ebpf,
};
use lb_common::{
    map_names, stat, FlowEntry, FlowKey, IfaceMac, LbConfig, RealServer, Service, ServiceKey,
    TrafficStats, VipInfo, VipKey, MAX_IFACE_SLOTS,
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
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, MapsError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(MapsError::Missing(name))?;
    T::try_from(map).map_err(|source| MapsError::Map { name, source })
}

/// The ring array, mapped into our memory (`BPF_F_MMAPABLE`): rings are written with a copy.
/// The kernel lays array elements out at a stride of `round_up(value_size, 8)`: each u32 slot
/// occupies 8 bytes of the mapping (found by the packet tests, which compare the kernel's picks
/// with the table).
pub struct RingMmap {
    ptr: NonNull<u32>,
    slots: u32,
    bytes: usize,
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory owned by this value; access is through &mut self.
unsafe impl Send for RingMmap {}

impl RingMmap {
    fn new(map: MapData) -> Result<Self, MapsError> {
        let info = map.info().map_err(|source| MapsError::Map {
            name: map_names::MAGLEV_RINGS,
            source,
        })?;
        let slots = info.max_entries();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let bytes = (slots as usize * RING_STRIDE_WORDS * 4).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of an mmapable BPF array, sized to the array.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd_raw(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MapsError::Mmap(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast::<u32>())
            .ok_or_else(|| MapsError::Mmap(std::io::Error::other("null mapping")))?;
        Ok(Self {
            ptr,
            slots,
            bytes,
            _map: map,
        })
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
        let base = self.ptr.as_ptr();
        for (i, &slot) in ring.iter().enumerate() {
            // SAFETY: bounds checked above; the mapping lives as long as self.
            unsafe {
                base.add((offset as usize + i) * RING_STRIDE_WORDS)
                    .write(slot)
            };
        }
    }

    pub fn read(&self, offset: u32, len: u32) -> Vec<u32> {
        assert!(
            offset as usize + len as usize <= self.slots as usize,
            "ring region out of bounds"
        );
        let base = self.ptr.as_ptr();
        (0..len as usize)
            // SAFETY: bounds checked above.
            .map(|i| unsafe { base.add((offset as usize + i) * RING_STRIDE_WORDS).read() })
            .collect()
    }
}

impl Drop for RingMmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

/// u32 words per array element in the mapping (8-byte element stride).
const RING_STRIDE_WORDS: usize = 2;

trait AsFdRaw {
    fn as_fd_raw(&self) -> i32;
}
impl AsFdRaw for aya::maps::MapFd {
    fn as_fd_raw(&self) -> i32 {
        use std::os::fd::AsFd as _;
        self.as_fd().as_raw_fd()
    }
}

/// Everything the map writer and the readers need.
pub struct KernelMaps {
    pub services: HashMap<MapData, ServiceKey, Service>,
    pub vips: HashMap<MapData, VipKey, VipInfo>,
    pub reals: Array<MapData, RealServer>,
    pub rings: RingMmap,
    pub conn_table: HashMap<MapData, FlowKey, FlowEntry>,
    pub global_stats: PerCpuArray<MapData, u64>,
    pub service_stats: PerCpuArray<MapData, TrafficStats>,
    pub real_stats: PerCpuArray<MapData, TrafficStats>,
    pub lb_config: Array<MapData, LbConfig>,
    pub tx_ports: aya::maps::DevMap<MapData>,
    pub iface_macs: Array<MapData, IfaceMac>,
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
            services: take(ebpf, map_names::SERVICES)?,
            vips: take(ebpf, map_names::VIPS)?,
            reals: take(ebpf, map_names::REALS)?,
            rings: RingMmap::new(rings_data)?,
            conn_table: take(ebpf, map_names::CONN_TABLE)?,
            global_stats: take(ebpf, map_names::GLOBAL_STATS)?,
            service_stats: take(ebpf, map_names::SERVICE_STATS)?,
            real_stats: take(ebpf, map_names::REAL_STATS)?,
            lb_config: take(ebpf, map_names::LB_CONFIG)?,
            tx_ports: take(ebpf, map_names::TX_PORTS)?,
            iface_macs: take(ebpf, map_names::IFACE_MACS)?,
        })
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
        (0..stat::COUNT)
            .map(|i| Ok(sum_u64(&self.global_stats.get(&i, 0)?)))
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
