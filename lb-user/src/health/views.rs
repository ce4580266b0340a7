//! Health views between directors: this director's view as sync records, the peers' records
//! into the [`Agreement`], the state inputs with `confirm_failure` applied, and the side-by-side
//! table of `xlb status --peers`. No IO: the daemon calls these with what it read.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::agreement::{Agreement, RealKey, SuspectWhy, Verdict};
use super::RealHealth;
use crate::config::{self, Config};
use crate::state::RealHealthInput;
use crate::sync::{HealthRecord, HealthState};

/// How often this director sends its whole health view to its peers (besides on change).
pub const VIEW_INTERVAL: Duration = Duration::from_secs(1);
/// A peer's view not refreshed for this long is ignored (three views missed).
pub const VIEW_TTL: Duration = Duration::from_secs(3);

/// The confirmation delay of one real server: `confirm_delay`, else `fall` x `interval` of its
/// check (0 without a check: such a server is never down anyway).
pub fn confirm_delay(vs: &config::VirtualServer, rs: &config::RealServer) -> Duration {
    let secs = vs.confirm_delay.unwrap_or_else(|| {
        rs.check
            .as_ref()
            .map_or(0.0, |c| f64::from(c.fall.max(1)) * c.interval)
    });
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

/// This director's own view of a real server (the raw local checks, never the verdict: a peer
/// must confirm with what it sees itself).
pub fn local_state(h: &RealHealth) -> HealthState {
    match (h.up, h.consecutive_failures) {
        (false, _) => HealthState::Down,
        (true, 0) => HealthState::Up,
        (true, _) => HealthState::Failing,
    }
}

/// This director's health view as sync records, in configuration order.
pub fn own_view(cfg: &Config, health: &BTreeMap<RealKey, RealHealth>) -> Vec<HealthRecord> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        for rs in &vs.real_servers {
            let Some(h) = health.get(&(vs.name.clone(), rs.socket_addr())) else {
                continue;
            };
            out.push(HealthRecord {
                proto: crate::state::protocol(vs.protocol).number(),
                vip: vs.vip,
                service_port: vs.port,
                real: rs.address,
                real_port: rs.port,
                state: local_state(h),
                failures: h.consecutive_failures.min(u8::MAX as u32) as u8,
            });
        }
    }
    out
}

/// The configured real server a peer's record names, if this director has it too.
pub fn real_key_of(cfg: &Config, r: &HealthRecord) -> Option<RealKey> {
    let vs = cfg.virtual_servers.iter().find(|vs| {
        vs.vip == r.vip
            && vs.port == r.service_port
            && crate::state::protocol(vs.protocol).number() == r.proto
    })?;
    let real = SocketAddr::new(r.real, r.real_port);
    vs.real_servers
        .iter()
        .any(|rs| rs.socket_addr() == real)
        .then(|| (vs.name.clone(), real))
}

/// The agreement and the verdicts it gave last (the daemon keeps one).
#[derive(Debug)]
pub struct HealthAgreement {
    agreement: Agreement,
    verdicts: BTreeMap<RealKey, Verdict>,
}

impl Default for HealthAgreement {
    fn default() -> Self {
        HealthAgreement {
            agreement: Agreement::new(VIEW_TTL),
            verdicts: BTreeMap::new(),
        }
    }
}

impl HealthAgreement {
    /// Records a peer's health records (those naming real servers this director has).
    pub fn record_peer(&mut self, cfg: &Config, from: u32, records: &[HealthRecord], now: Instant) {
        for r in records {
            if let Some(key) = real_key_of(cfg, r) {
                self.agreement
                    .record_peer(from, key, r.state, r.failures, now);
            }
        }
    }

    /// The state inputs from the checkers' health, `confirm_failure` applied: a suspect real
    /// server is marked so (drained by the state) and its reason says why. Returns whether a
    /// verdict changed since the last call.
    pub fn inputs(
        &mut self,
        cfg: &Config,
        health: &BTreeMap<RealKey, RealHealth>,
        now: Instant,
    ) -> (BTreeMap<RealKey, RealHealthInput>, bool) {
        let mut inputs = BTreeMap::new();
        let mut verdicts = BTreeMap::new();
        for vs in &cfg.virtual_servers {
            for rs in &vs.real_servers {
                let key = (vs.name.clone(), rs.socket_addr());
                let Some(h) = health.get(&key) else { continue };
                let mut input = RealHealthInput::from(h);
                let verdict = match (vs.confirm_failure, h.up) {
                    (_, true) => Verdict::Healthy,
                    (false, false) => Verdict::Failed(super::agreement::Confirmation::NotAsked),
                    (true, false) => self
                        .agreement
                        .update(&key, false, confirm_delay(vs, rs), now),
                };
                if h.up && vs.confirm_failure {
                    self.agreement.update(&key, true, Duration::ZERO, now);
                }
                if vs.confirm_failure && !h.up {
                    input.suspect = verdict.is_suspect();
                    input.reason = format!("{} ({})", input.reason, verdict.describe());
                }
                inputs.insert(key.clone(), input);
                verdicts.insert(key, verdict);
            }
        }
        self.agreement.retain(|k| verdicts.contains_key(k), now);
        // The countdown of a waiting suspect is not a change (no new planning round for it).
        let changed = !verdicts
            .iter()
            .map(|(k, v)| (k, stable(*v)))
            .eq(self.verdicts.iter().map(|(k, v)| (k, stable(*v))));
        self.verdicts = verdicts;
        (inputs, changed)
    }

    /// Each director's view of each real server, side by side (`xlb status --peers`).
    pub fn status(
        &self,
        cfg: &Config,
        health: &BTreeMap<RealKey, RealHealth>,
        director_id: Option<u32>,
        now: Instant,
    ) -> HealthViews {
        let peer_views = self.agreement.peer_views(now);
        let mut reals = Vec::new();
        for vs in &cfg.virtual_servers {
            for rs in &vs.real_servers {
                let key = (vs.name.clone(), rs.socket_addr());
                let Some(h) = health.get(&key) else { continue };
                let peers = peer_views
                    .get(&key)
                    .map(|m| {
                        m.iter()
                            .map(|(id, v)| {
                                let view = PeerView {
                                    state: v.state.as_str().into(),
                                    failures: v.failures,
                                    age_ms: v.age_ms,
                                };
                                (id.to_string(), view)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let verdict = self.verdicts.get(&key).copied().unwrap_or(Verdict::Healthy);
                reals.push(RealViews {
                    service: vs.name.clone(),
                    real: key.1,
                    local: local_state(h).as_str().into(),
                    verdict: verdict_word(&verdict).into(),
                    detail: verdict.detail(),
                    peers,
                });
            }
        }
        HealthViews {
            director_id,
            peers: self.agreement.peer_directors(now),
            reals,
        }
    }
}

/// The verdict without its countdown.
fn stable(v: Verdict) -> Verdict {
    match v {
        Verdict::Suspect(SuspectWhy::Waiting { .. }) => {
            Verdict::Suspect(SuspectWhy::Waiting { left_ms: 0 })
        }
        other => other,
    }
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Healthy => "healthy",
        Verdict::Suspect(_) => "suspect",
        Verdict::Failed(_) => "failed",
    }
}

/// `xlb status --peers` (and `health_views` in `xlb status --json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthViews {
    /// This director's `sync.director_id` (`None`: no `[sync]`).
    pub director_id: Option<u32>,
    /// Peer directors whose health view is fresh (received within the last 3 s).
    pub peers: Vec<u32>,
    pub reals: Vec<RealViews>,
}

/// One real server of one service as each director sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RealViews {
    pub service: String,
    pub real: SocketAddr,
    /// This director's checks: up, failing (below `fall`), down.
    pub local: String,
    /// What this director does: healthy, suspect (no new flows, flows kept), failed.
    pub verdict: String,
    pub detail: String,
    /// Peer director id (a string: JSON object keys are) -> its view.
    pub peers: BTreeMap<String, PeerView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerView {
    pub state: String,
    pub failures: u8,
    /// Milliseconds since it was received.
    pub age_ms: u64,
}

/// The side-by-side table: one row per real server, one column per director.
pub fn render(v: &HealthViews) -> String {
    let me = v
        .director_id
        .map_or("here".to_string(), |id| format!("dir {id} (here)"));
    let mut out = format!("{:<16} {:<28} {:<14}", "Service", "RealServer", me);
    for id in &v.peers {
        out += &format!(" {:<10}", format!("dir {id}"));
    }
    out += " Verdict\n";
    for r in &v.reals {
        let local = match r.local.as_str() {
            "up" => "up".to_string(),
            s => s.to_string(),
        };
        out += &format!("{:<16} {:<28} {:<14}", r.service, r.real.to_string(), local);
        for id in &v.peers {
            let cell = r
                .peers
                .get(&id.to_string())
                .map_or("-", |p| p.state.as_str());
            out += &format!(" {cell:<10}");
        }
        out += &format!(" {}\n", r.detail);
    }
    if v.peers.is_empty() {
        out += "no peer health view received (no [sync], or no peer heard from in the last 3 s)\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
[global]
interfaces = ["eth0"]
[[virtual_server]]
name = "web"
vip = "198.18.0.100"
port = 80
confirm_failure = true
confirm_delay = 2.0
[virtual_server.check]
type = "tcp"
interval = 0.5
[[virtual_server.real_server]]
address = "198.18.0.11"
[[virtual_server.real_server]]
address = "198.18.0.12"
"#;

    fn health(up11: bool) -> BTreeMap<RealKey, RealHealth> {
        [(11u8, up11), (12, true)]
            .iter()
            .map(|(o, up)| {
                let h = RealHealth {
                    up: *up,
                    weight: 1,
                    reason: if *up { "connected" } else { "timeout" }.into(),
                    since: std::time::SystemTime::UNIX_EPOCH,
                    checks: 3,
                    failures: 0,
                    consecutive_failures: if *up { 0 } else { 3 },
                };
                let key = (
                    "web".to_string(),
                    format!("198.18.0.{o}:80").parse().unwrap(),
                );
                (key, h)
            })
            .collect()
    }

    #[test]
    fn records_name_real_servers_by_address_and_round_trip_to_keys() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let view = own_view(&cfg, &health(false));
        assert_eq!(view.len(), 2);
        assert_eq!(view[0].state, HealthState::Down);
        assert_eq!(view[0].failures, 3);
        assert_eq!(view[1].state, HealthState::Up);
        let key = real_key_of(&cfg, &view[0]).unwrap();
        assert_eq!(key.1, "198.18.0.11:80".parse().unwrap());
        let mut other = view[0];
        other.service_port = 81;
        assert_eq!(
            real_key_of(&cfg, &other),
            None,
            "a service this director lacks"
        );
    }

    #[test]
    fn a_local_failure_is_suspect_until_a_peer_confirms() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let t0 = Instant::now();
        let mut ha = HealthAgreement::default();
        let up_view = own_view(&cfg, &health(true));
        ha.record_peer(&cfg, 2, &up_view, t0);
        let (inputs, changed) = ha.inputs(&cfg, &health(false), t0);
        let i = &inputs[&("web".into(), "198.18.0.11:80".parse().unwrap())];
        assert!(changed && !i.up && i.suspect, "{i:?}");
        assert!(i.reason.contains("every peer sees it up"), "{}", i.reason);
        // Past the delay, the peer still sees it up: still suspect, nothing changed.
        let later = t0 + Duration::from_secs(2);
        ha.record_peer(&cfg, 2, &up_view, later);
        let (inputs, changed) = ha.inputs(&cfg, &health(false), later);
        assert!(!changed);
        assert!(inputs[&("web".into(), "198.18.0.11:80".parse().unwrap())].suspect);
        // The peer sees it down: failed.
        ha.record_peer(&cfg, 2, &own_view(&cfg, &health(false)), later);
        let (inputs, changed) = ha.inputs(&cfg, &health(false), later);
        let i = &inputs[&("web".into(), "198.18.0.11:80".parse().unwrap())];
        assert!(changed && !i.suspect && i.reason.contains("confirmed by director 2"));
        let st = ha.status(&cfg, &health(false), Some(1), later);
        assert_eq!(st.peers, vec![2]);
        assert_eq!(st.reals[0].local, "down");
        assert_eq!(st.reals[0].verdict, "failed");
        assert_eq!(st.reals[0].peers["2"].state, "down");
        let table = render(&st);
        assert!(table.contains("dir 2"), "{table}");
    }

    #[test]
    fn the_countdown_of_a_waiting_suspect_is_not_a_change() {
        let cfg = config::parse(CFG, "t.toml").unwrap();
        let t0 = Instant::now();
        let mut ha = HealthAgreement::default();
        let (_, changed) = ha.inputs(&cfg, &health(false), t0);
        assert!(changed);
        let (_, changed) = ha.inputs(&cfg, &health(false), t0 + Duration::from_millis(500));
        assert!(!changed, "still waiting");
        let (inputs, changed) = ha.inputs(&cfg, &health(false), t0 + Duration::from_secs(2));
        assert!(changed, "the delay ran out");
        let i = &inputs[&("web".into(), "198.18.0.11:80".parse().unwrap())];
        assert!(
            !i.suspect && i.reason.contains("confirmed by the delay"),
            "{i:?}"
        );
    }

    #[test]
    fn without_the_setting_a_local_failure_fails_at_once() {
        let cfg = config::parse(
            &CFG.replace("confirm_delay = 2.0\n", "")
                .replace("confirm_failure = true\n", ""),
            "t.toml",
        )
        .unwrap();
        let mut ha = HealthAgreement::default();
        let (inputs, _) = ha.inputs(&cfg, &health(false), Instant::now());
        let i = &inputs[&("web".into(), "198.18.0.11:80".parse().unwrap())];
        assert!(!i.up && !i.suspect);
        assert_eq!(i.reason, "timeout");
    }

    #[test]
    fn default_delay_is_fall_times_interval() {
        let cfg = config::parse(
            &CFG.replace("confirm_delay = 2.0\n", "")
                .replace("interval = 0.5\n", "interval = 0.5\nfall = 3\n"),
            "t.toml",
        )
        .unwrap();
        let vs = &cfg.virtual_servers[0];
        assert_eq!(
            confirm_delay(vs, &vs.real_servers[0]),
            Duration::from_millis(1500)
        );
    }
}
