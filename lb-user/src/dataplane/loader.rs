//! Loading the XDP object, pinning its maps and links under bpffs, and adopting them after a
//! restart so forwarding never stops while the daemon is away.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    maps::ProgramArray,
    programs::{links::FdLink, links::PinnedLink, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lb_common::{conn, map_names};
use thiserror::Error;

/// Every map of the program that the daemon pins and adopts.
pub const PINNED_MAPS: [&str; 22] = [
    map_names::SERVICES,
    map_names::VIPS,
    map_names::REALS,
    map_names::MAGLEV_RINGS,
    map_names::CONN_TABLE,
    map_names::CONN_SETS,
    map_names::GLOBAL_STATS,
    map_names::SERVICE_STATS,
    map_names::REAL_STATS,
    map_names::RR_STATE,
    map_names::FLOOD_STATE,
    map_names::LB_CONFIG,
    map_names::TX_PORTS,
    map_names::IFACE_MACS,
    map_names::SERVICE_STATE,
    map_names::VIP_FILTER,
    map_names::PERSISTENCE,
    map_names::PERSIST_TEMPLATES,
    map_names::TUNNELS,
    map_names::TUNNEL_PROGS,
    // Pinned so that events of flows made while the daemon restarts wait for it.
    map_names::SYNC_CONFIG,
    map_names::SYNC_EVENTS,
];

/// The program's global holding the set count - 1 of `CONN_SETS`.
pub const CONN_SET_MASK: &str = "CONN_SET_MASK";

/// The main program's name in the object.
pub const PROGRAM: &str = "xlb";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("the embedded XDP object is empty (built with AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error("cannot load the XDP object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error("program {name} is missing from the XDP object")]
    MissingProgram { name: &'static str },
    #[error("the kernel verifier rejected {name}:\n{log}")]
    Verifier { name: &'static str, log: String },
    #[error("cannot load program {name}: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("bpffs directory {path}: {source}")]
    PinDir { path: PathBuf, source: io::Error },
    #[error("cannot put program {name} in its tail-call slot: {reason}")]
    TailCallSlot { name: &'static str, reason: String },
}

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("no such interface: {0}")]
    NoInterface(String),
    #[error("cannot attach XDP to {iface} in {mode} mode: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        source: ProgramError,
    },
    #[error("cannot pin the XDP link of {iface} at {path}: {reason}")]
    Pin {
        iface: String,
        path: PathBuf,
        reason: String,
    },
}

/// Sizes that come from the config.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub conn_table_size: u32,
    /// Capacity of the persistence-template table.
    pub persistence_table_size: u32,
    pub maglev_capacity: u32,
    /// bpffs directory to pin maps into (and adopt them from); `None` = private maps (tests).
    pub pin_dir: Option<PathBuf>,
}

/// Keeps only the last lines of a verifier log: the reason is at the end.
fn verifier_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Loads the object and the main program (and the helper programs) into the kernel.
pub fn load(object: &[u8], opts: &LoadOptions) -> Result<Ebpf, LoadError> {
    if object.is_empty() {
        return Err(LoadError::NoObject);
    }
    let sets = match &opts.pin_dir {
        Some(dir) => pinned_set_count(dir),
        None => None,
    }
    .unwrap_or_else(|| conn::set_count(opts.conn_table_size));
    let set_mask = sets - 1;
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_names::CONN_TABLE, opts.conn_table_size)
        .map_max_entries(map_names::PERSIST_TEMPLATES, opts.persistence_table_size)
        .map_max_entries(map_names::CONN_SETS, sets)
        .override_global(CONN_SET_MASK, &set_mask, true)
        .map_max_entries(map_names::MAGLEV_RINGS, opts.maglev_capacity);
    let pin_paths: Vec<(&str, PathBuf)> = match &opts.pin_dir {
        Some(dir) => {
            ensure_bpffs_dir(dir)?;
            PINNED_MAPS.iter().map(|n| (*n, dir.join(n))).collect()
        }
        None => Vec::new(),
    };
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(object)?;
    load_program(&mut ebpf, PROGRAM)?;
    load_tunnel_programs(&mut ebpf)?;
    Ok(ebpf)
}

/// Loads the programs the main one tail-calls in tunnel mode and puts them in TUNNEL_PROGS (a
/// pinned map: an adopted attachment then calls the programs of the latest load).
fn load_tunnel_programs(ebpf: &mut Ebpf) -> Result<(), LoadError> {
    let name = lb_common::TOO_BIG_PROGRAM;
    load_program(ebpf, name)?;
    let fd = {
        let prog: &Xdp = ebpf
            .program(name)
            .ok_or(LoadError::MissingProgram { name })?
            .try_into()
            .map_err(|source| LoadError::Program { name, source })?;
        prog.fd()
            .map_err(|source| LoadError::Program { name, source })?
            .try_clone()
            .map_err(|e| LoadError::Program {
                name,
                source: ProgramError::IOError(e),
            })?
    };
    let map = ebpf
        .map_mut(map_names::TUNNEL_PROGS)
        .ok_or(LoadError::MissingProgram { name })?;
    let mut progs = ProgramArray::try_from(map).map_err(|e| LoadError::TailCallSlot {
        name,
        reason: e.to_string(),
    })?;
    progs
        .set(lb_common::TUNNEL_PROG_TOO_BIG, &fd, 0)
        .map_err(|e| LoadError::TailCallSlot {
            name,
            reason: e.to_string(),
        })
}

/// Loads one XDP program of the object, turning a verifier rejection into its log's last lines.
pub fn load_program(ebpf: &mut Ebpf, name: &'static str) -> Result<(), LoadError> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(LoadError::MissingProgram { name })?
        .try_into()
        .map_err(|source| LoadError::Program { name, source })?;
    prog.load().map_err(|source| match source {
        ProgramError::LoadError { verifier_log, .. } => LoadError::Verifier {
            name,
            log: verifier_tail(&verifier_log.to_string(), 30),
        },
        source => LoadError::Program { name, source },
    })
}

/// The set count of a pinned `CONN_SETS` that this build can adopt (a restarted daemon keeps its
/// flows, whatever `conn_table_size` says now). A pinned array of another layout (value size, or
/// a set count that is not a power of two) is unpinned with a warning and made anew: Maglev flows
/// keep their real servers, round-robin flows are dispatched afresh.
fn pinned_set_count(dir: &Path) -> Option<u32> {
    let path = dir.join(map_names::CONN_SETS);
    let info = aya::maps::MapData::from_pin(&path)
        .and_then(|m| m.info())
        .ok()?;
    let sets = info.max_entries();
    let wanted = std::mem::size_of::<conn::ConnSet>() as u32;
    if info.value_size() == wanted && sets.is_power_of_two() {
        return Some(sets);
    }
    tracing::warn!(
        pinned_value_size = info.value_size(),
        wanted,
        sets,
        "the pinned connection-table sets have another layout (an older xlb): replacing them; \
         Maglev flows keep their real servers, round-robin flows are dispatched afresh"
    );
    if let Err(e) = fs::remove_file(&path) {
        tracing::warn!("removing {}: {e}", path.display());
    }
    None
}

fn ensure_bpffs_dir(dir: &Path) -> Result<(), LoadError> {
    fs::create_dir_all(dir).map_err(|source| LoadError::PinDir {
        path: dir.to_owned(),
        source,
    })
}

/// Where the XDP link of an interface is pinned.
pub fn link_pin_path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

pub fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        _ => "default",
    }
}

/// Attaches the main program to `iface`, or — when a pinned link from an earlier run exists —
/// atomically replaces the program behind that link (no moment without forwarding). The link is
/// left pinned, so it outlives this process.
pub fn attach_or_adopt(
    ebpf: &mut Ebpf,
    iface: &str,
    mode: XdpMode,
    pin_dir: Option<&Path>,
) -> Result<AttachOutcome, AttachError> {
    let prog: &mut Xdp = ebpf
        .program_mut(PROGRAM)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| AttachError::NoInterface(iface.to_owned()))?;
    if let Some(dir) = pin_dir {
        let path = link_pin_path(dir, iface);
        if let Ok(pinned) = PinnedLink::from_pin(&path) {
            let fd_link: FdLink = pinned.into();
            let xdp_link =
                aya::programs::xdp::XdpLink::try_from(fd_link).map_err(|e| AttachError::Pin {
                    iface: iface.into(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let id = prog
                .attach_to_link(xdp_link)
                .map_err(|source| AttachError::Attach {
                    iface: iface.into(),
                    mode: "adopted",
                    source,
                })?;
            // Keep the fd inside the program's link set; the pin file keeps the link alive when
            // this process exits.
            let _ = id;
            return Ok(AttachOutcome::Adopted);
        }
    }
    let id = prog.attach(iface, mode).map_err(|source| match source {
        ProgramError::UnknownInterface { name } => AttachError::NoInterface(name),
        source => AttachError::Attach {
            iface: iface.into(),
            mode: mode_name(mode),
            source,
        },
    })?;
    if let Some(dir) = pin_dir {
        let path = link_pin_path(dir, iface);
        let link = prog.take_link(id).map_err(|source| AttachError::Attach {
            iface: iface.into(),
            mode: mode_name(mode),
            source,
        })?;
        let fd_link = FdLink::try_from(link).map_err(|e| AttachError::Pin {
            iface: iface.into(),
            path: path.clone(),
            reason: format!(
                "the kernel gave a netlink XDP attachment, which cannot be pinned: {e}"
            ),
        })?;
        fd_link.pin(&path).map_err(|e| AttachError::Pin {
            iface: iface.into(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(AttachOutcome::Attached)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    Attached,
    Adopted,
}

/// Detaches `iface` (removes its pinned link) — `xlb stop --detach` and `--release-on-exit`.
pub fn detach_pinned(pin_dir: &Path, iface: &str) -> io::Result<bool> {
    let path = link_pin_path(pin_dir, iface);
    match PinnedLink::from_pin(&path) {
        Ok(link) => {
            // Unpinning and dropping the last fd detaches the program.
            drop(link.unpin()?);
            Ok(true)
        }
        Err(_) => Ok(false),
    }
}

/// Removes every pinned map and link under `pin_dir` (after detaching).
pub fn remove_pins(pin_dir: &Path) -> io::Result<()> {
    if !pin_dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(pin_dir)? {
        let entry = entry?;
        fs::remove_file(entry.path())?;
    }
    fs::remove_dir(pin_dir)
}

/// Maps whose size comes from the configuration: a pinned one keeps its size (changing it needs
/// `xlb stop --detach`), so only its key and value sizes must match.
const SIZED_BY_CONFIG: [&str; 4] = [
    map_names::CONN_TABLE,
    map_names::CONN_SETS,
    map_names::MAGLEV_RINGS,
    map_names::PERSIST_TEMPLATES,
];

/// The layout of a map: what the program's accesses depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapShape {
    pub key_size: u32,
    pub value_size: u32,
    /// 0: sized by the configuration (not compared).
    pub max_entries: u32,
}

/// A pinned map left by an xlb whose layout differs from this build's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncompatiblePin {
    pub name: &'static str,
    pub pinned: MapShape,
    pub wanted: MapShape,
}

/// Does a pinned map of shape `pinned` fit a definition of shape `wanted`?
pub fn shape_fits(pinned: MapShape, wanted: MapShape) -> bool {
    pinned.key_size == wanted.key_size
        && pinned.value_size == wanted.value_size
        && (wanted.max_entries == 0 || pinned.max_entries == wanted.max_entries)
}

/// The pinned maps under `pin_dir` that this build's object cannot use. aya reuses a pinned map
/// by name without comparing it with the object's definition; a map with another layout (an
/// older xlb: fewer counters, larger entries) would then be read and written out of shape.
pub fn incompatible_pins(object: &[u8], pin_dir: &Path) -> Vec<IncompatiblePin> {
    let Ok(obj) = aya_obj::Object::parse(object) else {
        return Vec::new();
    };
    PINNED_MAPS
        .iter()
        .filter_map(|&name| {
            let def = obj.maps.get(name)?;
            let info = aya::maps::MapData::from_pin(pin_dir.join(name))
                .and_then(|m| m.info())
                .ok()?;
            let sized = SIZED_BY_CONFIG.contains(&name) || def.max_entries() == 0;
            let wanted = MapShape {
                key_size: def.key_size(),
                value_size: def.value_size(),
                max_entries: if sized { 0 } else { def.max_entries() },
            };
            let pinned = MapShape {
                key_size: info.key_size(),
                value_size: info.value_size(),
                max_entries: info.max_entries(),
            };
            (!shape_fits(pinned, wanted)).then_some(IncompatiblePin {
                name,
                pinned,
                wanted,
            })
        })
        .collect()
}

#[cfg(test)]
mod shape_tests {
    use super::*;

    #[test]
    fn a_map_fits_only_its_own_layout() {
        let wanted = MapShape {
            key_size: 4,
            value_size: 8,
            max_entries: 27,
        };
        assert!(shape_fits(wanted, wanted));
        // An older build with fewer counters.
        assert!(!shape_fits(
            MapShape {
                max_entries: 21,
                ..wanted
            },
            wanted
        ));
        assert!(!shape_fits(
            MapShape {
                value_size: 24,
                ..wanted
            },
            wanted
        ));
        // Sized by the configuration: any size fits.
        let sized = MapShape {
            max_entries: 0,
            ..wanted
        };
        assert!(shape_fits(
            MapShape {
                max_entries: 1 << 20,
                ..wanted
            },
            sized
        ));
    }

    #[test]
    fn every_pinned_map_of_this_build_fits_itself() {
        let Ok(obj) = aya_obj::Object::parse(crate::BPF_OBJECT) else {
            return; // AYA_BUILD_SKIP: no object.
        };
        for name in PINNED_MAPS {
            assert!(obj.maps.contains_key(name), "{name} is not in the object");
        }
    }
}
