//! The per-real-server check loop: interval, timeout, retries, rise/fall, events, notify.
//!
//! [`Tracker`] is the pure state machine (results in, transitions out); [`run`] is the loop
//! around any [`Probe`], so it is tested with a fake probe under `tokio::time::pause()`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use super::{script, HealthEvent, Outcome, RealHealth};

/// One probe attempt. It need not time out by itself: [`run`] drops it at the check timeout
/// (a script probe kills its process group when dropped).
pub trait Probe: Send + Sync + 'static {
    /// Probe once.
    fn probe(&self) -> impl Future<Output = Outcome> + Send;
}

/// Timing and thresholds of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Time between the end of one result and the next probe.
    pub interval: Duration,
    /// Time allowed to one attempt; past it the attempt fails with reason "timeout".
    pub timeout: Duration,
    /// Extra attempts after a failed one before the result counts as a failure.
    pub retry: u32,
    /// Pause before each extra attempt.
    pub delay_before_retry: Duration,
    /// Consecutive passes that bring a down server up.
    pub rise: u32,
    /// Consecutive failures that bring an up server down.
    pub fall: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            interval: Duration::from_secs(6),
            timeout: Duration::from_secs(5),
            retry: 1,
            delay_before_retry: Duration::from_secs(1),
            rise: 1,
            fall: 1,
        }
    }
}

/// What a result changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Down -> up.
    Up,
    /// Up -> down.
    Down,
    /// Still up, new dynamic weight.
    Weight {
        /// Previous weight.
        from: u32,
    },
}

/// rise/fall state machine of one real server (pure: time is passed in).
#[derive(Clone, Debug)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    config_weight: u32,
    health: RealHealth,
    passes: u32,
    failures: u32,
}

impl Tracker {
    /// Start from `initial` (up, or down with `alpha`).
    pub fn new(rise: u32, fall: u32, config_weight: u32, initial: RealHealth) -> Self {
        Tracker {
            rise: rise.max(1),
            fall: fall.max(1),
            config_weight,
            health: initial,
            passes: 0,
            failures: 0,
        }
    }

    /// Current health.
    pub fn health(&self) -> &RealHealth {
        &self.health
    }

    /// Record one result (after retries); returns the change it causes, if any.
    pub fn record(&mut self, o: &Outcome, now: SystemTime) -> Option<Change> {
        let h = &mut self.health;
        h.checks += 1;
        if o.up {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
        } else {
            h.failures += 1;
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
        }
        h.consecutive_failures = self.failures;
        let weight = o.weight.unwrap_or(self.config_weight);
        match (h.up, o.up) {
            (true, false) if self.failures >= self.fall => {
                h.up = false;
                h.reason = o.reason.clone();
                h.since = now;
                Some(Change::Down)
            }
            (true, true) if weight != h.weight => {
                let from = h.weight;
                h.weight = weight;
                h.reason = o.reason.clone();
                Some(Change::Weight { from })
            }
            (false, true) if self.passes >= self.rise => {
                h.up = true;
                h.weight = weight;
                h.reason = o.reason.clone();
                h.since = now;
                Some(Change::Up)
            }
            (false, false) => {
                h.reason = o.reason.clone();
                None
            }
            _ => None,
        }
    }
}

/// Where a checker reports.
pub struct Context {
    /// Virtual server name.
    pub service: String,
    /// Real server as configured.
    pub real: SocketAddr,
    /// Shared with [`super::HealthChecker::snapshot`].
    pub state: Arc<Mutex<RealHealth>>,
    /// Event channel of the daemon.
    pub events: UnboundedSender<HealthEvent>,
    /// Run on up.
    pub notify_up: Option<Vec<String>>,
    /// Run on down.
    pub notify_down: Option<Vec<String>>,
    /// The virtual server's address, for keepalived's phrases in the log.
    pub virtual_server: Option<crate::dataplane::desired::ServiceAddr>,
    /// The kind of check, for keepalived's phrases in the log.
    pub check_kind: crate::config::CheckType,
    /// Results by class and their durations (metrics).
    pub stats: Arc<Mutex<crate::status::CheckStats>>,
    /// Where transitions are kept for the status page.
    pub recent: Arc<Mutex<crate::status::RecentTransitions>>,
}

/// Time allowed to a notify_up/notify_down program before its process group is killed.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// One result: an attempt under `timeout`, retried `retry` times after `delay_before_retry`.
pub async fn check_once<P: Probe>(probe: &P, policy: &Policy) -> Outcome {
    let mut attempt = 0;
    loop {
        let o = match tokio::time::timeout(policy.timeout, probe.probe()).await {
            Ok(o) => o,
            Err(_) => Outcome::down("timeout"),
        };
        if o.up || attempt >= policy.retry {
            return o;
        }
        attempt += 1;
        tokio::time::sleep(policy.delay_before_retry).await;
    }
}

/// The check loop of one real server: first probe at once, then `interval` after each result.
/// Runs until aborted.
pub async fn run<P: Probe>(probe: P, policy: Policy, mut tracker: Tracker, ctx: Context) {
    loop {
        let started = tokio::time::Instant::now();
        let o = check_once(&probe, &policy).await;
        record_stats(&ctx, &o, started.elapsed());
        if !o.up {
            tracing::debug!(service = %ctx.service, real = %ctx.real, reason = %o.reason,
                "check failed: {}", o.reason);
        }
        let change = tracker.record(&o, SystemTime::now());
        let health = tracker.health().clone();
        *ctx.state.lock().unwrap() = health.clone();
        if let Some(change) = change {
            report(&ctx, &change, &health);
        }
        tokio::time::sleep(policy.interval).await;
    }
}

fn record_stats(ctx: &Context, o: &super::Outcome, took: Duration) {
    let mut st = ctx.stats.lock().unwrap_or_else(|e| e.into_inner());
    *st.results
        .entry(super::result_class(o).to_string())
        .or_default() += 1;
    st.last_duration_secs = took.as_secs_f64();
    st.duration_sum_secs += took.as_secs_f64();
}

/// keepalived's way of naming an endpoint: `[198.18.0.11]:tcp:80`.
fn keepalived_endpoint(addr: SocketAddr, protocol: &str) -> String {
    format!("[{}]:{protocol}:{}", addr.ip(), addr.port())
}

/// The one log line of a transition: xlb's facts with keepalived's phrases in it (`TCP
/// connection to [ip]:tcp:80 failed`, `Removing service ... from VS ...`, `Adding service ...
/// to VS ...`, `Changing weight from A to B for service ... of VS ...`), so that alerting
/// written for keepalived's log keeps matching.
pub fn transition_line(ctx: &Context, change: &Change, h: &RealHealth) -> String {
    use crate::config::CheckType;
    let proto = ctx
        .virtual_server
        .map(|v| v.protocol.ipvsadm_name().to_lowercase())
        .unwrap_or_else(|| "tcp".into());
    let real = keepalived_endpoint(ctx.real, &proto);
    let vs = ctx
        .virtual_server
        .map(|v| keepalived_endpoint(std::net::SocketAddr::new(v.vip, v.port), &proto))
        .unwrap_or_else(|| ctx.service.clone());
    let check = match ctx.check_kind {
        CheckType::Tcp => format!("TCP connection to {real}"),
        CheckType::Http => format!("HTTP_CHECK on service {real}"),
        CheckType::Https => format!("SSL_CHECK on service {real}"),
        CheckType::Script => format!("Misc check for {real}"),
        CheckType::None => format!("Check of {real}"),
    };
    let (service, reason, weight) = (&ctx.service, &h.reason, h.weight);
    match change {
        Change::Down => format!(
            "real server down ({service}): {check} failed ({reason}); Removing service {real} from VS {vs}"
        ),
        Change::Up => format!(
            "real server up ({service}): {check} success ({reason}); Adding service {real} to VS {vs} (weight {weight})"
        ),
        Change::Weight { from } => format!(
            "real server weight changed ({service}): Changing weight from {from} to {weight} for service {real} of VS {vs} ({reason})"
        ),
    }
}

fn report(ctx: &Context, change: &Change, h: &RealHealth) {
    let (service, real, reason) = (&ctx.service, ctx.real, &h.reason);
    let line = transition_line(ctx, change, h);
    let state = match change {
        Change::Up => "up".to_string(),
        Change::Down => "down".to_string(),
        Change::Weight { .. } => format!("weight {}", h.weight),
    };
    match change {
        Change::Down => tracing::warn!(%service, %real, %reason, "{line}"),
        Change::Up | Change::Weight { .. } => {
            tracing::info!(%service, %real, %reason, weight = h.weight, "{line}")
        }
    }
    ctx.recent.lock().unwrap_or_else(|e| e.into_inner()).push(
        "health",
        format!("{service} {real}"),
        state,
        reason.clone(),
    );
    let _ = ctx.events.send(HealthEvent::Changed {
        service: service.clone(),
        real,
        health: h.clone(),
    });
    let cmd = match change {
        Change::Up => &ctx.notify_up,
        Change::Down => &ctx.notify_down,
        Change::Weight { .. } => &None,
    };
    if let Some(cmd) = cmd.clone().filter(|c| !c.is_empty()) {
        let env = vec![
            ("XLB_SERVICE".to_string(), service.clone()),
            ("XLB_REAL".to_string(), real.to_string()),
            (
                "XLB_STATE".to_string(),
                if h.up { "up" } else { "down" }.into(),
            ),
            ("XLB_REASON".to_string(), reason.clone()),
        ];
        let service = service.clone();
        tokio::spawn(async move {
            let spec = script::ScriptSpec {
                command: cmd,
                shell: false,
                dynamic: false,
                user: None,
                env,
            };
            let o = script::run(&spec, NOTIFY_TIMEOUT).await;
            if !o.up {
                tracing::warn!(%service, %real, reason = %o.reason, "notify program failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP check's context for service "s" and `real`, reporting to `events`.
    fn test_context(
        real: &str,
        state: Arc<Mutex<RealHealth>>,
        events: tokio::sync::mpsc::UnboundedSender<HealthEvent>,
    ) -> Context {
        Context {
            service: "s".into(),
            real: real.parse().unwrap(),
            state,
            events,
            notify_up: None,
            notify_down: None,
            virtual_server: None,
            check_kind: crate::config::CheckType::Tcp,
            stats: Arc::default(),
            recent: Arc::default(),
        }
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn start(up: bool) -> RealHealth {
        RealHealth {
            up,
            weight: 1,
            reason: "initial".into(),
            since: SystemTime::UNIX_EPOCH,
            checks: 0,
            failures: 0,
            consecutive_failures: 0,
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut t = Tracker::new(2, 3, 1, start(true));
        let down = Outcome::down("refused");
        assert_eq!(t.record(&down, now()), None);
        assert_eq!(t.record(&down, now()), None);
        // a pass resets the count
        assert_eq!(t.record(&Outcome::up("connected"), now()), None);
        assert_eq!(t.record(&down, now()), None);
        assert_eq!(t.record(&down, now()), None);
        assert_eq!(t.record(&down, now()), Some(Change::Down));
        assert!(!t.health().up);
        assert_eq!(t.health().reason, "refused");
        assert_eq!(t.health().checks, 6);
        assert_eq!(t.health().failures, 5);
        // rise 2
        assert_eq!(t.record(&Outcome::up("connected"), now()), None);
        assert_eq!(t.record(&down, now()), None);
        assert_eq!(t.record(&Outcome::up("connected"), now()), None);
        assert_eq!(t.record(&Outcome::up("connected"), now()), Some(Change::Up));
        assert!(t.health().up);
    }

    #[test]
    fn alpha_starts_down_and_dynamic_weight() {
        let mut t = Tracker::new(1, 1, 7, start(false));
        assert_eq!(
            t.record(&Outcome::up_weight(3, "exit code 5"), now()),
            Some(Change::Up)
        );
        assert_eq!(t.health().weight, 3);
        assert_eq!(t.record(&Outcome::up_weight(3, "x"), now()), None);
        assert_eq!(
            t.record(&Outcome::up_weight(0, "exit code 2"), now()),
            Some(Change::Weight { from: 3 })
        );
        // exit 0 with dynamic: back to the configured weight
        assert_eq!(
            t.record(&Outcome::up("exit code 0"), now()),
            Some(Change::Weight { from: 0 })
        );
        assert_eq!(t.health().weight, 7);
    }

    /// Fake probe: plays a script of outcomes (the last repeats), counts calls, and can hang.
    struct Fake {
        script: Vec<Option<bool>>,
        calls: Arc<AtomicUsize>,
    }

    impl Probe for Fake {
        async fn probe(&self) -> Outcome {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let step = self.script[n.min(self.script.len() - 1)];
            match step {
                Some(true) => Outcome::up("ok"),
                Some(false) => Outcome::down("refused"),
                None => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            }
        }
    }

    fn policy() -> Policy {
        Policy {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retry: 2,
            delay_before_retry: Duration::from_secs(1),
            rise: 2,
            fall: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_counts_once_and_timeout_is_failure() {
        let calls = Arc::new(AtomicUsize::new(0));
        // fail, fail, pass: one result, a pass, after 2 retries
        let f = Fake {
            script: vec![Some(false), Some(false), Some(true)],
            calls: calls.clone(),
        };
        let t0 = tokio::time::Instant::now();
        assert!(check_once(&f, &policy()).await.up);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        // hang: each attempt times out; 3 attempts, 2 delays
        let f = Fake {
            script: vec![None],
            calls: Arc::new(AtomicUsize::new(0)),
        };
        let t0 = tokio::time::Instant::now();
        let o = check_once(&f, &policy()).await;
        assert_eq!(o, Outcome::down("timeout"));
        assert_eq!(t0.elapsed(), Duration::from_secs(3 * 2 + 2));
    }

    #[tokio::test(start_paused = true)]
    async fn loop_goes_down_after_fall_results_and_up_after_rise() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let calls = Arc::new(AtomicUsize::new(0));
        // results (3 attempts each when failing): pass, fail, fail -> down, pass, pass -> up
        let mut script = vec![Some(true)];
        script.extend([Some(false); 6]);
        script.extend([Some(true), Some(true)]);
        let f = Fake {
            script,
            calls: calls.clone(),
        };
        let state = Arc::new(Mutex::new(start(true)));
        let ctx = test_context("127.0.0.1:80", state.clone(), tx);
        let t0 = tokio::time::Instant::now();
        let task = tokio::spawn(run(f, policy(), Tracker::new(2, 2, 1, start(true)), ctx));
        let HealthEvent::Changed { health, .. } = rx.recv().await.unwrap();
        assert!(!health.up);
        assert_eq!(health.reason, "refused");
        // pass at 0, failing result at 10..12, then at 22..24 -> down
        assert_eq!(t0.elapsed(), Duration::from_secs(24));
        let HealthEvent::Changed { health, .. } = rx.recv().await.unwrap();
        assert!(health.up);
        // passes at 34 and 44
        assert_eq!(t0.elapsed(), Duration::from_secs(44));
        assert_eq!(calls.load(Ordering::SeqCst), 9);
        assert_eq!(state.lock().unwrap().checks, 5);
        task.abort();
    }

    #[test]
    fn transition_lines_carry_keepalived_phrases() {
        use crate::dataplane::desired::{Protocol, ServiceAddr};
        let ctx = Context {
            service: "web".into(),
            real: "198.18.0.11:80".parse().unwrap(),
            state: Arc::new(Mutex::new(start(true))),
            events: tokio::sync::mpsc::unbounded_channel().0,
            notify_up: None,
            notify_down: None,
            virtual_server: Some(ServiceAddr {
                vip: "198.18.0.100".parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
            }),
            check_kind: crate::config::CheckType::Tcp,
            stats: Arc::default(),
            recent: Arc::default(),
        };
        let mut h = start(false);
        h.reason = "refused".into();
        let down = transition_line(&ctx, &Change::Down, &h);
        assert!(
            down.contains("TCP connection to [198.18.0.11]:tcp:80 failed (refused)"),
            "{down}"
        );
        assert!(
            down.contains("Removing service [198.18.0.11]:tcp:80 from VS [198.18.0.100]:tcp:80"),
            "{down}"
        );
        h.reason = "connected".into();
        let up = transition_line(&ctx, &Change::Up, &h);
        assert!(
            up.contains("Adding service [198.18.0.11]:tcp:80 to VS [198.18.0.100]:tcp:80"),
            "{up}"
        );
        h.weight = 3;
        let w = transition_line(&ctx, &Change::Weight { from: 1 }, &h);
        assert!(
            w.contains("Changing weight from 1 to 3 for service [198.18.0.11]:tcp:80"),
            "{w}"
        );
        assert!(
            !w.contains("real server up"),
            "a weight change is not an up: {w}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_does_not_delay_another() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mk = |real: &str, script| {
            let ctx = test_context(real, Arc::new(Mutex::new(start(true))), tx.clone());
            let f = Fake {
                script,
                calls: Arc::new(AtomicUsize::new(0)),
            };
            let p = Policy {
                timeout: Duration::from_secs(1000),
                retry: 0,
                fall: 1,
                ..policy()
            };
            tokio::spawn(run(f, p, Tracker::new(1, 1, 1, start(true)), ctx))
        };
        let hung = mk("127.0.0.1:1", vec![None]);
        let failing = mk("127.0.0.1:2", vec![Some(false)]);
        let t0 = tokio::time::Instant::now();
        let HealthEvent::Changed { real, health, .. } = rx.recv().await.unwrap();
        assert_eq!(real, "127.0.0.1:2".parse().unwrap());
        assert!(!health.up);
        assert_eq!(t0.elapsed(), Duration::ZERO);
        hung.abort();
        failing.abort();
    }
}
