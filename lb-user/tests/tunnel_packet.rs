//! Packet tests of tunnel mode (LVS-TUN): the real XDP object through BPF_PROG_TEST_RUN, every
//! output byte compared with a frame built here independently (etherparse for the outer
//! headers and their checksums). Needs root (CAP_BPF, CAP_NET_ADMIN).
mod common;

use std::net::IpAddr;

use common::*;
use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder, UdpHeader};
use lb_common::{hash::tunnel_entropy, stat, FlowKey, AF_INET, AF_INET6, PROTO_TCP};
use xlb::dataplane::desired::{addr_words, DesiredReal, DesiredTunnel, Protocol, TunnelKind};

const VIP: &str = "198.18.0.100";
const VIP_B: [u8; 4] = [198, 18, 0, 100];
const CLIENT: [u8; 4] = [198, 18, 0, 10];
/// The director's address on the egress side (towards the router).
const LOCAL4: &str = "198.18.1.2";
const LOCAL6: &str = "2001:db8:1::2";
/// The router's MAC: the next hop of every tunnelled packet.
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 9, 1];

fn tunnelled(addr: &str, local: &str, kind: TunnelKind, mtu: u16) -> DesiredReal {
    let mut r = real("198.18.0.11", 9, 1);
    r.addr = addr.parse().unwrap();
    r.mac = ROUTER_MAC;
    r.tunnel = Some(DesiredTunnel {
        kind,
        src: local.parse().unwrap(),
        mtu,
        gue_port: 6080,
    });
    r
}

/// A harness with TCP VIP:80 over one tunnelled real server at `addr`.
fn harness(addr: &str, kind: TunnelKind, mtu: u16) -> Harness {
    let local = if addr.contains(':') { LOCAL6 } else { LOCAL4 };
    let mut h = Harness::new(4096);
    h.apply(&state(vec![service(
        VIP,
        80,
        Protocol::Tcp,
        vec![tunnelled(addr, local, kind, mtu)],
    )]));
    h
}

fn flow4(sport: u16) -> FlowKey {
    FlowKey {
        src: addr_words(IpAddr::from(CLIENT)).0,
        dst: addr_words(IpAddr::from(VIP_B)).0,
        sport: sport.to_be(),
        dport: 80u16.to_be(),
        proto: PROTO_TCP,
        family: AF_INET,
        _pad: [0; 2],
    }
}

fn gue_sport(flow: &FlowKey) -> u16 {
    0xc000 | (tunnel_entropy(flow) >> 18) as u16
}

fn v4b(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().unwrap().octets()
}

fn v6b(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

/// The frame the director must send: Ethernet to the router, the outer IPv4 header (checksum
/// by etherparse), optionally UDP to 6080 from `sport`, then the input's IP packet unchanged.
fn expected_v4(input: &[u8], dst: &str, proto: u8, sport: Option<u16>) -> Vec<u8> {
    let inner = &input[14..];
    let udp_len = if sport.is_some() { 8 } else { 0 };
    let mut ip = Ipv4Header::new(
        (inner.len() + udp_len) as u16,
        64,
        IpNumber(proto),
        v4b(LOCAL4),
        v4b(dst),
    )
    .unwrap();
    ip.dont_fragment = input[20] & 0x40 != 0;
    ip.dscp = etherparse::IpDscp::try_new(input[15] >> 2).unwrap();
    ip.ecn = etherparse::IpEcn::try_new(input[15] & 3).unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    out.extend_from_slice(&ROUTER_MAC);
    out.extend_from_slice(&DIRECTOR_MAC);
    out.extend_from_slice(&[0x08, 0x00]);
    ip.write(&mut out).unwrap();
    if let Some(sport) = sport {
        let udp = UdpHeader {
            source_port: sport,
            destination_port: 6080,
            length: (inner.len() + 8) as u16,
            checksum: 0,
        };
        udp.write(&mut out).unwrap();
    }
    out.extend_from_slice(inner);
    out
}

#[test]
fn ipip_outer_header_bytes_checksum_ttl_and_df() {
    xtask::require!(BPF);
    let h = harness("198.18.2.11", TunnelKind::Ipip, 1500);
    let syn = tcp4(CLIENT, 40000, VIP_B, 80, "S");
    let (action, out) = h.run(&syn);
    assert_eq!(action, XDP_TX);
    let want = expected_v4(&syn, "198.18.2.11", 4, None);
    assert_eq!(out, want);
    // etherparse sets DF on the inner packet by default: the outer copies it.
    assert_eq!(out[20] & 0x40, 0x40, "DF copied");
    assert_eq!(out[22], 64, "outer TTL");
    // Same flow, established: same encapsulation.
    let ack = tcp4(CLIENT, 40000, VIP_B, 80, "A");
    let (action, out) = h.run(&ack);
    assert_eq!(
        (action, out),
        (XDP_TX, expected_v4(&ack, "198.18.2.11", 4, None))
    );
    let c = h.counters();
    assert_eq!(c[stat::TUNNELLED as usize], 2);
}

#[test]
fn dscp_ecn_copied_and_df_clear_stays_clear() {
    xtask::require!(BPF);
    let h = harness("198.18.2.11", TunnelKind::Ipip, 1500);
    let mut pkt = tcp4(CLIENT, 40001, VIP_B, 80, "S");
    // DSCP EF (46) + ECT(1), DF cleared; the inner checksum is the client's business.
    pkt[15] = (46 << 2) | 1;
    pkt[20] &= !0x40;
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    assert_eq!(out, expected_v4(&pkt, "198.18.2.11", 4, None));
    assert_eq!(out[15], (46 << 2) | 1);
    assert_eq!(out[20] & 0x40, 0);
}

#[test]
fn gue_bytes_and_source_port_stable_per_flow() {
    xtask::require!(BPF);
    let h = harness("198.18.2.11", TunnelKind::Gue, 1500);
    let mut ports = std::collections::BTreeSet::new();
    for sport in 41000..41016u16 {
        let syn = tcp4(CLIENT, sport, VIP_B, 80, "S");
        let (action, out) = h.run(&syn);
        assert_eq!(action, XDP_TX);
        let gue = gue_sport(&flow4(sport));
        assert_eq!(out, expected_v4(&syn, "198.18.2.11", 17, Some(gue)));
        let ack = tcp4(CLIENT, sport, VIP_B, 80, "PA");
        let (_, again) = h.run(&ack);
        assert_eq!(
            again,
            expected_v4(&ack, "198.18.2.11", 17, Some(gue)),
            "stable per flow"
        );
        ports.insert(gue);
    }
    assert!(
        ports.len() >= 12,
        "flows spread over source ports: {ports:?}"
    );
}

#[test]
fn vlan_tags_stay_in_front_of_the_outer_header() {
    xtask::require!(BPF);
    let h = harness("198.18.2.11", TunnelKind::Ipip, 1500);
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .single_vlan(etherparse::VlanId::try_new(100).unwrap())
        .ipv4(CLIENT, VIP_B, 64)
        .tcp(40002, 80, 1, 100)
        .syn()
        .write(&mut pkt, b"x")
        .unwrap();
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    // Untagged equivalent: the same frame without the 4 tag bytes.
    let mut untagged = pkt.clone();
    untagged.drain(12..16);
    let want_untagged = expected_v4(&untagged, "198.18.2.11", 4, None);
    let mut want = want_untagged.clone();
    want.splice(12..12, pkt[12..16].iter().copied());
    assert_eq!(out, want);
}

fn expected_v6(input: &[u8], dst: &str, next: u8, flow: &FlowKey, gue: bool) -> Vec<u8> {
    let inner = &input[14..];
    let udp_len = if gue { 8 } else { 0 };
    let tc = if input[12..14] == [0x86, 0xdd] {
        (input[14] << 4) | (input[15] >> 4)
    } else {
        input[15]
    };
    let ip = Ipv6Header {
        traffic_class: tc,
        flow_label: Ipv6FlowLabel::try_new(tunnel_entropy(flow) >> 12).unwrap(),
        payload_length: (inner.len() + udp_len) as u16,
        next_header: IpNumber(next),
        hop_limit: 64,
        source: v6b(LOCAL6),
        destination: v6b(dst),
    };
    let mut out = Vec::new();
    out.extend_from_slice(&ROUTER_MAC);
    out.extend_from_slice(&DIRECTOR_MAC);
    out.extend_from_slice(&[0x86, 0xdd]);
    ip.write(&mut out).unwrap();
    if gue {
        UdpHeader {
            source_port: gue_sport(flow),
            destination_port: 6080,
            length: (inner.len() + 8) as u16,
            checksum: 0,
        }
        .write(&mut out)
        .unwrap();
    }
    out.extend_from_slice(inner);
    out
}

#[test]
fn ipv6_outer_ip6ip6_and_gue_over_ipv6() {
    xtask::require!(BPF);
    let client6 = v6b("2001:db8::10");
    let vip6 = v6b("2001:db8::100");
    for (kind, next) in [(TunnelKind::Ipip, 41u8), (TunnelKind::Gue, 17)] {
        let mut h = Harness::new(4096);
        let mut svc = service(
            VIP,
            80,
            Protocol::Tcp,
            vec![tunnelled("2001:db8:2::11", LOCAL6, kind, 1500)],
        );
        svc.addr.vip = IpAddr::from(vip6);
        h.apply(&state(vec![svc]));
        let mut pkt = Vec::new();
        PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
            .ipv6(client6, vip6, 64)
            .tcp(40000, 80, 1, 100)
            .syn()
            .write(&mut pkt, b"x")
            .unwrap();
        // Traffic class AF41 (34 << 2).
        pkt[14] = 0x60 | (0x88 >> 4);
        pkt[15] = (0x88 << 4) & 0xf0;
        let flow = FlowKey {
            src: addr_words(IpAddr::from(client6)).0,
            dst: addr_words(IpAddr::from(vip6)).0,
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: PROTO_TCP,
            family: AF_INET6,
            _pad: [0; 2],
        };
        let (action, out) = h.run(&pkt);
        assert_eq!(action, XDP_TX, "{kind:?}");
        assert_eq!(
            out,
            expected_v6(&pkt, "2001:db8:2::11", next, &flow, kind == TunnelKind::Gue),
            "{kind:?}"
        );
        assert_eq!(out[14] >> 4, 6);
        assert_eq!(
            ((out[14] & 0xf) << 4) | (out[15] >> 4),
            0x88,
            "traffic class"
        );
    }
}

#[test]
fn icmp_error_for_a_tunnelled_flow_goes_to_that_flows_real_server() {
    xtask::require!(BPF);
    let mut h = Harness::new(4096);
    h.apply(&state(vec![service(
        VIP,
        80,
        Protocol::Tcp,
        vec![
            tunnelled("198.18.2.11", LOCAL4, TunnelKind::Gue, 1500),
            tunnelled("198.18.3.12", LOCAL4, TunnelKind::Gue, 1500),
        ],
    )]));
    let syn = tcp4(CLIENT, 40100, VIP_B, 80, "S");
    let (_, out) = h.run(&syn);
    let real = format!("{}.{}.{}.{}", out[30], out[31], out[32], out[33]);
    let mut quoted = Vec::new();
    PacketBuilder::ipv4(VIP_B, CLIENT, 63)
        .tcp(80, 40100, 1, 100)
        .ack(1)
        .write(&mut quoted, &[])
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4([198, 18, 0, 1], VIP_B, 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: 1400 },
        ))
        .write(&mut icmp, &quoted[..28])
        .unwrap();
    let (action, out) = h.run(&icmp);
    assert_eq!(action, XDP_TX);
    // Same real server, same GUE source port as the flow it is about.
    assert_eq!(
        out,
        expected_v4(&icmp, &real, 17, Some(gue_sport(&flow4(40100))))
    );
    assert_eq!(h.counters()[stat::ICMP_FORWARDED as usize], 1);
}

/// A TCP segment with `payload` bytes from the client to the VIP.
fn big_tcp4(sport: u16, payload: usize, df: bool) -> Vec<u8> {
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(CLIENT, VIP_B, 64)
        .tcp(sport, 80, 1, 64240)
        .ack(1)
        .write(&mut pkt, &vec![0x5a; payload])
        .unwrap();
    if !df {
        pkt[20] &= !0x40;
    }
    pkt
}

#[test]
fn oversize_df_frame_is_answered_with_fragmentation_needed_and_the_mtu_that_fits() {
    xtask::require!(BPF);
    for (kind, overhead) in [(TunnelKind::Ipip, 20u16), (TunnelKind::Gue, 28)] {
        let h = harness("198.18.2.11", kind, 1400);
        // Exactly fits: 1400 - overhead bytes of inner packet.
        let fits = big_tcp4(42000, (1400 - overhead) as usize - 40, true);
        let (action, out) = h.run(&fits);
        assert_eq!(action, XDP_TX, "{kind:?}");
        assert_eq!(out.len(), 14 + 1400, "{kind:?}");
        // One byte more: ICMP back to the client, from the VIP, quoting the packet's start.
        let big = big_tcp4(42000, (1400 - overhead) as usize - 39, true);
        let (action, out) = h.run(&big);
        assert_eq!(action, XDP_TX, "{kind:?}");
        let mut want = Vec::new();
        PacketBuilder::ethernet2(DIRECTOR_MAC, CLIENT_MAC)
            .ipv4(VIP_B, CLIENT, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400 - overhead,
                },
            ))
            .write(&mut want, &big[14..14 + 68])
            .unwrap();
        assert_eq!(out, want, "{kind:?}");
        let c = h.counters();
        assert_eq!(c[stat::TOO_BIG_ANSWERED as usize], 1, "{kind:?}");
        assert_eq!(c[stat::TUNNELLED as usize], 1, "{kind:?}");
    }
}

#[test]
fn oversize_frame_without_df_is_dropped_and_counted() {
    xtask::require!(BPF);
    let h = harness("198.18.2.11", TunnelKind::Ipip, 1400);
    let big = big_tcp4(42001, 1400, false);
    let (action, _) = h.run(&big);
    assert_eq!(action, XDP_DROP);
    let c = h.counters();
    assert_eq!(c[stat::TOO_BIG_DROPPED as usize], 1);
    assert_eq!(c[stat::TOO_BIG_ANSWERED as usize], 0);
    assert_eq!(c[stat::TUNNELLED as usize], 0);
}

#[test]
fn oversize_ipv6_frame_is_answered_with_packet_too_big() {
    xtask::require!(BPF);
    let client6 = v6b("2001:db8::10");
    let vip6 = v6b("2001:db8::100");
    let mut h = Harness::new(4096);
    let mut svc = service(
        VIP,
        80,
        Protocol::Tcp,
        vec![tunnelled("2001:db8:2::11", LOCAL6, TunnelKind::Ipip, 1500)],
    );
    svc.addr.vip = IpAddr::from(vip6);
    h.apply(&state(vec![svc]));
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(client6, vip6, 64)
        .tcp(40000, 80, 1, 100)
        .ack(1)
        .write(&mut pkt, &vec![0x33; 1500 - 40 - 20])
        .unwrap();
    let (action, out) = h.run(&pkt);
    assert_eq!(action, XDP_TX);
    let mut want = Vec::new();
    PacketBuilder::ethernet2(DIRECTOR_MAC, CLIENT_MAC)
        .ipv6(vip6, client6, 64)
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1460 })
        .write(&mut want, &pkt[14..14 + 120])
        .unwrap();
    assert_eq!(out, want);
    assert_eq!(h.counters()[stat::TOO_BIG_ANSWERED as usize], 1);
}
