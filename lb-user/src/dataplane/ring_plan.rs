//! The pure part of writing a service: which real servers it wants, what its ring is built from,
//! the service entry's flags, and the rule that chooses the previous ring. The writer
//! ([`super::writer`]) does the IO in the order these decide.
use std::collections::BTreeMap;

use lb_common::{
    Service, NO_REAL, SCHED_MAGLEV, SCHED_ROUND_ROBIN, SVC_F_ACTIVE, SVC_F_FORWARD_FRAGMENTS,
    SVC_F_HASH_SRC_ONLY, SVC_F_PERSISTENT,
};

use super::{
    desired::{DesiredReal, DesiredService, Scheduler},
    maglev::Backend,
    writer::RealKey,
};

/// What a ring is built from: an apply with the same inputs skips the build (a reload of 1,000
/// unchanged services must not rebuild 1,000 Maglev tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInputs {
    pub backends: Vec<Backend>,
    pub table_size: u32,
    pub round_robin: bool,
}

/// What the previous ring becomes when a service's ring is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousRing {
    /// The previous ring stays as it is (the ring being replaced served no flow).
    Keep,
    /// The ring being replaced becomes the previous ring.
    Current,
    /// No previous ring.
    None,
}

/// The facts [`previous_ring_after_switch`] decides from.
#[derive(Clone, Copy, Debug)]
pub struct RingSwitch {
    /// Flows were dispatched with the ring being replaced (false: written while the service was
    /// withdrawn from the routers).
    pub current_served: bool,
    pub round_robin: bool,
    /// Slots of the ring being replaced (0: none).
    pub current_len: u32,
    /// The new ring has no slot (no real server alive).
    pub new_is_empty: bool,
}

/// The most delicate rule of the writer: mid-stream packets without a table entry are sent by the
/// previous ring, so it must be a ring flows really were dispatched with. Maglev only: a previous
/// round-robin sequence says nothing about where a flow went. A ring no flow was dispatched with
/// (written while the service was withdrawn) is skipped: the previous ring, if any, stays. An
/// empty new ring (nothing alive) keeps nothing: its flows are dispatched afresh anyway.
pub fn previous_ring_after_switch(s: RingSwitch) -> PreviousRing {
    if s.round_robin || s.new_is_empty {
        PreviousRing::None
    } else if !s.current_served {
        PreviousRing::Keep
    } else if s.current_len > 0 {
        PreviousRing::Current
    } else {
        PreviousRing::None
    }
}

/// The real servers a service wants, keyed as in the mirror (the sorry server last).
pub fn wanted_reals(ds: &DesiredService) -> Vec<(RealKey, &DesiredReal)> {
    let key = |r: &DesiredReal, sorry| RealKey {
        addr: r.addr,
        port: r.port,
        sorry,
    };
    ds.reals
        .iter()
        .map(|r| (key(r, false), r))
        .chain(ds.sorry.iter().map(|s| (key(s, true), s)))
        .collect()
}

/// What the ring of `ds` is built from: its live real servers, identified by address and port
/// (never by slot, so every director builds the same ring).
pub fn ring_inputs(ds: &DesiredService, slots: &BTreeMap<RealKey, u32>) -> RingInputs {
    let round_robin = matches!(
        ds.scheduler,
        Scheduler::RoundRobin | Scheduler::WeightedRoundRobin
    );
    let backends = ds
        .reals
        .iter()
        .filter(|r| r.alive)
        .map(|r| {
            let mut identity = r.addr.to_string().into_bytes();
            identity.extend_from_slice(&r.port.to_be_bytes());
            let key = RealKey {
                addr: r.addr,
                port: r.port,
                sorry: false,
            };
            Backend {
                identity,
                // rr ignores weights (except 0 = quiescent), as in IPVS.
                weight: if ds.scheduler == Scheduler::RoundRobin {
                    r.weight.min(1)
                } else {
                    r.weight
                },
                slot: slots[&key],
            }
        })
        .collect();
    RingInputs {
        backends,
        table_size: ds.table_size,
        round_robin,
    }
}

/// The service entry's fields that follow from the desired service alone.
pub fn set_service_fields(
    value: &mut Service,
    ds: &DesiredService,
    slots: &BTreeMap<RealKey, u32>,
) {
    let round_robin = matches!(
        ds.scheduler,
        Scheduler::RoundRobin | Scheduler::WeightedRoundRobin
    );
    value.sched = if round_robin {
        SCHED_ROUND_ROBIN
    } else {
        SCHED_MAGLEV
    };
    value.flags = 0;
    if ds.active {
        value.flags |= SVC_F_ACTIVE;
    }
    if ds.persistence.is_some() {
        value.flags |= SVC_F_PERSISTENT;
    }
    // Fragments are forwarded only where every fragment of a datagram lands on the same real
    // server (client-address hashing); round robin would pick anew for each fragment, so a
    // persistent rr/wrr service does not take them.
    if (ds.hash_client_only || ds.scheduler == Scheduler::SourceHash) && !round_robin {
        value.flags |= SVC_F_HASH_SRC_ONLY | SVC_F_FORWARD_FRAGMENTS;
    }
    value.sorry_real = ds
        .sorry
        .as_ref()
        .map(|s| {
            slots[&RealKey {
                addr: s.addr,
                port: s.port,
                sorry: true,
            }]
        })
        .unwrap_or(NO_REAL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(served: bool, rr: bool, len: u32, empty: bool) -> PreviousRing {
        previous_ring_after_switch(RingSwitch {
            current_served: served,
            round_robin: rr,
            current_len: len,
            new_is_empty: empty,
        })
    }

    #[test]
    fn a_served_maglev_ring_becomes_the_previous_ring() {
        assert_eq!(switch(true, false, 65_537, false), PreviousRing::Current);
    }

    #[test]
    fn an_unserved_ring_never_becomes_the_previous_ring() {
        assert_eq!(switch(false, false, 65_537, false), PreviousRing::Keep);
        assert_eq!(switch(false, false, 0, false), PreviousRing::Keep);
    }

    #[test]
    fn round_robin_and_empty_rings_keep_no_previous_ring() {
        assert_eq!(switch(true, true, 65_537, false), PreviousRing::None);
        assert_eq!(switch(false, true, 65_537, false), PreviousRing::None);
        assert_eq!(switch(true, false, 65_537, true), PreviousRing::None);
        assert_eq!(switch(false, false, 65_537, true), PreviousRing::None);
    }

    #[test]
    fn the_first_ring_has_no_previous_ring() {
        assert_eq!(switch(true, false, 0, false), PreviousRing::None);
    }
}
