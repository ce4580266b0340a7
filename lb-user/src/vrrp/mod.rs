//! VRRP (v2 RFC 3768, v3 RFC 5798), interoperable with keepalived: the director pair's failover.
//!
//! - [`packet`]: advert codec and checksums (pure).
//! - [`machine`]: the per-instance state machine (pure, time passed in).
//! - [`io`]: the raw socket (protocol 112, TTL 255, multicast or unicast).
//! - [`addr`]: gratuitous ARP / unsolicited NA for the VIPs (put on the interface by
//!   [`crate::net`]).
//! - [`notify`]: `notify`, `notify_master/backup/fault/stop` programs.
//! - [`track`]: tracked scripts, processes and files (pure); [`tracker`] runs them.
//! - `instance`: the task of one instance, gluing the above.
//!
//! [`Vrrp`] runs one task per `vrrp_instance` on the current tokio runtime, in the network
//! namespace of the thread that calls [`Vrrp::start`].

pub mod addr;
mod instance;
pub mod io;
pub mod machine;
pub mod notify;
pub mod packet;
pub mod track;
pub mod tracker;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, VrrpInstance};
use instance::{Cmd, Instance, Shared, SyncState};

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum VrrpError {
    #[error("vrrp_instance {instance}: no interface {interface}")]
    NoInterface { instance: String, interface: String },
    #[error("vrrp_instance {0}: IPv6 needs version 3")]
    V6NeedsV3(String),
    #[error("vrrp_instance {instance}: opening the VRRP socket: {source}")]
    Socket {
        instance: String,
        source: std::io::Error,
    },
    #[error("vrrp_instance {instance}: {source}")]
    Net {
        instance: String,
        source: crate::net::NetError,
    },
}

/// The role of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VrrpRole {
    Init,
    Backup,
    Master,
    Fault,
}

impl fmt::Display for VrrpRole {
    /// keepalived's spelling (`MASTER`, ...), also passed to notify programs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VrrpRole::Init => "INIT",
            VrrpRole::Backup => "BACKUP",
            VrrpRole::Master => "MASTER",
            VrrpRole::Fault => "FAULT",
        })
    }
}

/// What [`Vrrp::status`] reports per instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStatus {
    pub name: String,
    pub role: VrrpRole,
    /// Configured priority.
    pub priority: u8,
    /// Advertised priority (after `track_service_weight`).
    pub effective_priority: u8,
    pub vrid: u8,
    pub interface: String,
    /// The peer it last heard.
    pub last_master: Option<IpAddr>,
    /// Valid adverts received (for this VRID).
    pub adverts_rx: u64,
    pub adverts_tx: u64,
    /// Dropped adverts by reason (`ttl`, `checksum`, `version`, `auth`, `vrid`, `too_short`,
    /// `interval`, ...): see [`packet::RxError::as_str`].
    pub bad_adverts: BTreeMap<String, u64>,
    pub became_master: u64,
    /// When `role` was entered.
    pub since: SystemTime,
    /// Role changes so far.
    pub transitions: u64,
    /// The last advert dropped: its sender and why.
    pub last_bad_advert: Option<crate::status::BadAdvert>,
    /// Its tracked objects now (filled by [`Vrrp::status`]).
    pub tracked: Vec<crate::status::TrackedStatus>,
}

/// Sent to the daemon on every role change.
#[derive(Debug)]
pub enum VrrpEvent {
    RoleChanged {
        instance: String,
        role: VrrpRole,
        reason: String,
        /// Becoming MASTER: answered once the daemon's tables forward the VIPs, before the
        /// instance adds them and sends gratuitous ARPs.
        applied: Option<oneshot::Sender<()>>,
    },
}

/// How long a new MASTER waits for the daemon's tables before taking the VIPs anyway.
pub const TABLES_WAIT: Duration = Duration::from_millis(500);

struct Running {
    cfg: VrrpInstance,
    /// Its tracked objects as resolved from the configuration (their weights may change
    /// without `cfg` changing).
    tracked: Vec<track::Tracked>,
    cmd: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<InstanceStatus>>,
    task: JoinHandle<()>,
}

impl Running {
    async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
        drop(self.cmd);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// The VRRP engine: every `vrrp_instance` of the configuration.
pub struct Vrrp {
    instances: BTreeMap<String, Running>,
    shared: Shared,
    /// The latest service health, for instances started by a reload.
    health: Mutex<BTreeMap<String, bool>>,
    /// Status of the tracked scripts, processes and files, watched by the instances.
    track: Arc<watch::Sender<track::TrackStates>>,
    trackers: Option<tracker::Trackers>,
}

fn sync_peers(cfg: &Config) -> BTreeMap<String, Vec<String>> {
    let mut peers = BTreeMap::new();
    for g in &cfg.vrrp_sync_groups {
        let members = &g.group;
        for m in members {
            peers.insert(
                m.clone(),
                members.iter().filter(|o| *o != m).cloned().collect(),
            );
        }
    }
    peers
}

fn vrid_set(cfg: &Config) -> BTreeSet<(String, u8)> {
    cfg.vrrp_instances
        .iter()
        .map(|i| (i.interface.clone(), i.virtual_router_id))
        .collect()
}

impl Vrrp {
    /// Starts one task per instance on the current tokio runtime.
    ///
    /// `resume`: the daemon adopted the forwarding state of a previous run; an instance whose
    /// VIPs are still on its interface (that run died as MASTER) carries on as MASTER at once.
    pub async fn start(
        cfg: &Config,
        events: mpsc::UnboundedSender<VrrpEvent>,
        resume: bool,
    ) -> Result<Vrrp, VrrpError> {
        let shared = Shared {
            sync: Arc::new(Mutex::new(SyncState {
                peers: sync_peers(cfg),
                senders: BTreeMap::new(),
            })),
            vrids: Arc::new(RwLock::new(vrid_set(cfg))),
            events,
            recent: Arc::default(),
        };
        let (track, _) = watch::channel(track::TrackStates::default());
        let track = Arc::new(track);
        let trackers = tracker::Trackers::start(tracker::TrackConfig::of(cfg), &track, None);
        let mut v = Vrrp {
            instances: BTreeMap::new(),
            shared,
            health: Mutex::new(BTreeMap::new()),
            track,
            trackers: Some(trackers),
        };
        for i in &cfg.vrrp_instances {
            if let Err(e) = v.start_one(i, track::resolve(i, cfg), resume).await {
                v.shutdown().await;
                return Err(e);
            }
        }
        Ok(v)
    }

    async fn start_one(
        &mut self,
        cfg: &VrrpInstance,
        tracked: Vec<track::Tracked>,
        resume: bool,
    ) -> Result<(), VrrpError> {
        let name = cfg.name.clone();
        let status = Arc::new(Mutex::new(InstanceStatus {
            name: name.clone(),
            role: VrrpRole::Init,
            priority: cfg.priority,
            effective_priority: cfg.priority,
            vrid: cfg.virtual_router_id,
            interface: cfg.interface.clone(),
            last_master: None,
            adverts_rx: 0,
            adverts_tx: 0,
            bad_adverts: BTreeMap::new(),
            became_master: 0,
            since: SystemTime::now(),
            transitions: 0,
            last_bad_advert: None,
            tracked: Vec::new(),
        }));
        let health = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tracking = instance::Tracking {
            tracked: tracked.clone(),
            states: self.track.subscribe(),
        };
        let inst = Instance::setup(
            cfg,
            self.shared.clone(),
            status.clone(),
            health,
            tracking,
            resume,
        )
        .await?;
        if inst.resumes() {
            // Seen as MASTER from the start, so the daemon's first table keeps the service
            // active (the task's first transition confirms it).
            status.lock().unwrap_or_else(|e| e.into_inner()).role = VrrpRole::Master;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .senders
            .insert(name.clone(), tx.clone());
        let task = tokio::spawn(inst.run(rx));
        self.instances.insert(
            name,
            Running {
                cfg: cfg.clone(),
                tracked,
                cmd: tx,
                status,
                task,
            },
        );
        Ok(())
    }

    async fn stop_one(&mut self, name: &str) {
        if let Some(r) = self.instances.remove(name) {
            self.shared
                .sync
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .senders
                .remove(name);
            r.shutdown().await;
        }
    }

    /// Applies a new configuration: unchanged instances keep running (and their state);
    /// changed ones are stopped (resigning if master) and restarted; removed ones stopped.
    pub async fn reload(&mut self, cfg: &Config) -> Result<(), VrrpError> {
        let wanted: BTreeMap<String, &VrrpInstance> = cfg
            .vrrp_instances
            .iter()
            .map(|i| (i.name.clone(), i))
            .collect();
        let stale: Vec<String> = self
            .instances
            .iter()
            .filter(|(n, r)| {
                wanted
                    .get(*n)
                    .is_none_or(|w| **w != r.cfg || track::resolve(w, cfg) != r.tracked)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in &stale {
            self.stop_one(n).await;
        }
        let track_cfg = tracker::TrackConfig::of(cfg);
        if self.trackers.as_ref().is_none_or(|t| t.cfg != track_cfg) {
            let before = self.trackers.take().map(|t| {
                let cfg = t.cfg.clone();
                t.stop();
                cfg
            });
            self.trackers = Some(tracker::Trackers::start(
                track_cfg,
                &self.track,
                before.as_ref(),
            ));
        }
        *self.shared.vrids.write().unwrap_or_else(|e| e.into_inner()) = vrid_set(cfg);
        self.shared
            .sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peers = sync_peers(cfg);
        let mut first_err = None;
        for (n, i) in wanted {
            if !self.instances.contains_key(&n) {
                if let Err(e) = self.start_one(i, track::resolve(i, cfg), false).await {
                    tracing::error!("{e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Health of tracked services: name -> healthy (quorum met). Call whenever it changes.
    /// Services never reported count as healthy.
    pub fn set_service_health(&self, health: &BTreeMap<String, bool>) {
        *self.health.lock().unwrap_or_else(|e| e.into_inner()) = health.clone();
        for r in self.instances.values() {
            if !r.cfg.track_service.is_empty() {
                let _ = r.cmd.send(Cmd::Health(health.clone()));
            }
        }
    }

    /// The last role changes of every instance, oldest first.
    pub fn recent_transitions(&self) -> Vec<crate::status::Transition> {
        self.shared
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_vec()
    }

    pub fn status(&self) -> Vec<InstanceStatus> {
        let states = self.track.borrow().clone();
        self.instances
            .values()
            .map(|r| {
                let mut s = r.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
                s.tracked = r.tracked.iter().map(|t| t.report(&states)).collect();
                s
            })
            .collect()
    }

    /// Shutdown: send priority 0 (so the backup takes over at once), remove VIPs, stop tasks.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.instances.keys().cloned().collect();
        let stops = names
            .iter()
            .filter_map(|n| self.instances.remove(n))
            .map(|r| r.shutdown());
        futures::future::join_all(stops).await;
        if let Some(t) = self.trackers.take() {
            t.stop();
        }
    }

    /// The status of every tracked script, process and file.
    pub fn track_states(&self) -> track::TrackStates {
        self.track.borrow().clone()
    }

    /// The VIPs this director owns now (its instances in MASTER).
    pub fn master_vips(&self) -> BTreeSet<IpAddr> {
        self.instances
            .values()
            .filter(|r| r.status.lock().unwrap_or_else(|e| e.into_inner()).role == VrrpRole::Master)
            .flat_map(|r| r.cfg.virtual_ipaddress.iter().map(|p| p.addr))
            .collect()
    }
}
