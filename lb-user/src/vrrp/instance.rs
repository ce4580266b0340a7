//! One instance's task: the IO shell around [`Machine`]: socket, timers, tracked interfaces and
//! services, VIPs, GARP, notify, sync group propagation.

use super::VrrpError;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::addr;
use super::io::{Received, VrrpSocket};
use super::machine::{Action, Machine, Params};
use super::packet::{auth_field, Advert, RxError, AUTH_LEN};
use super::track::{self, TrackStates, Tracked};
use super::{InstanceStatus, VrrpEvent, VrrpRole};
use crate::config::{IpPrefix, VrrpInstance, VrrpState};
use crate::logging::RateLimit;

/// Commands from [`super::Vrrp`] (and sync group peers) to a task.
pub(super) enum Cmd {
    Health(BTreeMap<String, bool>),
    /// Sync group: another member moved to this role.
    Follow(VrrpRole, String),
    /// Resign (priority 0), remove the VIPs, end.
    Shutdown(oneshot::Sender<()>),
}

/// Sync groups: the other members of each instance's group and every task's command sender.
#[derive(Default)]
pub(super) struct SyncState {
    pub peers: BTreeMap<String, Vec<String>>,
    pub senders: BTreeMap<String, mpsc::UnboundedSender<Cmd>>,
}

/// State shared by every task of a [`super::Vrrp`].
#[derive(Clone)]
pub(super) struct Shared {
    pub sync: Arc<Mutex<SyncState>>,
    /// `(interface, vrid)` of every configured instance: adverts for other VRIDs are counted.
    pub vrids: Arc<RwLock<BTreeSet<(String, u8)>>>,
    pub events: mpsc::UnboundedSender<VrrpEvent>,
    /// Role changes as logged (status page).
    pub recent: Arc<Mutex<crate::status::RecentTransitions>>,
}

/// An instance's tracked objects and where their status is published.
pub(super) struct Tracking {
    pub tracked: Vec<Tracked>,
    pub states: watch::Receiver<TrackStates>,
}

pub(super) struct Instance {
    cfg: VrrpInstance,
    name: String,
    machine: Machine,
    sock: VrrpSocket,
    net: crate::net::Net,
    ifindex: u32,
    mac: [u8; 6],
    vips: Vec<IpPrefix>,
    /// `virtual_ipaddress_excluded`: held with the role, not advertised.
    excluded: Vec<IpPrefix>,
    auth: Option<[u8; AUTH_LEN]>,
    interval_cs: u16,
    status: Arc<Mutex<InstanceStatus>>,
    shared: Shared,
    garp: Option<JoinHandle<()>>,
    /// Own fault causes.
    link_fault: Option<String>,
    service_fault: Option<String>,
    /// Priority change from `track_service_weight`.
    service_delta: i32,
    sync_fault: Option<String>,
    tracking: Tracking,
    /// What the tracked objects do now.
    track: track::Evaluation,
    health: BTreeMap<String, bool>,
    /// Start as MASTER: the previous daemon was MASTER and its forwarding was adopted.
    resume: bool,
    /// The `notify_stop` / `notify ... STOP` programs running.
    stop_notifies: Vec<JoinHandle<()>>,
    /// One WARN line per reason per [`BAD_ADVERT_LOG_EVERY`]: a peer sends one advert a second.
    bad_advert_log: BTreeMap<RxError, RateLimit>,
}

/// How long a stopping instance waits for its STOP notifications (within the 5 s the engine
/// gives an instance to stop).
const STOP_NOTIFY_WAIT: Duration = Duration::from_secs(3);

/// At most one log line per reason of bad adverts per this time.
const BAD_ADVERT_LOG_EVERY: Duration = Duration::from_secs(30);

fn secs(f: f64) -> Duration {
    Duration::from_secs_f64(f.max(0.0))
}

impl Instance {
    /// Whether the instance carries on as MASTER (see [`Machine::resume_master`]).
    pub fn resumes(&self) -> bool {
        self.resume
    }

    /// Resolves the interface and source address, removes stale VIPs, opens the socket.
    pub async fn setup(
        cfg: &VrrpInstance,
        shared: Shared,
        status: Arc<Mutex<InstanceStatus>>,
        health: BTreeMap<String, bool>,
        tracking: Tracking,
        resume: bool,
    ) -> Result<Instance, VrrpError> {
        let name = cfg.name.clone();
        let ifname = cfg.interface.clone();
        let net_err = |source| VrrpError::Net {
            instance: name.clone(),
            source,
        };
        let net = crate::net::Net::connect().map_err(net_err)?;
        let link =
            net.link(&ifname)
                .await
                .map_err(net_err)?
                .ok_or_else(|| VrrpError::NoInterface {
                    instance: name.clone(),
                    interface: ifname.clone(),
                })?;
        let vips: Vec<IpPrefix> = cfg.virtual_ipaddress.clone();
        let vip_addrs: Vec<IpAddr> = vips.iter().map(|p| p.addr).collect();
        // The VIPs are still here when the previous daemon died as MASTER (a clean stop removes
        // them). With its forwarding adopted, carry on as MASTER; otherwise they are left over by
        // a crashed predecessor and we start as backup, so they must go.
        let present = net.addresses(link.index).await.map_err(net_err)?;
        let holds_vips = !vip_addrs.is_empty()
            && vip_addrs
                .iter()
                .all(|v| present.iter().any(|(a, _)| a == v));
        let resume = resume && holds_vips;
        if !resume {
            let excluded = cfg.virtual_ipaddress_excluded.iter().map(|p| p.addr);
            for v in vip_addrs.iter().copied().chain(excluded) {
                net.del_address(link.index, v).await.map_err(net_err)?;
            }
        }
        let v6 = match vip_addrs.first() {
            Some(a) => a.is_ipv6(),
            None => cfg.unicast_src_ip.as_ref().is_some_and(|a| a.is_ipv6()),
        };
        let version = cfg.version;
        if v6 && version != 3 {
            return Err(VrrpError::V6NeedsV3(name));
        }
        let src = match &cfg.unicast_src_ip {
            Some(a) => *a,
            None => net
                .primary_address(link.index, v6, &vip_addrs)
                .await
                .map_err(net_err)?,
        };
        let peers: Vec<IpAddr> = cfg.unicast_peer.clone();
        let sock = VrrpSocket::open(&ifname, link.index, src, &peers).map_err(|source| {
            VrrpError::Socket {
                instance: name.clone(),
                source,
            }
        })?;
        let advert_int = cfg.advert_int;
        let machine = Machine::new(Params {
            name: name.clone(),
            version,
            priority: cfg.priority,
            advert_int: secs(advert_int),
            preempt: !cfg.nopreempt,
            preempt_delay: secs(cfg.preempt_delay),
            primary_ip: src,
            want_master: cfg.state == VrrpState::Master,
        });
        let auth = cfg
            .authentication
            .as_ref()
            .map(|a| auth_field(&a.auth_pass));
        let mut inst = Instance {
            cfg: cfg.clone(),
            name,
            machine,
            sock,
            net,
            ifindex: link.index,
            mac: link.mac,
            vips,
            excluded: cfg.virtual_ipaddress_excluded.clone(),
            auth,
            interval_cs: (advert_int * 100.0).round() as u16,
            status,
            shared,
            garp: None,
            link_fault: None,
            service_fault: None,
            service_delta: 0,
            sync_fault: None,
            tracking,
            track: track::Evaluation::default(),
            health: BTreeMap::new(),
            resume,
            stop_notifies: Vec::new(),
            bad_advert_log: BTreeMap::new(),
        };
        inst.check_links().await;
        let now = Instant::now();
        inst.apply_health(health);
        inst.apply_track();
        inst.machine.set_effective_priority(now, inst.priority());
        let fault = inst.own_fault();
        inst.machine.set_fault(now, fault);
        Ok(inst)
    }

    fn own_fault(&self) -> Option<String> {
        self.link_fault
            .clone()
            .or_else(|| self.service_fault.clone())
            .or_else(|| self.track.fault.clone())
    }

    /// The priority to run at: `track_service_weight` and the tracked objects' weights on the
    /// configured one (keepalived's rules, [`track::effective_priority`]).
    fn priority(&self) -> u8 {
        let base = self.cfg.priority;
        if self.service_delta == 0 {
            return track::effective_priority(base, self.track.delta);
        }
        let track = if base == 255 { 0 } else { self.track.delta };
        (i32::from(base) + self.service_delta + track).clamp(1, 254) as u8
    }

    /// Reads the tracked objects' current status; says so when the priority or fault changes.
    fn apply_track(&mut self) {
        let states = self.tracking.states.borrow_and_update().clone();
        let e = track::evaluate(&self.tracking.tracked, &states);
        if e.delta != self.track.delta && self.cfg.priority != 255 {
            tracing::info!(
                instance = %self.name,
                "({}) tracked objects change the priority by {} (was {})",
                self.name, e.delta, self.track.delta
            );
        }
        self.track = e;
    }

    /// Tracked interfaces: FAULT while one is down or missing.
    async fn check_links(&mut self) {
        let mut down = Vec::new();
        for i in &self.cfg.track_interface {
            match self.net.link(i).await {
                Ok(Some(l)) if l.up => {}
                Ok(_) => down.push(i.clone()),
                Err(e) => tracing::warn!(instance = %self.name, "tracking {}: {e:#}", i),
            }
        }
        self.link_fault =
            (!down.is_empty()).then(|| format!("tracked interface {} down", down.join(", ")));
    }

    /// Tracked services: sets the service fault (no weight) or the priority change
    /// (`track_service_weight` while one is below quorum).
    fn apply_health(&mut self, health: BTreeMap<String, bool>) {
        self.health = health;
        let bad: Vec<&str> = self
            .cfg
            .track_service
            .iter()
            .map(|s| s.as_str())
            .filter(|s| self.health.get(*s) == Some(&false))
            .collect();
        self.service_fault = None;
        self.service_delta = 0;
        match self.cfg.track_service_weight {
            Some(w) if !bad.is_empty() => self.service_delta = w,
            Some(_) => {}
            None => {
                self.service_fault = (!bad.is_empty())
                    .then(|| format!("tracked service {} below quorum", bad.join(", ")));
            }
        }
    }

    /// Re-evaluates the fault after a change of a cause.
    fn refresh_fault(&mut self, now: Instant) -> Vec<Action> {
        let f = self.own_fault().or_else(|| self.sync_fault.clone());
        self.machine.set_fault(now, f)
    }

    /// Counts a dropped advert by reason and says so at WARN (rate-limited per reason) with its
    /// sender: a password or VRID mismatch with the peer is otherwise a silent split brain.
    fn count_bad(&mut self, e: RxError, from: IpAddr, detail: String) {
        {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            *st.bad_adverts.entry(e.as_str().to_string()).or_default() += 1;
            st.last_bad_advert = Some(crate::status::BadAdvert {
                from,
                reason: e.as_str().to_string(),
                at_unix: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            });
        }
        let limit = self
            .bad_advert_log
            .entry(e)
            .or_insert_with(|| RateLimit::new(BAD_ADVERT_LOG_EVERY));
        let Some(held_back) = limit.allow(Instant::now()) else {
            return;
        };
        let more = if held_back > 0 {
            format!(" ({held_back} more dropped for this reason since the last line)")
        } else {
            String::new()
        };
        tracing::warn!(
            instance = %self.name, peer = %from, reason = e.as_str(),
            "({}) bad VRRP advert from {from} dropped: {e}{detail}: {}{more}",
            self.name, e.hint()
        );
    }

    /// Validates a received datagram; `Some((src, priority, interval))` for a good advert.
    fn validate(&mut self, rx: &Received) -> Option<(IpAddr, u8, Duration)> {
        if rx.src == self.sock.src() {
            return None;
        }
        let adv = match rx.advert() {
            Ok(a) => a,
            Err(e) => {
                let detail = match e {
                    RxError::Version => format!(" (ours is {})", self.cfg.version),
                    _ => String::new(),
                };
                self.count_bad(e, rx.src, detail);
                return None;
            }
        };
        if adv.vrid != self.cfg.virtual_router_id {
            let ours = self
                .shared
                .vrids
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&(self.cfg.interface.clone(), adv.vrid));
            if !ours {
                let detail = format!(
                    " (VRID {}, ours {} on {})",
                    adv.vrid, self.cfg.virtual_router_id, self.cfg.interface
                );
                self.count_bad(RxError::Vrid, rx.src, detail);
            }
            return None;
        }
        if let Err(e) = adv.check_for(self.cfg.version, self.auth.as_ref(), self.interval_cs) {
            let detail = match e {
                RxError::Interval => format!(
                    " (its interval {} cs, ours {} cs)",
                    adv.interval_cs, self.interval_cs
                ),
                RxError::Version => {
                    format!(" (version {}, ours {})", adv.version, self.cfg.version)
                }
                _ => String::new(),
            };
            self.count_bad(e, rx.src, detail);
            return None;
        }
        if adv.version == 3 && adv.interval_cs != self.interval_cs {
            tracing::info!(
                instance = %self.name, peer = %rx.src,
                "VRRPv3 advert interval {} cs differs from ours ({} cs)",
                adv.interval_cs, self.interval_cs
            );
        }
        let mut mine: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let mut theirs = adv.addrs.clone();
        mine.sort();
        theirs.sort();
        if mine != theirs {
            tracing::debug!(instance = %self.name, peer = %rx.src, "advert lists other addresses");
        }
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .adverts_rx += 1;
        Some((rx.src, adv.priority, adv.interval()))
    }

    fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.cfg.version,
            vrid: self.cfg.virtual_router_id,
            priority,
            interval_cs: self.interval_cs,
            auth: self.auth,
            addrs: self.vips.iter().map(|v| v.addr).collect(),
        }
    }

    async fn add_vips(&mut self) {
        for v in self.vips.iter().chain(&self.excluded) {
            if let Err(e) = self
                .net
                .add_address(self.ifindex, *v, crate::net::Dad::Skip)
                .await
            {
                tracing::error!(instance = %self.name, "{e:#}");
            }
        }
        if let Some(g) = self.garp.take() {
            g.abort();
        }
        let plan = GarpPlan {
            ifindex: self.ifindex,
            mac: self.mac,
            vips: self
                .vips
                .iter()
                .chain(&self.excluded)
                .map(|v| v.addr)
                .collect(),
            repeat: self.cfg.garp_master_repeat,
            delay: secs(self.cfg.garp_master_delay),
            interval: secs(self.cfg.garp_interval),
            refresh: self.cfg.garp_master_refresh.map(secs),
            refresh_repeat: self.cfg.garp_master_refresh_repeat,
            instance: self.name.clone(),
        };
        self.garp = Some(tokio::spawn(plan.run()));
    }

    async fn del_vips(&mut self) {
        if let Some(g) = self.garp.take() {
            g.abort();
        }
        for v in self.vips.iter().chain(&self.excluded) {
            if let Err(e) = self.net.del_address(self.ifindex, v.addr).await {
                tracing::error!(instance = %self.name, "{e:#}");
            }
        }
    }

    /// Carries out the machine's actions; `propagate`: tell the sync group about transitions.
    async fn apply(&mut self, actions: Vec<Action>, propagate: bool) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    let adv = self.advert(priority);
                    match self.sock.send(&adv).await {
                        Ok(()) => {
                            self.status
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .adverts_tx += 1
                        }
                        Err(e) => tracing::warn!(instance = %self.name, "sending advert: {e}"),
                    }
                }
                Action::Transition { role, reason } => {
                    self.on_transition(role, reason, propagate).await
                }
            }
        }
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.effective_priority = self.machine.effective_priority();
        st.last_master = self.machine.last_master;
    }

    /// The one line of a role change, with keepalived's `(VI_1) Entering MASTER STATE` in it.
    fn log_transition(&self, role: VrrpRole, reason: &str) {
        let prio = self.machine.effective_priority();
        let peer = self
            .machine
            .last_master
            .map(|p| format!(", last master heard {p}"))
            .unwrap_or_default();
        let line = format!(
            "({}) Entering {role} STATE ({reason}; priority {prio}{peer})",
            self.name
        );
        let role_name = role.to_string();
        if role == VrrpRole::Fault {
            tracing::warn!(instance = %self.name, role = %role_name, %reason, "{line}");
        } else {
            tracing::info!(instance = %self.name, role = %role_name, %reason, "{line}");
        }
        self.shared
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push("vrrp", self.name.clone(), role_name, reason.to_string());
    }

    async fn on_transition(&mut self, role: VrrpRole, reason: String, propagate: bool) {
        self.log_transition(role, &reason);
        if role == VrrpRole::Master {
            // Tables first: the daemon makes the services active, then the VIPs arrive and
            // the gratuitous ARPs draw the traffic. The other way round, the first packets
            // reach a kernel that holds the VIP with no service behind it, and it resets them.
            self.record_role(role);
            let (applied, done) = oneshot::channel();
            self.tell_daemon(role, &reason, Some(applied));
            let _ = tokio::time::timeout(super::TABLES_WAIT, done).await;
            self.add_vips().await;
        } else {
            self.del_vips().await;
            self.record_role(role);
            self.tell_daemon(role, &reason, None);
        }
        self.notify(role);
        if propagate && role != VrrpRole::Init {
            let sync = self.shared.sync.lock().unwrap_or_else(|e| e.into_inner());
            for peer in sync.peers.get(&self.name).into_iter().flatten() {
                if let Some(tx) = sync.senders.get(peer) {
                    let _ = tx.send(Cmd::Follow(
                        role,
                        format!("sync group: {} is {role}", self.name),
                    ));
                }
            }
        }
    }

    /// keepalived's order: the state's own program, then the generic `notify`, both with
    /// `INSTANCE name STATE priority` (`STOP` when the instance stops: [`Instance::stop`] waits
    /// for those).
    fn notify(&mut self, role: VrrpRole) {
        let (own, state) = match role {
            VrrpRole::Master => (self.cfg.notify_master.as_ref(), "MASTER"),
            VrrpRole::Backup => (self.cfg.notify_backup.as_ref(), "BACKUP"),
            VrrpRole::Fault => (self.cfg.notify_fault.as_ref(), "FAULT"),
            VrrpRole::Init => (self.cfg.notify_stop.as_ref(), "STOP"),
        };
        let prio = self.machine.effective_priority();
        let running: Vec<JoinHandle<()>> = own
            .into_iter()
            .chain(self.cfg.notify.as_ref())
            .filter_map(|argv| super::notify::spawn(argv, &self.name, state, prio))
            .collect();
        if role == VrrpRole::Init {
            self.stop_notifies = running;
        }
    }

    fn record_role(&self, role: VrrpRole) {
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.role = role;
        st.since = SystemTime::now();
        st.transitions += 1;
        if role == VrrpRole::Master {
            st.became_master += 1;
        }
    }

    fn tell_daemon(&self, role: VrrpRole, reason: &str, applied: Option<oneshot::Sender<()>>) {
        let _ = self.shared.events.send(VrrpEvent::RoleChanged {
            instance: self.name.clone(),
            role,
            reason: reason.to_string(),
            applied,
        });
    }

    async fn follow(&mut self, role: VrrpRole, reason: String) {
        let now = Instant::now();
        let actions = match role {
            VrrpRole::Fault => {
                self.sync_fault = Some(reason);
                self.refresh_fault(now)
            }
            VrrpRole::Backup => {
                self.sync_fault = None;
                let mut a = self.refresh_fault(now);
                a.extend(self.machine.follow(now, role, reason));
                a
            }
            _ => self.machine.follow(now, role, reason),
        };
        self.apply(actions, false).await;
    }

    async fn stop(&mut self) {
        let actions = self.machine.stop();
        self.apply(actions, false).await;
        self.del_vips().await;
        // The STOP notifications finish before the daemon exits (and its runtime with them).
        let notifies = futures::future::join_all(std::mem::take(&mut self.stop_notifies));
        if tokio::time::timeout(STOP_NOTIFY_WAIT, notifies)
            .await
            .is_err()
        {
            tracing::warn!(instance = %self.name, "notify_stop still running after {STOP_NOTIFY_WAIT:?}: left behind");
        }
    }

    /// keepalived keeps an instance in INIT while a weight-0 script it tracks has no result:
    /// wait for it (or a shutdown). `false`: shut down meanwhile.
    async fn wait_for_scripts(&mut self, cmds: &mut mpsc::UnboundedReceiver<Cmd>) -> bool {
        while let Some(why) = self.track.wait.clone() {
            tracing::info!(instance = %self.name, "({}) staying in INIT: {why}", self.name);
            tokio::select! {
                r = self.tracking.states.changed() => {
                    if r.is_err() {
                        return true;
                    }
                    self.apply_track();
                }
                c = cmds.recv() => match c {
                    Some(Cmd::Shutdown(done)) => {
                        let _ = done.send(());
                        return false;
                    }
                    None => return false,
                    Some(Cmd::Health(h)) => self.apply_health(h),
                    Some(Cmd::Follow(..)) => {}
                },
            }
        }
        let now = Instant::now();
        self.machine.set_effective_priority(now, self.priority());
        let fault = self.own_fault();
        self.machine.set_fault(now, fault);
        true
    }

    /// The tracked objects changed: new priority, maybe FAULT. A weight-0 script back in INIT
    /// (the trackers restarted by a reload) changes nothing until its first result, as
    /// keepalived's `SCRIPT_INIT_STATE_INIT_RELOAD`.
    async fn on_track_change(&mut self) {
        self.apply_track();
        self.track.wait = None;
        let now = Instant::now();
        let mut a = self.machine.set_effective_priority(now, self.priority());
        a.extend(self.refresh_fault(now));
        self.apply(a, true).await;
    }

    /// The task body.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        if !self.resume && !self.wait_for_scripts(&mut cmds).await {
            return;
        }
        let actions = if self.resume {
            self.machine.resume_master(Instant::now())
        } else {
            self.machine.start(Instant::now())
        };
        self.apply(actions, true).await;
        let mut link_tick = tokio::time::interval(Duration::from_millis(500));
        link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let track_links = !self.cfg.track_interface.is_empty();
        let mut track_open = !self.tracking.tracked.is_empty();
        loop {
            let deadline = self.machine.deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.sock.recv() => match r {
                    Ok(rx) => {
                        if let Some((src, prio, int)) = self.validate(&rx) {
                            let a = self.machine.on_advert(Instant::now(), src, prio, int);
                            self.apply(a, true).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(instance = %self.name, "receiving adverts: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = sleep => {
                    let a = self.machine.on_timer(Instant::now());
                    self.apply(a, true).await;
                }
                _ = link_tick.tick(), if track_links => {
                    let before = self.link_fault.clone();
                    self.check_links().await;
                    if before != self.link_fault {
                        let a = self.refresh_fault(Instant::now());
                        self.apply(a, true).await;
                    }
                }
                r = self.tracking.states.changed(), if track_open => match r {
                    Ok(()) => self.on_track_change().await,
                    Err(_) => track_open = false,
                },
                c = cmds.recv() => match c {
                    Some(Cmd::Health(h)) => {
                        let now = Instant::now();
                        self.apply_health(h);
                        let mut a = self.machine.set_effective_priority(now, self.priority());
                        a.extend(self.refresh_fault(now));
                        self.apply(a, true).await;
                    }
                    Some(Cmd::Follow(role, reason)) => self.follow(role, reason).await,
                    Some(Cmd::Shutdown(done)) => {
                        self.stop().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
            }
        }
    }
}

/// The gratuitous ARPs/NAs of a new MASTER (keepalived): `repeat` now and again after `delay`,
/// then `refresh_repeat` every `refresh`; `interval` between two packets.
struct GarpPlan {
    ifindex: u32,
    mac: [u8; 6],
    vips: Vec<IpAddr>,
    repeat: u32,
    delay: Duration,
    interval: Duration,
    refresh: Option<Duration>,
    refresh_repeat: u32,
    instance: String,
}

impl GarpPlan {
    async fn burst(&self, repeat: u32) {
        let r = if self.interval.is_zero() {
            addr::announce(self.ifindex, self.mac, &self.vips, repeat)
        } else {
            let mut r = Ok(());
            for k in 0..repeat {
                for (i, vip) in self.vips.iter().enumerate() {
                    if k > 0 || i > 0 {
                        tokio::time::sleep(self.interval).await;
                    }
                    r = r.and(addr::announce(self.ifindex, self.mac, &[*vip], 1));
                }
            }
            r
        };
        if let Err(e) = r {
            tracing::warn!(instance = %self.instance, "gratuitous ARP/NA: {e}");
        }
    }

    async fn run(self) {
        let start = tokio::time::Instant::now();
        self.burst(self.repeat).await;
        if !self.delay.is_zero() {
            tokio::time::sleep_until(start + self.delay).await;
            self.burst(self.repeat).await;
        }
        let Some(every) = self.refresh.filter(|r| !r.is_zero()) else {
            return;
        };
        let mut tick = tokio::time::interval_at(start + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.burst(self.refresh_repeat).await;
        }
    }
}
