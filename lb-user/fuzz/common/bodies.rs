//! Fuzz target bodies, shared by the cargo-fuzz targets (nightly) and by
//! `lb-user/tests/resilience.rs` (stable, deterministic mutations of the seeds). A body must
//! never panic, whatever the input; errors are fine.
#![allow(dead_code)]

use std::path::Path;

/// Configuration text: parse + validate. A configuration that validates must produce a clean
/// error-free second parse of the same text (determinism) and have sane figures.
pub fn config(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match xlb::config::parse(src, "fuzz.toml") {
        Ok(cfg) => {
            assert!(
                xlb::config::parse(src, "fuzz.toml").is_ok(),
                "parse is not deterministic"
            );
            for vs in &cfg.virtual_servers {
                assert!(!vs.name.is_empty(), "every service has a name");
            }
        }
        Err(errors) => {
            // Every error renders (with its location) without panicking.
            for e in errors.iter() {
                let _ = e.to_string();
            }
        }
    }
}

/// keepalived.conf text: import, render as TOML, and parse that TOML back: an import that
/// succeeds must validate (what xlb would refuse is resolved or noted at the keepalived line, so
/// that no error points into generated TOML); a refusal names its place. The input is imported as the
/// file `main.conf` of `fuzz/keepalived-tree` (includes outside it are not followed), and one
/// input in three gets `include loop.conf` (an include loop through a glob) or `include
/// deep.conf` (a nesting bomb) appended, so that the refusals are reached as well.
pub fn keepalived(data: &[u8]) {
    use xlb::import::keepalived::{import_str, Options};
    let dir = keepalived_tree();
    let mut src = String::from_utf8_lossy(data).into_owned();
    match data.len() % 3 {
        1 => src += "\ninclude loop.conf\n",
        2 => src += "\ninclude deep.conf\n",
        _ => {}
    }
    let opts = Options {
        config_id: "lvs-primary".into(),
        includes_within: Some(dir.clone()),
    };
    match import_str(&src, &dir.join("main.conf"), &opts) {
        Ok(imported) => {
            let toml = imported.to_toml().expect("the import serializes");
            if let Err(e) = xlb::config::parse(&toml, "imported.toml") {
                panic!("the import does not validate:\n{e}\n{toml}");
            }
        }
        Err(e) => assert!(e.to_string().contains(':'), "{e}"),
    }
}

/// `lb-user/fuzz/keepalived-tree` (this file is compiled by the fuzz crate and by lb-user's
/// tests, whose manifest directories differ).
fn keepalived_tree() -> std::path::PathBuf {
    let m = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fuzz = if m.ends_with("fuzz") {
        m.to_path_buf()
    } else {
        m.join("fuzz")
    };
    fuzz.join("keepalived-tree")
}

/// A VRRP advertisement as received (v2/v3, IPv4 or IPv6 by the first input byte's low bit):
/// decoded as is, and again with its checksum made valid so the fuzzer gets past it. A decoded
/// advert encodes, and that decodes to the same advert (v2 intervals are whole seconds, 1-255).
pub fn vrrp(data: &[u8]) {
    use std::net::IpAddr;
    use xlb::vrrp::packet::{checksum, Advert};
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    let (src, dst): (IpAddr, IpAddr) = if sel & 1 == 0 {
        (
            "198.18.0.101".parse().unwrap(),
            "224.0.0.18".parse().unwrap(),
        )
    } else {
        ("fe80::1".parse().unwrap(), "ff02::12".parse().unwrap())
    };
    let _ = Advert::decode(buf, src, dst);
    if buf.len() < 8 {
        return;
    }
    let mut fixed = buf.to_vec();
    fixed[6] = 0;
    fixed[7] = 0;
    let pseudo = (fixed[0] >> 4 == 3).then_some((src, dst));
    let c = checksum(&fixed, pseudo, 112);
    fixed[6..8].copy_from_slice(&c.to_be_bytes());
    if let Ok(advert) = Advert::decode(&fixed, src, dst) {
        let again =
            Advert::decode(&advert.encode(src, dst), src, dst).expect("an encoded advert decodes");
        let mut want = advert.clone();
        if want.version == 2 {
            want.interval_cs = want.interval_cs.clamp(100, 25_500);
        }
        assert_eq!(again, want, "encode/decode round trip");
    }
}

/// A sync datagram (first byte even: xlb's format, odd: IPVS's). xlb's is decoded as received
/// (it must fail at the HMAC) and again re-signed with the test key so the fuzzer reaches the
/// records; a message that decodes re-encodes to the same bytes unless it had unknown records.
/// An IPVS message that decodes re-encodes to one that decodes to the same message.
pub fn sync(data: &[u8]) {
    use xlb::sync::{codec, ipvs, SyncKey};
    let Some((&sel, buf)) = data.split_first() else {
        return;
    };
    if sel & 1 == 1 {
        if let Ok(m) = ipvs::decode(buf) {
            let again = ipvs::encode(&m).expect("a decoded IPVS message encodes");
            assert_eq!(ipvs::decode(&again), Ok(m), "IPVS round trip");
        }
        return;
    }
    let key = SyncKey::new(b"fuzz key, 16+ bytes".to_vec()).expect("long enough");
    let _ = codec::decode(&key, buf);
    if buf.len() < codec::HEADER_LEN + codec::MAC_LEN {
        return;
    }
    let mut signed = buf[..buf.len() - codec::MAC_LEN].to_vec();
    let tag = codec::sign(&key, &signed);
    signed.extend_from_slice(&tag);
    if let Ok(m) = codec::decode(&key, &signed) {
        if m.unknown_records == 0 {
            let again = codec::encode(&key, &m.header, &m.records);
            assert_eq!(again, signed, "xlb sync round trip");
        }
    }
}
