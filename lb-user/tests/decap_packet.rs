//! Packet tests of the real servers' decapsulation program (`xlb_decap`) through
//! BPF_PROG_TEST_RUN: packets from a configured director to a configured VIP come out as the
//! inner packet byte for byte; anything else (other senders, other inner destinations, other
//! traffic, truncated or mutated headers) passes untouched. The encapsulated frames are made by
//! xlb's own XDP program, so this is also the round trip director -> real server.
//! Every case runs twice: through the XDP entry (`xlb_decap`) and the TC ingress entry
//! (`xlb_decap_tc`, the fallback for links without XDP), which share the parsing.
//! Needs root (CAP_BPF, CAP_NET_ADMIN).
mod common;

use aya::{
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
    Ebpf,
};
use common::*;
use etherparse::PacketBuilder;
use lb_common::decap_stat;
use xlb::dataplane::{
    decap::{load_entry, DecapHook, DecapMaps},
    desired::{DesiredTunnel, Protocol, TunnelKind},
};

const HOOKS: [DecapHook; 2] = [DecapHook::Xdp, DecapHook::Tc];
/// TC's "go on" verdict (XDP's is `XDP_PASS`).
const TC_ACT_OK: u32 = 0;

const VIP: &str = "198.18.0.100";
const VIP_B: [u8; 4] = [198, 18, 0, 100];
const CLIENT: [u8; 4] = [198, 18, 0, 10];
const DIRECTOR4: &str = "198.18.1.2";
const DIRECTOR6: &str = "2001:db8:1::2";
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 9, 1];

/// The director (xlb's program, one tunnelled real server) and the real server's decap program.
struct Pair {
    director: Harness,
    decap: Ebpf,
    maps: DecapMaps,
    hook: DecapHook,
    /// The hook's verdict for "continue into the stack".
    pass: u32,
}

fn pair(hook: DecapHook, real: &str, vip: &str, kind: TunnelKind) -> Pair {
    let v6 = real.contains(':');
    let local = if v6 { DIRECTOR6 } else { DIRECTOR4 };
    let mut director = Harness::new(4096);
    let mut r = common::real("198.18.0.11", 9, 1);
    r.addr = real.parse().unwrap();
    r.mac = ROUTER_MAC;
    r.tunnel = Some(DesiredTunnel {
        kind,
        src: local.parse().unwrap(),
        mtu: 1500,
        gue_port: 6080,
    });
    let mut svc = service(VIP, 80, Protocol::Tcp, vec![r]);
    svc.addr.vip = vip.parse().unwrap();
    director.apply(&state(vec![svc]));
    let mut decap = xlb::dataplane::loader::load(
        xlb::BPF_OBJECT,
        &xlb::dataplane::loader::LoadOptions {
            conn_table_size: 1024,
            maglev_capacity: 1 << 16,
            persistence_table_size: 1024,
            pin_dir: None,
        },
    )
    .unwrap();
    load_entry(&mut decap, hook).expect("decap program passes the verifier");
    let mut maps = DecapMaps::take(&mut decap).unwrap();
    maps.configure(
        &[DIRECTOR4.parse().unwrap(), DIRECTOR6.parse().unwrap()],
        &[VIP.parse().unwrap(), "2001:db8::100".parse().unwrap()],
        Some(6080),
    )
    .unwrap();
    let pass = match hook {
        DecapHook::Xdp => XDP_PASS,
        DecapHook::Tc => TC_ACT_OK,
    };
    Pair {
        director,
        decap,
        maps,
        hook,
        pass,
    }
}

impl Pair {
    fn decap(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog = self.decap.program(self.hook.program()).unwrap();
        let mut out = vec![0u8; frame.len() + 64];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let r: TestRunResult = match self.hook {
            DecapHook::Xdp => <&Xdp>::try_from(prog).unwrap().test_run(opts),
            DecapHook::Tc => <&SchedClassifier>::try_from(prog).unwrap().test_run(opts),
        }
        .unwrap_or_else(|e| {
            panic!(
                "test run of {} bytes {:02x?}: {e}",
                frame.len(),
                &frame[..frame.len().min(40)]
            )
        });
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    fn counter(&self, i: u32) -> u64 {
        self.maps.counters().unwrap()[i as usize]
    }
}

/// `input` as the real server must see it: the director's frame minus the outer header, i.e.
/// the client's frame with the router's MACs.
fn as_delivered(input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    v[0..6].copy_from_slice(&ROUTER_MAC);
    v[6..12].copy_from_slice(&DIRECTOR_MAC);
    v
}

fn tcp6(sport: u16) -> Vec<u8> {
    let mut pkt = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(
            "2001:db8::10"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            "2001:db8::100"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
            64,
        )
        .tcp(sport, 80, 1, 100)
        .syn()
        .write(&mut pkt, b"hello")
        .unwrap();
    pkt
}

#[test]
fn director_frames_are_decapsulated_byte_exactly() {
    xtask::require!(BPF);
    for (hook, kind) in HOOKS
        .into_iter()
        .flat_map(|h| [(h, TunnelKind::Ipip), (h, TunnelKind::Gue)])
    {
        let p = pair(hook, "198.18.2.11", VIP, kind);
        for flags in ["S", "A", "PA"] {
            let client = tcp4(CLIENT, 40000, VIP_B, 80, flags);
            let (action, tunnelled) = p.director.run(&client);
            assert_eq!(action, XDP_TX);
            assert!(tunnelled.len() > client.len());
            let (action, out) = p.decap(&tunnelled);
            assert_eq!(action, p.pass);
            assert_eq!(out, as_delivered(&client), "{hook:?} {kind:?} {flags}");
        }
        assert_eq!(p.counter(decap_stat::DECAPSULATED), 3);
        let p6 = pair(hook, "2001:db8:2::11", "2001:db8::100", kind);
        let client = tcp6(40001);
        let (_, tunnelled) = p6.director.run(&client);
        let (action, out) = p6.decap(&tunnelled);
        assert_eq!(
            (action, out),
            (p6.pass, as_delivered(&client)),
            "{hook:?} {kind:?} v6"
        );
    }
}

#[test]
fn vlan_tags_are_kept() {
    xtask::require!(BPF);
    let p = pair(DecapHook::Xdp, "198.18.2.11", VIP, TunnelKind::Gue);
    let mut client = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .double_vlan(
            etherparse::VlanId::try_new(100).unwrap(),
            etherparse::VlanId::try_new(200).unwrap(),
        )
        .ipv4(CLIENT, VIP_B, 64)
        .tcp(40002, 80, 1, 100)
        .syn()
        .write(&mut client, b"x")
        .unwrap();
    let (_, tunnelled) = p.director.run(&client);
    let (action, out) = p.decap(&tunnelled);
    assert_eq!((action, out), (XDP_PASS, as_delivered(&client)));
    // TC: the kernel takes the outer tag off the data before TC ingress (`skb_vlan_untag`);
    // tags still in the data make `bpf_skb_adjust_room` refuse, so the frame passes untouched.
    let p = pair(DecapHook::Tc, "198.18.2.11", VIP, TunnelKind::Gue);
    let (_, tunnelled) = p.director.run(&client);
    assert_eq!(p.decap(&tunnelled), (TC_ACT_OK, tunnelled.clone()));
    assert_eq!(p.counter(decap_stat::MALFORMED), 1);
    assert_eq!(p.counter(decap_stat::DECAPSULATED), 0);
}

#[test]
fn others_are_passed_untouched() {
    xtask::require!(BPF);
    for hook in HOOKS {
        others_are_passed_untouched_by(hook);
    }
}

fn others_are_passed_untouched_by(hook: DecapHook) {
    let p = pair(hook, "198.18.2.11", VIP, TunnelKind::Ipip);
    let pass = p.pass;
    let client = tcp4(CLIENT, 40003, VIP_B, 80, "S");
    let (_, tunnelled) = p.director.run(&client);
    // Another sender: outer source changed (its checksum is not what is checked here).
    let mut other = tunnelled.clone();
    other[26..30].copy_from_slice(&[198, 18, 1, 99]);
    assert_eq!(p.decap(&other), (pass, other.clone()));
    // Another inner destination than a VIP.
    let mut not_vip = tunnelled.clone();
    not_vip[14 + 20 + 16..14 + 20 + 20].copy_from_slice(&[198, 18, 0, 77]);
    assert_eq!(p.decap(&not_vip), (pass, not_vip.clone()));
    assert_eq!(p.counter(decap_stat::NOT_ALLOWED), 2);
    // Plain traffic: TCP, and UDP to another port than GUE's.
    let plain = tcp4(CLIENT, 40003, VIP_B, 80, "S");
    assert_eq!(p.decap(&plain), (pass, plain.clone()));
    let udp = udp4(CLIENT, 5353, VIP_B, 53);
    assert_eq!(p.decap(&udp), (pass, udp.clone()));
    assert_eq!(p.counter(decap_stat::NOT_TUNNEL), 2);
    assert_eq!(p.counter(decap_stat::DECAPSULATED), 0);
}

/// Fuzz: truncations and random byte mutations of director frames (IPIP, GUE, v4 and v6). The
/// program must pass every frame, and change it only into exactly "the frame minus its outer
/// header" (when the mutation kept it a valid tunnel packet from a director to a VIP).
#[test]
fn fuzzed_frames_never_crash_or_mis_deliver() {
    xtask::require!(BPF);
    for hook in HOOKS {
        fuzz(hook);
    }
}

fn fuzz(hook: DecapHook) {
    let mut rng = Rng(0x5eed_decaf);
    let mut changed = 0;
    for (real, vip, kind, client) in [
        (
            "198.18.2.11",
            VIP,
            TunnelKind::Ipip,
            tcp4(CLIENT, 40010, VIP_B, 80, "PA"),
        ),
        (
            "198.18.2.11",
            VIP,
            TunnelKind::Gue,
            tcp4(CLIENT, 40011, VIP_B, 80, "S"),
        ),
        (
            "2001:db8:2::11",
            "2001:db8::100",
            TunnelKind::Ipip,
            tcp6(40012),
        ),
        (
            "2001:db8:2::11",
            "2001:db8::100",
            TunnelKind::Gue,
            tcp6(40013),
        ),
    ] {
        let p = pair(hook, real, vip, kind);
        let (action, tunnelled) = p.director.run(&client);
        assert_eq!(action, XDP_TX, "{kind:?} {real}");
        let outer_len = tunnelled.len() - client.len();
        let strip = |f: &[u8]| -> Vec<u8> {
            let mut v = f[..12].to_vec();
            v.extend_from_slice(&f[12 + outer_len..]);
            v
        };
        // test_run needs at least an Ethernet header; for TC the kernel also refuses to build a
        // test skb shorter than the outer IP header (the XDP run covers those cuts: same parser).
        let shortest = match hook {
            DecapHook::Xdp => 14,
            DecapHook::Tc if real.contains(':') => 14 + 40,
            DecapHook::Tc => 14 + 20,
        };
        for cut in shortest..tunnelled.len() {
            let f = &tunnelled[..cut];
            let (action, out) = p.decap(f);
            assert_eq!(action, p.pass);
            assert_eq!(out, f, "a truncated frame ({cut} bytes) is never changed");
        }
        for _ in 0..1500 {
            let mut f = tunnelled.clone();
            for _ in 0..1 + rng.next() % 3 {
                let i = (rng.next() as usize) % f.len();
                f[i] = rng.next() as u8;
            }
            let (action, out) = p.decap(&f);
            assert_eq!(action, p.pass);
            if out != f {
                changed += 1;
                // Only ever the outer header removed (and the EtherType set to the inner family).
                let mut want = strip(&f);
                let inner_v6 = f[14 + outer_len] >> 4 == 6;
                want[12..14].copy_from_slice(if inner_v6 {
                    &[0x86, 0xdd]
                } else {
                    &[0x08, 0x00]
                });
                assert_eq!(out, want, "mutated frame changed into something else");
            }
        }
    }
    assert!(
        changed > 0,
        "{hook:?}: some mutations keep a valid tunnel packet (e.g. in the payload)"
    );
}

/// An Ethernet frame to the real server carrying `inner` (an IP packet) in an outer header of
/// the other family from the director: IPv4 in IPv6 (next header 4) or IPv6 in IPv4 (41).
fn cross_family(inner: &[u8]) -> Vec<u8> {
    let mut f = ROUTER_MAC.to_vec();
    f.extend_from_slice(&DIRECTOR_MAC);
    if inner[0] >> 4 == 4 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        f.extend_from_slice(&[4, 64]);
        f.extend_from_slice(&DIRECTOR6.parse::<std::net::Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(
            &"2001:db8:2::11"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + inner.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 41, 0, 0]);
        f.extend_from_slice(&[198, 18, 1, 2, 198, 18, 2, 11]);
    }
    f.extend_from_slice(inner);
    f
}

/// 4in6 and 6in4 (a v4 VIP over an IPv6 underlay and back): the inner packet comes out byte
/// for byte with the inner EtherType, through both entries (TC changes the skb's protocol).
#[test]
fn cross_family_tunnels_are_decapsulated() {
    xtask::require!(BPF);
    for hook in HOOKS {
        let p = pair(hook, "198.18.2.11", VIP, TunnelKind::Ipip);
        for client in [tcp4(CLIENT, 40020, VIP_B, 80, "S"), tcp6(40021)] {
            let frame = cross_family(&client[14..]);
            let (action, out) = p.decap(&frame);
            assert_eq!(action, p.pass);
            assert_eq!(out, as_delivered(&client), "{hook:?}");
        }
        assert_eq!(p.counter(decap_stat::DECAPSULATED), 2, "{hook:?}");
    }
}
