//! Slots <-> names: peers name services and real servers by address (slots differ between
//! directors); the table and the ring buffer use this director's slots. Built from the map
//! writer's `slots()` after every apply, read by the sync task and the daemon.
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use lb_common::{FlowKey, SyncEvent};

use crate::dataplane::desired::{addr_words, words_addr, Protocol, ServiceAddr};
use crate::dataplane::sweep::Timeouts;
use crate::dataplane::writer::{ServiceSlots, SyncedConn};

use super::record::{ConnRecord, Flow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RealName {
    service: ServiceAddr,
    addr: IpAddr,
    port: u16,
}

/// Both directions of the slot naming of one apply.
#[derive(Clone, Debug, Default)]
pub struct SlotIndex {
    /// (service, real address, real port) -> (service id, real slot).
    by_name: HashMap<(ServiceAddr, IpAddr, u16), (u32, u32)>,
    /// real slot -> its name.
    by_slot: HashMap<u32, RealName>,
}

/// Why a peer's connection has no slot here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unnamed {
    /// No such service here (configurations differ between directors).
    Service,
    /// The service has no such real server here.
    Real,
}

impl Unnamed {
    pub fn reason(self) -> &'static str {
        match self {
            Unnamed::Service => "unknown_service",
            Unnamed::Real => "unknown_real",
        }
    }
}

fn protocol(proto: u8) -> Option<Protocol> {
    match proto {
        lb_common::PROTO_TCP => Some(Protocol::Tcp),
        lb_common::PROTO_UDP => Some(Protocol::Udp),
        _ => None,
    }
}

impl SlotIndex {
    pub fn new(slots: &BTreeMap<ServiceAddr, ServiceSlots>) -> Self {
        let mut ix = SlotIndex::default();
        for (svc, s) in slots {
            for (real, &slot) in &s.reals {
                ix.by_name
                    .insert((*svc, real.addr, real.port), (s.id, slot));
                ix.by_slot.insert(
                    slot,
                    RealName {
                        service: *svc,
                        addr: real.addr,
                        port: real.port,
                    },
                );
            }
        }
        ix
    }

    /// A peer's connection in this director's slots; `now_ns` is CLOCK_MONOTONIC_COARSE, so the
    /// entry expires when it does on its origin.
    pub fn synced_conn(
        &self,
        r: &ConnRecord,
        timeouts: &Timeouts,
        now_ns: u64,
    ) -> Result<SyncedConn, Unnamed> {
        let proto = protocol(r.flow.proto).ok_or(Unnamed::Service)?;
        let service = ServiceAddr {
            vip: r.flow.vip,
            port: r.service_port,
            protocol: proto,
        };
        let &(service_id, real_id) = self
            .by_name
            .get(&(service, r.real, r.real_port))
            .ok_or_else(|| self.why_unnamed(&service))?;
        Ok(SyncedConn {
            flow: flow_key(&r.flow),
            service_id,
            real_id,
            state: r.state,
            last_seen_ns: stamp_for(r.state, r.remaining_ms, timeouts, now_ns),
            origin: r.origin,
            relayed: false,
        })
    }

    fn why_unnamed(&self, service: &ServiceAddr) -> Unnamed {
        if self.by_name.keys().any(|(s, _, _)| s == service) {
            Unnamed::Real
        } else {
            Unnamed::Service
        }
    }

    /// The record of one of this director's ring-buffer events (a new flow or its state change),
    /// with its state's full timeout left. `None` when the slot is no longer this real server's
    /// (a change raced the event) or names nothing.
    pub fn event_record(
        &self,
        ev: &SyncEvent,
        timeouts: &Timeouts,
        origin: u32,
    ) -> Option<ConnRecord> {
        let name = self.by_slot.get(&ev.real_id)?;
        let flow = flow_of(&ev.flow)?;
        Some(ConnRecord {
            flow,
            service_port: name.service.port,
            real: name.addr,
            real_port: name.port,
            state: ev.state,
            remaining_ms: timeouts
                .for_state(ev.state)
                .as_millis()
                .min(u32::MAX as u128) as u32,
            origin,
        })
    }

    /// The record of a table entry (the periodic full resend), `remaining_ms` as given.
    pub fn entry_record(
        &self,
        key: &FlowKey,
        real_id: u32,
        state: u8,
        remaining_ms: u32,
        origin: u32,
    ) -> Option<ConnRecord> {
        let name = self.by_slot.get(&real_id)?;
        Some(ConnRecord {
            flow: flow_of(key)?,
            service_port: name.service.port,
            real: name.addr,
            real_port: name.port,
            state,
            remaining_ms,
            origin,
        })
    }
}

/// The activity stamp that makes an entry in `state` expire `remaining_ms` from `now_ns` here
/// (at most the state's full timeout: a peer cannot extend this director's timeouts).
pub fn stamp_for(state: u8, remaining_ms: u32, timeouts: &Timeouts, now_ns: u64) -> u64 {
    let timeout = timeouts.for_state(state).as_nanos() as u64;
    let remaining = u64::from(remaining_ms)
        .saturating_mul(1_000_000)
        .min(timeout);
    now_ns.saturating_sub(timeout - remaining)
}

/// The table key of a flow.
pub fn flow_key(f: &Flow) -> FlowKey {
    let (src, family) = addr_words(f.client);
    let (dst, _) = addr_words(f.vip);
    FlowKey {
        src,
        dst,
        sport: f.client_port.to_be(),
        dport: f.vip_port.to_be(),
        proto: f.proto,
        family,
        _pad: [0; 2],
    }
}

/// The flow of a table key (`None` for a protocol no service has).
pub fn flow_of(k: &FlowKey) -> Option<Flow> {
    protocol(k.proto)?;
    Some(Flow {
        proto: k.proto,
        client: words_addr(k.src, k.family),
        client_port: u16::from_be(k.sport),
        vip: words_addr(k.dst, k.family),
        vip_port: u16::from_be(k.dport),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::writer::RealKey;
    use lb_common::conn_state;

    fn svc() -> ServiceAddr {
        ServiceAddr {
            vip: "198.18.0.100".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        }
    }

    fn index() -> SlotIndex {
        let reals = BTreeMap::from([(
            RealKey {
                addr: "198.18.0.11".parse().unwrap(),
                port: 80,
                sorry: false,
            },
            7,
        )]);
        SlotIndex::new(&BTreeMap::from([(svc(), ServiceSlots { id: 3, reals })]))
    }

    fn record() -> ConnRecord {
        ConnRecord {
            flow: Flow {
                proto: 6,
                client: "198.18.1.10".parse().unwrap(),
                client_port: 40_000,
                vip: "198.18.0.100".parse().unwrap(),
                vip_port: 80,
            },
            service_port: 80,
            real: "198.18.0.11".parse().unwrap(),
            real_port: 80,
            state: conn_state::ESTABLISHED,
            remaining_ms: 600_000,
            origin: 2,
        }
    }

    #[test]
    fn a_peer_record_gets_this_directors_slots_and_its_remaining_time() {
        let t = Timeouts::default(); // ESTABLISHED: 900 s
        let c = index()
            .synced_conn(&record(), &t, 1_000_000_000_000)
            .unwrap();
        assert_eq!((c.service_id, c.real_id, c.origin), (3, 7, 2));
        // 300 s of the 900 s already idle on the origin.
        assert_eq!(c.last_seen_ns, 1_000_000_000_000 - 300_000_000_000);
        assert_eq!(flow_of(&c.flow), Some(record().flow));
    }

    #[test]
    fn unknown_services_and_reals_are_named() {
        let t = Timeouts::default();
        let mut r = record();
        r.real = "198.18.0.99".parse().unwrap();
        assert_eq!(index().synced_conn(&r, &t, 0), Err(Unnamed::Real));
        r.service_port = 443;
        assert_eq!(index().synced_conn(&r, &t, 0), Err(Unnamed::Service));
    }

    #[test]
    fn an_event_becomes_the_record_peers_decode() {
        let ev = SyncEvent {
            flow: flow_key(&record().flow),
            real_id: 7,
            service_id: 3,
            kind: lb_common::sync_event::NEW,
            state: conn_state::SYN_RECV,
            ..Default::default()
        };
        let r = index().event_record(&ev, &Timeouts::default(), 9).unwrap();
        assert_eq!(r.real, record().real);
        assert_eq!(r.state, conn_state::SYN_RECV);
        assert_eq!(r.origin, 9);
        assert_eq!(r.remaining_ms, 60_000);
        let gone = SyncEvent { real_id: 8, ..ev };
        assert!(index()
            .event_record(&gone, &Timeouts::default(), 9)
            .is_none());
    }
}
