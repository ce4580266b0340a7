//! Shared harness for packet tests: the real XDP object, loaded with private (unpinned) maps,
//! configured through the real map writer, run with BPF_PROG_TEST_RUN.
#![allow(dead_code)]

pub mod dr;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use aya::{
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use etherparse::PacketBuilder;
use xlb::dataplane::{
    desired::{DesiredReal, DesiredService, DesiredState, Protocol, Scheduler, ServiceAddr},
    loader::{load, LoadOptions, PROGRAM},
    maps::KernelMaps,
    writer::MapWriter,
};
use xtask::lab::require::Need;

/// What a packet test needs (gate each with `xtask::require!(BPF)`): loading the XDP object.
pub const BPF: &[Need] = &[Need::Bpf];

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// test_run delivers frames as if received on `lo`.
pub const TEST_RUN_IFINDEX: u32 = 1;

pub fn real_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 1, i]
}

pub fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub struct Harness {
    pub ebpf: Ebpf,
    pub writer: MapWriter,
}

impl Harness {
    pub fn new(conn_table_size: u32) -> Self {
        let missing = xtask::lab::require::Missing::of(&[BPF]);
        assert!(
            missing.is_empty(),
            "{missing}: start this test with `xtask::require!(BPF)` so that it skips where it cannot run"
        );
        let mut ebpf = load(
            xlb::BPF_OBJECT,
            &LoadOptions {
                conn_table_size,
                persistence_table_size: 4096,
                maglev_capacity: 1 << 20,
                pin_dir: None,
            },
        )
        .expect("XDP object loads and passes the verifier");
        let maps = KernelMaps::take(&mut ebpf).unwrap();
        let writer = MapWriter::new(maps, Duration::from_secs(60));
        Self { ebpf, writer }
    }

    pub fn apply(&mut self, state: &DesiredState) {
        self.writer.apply(state, Instant::now()).unwrap();
    }

    /// Runs one frame; returns the action and the frame as the program left it.
    pub fn run(&self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self.ebpf.program(PROGRAM).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 512];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        let r = prog.test_run(opts).unwrap();
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    pub fn counters(&self) -> Vec<u64> {
        self.writer.maps().global_counters().unwrap()
    }
}

pub fn real(addr: &str, i: u8, weight: u32) -> DesiredReal {
    DesiredReal {
        addr: v4(addr),
        port: 80,
        weight,
        alive: true,
        mac: real_mac(i),
        src_mac: DIRECTOR_MAC,
        ifindex: TEST_RUN_IFINDEX,
        tx_port: 0,
        tunnel: None,
    }
}

pub fn service(
    vip: &str,
    port: u16,
    protocol: Protocol,
    reals: Vec<DesiredReal>,
) -> DesiredService {
    DesiredService {
        addr: ServiceAddr {
            vip: v4(vip),
            port,
            protocol,
        },
        active: true,
        scheduler: Scheduler::Maglev,
        hash_client_only: false,
        persistence: None,
        table_size: 65_537,
        reals,
        sorry: None,
    }
}

pub fn state(services: Vec<DesiredService>) -> DesiredState {
    DesiredState {
        services,
        flood_threshold: 0,
        tx_ports: Default::default(),
        interface_macs: Default::default(),
    }
}

pub fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1000, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let b = if flags.contains('F') { b.fin() } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, b"hello").unwrap();
    v
}

pub fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut v = Vec::new();
    b.write(&mut v, b"query").unwrap();
    v
}

/// A forwarded frame must equal the input except for the two MAC addresses.
pub fn assert_dr_rewrite(input: &[u8], output: &[u8], dst_mac: [u8; 6]) {
    assert_eq!(output.len(), input.len(), "length changed");
    assert_eq!(&output[0..6], &dst_mac, "destination MAC");
    assert_eq!(&output[6..12], &DIRECTOR_MAC, "source MAC");
    assert_eq!(&output[12..], &input[12..], "bytes after the MACs changed");
}

/// Deterministic xorshift generator for test traffic.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
