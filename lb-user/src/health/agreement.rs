//! Health agreement between directors (issue 20, `confirm_failure`). Pure: time is passed in.
//!
//! A director whose own checks of a real server fail may be the one with the problem (a local
//! firewall, a broken path from this director only), while the real server serves everyone
//! else. Re-dispatching the established flows it carries to that server would reset them. With
//! `confirm_failure`, a local failure first makes the real server **suspect**: new flows avoid
//! it (weight 0), established flows stay (the drain semantics of the data plane). It becomes
//! **failed** (not alive: flows re-dispatched, as without the setting) once the failure is
//! confirmed:
//!
//! - by a peer: any peer director whose fresh health view (received through `[sync]`) also has
//!   it down confirms at once (two independent views agree);
//! - by time: after `confirm_delay` of local failure, unless every peer with a fresh view sees
//!   it up — then it stays suspect for as long as they do (the problem is this director's).
//!
//! Failed is kept until the local checks pass again (a confirmed failure is not undone by a
//! view arriving later: the flows were re-dispatched already). Without peers' views (no sync,
//! or none fresh) the delay alone decides.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::sync::HealthState;

/// A real server of a service: (service name, real address:port).
pub type RealKey = (String, SocketAddr);

/// How this director treats one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passing its checks here: forwarded to.
    Healthy,
    /// Failing here, not confirmed: no new flows, established flows kept.
    Suspect(SuspectWhy),
    /// Failing here and confirmed: not alive, its flows are re-dispatched.
    Failed(Confirmation),
}

/// Why a suspect real server is not failed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspectWhy {
    /// The confirmation delay has not run out (this many milliseconds left).
    Waiting { left_ms: u64 },
    /// Every peer with a fresh view sees it up.
    PeersSeeItUp,
}

/// What confirmed a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// `confirm_failure` is off: a local failure is a failure at once.
    NotAsked,
    /// This peer director sees it down too.
    Peer(u32),
    /// `confirm_delay` of local failure, no peer seeing it up.
    Delay,
}

impl Verdict {
    /// Suspect: the data plane drains it (weight 0, alive) instead of removing it.
    pub fn is_suspect(&self) -> bool {
        matches!(self, Verdict::Suspect(_))
    }

    /// Text appended to the check's failure reason (`xlb status`, the log line of each
    /// change): stable while the verdict is, so it is logged once per transition.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Suspect(SuspectWhy::Waiting { .. }) => {
                "suspect: established flows kept until a peer or the confirmation delay confirms"
                    .into()
            }
            other => other.detail(),
        }
    }

    /// [`Verdict::describe`] with the time left before the delay confirms (`xlb status --peers`).
    pub fn detail(&self) -> String {
        match self {
            Verdict::Healthy => "healthy".into(),
            Verdict::Suspect(SuspectWhy::Waiting { left_ms }) => format!(
                "suspect: established flows kept, confirmed in {:.1} s unless peers see it up",
                *left_ms as f64 / 1000.0
            ),
            Verdict::Suspect(SuspectWhy::PeersSeeItUp) => {
                "suspect: every peer sees it up, established flows kept".into()
            }
            Verdict::Failed(Confirmation::NotAsked) => "failed".into(),
            Verdict::Failed(Confirmation::Peer(id)) => {
                format!("failed: confirmed by director {id}")
            }
            Verdict::Failed(Confirmation::Delay) => "failed: confirmed by the delay".into(),
        }
    }
}

/// The verdict for one real server from the local check and the peers' fresh views.
/// `down_for`: how long the local checks have had it down (`None`: up here).
pub fn judge(down_for: Option<Duration>, delay: Duration, peers: &[(u32, HealthState)]) -> Verdict {
    let Some(down_for) = down_for else {
        return Verdict::Healthy;
    };
    if let Some((id, _)) = peers.iter().find(|(_, s)| *s == HealthState::Down) {
        return Verdict::Failed(Confirmation::Peer(*id));
    }
    if peers_all_up(peers) {
        return Verdict::Suspect(SuspectWhy::PeersSeeItUp);
    }
    match delay.checked_sub(down_for) {
        Some(left) if !left.is_zero() => Verdict::Suspect(SuspectWhy::Waiting {
            left_ms: left.as_millis().min(u64::MAX as u128) as u64,
        }),
        _ => Verdict::Failed(Confirmation::Delay),
    }
}

/// At least one peer view, and all of them up.
fn peers_all_up(peers: &[(u32, HealthState)]) -> bool {
    !peers.is_empty() && peers.iter().all(|(_, s)| *s == HealthState::Up)
}

#[derive(Clone, Copy, Debug)]
struct Local {
    down_since: Instant,
    /// Confirmed once: stays failed until the local checks pass.
    confirmed: Option<Confirmation>,
}

#[derive(Clone, Copy, Debug)]
struct PeerView {
    state: HealthState,
    failures: u8,
    received: Instant,
}

/// The agreement state of every real server: local failure times and the peers' views.
#[derive(Debug)]
pub struct Agreement {
    /// A peer's view older than this is ignored (the peer is gone, or its sync is).
    view_ttl: Duration,
    local: BTreeMap<RealKey, Local>,
    peers: BTreeMap<RealKey, BTreeMap<u32, PeerView>>,
}

/// One director's view of one real server, as `xlb status --peers` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewOf {
    pub state: HealthState,
    /// Consecutive failed checks (0 when up).
    pub failures: u8,
    /// Milliseconds since the view was received.
    pub age_ms: u64,
}

impl Agreement {
    pub fn new(view_ttl: Duration) -> Self {
        Agreement {
            view_ttl,
            local: BTreeMap::new(),
            peers: BTreeMap::new(),
        }
    }

    /// A peer's view of one real server (the latest wins).
    pub fn record_peer(
        &mut self,
        director: u32,
        real: RealKey,
        state: HealthState,
        failures: u8,
        now: Instant,
    ) {
        let view = PeerView {
            state,
            failures,
            received: now,
        };
        self.peers.entry(real).or_default().insert(director, view);
    }

    /// The fresh peer views of `real`, by director id.
    pub fn peer_states(&self, real: &RealKey, now: Instant) -> Vec<(u32, HealthState)> {
        self.fresh_views(real, now)
            .map(|(id, v)| (id, v.state))
            .collect()
    }

    fn fresh_views<'a>(
        &'a self,
        real: &RealKey,
        now: Instant,
    ) -> impl Iterator<Item = (u32, &'a PeerView)> + 'a {
        let ttl = self.view_ttl;
        self.peers.get(real).into_iter().flat_map(move |m| {
            m.iter()
                .filter(move |(_, v)| now.saturating_duration_since(v.received) <= ttl)
                .map(|(id, v)| (*id, v))
        })
    }

    /// Every fresh peer view, by real server then director (status).
    pub fn peer_views(&self, now: Instant) -> BTreeMap<RealKey, BTreeMap<u32, ViewOf>> {
        let mut out: BTreeMap<RealKey, BTreeMap<u32, ViewOf>> = BTreeMap::new();
        for real in self.peers.keys() {
            for (id, v) in self.fresh_views(real, now) {
                let age = now.saturating_duration_since(v.received);
                out.entry(real.clone()).or_default().insert(
                    id,
                    ViewOf {
                        state: v.state,
                        failures: v.failures,
                        age_ms: age.as_millis().min(u64::MAX as u128) as u64,
                    },
                );
            }
        }
        out
    }

    /// Peer directors with at least one fresh view.
    pub fn peer_directors(&self, now: Instant) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .peers
            .keys()
            .flat_map(|r| self.fresh_views(r, now).map(|(id, _)| id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The verdict for `real` given the local check (`up`), with `confirm_failure` on and this
    /// confirmation delay; remembers when the local failure began and whether it was confirmed.
    pub fn update(&mut self, real: &RealKey, up: bool, delay: Duration, now: Instant) -> Verdict {
        if up {
            self.local.remove(real);
            return Verdict::Healthy;
        }
        let local = *self.local.entry(real.clone()).or_insert(Local {
            down_since: now,
            confirmed: None,
        });
        if let Some(c) = local.confirmed {
            return Verdict::Failed(c);
        }
        let peers = self.peer_states(real, now);
        let down_for = now.saturating_duration_since(local.down_since);
        let verdict = judge(Some(down_for), delay, &peers);
        if let Verdict::Failed(c) = verdict {
            if let Some(l) = self.local.get_mut(real) {
                l.confirmed = Some(c);
            }
        }
        verdict
    }

    /// Forgets real servers no longer configured (after a reload), and stale peer views.
    pub fn retain(&mut self, keep: impl Fn(&RealKey) -> bool, now: Instant) {
        self.local.retain(|k, _| keep(k));
        self.peers.retain(|k, _| keep(k));
        let ttl = self.view_ttl;
        for m in self.peers.values_mut() {
            m.retain(|_, v| now.saturating_duration_since(v.received) <= ttl);
        }
        self.peers.retain(|_, m| !m.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::{Down, Failing, Up};

    const DELAY: Duration = Duration::from_millis(1500);

    fn key(n: u8) -> RealKey {
        (
            "v4-9000".into(),
            format!("198.18.1.{n}:9000").parse().unwrap(),
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn judge_covers_every_case() {
        assert_eq!(judge(None, DELAY, &[(2, Down)]), Verdict::Healthy);
        assert_eq!(
            judge(Some(ms(0)), DELAY, &[]),
            Verdict::Suspect(SuspectWhy::Waiting { left_ms: 1500 })
        );
        assert_eq!(
            judge(Some(ms(1500)), DELAY, &[]),
            Verdict::Failed(Confirmation::Delay)
        );
        // Any peer that sees it down confirms at once, whatever the others say.
        assert_eq!(
            judge(Some(ms(1)), DELAY, &[(2, Up), (3, Down)]),
            Verdict::Failed(Confirmation::Peer(3))
        );
        // All peers up: suspect past the delay.
        assert_eq!(
            judge(Some(ms(60_000)), DELAY, &[(2, Up), (3, Up)]),
            Verdict::Suspect(SuspectWhy::PeersSeeItUp)
        );
        // A peer failing (not yet down) neither confirms nor holds: the delay decides.
        assert_eq!(
            judge(Some(ms(1000)), DELAY, &[(2, Up), (3, Failing)]),
            Verdict::Suspect(SuspectWhy::Waiting { left_ms: 500 })
        );
        assert_eq!(
            judge(Some(ms(2000)), DELAY, &[(2, Up), (3, Failing)]),
            Verdict::Failed(Confirmation::Delay)
        );
        // A zero delay: failed at once unless the peers see it up.
        assert_eq!(
            judge(Some(ms(0)), Duration::ZERO, &[]),
            Verdict::Failed(Confirmation::Delay)
        );
        assert!(judge(Some(ms(0)), Duration::ZERO, &[(2, Up)]).is_suspect());
    }

    #[test]
    fn local_failure_is_suspect_then_confirmed_by_the_delay() {
        let t0 = Instant::now();
        let mut a = Agreement::new(ms(3000));
        assert_eq!(a.update(&key(11), true, DELAY, t0), Verdict::Healthy);
        assert!(a.update(&key(11), false, DELAY, t0).is_suspect());
        assert!(a.update(&key(11), false, DELAY, t0 + ms(1499)).is_suspect());
        assert_eq!(
            a.update(&key(11), false, DELAY, t0 + ms(1500)),
            Verdict::Failed(Confirmation::Delay)
        );
        // Up again: healthy, and a new failure starts a new delay.
        assert_eq!(
            a.update(&key(11), true, DELAY, t0 + ms(2000)),
            Verdict::Healthy
        );
        assert!(a.update(&key(11), false, DELAY, t0 + ms(2100)).is_suspect());
        assert!(a.update(&key(11), false, DELAY, t0 + ms(3000)).is_suspect());
    }

    #[test]
    fn peers_seeing_it_up_hold_it_suspect_while_their_views_are_fresh() {
        let t0 = Instant::now();
        let mut a = Agreement::new(ms(3000));
        a.record_peer(2, key(11), Up, 0, t0);
        a.record_peer(3, key(11), Up, 0, t0);
        assert!(a.update(&key(11), false, DELAY, t0).is_suspect());
        // Views refreshed every second: suspect long past the delay.
        for s in 1..=10 {
            let now = t0 + ms(s * 1000);
            a.record_peer(2, key(11), Up, 0, now);
            a.record_peer(3, key(11), Up, 0, now);
            assert_eq!(
                a.update(&key(11), false, DELAY, now),
                Verdict::Suspect(SuspectWhy::PeersSeeItUp)
            );
        }
        // One peer stops reporting: the other still holds it.
        let t = t0 + ms(10_000);
        a.record_peer(2, key(11), Up, 0, t + ms(2000));
        assert!(a.update(&key(11), false, DELAY, t + ms(3500)).is_suspect());
        assert_eq!(a.peer_states(&key(11), t + ms(3500)), vec![(2, Up)]);
        // Both silent past the TTL: the delay (long run out) confirms.
        assert_eq!(
            a.update(&key(11), false, DELAY, t + ms(5500)),
            Verdict::Failed(Confirmation::Delay)
        );
    }

    #[test]
    fn a_peer_seeing_it_down_confirms_at_once_and_failed_sticks() {
        let t0 = Instant::now();
        let mut a = Agreement::new(ms(3000));
        a.record_peer(2, key(11), Up, 0, t0);
        a.record_peer(3, key(11), Up, 0, t0);
        assert!(a.update(&key(11), false, DELAY, t0).is_suspect());
        a.record_peer(3, key(11), Down, 3, t0 + ms(100));
        assert_eq!(
            a.update(&key(11), false, DELAY, t0 + ms(100)),
            Verdict::Failed(Confirmation::Peer(3))
        );
        // The peer sees it up again, the local check still fails: stays failed.
        a.record_peer(3, key(11), Up, 0, t0 + ms(200));
        assert_eq!(
            a.update(&key(11), false, DELAY, t0 + ms(200)),
            Verdict::Failed(Confirmation::Peer(3))
        );
        // The reason text does not count down (one log line per transition).
        let waiting = |ms| Verdict::Suspect(SuspectWhy::Waiting { left_ms: ms });
        assert_eq!(waiting(1500).describe(), waiting(20).describe());
        assert!(waiting(1500).detail().contains("1.5 s"));
        // Another real server is not affected by views of this one.
        assert!(a.update(&key(12), false, DELAY, t0 + ms(200)).is_suspect());
    }

    #[test]
    fn views_are_listed_fresh_and_forgotten_with_their_real_server() {
        let t0 = Instant::now();
        let mut a = Agreement::new(ms(3000));
        a.record_peer(2, key(11), Down, 2, t0);
        a.record_peer(3, key(12), Up, 0, t0 + ms(2000));
        let v = a.peer_views(t0 + ms(2500));
        assert_eq!(v[&key(11)][&2].state, Down);
        assert_eq!(v[&key(11)][&2].failures, 2);
        assert_eq!(v[&key(11)][&2].age_ms, 2500);
        assert_eq!(a.peer_directors(t0 + ms(2500)), vec![2, 3]);
        assert_eq!(a.peer_directors(t0 + ms(4000)), vec![3]);
        a.retain(|k| *k != key(12), t0 + ms(4000));
        assert!(a.peer_views(t0 + ms(4000)).is_empty());
    }
}
