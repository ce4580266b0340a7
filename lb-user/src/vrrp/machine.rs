//! The VRRP state machine of one instance (RFC 3768 / RFC 5798, with keepalived's additions),
//! pure: time comes in as [`Instant`], decisions go out as [`Action`]s.
//!
//! The IO shell calls [`Machine::start`], then [`Machine::on_advert`] for every *valid* advert
//! (TTL, checksum, version, auth, VRID and — v2 — interval already checked), [`Machine::on_timer`]
//! when [`Machine::deadline`] passes, and the `set_*` methods when tracked state changes.
//!
//! Deviations from the RFCs, all as keepalived does:
//! - `state = MASTER` (below 255) starts as backup but waits only one advert interval + skew
//!   before taking over, instead of the full Master_Down_Interval.
//! - a MASTER receiving a lower-priority advert answers with an advert at once (RFC: discard).
//! - `preempt_delay`: a backup keeps accepting a lower-priority master for that long after it
//!   first hears it, then takes over.
//! - a MASTER leaving for FAULT or BACKUP by force (sync group, shutdown) sends priority 0.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::VrrpRole;

/// Static parameters of an instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub name: String,
    /// 2 or 3.
    pub version: u8,
    /// Configured priority (1..=255).
    pub priority: u8,
    /// Our advert interval.
    pub advert_int: Duration,
    /// `false` with `nopreempt`.
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// The source address of our adverts (for the equal-priority tie break).
    pub primary_ip: IpAddr,
    /// `state = MASTER`.
    pub want_master: bool,
}

/// What the IO shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority.
    SendAdvert { priority: u8 },
    /// The role changed (add/remove VIPs, GARP, notify).
    Transition { role: VrrpRole, reason: String },
}

/// One instance's state.
#[derive(Debug)]
pub struct Machine {
    p: Params,
    role: VrrpRole,
    /// Priority after `track_service_weight`; what we advertise.
    effective: u8,
    /// Why we are in FAULT (empty: not faulty).
    fault: Option<String>,
    /// Master_Adver_Interval learnt from the master (v3), else ours.
    master_adver: Duration,
    deadline: Option<Instant>,
    /// When we first heard the current lower-priority master (for `preempt_delay`).
    lower_since: Option<Instant>,
    pub last_master: Option<IpAddr>,
}

impl Machine {
    pub fn new(p: Params) -> Machine {
        Machine {
            effective: p.priority,
            master_adver: p.advert_int,
            p,
            role: VrrpRole::Init,
            fault: None,
            deadline: None,
            lower_since: None,
            last_master: None,
        }
    }

    pub fn params(&self) -> &Params {
        &self.p
    }
    pub fn role(&self) -> VrrpRole {
        self.role
    }
    pub fn effective_priority(&self) -> u8 {
        self.effective
    }
    /// When [`Machine::on_timer`] must be called next.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Skew_Time.
    pub fn skew(&self) -> Duration {
        let k = 256 - u32::from(self.effective);
        if self.p.version == 2 {
            Duration::from_secs(1) * k / 256
        } else {
            self.master_adver * k / 256
        }
    }

    /// Master_Down_Interval = 3 x Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver * 3 + self.skew()
    }

    fn transition(&mut self, role: VrrpRole, reason: String, out: &mut Vec<Action>) {
        if self.role != role {
            self.role = role;
            out.push(Action::Transition { role, reason });
        }
    }

    fn become_master(&mut self, now: Instant, reason: String, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.effective,
        });
        self.transition(VrrpRole::Master, reason, out);
        self.deadline = Some(now + self.p.advert_int);
        self.lower_since = None;
    }

    fn become_backup(&mut self, now: Instant, reason: String, out: &mut Vec<Action>) {
        if self.role == VrrpRole::Master {
            // Let the peer take over at once instead of after Master_Down_Interval.
            out.push(Action::SendAdvert { priority: 0 });
        }
        self.transition(VrrpRole::Backup, reason, out);
        self.deadline = Some(now + self.master_down_interval());
    }

    /// Startup (RFC "Initialize" state).
    pub fn start(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(why) = self.fault.clone() {
            self.transition(VrrpRole::Fault, why, &mut out);
            self.deadline = None;
        } else if self.effective == 255 {
            self.become_master(now, "address owner (priority 255)".into(), &mut out);
        } else {
            self.transition(VrrpRole::Backup, "startup".into(), &mut out);
            self.deadline = Some(
                now + if self.p.want_master {
                    self.p.advert_int + self.skew()
                } else {
                    self.master_down_interval()
                },
            );
        }
        out
    }

    /// Startup of a director that was MASTER a moment ago and never stopped forwarding (the
    /// daemon restarted and adopted its pinned program and maps): MASTER at once, advertising,
    /// so the backup never sees a gap; a higher-priority master heard afterwards is yielded to
    /// as usual. A fault still wins.
    pub fn resume_master(&mut self, now: Instant) -> Vec<Action> {
        if self.fault.is_some() || self.effective == 255 {
            return self.start(now);
        }
        let mut out = Vec::new();
        self.become_master(
            now,
            "resumed after a restart (forwarding never stopped)".into(),
            &mut out,
        );
        out
    }

    /// A valid advert from `src` (its interval matters for v3 only).
    pub fn on_advert(
        &mut self,
        now: Instant,
        src: IpAddr,
        priority: u8,
        interval: Duration,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        match self.role {
            VrrpRole::Init | VrrpRole::Fault => {}
            VrrpRole::Backup => {
                self.last_master = Some(src);
                if priority == 0 {
                    self.deadline = Some(now + self.skew());
                    return out;
                }
                let lower = priority < self.effective;
                let accept = if !self.p.preempt || !lower {
                    self.lower_since = None;
                    true
                } else {
                    let since = *self.lower_since.get_or_insert(now);
                    now.duration_since(since) < self.p.preempt_delay
                };
                if accept {
                    if self.p.version == 3 && !interval.is_zero() {
                        self.master_adver = interval;
                    }
                    self.deadline = Some(now + self.master_down_interval());
                }
                // else: discard; the Master_Down_Timer runs out and we preempt.
            }
            VrrpRole::Master => {
                if priority == 0 {
                    out.push(Action::SendAdvert {
                        priority: self.effective,
                    });
                    self.deadline = Some(now + self.p.advert_int);
                    return out;
                }
                let wins = priority > self.effective
                    || (priority == self.effective && src > self.p.primary_ip);
                if wins {
                    tracing::warn!(
                        instance = %self.p.name,
                        peer = %src,
                        peer_priority = priority,
                        our_priority = self.effective,
                        "VRRP: another MASTER with higher priority (or equal priority and higher \
                         address) on the link: stepping down to BACKUP (split brain resolved)"
                    );
                    self.last_master = Some(src);
                    if self.p.version == 3 && !interval.is_zero() {
                        self.master_adver = interval;
                    }
                    self.transition(
                        VrrpRole::Backup,
                        format!("higher priority master {src} (priority {priority})"),
                        &mut out,
                    );
                    self.deadline = Some(now + self.master_down_interval());
                } else {
                    // A lower-priority master (e.g. just preempted, or split brain): assert.
                    tracing::warn!(
                        instance = %self.p.name,
                        peer = %src,
                        peer_priority = priority,
                        "VRRP: advert from a lower-priority master while MASTER: re-asserting"
                    );
                    out.push(Action::SendAdvert {
                        priority: self.effective,
                    });
                    self.deadline = Some(now + self.p.advert_int);
                }
            }
        }
        out
    }

    /// Call when `now` >= [`Machine::deadline`].
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return out,
        }
        match self.role {
            VrrpRole::Backup => {
                let reason = match self.last_master {
                    Some(m) => format!("no advert from {m} within Master_Down_Interval"),
                    None => "no master heard".into(),
                };
                self.become_master(now, reason, &mut out);
            }
            VrrpRole::Master => {
                out.push(Action::SendAdvert {
                    priority: self.effective,
                });
                self.deadline = Some(now + self.p.advert_int);
            }
            VrrpRole::Init | VrrpRole::Fault => self.deadline = None,
        }
        out
    }

    /// Sets or clears the fault (tracked interface down, tracked service below quorum, or the
    /// sync group in FAULT). `Some(reason)` enters FAULT.
    pub fn set_fault(&mut self, now: Instant, fault: Option<String>) -> Vec<Action> {
        let mut out = Vec::new();
        let was = self.fault.is_some();
        self.fault = fault.clone();
        if self.role == VrrpRole::Init {
            return out;
        }
        match (was, fault) {
            (_, Some(why)) if self.role != VrrpRole::Fault => {
                if self.role == VrrpRole::Master {
                    out.push(Action::SendAdvert { priority: 0 });
                }
                self.transition(VrrpRole::Fault, why, &mut out);
                self.deadline = None;
            }
            (true, None) if self.role == VrrpRole::Fault => {
                if self.effective == 255 {
                    self.become_master(now, "fault cleared; address owner".into(), &mut out);
                } else {
                    self.transition(VrrpRole::Backup, "fault cleared".into(), &mut out);
                    self.deadline = Some(now + self.master_down_interval());
                }
            }
            _ => {}
        }
        out
    }

    /// Sets the effective priority (`track_service_weight`). A master advertises it at once.
    pub fn set_effective_priority(&mut self, now: Instant, prio: u8) -> Vec<Action> {
        let mut out = Vec::new();
        let prio = prio.max(1);
        if prio == self.effective {
            return out;
        }
        self.effective = prio;
        if self.role == VrrpRole::Master {
            out.push(Action::SendAdvert { priority: prio });
            self.deadline = Some(now + self.p.advert_int);
        }
        out
    }

    /// Sync group: another member moved to MASTER or BACKUP; follow it (no further
    /// propagation). A member's FAULT is followed through [`Machine::set_fault`].
    pub fn follow(&mut self, now: Instant, role: VrrpRole, reason: String) -> Vec<Action> {
        let mut out = Vec::new();
        match role {
            VrrpRole::Master if self.role == VrrpRole::Backup => {
                self.become_master(now, reason, &mut out)
            }
            VrrpRole::Backup if self.role == VrrpRole::Master => {
                self.become_backup(now, reason, &mut out)
            }
            // FAULT (and leaving it) goes through `set_fault`, which knows every cause.
            _ => {}
        }
        out
    }

    /// Stop: a master resigns with priority 0.
    pub fn stop(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.role == VrrpRole::Master {
            out.push(Action::SendAdvert { priority: 0 });
        }
        self.transition(VrrpRole::Init, "stopped".into(), &mut out);
        self.deadline = None;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(prio: u8, version: u8, ip: &str) -> Params {
        Params {
            name: "VI_1".into(),
            version,
            priority: prio,
            advert_int: Duration::from_secs(1),
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_ip: ip.parse().unwrap(),
            want_master: false,
        }
    }

    fn roles(a: &[Action]) -> Vec<VrrpRole> {
        a.iter()
            .filter_map(|a| match a {
                Action::Transition { role, .. } => Some(*role),
                _ => None,
            })
            .collect()
    }
    fn sends(a: &[Action]) -> Vec<u8> {
        a.iter()
            .filter_map(|a| match a {
                Action::SendAdvert { priority } => Some(*priority),
                _ => None,
            })
            .collect()
    }
    const PEER: &str = "198.18.0.2";
    fn peer() -> IpAddr {
        PEER.parse().unwrap()
    }
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn master_down_interval_v2_v3() {
        let m = Machine::new(params(100, 2, "198.18.0.1"));
        // 3 s + 156/256 s
        assert_eq!(
            m.master_down_interval(),
            Duration::from_nanos(3_609_375_000)
        );
        let mut p = params(100, 3, "198.18.0.1");
        p.advert_int = Duration::from_millis(500);
        let m = Machine::new(p);
        assert_eq!(
            m.master_down_interval(),
            Duration::from_nanos(1_804_687_500)
        );
    }

    #[test]
    fn owner_is_master_at_once() {
        let mut m = Machine::new(params(255, 2, "198.18.0.1"));
        let t = Instant::now();
        let a = m.start(t);
        assert_eq!(roles(&a), vec![VrrpRole::Master]);
        assert_eq!(sends(&a), vec![255]);
        assert_eq!(m.deadline(), Some(t + S));
    }

    #[test]
    fn backup_takes_over_after_master_down_and_adverts() {
        let mut m = Machine::new(params(100, 2, "198.18.0.1"));
        let t = Instant::now();
        assert_eq!(roles(&m.start(t)), vec![VrrpRole::Backup]);
        // An advert from a higher master resets the timer.
        let t1 = t + S;
        assert!(m.on_advert(t1, peer(), 150, S).is_empty());
        assert_eq!(m.deadline(), Some(t1 + m.master_down_interval()));
        assert!(m.on_timer(t1 + S).is_empty(), "not yet");
        let t2 = m.deadline().unwrap();
        let a = m.on_timer(t2);
        assert_eq!(roles(&a), vec![VrrpRole::Master]);
        assert_eq!(sends(&a), vec![100]);
        let a = m.on_timer(t2 + S);
        assert_eq!(sends(&a), vec![100]);
        assert_eq!(m.last_master, Some(peer()));
    }

    #[test]
    fn priority_zero_means_takeover_after_skew() {
        let mut m = Machine::new(params(100, 2, "198.18.0.1"));
        let t = Instant::now();
        m.start(t);
        m.on_advert(t, peer(), 0, S);
        assert_eq!(m.deadline(), Some(t + m.skew()));
        assert!(m.skew() < S);
        assert_eq!(roles(&m.on_timer(t + m.skew())), vec![VrrpRole::Master]);
    }

    #[test]
    fn preemption_and_nopreempt() {
        let t = Instant::now();
        // Preempt: lower-priority adverts are ignored, so we take over.
        let mut m = Machine::new(params(150, 2, "198.18.0.1"));
        m.start(t);
        let d = m.deadline().unwrap();
        m.on_advert(t + S, peer(), 100, S);
        assert_eq!(m.deadline(), Some(d));
        assert_eq!(roles(&m.on_timer(d)), vec![VrrpRole::Master]);
        // nopreempt: lower-priority master accepted.
        let mut p = params(150, 2, "198.18.0.1");
        p.preempt = false;
        let mut m = Machine::new(p);
        m.start(t);
        m.on_advert(t + S, peer(), 100, S);
        assert_eq!(m.deadline(), Some(t + S + m.master_down_interval()));
    }

    #[test]
    fn preempt_delay() {
        let t = Instant::now();
        let mut p = params(150, 2, "198.18.0.1");
        p.preempt_delay = Duration::from_secs(10);
        let mut m = Machine::new(p);
        m.start(t);
        for i in 1..=10 {
            m.on_advert(t + S * i, peer(), 100, S);
            assert_eq!(m.role(), VrrpRole::Backup);
        }
        // From 10 s on the lower master's adverts are no longer accepted.
        // First heard at 1 s: accepted until 11 s.
        let last = t + S * 10 + m.master_down_interval();
        assert_eq!(m.deadline(), Some(last));
        m.on_advert(t + S * 11, peer(), 100, S);
        assert_eq!(m.deadline(), Some(last));
        assert_eq!(roles(&m.on_timer(last)), vec![VrrpRole::Master]);
    }

    #[test]
    fn master_steps_down_for_higher_and_asserts_over_lower() {
        let t = Instant::now();
        let mut m = Machine::new(params(255, 2, "198.18.0.1"));
        m.start(t);
        // lower: answer with an advert, stay.
        let a = m.on_advert(t, peer(), 100, S);
        assert_eq!(sends(&a), vec![255]);
        assert!(roles(&a).is_empty());
        let mut m = Machine::new(params(100, 2, "198.18.0.1"));
        m.start(t);
        m.on_timer(m.deadline().unwrap());
        assert_eq!(m.role(), VrrpRole::Master);
        // equal priority, lower address: we win.
        let a = m.on_advert(t, "198.18.0.0".parse().unwrap(), 100, S);
        assert_eq!(m.role(), VrrpRole::Master);
        assert_eq!(sends(&a), vec![100]);
        // equal priority, higher address: step down (no priority 0: the other is master).
        let a = m.on_advert(t, peer(), 100, S);
        assert_eq!(roles(&a), vec![VrrpRole::Backup]);
        assert!(sends(&a).is_empty());
    }

    #[test]
    fn master_answers_priority_zero() {
        let t = Instant::now();
        let mut m = Machine::new(params(255, 3, "198.18.0.1"));
        m.start(t);
        assert_eq!(sends(&m.on_advert(t, peer(), 0, S)), vec![255]);
    }

    #[test]
    fn v3_learns_master_interval() {
        let t = Instant::now();
        let mut m = Machine::new(params(100, 3, "198.18.0.1"));
        m.start(t);
        m.on_advert(t, peer(), 200, Duration::from_millis(200));
        assert_eq!(
            m.master_down_interval(),
            Duration::from_millis(600) + Duration::from_millis(200) * 156 / 256
        );
    }

    #[test]
    fn fault_and_recovery() {
        let t = Instant::now();
        let mut m = Machine::new(params(255, 2, "198.18.0.1"));
        m.start(t);
        let a = m.set_fault(t, Some("eth0 down".into()));
        assert_eq!(sends(&a), vec![0]);
        assert_eq!(roles(&a), vec![VrrpRole::Fault]);
        assert_eq!(m.deadline(), None);
        assert!(m.on_advert(t, peer(), 100, S).is_empty());
        let a = m.set_fault(t, None);
        assert_eq!(roles(&a), vec![VrrpRole::Master]);
        // Non-owner recovers to backup.
        let mut m = Machine::new(params(100, 2, "198.18.0.1"));
        m.set_fault(t, Some("x".into()));
        assert_eq!(roles(&m.start(t)), vec![VrrpRole::Fault]);
        assert_eq!(roles(&m.set_fault(t, None)), vec![VrrpRole::Backup]);
    }

    #[test]
    fn weight_lowers_priority_and_master_advertises_it() {
        let t = Instant::now();
        let mut m = Machine::new(params(255, 2, "198.18.0.1"));
        m.start(t);
        assert_eq!(sends(&m.set_effective_priority(t, 195)), vec![195]);
        assert_eq!(m.effective_priority(), 195);
        // A peer at 200 now wins.
        assert_eq!(
            roles(&m.on_advert(t, peer(), 200, S)),
            vec![VrrpRole::Backup]
        );
    }

    #[test]
    fn sync_follow_and_stop() {
        let t = Instant::now();
        let mut m = Machine::new(params(100, 2, "198.18.0.1"));
        m.start(t);
        assert_eq!(
            roles(&m.follow(t, VrrpRole::Master, "sync".into())),
            vec![VrrpRole::Master]
        );
        let a = m.follow(t, VrrpRole::Backup, "sync".into());
        assert_eq!(sends(&a), vec![0]);
        assert_eq!(roles(&a), vec![VrrpRole::Backup]);
        // A faulty member stays faulty when the group goes BACKUP.
        assert_eq!(
            roles(&m.set_fault(t, Some("sync".into()))),
            vec![VrrpRole::Fault]
        );
        assert!(m.follow(t, VrrpRole::Backup, "sync".into()).is_empty());
        assert!(m.follow(t, VrrpRole::Master, "sync".into()).is_empty());
        assert_eq!(roles(&m.set_fault(t, None)), vec![VrrpRole::Backup]);
        m.on_timer(m.deadline().unwrap());
        assert_eq!(sends(&m.stop()), vec![0]);
    }

    #[test]
    fn want_master_waits_one_interval() {
        let t = Instant::now();
        let mut p = params(150, 2, "198.18.0.1");
        p.want_master = true;
        let mut m = Machine::new(p);
        m.start(t);
        assert_eq!(m.deadline(), Some(t + S + m.skew()));
    }
}
