//! The daemon's decisions, without IO: from what the daemon observes (configuration, health,
//! VRRP roles, interfaces, neighbours, the VIPs present on `lo`) to a plan (the desired kernel
//! state, which rings flows were served with, which VIPs to announce or withdraw). The IO shell
//! (`daemon`) gathers the observations, asks for a plan and carries it out.
//!
//! The rules held here, each under unit test:
//! - quorum with hysteresis (a service below quorum goes to its sorry server, its VRRP
//!   `track_service` reacts, a BGP service is withdrawn);
//! - a withdrawn BGP service keeps the tables it had when it was withdrawn (packets still in
//!   flight to it go where the other directors send them);
//! - a ring written while a BGP service was withdrawn served no flow: it must not become the
//!   previous ring (see [`crate::dataplane::writer::previous_ring_after_switch`]);
//! - a BGP VIP is announced exactly while the XDP program is attached and its service is at quorum.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, SocketAddr},
};

pub use crate::state::Observed;
use crate::{
    config::{Announce, Config},
    dataplane::desired::{DesiredState, ServiceAddr},
    health,
    overlay::Overlay,
    state::{self, Inputs, RealHealthInput, RealNote},
};

/// A service crossing its quorum (logged by the shell, told to VRRP's `track_service`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumChange {
    pub service: String,
    pub up: bool,
}

/// What to write after one planning round. The desired state itself is [`Controller::desired`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TablePlan {
    /// After the write: whether each ring now in force is one flows are dispatched with.
    pub ring_served: Vec<(ServiceAddr, bool)>,
    pub quorum_changes: Vec<QuorumChange>,
    /// Reasons for not forwarding to a real server that were not there in the last round.
    pub new_notes: Vec<RealNote>,
}

/// VIPs to put on `lo` (the BGP daemon then announces them) and to remove from it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnnouncePlan {
    pub add: Vec<IpAddr>,
    pub remove: Vec<IpAddr>,
}

/// The policy state carried from one round to the next.
#[derive(Debug, Default)]
pub struct Controller {
    quorum_up: BTreeMap<String, bool>,
    desired: DesiredState,
    notes: Vec<RealNote>,
    /// BGP VIPs this daemon wants on `lo`.
    announced: BTreeSet<IpAddr>,
    /// BGP VIPs withdrawn at least once by this run (their rings while withdrawn served nobody).
    withdrawn_once: BTreeSet<IpAddr>,
}

impl Controller {
    /// The desired kernel state of the last round.
    pub fn desired(&self) -> &DesiredState {
        &self.desired
    }

    /// Why real servers are not forwarded to, as of the last round.
    pub fn notes(&self) -> &[RealNote] {
        &self.notes
    }

    /// Service name -> at quorum (a service never evaluated counts as up).
    pub fn quorum_up(&self) -> &BTreeMap<String, bool> {
        &self.quorum_up
    }

    pub fn is_at_quorum(&self, service: &str) -> bool {
        self.quorum_up.get(service).copied().unwrap_or(true)
    }

    /// The BGP VIPs this daemon wants announced (and has put on `lo`).
    pub fn announced(&self) -> &BTreeSet<IpAddr> {
        &self.announced
    }

    /// One planning round for the kernel tables.
    pub fn plan_tables(&mut self, cfg: &Config, seen: &Observed<'_>) -> TablePlan {
        let quorum_changes = self.update_quorum(cfg, seen.health, seen.overlay);
        let inputs = Inputs {
            seen,
            quorum_up: &self.quorum_up,
        };
        let (mut desired, notes) = state::build(cfg, &inputs);
        self.freeze_withdrawn(cfg, &mut desired);
        let new_notes = notes
            .iter()
            .filter(|n| !self.notes.contains(n))
            .cloned()
            .collect();
        let ring_served = self.ring_marks(&desired);
        self.notes = notes;
        self.desired = desired;
        TablePlan {
            ring_served,
            quorum_changes,
            new_notes,
        }
    }

    fn update_quorum(
        &mut self,
        cfg: &Config,
        health: &BTreeMap<(String, SocketAddr), RealHealthInput>,
        overlay: &Overlay,
    ) -> Vec<QuorumChange> {
        let weights = state::alive_weights(cfg, health, overlay);
        let mut changes = Vec::new();
        for vs in &cfg.virtual_servers {
            let name = vs.name.clone();
            let was = self.is_at_quorum(&name);
            let alive = weights.get(&name).copied().unwrap_or(0);
            let now = health::quorum::next_state(was, alive, vs.quorum, vs.hysteresis);
            if now != was {
                changes.push(QuorumChange {
                    service: name.clone(),
                    up: now,
                });
            }
            self.quorum_up.insert(name, now);
        }
        changes
    }

    /// A BGP service below quorum is withdrawn (its VIP leaves `lo`). Until the routers have
    /// moved its flows away, packets still arrive: keep the tables the other directors share
    /// rather than re-dispatching flows of servers only this director sees as down (which would
    /// reset them). Nobody routes to a withdrawn service, so its tables stay frozen until it is
    /// back at quorum.
    fn freeze_withdrawn(&self, cfg: &Config, desired: &mut DesiredState) {
        for vs in &cfg.virtual_servers {
            if vs.announce != Announce::Bgp || self.is_at_quorum(&vs.name.clone()) {
                continue;
            }
            let addr = state::service_addr(vs);
            let old = self.desired.services.iter().find(|s| s.addr == addr);
            let new = desired.services.iter_mut().find(|s| s.addr == addr);
            if let (Some(old), Some(new)) = (old, new) {
                *new = old.clone();
            }
        }
    }

    /// Only for BGP VIPs that were withdrawn once: a ring written while the VIP is withdrawn
    /// served no flow; a full ring (every real server alive) while announced is what the other
    /// directors have, so it may become the previous ring.
    fn ring_marks(&self, desired: &DesiredState) -> Vec<(ServiceAddr, bool)> {
        desired
            .services
            .iter()
            .filter(|ds| self.withdrawn_once.contains(&ds.addr.vip))
            .filter_map(|ds| {
                if !self.announced.contains(&ds.addr.vip) {
                    Some((ds.addr, false))
                } else if ds.reals.iter().all(|r| r.alive) {
                    Some((ds.addr, true))
                } else {
                    None
                }
            })
            .collect()
    }

    /// BGP: which VIPs to put on or take off `lo`, given those present there now. A VIP shared
    /// by several services is announced while any of them can be served; one announced by a
    /// previous run that can no longer be served is withdrawn too.
    pub fn plan_announcements(
        &mut self,
        cfg: &Config,
        attached: bool,
        present: &BTreeSet<IpAddr>,
    ) -> AnnouncePlan {
        let mut wanted = BTreeSet::new();
        let mut bgp_vips = BTreeSet::new();
        for vs in &cfg.virtual_servers {
            if vs.announce != Announce::Bgp {
                continue;
            }
            let vip = vs.vip;
            bgp_vips.insert(vip);
            if attached && self.is_at_quorum(&vs.name.clone()) {
                wanted.insert(vip);
            }
        }
        let present: BTreeSet<IpAddr> = present.intersection(&bgp_vips).copied().collect();
        let add = wanted.difference(&present).copied().collect();
        let remove: Vec<IpAddr> = present
            .union(&self.announced)
            .filter(|v| !wanted.contains(v))
            .copied()
            .collect();
        self.withdrawn_once.extend(remove.iter().copied());
        self.announced = wanted;
        AnnouncePlan { add, remove }
    }

    /// Stop announcing everything (detaching): returns the VIPs to remove from `lo`.
    pub fn withdraw_all(&mut self) -> BTreeSet<IpAddr> {
        std::mem::take(&mut self.announced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config, net::Interface};

    /// "web" announced by BGP, quorum 2 with hysteresis 1, a TCP check, three real servers.
    const BGP: &str = r#"
announce = "bgp"
quorum = 2
hysteresis = 1
[virtual_server.check]
type = "tcp"
[[virtual_server.real_server]]
address = "198.18.0.11"
mac = "02:00:00:00:00:11"
[[virtual_server.real_server]]
address = "198.18.0.12"
mac = "02:00:00:00:00:12"
[[virtual_server.real_server]]
address = "198.18.0.13"
mac = "02:00:00:00:00:13"
"#;

    const VIP: &str = "198.18.0.100";

    fn iface() -> Interface {
        crate::net::testing::eth0()
    }

    /// Health with the listed real servers (last octet) down.
    fn health(down: &[u8]) -> BTreeMap<(String, SocketAddr), RealHealthInput> {
        [11u8, 12, 13]
            .iter()
            .map(|o| {
                let sock: SocketAddr = format!("198.18.0.{o}:80").parse().unwrap();
                let up = !down.contains(o);
                let input = RealHealthInput {
                    up,
                    weight: 1,
                    reason: if up { "ok" } else { "refused" }.into(),
                    suspect: false,
                };
                (("web".to_string(), sock), input)
            })
            .collect()
    }

    struct World {
        cfg: Config,
        ifaces: Vec<Interface>,
        neigh: BTreeMap<IpAddr, (u32, [u8; 6])>,
        masters: BTreeSet<IpAddr>,
    }

    impl World {
        fn new(src: &str) -> Self {
            Self {
                cfg: config::testing::web(src),
                ifaces: vec![iface()],
                neigh: BTreeMap::new(),
                masters: BTreeSet::new(),
            }
        }

        fn round(&self, c: &mut Controller, down: &[u8]) -> TablePlan {
            let h = health(down);
            let overlay = Overlay::default();
            let seen = Observed {
                interfaces: &self.ifaces,
                neighbours: &self.neigh,
                routes: &BTreeMap::new(),
                health: &h,
                master_vips: &self.masters,
                overlay: &overlay,
            };
            c.plan_tables(&self.cfg, &seen)
        }
    }

    fn alive(c: &Controller) -> Vec<bool> {
        c.desired().services[0]
            .reals
            .iter()
            .map(|r| r.alive)
            .collect()
    }

    fn vip() -> IpAddr {
        VIP.parse().unwrap()
    }

    #[test]
    fn quorum_goes_down_below_quorum_minus_hysteresis_and_up_at_quorum_plus_hysteresis() {
        let w = World::new(BGP);
        let mut c = Controller::default();
        assert!(w.round(&mut c, &[]).quorum_changes.is_empty());
        // 2 of 3 alive: 2 >= quorum - hysteresis (1): still up.
        assert!(w.round(&mut c, &[11]).quorum_changes.is_empty());
        assert!(c.is_at_quorum("web"));
        // 0 alive: down.
        let p = w.round(&mut c, &[11, 12, 13]);
        let down = QuorumChange {
            service: "web".into(),
            up: false,
        };
        assert_eq!(p.quorum_changes, vec![down]);
        // 2 alive < quorum + hysteresis (3): stays down.
        assert!(w.round(&mut c, &[13]).quorum_changes.is_empty());
        assert!(!c.is_at_quorum("web"));
        let p = w.round(&mut c, &[]);
        assert_eq!(p.quorum_changes.len(), 1);
        assert!(c.is_at_quorum("web"));
    }

    #[test]
    fn a_withdrawn_bgp_service_keeps_its_tables_until_back_at_quorum() {
        let w = World::new(BGP);
        let mut c = Controller::default();
        w.round(&mut c, &[]);
        w.round(&mut c, &[11]);
        assert_eq!(alive(&c), vec![false, true, true]);
        // Below quorum: withdrawn, and the tables stay as they were when it was last served.
        w.round(&mut c, &[11, 12, 13]);
        assert!(!c.is_at_quorum("web"));
        assert_eq!(alive(&c), vec![false, true, true], "frozen while withdrawn");
        w.round(&mut c, &[12, 13]);
        assert_eq!(alive(&c), vec![false, true, true], "still frozen");
        // Back at quorum (3 >= quorum + hysteresis): follows health again.
        w.round(&mut c, &[]);
        assert_eq!(alive(&c), vec![true, true, true]);
    }

    #[test]
    fn a_vrrp_or_always_service_below_quorum_is_not_frozen() {
        let w = World::new(&BGP.replace("announce = \"bgp\"", "announce = \"always\""));
        let mut c = Controller::default();
        w.round(&mut c, &[]);
        w.round(&mut c, &[11, 12, 13]);
        assert!(!c.is_at_quorum("web"));
        assert_eq!(alive(&c), vec![false, false, false]);
    }

    #[test]
    fn bgp_vip_is_announced_while_attached_and_at_quorum() {
        let w = World::new(BGP);
        let mut c = Controller::default();
        w.round(&mut c, &[]);
        let none = BTreeSet::new();
        let p = c.plan_announcements(&w.cfg, false, &none);
        assert_eq!(
            p,
            AnnouncePlan::default(),
            "not attached: nothing announced"
        );
        let p = c.plan_announcements(&w.cfg, true, &none);
        assert_eq!(p.add, vec![vip()]);
        let on_lo: BTreeSet<IpAddr> = [vip()].into();
        assert_eq!(
            c.plan_announcements(&w.cfg, true, &on_lo),
            AnnouncePlan::default()
        );
        w.round(&mut c, &[11, 12, 13]);
        let p = c.plan_announcements(&w.cfg, true, &on_lo);
        assert_eq!(p.remove, vec![vip()], "below quorum: withdrawn");
        assert!(c.announced().is_empty());
    }

    #[test]
    fn a_vip_left_on_lo_by_a_previous_run_is_withdrawn_when_it_cannot_be_served() {
        let w = World::new(BGP);
        let mut c = Controller::default();
        w.round(&mut c, &[11, 12, 13]);
        let on_lo: BTreeSet<IpAddr> = [vip(), "198.18.0.200".parse().unwrap()].into();
        let p = c.plan_announcements(&w.cfg, true, &on_lo);
        assert_eq!(
            p.remove,
            vec![vip()],
            "a non-BGP address on lo is left alone"
        );
        assert!(p.add.is_empty());
    }

    #[test]
    fn rings_written_while_withdrawn_are_marked_unserved_and_full_rings_when_back_served() {
        let w = World::new(BGP);
        let mut c = Controller::default();
        let announced: BTreeSet<IpAddr> = [vip()].into();
        let none = BTreeSet::new();
        assert!(
            w.round(&mut c, &[]).ring_served.is_empty(),
            "never withdrawn"
        );
        c.plan_announcements(&w.cfg, true, &none);
        // Local outage: withdrawn.
        w.round(&mut c, &[11, 12, 13]);
        c.plan_announcements(&w.cfg, true, &announced);
        // Recovery, one real back (still below quorum + hysteresis): the ring is unserved.
        let p = w.round(&mut c, &[12, 13]);
        let addr = c.desired().services[0].addr;
        assert_eq!(p.ring_served, vec![(addr, false)]);
        // Back at quorum and announced again, every real alive: served.
        w.round(&mut c, &[]);
        c.plan_announcements(&w.cfg, true, &none);
        let p = w.round(&mut c, &[]);
        assert_eq!(p.ring_served, vec![(addr, true)]);
        // Announced but one real down: no mark (the ring keeps its last mark).
        let p = w.round(&mut c, &[11]);
        assert!(p.ring_served.is_empty());
    }

    #[test]
    fn new_notes_are_reported_once() {
        let mut w = World::new(BGP);
        w.cfg.virtual_servers[0].real_servers[0].mac = None;
        let mut c = Controller::default();
        let p = w.round(&mut c, &[]);
        assert_eq!(p.new_notes.len(), 1, "{:?}", p.new_notes);
        assert!(w.round(&mut c, &[]).new_notes.is_empty());
        assert_eq!(c.notes().len(), 1);
    }
}
