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
//!
//! Where XDP cannot run on the link (`--attach tc`, or `auto` after XDP failed), the same
//! decapsulation runs as a TC ingress classifier (`xlb_decap_tc`), attached as a TCX link
//! (kernel 6.6+: pinnable like the XDP link, no clsact qdisc to add and remove).
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use aya::{
    programs::{links::FdLink, links::PinnedLink, SchedClassifier, TcAttachType, Xdp, XdpMode},
    util::KernelVersion,
    EbpfLoader,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dataplane::{
    decap::{load_entry, DecapError, DecapHook, DecapMaps},
    desired::TunnelKind,
    loader::{link_pin_path, LoadError},
};
use crate::realserver_advmss::AdvmssState;

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
    #[error("{iface}: XDP failed ({xdp}), and TC too ({tc})")]
    NoHook {
        iface: String,
        xdp: String,
        tc: String,
    },
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
    /// Where the decapsulation was attached (state files of earlier versions: XDP).
    #[serde(default = "xdp_hook")]
    pub hook: DecapHook,
}

fn xdp_hook() -> DecapHook {
    DecapHook::Xdp
}

/// `--attach`: which hook to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachChoice {
    Xdp,
    Tc,
    /// XDP, and TC where XDP cannot be attached.
    Auto,
}

/// How `up --tunnel` is asked to prepare the server.
#[derive(Clone, Debug)]
pub struct TunnelRequest {
    pub kind: TunnelKind,
    pub interface: String,
    pub directors: Vec<IpAddr>,
    pub gue_port: u16,
    pub pin_dir: PathBuf,
    pub attach: AttachChoice,
    pub advmss: AdvmssChoice,
    pub decap: crate::realserver_kernel::DecapChoice,
}

/// `--advmss`: the MSS the VIPs' SYN-ACKs advertise (see [`crate::realserver_advmss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvmssChoice {
    /// From `--interface`'s MTU less the outer and inner headers.
    Auto,
    Off,
    Fixed(u32),
}

/// The advmss set-up `req` asks for (`None`: off).
fn advmss_wanted(
    req: &TunnelRequest,
    vips: &[IpAddr],
    net: &crate::net::BlockingNet,
) -> Result<Option<AdvmssState>, crate::realserver::RealServerError> {
    use crate::realserver_advmss::{outer_len, tunnel_mss, ADVMSS_TABLE, RULE_PRIORITY};
    let (mss_v4, mss_v6) = match req.advmss {
        AdvmssChoice::Off => return Ok(None),
        AdvmssChoice::Fixed(m) => (m, m),
        AdvmssChoice::Auto => {
            let link = net
                .link(&req.interface)?
                .ok_or_else(|| crate::net::NetError::NoInterface(req.interface.clone()))?;
            let outer = outer_len(req.kind, req.directors.iter().any(IpAddr::is_ipv6));
            (
                tunnel_mss(link.mtu, outer, false),
                tunnel_mss(link.mtu, outer, true),
            )
        }
    };
    Ok(Some(AdvmssState {
        mss_v4,
        mss_v6,
        table: ADVMSS_TABLE,
        priority: RULE_PRIORITY,
        vips: vips.to_vec(),
    }))
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
    load_entry(&mut ebpf, DecapHook::Xdp)?;
    load_entry(&mut ebpf, DecapHook::Tc)?;
    Ok(ebpf)
}

fn xlb_object() -> &'static [u8] {
    crate::BPF_OBJECT
}

/// The pin of the TC link on `iface`.
fn tc_link_pin_path(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("tclink_{iface}"))
}

/// The pin of the link of `hook` on `iface`.
fn hook_pin_path(pin_dir: &Path, iface: &str, hook: DecapHook) -> PathBuf {
    match hook {
        DecapHook::Xdp => link_pin_path(pin_dir, iface),
        DecapHook::Tc => tc_link_pin_path(pin_dir, iface),
    }
}

/// Attaches the entry of `hook` to `iface` and pins its link at `path`.
fn attach_pinned(
    ebpf: &mut aya::Ebpf,
    iface: &str,
    hook: DecapHook,
    path: &Path,
) -> Result<(), String> {
    let prog = ebpf
        .program_mut(hook.program())
        .ok_or("program missing from the object")?;
    let fd_link: FdLink = match hook {
        DecapHook::Xdp => {
            let prog: &mut Xdp = prog.try_into().map_err(|e| format!("{e}"))?;
            let id = prog
                .attach(iface, XdpMode::Default)
                .map_err(|e| e.to_string())?;
            let link = prog.take_link(id).map_err(|e| e.to_string())?;
            FdLink::try_from(link).map_err(|e| e.to_string())?
        }
        DecapHook::Tc => {
            // A netlink filter (before TCX) cannot be pinned: `down` could not find exactly it.
            let tcx = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
            if !tcx {
                return Err("TC attachment needs TCX links (kernel 6.6 or later)".into());
            }
            let prog: &mut SchedClassifier = prog.try_into().map_err(|e| format!("{e}"))?;
            let id = prog
                .attach(iface, TcAttachType::Ingress)
                .map_err(|e| e.to_string())?;
            let link = prog.take_link(id).map_err(|e| e.to_string())?;
            FdLink::try_from(link).map_err(|e| e.to_string())?
        }
    };
    fd_link.pin(path).map_err(|e| e.to_string())?;
    Ok(())
}

/// Attaches as `choice` says; returns the hook used and one line saying which and why.
fn attach(
    ebpf: &mut aya::Ebpf,
    req: &TunnelRequest,
) -> Result<(DecapHook, String), TunnelSetupError> {
    let iface = &req.interface;
    let one = |ebpf: &mut aya::Ebpf, hook: DecapHook| {
        attach_pinned(ebpf, iface, hook, &hook_pin_path(&req.pin_dir, iface, hook))
    };
    let attached = |hook: DecapHook, why: &str| {
        format!(
            "attached {} ({}) to {iface}{why} (pinned at {})",
            hook.program(),
            hook.name(),
            hook_pin_path(&req.pin_dir, iface, hook).display()
        )
    };
    let failed = |reason: String| TunnelSetupError::Attach {
        iface: iface.clone(),
        reason,
    };
    match req.attach {
        AttachChoice::Xdp => one(ebpf, DecapHook::Xdp)
            .map(|()| (DecapHook::Xdp, attached(DecapHook::Xdp, "")))
            .map_err(failed),
        AttachChoice::Tc => one(ebpf, DecapHook::Tc)
            .map(|()| (DecapHook::Tc, attached(DecapHook::Tc, "")))
            .map_err(failed),
        AttachChoice::Auto => match one(ebpf, DecapHook::Xdp) {
            Ok(()) => Ok((
                DecapHook::Xdp,
                attached(DecapHook::Xdp, " (auto: XDP works)"),
            )),
            Err(xdp) => match one(ebpf, DecapHook::Tc) {
                Ok(()) => Ok((
                    DecapHook::Tc,
                    attached(DecapHook::Tc, &format!(" (auto: XDP failed: {xdp})")),
                )),
                Err(tc) => Err(TunnelSetupError::NoHook {
                    iface: iface.clone(),
                    xdp,
                    tc,
                }),
            },
        },
    }
}

/// The hook whose link `up` pinned for `iface` earlier, if any.
fn attached_hook(pin_dir: &Path, iface: &str) -> Option<DecapHook> {
    [DecapHook::Xdp, DecapHook::Tc]
        .into_iter()
        .find(|h| PinnedLink::from_pin(hook_pin_path(pin_dir, iface, *h)).is_ok())
}

/// Attaches (or, when attached by an earlier `up`, re-configures) the decapsulation program.
/// Returns the hook in use and one line per change.
pub fn up(
    req: &TunnelRequest,
    vips: &[IpAddr],
) -> Result<(DecapHook, Vec<String>), TunnelSetupError> {
    if req.directors.is_empty() {
        return Err(TunnelSetupError::NoDirector);
    }
    let mut ebpf = load(&req.pin_dir)?;
    let gue = (req.kind == TunnelKind::Gue).then_some(req.gue_port);
    let mut maps = DecapMaps::take(&mut ebpf)?;
    maps.configure(&req.directors, vips, gue)?;
    let mut changes = Vec::new();
    let hook = match attached_hook(&req.pin_dir, &req.interface) {
        Some(h) => h,
        None => {
            let (h, line) = attach(&mut ebpf, req)?;
            changes.push(line);
            h
        }
    };
    let what = match gue {
        Some(p) => format!("GUE on UDP port {p} and IPIP"),
        None => "IPIP".into(),
    };
    let dirs: Vec<String> = req.directors.iter().map(|d| d.to_string()).collect();
    changes.push(format!(
        "decapsulating {what} from {} to the VIPs",
        dirs.join(", ")
    ));
    Ok((hook, changes))
}

/// Detaches the decapsulation program and removes its pins.
pub fn down(state: &TunnelState) -> Vec<String> {
    let mut changes = Vec::new();
    let path = hook_pin_path(&state.pin_dir, &state.interface, state.hook);
    if let Ok(link) = PinnedLink::from_pin(&path) {
        // Unpinning and dropping the last fd detaches the program.
        if link.unpin().is_ok() {
            changes.push(format!(
                "detached {} from {}",
                state.hook.program(),
                state.interface
            ));
        }
    }
    for n in pin_names() {
        let _ = std::fs::remove_file(state.pin_dir.join(n));
    }
    let _ = std::fs::remove_dir(&state.pin_dir);
    changes
}

/// Is the decapsulation program attached (its link pinned)? With its counters when readable.
pub fn status(pin_dir: &Path, iface: &str, hook: DecapHook) -> (bool, Option<Vec<u64>>) {
    let attached = PinnedLink::from_pin(hook_pin_path(pin_dir, iface, hook)).is_ok();
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
    let mut state = crate::realserver::State::load(state_file)?.unwrap_or_default();
    let mut changes = Vec::new();
    let result = decapsulation(req, vips, &mut state, &mut changes);
    // Saved whatever happened: what was set up before a failure is for `down` to remove.
    state.save(state_file)?;
    result?;
    let net = crate::net::BlockingNet::connect()?;
    if let Some(adv) = advmss_wanted(req, vips, &net)? {
        if state.advmss.is_none() {
            if let Some(why) = crate::realserver_advmss_io::foreign_use(&net)? {
                return Err(crate::realserver::RealServerError::Tunnel(format!(
                    "advmss: {why}, not recorded as xlb's: left alone (use --advmss off)"
                )));
            }
        }
        // Recorded first: a failure half-way leaves `down` something to remove.
        state.advmss = Some(adv.clone());
        state.save(state_file)?;
        changes.extend(crate::realserver_advmss_io::install(&net, &adv)?);
    }
    Ok(changes)
}

/// Chooses who decapsulates (the kernel's tunnels or xlb's program, see `--decap`), sets it up
/// and records it in `state`; says which and why.
fn decapsulation(
    req: &TunnelRequest,
    vips: &[IpAddr],
    state: &mut crate::realserver::State,
    changes: &mut Vec<String>,
) -> Result<(), crate::realserver::RealServerError> {
    use crate::realserver::RealServerError::Tunnel;
    use crate::realserver_kernel::DecapChoice;
    use crate::realserver_kernel_io::KernelSetup;
    if state.kernel.is_some() {
        changes.push("decapsulation: the kernel's tunnels, set up earlier".into());
        return Ok(());
    }
    let why = match req.decap {
        DecapChoice::Xlb => "--decap xlb".to_string(),
        DecapChoice::Kernel | DecapChoice::Auto => {
            let gue = (req.kind == TunnelKind::Gue).then_some(req.gue_port);
            match crate::realserver_kernel_io::up(&req.directors, gue)? {
                KernelSetup::Done(st, ch) => {
                    changes.push(
                        "decapsulation: the kernel's tunnels (ipip/fou modules present)".into(),
                    );
                    changes.extend(ch);
                    state.kernel = Some(st);
                    return Ok(());
                }
                KernelSetup::Unavailable(why) if req.decap == DecapChoice::Kernel => {
                    return Err(Tunnel(format!("--decap kernel: {why}")));
                }
                KernelSetup::Unavailable(why) => format!("auto: {why}"),
            }
        }
    };
    changes.push(format!("decapsulation: xlb's program ({why})"));
    let (hook, ch) = up(req, vips).map_err(|e| Tunnel(e.to_string()))?;
    changes.extend(ch);
    state.tunnel = Some(TunnelState {
        kind: req.kind,
        interface: req.interface.clone(),
        pin_dir: req.pin_dir.clone(),
        directors: req.directors.clone(),
        gue_port: req.gue_port,
        hook,
    });
    Ok(())
}

/// `down` before the direct-routing part: detaches what `up --tunnel` attached.
pub fn down_recorded(state_file: &Path) -> Result<Vec<String>, crate::realserver::RealServerError> {
    let Some(mut state) = crate::realserver::State::load(state_file)? else {
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    if let Some(adv) = state.advmss.take() {
        let net = crate::net::BlockingNet::connect()?;
        changes.extend(crate::realserver_advmss_io::remove(&net, &adv)?);
    }
    if let Some(k) = state.kernel.take() {
        changes.extend(crate::realserver_kernel_io::down(&k)?);
    }
    if let Some(t) = state.tunnel.take() {
        changes.extend(down(&t));
    }
    state.save(state_file)?;
    Ok(changes)
}
