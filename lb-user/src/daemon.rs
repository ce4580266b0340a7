//! `xlb run`: the daemon. Loads (or adopts) the XDP program and its pinned maps, keeps the maps in
//! step with config + health + VRRP role, serves the control socket, sweeps the connection table.
//! One task owns all state; everything else talks to it through channels.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::{programs::XdpMode, Ebpf};
use lb_common::{map_names, stat};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::UnixListener,
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot},
};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config, XdpMode as CfgXdpMode},
    control::{self, Request, Response},
    dataplane::{
        desired::{DesiredState, ServiceAddr},
        loader::{self, AttachOutcome, LoadOptions},
        maps::KernelMaps,
        sweep::{self, SweepResult, Timeouts},
        writer::{MapWriter, RealKey},
    },
    health::{self, HealthChecker, HealthEvent},
    net::{self, Interface, Net},
    state::{self, Inputs, RealHealthInput, RealNote},
    status::{ConnEntry, InterfaceStatus, Rates, RealStatus, ServiceStatus, StatusReport, Traffic},
    vrrp::{Vrrp, VrrpEvent},
};

/// How long the previous Maglev ring is consulted by mid-stream packets without a table entry.
pub const PREV_RING_HOLD: Duration = Duration::from_secs(120);

pub struct RunOptions {
    pub config: PathBuf,
    pub release_on_exit: bool,
}

type ControlMsg = (Request, oneshot::Sender<Response>);

/// Entry point of `xlb run`.
pub fn run(opts: RunOptions) -> anyhow::Result<ExitCode> {
    let loaded = config::load(&opts.config);
    crate::logging::init(
        loaded
            .as_ref()
            .map(|c| c.global.log_format)
            .unwrap_or_default(),
    );
    let cfg = match loaded {
        Ok(c) => c,
        Err(errors) => {
            for e in errors.iter() {
                error!("{e}");
            }
            error!(
                "{}: {} error(s); not starting",
                opts.config.display(),
                errors.len()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let daemon = match Daemon::start(cfg, &opts).await {
            Ok(d) => d,
            Err(e) => {
                error!("{e:#}");
                return Ok(ExitCode::from(1));
            }
        };
        daemon.run().await
    })
}

/// systemd's sd_notify (Type=notify): one datagram to $NOTIFY_SOCKET. No crate needed for it.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(abstract_name) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(state.as_bytes(), PathBuf::from(path));
    }
}

/// bpffs must be mounted before anything can be pinned (a fresh machine may not have it).
fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
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
        anyhow::bail!(
            "{} is not on a bpf filesystem; mount one (mount -t bpf bpf DIR)",
            pin_dir.display()
        );
    }
    warn!("bpffs is not mounted at /sys/fs/bpf; mounting it");
    let src = std::ffi::CString::new("bpf")?;
    let tgt = std::ffi::CString::new("/sys/fs/bpf")?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            src.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        anyhow::bail!(
            "mount -t bpf bpf /sys/fs/bpf: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn ring_slots(cfg: &Config) -> u32 {
    let configured = *cfg.global.maglev_capacity.get_ref();
    if configured > 0 {
        return configured;
    }
    // Every ring plus room to build any one of them again beside it, doubled for services added
    // by later reloads; at least 2^20 slots (8 MiB: the kernel stores each u32 slot in 8 bytes).
    let sizes = cfg
        .virtual_servers
        .iter()
        .map(|v| *v.maglev_table_size.get_ref() as u64);
    let sum: u64 = sizes.clone().sum();
    let max = sizes.max().unwrap_or(0);
    ((sum * 2 + max * 2).max(1 << 20)).min(u32::MAX as u64 / 2) as u32
}

fn timeouts(cfg: &Config) -> Timeouts {
    let t = &cfg.timeouts;
    Timeouts {
        established: Duration::from_secs(*t.tcp.get_ref() as u64),
        syn_recv: Duration::from_secs(*t.syn_recv.get_ref() as u64),
        fin_wait: Duration::from_secs(*t.tcp_fin.get_ref() as u64),
        close: Duration::from_secs(*t.close.get_ref() as u64),
        udp: Duration::from_secs(*t.udp.get_ref() as u64),
    }
}

struct Attached {
    iface: Interface,
    mode: XdpMode,
    outcome: AttachOutcome,
}

struct Sample {
    at: Instant,
    services: HashMap<u32, lb_common::TrafficStats>,
    reals: HashMap<u32, lb_common::TrafficStats>,
}

pub struct Daemon {
    cfg: Config,
    config_path: PathBuf,
    release_on_exit: bool,
    /// Keeps the program (and its links' fds) alive for the daemon's lifetime.
    ebpf: Ebpf,
    writer: MapWriter,
    net: Net,
    checker: HealthChecker,
    health_rx: mpsc::UnboundedReceiver<HealthEvent>,
    vrrp: Option<Vrrp>,
    vrrp_rx: mpsc::UnboundedReceiver<VrrpEvent>,
    attached: Vec<Attached>,
    neighbours: BTreeMap<IpAddr, (u32, [u8; 6])>,
    health: BTreeMap<(String, SocketAddr), RealHealthInput>,
    quorum_up: BTreeMap<String, bool>,
    master_vips: BTreeSet<IpAddr>,
    desired: DesiredState,
    /// BGP-announced VIPs this daemon has put on `lo` (the BGP daemon exports `lo` routes).
    announced: BTreeSet<IpAddr>,
    /// BGP VIPs withdrawn at least once by this run (their rings while withdrawn served nobody).
    bgp_withdrawn_once: BTreeSet<IpAddr>,
    notes: Vec<RealNote>,
    timeouts: Timeouts,
    sweep: SweepResult,
    last: Option<Sample>,
    rates_services: HashMap<u32, Rates>,
    rates_reals: HashMap<u32, Rates>,
    /// The last configuration load (metrics: xlb_config_last_reload_successful).
    config_load: crate::status::ConfigLoad,
    sweep_duration: Duration,
}

impl Daemon {
    async fn start(cfg: Config, opts: &RunOptions) -> anyhow::Result<Self> {
        let pin_dir = cfg.global.bpffs_dir.get_ref().clone();
        ensure_bpffs(&pin_dir)?;
        let adopting = pin_dir.join(map_names::CONN_TABLE).exists();
        let conn_table_size = *cfg.global.conn_table_size.get_ref();
        let mut ebpf = loader::load(
            crate::BPF_OBJECT,
            &LoadOptions {
                conn_table_size,
                ring_slots: ring_slots(&cfg),
                pin_dir: Some(pin_dir.clone()),
            },
        )?;
        let maps = KernelMaps::take(&mut ebpf)?;
        let now = Instant::now();
        let writer = if adopting {
            let w =
                MapWriter::adopt(maps, PREV_RING_HOLD, now).context("adopting the pinned maps")?;
            info!(dir = %pin_dir.display(), "adopted pinned maps from a previous run: flows keep their real servers");
            w
        } else {
            MapWriter::new(maps, PREV_RING_HOLD)
        };
        if adopting {
            if let Ok(info) = aya::maps::MapData::from_pin(pin_dir.join(map_names::CONN_TABLE))
                .and_then(|m| m.info())
            {
                if info.max_entries() != conn_table_size {
                    warn!(
                        pinned = info.max_entries(),
                        configured = conn_table_size,
                        "conn_table_size differs from the pinned table, which keeps its size; \
                         restart once with `xlb stop --detach` then `xlb run` to resize (drops the table)"
                    );
                }
            }
        }
        let net = Net::connect()?;
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        let checker = HealthChecker::start(health::targets(&cfg), health_tx);
        let (vrrp_tx, vrrp_rx) = mpsc::unbounded_channel();
        let vrrp = Vrrp::start(&cfg, vrrp_tx).await.context("starting VRRP")?;
        let mut daemon = Self {
            master_vips: vrrp.master_vips(),
            vrrp: Some(vrrp),
            vrrp_rx,
            health: checker.state_inputs(),
            checker,
            health_rx,
            timeouts: timeouts(&cfg),
            config_path: opts.config.clone(),
            release_on_exit: opts.release_on_exit,
            ebpf,
            writer,
            net,
            attached: Vec::new(),
            neighbours: BTreeMap::new(),
            quorum_up: BTreeMap::new(),
            desired: DesiredState::default(),
            announced: BTreeSet::new(),
            bgp_withdrawn_once: BTreeSet::new(),
            notes: Vec::new(),
            sweep: SweepResult::default(),
            last: None,
            rates_services: HashMap::new(),
            rates_reals: HashMap::new(),
            config_load: crate::status::ConfigLoad {
                successful: true,
                at_unix: unix_now(),
            },
            sweep_duration: Duration::ZERO,
            cfg,
        };
        if let Err(e) = daemon.attach_all().await {
            if !adopting {
                // Nothing was forwarding before this run: leave no half-set-up state pinned
                // (a later start would adopt it).
                let dir = daemon.pin_dir();
                drop(daemon);
                let _ = loader::remove_pins(&dir);
            }
            return Err(e);
        }
        daemon.resolve_neighbours(true).await;
        daemon.reconcile();
        daemon.announce_bgp_vips().await;
        Ok(daemon)
    }

    fn pin_dir(&self) -> PathBuf {
        self.cfg.global.bpffs_dir.get_ref().clone()
    }

    async fn attach_all(&mut self) -> anyhow::Result<()> {
        let pin_dir = self.pin_dir();
        let wanted: Vec<String> = self
            .cfg
            .global
            .interfaces
            .get_ref()
            .iter()
            .map(|i| i.get_ref().clone())
            .collect();
        let mut attached = Vec::new();
        for name in &wanted {
            if let Some(pos) = self.attached.iter().position(|a| &a.iface.name == name) {
                let mut a = self.attached.remove(pos);
                a.iface = self.net.interface(name).await?;
                attached.push(a);
                continue;
            }
            let iface = self
                .net
                .interface(name)
                .await
                .with_context(|| format!("interface {name}"))?;
            let modes: &[XdpMode] = match self.cfg.global.xdp_mode {
                CfgXdpMode::Native => &[XdpMode::Driver],
                CfgXdpMode::Generic => &[XdpMode::Skb],
                CfgXdpMode::Auto => &[XdpMode::Driver, XdpMode::Skb],
            };
            let mut last_err = None;
            let mut done = None;
            for &mode in modes {
                match loader::attach_or_adopt(&mut self.ebpf, name, mode, Some(&pin_dir)) {
                    Ok(outcome) => {
                        done = Some((mode, outcome));
                        break;
                    }
                    Err(e) => {
                        if modes.len() > 1 {
                            warn!(interface = %name, "native XDP unavailable ({e}); falling back to generic mode, \
                                  which runs after the kernel has built an skb: several times slower");
                        }
                        last_err = Some(e);
                    }
                }
            }
            let Some((mode, outcome)) = done else {
                return Err(last_err
                    .map(anyhow::Error::from)
                    .unwrap_or_else(|| anyhow::anyhow!("cannot attach to {name}")));
            };
            info!(interface = %name, mode = loader::mode_name(mode), ?outcome, "XDP program in place");
            attached.push(Attached {
                iface,
                mode,
                outcome,
            });
        }
        // Interfaces dropped from the config: detach.
        for old in self.attached.drain(..) {
            if !wanted.contains(&old.iface.name) {
                match loader::detach_pinned(&pin_dir, &old.iface.name) {
                    Ok(_) => info!(interface = %old.iface.name, "detached (no longer configured)"),
                    Err(e) => warn!(interface = %old.iface.name, "detach failed: {e}"),
                }
            }
        }
        self.attached = attached;
        Ok(())
    }

    fn interfaces(&self) -> Vec<Interface> {
        self.attached.iter().map(|a| a.iface.clone()).collect()
    }

    /// Reads the neighbour table; probes real servers whose MAC is unknown. With `wait`, gives
    /// ARP/ND up to a second to answer (start-up), so the first table already has them.
    async fn resolve_neighbours(&mut self, wait: bool) {
        let wanted: Vec<IpAddr> = self
            .cfg
            .virtual_servers
            .iter()
            .flat_map(|vs| {
                let reals = vs
                    .real_servers
                    .iter()
                    .filter(|r| r.mac.is_none())
                    .map(|r| *r.address.get_ref());
                let sorry = vs
                    .sorry_server
                    .iter()
                    .filter(|_| vs.sorry_server_mac.is_none())
                    .map(|s| *s.get_ref());
                reals.chain(sorry).collect::<Vec<_>>()
            })
            .collect();
        for attempt in 0..10 {
            match self.net.neighbours().await {
                Ok(n) => self.neighbours = n,
                Err(e) => warn!("reading the neighbour table: {e}"),
            }
            let missing: Vec<IpAddr> = wanted
                .iter()
                .filter(|ip| !self.neighbours.contains_key(ip))
                .copied()
                .collect();
            if missing.is_empty() {
                return;
            }
            if attempt == 0 || !wait {
                for ip in &missing {
                    net::probe_neighbour(*ip);
                }
            }
            if !wait {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Recomputes the desired state and writes the difference.
    fn reconcile(&mut self) {
        let interfaces = self.interfaces();
        let weights = state::alive_weights(&self.cfg, &self.health);
        for vs in &self.cfg.virtual_servers {
            let name = vs.service_name();
            let was = self.quorum_up.get(&name).copied().unwrap_or(true);
            let alive = weights.get(&name).copied().unwrap_or(0);
            let now = health::quorum::next_state(was, alive, vs.quorum, *vs.hysteresis.get_ref());
            if now != was {
                warn!(service = %name, "service {} quorum", if now { "back at" } else { "below" });
            }
            self.quorum_up.insert(name, now);
        }
        if let Some(vrrp) = &self.vrrp {
            // VRRP's track_service: an instance tracking a service below quorum faults (or
            // lowers its priority), so the peer takes the VIP.
            vrrp.set_service_health(&self.quorum_up);
        }
        let inputs = Inputs {
            interfaces: &interfaces,
            neighbours: &self.neighbours,
            health: &self.health,
            master_vips: &self.master_vips,
            quorum_up: &self.quorum_up,
        };
        let (mut desired, notes) = state::build(&self.cfg, &inputs);
        // BGP: a service below quorum is withdrawn (its VIP leaves lo just after this). Until the
        // routers have moved its flows away, packets still arrive: keep the tables the other
        // directors share rather than re-dispatching flows of servers only this director sees
        // as down (which would reset them). Nobody routes to a withdrawn service, so its
        // tables stay frozen until it is back at quorum.
        for vs in &self.cfg.virtual_servers {
            if self.cfg.announce_of(vs) != config::Announce::Bgp
                || self
                    .quorum_up
                    .get(&vs.service_name())
                    .copied()
                    .unwrap_or(true)
            {
                continue;
            }
            let addr = state::service_addr(vs);
            let old = self.desired.services.iter().find(|s| s.addr == addr);
            if let (Some(old), Some(new)) =
                (old, desired.services.iter_mut().find(|s| s.addr == addr))
            {
                *new = old.clone();
            }
        }
        for n in &notes {
            if !self.notes.contains(n) {
                warn!(service = %n.service, real = %n.real, "{}", n.note);
            }
        }
        self.notes = notes;
        match self.writer.apply(&desired, Instant::now()) {
            Ok(report) if !report.is_empty() => info!(?report, "kernel maps updated"),
            Ok(_) => {}
            Err(e) => error!("updating the kernel maps: {e}"),
        }
        // BGP: a ring written while the VIP is withdrawn (after having been announced) served no
        // flow and must not become the previous ring; a full ring (every real server alive)
        // while announced is what the other directors have, so it may.
        for ds in &desired.services {
            let vip = ds.addr.vip;
            if !self.bgp_withdrawn_once.contains(&vip) {
                continue;
            }
            if !self.announced.contains(&vip) {
                self.writer.set_ring_served(&ds.addr, false);
            } else if ds.reals.iter().all(|r| r.alive) {
                self.writer.set_ring_served(&ds.addr, true);
            }
        }
        self.desired = desired;
    }

    /// BGP mode: a VIP is on `lo` (so BIRD announces it) exactly while its service can be served
    /// here: the XDP program is attached and the service is at quorum. Withdrawing it takes the
    /// director out of the routers' ECMP set within the BGP daemon's reaction time.
    async fn announce_bgp_vips(&mut self) {
        let attached = !self.attached.is_empty();
        let mut wanted = BTreeSet::new();
        let mut bgp_vips = BTreeSet::new();
        for vs in &self.cfg.virtual_servers {
            if self.cfg.announce_of(vs) != config::Announce::Bgp {
                continue;
            }
            let vip = *vs.vip.get_ref();
            bgp_vips.insert(vip);
            let up = self
                .quorum_up
                .get(&vs.service_name())
                .copied()
                .unwrap_or(true);
            if attached && up {
                wanted.insert(vip);
            }
        }
        // A VIP shared by several services is announced while any of them can be served.
        let lo = match self.net.interface("lo").await {
            Ok(lo) => lo,
            Err(e) => {
                warn!("cannot read lo: {e}");
                return;
            }
        };
        let present: BTreeSet<IpAddr> = lo
            .addrs
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| bgp_vips.contains(a))
            .collect();
        for vip in wanted.difference(&present) {
            match self.net.add_host_address(lo.index, *vip).await {
                Ok(()) => info!(%vip, "BGP: VIP put on lo (announced)"),
                Err(e) => warn!(%vip, "BGP: cannot add the VIP to lo: {e}"),
            }
        }
        // Withdraw what we announced (or a previous run did) that can no longer be served.
        let stale: Vec<IpAddr> = present
            .iter()
            .chain(self.announced.iter())
            .filter(|v| !wanted.contains(v))
            .copied()
            .collect();
        for vip in stale {
            self.bgp_withdrawn_once.insert(vip);
            match self.net.del_address(lo.index, vip).await {
                Ok(()) => warn!(%vip, "BGP: VIP removed from lo (withdrawn)"),
                Err(e) => warn!(%vip, "BGP: cannot remove the VIP from lo: {e}"),
            }
        }
        self.announced = wanted;
    }

    async fn reload(&mut self) -> Result<String, Vec<String>> {
        sd_notify("RELOADING=1");
        let result = match config::load(&self.config_path) {
            Err(errors) => {
                let errs: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                for e in &errs {
                    error!("reload rejected: {e}");
                }
                Err(errs)
            }
            Ok(cfg) => {
                if cfg.global.conn_table_size != self.cfg.global.conn_table_size {
                    warn!("conn_table_size changed: takes effect after `xlb stop --detach` and a new `xlb run`");
                }
                if cfg.global.bpffs_dir != self.cfg.global.bpffs_dir {
                    warn!("bpffs_dir changed: takes effect after a restart");
                }
                self.cfg = cfg;
                self.timeouts = timeouts(&self.cfg);
                self.checker.reload(health::targets(&self.cfg));
                self.health = self.checker.state_inputs();
                let mut vrrp_result = Ok(());
                if let Some(vrrp) = &mut self.vrrp {
                    vrrp_result = vrrp.reload(&self.cfg).await;
                    self.master_vips = vrrp.master_vips();
                }
                let attach = self.attach_all().await;
                self.resolve_neighbours(true).await;
                self.reconcile();
                self.announce_bgp_vips().await;
                let attach = attach.and(vrrp_result.context("VRRP"));
                match attach {
                    Ok(()) => {
                        info!(file = %self.config_path.display(), "configuration reloaded");
                        Ok(format!("reloaded {}", self.config_path.display()))
                    }
                    Err(e) => Err(vec![format!("{e:#}")]),
                }
            }
        };
        sd_notify("READY=1");
        self.config_load = crate::status::ConfigLoad {
            successful: result.is_ok(),
            at_unix: unix_now(),
        };
        result
    }

    fn do_sweep(&mut self) {
        let started = Instant::now();
        match sweep::sweep(self.writer.maps_mut(), &self.timeouts) {
            Ok(r) => self.sweep = r,
            Err(e) => warn!("connection-table sweep: {e}"),
        }
        self.sweep_duration = started.elapsed();
    }

    fn sample_rates(&mut self) {
        let slots = self.writer.slots();
        let maps = self.writer.maps();
        let mut services = HashMap::new();
        let mut reals = HashMap::new();
        for s in slots.values() {
            if let Ok(t) = maps.service_traffic(s.id) {
                services.insert(s.id, t);
            }
            for slot in s.reals.values() {
                if let Ok(t) = maps.real_traffic(*slot) {
                    reals.insert(*slot, t);
                }
            }
        }
        let now = Instant::now();
        if let Some(last) = &self.last {
            let dt = now.duration_since(last.at).as_secs_f64().max(1e-3);
            let rate = |new: &lb_common::TrafficStats, old: Option<&lb_common::TrafficStats>| {
                let old = old.copied().unwrap_or_default();
                Rates {
                    cps: new.conns.saturating_sub(old.conns) as f64 / dt,
                    pps: new.packets.saturating_sub(old.packets) as f64 / dt,
                    bps: new.bytes.saturating_sub(old.bytes) as f64 / dt,
                }
            };
            self.rates_services = services
                .iter()
                .map(|(k, v)| (*k, rate(v, last.services.get(k))))
                .collect();
            self.rates_reals = reals
                .iter()
                .map(|(k, v)| (*k, rate(v, last.reals.get(k))))
                .collect();
        }
        self.last = Some(Sample {
            at: now,
            services,
            reals,
        });
    }

    fn status(&mut self) -> StatusReport {
        self.do_sweep();
        let slots = self.writer.slots();
        let maps = self.writer.maps();
        let check_stats = self.checker.check_stats();
        let mut services = Vec::new();
        for vs in &self.cfg.virtual_servers {
            let name = vs.service_name();
            let addr = state::service_addr(vs);
            let svc_slots = slots.get(&addr);
            let desired = self.desired.services.iter().find(|d| d.addr == addr);
            let traffic = svc_slots
                .and_then(|s| maps.service_traffic(s.id).ok())
                .map(|t| Traffic {
                    conns: t.conns,
                    packets: t.packets,
                    bytes: t.bytes,
                })
                .unwrap_or_default();
            let mut reals = Vec::new();
            for rs in &vs.real_servers {
                let ip = *rs.address.get_ref();
                let port = rs.effective_port(vs);
                let sock = SocketAddr::new(ip, port);
                let slot = svc_slots
                    .and_then(|s| {
                        s.reals.get(&RealKey {
                            addr: ip,
                            port,
                            sorry: false,
                        })
                    })
                    .copied();
                let d =
                    desired.and_then(|d| d.reals.iter().find(|r| r.addr == ip && r.port == port));
                let note = self
                    .notes
                    .iter()
                    .find(|n| n.service == name && n.real == sock)
                    .map(|n| n.note.clone());
                let counts = slot
                    .and_then(|s| self.sweep.per_real.get(&s))
                    .copied()
                    .unwrap_or_default();
                let t = slot
                    .and_then(|s| maps.real_traffic(s).ok())
                    .unwrap_or_default();
                reals.push(RealStatus {
                    addr: sock,
                    weight: *rs.weight.get_ref(),
                    effective_weight: d.map(|d| d.weight).unwrap_or(0),
                    forwarding: d.is_some_and(|d| d.alive && d.weight > 0),
                    health: note.unwrap_or_else(|| "up".into()),
                    active_conns: counts.active,
                    inactive_conns: counts.inactive,
                    traffic: Traffic {
                        conns: t.conns,
                        packets: t.packets,
                        bytes: t.bytes,
                    },
                    rates: slot
                        .and_then(|s| self.rates_reals.get(&s))
                        .cloned()
                        .unwrap_or_default(),
                    check: check_stats
                        .get(&(name.clone(), sock))
                        .cloned()
                        .unwrap_or_default(),
                });
            }
            let role = match self.cfg.announce_of(vs) {
                config::Announce::Always => "always".to_string(),
                config::Announce::Bgp => "bgp".to_string(),
                config::Announce::Vrrp => {
                    let inst = self
                        .cfg
                        .vrrp_instance_for(*vs.vip.get_ref())
                        .map(|i| i.name.get_ref().clone())
                        .unwrap_or_default();
                    let master = self.master_vips.contains(vs.vip.get_ref());
                    format!(
                        "vrrp {inst} {}",
                        if master { "MASTER" } else { "not MASTER" }
                    )
                }
            };
            services.push(ServiceStatus {
                name: name.clone(),
                addr,
                scheduler: state::scheduler(vs.scheduler).ipvs_name().to_string(),
                persistence_timeout: *vs.persistence_timeout.get_ref(),
                active: desired.is_some_and(|d| d.active),
                role,
                quorum_up: self.quorum_up.get(&name).copied().unwrap_or(true),
                sorry_server: vs
                    .sorry_server
                    .as_ref()
                    .map(|s| SocketAddr::new(*s.get_ref(), *vs.port.get_ref())),
                traffic,
                rates: svc_slots
                    .and_then(|s| self.rates_services.get(&s.id))
                    .cloned()
                    .unwrap_or_default(),
                reals,
            });
        }
        let counters = maps
            .global_counters()
            .map(|c| {
                stat::NAMES
                    .iter()
                    .zip(c)
                    .map(|(n, v)| (n.to_string(), v))
                    .collect()
            })
            .unwrap_or_default();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config_file: self.config_path.display().to_string(),
            conn_table_size: self.conn_table_capacity(),
            conn_table_entries: self.sweep.entries,
            ring_capacity: self.writer.ring_capacity(),
            interfaces: self
                .attached
                .iter()
                .map(|a| InterfaceStatus {
                    name: a.iface.name.clone(),
                    ifindex: a.iface.index,
                    mode: loader::mode_name(a.mode).to_string(),
                    how: match a.outcome {
                        AttachOutcome::Attached => "attached".into(),
                        AttachOutcome::Adopted => "adopted".into(),
                    },
                })
                .collect(),
            services,
            vrrp: self
                .vrrp
                .as_ref()
                .map(|v| {
                    v.status()
                        .into_iter()
                        .map(|i| crate::status::VrrpStatus {
                            name: i.name,
                            state: i.role.to_string(),
                            vrid: i.vrid,
                            interface: i.interface,
                            priority: i.priority,
                            effective_priority: i.effective_priority,
                            last_master: i.last_master,
                            adverts_rx: i.adverts_rx,
                            adverts_tx: i.adverts_tx,
                            bad_adverts: i.bad_adverts,
                            transitions: i.transitions,
                            last_bad_advert: i.last_bad_advert,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            counters,
            config_load: self.config_load.clone(),
            sweep_duration_secs: self.sweep_duration.as_secs_f64(),
            recent_transitions: crate::status::RecentTransitions::merge([
                self.checker.recent_transitions(),
                self.vrrp
                    .as_ref()
                    .map(|v| v.recent_transitions())
                    .unwrap_or_default(),
            ]),
        }
    }

    fn conn_table_capacity(&self) -> u32 {
        use aya::maps::IterableMap as _;
        self.writer
            .maps()
            .conn_table
            .map()
            .info()
            .map(|i| i.max_entries())
            .unwrap_or(0)
    }

    fn conns(
        &self,
        service: Option<String>,
        real: Option<IpAddr>,
        client: Option<IpAddr>,
        limit: usize,
    ) -> (Vec<ConnEntry>, u64) {
        use std::os::fd::AsRawFd as _;
        let slots = self.writer.slots();
        let mut by_id: HashMap<u32, (String, ServiceAddr)> = HashMap::new();
        let mut real_addr: HashMap<u32, SocketAddr> = HashMap::new();
        for vs in &self.cfg.virtual_servers {
            let addr = state::service_addr(vs);
            if let Some(s) = slots.get(&addr) {
                by_id.insert(s.id, (vs.service_name(), addr));
                for (k, slot) in &s.reals {
                    real_addr.insert(*slot, SocketAddr::new(k.addr, k.port));
                }
            }
        }
        let now = sweep::monotonic_ns();
        let mut out = Vec::new();
        let mut total = 0u64;
        let fd = self.writer.maps().conn_table_fd().as_raw_fd();
        let res = crate::dataplane::batch::for_each::<lb_common::FlowKey, lb_common::FlowEntry>(
            fd,
            8192,
            |k, v| {
                let Some((name, saddr)) = by_id.get(&v.service_id) else {
                    return;
                };
                let dest = real_addr.get(&v.real_id).copied();
                let src_ip = crate::dataplane::desired::words_addr(k.src, k.family);
                if service.as_ref().is_some_and(|s| s != name)
                    || real.is_some_and(|r| dest.map(|d| d.ip()) != Some(r))
                    || client.is_some_and(|c| c != src_ip)
                {
                    return;
                }
                total += 1;
                if out.len() >= limit {
                    return;
                }
                out.push(ConnEntry {
                    protocol: saddr.protocol.ipvsadm_name().to_string(),
                    expire_secs: sweep::expires_in(v, &self.timeouts, now).as_secs(),
                    state: sweep::state_name(v.state).to_string(),
                    client: SocketAddr::new(src_ip, u16::from_be(k.sport)),
                    virtual_addr: SocketAddr::new(saddr.vip, u16::from_be(k.dport)),
                    real: dest,
                });
            },
        );
        if let Err(e) = res {
            warn!("reading the connection table: {e}");
        }
        (out, total)
    }

    async fn run(mut self) -> anyhow::Result<ExitCode> {
        let socket_path = self.cfg.global.control_socket.get_ref().clone();
        let (control_tx, mut control_rx) = mpsc::channel::<ControlMsg>(16);
        let listener = bind_control_socket(&socket_path)?;
        if let Some(addr) = self.cfg.global.metrics_listen {
            tokio::spawn(crate::metrics::serve(
                addr,
                status_snapshots(control_tx.clone()),
            ));
        }
        tokio::spawn(serve_control(listener, control_tx));
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let interval = Duration::from_secs_f64(*self.cfg.global.sweep_interval.get_ref());
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        sd_notify("READY=1");
        info!(socket = %socket_path.display(), "xlb is running");
        let mut detach = self.release_on_exit;
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = self.reload().await; }
                Some(event) = self.vrrp_rx.recv() => {
                    // Logged by the instance (one line per transition).
                    let VrrpEvent::RoleChanged { .. } = event;
                    if let Some(vrrp) = &self.vrrp {
                        self.master_vips = vrrp.master_vips();
                    }
                    self.reconcile();
                }
                Some(event) = self.health_rx.recv() => {
                    // Logged by the checker (one line per transition).
                    let HealthEvent::Changed { .. } = event;
                    self.health = self.checker.state_inputs();
                    self.reconcile();
                    self.announce_bgp_vips().await;
                }
                _ = term.recv() => { info!("SIGTERM"); break; }
                _ = int.recv() => { info!("SIGINT"); break; }
                Some((req, reply)) = control_rx.recv() => {
                    let resp = match req {
                        Request::Status => Response::Status(Box::new(self.status())),
                        Request::Conns { service, real, client, limit } => {
                            let (entries, total) = self.conns(service, real, client, limit);
                            Response::Conns { entries, total }
                        }
                        Request::Reload => match self.reload().await {
                            Ok(summary) => Response::Reloaded { summary },
                            Err(errors) => Response::ReloadFailed { errors },
                        },
                        Request::Stop { detach: d } => {
                            detach |= d;
                            let _ = reply.send(Response::Stopping);
                            break;
                        }
                    };
                    let _ = reply.send(resp);
                }
                _ = tick.tick() => {
                    self.resolve_neighbours(false).await;
                    self.do_sweep();
                    self.sample_rates();
                    if let Err(e) = self.writer.expire_previous_rings(Instant::now()) {
                        warn!("expiring previous rings: {e}");
                    }
                    self.reconcile();
                    self.announce_bgp_vips().await;
                }
            }
        }
        sd_notify("STOPPING=1");
        let _ = std::fs::remove_file(&socket_path);
        if let Some(vrrp) = self.vrrp.take() {
            // Priority 0 and VIPs removed: the backup takes over at once, and no dead master
            // keeps the VIP (the IP conflict the LVS field report warns about).
            vrrp.shutdown().await;
        }
        if detach {
            // Nothing will forward here any more: stop attracting traffic first.
            if let Ok(lo) = self.net.interface("lo").await {
                for vip in std::mem::take(&mut self.announced) {
                    let _ = self.net.del_address(lo.index, vip).await;
                }
            }
            let pin_dir = self.pin_dir();
            for a in &self.attached {
                if let Err(e) = loader::detach_pinned(&pin_dir, &a.iface.name) {
                    warn!(interface = %a.iface.name, "detach: {e}");
                }
            }
            drop(self);
            if let Err(e) = loader::remove_pins(&pin_dir) {
                warn!("removing {}: {e}", pin_dir.display());
            }
            info!("detached and released all pinned state");
        } else {
            info!("exiting; the XDP program and its maps stay pinned and keep forwarding");
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// ADAPTER (to be replaced by the new core, which publishes a snapshot after each change):
/// asks the control channel for a status report every second and publishes it, so that the
/// metrics/status HTTP server never waits on the daemon's control queue (a slow reload delays
/// the next snapshot, not a scrape).
fn status_snapshots(
    control: mpsc::Sender<ControlMsg>,
) -> tokio::sync::watch::Receiver<std::sync::Arc<StatusReport>> {
    let (tx, rx) = tokio::sync::watch::channel(std::sync::Arc::new(StatusReport::empty()));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (otx, orx) = oneshot::channel();
            if control.send((Request::Status, otx)).await.is_err() {
                return;
            }
            if let Ok(Response::Status(report)) = orx.await {
                if tx.send(std::sync::Arc::new(*report)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn bind_control_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A socket left by a killed daemon: remove it (bind would fail with EADDRINUSE).
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another xlb daemon answers on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn serve_control(listener: UnixListener, tx: mpsc::Sender<ControlMsg>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read.take(control::MAX_REQUEST as u64 + 1));
            let mut line = String::new();
            let resp = if uid != 0 {
                Response::Error {
                    message: "the control socket is for root only".into(),
                }
            } else {
                match tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
                    .await
                {
                    Ok(Ok(_)) => match control::parse_request(&line) {
                        Ok(req) => {
                            let (otx, orx) = oneshot::channel();
                            if tx.send((req, otx)).await.is_err() {
                                Response::Error {
                                    message: "daemon is stopping".into(),
                                }
                            } else {
                                orx.await.unwrap_or(Response::Error {
                                    message: "daemon is stopping".into(),
                                })
                            }
                        }
                        Err(message) => Response::Error { message },
                    },
                    Ok(Err(e)) => Response::Error {
                        message: format!("bad request: {e}"),
                    },
                    Err(_) => Response::Error {
                        message: "request timed out".into(),
                    },
                }
            };
            if let Ok(mut s) = serde_json::to_string(&resp) {
                s.push('\n');
                let _ = write.write_all(s.as_bytes()).await;
            }
        });
    }
}
