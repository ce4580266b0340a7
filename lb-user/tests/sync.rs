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
    // ESTABLISHED and further ACKs are not reported (peers learn them from the flow's packets).
    for _ in 0..3 {
        h.run(&tcp4(CLIENT, 40_000, VIP_B, 80, "A"));
    }
    let evs = events(&mut ring);
    assert_eq!(evs.len(), 1, "{evs:?}");
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
    // Expiry from the peer: only the synced entry goes.
    let removed = h
        .writer
        .remove_synced_conns(&[flow, flow_key(40_000)])
        .unwrap();
    assert_eq!(removed, 1);
    assert!(h.writer.maps().conn_table.get(&flow, 0).is_err());
    assert!(
        h.writer.maps().conn_sets.holds(&flow_key(40_000)),
        "the own flow stays"
    );
}

fn counter_of(h: &Harness, i: u32) -> u64 {
    h.counters()[i as usize]
}
