//! Packet tests: the real XDP object through BPF_PROG_TEST_RUN with crafted frames, checking the
//! action and every output byte. Needs root (CAP_BPF, CAP_NET_ADMIN).
mod common;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
use lb_common::{
    hash::{flow_hash, source_hash},
    stat, FlowKey, AF_INET, PROTO_TCP,
};
use xlb::dataplane::desired::{addr_words, Protocol, Scheduler, ServiceAddr};

const VIP: &str = "198.18.0.100";
const VIP_B: [u8; 4] = [198, 18, 0, 100];
const CLIENT: [u8; 4] = [198, 18, 0, 10];

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

fn counter(h: &Harness, i: u32) -> u64 {
    h.counters()[i as usize]
}

#[test]
fn new_tcp_flow_is_forwarded_by_maglev_and_same_flow_sticks() {
    let h = two_reals();
    let syn = tcp4(CLIENT, 40000, VIP_B, 80, "S");
    let (action, out) = h.run(&syn);
    assert_eq!(action, XDP_TX);
    let chosen = [out[0], out[1], out[2], out[3], out[4], out[5]];
    assert!(chosen == real_mac(1) || chosen == real_mac(2));
    assert_dr_rewrite(&syn, &out, chosen);
    // The choice is the Maglev table entry of the flow hash, computed here the same way.
    let (src, _) = addr_words(v4("198.18.0.10"));
    let (dst, _) = addr_words(v4(VIP));
    let key = FlowKey {
        src,
        dst,
        sport: 40000u16.to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: AF_INET,
        _pad: [0; 2],
    };
    let ring = h
        .writer
        .ring(&ServiceAddr {
            vip: v4(VIP),
            port: 80,
            protocol: Protocol::Tcp,
        })
        .unwrap();
    let slot = ring[(flow_hash(&key) % ring.len() as u32) as usize];
    let slots = h.writer.slots();
    let svc = slots.values().next().unwrap();
    let expected_real = svc.reals.iter().find(|(_, s)| **s == slot).unwrap().0.addr;
    let expected_mac = if expected_real == v4("198.18.0.11") {
        real_mac(1)
    } else {
        real_mac(2)
    };
    assert_eq!(chosen, expected_mac);
    assert_eq!(counter(&h, stat::CONN_MISS), 1);
    for flags in ["A", "PA", "FA"] {
        let pkt = tcp4(CLIENT, 40000, VIP_B, 80, flags);
        let (action, out) = h.run(&pkt);
        assert_eq!(action, XDP_TX);
        assert_dr_rewrite(&pkt, &out, chosen);
    }
    assert_eq!(counter(&h, stat::CONN_HIT), 3);
    assert_eq!(counter(&h, stat::ACTION_TX), 4);
    let table: Vec<_> = h
        .writer
        .maps()
        .conn_table
        .iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(table.len(), 1);
    assert_eq!(table[0].1.state, lb_common::conn_state::FIN_WAIT);
}

#[test]
fn udp_service_and_ipv6_service() {
    let mut h = Harness::new(4096);
    let mut r6 = real("198.18.0.11", 1, 1);
    r6.addr = "2001:db8::11".parse().unwrap();
    let mut s6 = service(VIP, 80, Protocol::Tcp, vec![r6]);
    s6.addr.vip = "2001:db8::100".parse().unwrap();
    h.apply(&state(vec![
        service(VIP, 53, Protocol::Udp, vec![real("198.18.0.11", 1, 1)]),
        s6,
    ]));
    let pkt = udp4(CLIENT, 5353, VIP_B, 53);
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    assert_dr_rewrite(&pkt, &out, real_mac(1));
    // TCP to the UDP service's port is not a service.
    let pkt = tcp4(CLIENT, 5353, VIP_B, 53, "S");
    let (action, out) = h.run(&pkt);
    assert_eq!((action, out), (XDP_PASS, pkt));
    let src6 = "2001:db8::10"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let vip6 = "2001:db8::100"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(src6, vip6, 64)
        .tcp(40000, 80, 1, 100)
        .syn()
        .write(&mut pkt, b"x")
        .unwrap();
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    assert_dr_rewrite(&pkt, &out, real_mac(1));
}

#[test]
fn vlan_tags_are_kept() {
    let h = two_reals();
    for double in [false, true] {
        let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC);
        let b = if double {
            b.double_vlan(
                etherparse::VlanId::try_new(100).unwrap(),
                etherparse::VlanId::try_new(200).unwrap(),
            )
        } else {
            b.single_vlan(etherparse::VlanId::try_new(100).unwrap())
        };
        let mut pkt = Vec::new();
        b.ipv4(CLIENT, VIP_B, 64)
            .tcp(40001, 80, 1, 100)
            .syn()
            .write(&mut pkt, b"x")
            .unwrap();
        let (action, out) = h.run(&pkt);
        assert_eq!(action, XDP_TX, "double={double}");
        let mac = [out[0], out[1], out[2], out[3], out[4], out[5]];
        assert_dr_rewrite(&pkt, &out, mac);
    }
}

#[test]
fn ipv4_options_are_parsed() {
    let h = two_reals();
    let mut pkt = tcp4(CLIENT, 40002, VIP_B, 80, "S");
    // Insert 4 bytes of options (NOP NOP NOP EOL): IHL 6, total length + 4; checksum left as is
    // (XDP does not verify it, and the frame must come out exactly as it went in).
    pkt.splice(34..34, [1u8, 1, 1, 0]);
    pkt[14] = 0x46;
    let tl = u16::from_be_bytes([pkt[16], pkt[17]]) + 4;
    pkt[16..18].copy_from_slice(&tl.to_be_bytes());
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    let mac = [out[0], out[1], out[2], out[3], out[4], out[5]];
    assert_dr_rewrite(&pkt, &out, mac);
}

#[test]
fn port_zero_service_takes_every_port_and_specific_port_wins() {
    let mut h = Harness::new(4096);
    h.apply(&state(vec![
        service(VIP, 0, Protocol::Tcp, vec![real("198.18.0.11", 1, 1)]),
        service(VIP, 443, Protocol::Tcp, vec![real("198.18.0.12", 2, 1)]),
    ]));
    for port in [22u16, 80, 8080] {
        let pkt = tcp4(CLIENT, 40000, VIP_B, port, "S");
        let (action, out) = h.run(&pkt);
        assert_eq!(action, XDP_TX);
        assert_dr_rewrite(&pkt, &out, real_mac(1));
    }
    let pkt = tcp4(CLIENT, 40000, VIP_B, 443, "S");
    let (_, out) = h.run(&pkt);
    assert_dr_rewrite(&pkt, &out, real_mac(2));
}

#[test]
fn non_service_traffic_passes_untouched() {
    let h = two_reals();
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP_B, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"ping")
        .unwrap();
    let mut vrrp = tcp4(CLIENT, 1, [224, 0, 0, 18], 1, "");
    vrrp[23] = 112;
    let frames = [
        arp,
        tcp4(CLIENT, 40000, [198, 18, 0, 2], 22, "S"), // the director's own SSH
        tcp4(CLIENT, 40000, VIP_B, 81, "S"),           // VIP, other port
        udp4(CLIENT, 40000, VIP_B, 80),                // VIP, other protocol
        ping,
        vrrp,
    ];
    for f in &frames {
        let (action, out) = h.run(f);
        assert_eq!(action, XDP_PASS);
        assert_eq!(&out, f);
    }
    assert_eq!(counter(&h, stat::NOT_SERVICE), frames.len() as u64);
    assert_eq!(counter(&h, stat::ACTION_PASS), frames.len() as u64);
}

#[test]
fn truncated_and_malformed_headers_are_passed_and_counted_never_forwarded() {
    let h = two_reals();
    let good = tcp4(CLIENT, 40000, VIP_B, 80, "S");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header (EINVAL): start at 14.
    for len in [14usize, 15, 20, 33, 34, 40, 53] {
        cases.push(good[..len.min(good.len())].to_vec());
    }
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;
    cases.push(bad_version);
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    cases.push(bad_ihl);
    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&2000u16.to_be_bytes());
    cases.push(long_total);
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    cases.push(short_total);
    let mut bad_doff = good.clone();
    bad_doff[34 + 12] = 0x20;
    cases.push(bad_doff);
    let mut short_vlan = good[..12].to_vec();
    short_vlan.extend_from_slice(&[0x81, 0x00, 0x00]);
    cases.push(short_vlan);
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            64,
        )
        .tcp(1, 80, 1, 1)
        .write(&mut v6, b"")
        .unwrap();
    cases.push(v6[..50].to_vec());
    let mut v6_long = v6.clone();
    v6_long[18..20].copy_from_slice(&500u16.to_be_bytes());
    cases.push(v6_long);
    let n = cases.len() as u64;
    for (i, f) in cases.iter().enumerate() {
        let (action, out) = h.run(f);
        assert_eq!(action, XDP_PASS, "case {i}");
        assert_eq!(&out, f, "case {i}");
    }
    let c = h.counters();
    assert_eq!(c[stat::ACTION_TX as usize], 0);
    assert_eq!(c[stat::ACTION_PASS as usize], n);
    // A bare Ethernet header (14 bytes) has no EtherType payload worth the name: it is "other".
    assert_eq!(
        c[stat::MALFORMED as usize] + c[stat::NOT_SERVICE as usize],
        n
    );
    assert!(
        c[stat::MALFORMED as usize] >= n - 1,
        "malformed {}",
        c[stat::MALFORMED as usize]
    );
}
