//! `lvs_sync_daemon IFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`
//! (keepalived.conf(5), `global_defs`) -> `[sync]` with `protocol = "ipvs"`: xlb then speaks
//! IPVS's sync protocol on the same group and port, so it syncs with the LVS directors it
//! replaces during a migration.
use std::net::IpAddr;

use crate::config::schema::{unspanned as u, Sync, SyncProtocol};

use super::super::tree::Node;
use super::super::Note;

pub(super) fn translate(n: &Node, notes: &mut Vec<Note>) -> Option<Sync> {
    let mut note = |m: String| notes.push(Note::at(&n.loc, m));
    let Some(iface) = n.arg(1) else {
        note("lvs_sync_daemon without an interface: not imported".into());
        return None;
    };
    let mut s = Sync {
        director_id: u(1),
        protocol: u(SyncProtocol::Ipvs),
        key_file: None,
        peers: u(Vec::new()),
        group: Some(u(IpAddr::V4(crate::sync::ipvs::GROUP_V4))),
        port: None,
        interface: Some(u(iface.to_string())),
        sync_id: 0,
        max_messages_per_second: u(10_000),
        max_message_bytes: u(1400),
        max_age: u(30.0),
        refresh_interval: u(10.0),
    };
    let mut k = 2;
    if let Some(inst) = n.arg(2).filter(|w| !is_option(w)) {
        note(format!(
            "lvs_sync_daemon: keepalived makes this director IPVS sync master or backup with \
             vrrp_instance {inst}; xlb sends and receives at once, whatever the VRRP state"
        ));
        k = 3;
    }
    while let Some(opt) = n.arg(k) {
        let val = n.arg(k + 1);
        match (opt, val) {
            ("id", Some(v)) => match v.parse::<u8>() {
                Ok(id) => s.sync_id = id,
                Err(_) => note(format!(
                    "lvs_sync_daemon id `{v}`: expected 0..=255, not imported"
                )),
            },
            ("maxlen", Some(v)) => match v.parse::<u32>() {
                Ok(m) if (crate::sync::codec::MIN_MESSAGE_LEN as u32..=65_000).contains(&m) => {
                    s.max_message_bytes = u(m)
                }
                _ => note(format!(
                    "lvs_sync_daemon maxlen `{v}`: out of xlb's range, 1400 kept"
                )),
            },
            ("port", Some(v)) => match v.parse::<u16>() {
                Ok(p) if p != 0 => s.port = Some(u(p)),
                _ => note(format!("lvs_sync_daemon port `{v}`: invalid, 8848 kept")),
            },
            ("group", Some(v)) => match v.parse::<IpAddr>() {
                Ok(g) if g.is_multicast() => s.group = Some(u(g)),
                _ => note(format!(
                    "lvs_sync_daemon group `{v}`: not a multicast address, 224.0.0.81 kept"
                )),
            },
            ("ttl", Some(_)) => note(
                "lvs_sync_daemon ttl: not imported (xlb sends sync traffic with TTL 1, on-link)"
                    .into(),
            ),
            _ => {
                note(format!(
                    "lvs_sync_daemon option `{opt}` unknown to keepalived: ignored"
                ));
                k += 1;
                continue;
            }
        }
        k += 2;
    }
    note(
        "lvs_sync_daemon -> [sync] protocol \"ipvs\": IPVS's sync protocol has no \
         authentication, keep it on a trusted segment; after the migration switch to \
         protocol \"xlb\" with a key_file. director_id 1 written: give each director its own"
            .into(),
    );
    Some(s)
}

fn is_option(w: &str) -> bool {
    matches!(w, "id" | "maxlen" | "port" | "ttl" | "group")
}

#[cfg(test)]
mod tests {
    use crate::import::keepalived::{import_str, Options};

    fn import(conf: &str) -> (String, String) {
        let opts = Options {
            config_id: "t".into(),
            includes_within: None,
        };
        let imported =
            import_str(conf, std::path::Path::new("/tmp/keepalived.conf"), &opts).expect("imports");
        let notes = imported
            .notes
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        (imported.to_toml().unwrap(), notes)
    }

    const VS: &str = "virtual_server 198.18.0.100 80 {\n lb_kind DR\n protocol TCP\n real_server 198.18.0.11 80 {\n }\n}\n";

    #[test]
    fn lvs_sync_daemon_becomes_an_ipvs_sync_section_that_validates() {
        let conf = format!(
            "global_defs {{\n  lvs_sync_daemon eth1 VI_1 id 7 maxlen 1200 port 8850 ttl 2\n}}\n{VS}"
        );
        let (toml, notes) = import(&conf);
        let cfg = crate::config::parse(&toml, "imported.toml").unwrap();
        let s = cfg.sync.expect("a [sync] section");
        assert_eq!(s.protocol, crate::config::model::SyncProtocol::Ipvs);
        assert_eq!(s.sync_id, 7);
        assert_eq!(s.port, 8850);
        assert_eq!(s.max_message_bytes, 1200);
        assert_eq!(s.interface.as_deref(), Some("eth1"));
        assert_eq!(
            s.peers,
            crate::config::model::SyncPeers::Group("224.0.0.81".parse().unwrap())
        );
        assert!(notes.contains("keepalived.conf:2"), "{notes}");
        assert!(notes.contains("no authentication"), "{notes}");
        assert!(notes.contains("ttl"), "{notes}");
        assert!(notes.contains("VI_1"), "{notes}");
    }

    #[test]
    fn defaults_are_ipvs_defaults() {
        let (toml, _) = import(&format!("global_defs {{\n lvs_sync_daemon eth0\n}}\n{VS}"));
        let s = crate::config::parse(&toml, "i.toml").unwrap().sync.unwrap();
        assert_eq!(s.port, 8848);
        assert_eq!(s.sync_id, 0);
    }
}
