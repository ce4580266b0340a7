//! `xlb_sync_*`: connection sync (`[sync]`), registered only on a director that has it, so a
//! rule such as `xlb_sync_socket_open == 0` never fires where sync is not configured.
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::sync::task::SyncStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `sent` or `received`.
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// One counter of [`SyncStats`] without labels: its metric name (without `_total`), help and
/// value.
type Single = (&'static str, &'static str, fn(&SyncStats) -> u64);

const COUNTERS: &[Single] = &[
    (
        "xlb_sync_rate_limited_records",
        "Sync records that waited for max_messages_per_second at least once",
        |s| s.rate_limited,
    ),
    (
        "xlb_sync_entries_written",
        "Peers' connections written into this director's table (marked synced)",
        |s| s.synced_written,
    ),
    (
        "xlb_sync_own_entries_kept",
        "Peers' connection records not written because this director forwards the flow itself",
        |s| s.own_kept,
    ),
    (
        "xlb_sync_state_changes_applied",
        "Peers' state changes (ESTABLISHED, FIN, RST) applied to synced entries",
        |s| s.states_applied,
    ),
    (
        "xlb_sync_own_state_changes_applied",
        "Peers' state changes applied to own entries of flows that moved to that peer",
        |s| s.own_states_applied,
    ),
    (
        "xlb_sync_expired_entries_removed",
        "Synced entries removed because the director that dispatched them expired them",
        |s| s.expired_removed,
    ),
    (
        "xlb_sync_expiries_queued",
        "Expiry records of this director's own flows queued for the peers",
        |s| s.expiries_queued,
    ),
    (
        "xlb_sync_expiries_dropped",
        "Expiry batches from the sweep dropped because the sync task was behind",
        |s| s.expiries_dropped,
    ),
    (
        "xlb_sync_stale_events",
        "Own connection events whose table slot was reused before the task read them",
        |s| s.events_stale,
    ),
];

/// Registers the sync families with `reg` and fills them from `s`.
pub fn fill(reg: &mut Registry, s: &SyncStats) {
    let by_direction = |sent: u64, received: u64| {
        let f = Family::<DirectionLabels, Counter>::default();
        for (direction, n) in [("sent", sent), ("received", received)] {
            f.get_or_create(&DirectionLabels {
                direction: direction.into(),
            })
            .inc_by(n);
        }
        f
    };
    reg.register(
        "xlb_sync_messages",
        "Sync datagrams sent to / accepted from peer directors",
        by_direction(s.messages_sent, s.messages_received),
    );
    reg.register(
        "xlb_sync_records",
        "Records in the sync datagrams sent / accepted",
        by_direction(s.records_sent, s.records_received),
    );
    let by_reason = |counts: &std::collections::BTreeMap<String, u64>| {
        let f = Family::<ReasonLabels, Counter>::default();
        for (reason, n) in counts {
            f.get_or_create(&ReasonLabels {
                reason: reason.clone(),
            })
            .inc_by(*n);
        }
        f
    };
    reg.register(
        "xlb_sync_dropped_messages",
        "Sync datagrams dropped, by reason (bad_mac: another key or a forgery; replayed, stale, truncated, version, ...)",
        by_reason(&s.dropped),
    );
    reg.register(
        "xlb_sync_unknown_records",
        "Peers' records naming a service or real server this director does not have, by reason",
        by_reason(&s.unnamed),
    );
    for (name, help, value) in COUNTERS {
        let c = Counter::<u64>::default();
        c.inc_by(value(s));
        reg.register(*name, *help, c);
    }
    let gauge = |v: i64| {
        let g = Gauge::<i64>::default();
        g.set(v);
        g
    };
    reg.register(
        "xlb_sync_peers",
        "Peer directors heard from",
        gauge(s.peers.len() as i64),
    );
    reg.register(
        "xlb_sync_socket_open",
        "1 while the sync socket is open; 0 while it cannot be opened (retried every 5 s)",
        gauge(i64::from(s.socket_open)),
    );
}

#[cfg(test)]
mod tests {
    use crate::metrics::{process::ProcessStats, render, Format};
    use crate::sync::task::SyncStats;

    fn scrape(sync: Option<SyncStats>) -> String {
        let mut r = crate::status::tests::sample();
        r.sync = sync;
        render(&r, &ProcessStats::default(), Format::Text)
    }

    #[test]
    fn sync_series_only_where_sync_is_configured() {
        let without = scrape(None);
        assert!(!without.contains("xlb_sync_socket_open"), "{without}");
        let mut s = SyncStats {
            messages_sent: 5,
            messages_received: 4,
            peers: vec![2],
            socket_open: false,
            ..SyncStats::default()
        };
        s.dropped.insert("bad_mac".into(), 2);
        let with = scrape(Some(s));
        for line in [
            "xlb_sync_socket_open 0\n",
            "xlb_sync_peers 1\n",
            "xlb_sync_messages_total{direction=\"sent\"} 5\n",
            "xlb_sync_messages_total{direction=\"received\"} 4\n",
            "xlb_sync_dropped_messages_total{reason=\"bad_mac\"} 2\n",
            "xlb_sync_entries_written_total 0\n",
        ] {
            assert!(with.contains(line), "{line}: {with}");
        }
    }
}
