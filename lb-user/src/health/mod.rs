//! Health checks of real servers (keepalived `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`).
//!
//! ```text
//! Config ──targets()──▶ Vec<RealTarget> ──HealthChecker::start/reload──▶ one tokio task per real
//!   task: probe (tcp.rs | http.rs | script.rs) under `timeout`, `retry` x `delay_before_retry`
//!         ──▶ Tracker (rise/fall, pure) ──▶ HealthEvent::Changed on up/down/weight change
//!                                       └─▶ notify_up / notify_down (detached, no shell)
//! quorum.rs: pure service up/down from the alive weight (quorum, hysteresis)
//! ```
//! The checkers never touch the data plane: the daemon consumes the events (or [`HealthChecker::snapshot`])
//! and recomputes the desired state.

pub mod agreement;
mod error;
pub mod http;
pub mod quorum;
pub mod scheduler;
pub mod script;
pub mod tcp;
pub mod views;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

pub use error::ProbeError;

use crate::config::{Check, CheckType, Config};

pub use scheduler::{Policy, Probe, Tracker};

/// One real server of one virtual server, as the checker needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct RealTarget {
    /// Virtual server name ([`crate::config::VirtualServer::service_name`]).
    pub service: String,
    /// Real server address and port as configured (the port is the virtual server's by default).
    pub real: SocketAddr,
    /// The check; `None` (or `type = "none"`) = always up.
    pub check: Option<Check>,
    /// Address probed (`connect_ip`/`connect_port` applied).
    pub probe: SocketAddr,
    /// Time between checks (`interval`, else the virtual server's `delay_loop`).
    pub interval: Duration,
    /// Configured weight.
    pub config_weight: u32,
    /// keepalived `alpha`: start down until the check succeeds (`rise` times).
    pub alpha: bool,
    /// Program and arguments run (no shell) when the server goes up.
    pub notify_up: Option<Vec<String>>,
    /// Program and arguments run (no shell) when the server goes down.
    pub notify_down: Option<Vec<String>>,
    /// The virtual server's address (named in transition log lines as keepalived does).
    pub virtual_server: Option<crate::dataplane::desired::ServiceAddr>,
}

impl RealTarget {
    /// The check that runs, `None` when the server is always up.
    pub fn active_check(&self) -> Option<&Check> {
        self.check.as_ref().filter(|c| c.kind != CheckType::None)
    }

    /// Timing and thresholds of the check (defaults for an always-up target).
    pub fn policy(&self) -> Policy {
        match self.active_check() {
            None => Policy {
                interval: self.interval,
                ..Policy::default()
            },
            Some(c) => Policy {
                interval: self.interval,
                timeout: secs(c.timeout),
                retry: c.retry,
                delay_before_retry: secs(c.delay_before_retry),
                rise: c.rise.max(1),
                fall: c.fall.max(1),
            },
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

/// Every real server of every virtual server of `cfg`, in configuration order.
pub fn targets(cfg: &Config) -> Vec<RealTarget> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        let service = vs.name.clone();
        for rs in &vs.real_servers {
            let real = SocketAddr::new(rs.address, rs.port);
            let check = rs.check.clone();
            let probe = check.as_ref().map_or(real, |c| c.target);
            let interval = check.as_ref().map_or(vs.delay_loop, |c| c.interval);
            out.push(RealTarget {
                service: service.clone(),
                real,
                check,
                probe,
                interval: secs(interval),
                config_weight: rs.weight,
                alpha: vs.alpha,
                notify_up: rs.notify_up.clone(),
                notify_down: rs.notify_down.clone(),
                virtual_server: Some(crate::state::service_addr(vs)),
            });
        }
    }
    out
}

/// Result of one probe (after its retries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The server passed.
    pub up: bool,
    /// Weight set by the check (`dynamic` scripts); `None` = the configured weight.
    pub weight: Option<u32>,
    /// Why: "connected", "status 200", "refused", "timeout", "status 503", "body mismatch",
    /// "digest mismatch", "exit code 1", "TLS error: ...".
    pub reason: String,
}

impl Outcome {
    /// A pass at the configured weight.
    pub fn up(reason: impl Into<String>) -> Self {
        Outcome {
            up: true,
            weight: None,
            reason: reason.into(),
        }
    }
    /// A pass that sets the weight.
    pub fn up_weight(weight: u32, reason: impl Into<String>) -> Self {
        Outcome {
            up: true,
            weight: Some(weight),
            reason: reason.into(),
        }
    }
    /// A failure.
    pub fn down(reason: impl Into<String>) -> Self {
        Outcome {
            up: false,
            weight: None,
            reason: reason.into(),
        }
    }
}

/// Classes of check results, the `result` label of `xlb_health_check_results_total`: a bounded
/// set, whatever a check's reason text says.
pub const RESULT_CLASSES: &[&str] = &[
    "ok",
    "refused",
    "timeout",
    "unreachable",
    "connect_error",
    "status",
    "body_mismatch",
    "digest_mismatch",
    "http_error",
    "tls_error",
    "exit_code",
    "signal",
    "other",
];

/// The class of a result (one of [`RESULT_CLASSES`]).
pub fn result_class(o: &Outcome) -> &'static str {
    if o.up {
        return "ok";
    }
    let r = o.reason.as_str();
    let starts = |p: &str| r.starts_with(p);
    match () {
        _ if r == "refused" => "refused",
        _ if r == "timeout" => "timeout",
        _ if r == "unreachable" => "unreachable",
        _ if starts("connect error") => "connect_error",
        _ if starts("status ") => "status",
        _ if starts("body mismatch") => "body_mismatch",
        _ if starts("digest mismatch") => "digest_mismatch",
        _ if starts("http") || starts("bad request") => "http_error",
        _ if starts("TLS") => "tls_error",
        _ if starts("exit code") => "exit_code",
        _ if starts("killed by signal") => "signal",
        _ => "other",
    }
}

/// Health of one real server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealHealth {
    /// Alive (passes its check, or has none).
    pub up: bool,
    /// Dynamic weight (`dynamic` script) or configured weight. Kept while down: the daemon
    /// applies `inhibit_on_failure` itself.
    pub weight: u32,
    /// Reason of the last change; while down, of the last failure.
    pub reason: String,
    /// When `up` last changed (or the checker started).
    pub since: SystemTime,
    /// Check results so far (a result includes its retries).
    pub checks: u64,
    /// Failed results so far.
    pub failures: u64,
    /// Failed results in a row (0 after a pass): "failing" while up and below `fall`.
    pub consecutive_failures: u32,
}

impl From<&RealHealth> for crate::state::RealHealthInput {
    fn from(h: &RealHealth) -> Self {
        crate::state::RealHealthInput {
            up: h.up,
            weight: h.weight,
            reason: h.reason.clone(),
            suspect: false,
        }
    }
}

/// What the checkers tell the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// A real server went up or down, or its dynamic weight changed.
    Changed {
        /// Virtual server name.
        service: String,
        /// Real server address as configured.
        real: SocketAddr,
        /// Its new health.
        health: RealHealth,
    },
}

type Key = (String, SocketAddr);

struct Running {
    target: RealTarget,
    state: Arc<Mutex<RealHealth>>,
    stats: Arc<Mutex<crate::status::CheckStats>>,
    task: Option<JoinHandle<()>>,
}

/// The health checkers of all real servers: one task each.
pub struct HealthChecker {
    events: UnboundedSender<HealthEvent>,
    running: HashMap<Key, Running>,
    /// Transitions as the checkers logged them (status page).
    recent: Arc<Mutex<crate::status::RecentTransitions>>,
}

impl HealthChecker {
    /// Start a checker per target on the current tokio runtime. No event is sent for the
    /// initial states: read them with [`HealthChecker::snapshot`] (up, or down with `alpha`;
    /// targets without a check are always up).
    pub fn start(targets: Vec<RealTarget>, events: UnboundedSender<HealthEvent>) -> Self {
        let mut hc = HealthChecker {
            events,
            running: HashMap::new(),
            recent: Arc::default(),
        };
        for t in targets {
            let r = hc.spawn(t, None);
            hc.running
                .insert((r.target.service.clone(), r.target.real), r);
        }
        hc
    }

    /// Apply a new set of targets: unchanged ones keep their state and task, changed ones are
    /// restarted (inheriting up/down, so a reload does not flap a server; weight reset to the
    /// configured one; a server whose check was removed is up), with an event when that changes
    /// up/down or the weight; removed ones are stopped (a running script is killed); new ones
    /// start as in [`HealthChecker::start`], without an event: read [`HealthChecker::snapshot`]
    /// after a reload.
    pub fn reload(&mut self, targets: Vec<RealTarget>) {
        let mut old = std::mem::take(&mut self.running);
        for t in targets {
            let key = (t.service.clone(), t.real);
            let r = match old.remove(&key) {
                Some(r) if r.target == t => r,
                Some(r) => {
                    r.stop();
                    let prev = r.state.lock().unwrap().clone();
                    let r = self.spawn(t, Some(prev.clone()));
                    let health = r.state.lock().unwrap().clone();
                    if (health.up, health.weight) != (prev.up, prev.weight) {
                        let _ = self.events.send(HealthEvent::Changed {
                            service: key.0.clone(),
                            real: key.1,
                            health,
                        });
                    }
                    r
                }
                None => self.spawn(t, None),
            };
            self.running.insert(key, r);
        }
        for (_, r) in old {
            r.stop();
        }
    }

    /// Current health of every real server.
    pub fn snapshot(&self) -> BTreeMap<(String, SocketAddr), RealHealth> {
        self.running
            .iter()
            .map(|(k, r)| (k.clone(), r.state.lock().unwrap().clone()))
            .collect()
    }

    /// [`HealthChecker::snapshot`] in the shape [`crate::state`] takes (`Inputs::health`).
    pub fn state_inputs(&self) -> BTreeMap<(String, SocketAddr), crate::state::RealHealthInput> {
        self.running
            .iter()
            .map(|(k, r)| (k.clone(), (&*r.state.lock().unwrap()).into()))
            .collect()
    }

    /// Check results of every real server so far.
    pub fn check_stats(&self) -> BTreeMap<(String, SocketAddr), crate::status::CheckStats> {
        self.running
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r.stats.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                )
            })
            .collect()
    }

    /// The last up/down/weight transitions, oldest first.
    pub fn recent_transitions(&self) -> Vec<crate::status::Transition> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_vec()
    }

    /// Stop every checker (running scripts are killed).
    pub fn shutdown(self) {
        for (_, r) in self.running {
            r.stop();
        }
    }

    fn spawn(&self, t: RealTarget, prev: Option<RealHealth>) -> Running {
        let policy = t.policy();
        let now = SystemTime::now();
        let fresh = |up: bool, reason: &str| RealHealth {
            up,
            weight: t.config_weight,
            reason: reason.into(),
            since: now,
            checks: 0,
            failures: 0,
            consecutive_failures: 0,
        };
        let unchecked = t.active_check().is_none();
        let initial = match prev {
            // A check removed from a real server that was down: up, as an unchecked one is.
            Some(p) if !unchecked || p.up => RealHealth {
                weight: t.config_weight,
                checks: 0,
                failures: 0,
                consecutive_failures: 0,
                ..p
            },
            _ if unchecked => fresh(true, "no check"),
            _ if t.alpha => fresh(false, "alpha: down until the check passes"),
            _ => fresh(true, "initial"),
        };
        let state = Arc::new(Mutex::new(initial.clone()));
        let stats = Arc::new(Mutex::new(crate::status::CheckStats::default()));
        tracing::debug!(service = %t.service, real = %t.real, probe = %t.probe, up = initial.up,
            "health checker started");
        let task = t.active_check().map(|check| {
            let tracker = Tracker::new(policy.rise, policy.fall, t.config_weight, initial);
            let ctx = scheduler::Context {
                service: t.service.clone(),
                real: t.real,
                state: state.clone(),
                events: self.events.clone(),
                notify_up: t.notify_up.clone(),
                notify_down: t.notify_down.clone(),
                virtual_server: t.virtual_server,
                check_kind: check.kind,
                stats: stats.clone(),
                recent: self.recent.clone(),
            };
            let probe = AnyProbe::new(check, &t);
            tokio::spawn(scheduler::run(probe, policy, tracker, ctx))
        });
        Running {
            target: t,
            state,
            stats,
            task,
        }
    }
}

impl Running {
    fn stop(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// The probe a configured check runs.
pub enum AnyProbe {
    /// `tcp`.
    Tcp(tcp::TcpProbe),
    /// `http` / `https`.
    Http(Box<http::HttpProbe>),
    /// `script`.
    Script(script::ScriptProbe),
    /// A check that cannot run (e.g. unreadable `ca_file`): always down with this reason.
    Broken(ProbeError),
}

impl AnyProbe {
    /// Build the probe of `check` for target `t`.
    pub fn new(check: &Check, t: &RealTarget) -> Self {
        match check.kind {
            CheckType::Tcp => AnyProbe::Tcp(tcp::TcpProbe { addr: t.probe }),
            CheckType::Http | CheckType::Https => match http::HttpProbe::new(check, t.probe) {
                Ok(p) => AnyProbe::Http(Box::new(p)),
                Err(e) => AnyProbe::Broken(e),
            },
            CheckType::Script => match script::ScriptProbe::new(check, t) {
                Ok(p) => AnyProbe::Script(p),
                Err(e) => AnyProbe::Broken(e),
            },
            CheckType::None => AnyProbe::Broken(ProbeError::NoCheck),
        }
    }
}

impl Probe for AnyProbe {
    async fn probe(&self) -> Outcome {
        match self {
            AnyProbe::Tcp(p) => p.probe().await,
            AnyProbe::Http(p) => p.probe().await,
            AnyProbe::Script(p) => p.probe().await,
            AnyProbe::Broken(e) => Outcome::down(e.to_string()),
        }
    }
}
