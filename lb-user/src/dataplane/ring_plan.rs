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

impl RingInputs {
    /// Whether the two give the same table up to slot ids: same identities and weights in the
    /// same order, same size and scheduler (a table built from one is the other's after
    /// [`RingInputs::with_slots`]).
    pub fn same_shape(&self, other: &RingInputs) -> bool {
        self.table_size == other.table_size
            && self.round_robin == other.round_robin
            && self.backends.len() == other.backends.len()
            && self
                .backends
                .iter()
                .zip(&other.backends)
                .all(|(a, b)| a.identity == b.identity && a.weight == b.weight)
    }

    /// `table` built from inputs of the same shape whose slots were the backends' positions
    /// (see [`positional_ring_inputs`]), with each position replaced by this backend's slot.
    pub fn with_slots(&self, mut table: Vec<u32>) -> Vec<u32> {
        let slots = self.slots();
        for v in &mut table {
            *v = slots[*v as usize];
        }
        table
    }
}

impl RingInputs {
    /// Each backend's slot, by position: what a positional table's entries stand for.
    pub fn slots(&self) -> Vec<u32> {
        self.backends.iter().map(|b| b.slot).collect()
    }
}

/// The ring inputs of `ds` with each backend's position in place of its slot: known before the
/// real servers have slots, so every changed ring of an apply can be built at once, up front.
pub fn positional_ring_inputs(ds: &DesiredService) -> RingInputs {
    ring_inputs_with(ds, |_, position| position as u32)
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
    ring_inputs_with(ds, |r, _| {
        slots[&RealKey {
            addr: r.addr,
            port: r.port,
            sorry: false,
        }]
    })
}

/// The ring inputs of `ds`, the value of each backend given by `slot_of(real, position)`.
fn ring_inputs_with(
    ds: &DesiredService,
    slot_of: impl Fn(&DesiredReal, usize) -> u32,
) -> RingInputs {
    let round_robin = matches!(
        ds.scheduler,
        Scheduler::RoundRobin | Scheduler::WeightedRoundRobin
    );
    let backends = ds
        .reals
        .iter()
        .filter(|r| r.alive)
        .enumerate()
        .map(|(position, r)| {
            let mut identity = r.addr.to_string().into_bytes();
            identity.extend_from_slice(&r.port.to_be_bytes());
            Backend {
                identity,
                // rr ignores weights (except 0 = quiescent), as in IPVS.
                weight: if ds.scheduler == Scheduler::RoundRobin {
                    r.weight.min(1)
                } else {
                    r.weight
                },
                slot: slot_of(r, position),
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
    use super::super::maglev;
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

    fn service(weights: &[u32]) -> DesiredService {
        use super::super::desired::{Protocol, ServiceAddr};
        use std::net::IpAddr;
        DesiredService {
            addr: ServiceAddr {
                vip: IpAddr::from([198, 18, 0, 1]),
                port: 80,
                protocol: Protocol::Tcp,
            },
            active: true,
            scheduler: Scheduler::Maglev,
            hash_client_only: false,
            persistence: None,
            table_size: 4093,
            reals: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| DesiredReal {
                    addr: IpAddr::from([198, 19, 0, i as u8]),
                    port: 8080,
                    weight,
                    alive: i != 2,
                    mac: [2, 0, 0, 0, 0, i as u8],
                    src_mac: [2, 0, 0, 0, 0, 0xff],
                    ifindex: 1,
                    tx_port: 0,
                    tunnel: None,
                })
                .collect(),
            sorry: None,
        }
    }

    fn slots_of(ds: &DesiredService, base: u32) -> BTreeMap<RealKey, u32> {
        ds.reals
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let key = RealKey {
                    addr: r.addr,
                    port: r.port,
                    sorry: false,
                };
                (key, base + 3 * i as u32)
            })
            .collect()
    }

    #[test]
    fn a_positional_table_with_slots_is_the_table_built_with_slots() {
        let ds = service(&[1, 2, 1, 0, 5, 1]);
        let inputs = ring_inputs(&ds, &slots_of(&ds, 40));
        let positional = positional_ring_inputs(&ds);
        assert!(positional.same_shape(&inputs));
        let table = maglev::build(&positional.backends, positional.table_size);
        assert_eq!(
            inputs.with_slots(table),
            maglev::build(&inputs.backends, inputs.table_size)
        );
    }

    #[test]
    fn a_changed_weight_or_size_is_another_shape() {
        let ds = service(&[1, 1, 1, 1]);
        let base = positional_ring_inputs(&ds);
        assert!(ring_inputs(&ds, &slots_of(&ds, 7)).same_shape(&base));
        assert!(!positional_ring_inputs(&service(&[1, 2, 1, 1])).same_shape(&base));
        let mut bigger = ds.clone();
        bigger.table_size = 65_537;
        assert!(!positional_ring_inputs(&bigger).same_shape(&base));
        let mut rr = ds.clone();
        rr.scheduler = Scheduler::RoundRobin;
        assert!(!positional_ring_inputs(&rr).same_shape(&base));
    }

    #[test]
    fn the_first_ring_has_no_previous_ring() {
        assert_eq!(switch(true, false, 0, false), PreviousRing::None);
    }
}
