//! `xlb run`: the IO shell around the [`Controller`]. It loads (or adopts) the XDP program and
//! its pinned maps, gathers what the controller decides from (health events, VRRP roles,
//! interfaces, neighbours, the VIPs on `lo`), carries out its plans through the one map writer,
//! answers the control socket from [`report`], and owns signals and systemd notification.
//! One task owns all state; everything else talks to it through channels.
mod attach;
mod error;
mod ops;
mod query;
mod systemd;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::Ebpf;
use lb_common::map_names;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};
use tracing::{error, info, warn};

use crate::{
    config::{self, Config},
    control::{self, Call, Request, Response},
    controller::{Controller, Observed},
    dataplane::{
        loader::{self, LoadOptions},
        maps::KernelMaps,
        sweep::{self, SweepResult, Timeouts},
        writer::MapWriter,
    },
    health::{self, HealthChecker, HealthEvent},
    net::{self, Net},
    overlay::Overlay,
    report::RateTracker,
    state::RealHealthInput,
    status::{ConfigLoad, StatusReport},
    vrrp::{Vrrp, VrrpEvent},
};
use attach::Attached;
pub use error::{Error, ReloadError};

/// How long the previous Maglev ring is consulted by mid-stream packets without a table entry
/// (`global.previous_ring_hold`, default 120 s).
fn prev_ring_hold(cfg: &Config) -> Duration {
    Duration::from_secs_f64(cfg.global.previous_ring_hold)
}

pub struct RunOptions {
    pub config: PathBuf,
    pub release_on_exit: bool,
}

/// Entry point of `xlb run`: exit 2 for a bad file, 1 when the daemon cannot start.
pub fn run(opts: RunOptions) -> ExitCode {
    let checked = config::load_checked(&opts.config);
    // The configured log format, or the default when the file is rejected (its errors are
    // logged just below).
    crate::logging::init(
        checked
            .as_ref()
            .map(|(c, _)| c.global.log_format)
            .unwrap_or_default(),
    );
    let loaded = checked.map(|(cfg, warnings)| {
        warnings.iter().for_each(|w| warn!("{w}"));
        cfg
    });
    match run_inner(opts, loaded) {
        Ok(code) => code,
        Err(e @ Error::Config { .. }) => {
            if let Error::Config { errors, .. } = &e {
                errors.iter().for_each(|line| error!("{line}"));
            }
            error!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(
    opts: RunOptions,
    loaded: Result<Config, config::ConfigErrors>,
) -> Result<ExitCode, Error> {
    let cfg = loaded.map_err(|errors| Error::Config {
        path: opts.config.clone(),
        errors,
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    rt.block_on(async move {
        let daemon = Daemon::start(cfg, &opts).await?;
        daemon.run().await
    })
}

/// What the daemon observed last, the controller's input besides the configuration.
#[derive(Default)]
struct Observations {
    neighbours: BTreeMap<IpAddr, (u32, [u8; 6])>,
    /// Route to each tunnelled real server (its `mtu` filled from the link when it has none).
    routes: BTreeMap<IpAddr, net::Route>,
    health: BTreeMap<(String, std::net::SocketAddr), RealHealthInput>,
    master_vips: BTreeSet<IpAddr>,
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
    seen: Observations,
    controller: Controller,
    /// The operator's run-time changes, kept in `global.state_dir`.
    overlay: Overlay,
    timeouts: Timeouts,
    sweep: SweepResult,
    rates: RateTracker,
    /// The last status report, for readers that must not wait behind the daemon's task.
    snapshots: watch::Sender<Arc<StatusReport>>,
    /// The last configuration load (metrics: xlb_config_last_reload_successful).
    config_load: ConfigLoad,
    sweep_duration: Duration,
    /// Connection sync with the peer directors (`[sync]`), `None` when off.
    sync: Option<crate::sync::task::SyncLink>,
    /// `confirm_failure`: local failures against the peers' health views.
    agreement: health::views::HealthAgreement,
}

/// Loads the program and opens the maps, adopting what a previous run left pinned.
fn load_dataplane(cfg: &Config) -> Result<(Ebpf, MapWriter, bool), Error> {
    let pin_dir = attach::pin_dir(cfg);
    attach::ensure_bpffs(&pin_dir)?;
    let adopting = pin_dir.join(map_names::SERVICES).exists();
    replace_incompatible_pins(&pin_dir);
    let conn_table_size = cfg.global.conn_table_size;
    let mut ebpf = loader::load(
        crate::BPF_OBJECT,
        &LoadOptions {
            conn_table_size,
            persistence_table_size: cfg.global.persistence_table_size,
            maglev_capacity: attach::maglev_capacity(cfg),
            pin_dir: Some(pin_dir.clone()),
        },
    )?;
    let maps = KernelMaps::take(&mut ebpf)?;
    if !adopting {
        return Ok((ebpf, MapWriter::new(maps, prev_ring_hold(cfg)), false));
    }
    let writer =
        MapWriter::adopt(maps, prev_ring_hold(cfg), Instant::now()).map_err(Error::Adopt)?;
    info!(dir = %pin_dir.display(), "adopted pinned maps from a previous run: flows keep their real servers");
    let pinned = aya::maps::MapData::from_pin(pin_dir.join(map_names::CONN_TABLE))
        .and_then(|m| m.info())
        .map(|i| i.max_entries());
    if let Some(pinned) = pinned.ok().filter(|p| *p != conn_table_size) {
        warn!(
            pinned,
            configured = conn_table_size,
            "conn_table_size differs from the pinned table, which keeps its size; \
             restart once with `xlb stop --detach` then `xlb run` to resize (drops the table)"
        );
    }
    Ok((ebpf, writer, true))
}

impl Daemon {
    async fn start(cfg: Config, opts: &RunOptions) -> Result<Self, Error> {
        let (ebpf, mut writer, adopting) = load_dataplane(&cfg)?;
        let sync = crate::sync::task::attach(&cfg, &mut writer)?;
        let net = Net::connect()?;
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        let checker = HealthChecker::start(health::targets(&cfg), health_tx);
        let (vrrp_tx, vrrp_rx) = mpsc::unbounded_channel();
        let vrrp = Vrrp::start(&cfg, vrrp_tx, adopting)
            .await
            .map_err(Error::Vrrp)?;
        let seen = Observations {
            master_vips: vrrp.master_vips(),
            health: checker.state_inputs(),
            neighbours: BTreeMap::new(),
            routes: BTreeMap::new(),
        };
        let mut daemon = Self {
            vrrp: Some(vrrp),
            vrrp_rx,
            checker,
            health_rx,
            seen,
            timeouts: Timeouts::from(&cfg.timeouts),
            config_path: opts.config.clone(),
            release_on_exit: opts.release_on_exit,
            ebpf,
            writer,
            net,
            attached: Vec::new(),
            controller: Controller::default(),
            overlay: load_overlay(&cfg),
            sweep: SweepResult::default(),
            rates: RateTracker::default(),
            snapshots: watch::channel(Arc::new(StatusReport::empty())).0,
            config_load: ConfigLoad {
                successful: true,
                at_unix: unix_now(),
            },
            sweep_duration: Duration::ZERO,
            sync,
            agreement: Default::default(),
            cfg,
        };
        if let Err(e) = daemon.attach().await {
            if !adopting {
                // Nothing was forwarding before this run: leave no half-set-up state pinned
                // (a later start would adopt it).
                let dir = attach::pin_dir(&daemon.cfg);
                drop(daemon);
                let _ = loader::remove_pins(&dir);
            }
            return Err(e);
        }
        daemon.resolve_neighbours(true).await;
        daemon.reconcile().await;
        Ok(daemon)
    }

    async fn attach(&mut self) -> Result<(), Error> {
        let current = std::mem::take(&mut self.attached);
        match attach::reconcile(&mut self.ebpf, &self.net, &self.cfg, current).await {
            Ok(a) => {
                self.attached = a;
                Ok(())
            }
            Err((e, a)) => {
                self.attached = a;
                Err(e)
            }
        }
    }

    /// Reads the neighbour table; probes real servers whose MAC is unknown. With `wait`, gives
    /// ARP/ND up to a second to answer (start-up), so the first table already has them.
    async fn resolve_neighbours(&mut self, wait: bool) {
        self.resolve_routes().await;
        // A tunnelled real server's frames go to its route's next hop: learn that one's MAC.
        let wanted: Vec<IpAddr> = macs_to_learn(&self.cfg)
            .into_iter()
            .map(|ip| self.seen.routes.get(&ip).map_or(ip, |r| r.next_hop(ip)))
            .collect();
        for attempt in 0..10 {
            match self.net.neighbours().await {
                Ok(n) => self.seen.neighbours = n,
                Err(e) => warn!("reading the neighbour table: {e}"),
            }
            let missing: Vec<IpAddr> = wanted
                .iter()
                .filter(|ip| !self.seen.neighbours.contains_key(ip))
                .copied()
                .collect();
            if missing.is_empty() {
                return;
            }
            if attempt == 0 || !wait {
                missing.iter().for_each(|ip| net::probe_neighbour(*ip));
            }
            if !wait {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Looks up the route to every tunnelled real server (tunnel mode); the link's MTU stands in
    /// for a route without an `mtu` metric.
    async fn resolve_routes(&mut self) {
        let mut routes = BTreeMap::new();
        for ip in crate::tunnel::tunnelled_addresses(&self.cfg) {
            match self.net.route_to(ip).await {
                Ok(Some(mut r)) => {
                    if r.mtu.is_none() {
                        r.mtu = self.link_mtu(r.ifindex).await;
                    }
                    routes.insert(ip, r);
                }
                Ok(None) => {}
                Err(e) => warn!("looking up the route to tunnelled real server {ip}: {e}"),
            }
        }
        self.seen.routes = routes;
    }

    async fn link_mtu(&self, ifindex: u32) -> Option<u32> {
        let a = self.attached.iter().find(|a| a.iface.index == ifindex)?;
        self.net
            .link(&a.iface.name)
            .await
            .ok()
            .flatten()
            .map(|l| l.mtu)
    }

    /// One round: the controller plans from the latest observations, the shell carries it out
    /// (tables, VRRP's track_service, BGP announcements).
    async fn reconcile(&mut self) {
        self.refresh_health();
        let interfaces: Vec<_> = self.attached.iter().map(|a| a.iface.clone()).collect();
        let seen = Observed {
            interfaces: &interfaces,
            neighbours: &self.seen.neighbours,
            routes: &self.seen.routes,
            health: &self.seen.health,
            master_vips: &self.seen.master_vips,
            overlay: &self.overlay,
        };
        let plan = self.controller.plan_tables(&self.cfg, &seen);
        for q in &plan.quorum_changes {
            let state = if q.up { "back at" } else { "below" };
            warn!(service = %q.service, "service {state} quorum");
        }
        for n in &plan.new_notes {
            warn!(service = %n.service, real = %n.real, "{}", n.note);
        }
        if let Some(vrrp) = &self.vrrp {
            // VRRP's track_service: an instance tracking a service below quorum faults (or
            // lowers its priority), so the peer takes the VIP.
            vrrp.set_service_health(self.controller.quorum_up());
        }
        match self.writer.apply(self.controller.desired(), Instant::now()) {
            Ok(report) if !report.is_empty() => info!(?report, "kernel maps updated"),
            Ok(_) => {}
            Err(e) => error!("updating the kernel maps: {e}"),
        }
        if let Some(s) = &self.sync {
            s.publish(&self.writer);
        }
        for (addr, served) in &plan.ring_served {
            self.writer.set_ring_served(addr, *served);
        }
        self.announce().await;
    }

    /// The state's health inputs with `confirm_failure` applied; tells the peers this
    /// director's view. Whether a verdict changed.
    fn refresh_health(&mut self) -> bool {
        let snapshot = self.checker.snapshot();
        let (inputs, changed) = self.agreement.inputs(&self.cfg, &snapshot, Instant::now());
        self.seen.health = inputs;
        if let Some(s) = &self.sync {
            s.publish_health(health::views::own_view(&self.cfg, &snapshot));
        }
        changed
    }

    /// BGP mode: carries out the controller's announcement plan on `lo`.
    async fn announce(&mut self) {
        let lo = match self.net.interface("lo").await {
            Ok(lo) => lo,
            Err(e) => {
                warn!("cannot read lo: {e}");
                return;
            }
        };
        let present: BTreeSet<IpAddr> = lo.addrs.iter().map(|(a, _)| *a).collect();
        let attached = !self.attached.is_empty();
        let plan = self
            .controller
            .plan_announcements(&self.cfg, attached, &present);
        for vip in plan.add {
            match self.net.add_host_address(lo.index, vip).await {
                Ok(()) => info!(%vip, "BGP: VIP put on lo (announced)"),
                Err(e) => warn!(%vip, "BGP: cannot add the VIP to lo: {e}"),
            }
        }
        for vip in plan.remove {
            match self.net.del_address(lo.index, vip).await {
                Ok(()) => warn!(%vip, "BGP: VIP removed from lo (withdrawn)"),
                Err(e) => warn!(%vip, "BGP: cannot remove the VIP from lo: {e}"),
            }
        }
    }

    async fn reload(&mut self) -> Result<String, ReloadError> {
        systemd::notify("RELOADING=1");
        let result = self.reload_inner().await;
        match &result {
            Ok(_) => info!(file = %self.config_path.display(), "configuration reloaded"),
            Err(e) => {
                let what = if e.is_partial() {
                    "reload partly applied"
                } else {
                    "reload rejected"
                };
                e.lines().iter().for_each(|l| error!("{what}: {l}"));
            }
        }
        systemd::notify("READY=1");
        self.config_load = ConfigLoad {
            successful: result.is_ok(),
            at_unix: unix_now(),
        };
        result
    }

    async fn reload_inner(&mut self) -> Result<String, ReloadError> {
        let (cfg, warnings) =
            config::load_checked(&self.config_path).map_err(ReloadError::Rejected)?;
        warnings.iter().for_each(|w| warn!("{w}"));
        if cfg.global.conn_table_size != self.cfg.global.conn_table_size {
            warn!("conn_table_size changed: takes effect after `xlb stop --detach` and a new `xlb run`");
        }
        if cfg.global.bpffs_dir != self.cfg.global.bpffs_dir {
            warn!("bpffs_dir changed: takes effect after a restart");
        }
        self.cfg = cfg;
        self.timeouts = Timeouts::from(&self.cfg.timeouts);
        self.checker.reload(health::targets(&self.cfg));
        self.seen.health = self.checker.state_inputs();
        let mut vrrp_result = Ok(());
        if let Some(vrrp) = &mut self.vrrp {
            vrrp_result = vrrp.reload(&self.cfg).await;
            self.seen.master_vips = vrrp.master_vips();
        }
        let attached = self.attach().await;
        self.resolve_neighbours(true).await;
        self.reconcile().await;
        let synced = crate::sync::task::reload(&mut self.sync, &self.cfg, &mut self.writer);
        attached.map_err(|e| ReloadError::Apply(e.to_string()))?;
        synced.map_err(|e| ReloadError::Apply(format!("sync: {e}")))?;
        vrrp_result.map_err(|e| ReloadError::Apply(format!("VRRP: {e}")))?;
        Ok(format!("reloaded {}", self.config_path.display()))
    }

    /// The periodic work: neighbours, sweep, rates, previous rings, a planning round.
    async fn tick(&mut self) {
        self.resolve_neighbours(false).await;
        attach::refresh_modes(&self.net, &mut self.attached).await;
        let started = Instant::now();
        match sweep::sweep(self.writer.maps_mut(), &self.timeouts) {
            Ok(mut r) => {
                // Own flows that expired here: their synced copies go on the peers.
                let expired = std::mem::take(&mut r.expired_own);
                if let Some(s) = &self.sync {
                    s.expired(expired);
                }
                self.sweep = r;
            }
            Err(e) => warn!("connection-table sweep: {e}"),
        }
        self.sweep_duration = started.elapsed();
        let sample = self.traffic_sample();
        self.rates.update(sample.clone());
        if let Err(e) = self.writer.expire_previous_rings(Instant::now()) {
            warn!("expiring previous rings: {e}");
        }
        self.reconcile().await;
        let report = self.status_report(&self.sweep, &sample);
        self.snapshots.send_replace(Arc::new(report));
    }

    async fn run(mut self) -> Result<ExitCode, Error> {
        let socket_path = self.cfg.global.control_socket.clone();
        let (calls, mut call_rx) = mpsc::channel::<Call>(16);
        let listener = control::bind(&socket_path)?;
        if let Some(addr) = self.cfg.global.metrics_listen {
            tokio::spawn(crate::metrics::serve(addr, self.snapshots.subscribe()));
        }
        tokio::spawn(control::serve(listener, calls));
        let sig = |kind| signal(kind).map_err(Error::Signal);
        let (mut hup, mut term, mut int) = (
            sig(SignalKind::hangup())?,
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
        );
        // keepalived's SIGUSR1 / SIGUSR2: a data / stats dump to a file, never the default
        // action (which would end the daemon without a VRRP resign).
        let (mut usr1, mut usr2) = (
            sig(SignalKind::user_defined1())?,
            sig(SignalKind::user_defined2())?,
        );
        // The watchdog is fed from this loop: a hung loop means frozen health, and systemd
        // restarts the daemon (forwarding continues from the pinned state meanwhile).
        let watchdog = systemd::watchdog_interval();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        let interval = Duration::from_secs_f64(self.cfg.global.sweep_interval);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        systemd::notify("READY=1");
        info!(socket = %socket_path.display(), "xlb is running");
        let mut how = if self.release_on_exit {
            Exit::Detach
        } else {
            Exit::Resign
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = self.reload().await; }
                // Each transition is logged once, by the VRRP instance / the health checker.
                Some(VrrpEvent::RoleChanged { applied, .. }) = self.vrrp_rx.recv() => {
                    if let Some(vrrp) = &self.vrrp {
                        self.seen.master_vips = vrrp.master_vips();
                    }
                    self.reconcile().await;
                    // The tables forward the new MASTER's VIPs: it may take them now.
                    if let Some(applied) = applied {
                        let _ = applied.send(());
                    }
                }
                Some(HealthEvent::Changed { .. }) = self.health_rx.recv() => {
                    self.seen.health = self.checker.state_inputs();
                    self.reconcile().await;
                }
                _ = term.recv() => { info!("SIGTERM"); break; }
                _ = int.recv() => { info!("SIGINT"); break; }
                Some((req, reply)) = call_rx.recv() => {
                    if let Request::Stop { detach, keep_role } = req {
                        if !self.release_on_exit {
                            how = Exit::asked(detach, keep_role);
                        }
                        let _ = reply.send(Response::Stopping { pid: std::process::id() });
                        break;
                    }
                    if let Some(resp) = self.answer(req).await {
                        let _ = reply.send(resp);
                    }
                }
                _ = tick.tick() => self.tick().await,
                Some(batch) = crate::sync::task::next_batch(&mut self.sync) => {
                    if let Some(s) = &self.sync {
                        s.apply(&batch, &mut self.writer);
                    }
                    let views = crate::sync::task::SyncLink::health_records(&batch);
                    if !views.is_empty() {
                        self.agreement.record_peer(&self.cfg, batch.sender.unwrap_or(0), &views, Instant::now());
                        if self.refresh_health() {
                            self.reconcile().await;
                        }
                    }
                }
                _ = watchdog_tick.tick(), if watchdog.is_some() => systemd::notify("WATCHDOG=1"),
                _ = usr1.recv() => self.dump(query::Dump::Data),
                _ = usr2.recv() => self.dump(query::Dump::Stats),
            }
        }
        self.shutdown(&socket_path, how).await;
        Ok(ExitCode::SUCCESS)
    }

    async fn shutdown(mut self, socket_path: &std::path::Path, how: Exit) {
        systemd::notify("STOPPING=1");
        let _ = std::fs::remove_file(socket_path);
        if how == Exit::KeepRole {
            // Like a crash, on purpose: VRRP is not resigned and the VIPs stay, so the next
            // daemon (a restart) adopts the tables and goes on advertising as MASTER before
            // the BACKUP's Master_Down_Interval runs out: no failover and no preemption back.
            info!("exiting for a restart; the VRRP role, the VIPs and forwarding are kept");
            return;
        }
        if let Some(vrrp) = self.vrrp.take() {
            // Priority 0 and VIPs removed: the backup takes over at once, and no dead master
            // keeps the VIP (the IP conflict the LVS field report warns about).
            vrrp.shutdown().await;
        }
        if how != Exit::Detach {
            info!("exiting; the XDP program and its maps stay pinned and keep forwarding");
            return;
        }
        // Nothing will forward here any more: stop attracting traffic first.
        if let Ok(lo) = self.net.interface("lo").await {
            for vip in self.controller.withdraw_all() {
                let _ = self.net.del_address(lo.index, vip).await;
            }
        }
        let pin_dir = attach::pin_dir(&self.cfg);
        attach::detach_all(&pin_dir, &self.attached);
        drop(self);
        if let Err(e) = loader::remove_pins(&pin_dir) {
            warn!("removing {}: {e}", pin_dir.display());
        }
        info!("detached and released all pinned state");
    }
}

/// How the daemon leaves (SIGTERM: resign, or detach with `--release-on-exit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    /// A restart follows: keep the VRRP role, the VIPs and forwarding.
    KeepRole,
    /// Resign VRRP (priority 0, VIPs removed); forwarding continues from the pinned state.
    Resign,
    /// Resign, withdraw, detach the program and remove every pin.
    Detach,
}

impl Exit {
    fn asked(detach: bool, keep_role: bool) -> Exit {
        match (detach, keep_role) {
            (true, _) => Exit::Detach,
            (false, true) => Exit::KeepRole,
            (false, false) => Exit::Resign,
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Pinned maps an xlb with another layout left (an upgrade) cannot be adopted: their pins are
/// removed so this run creates them anew (the old program keeps its copies until the link
/// switches to the new one). The connection table: Maglev flows keep their real servers (the
/// rings decide), round-robin flows are dispatched afresh; counters start again at zero.
fn replace_incompatible_pins(pin_dir: &std::path::Path) {
    for old in loader::incompatible_pins(crate::BPF_OBJECT, pin_dir) {
        warn!(
            map = old.name,
            pinned = ?old.pinned,
            wanted = ?old.wanted,
            "a pinned map has another layout (left by another xlb version): replacing it"
        );
        let path = pin_dir.join(old.name);
        if let Err(e) = std::fs::remove_file(&path) {
            warn!("removing {}: {e}", path.display());
        }
    }
}

/// The overlay saved by an earlier run. An unreadable file is reported and left as it is (the
/// next change rewrites it); the daemon starts without overrides rather than not at all.
fn load_overlay(cfg: &Config) -> Overlay {
    match Overlay::load(&cfg.global.state_dir) {
        Ok(o) => {
            if !o.is_empty() {
                info!(overrides = o.list(cfg).len(), "operator overrides restored");
            }
            o
        }
        Err(e) => {
            error!("{e}; starting without operator overrides");
            Overlay::default()
        }
    }
}

/// Addresses whose MAC the daemon must learn: real and sorry servers without a configured MAC.
fn macs_to_learn(cfg: &Config) -> Vec<IpAddr> {
    cfg.virtual_servers
        .iter()
        .flat_map(|vs| {
            let reals = vs
                .real_servers
                .iter()
                .filter(|r| r.mac.is_none())
                .map(|r| r.address);
            let sorry = vs
                .sorry_server
                .iter()
                .filter(|_| vs.sorry_server_mac.is_none())
                .copied();
            reals.chain(sorry).collect::<Vec<_>>()
        })
        .collect()
}
