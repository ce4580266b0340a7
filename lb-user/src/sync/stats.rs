//! What the sync task reports: its counters, and the lines `xlb status` prints of them.
use std::fmt::Write as _;

/// How often the task tries again to open a socket that did not open.
pub const SOCKET_RETRY_SECS: u32 = 5;

fn socket_open_default() -> bool {
    true
}

/// Counters of the sync task (`xlb status`, `--peers`, `--json`, metrics `xlb_sync_*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncStats {
    pub director_id: u32,
    pub messages_sent: u64,
    pub records_sent: u64,
    pub messages_received: u64,
    pub records_received: u64,
    /// Datagrams dropped by reason (bad_mac, replayed, stale, truncated, version, ...).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Records of peers without a slot here, by reason (unknown_service, unknown_real).
    pub unnamed: std::collections::BTreeMap<String, u64>,
    /// Own events whose slot was reused before they were read.
    pub events_stale: u64,
    /// Records that waited for the rate limit at least once.
    pub rate_limited: u64,
    pub synced_written: u64,
    pub own_kept: u64,
    /// Peers' state changes (ESTABLISHED, FIN, RST) applied to synced entries here.
    #[serde(default)]
    pub states_applied: u64,
    /// Peers' state changes (ESTABLISHED, FIN, RST) applied to own entries of flows that moved to
    /// that peer (idle here for 2 s or more: ECMP re-hash, a withdrawn director).
    #[serde(default)]
    pub own_states_applied: u64,
    /// Synced entries removed because their origin expired them.
    #[serde(default)]
    pub expired_removed: u64,
    /// Expiry records of this director's own flows queued for the peers.
    #[serde(default)]
    pub expiries_queued: u64,
    /// Expiry batches from the sweep dropped because the task was behind.
    #[serde(default)]
    pub expiries_dropped: u64,
    /// Peer director ids heard from.
    pub peers: Vec<u32>,
    /// False while `[sync]` is on but its socket could not be opened (an interface or address
    /// not there yet, a port taken): tried again every [`SOCKET_RETRY_SECS`] seconds.
    #[serde(default = "socket_open_default")]
    pub socket_open: bool,
    /// Why the socket is not open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_error: Option<String>,
}

impl SyncStats {
    /// `xlb status`'s sync lines: the socket, the peers heard from, traffic and drops.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let socket = match (&self.socket_error, self.socket_open) {
            (_, true) => "socket open".to_string(),
            (Some(e), false) => {
                format!("socket NOT open ({e}; tried again every {SOCKET_RETRY_SECS} s)")
            }
            (None, false) => "socket NOT open".to_string(),
        };
        let peers = match self.peers.as_slice() {
            [] => "no peer heard from".to_string(),
            p => {
                let ids: Vec<String> = p.iter().map(u32::to_string).collect();
                format!("peers heard from: {}", ids.join(", "))
            }
        };
        let _ = writeln!(o, "Sync director {}: {socket}, {peers}", self.director_id);
        let _ = writeln!(
            o,
            "  sent {} messages ({} records), received {} messages ({} records), {} synced entries written",
            self.messages_sent,
            self.records_sent,
            self.messages_received,
            self.records_received,
            self.synced_written
        );
        let dropped: Vec<String> = self
            .dropped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !dropped.is_empty() {
            let _ = writeln!(o, "  dropped {}", dropped.join(", "));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_name_the_socket_peers_and_drops() {
        let mut s = SyncStats {
            director_id: 2,
            socket_open: true,
            peers: vec![1, 3],
            messages_sent: 10,
            ..SyncStats::default()
        };
        let text = s.render();
        assert!(
            text.starts_with("Sync director 2: socket open, peers heard from: 1, 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sent 10 messages") && !text.contains("dropped"),
            "{text}"
        );
        s.socket_open = false;
        s.socket_error = Some("sync socket on port 8848: No such device".into());
        s.peers.clear();
        s.dropped.insert("bad_mac".into(), 4);
        let text = s.render();
        assert!(text.contains("socket NOT open (sync socket on port 8848: No such device; tried again every 5 s), no peer heard from"), "{text}");
        assert!(text.contains("  dropped bad_mac 4\n"), "{text}");
    }

    #[test]
    fn an_older_status_without_the_socket_field_reads_as_open() {
        let s: SyncStats = serde_json::from_str(
            r#"{"director_id":1,"messages_sent":0,"records_sent":0,"messages_received":0,
                "records_received":0,"dropped":{},"unnamed":{},"events_stale":0,
                "rate_limited":0,"synced_written":0,"own_kept":0,"peers":[]}"#,
        )
        .unwrap();
        assert!(s.socket_open && s.socket_error.is_none());
    }
}
