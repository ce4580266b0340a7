//! `[sync]`: who the peers are, how messages are authenticated, the ranges.
use super::super::error::Collector;
use super::super::schema::{Sync, SyncProtocol};
use super::{absolute, frange, ifname, range, unicast_addr};

pub(super) fn sync(s: &Sync, c: &mut Collector<'_>) {
    range(c, &s.director_id, 1, u32::MAX, "director_id");
    key(s, c);
    destinations(s, c);
    if let Some(p) = &s.port {
        range(c, p, 1, u16::MAX, "port");
    }
    if let Some(i) = &s.interface {
        ifname(i, c);
    }
    if s.sync_id != 0 && *s.protocol.get_ref() != SyncProtocol::Ipvs {
        c.at(
            s.protocol.span(),
            "`sync_id` is an IPVS setting: set `protocol = \"ipvs\"` or remove `sync_id`",
        );
    }
    range(
        c,
        &s.max_messages_per_second,
        1,
        1_000_000,
        "max_messages_per_second",
    );
    range(
        c,
        &s.max_message_bytes,
        crate::sync::codec::MIN_MESSAGE_LEN as u32,
        65_000,
        "max_message_bytes",
    );
    frange(c, &s.max_age, 1.0, 3600.0, "max_age (seconds)");
    frange(
        c,
        &s.refresh_interval,
        1.0,
        3600.0,
        "refresh_interval (seconds)",
    );
}

/// xlb's protocol needs the key; IPVS's cannot use one (an operator must not believe it is
/// authenticated).
fn key(s: &Sync, c: &mut Collector<'_>) {
    match (s.protocol.get_ref(), &s.key_file) {
        (SyncProtocol::Xlb, None) => c.at(
            s.director_id.span(),
            "[sync] needs `key_file` (a file with the shared key, at least 16 bytes): every \
             message is authenticated, or a sync port would let anyone inject forwarding state",
        ),
        (SyncProtocol::Ipvs, Some(k)) => c.at(
            k.span(),
            "`key_file` with `protocol = \"ipvs\"`: IPVS's sync protocol has no authentication; \
             remove the key and keep sync on a trusted segment, or use `protocol = \"xlb\"`",
        ),
        (SyncProtocol::Xlb, Some(k)) => absolute(c, k, "key_file"),
        (SyncProtocol::Ipvs, None) => {}
    }
}

fn destinations(s: &Sync, c: &mut Collector<'_>) {
    let peers = s.peers.get_ref();
    match (&s.group, peers.is_empty()) {
        (Some(g), false) => c.at(
            g.span(),
            "both `group` and `peers`: expected one of them (multicast or a unicast list)",
        ),
        (None, true) => c.at(
            s.director_id.span(),
            "[sync] needs `peers` (unicast addresses) or `group` (a multicast address)",
        ),
        (Some(g), true) => {
            if !g.get_ref().is_multicast() {
                c.at(
                    g.span(),
                    format!("group {} is not a multicast address", g.get_ref()),
                );
            }
            if s.interface.is_none() {
                c.at(g.span(), "`group` needs `interface` (where to join it)");
            }
        }
        (None, false) => {
            let v4 = peers[0].get_ref().is_ipv4();
            for (i, p) in peers.iter().enumerate() {
                unicast_addr(c, p, "peer");
                if p.get_ref().is_ipv4() != v4 {
                    c.at(
                        p.span(),
                        "peers of both address families: expected one family",
                    );
                }
                if peers[..i].iter().any(|q| q.get_ref() == p.get_ref()) {
                    c.at(p.span(), format!("peer {} is listed twice", p.get_ref()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::model::{SyncPeers, SyncProtocol};

    const HEAD: &str = "[global]\ninterfaces = [\"eth0\"]\n[sync]\n";

    fn errors(sync: &str) -> String {
        let src = format!("{HEAD}{sync}");
        match crate::config::parse(&src, "x.toml") {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_unicast_xlb_section_resolves_its_defaults() {
        let src = format!(
            "{HEAD}director_id = 2\nkey_file = \"/etc/xlb/sync.key\"\npeers = [\"198.18.0.1\", \"198.18.0.3\"]\n"
        );
        let cfg = crate::config::parse(&src, "x.toml").unwrap();
        let s = cfg.sync.unwrap();
        assert_eq!(s.director_id, 2);
        assert_eq!(s.protocol, SyncProtocol::Xlb);
        assert_eq!(s.port, 8849);
        assert_eq!(
            s.peers,
            SyncPeers::Unicast(vec![
                "198.18.0.1".parse().unwrap(),
                "198.18.0.3".parse().unwrap()
            ])
        );
        assert_eq!(s.refresh_interval, 10.0);
        assert_eq!(cfg.global.previous_ring_hold, 120.0);
    }

    #[test]
    fn ipvs_defaults_to_its_port_and_refuses_a_key() {
        let ok = format!(
            "{HEAD}director_id = 1\nprotocol = \"ipvs\"\ngroup = \"224.0.0.81\"\ninterface = \"eth1\"\nsync_id = 7\n"
        );
        let s = crate::config::parse(&ok, "x.toml").unwrap().sync.unwrap();
        assert_eq!(s.port, 8848);
        assert_eq!(s.sync_id, 7);
        let e = errors("director_id = 1\nprotocol = \"ipvs\"\ngroup = \"224.0.0.81\"\ninterface = \"eth1\"\nkey_file = \"/k\"\n");
        assert!(
            e.contains("x.toml:8:12") && e.contains("no authentication"),
            "{e}"
        );
    }

    /// Each refusal names file:line:column of the value at fault.
    #[test]
    fn refusals_point_at_the_value() {
        let cases = [
            ("director_id = 1\npeers = [\"198.18.0.2\"]\n", "x.toml:4:15", "key_file"),
            ("director_id = 0\nkey_file = \"/k\"\npeers = [\"198.18.0.2\"]\n", "x.toml:4:15", "director_id 0"),
            ("director_id = 1\nkey_file = \"k\"\npeers = [\"198.18.0.2\"]\n", "x.toml:5:12", "absolute"),
            ("director_id = 1\nkey_file = \"/k\"\n", "x.toml:4:15", "`peers`"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\"]\ngroup = \"239.1.1.1\"\ninterface = \"eth0\"\n", "x.toml:7:9", "both"),
            ("director_id = 1\nkey_file = \"/k\"\ngroup = \"198.18.0.9\"\ninterface = \"eth0\"\n", "x.toml:6:9", "not a multicast"),
            ("director_id = 1\nkey_file = \"/k\"\ngroup = \"239.1.1.1\"\n", "x.toml:6:9", "needs `interface`"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\", \"198.18.0.2\"]\n", "x.toml:6:24", "twice"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\", \"2001:db8::2\"]\n", "x.toml:6:24", "both address families"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\"]\nmax_message_bytes = 100\n", "x.toml:7:21", "max_message_bytes 100"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\"]\nrefresh_interval = 0.5\n", "x.toml:7:20", "refresh_interval"),
            ("director_id = 1\nkey_file = \"/k\"\npeers = [\"198.18.0.2\"]\nsync_id = 3\n", "", "IPVS setting"),
        ];
        for (body, at, what) in cases {
            let e = errors(body);
            assert!(e.contains(at) && e.contains(what), "{body}\n=> {e}");
        }
    }
}
