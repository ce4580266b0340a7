//! Loading the XDP object, pinning its maps and links under bpffs, and adopting them after a
//! restart so forwarding never stops while the daemon is away.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{
    programs::{links::FdLink, links::PinnedLink, ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use lb_common::map_names;
use thiserror::Error;

/// Every map of the program that the daemon pins and adopts.
pub const PINNED_MAPS: [&str; 17] = [
    map_names::SERVICES,
    map_names::VIPS,
    map_names::REALS,
    map_names::MAGLEV_RINGS,
    map_names::CONN_TABLE,
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
    // Pinned so that events of flows made while the daemon restarts wait for it.
    map_names::SYNC_CONFIG,
    map_names::SYNC_EVENTS,
];

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
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_names::CONN_TABLE, opts.conn_table_size)
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
    Ok(ebpf)
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
