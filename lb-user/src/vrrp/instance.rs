//! One instance's task: the IO shell around [`Machine`]: socket, timers, tracked interfaces and
//! services, VIPs, GARP, notify, sync group propagation.

use super::VrrpError;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::addr;
use super::io::{Received, VrrpSocket};
use super::machine::{Action, Machine, Params};
use super::packet::{auth_field, Advert, RxError, AUTH_LEN};
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

pub(super) struct Instance {
    cfg: VrrpInstance,
    name: String,
    machine: Machine,
    sock: VrrpSocket,
    net: crate::net::Net,
    ifindex: u32,
    mac: [u8; 6],
    vips: Vec<IpPrefix>,
    auth: Option<[u8; AUTH_LEN]>,
    interval_cs: u16,
    status: Arc<Mutex<InstanceStatus>>,
    shared: Shared,
    garp: Option<JoinHandle<()>>,
    /// Own fault causes.
    link_fault: Option<String>,
    service_fault: Option<String>,
    sync_fault: Option<String>,
    health: BTreeMap<String, bool>,
    /// Start as MASTER: the previous daemon was MASTER and its forwarding was adopted.
    resume: bool,
    /// One WARN line per reason per [`BAD_ADVERT_LOG_EVERY`]: a peer sends one advert a second.
    bad_advert_log: BTreeMap<RxError, RateLimit>,
}

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
            for v in &vip_addrs {
                net.del_address(link.index, *v).await.map_err(net_err)?;
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
            auth,
            interval_cs: (advert_int * 100.0).round() as u16,
            status,
            shared,
            garp: None,
            link_fault: None,
            service_fault: None,
            sync_fault: None,
            health: BTreeMap::new(),
            resume,
            bad_advert_log: BTreeMap::new(),
        };
        inst.check_links().await;
        let now = Instant::now();
        let eff = inst.apply_health(health);
        inst.machine.set_effective_priority(now, eff);
        let fault = inst.own_fault();
        inst.machine.set_fault(now, fault);
        Ok(inst)
    }

    fn own_fault(&self) -> Option<String> {
        self.link_fault
            .clone()
            .or_else(|| self.service_fault.clone())
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

    /// Tracked services: sets the service fault (no weight) and returns the priority to run at
    /// (lowered by `track_service_weight` while one is below quorum).
    fn apply_health(&mut self, health: BTreeMap<String, bool>) -> u8 {
        self.health = health;
        let bad: Vec<&str> = self
            .cfg
            .track_service
            .iter()
            .map(|s| s.as_str())
            .filter(|s| self.health.get(*s) == Some(&false))
            .collect();
        let base = self.cfg.priority;
        self.service_fault = None;
        match &self.cfg.track_service_weight {
            Some(w) if !bad.is_empty() => (i32::from(base) + w).clamp(1, 254) as u8,
            Some(_) => base,
            None => {
                self.service_fault = (!bad.is_empty())
                    .then(|| format!("tracked service {} below quorum", bad.join(", ")));
                base
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
        for v in &self.vips {
            if let Err(e) = self
                .net
                .add_address(self.ifindex, *v, crate::net::Dad::Skip)
                .await
            {
                tracing::error!(instance = %self.name, "{e:#}");
            }
        }
        // keepalived: garp_master_repeat now, and again after garp_master_delay.
        let (ifindex, mac) = (self.ifindex, self.mac);
        let vips: Vec<IpAddr> = self.vips.iter().map(|v| v.addr).collect();
        let repeat = self.cfg.garp_master_repeat;
        let delay = secs(self.cfg.garp_master_delay);
        let name = self.name.clone();
        if let Some(g) = self.garp.take() {
            g.abort();
        }
        if let Err(e) = addr::announce(ifindex, mac, &vips, repeat) {
            tracing::warn!(instance = %name, "gratuitous ARP/NA: {e}");
        }
        if !delay.is_zero() {
            self.garp = Some(tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Err(e) = addr::announce(ifindex, mac, &vips, repeat) {
                    tracing::warn!(instance = %name, "gratuitous ARP/NA: {e}");
                }
            }));
        }
    }

    async fn del_vips(&mut self) {
        if let Some(g) = self.garp.take() {
            g.abort();
        }
        for v in &self.vips {
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
            self.add_vips().await;
        } else {
            self.del_vips().await;
        }
        {
            let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
            st.role = role;
            st.since = SystemTime::now();
            st.transitions += 1;
            if role == VrrpRole::Master {
                st.became_master += 1;
            }
        }
        let notify = match role {
            VrrpRole::Master => self.cfg.notify_master.as_ref(),
            VrrpRole::Backup => self.cfg.notify_backup.as_ref(),
            VrrpRole::Fault => self.cfg.notify_fault.as_ref(),
            VrrpRole::Init => None,
        };
        if let Some(argv) = notify {
            super::notify::spawn(
                argv,
                &self.name,
                &role.to_string(),
                self.machine.effective_priority(),
            );
        }
        let _ = self.shared.events.send(VrrpEvent::RoleChanged {
            instance: self.name.clone(),
            role,
            reason: reason.clone(),
        });
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
    }

    /// The task body.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let actions = if self.resume {
            self.machine.resume_master(Instant::now())
        } else {
            self.machine.start(Instant::now())
        };
        self.apply(actions, true).await;
        let mut link_tick = tokio::time::interval(Duration::from_millis(500));
        link_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let track_links = !self.cfg.track_interface.is_empty();
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
                c = cmds.recv() => match c {
                    Some(Cmd::Health(h)) => {
                        let now = Instant::now();
                        let eff = self.apply_health(h);
                        let mut a = self.machine.set_effective_priority(now, eff);
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
