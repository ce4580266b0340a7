//! Frame fuzzing through BPF_PROG_TEST_RUN: structured frames (VLAN stacks, IPv4 options, IPv6
//! extension headers, fragments, ICMP errors with truncated quotes, ...) and mutations of them
//! (truncations, bad lengths, byte flips, junk), checked against the specification of verdicts.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use lb_common::stat;
use xlb::dataplane::desired::{DesiredState, Protocol};

use crate::common::{
    real, real_mac, service, state, Harness, Rng, CLIENT_MAC, DIRECTOR_MAC, XDP_DROP, XDP_PASS,
    XDP_REDIRECT, XDP_TX,
};

/// VIP with TCP 80 (reals 1, 2) and UDP 53 (real 3).
pub const VIP_A: [u8; 4] = [198, 18, 0, 100];
/// VIP with TCP 80 and no real server: DROP (no_real_server).
pub const VIP_B: [u8; 4] = [198, 18, 0, 101];
/// VIP with a client-hashed port-0 TCP service (real 4): fragments forwarded.
pub const VIP_C: [u8; 4] = [198, 18, 0, 102];
/// VIP whose service is inactive (BACKUP): PASS.
pub const VIP_D: [u8; 4] = [198, 18, 0, 103];
/// IPv6 VIP with TCP 80 (real 5).
pub const VIP_6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
];
const NOT_VIP_4: [u8; 4] = [198, 18, 0, 50];
const NOT_VIP_6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x50,
];

pub fn desired() -> DesiredState {
    let v4 = |a: [u8; 4]| Ipv4Addr::from(a).to_string();
    let mut c = service(
        &v4(VIP_C),
        0,
        Protocol::Tcp,
        vec![real("198.18.0.14", 4, 1)],
    );
    c.hash_client_only = true;
    let mut d = service(
        &v4(VIP_D),
        80,
        Protocol::Tcp,
        vec![real("198.18.0.16", 6, 1)],
    );
    d.active = false;
    let mut r6 = real("198.18.0.15", 5, 1);
    r6.addr = "2001:db8::15".parse().unwrap();
    let mut s6 = service(&v4(VIP_A), 80, Protocol::Tcp, vec![r6]);
    s6.addr.vip = IpAddr::V6(Ipv6Addr::from(VIP_6));
    state(vec![
        service(
            &v4(VIP_A),
            80,
            Protocol::Tcp,
            vec![real("198.18.0.11", 1, 1), real("198.18.0.12", 2, 1)],
        ),
        service(
            &v4(VIP_A),
            53,
            Protocol::Udp,
            vec![real("198.18.0.13", 3, 1)],
        ),
        service(&v4(VIP_B), 80, Protocol::Tcp, vec![]),
        c,
        d,
        s6,
    ])
}

/// Real-server MAC indices a forwarded frame to `dst` may go to.
fn reals_of(dst: &[u8]) -> &'static [u8] {
    match dst {
        d if d == VIP_A => &[1, 2, 3],
        d if d == VIP_C => &[4],
        d if d == VIP_6 => &[5],
        _ => &[],
    }
}

/// What an unmutated generated frame must get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Pass,
    Drop,
    /// TX to one of these real-server MAC indices.
    Tx(&'static [u8]),
}

struct Gen<'a> {
    rng: &'a mut Rng,
}

impl Gen<'_> {
    fn n(&mut self, k: u64) -> u64 {
        self.rng.next() % k
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.n(100) < pct
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.next() as u8).collect()
    }
    fn port(&mut self) -> u16 {
        1024 + self.n(60000) as u16
    }
}

fn eth(vlans: usize, ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&DIRECTOR_MAC);
    f.extend_from_slice(&CLIENT_MAC);
    for i in 0..vlans {
        let tpid: u16 = if i == 0 && vlans > 1 { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&((10 + i as u16) & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(payload);
    t
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// IPv4 header (+ `opt_words` words of NOP options) and payload; `frag` = flags/offset field.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag: u16, opt_words: usize, l4: &[u8]) -> Vec<u8> {
    let ihl = 20 + opt_words * 4;
    let mut h = vec![0u8; ihl];
    h[0] = 0x40 | (ihl / 4) as u8;
    h[2..4].copy_from_slice(&((ihl + l4.len()) as u16).to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    for b in &mut h[20..] {
        *b = 1; // NOP
    }
    h.extend_from_slice(l4);
    h
}

/// IPv6 header with extension headers `exts` (types) before `proto`.
fn ipv6(src: [u8; 16], dst: [u8; 16], exts: &[u8], proto: u8, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    let mut chain = Vec::new();
    for (i, &t) in exts.iter().enumerate() {
        let next = exts.get(i + 1).copied().unwrap_or(proto);
        match t {
            44 => {
                chain.extend_from_slice(&[next, 0]);
                chain.extend_from_slice(&frag_off.to_be_bytes());
                chain.extend_from_slice(&[0, 0, 0, 1]);
            }
            51 => {
                // AH: length in 4-byte units minus 2; 16 bytes here.
                chain.extend_from_slice(&[next, 2]);
                chain.extend_from_slice(&[0u8; 14]);
            }
            _ => {
                // Hop-by-hop, routing, destination options: 8-byte units minus 1; 16 bytes.
                chain.extend_from_slice(&[next, 1]);
                chain.extend_from_slice(&[1u8; 14]);
            }
        }
    }
    let first = exts.first().copied().unwrap_or(proto);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&((chain.len() + l4.len()) as u16).to_be_bytes());
    h[6] = first;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    h.extend_from_slice(&chain);
    h.extend_from_slice(l4);
    h
}

fn client4(g: &mut Gen) -> [u8; 4] {
    [198, 19, g.n(256) as u8, g.n(256) as u8]
}

fn client6(g: &mut Gen) -> [u8; 16] {
    let mut a = NOT_VIP_6;
    a[15] = g.n(256) as u8;
    a[14] = 0x10;
    a
}

/// One structured frame and what it must get.
pub fn generate(rng: &mut Rng) -> (Vec<u8>, Want) {
    let mut g = Gen { rng };
    let vlans = match g.n(10) {
        0 => 1,
        1 => 2,
        2 => 3, // three tags: not parsed, passed
        _ => 0,
    };
    let payload_len = g.n(64) as usize;
    let payload = g.bytes(payload_len);
    let (ether_type, l3, mut want) = match g.n(12) {
        // TCP over IPv4 to a VIP (any of them) or elsewhere, with options.
        0..=3 => {
            let (dst, want, dport) = match g.n(7) {
                0 | 1 => (VIP_A, Want::Tx(&[1, 2]), 80),
                2 => (VIP_A, Want::Pass, 443),
                3 => (VIP_B, Want::Drop, 80),
                4 => (VIP_C, Want::Tx(&[4]), g.port()),
                5 => (VIP_D, Want::Pass, 80),
                _ => (NOT_VIP_4, Want::Pass, 80),
            };
            let flags = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12, 0x00, 0xff][g.n(8) as usize];
            let opts = if g.chance(20) { g.n(11) as usize } else { 0 };
            let l4 = tcp(g.port(), dport, flags, &payload);
            (0x0800, ipv4(client4(&mut g), dst, 6, 0, opts, &l4), want)
        }
        // UDP over IPv4.
        4 => {
            let (dst, want, dport) = match g.n(3) {
                0 => (VIP_A, Want::Tx(&[3]), 53),
                1 => (VIP_A, Want::Pass, 54),
                _ => (VIP_C, Want::Pass, 53), // VIP_C has only a TCP service
            };
            let l4 = udp(g.port(), dport, &payload);
            (0x0800, ipv4(client4(&mut g), dst, 17, 0, 0, &l4), want)
        }
        // IPv4 fragments (first or later) to a VIP or not.
        5 => {
            let first = g.chance(50);
            let frag: u16 = if first { 0x2000 } else { 0x2000 | 185 };
            let (dst, want) = match g.n(4) {
                0 => (VIP_A, Want::Drop),
                1 => (VIP_C, Want::Tx(&[4])),
                2 => (VIP_D, Want::Drop),
                _ => (NOT_VIP_4, Want::Pass),
            };
            let proto = if g.chance(80) { 6 } else { 17 };
            let l4 = if first {
                tcp(g.port(), 80, 0x18, &payload)
            } else {
                payload.clone()
            };
            // UDP fragments to VIP_C: no client-hashed UDP service there.
            let want = if proto == 17 && dst == VIP_C {
                Want::Drop
            } else {
                want
            };
            (
                0x0800,
                ipv4(client4(&mut g), dst, proto, frag, 0, &l4),
                want,
            )
        }
        // ICMPv4 errors quoting a reply from a VIP, sometimes truncated.
        6 => {
            let cport = g.port();
            let client = client4(&mut g);
            let quoted_from = if g.chance(80) { VIP_A } else { NOT_VIP_4 };
            let inner = ipv4(
                quoted_from,
                client,
                6,
                0,
                0,
                &tcp(80, cport, 0x18, &payload),
            );
            let keep = match g.n(4) {
                0 => g.n(24) as usize + 1, // truncated inside the inner IP header or ports
                _ => 28 + g.n(20) as usize,
            }
            .min(inner.len());
            let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
            icmp.extend_from_slice(&inner[..keep]);
            let want = if quoted_from != VIP_A || keep < 24 {
                Want::Pass
            } else {
                Want::Tx(&[1, 2])
            };
            (
                0x0800,
                ipv4([198, 18, 0, 1], quoted_from, 1, 0, 0, &icmp),
                want,
            )
        }
        // TCP/UDP over IPv6 with 0-5 extension headers (more than 4: passed), sometimes a fragment.
        7..=9 => {
            let n_ext = match g.n(6) {
                0..=2 => 0,
                k => k as usize - 1, // 2..4
            };
            let n_ext = if g.chance(5) { 5 } else { n_ext };
            let mut exts: Vec<u8> = (0..n_ext)
                .map(|_| [0u8, 43, 60, 51][g.n(4) as usize])
                .collect();
            let frag = g.chance(15);
            if frag && !exts.is_empty() {
                let i = g.n(exts.len() as u64) as usize;
                exts[i] = 44;
            } else if frag {
                exts.push(44);
            }
            let frag = exts.contains(&44);
            let first_frag = g.chance(50);
            let frag_off: u16 = if first_frag { 1 } else { 185 << 3 | 1 };
            let to_vip = g.chance(75);
            let dst = if to_vip { VIP_6 } else { NOT_VIP_6 };
            let (proto, l4, dport_is_svc) = if g.chance(85) {
                let dport = if g.chance(85) { 80 } else { 443 };
                (6, tcp(g.port(), dport, 0x18, &payload), dport == 80)
            } else {
                (17, udp(g.port(), 80, &payload), false)
            };
            let l4 = if frag && !first_frag {
                payload.clone()
            } else {
                l4
            };
            let want = if !to_vip || exts.len() > 4 {
                Want::Pass
            } else if frag {
                Want::Drop
            } else if dport_is_svc {
                Want::Tx(&[5])
            } else {
                Want::Pass
            };
            (
                0x86dd,
                ipv6(client6(&mut g), dst, &exts, proto, frag_off, &l4),
                want,
            )
        }
        // ICMPv6 errors (packet too big) quoting a reply from the IPv6 VIP.
        10 => {
            let cport = g.port();
            let client = client6(&mut g);
            let inner = ipv6(VIP_6, client, &[], 6, 0, &tcp(80, cport, 0x18, &payload));
            let keep = match g.n(4) {
                0 => g.n(44) as usize + 1,
                _ => 44 + g.n(20) as usize,
            }
            .min(inner.len());
            let mut icmp = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
            icmp.extend_from_slice(&inner[..keep]);
            let want = if keep < 44 {
                Want::Pass
            } else {
                Want::Tx(&[5])
            };
            (0x86dd, ipv6(NOT_VIP_6, VIP_6, &[], 58, 0, &icmp), want)
        }
        // Something else: ARP, LLDP, random EtherType.
        _ => {
            let et = [0x0806, 0x88cc, g.n(65536) as u16][g.n(3) as usize];
            let et = if et == 0x0800 || et == 0x86dd || et == 0x8100 || et == 0x88a8 {
                0x0806
            } else {
                et
            };
            let n = 28 + g.n(40) as usize;
            (et, g.bytes(n), Want::Pass)
        }
    };
    if vlans == 3 {
        want = Want::Pass;
    }
    let mut f = eth(vlans, ether_type);
    f.extend_from_slice(&l3);
    // Ethernet padding to the 60-byte minimum, as on the wire.
    if f.len() < 60 {
        f.resize(60, 0);
    }
    (f, want)
}

/// Mutates a frame in place: truncations, length fields, byte flips, insertions, junk.
pub fn mutate(rng: &mut Rng, f: &mut Vec<u8>) {
    let rounds = 1 + rng.next() % 3;
    for _ in 0..rounds {
        let len = f.len().max(1);
        // Most header fields sit in the first 100 bytes: bias positions there.
        let pos = if rng.next().is_multiple_of(4) {
            rng.next() as usize % len
        } else {
            rng.next() as usize % len.min(100)
        };
        match rng.next() % 8 {
            0 => f.truncate(14 + rng.next() as usize % len.saturating_sub(13).max(1)),
            1 => {
                if let Some(b) = f.get_mut(pos) {
                    *b ^= 1 << (rng.next() % 8);
                }
            }
            2 => {
                if let Some(b) = f.get_mut(pos) {
                    *b = rng.next() as u8;
                }
            }
            3 => {
                // An "interesting" 16-bit value (lengths, EtherTypes) at a random offset.
                const V: [u16; 12] = [
                    0, 1, 5, 20, 40, 0x45, 0x7fff, 0xffff, 0x0800, 0x86dd, 0x8100, 0x88a8,
                ];
                let v = V[rng.next() as usize % V.len()].to_be_bytes();
                if pos + 1 < f.len() {
                    f[pos..pos + 2].copy_from_slice(&v);
                }
            }
            4 => {
                // The nibble that is IHL in IPv4 / data offset in TCP, anywhere.
                if let Some(b) = f.get_mut(pos) {
                    *b = (*b & 0xf0) | (rng.next() % 16) as u8;
                }
            }
            5 => {
                let n = 1 + rng.next() as usize % 8;
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                let at = pos.min(f.len());
                f.splice(at..at, junk);
            }
            6 => {
                let n = 1 + rng.next() as usize % 8;
                let at = pos.min(f.len());
                let end = (at + n).min(f.len());
                f.drain(at..end);
            }
            _ => {
                let n = 1 + rng.next() as usize % 64;
                f.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    // test_run refuses frames shorter than an Ethernet header.
    if f.len() < 14 {
        f.resize(14, 0);
    }
}

/// The destination address of the (reference-parsed) outer IP header, if any: everything else
/// must be passed untouched.
fn outer_dst(f: &[u8]) -> Option<&[u8]> {
    let mut et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let mut off = 14;
    for _ in 0..2 {
        if et == 0x8100 || et == 0x88a8 {
            et = u16::from_be_bytes([*f.get(off + 2)?, *f.get(off + 3)?]);
            off += 4;
        }
    }
    match et {
        0x0800 => f.get(off + 16..off + 20),
        0x86dd => f.get(off + 24..off + 40),
        _ => None,
    }
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub frames: u64,
    pub mutated: u64,
    pub by_action: [u64; 5],
    pub violations: Vec<String>,
    pub secs: f64,
}

fn hex(f: &[u8]) -> String {
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `n` frames (about 40% mutated) and checks each verdict and output.
pub fn run(h: &Harness, seed: u64, n: u64) -> Outcome {
    let mut rng = Rng(seed | 1);
    let mut o = Outcome::default();
    let started = Instant::now();
    for _ in 0..n {
        let (mut f, want) = generate(&mut rng);
        let mutated = rng.next() % 10 < 4;
        if mutated {
            mutate(&mut rng, &mut f);
            o.mutated += 1;
        }
        let (action, out) = h.run(&f);
        o.frames += 1;
        if let Some(c) = o.by_action.get_mut(action as usize) {
            *c += 1;
        }
        let mut bad = |why: &str| {
            if o.violations.len() < 20 {
                o.violations.push(format!(
                    "{why}: action {action}, want {want:?}, mutated {mutated}\n  in  {}\n  out {}",
                    hex(&f),
                    hex(&out)
                ));
            }
        };
        let dst = outer_dst(&f);
        let allowed = dst.map(reals_of).unwrap_or(&[]);
        match action {
            XDP_PASS => {
                if out != f {
                    bad("PASS changed the frame");
                }
            }
            XDP_TX | XDP_REDIRECT => {
                let mac: [u8; 6] = out[0..6].try_into().unwrap();
                if out.len() != f.len() || out[12..] != f[12..] {
                    bad("forwarded frame differs beyond the MACs");
                } else if out[6..12] != DIRECTOR_MAC {
                    bad("source MAC is not the egress interface's");
                } else if !allowed.iter().any(|&i| real_mac(i) == mac) {
                    bad("forwarded to a MAC that is not a real server of the VIP");
                }
            }
            XDP_DROP => {
                let is_vip =
                    dst.is_some_and(|d| [&VIP_A[..], &VIP_B, &VIP_C, &VIP_D, &VIP_6].contains(&d));
                if !is_vip {
                    bad("DROP of a frame not addressed to a VIP");
                }
            }
            _ => bad("unexpected action"),
        }
        if !mutated {
            let ok = match want {
                Want::Pass => action == XDP_PASS,
                Want::Drop => action == XDP_DROP,
                Want::Tx(macs) => {
                    action == XDP_TX && macs.iter().any(|&i| out[0..6] == real_mac(i))
                }
            };
            if !ok {
                bad("verdict of a well-formed frame");
            }
        }
    }
    o.secs = started.elapsed().as_secs_f64();
    o
}

/// Counter identities: ACTION_* add up to the frames run and match the verdicts seen; every
/// PASS and DROP has its reason counted.
pub fn check_counters(c: &[u64], o: &Outcome) -> Vec<String> {
    let mut v = Vec::new();
    let actions = c[stat::ACTION_PASS as usize]
        + c[stat::ACTION_DROP as usize]
        + c[stat::ACTION_TX as usize]
        + c[stat::ACTION_REDIRECT as usize];
    if actions != o.frames {
        v.push(format!("ACTION_* sum {actions} != frames {}", o.frames));
    }
    for (idx, action) in [
        (stat::ACTION_PASS, XDP_PASS),
        (stat::ACTION_DROP, XDP_DROP),
        (stat::ACTION_TX, XDP_TX),
        (stat::ACTION_REDIRECT, XDP_REDIRECT),
    ] {
        if c[idx as usize] != o.by_action[action as usize] {
            v.push(format!(
                "{} = {} but {} runs returned it",
                stat::NAMES[idx as usize],
                c[idx as usize],
                o.by_action[action as usize]
            ));
        }
    }
    let pass_reasons = c[stat::NOT_SERVICE as usize]
        + c[stat::MALFORMED as usize]
        + c[stat::INACTIVE as usize]
        + c[stat::NOT_OUR_MAC as usize]
        + c[stat::GROUP_MAC as usize];
    if pass_reasons != c[stat::ACTION_PASS as usize] {
        v.push(format!(
            "not_service + malformed + inactive + not_our_mac + group_mac = {pass_reasons} != action_pass {}",
            c[stat::ACTION_PASS as usize]
        ));
    }
    let drop_reasons = c[stat::NO_REAL as usize]
        + c[stat::FRAGMENT_DROPPED as usize]
        + c[stat::REDIRECT_FAILED as usize];
    if drop_reasons != c[stat::ACTION_DROP as usize] {
        v.push(format!(
            "no_real_server + fragment_dropped + redirect_failed = {drop_reasons} != action_drop {}",
            c[stat::ACTION_DROP as usize]
        ));
    }
    v
}
