use std::net::IpAddr;

use lb_common::{conn_state, PROTO_TCP, PROTO_UDP};

use super::*;

fn key() -> SyncKey {
    SyncKey::new(b"0123456789abcdef-shared".to_vec()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn header(sequence: u64) -> Header {
    Header {
        director_id: 7,
        epoch: 1_764_000_000,
        sequence,
        sent_unix_ms: 1_764_000_000_123,
    }
}

fn flow4() -> Flow {
    Flow {
        proto: PROTO_TCP,
        client: ip("198.18.1.10"),
        client_port: 40_000,
        vip: ip("198.18.0.100"),
        vip_port: 80,
    }
}

fn flow6() -> Flow {
    Flow {
        proto: PROTO_UDP,
        client: ip("2001:db8:1::10"),
        client_port: 5353,
        vip: ip("2001:db8::100"),
        vip_port: 53,
    }
}

fn one_of_each() -> Vec<Record> {
    vec![
        Record::Conn(ConnRecord {
            flow: flow4(),
            service_port: 80,
            real: ip("198.18.2.1"),
            real_port: 80,
            state: conn_state::ESTABLISHED,
            remaining_ms: 899_500,
            origin: 3,
        }),
        Record::Conn(ConnRecord {
            flow: flow6(),
            service_port: 0,
            real: ip("2001:db8:2::1"),
            real_port: 53,
            state: conn_state::UDP,
            remaining_ms: 300_000,
            origin: 7,
        }),
        Record::State(StateChange {
            flow: flow4(),
            state: conn_state::FIN_WAIT,
            remaining_ms: 120_000,
        }),
        Record::Expiry(flow6()),
        Record::Health(HealthRecord {
            proto: PROTO_TCP,
            vip: ip("198.18.0.100"),
            service_port: 80,
            real: ip("198.18.2.1"),
            real_port: 80,
            state: HealthState::Failing,
            failures: 2,
        }),
    ]
}

#[test]
fn every_record_type_round_trips() {
    let records = one_of_each();
    let wire = encode(&key(), &header(42), &records);
    assert_eq!(
        wire.len(),
        HEADER_LEN + MAC_LEN + records.iter().map(record_len).sum::<usize>()
    );
    let m = decode(&key(), &wire).unwrap();
    assert_eq!(m.header, header(42));
    assert_eq!(m.records, records);
    assert_eq!(m.unknown_records, 0);
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let wire = encode(&key(), &header(0x0102_0304_0506_0708), &[]);
    assert_eq!(&wire[0..4], b"XLBS");
    assert_eq!(wire[4], 1);
    assert_eq!(wire[5], 0);
    assert_eq!(&wire[6..8], &[0, 0]);
    assert_eq!(&wire[8..12], &7u32.to_be_bytes());
    assert_eq!(&wire[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(wire.len(), HEADER_LEN + MAC_LEN);
}

#[test]
fn every_truncation_is_refused() {
    let wire = encode(&key(), &header(1), &one_of_each());
    for len in 0..wire.len() {
        let e = decode(&key(), &wire[..len]).unwrap_err();
        assert!(
            matches!(e, CodecError::Truncated(_) | CodecError::BadMac),
            "{len}: {e:?}"
        );
    }
}

#[test]
fn a_wrong_key_or_any_flipped_bit_fails_the_hmac() {
    let wire = encode(&key(), &header(1), &one_of_each());
    let other = SyncKey::new(b"another key of 16+ bytes".to_vec()).unwrap();
    assert_eq!(decode(&other, &wire), Err(CodecError::BadMac));
    for i in 5..wire.len() {
        let mut w = wire.clone();
        w[i] ^= 0x10;
        assert_eq!(decode(&key(), &w), Err(CodecError::BadMac), "byte {i}");
    }
}

#[test]
fn another_version_or_magic_is_refused_before_the_hmac() {
    let mut wire = encode(&key(), &header(1), &one_of_each());
    wire[4] = 2;
    assert_eq!(decode(&key(), &wire), Err(CodecError::Version(2)));
    wire[0] = b'Y';
    assert_eq!(decode(&key(), &wire), Err(CodecError::BadMagic));
}

/// A message with a valid HMAC whose records are wrong (a peer's bug) is refused whole.
#[test]
fn authenticated_but_malformed_records_are_refused() {
    let resign = |mut body: Vec<u8>| {
        body.truncate(body.len() - MAC_LEN);
        let mut m = key().mac();
        m.update(&body);
        body.extend_from_slice(&m.finalize().into_bytes());
        body
    };
    let wire = encode(&key(), &header(1), &one_of_each()[..1]);
    // Count says 2, one record present.
    let mut w = wire.clone();
    w[7] = 2;
    assert!(matches!(
        decode(&key(), &resign(w)),
        Err(CodecError::Malformed(_))
    ));
    // Count says 0, one record present (trailing bytes).
    let mut w = wire.clone();
    w[7] = 0;
    assert!(matches!(
        decode(&key(), &resign(w)),
        Err(CodecError::Malformed(_))
    ));
    // An IPv4 address with bytes in its padding.
    let mut w = wire.clone();
    w[HEADER_LEN + 2 + 10] = 1;
    assert!(matches!(
        decode(&key(), &resign(w)),
        Err(CodecError::Malformed(_))
    ));
    // A state xlb does not have.
    let mut w = wire.clone();
    w[HEADER_LEN + 2 + 2] = 99;
    assert!(matches!(
        decode(&key(), &resign(w)),
        Err(CodecError::Malformed(_))
    ));
    // Known type, other length.
    let mut w = wire;
    w[HEADER_LEN + 1] = 60;
    assert!(matches!(
        decode(&key(), &resign(w)),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn unknown_record_types_are_skipped_by_length() {
    let mut body = encode(&key(), &header(1), &one_of_each()[..1]);
    body.truncate(body.len() - MAC_LEN);
    body[7] = 2;
    body.extend_from_slice(&[200, 3, 1, 2, 3]);
    let mut m = key().mac();
    m.update(&body);
    body.extend_from_slice(&m.finalize().into_bytes());
    let msg = decode(&key(), &body).unwrap();
    assert_eq!(msg.records.len(), 1);
    assert_eq!(msg.unknown_records, 1);
}

#[test]
fn batches_stay_within_the_datagram_size() {
    let records: Vec<Record> = one_of_each().into_iter().cycle().take(100).collect();
    let max = 1400;
    let runs = batches(&records, max);
    assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 100);
    for run in &runs {
        assert!(encode(&key(), &header(1), run).len() <= max);
    }
    assert!(runs.len() >= 2);
    assert!(batches(&[], max).is_empty());
}

#[test]
fn short_keys_are_refused() {
    assert_eq!(SyncKey::new(vec![1; 15]), Err(CodecError::ShortKey(15)));
    assert_eq!(format!("{:?}", key()), "SyncKey(23 bytes)");
}
