//! Connection sync: the XDP program's events through the `SYNC_EVENTS` ring buffer (real
//! object, BPF_PROG_TEST_RUN; needs root) — a new flow and FIN/RST state changes are reported
//! exactly when sync is enabled, with every field of the event checked.
mod common;

use common::*;
use lb_common::{conn_state, stat, sync_event, FlowKey, SyncEvent, AF_INET, PROTO_TCP};
use xlb::dataplane::desired::{addr_words, Protocol};

const VIP: &str = "198.18.0.100";
const VIP_B: [u8; 4] = [198, 18, 0, 100];
const CLIENT: [u8; 4] = [198, 18, 0, 10];

fn one_real() -> Harness {
    let mut h = Harness::new(4096);
    h.apply(&state(vec![service(
        VIP,
        80,
        Protocol::Tcp,
        vec![real("198.18.0.11", 1, 1)],
    )]));
    h
}

fn events(ring: &mut aya::maps::RingBuf<aya::maps::MapData>) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), std::mem::size_of::<SyncEvent>());
        // SAFETY: SyncEvent is plain data of that size; read unaligned.
        out.push(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const SyncEvent) });
    }
    out
}

fn flow_key(sport: u16) -> FlowKey {
    let (src, _) = addr_words(v4("198.18.0.10"));
    let (dst, _) = addr_words(v4(VIP));
    FlowKey {
        src,
        dst,
        sport: sport.to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: AF_INET,
        _pad: [0; 2],
    }
}

#[test]
fn no_events_unless_sync_is_enabled() {
    xtask::require!(BPF);
    let mut h = one_real();
    let mut ring = h.writer.maps_mut().sync_events.take().unwrap();
    for f in ["S", "A", "FA", "R"] {
        assert_eq!(h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, f)).0, XDP_TX);
    }
    assert!(events(&mut ring).is_empty());
    assert_eq!(h.counters()[stat::SYNC_RING_FULL as usize], 0);
}

#[test]
fn a_new_flow_and_its_fin_and_rst_are_reported_once_each() {
    xtask::require!(BPF);
    let mut h = one_real();
    h.writer.maps_mut().set_sync_enabled(true).unwrap();
    let mut ring = h.writer.maps_mut().sync_events.take().unwrap();
    let slots = h.writer.slots();
    let svc = slots.values().next().unwrap();
    let (_, &real_slot) = svc.reals.iter().next().unwrap();

    assert_eq!(h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "S")).0, XDP_TX);
    // ESTABLISHED is reported once (the peers count the flow active); further ACKs are not.
    for _ in 0..3 {
        h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "A"));
    }
    let evs = events(&mut ring);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(
        (evs[1].kind, evs[1].state, evs[1].flow),
        (sync_event::STATE, conn_state::ESTABLISHED, flow_key(40_000))
    );
    let e = evs[0];
    assert_eq!(e.flow, flow_key(40_000));
    assert_eq!(e.kind, sync_event::NEW);
    assert_eq!(e.state, conn_state::SYN_RECV);
    assert_eq!(e.real_id, real_slot);
    assert_eq!(e.service_id, svc.id);
    assert_eq!(e._pad, [0; 2]);

    h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "FA"));
    h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "A")); // stays FIN_WAIT: no event
    h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "R"));
    let evs = events(&mut ring);
    let kinds: Vec<(u8, u8)> = evs.iter().map(|e| (e.kind, e.state)).collect();
    assert_eq!(
        kinds,
        vec![
            (sync_event::STATE, conn_state::FIN_WAIT),
            (sync_event::STATE, conn_state::CLOSE)
        ]
    );
    assert!(evs.iter().all(|e| e.flow == flow_key(40_000)));

    // Turned off again: silent.
    h.writer.maps_mut().set_sync_enabled(false).unwrap();
    h.run(&tcp4(CLIENT, 40_001, VIP_B, 80, "S"));
    assert!(events(&mut ring).is_empty());
}

/// Undrained, the ring fills; what does not fit is counted and forwarding goes on.
#[test]
fn a_full_ring_loses_events_counted_never_packets() {
    xtask::require!(BPF);
    let mut h = one_real();
    h.writer.maps_mut().set_sync_enabled(true).unwrap();
    let n = 20_000u32; // > the 16,384 events a 1 MiB ring holds
    for i in 0..n {
        let sport = 1024 + (i % 60_000) as u16;
        let src = [198, 18, 1 + (i / 60_000) as u8, 10];
        assert_eq!(h.run(&tcp4(src, sport, VIP_B, 80, "S")).0, XDP_TX);
    }
    let lost = h.counters()[stat::SYNC_RING_FULL as usize];
    let mut ring = h.writer.maps_mut().sync_events.take().unwrap();
    let got = events(&mut ring).len() as u64;
    assert!(lost > 0, "ring never filled");
    assert_eq!(got + lost, n as u64, "every event delivered or counted");
}

fn two_reals() -> Harness {
    let mut h = Harness::new(4096);
    h.apply(&state(vec![service(
        VIP,
        80,
        Protocol::Tcp,
        vec![real("198.18.0.11", 1, 1), real("198.18.0.12", 2, 1)],
    )]));
    h
}

/// A peer's flow, written by the writer's one function for synced entries, is forwarded to the
/// peer's real server whatever this director's ring says; an own entry is never overwritten;
/// expiry from the peer removes only synced entries.
#[test]
fn synced_entries_forward_to_the_peers_real_server() {
    use xlb::dataplane::writer::SyncedConn;
    xtask::require!(BPF);
    let mut h = two_reals();
    let slots = h.writer.slots();
    let svc = slots.values().next().unwrap();
    let slot_of = |addr: &str| {
        *svc.reals
            .iter()
            .find(|(k, _)| k.addr == v4(addr))
            .unwrap()
            .1
    };
    // Which real this director's ring picks for port 40000 (a SYN), then clear that entry.
    let (_, out) = h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "S"));
    let ring_pick = if out[0..6] == real_mac(1) { 1 } else { 2 };
    let other = 3 - ring_pick;
    let other_addr = format!("198.18.0.1{other}");
    let flow = flow_key(40_001);
    let now = xlb::dataplane::sweep::monotonic_ns();
    let conn = |f: FlowKey| SyncedConn {
        flow: f,
        service_id: svc.id,
        real_id: slot_of(&other_addr),
        state: conn_state::ESTABLISHED,
        last_seen_ns: now,
        origin: 2,
        relayed: false,
    };
    // Port 40001 synced to the real the ring would not necessarily pick; port 40000 is own.
    let r = h
        .writer
        .insert_synced_conns(&[conn(flow), conn(flow_key(40_000))])
        .unwrap();
    assert_eq!((r.written, r.own_kept, r.unknown_slot), (1, 1, 0));
    let (action, out) = h.run(&tcp4(CLIENT, 40_001, VIP_B, 80, "A"));
    assert_eq!(action, XDP_TX);
    assert_eq!(out[0..6], real_mac(other));
    assert_eq!(counter_of(&h, stat::CONN_HIT), 1);
    let e = h.writer.maps().conn_table.get(&flow, 0).unwrap();
    assert_eq!((e.sync_flags, e.origin), (lb_common::FLOW_F_SYNCED, 2));
    // The own entry stays own, in its way of the set table (IPv4).
    assert!(h.writer.maps().conn_sets.holds(&flow_key(40_000)));
    assert!(h
        .writer
        .maps()
        .conn_table
        .get(&flow_key(40_000), 0)
        .is_err());
    // A slot of another service is refused.
    let mut bad = conn(flow_key(40_002));
    bad.service_id += 1;
    assert_eq!(
        h.writer.insert_synced_conns(&[bad]).unwrap().unknown_slot,
        1
    );
    // Expiry from the peer: only the synced entry this director never forwarded goes; the one
    // it forwards now (port 40001, taken over) and the own flow stay.
    let untouched = flow_key(40_003);
    h.writer.insert_synced_conns(&[conn(untouched)]).unwrap();
    let t = xlb::dataplane::sweep::Timeouts::default();
    let removed = h
        .writer
        .remove_synced_conns(&[flow, flow_key(40_000), untouched], &t)
        .unwrap();
    assert_eq!(removed, 1);
    assert!(h.writer.maps().conn_table.get(&untouched, 0).is_err());
    assert!(
        h.writer.maps().conn_table.get(&flow, 0).is_ok(),
        "a flow forwarded here is this director's now"
    );
    assert!(
        h.writer.maps().conn_sets.holds(&flow_key(40_000)),
        "the own flow stays"
    );
}

/// The records of director `a`'s ring buffer as its sync task makes them (a FIN/RST is a
/// state-change record), through the signed wire and back.
fn ring_records(
    a: &Harness,
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    out: &mut xlb::sync::Outbound,
    inb: &mut xlb::sync::Inbound,
) -> Vec<xlb::sync::Record> {
    use xlb::sync::{names::SlotIndex, Record, StateChange};
    let names = SlotIndex::new(&a.writer.slots());
    let t = xlb::dataplane::sweep::Timeouts::default();
    let records: Vec<Record> = events(ring)
        .iter()
        .map(|ev| {
            let c = names.event_record(ev, &t, 1).unwrap();
            if ev.kind == sync_event::STATE {
                Record::State(StateChange {
                    flow: c.flow,
                    state: c.state,
                    remaining_ms: c.remaining_ms,
                })
            } else {
                Record::Conn(c)
            }
        })
        .collect();
    wire(&records, out, inb)
}

fn wire(
    records: &[xlb::sync::Record],
    out: &mut xlb::sync::Outbound,
    inb: &mut xlb::sync::Inbound,
) -> Vec<xlb::sync::Record> {
    let now = 1_000_000;
    out.encode(records, now)
        .iter()
        .flat_map(|d| inb.receive(d, now).unwrap().records)
        .collect()
}

/// Director B's census of its one real server: (active, inactive, synced active, synced
/// inactive).
fn census_of(b: &Harness) -> (u64, u64, u64, u64) {
    let t = xlb::dataplane::sweep::Timeouts::default();
    let c = xlb::dataplane::sweep::census(b.writer.maps(), &t).unwrap();
    let n = c.per_real.values().next().copied().unwrap_or_default();
    (n.active, n.inactive, n.synced_active, n.synced_inactive)
}

/// Two program instances as two directors with sync: A dispatches flows and reports them
/// (its ring buffer, through the signed wire), B carries out what A says through its writer.
struct TwoDirectors {
    a: Harness,
    b: Harness,
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    out: xlb::sync::Outbound,
    inb: xlb::sync::Inbound,
}

impl TwoDirectors {
    fn new() -> Self {
        use xlb::sync::{Inbound, Outbound, SyncKey};
        let key = || SyncKey::new(b"the two directors' key".to_vec()).unwrap();
        let mut a = one_real();
        a.writer.maps_mut().set_sync_enabled(true).unwrap();
        let ring = a.writer.maps_mut().sync_events.take().unwrap();
        TwoDirectors {
            a,
            b: one_real(),
            ring,
            out: Outbound::new(key(), 1, 7, 1400),
            inb: Inbound::new(key(), 2, 60_000),
        }
    }

    /// A's events since the last call, as B receives them.
    fn a_says(&mut self) -> Vec<xlb::sync::Record> {
        ring_records(&self.a, &mut self.ring, &mut self.out, &mut self.inb)
    }

    /// `records` through the wire from A to B.
    fn send_to_b(&mut self, records: &[xlb::sync::Record]) -> Vec<xlb::sync::Record> {
        wire(records, &mut self.out, &mut self.inb)
    }

    /// B carries out A's records: (state changes applied, synced entries removed).
    fn apply_on_b(
        &mut self,
        records: &[xlb::sync::Record],
    ) -> (xlb::dataplane::writer::StatesApplied, usize) {
        use xlb::dataplane::sweep::{monotonic_ns, Timeouts};
        let t = Timeouts::default();
        let names = xlb::sync::names::SlotIndex::new(&self.b.writer.slots());
        let plan = xlb::sync::apply::plan(records, Some(1), &names, &t, monotonic_ns());
        let w = &mut self.b.writer;
        w.insert_synced_conns(&plan.conns).unwrap();
        let states = w.update_peers_states(&plan.states).unwrap();
        (states, w.remove_synced_conns(&plan.expired, &t).unwrap())
    }
}

/// Issue 20: a peer's FIN moves its synced entry out of ActiveConn here, and its expiry on the
/// peer (the peer's sweep) removes the entry here. Two program instances are two directors:
/// A dispatches the flow, B learns it through the signed wire and the writer.
#[test]
fn a_peers_fin_drains_active_conn_here_and_its_expiry_removes_the_entry() {
    use xlb::sync::Record;
    xtask::require!(BPF);
    let mut d = TwoDirectors::new();
    let t = xlb::dataplane::sweep::Timeouts::default();
    let synced = |(states, removed): (xlb::dataplane::writer::StatesApplied, usize)| {
        (states.synced, removed)
    };
    // A: SYN, ACK. B learns the flow from A's events: new (SYN_RECV), then ESTABLISHED.
    d.a.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "S"));
    d.a.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "A"));
    let learnt = d.a_says();
    assert!(
        matches!(learnt[..], [Record::Conn(_), Record::State(s)] if s.state == conn_state::ESTABLISHED),
        "{learnt:?}"
    );
    assert_eq!(synced(d.apply_on_b(&learnt)), (1, 0));
    assert_eq!(
        census_of(&d.b),
        (1, 0, 1, 0),
        "B counts A's flow as active, synced"
    );

    // A sees the client's FIN: one state-change record; B's entry leaves ActiveConn.
    d.a.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "FA"));
    let fin = d.a_says();
    assert!(
        matches!(fin[..], [Record::State(s)] if s.state == conn_state::FIN_WAIT),
        "{fin:?}"
    );
    assert_eq!(synced(d.apply_on_b(&fin)), (1, 0));
    assert_eq!(
        census_of(&d.b),
        (0, 1, 0, 1),
        "B's counters drained with A's"
    );
    let e =
        d.b.writer
            .maps()
            .conn_table
            .get(&flow_key(40_000), 0)
            .unwrap();
    assert_eq!(e.state, conn_state::FIN_WAIT);
    let left = xlb::dataplane::sweep::expires_in(&e, &t, xlb::dataplane::sweep::monotonic_ns());
    assert!(left <= t.fin_wait && left + std::time::Duration::from_secs(5) > t.fin_wait);

    // A's sweep (FIN_WAIT timeout 0 there) removes its own flow and reports it; the expiry
    // record removes B's entry at once, whatever time B's own clock still gave it.
    let zero = xlb::dataplane::sweep::Timeouts {
        fin_wait: std::time::Duration::ZERO,
        ..t
    };
    // (A way's stamp counts in units of 1.07 s: the entry is past 0 s within about two.)
    let t0 = std::time::Instant::now();
    let swept = loop {
        let r = xlb::dataplane::sweep::sweep(d.a.writer.maps_mut(), &zero).unwrap();
        if r.expired > 0 || t0.elapsed().as_secs() > 5 {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(swept.expired_own, vec![flow_key(40_000)]);
    let expiry: Vec<Record> = swept
        .expired_own
        .iter()
        .filter_map(xlb::sync::names::flow_of)
        .map(Record::Expiry)
        .collect();
    let expiry = d.send_to_b(&expiry);
    assert_eq!(synced(d.apply_on_b(&expiry)), (0, 1));
    assert!(d
        .b
        .writer
        .maps()
        .conn_table
        .get(&flow_key(40_000), 0)
        .is_err());
    assert_eq!(census_of(&d.b), (0, 0, 0, 0));
}

/// A peer's FIN for a flow this director dispatched itself (the flow then moved: ECMP re-hash,
/// a withdrawn director) is applied once the flow has been idle here for 2 s, so ActiveConn
/// drains here too instead of staying until the 15-minute idle timeout; while the flow is still
/// forwarded here it is left alone. The way moves to the LRU in the peer's state, with its real
/// server: a late packet here still goes there. An own LRU entry (IPv6, or a full set) alike.
#[test]
fn a_peers_fin_for_an_own_flow_that_moved_away_drains_it_here() {
    use lb_common::conn::{self, ConnWay};
    use xlb::dataplane::sweep::{monotonic_ns, Timeouts};
    use xlb::sync::Record;
    xtask::require!(BPF);
    let mut d = TwoDirectors::new();
    let t = Timeouts::default();
    let own_applied = |d: &mut TwoDirectors, records: &[Record]| d.apply_on_b(records).0.own;
    // B dispatched both flows; then they moved to A, which sees the client's FINs.
    for h in [&d.a, &d.b] {
        for port in [40_000, 40_001] {
            for flags in ["S", "A"] {
                assert_eq!(h.run(&tcp4(CLIENT, port, VIP_B, 80, flags)).0, XDP_TX);
            }
        }
    }
    let _ = d.a_says();
    d.a.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "FA"));
    let fin = d.a_says();
    assert!(
        matches!(fin[..], [Record::State(s)] if s.state == conn_state::FIN_WAIT),
        "{fin:?}"
    );

    // B forwarded the flow a moment ago: it may still be B's; its state stays.
    let (applied, _) = d.apply_on_b(&fin);
    assert_eq!((applied.synced, applied.own), (0, 0));
    assert_eq!(census_of(&d.b), (2, 0, 0, 0));

    // B's way as if its last packet were 4 stamp units (4.3 s) ago.
    let flow = flow_key(40_000);
    let (at, w) =
        d.b.writer
            .maps()
            .conn_sets
            .find(&flow)
            .expect("B's own way");
    let long_ago = monotonic_ns() - (4u64 << conn::STAMP_SHIFT);
    let aged = ConnWay::new(w.src, w.dst, w.ports, w.meta, conn::stamp_from_ns(long_ago));
    d.b.writer.maps().conn_sets.write(at, &aged);
    let (applied, _) = d.apply_on_b(&fin);
    assert_eq!((applied.synced, applied.own), (0, 1));
    assert_eq!(
        census_of(&d.b),
        (1, 1, 0, 0),
        "B's ActiveConn drained with A's"
    );
    assert!(
        d.b.writer.maps().conn_sets.find(&flow).is_none(),
        "way freed"
    );
    let moved = d.b.writer.maps().conn_table.get(&flow, 0).unwrap();
    assert_eq!(moved.state, conn_state::FIN_WAIT);
    assert_eq!(moved.sync_flags, 0, "still B's own entry");
    assert_eq!(moved.real_id, conn::meta_real(w.meta));
    let left = xlb::dataplane::sweep::expires_in(&moved, &t, monotonic_ns());
    assert!(left <= t.fin_wait && left + std::time::Duration::from_secs(5) > t.fin_wait);
    let late = tcp4(CLIENT, 40_000, VIP_B, 80, "A");
    let (action, output) = d.b.run(&late);
    assert_eq!(action, XDP_TX);
    assert_dr_rewrite(&late, &output, real_mac(1));

    // An own entry in B's LRU, idle 4.3 s, takes the peer's RST; a fresh one does not.
    let other = flow_key(40_001);
    let (at, w) = d.b.writer.maps().conn_sets.find(&other).unwrap();
    d.b.writer
        .maps()
        .conn_sets
        .free_if_unchanged(at, w.stamp_check);
    let own = lb_common::FlowEntry {
        state: conn_state::ESTABLISHED,
        last_seen_ns: monotonic_ns(),
        ..moved
    };
    d.b.writer
        .maps_mut()
        .conn_table
        .insert(other, own, 0)
        .unwrap();
    d.a.run(&tcp4(CLIENT, 40_001, VIP_B, 80, "R"));
    let rst = d.a_says();
    assert!(
        matches!(rst[..], [Record::State(s)] if s.state == conn_state::CLOSE),
        "{rst:?}"
    );
    assert_eq!(own_applied(&mut d, &rst), 0);
    let idle = lb_common::FlowEntry {
        last_seen_ns: long_ago,
        ..own
    };
    d.b.writer
        .maps_mut()
        .conn_table
        .insert(other, idle, 0)
        .unwrap();
    assert_eq!(own_applied(&mut d, &rst), 1);
    let closed = d.b.writer.maps().conn_table.get(&other, 0).unwrap();
    assert_eq!(
        (closed.state, closed.real_id),
        (conn_state::CLOSE, own.real_id)
    );
    assert_eq!(census_of(&d.b), (0, 2, 0, 0));
}

fn counter_of(h: &Harness, i: u32) -> u64 {
    h.counters()[i as usize]
}
