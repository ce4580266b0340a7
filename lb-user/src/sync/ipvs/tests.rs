//! Checked against the layout of `struct ip_vs_sync_mesg` / `ip_vs_sync_v4` / `ip_vs_sync_v6`
//! in net/netfilter/ipvs/ip_vs_sync.c, byte by byte (the kernel here has no IPVS to talk to).
use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn conn_v4() -> IpvsConn {
    IpvsConn {
        protocol: PROTO_TCP,
        flags: flags::DROUTE,
        state: tcp_state::ESTABLISHED,
        client: ip("198.18.1.10"),
        client_port: 40_000,
        vip: ip("198.18.0.100"),
        vip_port: 80,
        real: ip("198.18.2.1"),
        real_port: 80,
        fwmark: 0,
        timeout_s: 900,
        options: Vec::new(),
    }
}

/// The bytes an LVS master sends for `conn_v4()` with sync id 5, written from the struct layout.
fn lvs_bytes_v4() -> Vec<u8> {
    let mut b = vec![
        0, 5, 0, 44, // reserved, syncid, size = 8 + 36
        1, 1, 0, 0, // nr_conns, version, spare
        0, 6, 0, 36, // type (IPv4), protocol TCP, ver 0 | size 36
        0, 0, 0, 3, // flags: IP_VS_CONN_F_DROUTE
        0, 1, // state: IP_VS_TCP_S_ESTABLISHED
        0x9c, 0x40, // cport 40000
        0, 80, // vport
        0, 80, // dport
        0, 0, 0, 0, // fwmark
        0, 0, 3, 0x84, // timeout 900 s
    ];
    b.extend_from_slice(&[198, 18, 1, 10, 198, 18, 0, 100, 198, 18, 2, 1]);
    b
}

#[test]
fn a_v4_connection_matches_the_kernel_layout() {
    let msg = IpvsMessage {
        sync_id: 5,
        conns: vec![conn_v4()],
    };
    assert_eq!(encode(&msg).unwrap(), lvs_bytes_v4());
    assert_eq!(decode(&lvs_bytes_v4()).unwrap(), msg);
}

#[test]
fn a_v6_connection_has_type_bit_0_and_72_bytes() {
    let c = IpvsConn {
        protocol: PROTO_UDP,
        flags: flags::DROUTE,
        state: 0,
        client: ip("2001:db8:1::10"),
        client_port: 5353,
        vip: ip("2001:db8::100"),
        vip_port: 53,
        real: ip("2001:db8:2::1"),
        real_port: 53,
        fwmark: 0,
        timeout_s: 300,
        options: Vec::new(),
    };
    let msg = IpvsMessage {
        sync_id: 0,
        conns: vec![c.clone(), c],
    };
    let b = encode(&msg).unwrap();
    assert_eq!(b.len(), 8 + 72 + 72);
    assert_eq!(&b[2..4], &(152u16).to_be_bytes());
    assert_eq!(&b[8..12], &[1, 17, 0, 72]);
    assert_eq!(&b[8 + 24..8 + 40], &ip_octets("2001:db8:1::10"));
    assert_eq!(&b[8 + 56..8 + 72], &ip_octets("2001:db8:2::1"));
    assert_eq!(decode(&b).unwrap(), msg);
}

fn ip_octets(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

/// Options: sequence data (24 bytes) makes the connection 62 bytes, padded to 64 before the next.
#[test]
fn options_are_kept_and_connections_padded_to_4_bytes() {
    let mut c = conn_v4();
    c.options.push((OPT_SEQ_DATA, vec![7; 24]));
    let msg = IpvsMessage {
        sync_id: 1,
        conns: vec![c.clone(), conn_v4()],
    };
    let b = encode(&msg).unwrap();
    assert_eq!(&b[10..12], &(62u16).to_be_bytes());
    assert_eq!(&b[8 + 36..8 + 38], &[1, 24]);
    assert_eq!(&b[8 + 62..8 + 64], &[0, 0], "padding");
    assert_eq!(b.len(), 8 + 64 + 36);
    assert_eq!(decode(&b).unwrap(), msg);
}

#[test]
fn the_kernels_refusals_are_refusals() {
    let good = lvs_bytes_v4();
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        b
    };
    // Size field not the datagram length.
    assert!(matches!(decode(&good[..40]), Err(IpvsError::Size { .. })));
    // Version 0 format, reserved or spare set.
    assert_eq!(decode(&with(5, 0)), Err(IpvsError::Version0));
    assert_eq!(decode(&with(0, 1)), Err(IpvsError::Version0));
    assert_eq!(decode(&with(7, 1)), Err(IpvsError::Version0));
    // Connection version bits, a size beyond the message, an unknown type.
    assert!(matches!(
        decode(&with(10, 0x10)),
        Err(IpvsError::Conn { .. })
    ));
    assert!(matches!(decode(&with(11, 40)), Err(IpvsError::Conn { .. })));
    assert!(matches!(decode(&with(8, 2)), Err(IpvsError::Conn { .. })));
    // Count larger than what is there.
    assert!(matches!(decode(&with(4, 2)), Err(IpvsError::Truncated(_))));
    assert_eq!(decode(&good[..7]), Err(IpvsError::Truncated(7)));
}

#[test]
fn option_rules_follow_the_kernel() {
    let msg_with = |opts: Vec<(u8, Vec<u8>)>| {
        let mut c = conn_v4();
        c.options = opts;
        encode(&IpvsMessage {
            sync_id: 0,
            conns: vec![c],
        })
        .unwrap()
    };
    assert!(decode(&msg_with(vec![(OPT_SEQ_DATA, vec![0; 23])])).is_err());
    assert!(decode(&msg_with(vec![(OPT_PE_NAME, b"sip".to_vec()); 2])).is_err());
    assert!(
        decode(&msg_with(vec![(9, vec![1])])).is_err(),
        "mandatory unknown"
    );
    assert!(decode(&msg_with(vec![(9 | OPT_F_PARAM, vec![1])])).is_ok());
}

#[test]
fn records_map_both_ways() {
    let r = to_record(&conn_v4(), 9).unwrap();
    assert_eq!(r.state, conn_state::ESTABLISHED);
    assert_eq!(r.remaining_ms, 900_000);
    assert_eq!(r.real, ip("198.18.2.1"));
    assert_eq!(r.origin, 9);
    let back = from_record(&r);
    assert_eq!(back, conn_v4());
    let mut syn = r;
    syn.state = conn_state::SYN_RECV;
    syn.remaining_ms = 59_001;
    let s = from_record(&syn);
    assert_eq!(s.flags, flags::DROUTE | flags::INACTIVE);
    assert_eq!(s.state, tcp_state::SYN_RECV);
    assert_eq!(s.timeout_s, 60);
}

#[test]
fn what_xlb_cannot_hold_is_named() {
    let mut c = conn_v4();
    c.flags = flags::DROUTE | flags::TEMPLATE;
    assert_eq!(to_record(&c, 0), Err(Unmappable::Template));
    c.flags = flags::DROUTE;
    c.fwmark = 1;
    assert_eq!(to_record(&c, 0), Err(Unmappable::Fwmark));
    c.fwmark = 0;
    c.protocol = 132;
    assert_eq!(to_record(&c, 0), Err(Unmappable::Protocol));
}

#[test]
fn a_message_holds_at_most_255_connections() {
    let msg = IpvsMessage {
        sync_id: 0,
        conns: vec![conn_v4(); 256],
    };
    assert_eq!(encode(&msg), Err(IpvsError::TooMany(256)));
}

/// An LVS-TUN (or NAT) director's connections are taken: like an IPVS backup, xlb forwards a
/// synced flow by its own configured method for that real server.
#[test]
fn any_forwarding_method_is_taken_as_this_directors_own() {
    let dr = to_record(&conn_v4(), 0).unwrap();
    for method in [flags::TUNNEL, 0 /* NAT */] {
        let mut c = conn_v4();
        c.flags = (c.flags & !flags::FWD_MASK) | method;
        assert_eq!(to_record(&c, 0), Ok(dr), "method {method}");
    }
}
