//! Putting the XDP program on the configured interfaces (or adopting the links a previous run
//! pinned), taking it off interfaces dropped from the configuration, and the bpffs it all needs.
use std::path::{Path, PathBuf};

use aya::{programs::XdpMode, Ebpf};
use tracing::{info, warn};

use super::Error;
use crate::{
    config::{Config, XdpMode as ConfiguredMode},
    dataplane::loader::{self, AttachOutcome},
    net::{Interface, Net, XdpAttachment},
    status::InterfaceStatus,
};

/// One interface the program is attached to.
pub struct Attached {
    pub iface: Interface,
    /// The mode the kernel reports (`ip -d link`), not the one asked for: an adopted link keeps
    /// the mode of the run that attached it.
    pub mode: XdpAttachment,
    pub outcome: AttachOutcome,
}

impl Attached {
    pub fn status(&self) -> InterfaceStatus {
        InterfaceStatus {
            name: self.iface.name.clone(),
            ifindex: self.iface.index,
            mode: self.mode.name().to_string(),
            how: match self.outcome {
                AttachOutcome::Attached => "attached".into(),
                AttachOutcome::Adopted => "adopted".into(),
            },
        }
    }
}

/// The attach modes to try, in order.
fn modes(cfg: &Config) -> &'static [XdpMode] {
    match cfg.global.xdp_mode {
        ConfiguredMode::Native => &[XdpMode::Driver],
        ConfiguredMode::Generic => &[XdpMode::Skb],
        ConfiguredMode::Auto => &[XdpMode::Driver, XdpMode::Skb],
    }
}

/// Is the program in a mode the configuration accepts? (`auto` takes either.)
pub fn mode_is_configured(configured: ConfiguredMode, kernel: XdpAttachment) -> bool {
    match configured {
        ConfiguredMode::Native => kernel == XdpAttachment::Native,
        ConfiguredMode::Generic => kernel == XdpAttachment::Generic,
        ConfiguredMode::Auto => {
            matches!(kernel, XdpAttachment::Native | XdpAttachment::Generic)
        }
    }
}

fn attach_one(
    ebpf: &mut Ebpf,
    cfg: &Config,
    name: &str,
    pin_dir: &Path,
) -> Result<AttachOutcome, Error> {
    let modes = modes(cfg);
    let mut last_err = None;
    for &mode in modes {
        match loader::attach_or_adopt(ebpf, name, mode, Some(pin_dir)) {
            Ok(outcome) => return Ok(outcome),
            Err(e) => {
                if modes.len() > 1 {
                    warn!(interface = %name, "native XDP unavailable ({e}); falling back to generic mode, \
                          which runs after the kernel has built an skb: several times slower");
                }
                last_err = Some(e);
            }
        }
    }
    Err(match last_err {
        Some(e) => Error::Attach(e),
        None => Error::NoMode(name.to_owned()),
    })
}

/// The mode the kernel has the XDP program of `name` in (`None` when it has none or the link
/// cannot be read).
async fn kernel_mode(net: &Net, name: &str) -> XdpAttachment {
    match net.link(name).await {
        Ok(link) => link.map(|l| l.xdp).unwrap_or_default(),
        Err(e) => {
            warn!(interface = %name, "cannot read the XDP attachment: {e}");
            XdpAttachment::None
        }
    }
}

/// Puts the program on `name`: keeps `previous` (or a link pinned by an earlier run) when the
/// kernel has it in a mode the configuration accepts, else attaches it in the configured mode.
/// A mode change cannot be atomic (the kernel refuses a native and a generic program on one
/// link at once): the old attachment goes first, and frames arriving in between reach the
/// kernel's stack.
async fn place(
    ebpf: &mut Ebpf,
    net: &Net,
    cfg: &Config,
    name: &str,
    previous: Option<Attached>,
) -> Result<Attached, Error> {
    let pin_dir = cfg.global.bpffs_dir.as_path();
    let configured = cfg.global.xdp_mode;
    let before = kernel_mode(net, name).await;
    if let Some(mut a) = previous {
        match net.interface(name).await {
            Ok(iface) => a.iface = iface,
            Err(e) => warn!(interface = %name, "cannot refresh: {e}"),
        }
        if mode_is_configured(configured, before) || before == XdpAttachment::None {
            a.mode = before;
            return Ok(a);
        }
    }
    let pinned = loader::link_pin_path(pin_dir, name).exists();
    if pinned && before != XdpAttachment::None && !mode_is_configured(configured, before) {
        warn!(interface = %name, attached = before.name(), configured = configured.name(),
              "xdp_mode changed: re-attaching in the configured mode (frames arriving during the \
               switch reach the kernel's stack)");
        loader::detach_pinned(pin_dir, name).map_err(|e| Error::Detach(name.to_owned(), e))?;
    }
    let iface = net.interface(name).await.map_err(Error::Net)?;
    let outcome = attach_one(ebpf, cfg, name, pin_dir)?;
    let mode = kernel_mode(net, name).await;
    info!(interface = %name, mode = mode.name(), outcome = ?outcome, "XDP program in place");
    Ok(Attached {
        iface,
        mode,
        outcome,
    })
}

/// Makes the attachments match the configured interfaces: keeps (and refreshes) those already
/// there, attaches new ones (or re-attaches those whose mode the configuration changed),
/// detaches those no longer configured.
pub async fn reconcile(
    ebpf: &mut Ebpf,
    net: &Net,
    cfg: &Config,
    current: Vec<Attached>,
) -> Result<Vec<Attached>, (Error, Vec<Attached>)> {
    let mut old = current;
    let mut attached = Vec::new();
    for name in &cfg.global.interfaces {
        let previous = old
            .iter()
            .position(|a| &a.iface.name == name)
            .map(|pos| old.remove(pos));
        match place(ebpf, net, cfg, name, previous).await {
            Ok(a) => attached.push(a),
            Err(e) => {
                attached.extend(old);
                return Err((e, attached));
            }
        }
    }
    for gone in old {
        match loader::detach_pinned(&cfg.global.bpffs_dir, &gone.iface.name) {
            Ok(_) => info!(interface = %gone.iface.name, "detached (no longer configured)"),
            Err(e) => warn!(interface = %gone.iface.name, "detach failed: {e}"),
        }
    }
    Ok(attached)
}

/// Reads again the mode the kernel has each attachment in (`xlb status` tells the kernel's
/// truth even after someone ran `ip link set dev X xdp off`).
pub async fn refresh_modes(net: &Net, attached: &mut [Attached]) {
    for a in attached {
        a.mode = kernel_mode(net, &a.iface.name).await;
    }
}

/// Detaches every interface and removes every pin (`xlb stop --detach`).
pub fn detach_all(pin_dir: &Path, attached: &[Attached]) {
    for a in attached {
        if let Err(e) = loader::detach_pinned(pin_dir, &a.iface.name) {
            warn!(interface = %a.iface.name, "detach: {e}");
        }
    }
}

/// bpffs must be mounted before anything can be pinned (a fresh machine may not have it).
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), Error> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mounted = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, target, fstype) = (f.next(), f.next(), f.next());
        fstype == Some("bpf") && target.is_some_and(|t| pin_dir.starts_with(t))
    });
    if mounted {
        return Ok(());
    }
    let target = Path::new("/sys/fs/bpf");
    if !pin_dir.starts_with(target) {
        return Err(Error::NoBpffs(pin_dir.to_path_buf()));
    }
    warn!("bpffs is not mounted at /sys/fs/bpf; mounting it");
    let fstype = c"bpf";
    let tgt = c"/sys/fs/bpf";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            tgt.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(Error::MountBpffs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Slots of the Maglev ring map: `maglev_capacity`, else every ring plus room to build any one
/// of them again beside it, doubled for services added by later reloads; at least 2^20 slots
/// (8 MiB: the kernel stores each u32 slot in 8 bytes).
pub fn maglev_capacity(cfg: &Config) -> u32 {
    let configured = cfg.global.maglev_capacity;
    if configured > 0 {
        return configured;
    }
    let sizes = cfg
        .virtual_servers
        .iter()
        .map(|v| v.maglev_table_size as u64);
    let sum: u64 = sizes.clone().sum();
    let max = sizes.max().unwrap_or(0);
    ((sum * 2 + max * 2).max(1 << 20)).min(u32::MAX as u64 / 2) as u32
}

pub fn pin_dir(cfg: &Config) -> PathBuf {
    cfg.global.bpffs_dir.clone()
}
