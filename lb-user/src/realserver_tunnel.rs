//! The real-server side of tunnel mode (`xlb realserver up --tunnel ipip|gue --director ADDR`):
//! the director sends each packet to the real server wrapped in IPIP or GUE, and the real server
//! must strip the outer header (only of packets from its directors) before the VIP on `lo`
//! receives the inner packet.
//!
//! On kernels with the `ipip` / `fou` modules the kernel's own tunnel (`tunl0`, a FOU/GUE
//! receive port) can do that; this kernel kind has neither, so xlb attaches its own small XDP
//! program, `xlb_decap` (same object as the director's), to the interface the tunnel arrives
//! on, allowing only the given directors and VIPs. The link and the program's maps are pinned
//! under a bpffs directory, so they outlive this command; `down` unpins them (detach).
//! With the XDP program the inner packet arrives on the physical interface, whose route back
//! to the client is the usual one, so `rp_filter` needs no change (the kernel's `tunl0` would
//! need loose mode).
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    programs::{links::FdLink, links::PinnedLink, Xdp, XdpMode},
    EbpfLoader,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dataplane::{
    decap::{DecapError, DecapMaps},
    desired::TunnelKind,
    loader::{link_pin_path, load_program, LoadError},
};

/// Default bpffs directory of the real server's pins.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/xlb-realserver";

#[derive(Debug, Error)]
pub enum TunnelSetupError {
    #[error("the embedded XDP object is empty (built with AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error("loading the decapsulation program: {0}")]
    Load(#[from] LoadError),
    #[error("loading the XDP object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    #[error(transparent)]
    Maps(#[from] DecapError),
    #[error("attaching the decapsulation program to {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error("`--tunnel` needs at least one --director (only their packets are decapsulated)")]
    NoDirector,
    #[error("bpffs directory {}: {source}", path.display())]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `up --tunnel` set up (kept in the real server's state file for `down`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelState {
    pub kind: TunnelKind,
    pub interface: String,
    pub pin_dir: PathBuf,
    pub directors: Vec<IpAddr>,
    pub gue_port: u16,
}

/// How `up --tunnel` is asked to prepare the server.
#[derive(Clone, Debug)]
pub struct TunnelRequest {
    pub kind: TunnelKind,
    pub interface: String,
    pub directors: Vec<IpAddr>,
    pub gue_port: u16,
    pub pin_dir: PathBuf,
}

fn pin_names() -> [&'static str; 4] {
    use lb_common::map_names::*;
    [DECAP_DIRECTORS, DECAP_VIPS, DECAP_CONFIG, DECAP_STATS]
}

/// Loads the object with the decapsulation maps pinned in `pin_dir` (reused when present) and
/// every other map at its smallest.
fn load(pin_dir: &Path) -> Result<aya::Ebpf, TunnelSetupError> {
    if xlb_object().is_empty() {
        return Err(TunnelSetupError::NoObject);
    }
    std::fs::create_dir_all(pin_dir).map_err(|source| TunnelSetupError::PinDir {
        path: pin_dir.to_owned(),
        source,
    })?;
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(lb_common::map_names::CONN_TABLE, 1024)
        .map_max_entries(lb_common::map_names::MAGLEV_RINGS, 1024);
    let paths: Vec<(&str, PathBuf)> = pin_names().iter().map(|n| (*n, pin_dir.join(n))).collect();
    for (n, p) in &paths {
        loader.map_pin_path(n, p.as_path());
    }
    let mut ebpf = loader.load(xlb_object())?;
    load_program(&mut ebpf, lb_common::DECAP_PROGRAM)?;
    Ok(ebpf)
}

fn xlb_object() -> &'static [u8] {
    crate::BPF_OBJECT
}

/// Attaches (or, when attached by an earlier `up`, re-configures) the decapsulation program.
/// Returns one line per change.
pub fn up(req: &TunnelRequest, vips: &[IpAddr]) -> Result<Vec<String>, TunnelSetupError> {
    if req.directors.is_empty() {
        return Err(TunnelSetupError::NoDirector);
    }
    let mut ebpf = load(&req.pin_dir)?;
    let gue = (req.kind == TunnelKind::Gue).then_some(req.gue_port);
    let mut maps = DecapMaps::take(&mut ebpf)?;
    maps.configure(&req.directors, vips, gue)?;
    let mut changes = Vec::new();
    let link_path = link_pin_path(&req.pin_dir, &req.interface);
    if PinnedLink::from_pin(&link_path).is_err() {
        let attach_err = |reason: String| TunnelSetupError::Attach {
            iface: req.interface.clone(),
            reason,
        };
        let prog: &mut Xdp = ebpf
            .program_mut(lb_common::DECAP_PROGRAM)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| attach_err("program missing".into()))?;
        let id = prog
            .attach(&req.interface, XdpMode::Default)
            .map_err(|e| attach_err(e.to_string()))?;
        let link = prog.take_link(id).map_err(|e| attach_err(e.to_string()))?;
        let fd_link = FdLink::try_from(link).map_err(|e| attach_err(e.to_string()))?;
        fd_link
            .pin(&link_path)
            .map_err(|e| attach_err(e.to_string()))?;
        changes.push(format!(
            "attached xlb_decap to {} (pinned at {})",
            req.interface,
            link_path.display()
        ));
    }
    let what = match gue {
        Some(p) => format!("GUE on UDP port {p} and IPIP"),
        None => "IPIP".into(),
    };
    let dirs: Vec<String> = req.directors.iter().map(|d| d.to_string()).collect();
    changes.push(format!(
        "decapsulating {what} from {} to the VIPs",
        dirs.join(", ")
    ));
    Ok(changes)
}

/// Detaches the decapsulation program and removes its pins.
pub fn down(state: &TunnelState) -> Vec<String> {
    let mut changes = Vec::new();
    if let Ok(true) = crate::dataplane::loader::detach_pinned(&state.pin_dir, &state.interface) {
        changes.push(format!("detached xlb_decap from {}", state.interface));
    }
    for n in pin_names() {
        let _ = std::fs::remove_file(state.pin_dir.join(n));
    }
    let _ = std::fs::remove_dir(&state.pin_dir);
    changes
}

/// Is the decapsulation program attached (its link pinned)? With its counters when readable.
pub fn status(pin_dir: &Path, iface: &str) -> (bool, Option<Vec<u64>>) {
    let attached = PinnedLink::from_pin(link_pin_path(pin_dir, iface)).is_ok();
    let counters = attached.then(|| read_counters(pin_dir)).flatten();
    (attached, counters)
}

fn read_counters(pin_dir: &Path) -> Option<Vec<u64>> {
    let data =
        aya::maps::MapData::from_pin(pin_dir.join(lb_common::map_names::DECAP_STATS)).ok()?;
    let map = aya::maps::Map::PerCpuArray(data);
    let stats: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(map).ok()?;
    (0..lb_common::decap_stat::COUNT)
        .map(|i| stats.get(&i, 0).ok().map(|v| v.iter().sum()))
        .collect()
}

/// `up --tunnel` after the direct-routing part: attaches the decapsulation and records it in the
/// state file.
pub fn up_recorded(
    req: &TunnelRequest,
    vips: &[IpAddr],
    state_file: &Path,
) -> Result<Vec<String>, crate::realserver::RealServerError> {
    let changes =
        up(req, vips).map_err(|e| crate::realserver::RealServerError::Tunnel(e.to_string()))?;
    let mut state = crate::realserver::State::load(state_file)?.unwrap_or_default();
    state.tunnel = Some(TunnelState {
        kind: req.kind,
        interface: req.interface.clone(),
        pin_dir: req.pin_dir.clone(),
        directors: req.directors.clone(),
        gue_port: req.gue_port,
    });
    state.save(state_file)?;
    Ok(changes)
}

/// `down` before the direct-routing part: detaches what `up --tunnel` attached.
pub fn down_recorded(state_file: &Path) -> Result<Vec<String>, crate::realserver::RealServerError> {
    let Some(mut state) = crate::realserver::State::load(state_file)? else {
        return Ok(Vec::new());
    };
    let Some(t) = state.tunnel.take() else {
        return Ok(Vec::new());
    };
    let changes = down(&t);
    state.save(state_file)?;
    Ok(changes)
}
