//! What a peer's batch asks of this director's table, decided without IO: connections to
//! insert or refresh, state changes (ESTABLISHED/FIN/RST) to apply to synced entries, and
//! expired flows to remove. The map writer carries the plan out (`MapWriter::insert_synced_conns`,
//! `update_peers_states`, `remove_synced_conns`); [`taken_over_here`] says which synced
//! entries a peer's expiry must leave alone, and [`moved_away`] which own entries take a
//! peer's FIN or RST.
use std::time::Duration;

use lb_common::{conn_state, FlowEntry, FlowKey};

use crate::dataplane::sweep::{expires_in, Timeouts};
use crate::dataplane::writer::{SyncedConn, SyncedState};

use super::names::{flow_key, stamp_for, SlotIndex};
use super::record::Record;

/// The writer's work for one peer batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPlan {
    pub conns: Vec<SyncedConn>,
    pub states: Vec<SyncedState>,
    pub expired: Vec<FlowKey>,
    /// Connection records naming a service or real server this director does not have.
    pub unnamed: usize,
}

/// The plan for `records` sent by director `sender` (`None`: not known, IPVS's wire); a
/// health record is not table work: skipped here.
pub fn plan(
    records: &[Record],
    sender: Option<u32>,
    names: &SlotIndex,
    timeouts: &Timeouts,
    now_ns: u64,
) -> PeerPlan {
    let mut p = PeerPlan::default();
    for r in records {
        match r {
            Record::Conn(c) => match names.synced_conn(c, timeouts, now_ns) {
                Ok(s) => p.conns.push(SyncedConn {
                    relayed: sender.is_some_and(|id| id != c.origin),
                    ..s
                }),
                Err(_) => p.unnamed += 1,
            },
            Record::State(s) => p.states.push(SyncedState {
                flow: flow_key(&s.flow),
                state: s.state,
                last_seen_ns: stamp_for(s.state, s.remaining_ms, timeouts, now_ns),
            }),
            Record::Expiry(f) => p.expired.push(flow_key(f)),
            Record::Health(_) => {}
        }
    }
    p
}

/// An own entry idle here this long when a peer reports its flow's FIN or RST: the flow moved
/// away (ECMP re-hash, a withdrawn director, VRRP failover) and the peer forwards it now.
/// The flows' own packets refresh an entry far more often (a TCP flow that is still here
/// would also not have had its FIN cross another director).
pub const MOVED_AWAY_IDLE: Duration = Duration::from_secs(2);

/// Has this director's own flow moved to the peer that reports its FIN or RST? Then the
/// peer's state applies here too, so that ActiveConn drains where the flow began (an
/// operator waits for it before taking a withdrawn director down), instead of the entry
/// staying ESTABLISHED until its 15 minutes idle out. Its real server is unchanged, and a
/// packet that still comes here keeps the entry alive in its new state, as on the peer.
pub fn moved_away(e: &FlowEntry, now_ns: u64) -> bool {
    now_ns.saturating_sub(e.last_seen_ns) >= MOVED_AWAY_IDLE.as_nanos() as u64
}

/// A UDP entry carries no flags: one with more than this left here has been refreshed by
/// traffic here (or by a fresher peer) since its origin last spoke of it.
pub const UDP_TAKEOVER_SLACK: Duration = Duration::from_secs(2);

/// Has this director forwarded packets of a synced flow itself (the flow moved here: ECMP
/// re-hash, VRRP failover)? Then the origin's expiry only says the origin no longer sees the
/// flow, and the entry stays until it idles out here. TCP: the program ORs every forwarded
/// packet's flags into `flags_seen`, which the writer leaves 0 in synced entries.
pub fn taken_over_here(e: &FlowEntry, timeouts: &Timeouts, now_ns: u64) -> bool {
    if e.flags_seen != 0 {
        return true;
    }
    // The entry stores no protocol; its state does (UDP flows are in state UDP).
    e.state == conn_state::UDP && expires_in(e, timeouts, now_ns) > UDP_TAKEOVER_SLACK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::desired::{Protocol, ServiceAddr};
    use crate::dataplane::writer::{RealKey, ServiceSlots};
    use crate::sync::record::{ConnRecord, Flow, StateChange};
    use lb_common::PROTO_TCP;
    use std::collections::BTreeMap;

    const NOW: u64 = 1_000_000_000_000;

    fn names() -> SlotIndex {
        let svc = ServiceAddr {
            vip: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        };
        let reals = BTreeMap::from([(
            RealKey {
                addr: "198.18.0.11".parse().unwrap(),
                port: 80,
                sorry: false,
            },
            7,
        )]);
        SlotIndex::new(&BTreeMap::from([(svc, ServiceSlots { id: 3, reals })]))
    }

    fn flow(port: u16) -> Flow {
        Flow {
            proto: PROTO_TCP,
            client: "198.18.1.10".parse().unwrap(),
            client_port: port,
            vip: "198.18.0.100".parse().unwrap(),
            vip_port: 80,
        }
    }

    fn conn(port: u16, real: &str) -> Record {
        Record::Conn(ConnRecord {
            flow: flow(port),
            service_port: 80,
            real: real.parse().unwrap(),
            real_port: 80,
            state: conn_state::ESTABLISHED,
            remaining_ms: 900_000,
            origin: 2,
        })
    }

    #[test]
    fn each_record_kind_becomes_its_table_work() {
        let t = Timeouts::default(); // FIN_WAIT: 120 s
        let records = [
            conn(1, "198.18.0.11"),
            conn(2, "198.18.0.99"),
            Record::State(StateChange {
                flow: flow(1),
                state: conn_state::FIN_WAIT,
                remaining_ms: 20_000,
            }),
            Record::Expiry(flow(3)),
        ];
        let p = plan(&records, Some(2), &names(), &t, NOW);
        assert_eq!(p.conns.len(), 1);
        assert!(!p.conns[0].relayed, "sent by its origin");
        let relayed = plan(&records, Some(5), &names(), &t, NOW);
        assert!(relayed.conns[0].relayed, "origin 2, sent by 5");
        assert_eq!(p.unnamed, 1);
        assert_eq!(
            p.states,
            vec![SyncedState {
                flow: flow_key(&flow(1)),
                state: conn_state::FIN_WAIT,
                // 20 s left of 120 s: 100 s idle.
                last_seen_ns: NOW - 100_000_000_000,
            }]
        );
        assert_eq!(p.expired, vec![flow_key(&flow(3))]);
    }

    #[test]
    fn a_state_change_cannot_outlast_this_directors_timeout() {
        let t = Timeouts::default();
        let s = Record::State(StateChange {
            flow: flow(1),
            state: conn_state::CLOSE,
            remaining_ms: u32::MAX,
        });
        let p = plan(&[s], None, &names(), &t, NOW);
        assert_eq!(p.states[0].last_seen_ns, NOW);
    }

    fn entry(state: u8, flags_seen: u8, last_seen_ns: u64) -> FlowEntry {
        FlowEntry {
            state,
            flags_seen,
            sync_flags: lb_common::FLOW_F_SYNCED,
            last_seen_ns,
            ..FlowEntry::default()
        }
    }

    #[test]
    fn only_flows_forwarded_here_are_taken_over() {
        let t = Timeouts::default();
        // TCP: flags seen here, whatever the time left.
        assert!(taken_over_here(
            &entry(conn_state::ESTABLISHED, 0x10, 0),
            &t,
            NOW
        ));
        assert!(!taken_over_here(
            &entry(conn_state::ESTABLISHED, 0, NOW),
            &t,
            NOW
        ));
        // UDP (no flags): by the time left here.
        let udp_timeout = t.for_state(conn_state::UDP).as_nanos() as u64;
        let fresh = entry(conn_state::UDP, 0, NOW);
        let idle = entry(conn_state::UDP, 0, NOW - udp_timeout + 1_000_000_000);
        assert!(taken_over_here(&fresh, &t, NOW));
        assert!(!taken_over_here(&idle, &t, NOW));
    }
}
