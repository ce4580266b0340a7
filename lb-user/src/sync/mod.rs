//! Connection sync between directors (issue 20): every director tells its peers the connections
//! it dispatches, their state changes and expiry, and its health view of each real server; each
//! inserts its peers' connections into its own table (marked as synced), so a flow that moves to
//! another director (ECMP re-hash, VRRP failover, a director back from an outage) finds its entry
//! there whatever ring changes happened meanwhile.
//!
//! Pure cores: [`record`] (what is said), [`codec`] (xlb's authenticated wire format),
//! [`replay`] (accept a message once), [`ipvs`] (IPVS's sync protocol v1 for migrations). The
//! [`Inbound`] and [`Outbound`] halves below tie them together without IO.
pub mod apply;
pub mod codec;
pub mod ipvs;
pub mod names;
pub mod record;
pub mod replay;
pub mod stats;
pub mod task;
mod wire;

use std::collections::BTreeMap;

pub use codec::{Header, Message, SyncKey};
pub use record::{ConnRecord, Flow, HealthRecord, HealthState, Record, StateChange};

/// Datagrams dropped, by reason (`codec::CodecError::reason`, `replay::ReplayError::reason`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DropCounts(pub BTreeMap<&'static str, u64>);

impl DropCounts {
    pub fn add(&mut self, reason: &'static str) {
        *self.0.entry(reason).or_default() += 1;
    }

    pub fn get(&self, reason: &str) -> u64 {
        self.0.get(reason).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// The receiving half: verifies datagrams and counts what it drops.
#[derive(Debug)]
pub struct Inbound {
    key: SyncKey,
    guard: replay::ReplayGuard,
    pub dropped: DropCounts,
    pub accepted: u64,
}

impl Inbound {
    pub fn new(key: SyncKey, own_id: u32, max_age_ms: u64) -> Self {
        Inbound {
            key,
            guard: replay::ReplayGuard::new(own_id, max_age_ms),
            dropped: DropCounts::default(),
            accepted: 0,
        }
    }

    /// The message in `data` if it is authentic, well-formed, fresh and new; else `None`, counted.
    pub fn receive(&mut self, data: &[u8], now_unix_ms: u64) -> Option<Message> {
        let msg = match codec::decode(&self.key, data) {
            Ok(m) => m,
            Err(e) => {
                self.dropped.add(e.reason());
                return None;
            }
        };
        if let Err(e) = self.guard.accept(&msg.header, now_unix_ms) {
            self.dropped.add(e.reason());
            return None;
        }
        self.accepted += 1;
        Some(msg)
    }

    /// A reload's key and age limit; the replay windows stay (a message seen before the
    /// reload is still a replay after it).
    pub fn set_key(&mut self, key: SyncKey, max_age_ms: u64) {
        self.key = key;
        self.guard.set_max_age(max_age_ms);
    }

    /// Peer director ids heard from.
    pub fn peers(&self) -> Vec<u32> {
        let mut p: Vec<u32> = self.guard.peers().collect();
        p.sort_unstable();
        p
    }
}

/// The sending half: numbers messages and cuts records into datagrams.
#[derive(Debug)]
pub struct Outbound {
    key: SyncKey,
    director_id: u32,
    epoch: u32,
    next_sequence: u64,
    max_message_bytes: usize,
}

impl Outbound {
    /// `epoch`: unix seconds of this daemon's start (a restart begins a new sequence that
    /// receivers accept although its numbers start again from 1).
    pub fn new(key: SyncKey, director_id: u32, epoch: u32, max_message_bytes: usize) -> Self {
        Outbound {
            key,
            director_id,
            epoch,
            next_sequence: 1,
            max_message_bytes: max_message_bytes.max(codec::MIN_MESSAGE_LEN),
        }
    }

    /// A reload's key and message size; numbering goes on (peers accept the next message).
    pub fn set_key(&mut self, key: SyncKey, max_message_bytes: usize) {
        self.key = key;
        self.max_message_bytes = max_message_bytes.max(codec::MIN_MESSAGE_LEN);
    }

    /// The datagrams carrying `records`, each numbered.
    pub fn encode(&mut self, records: &[Record], now_unix_ms: u64) -> Vec<Vec<u8>> {
        codec::batches(records, self.max_message_bytes)
            .into_iter()
            .map(|run| {
                let header = Header {
                    director_id: self.director_id,
                    epoch: self.epoch,
                    sequence: self.next_sequence,
                    sent_unix_ms: now_unix_ms,
                };
                self.next_sequence += 1;
                codec::encode(&self.key, &header, run)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_common::{conn_state, PROTO_TCP};

    fn key(k: &[u8]) -> SyncKey {
        SyncKey::new(k.to_vec()).unwrap()
    }

    fn conn(i: u16) -> Record {
        Record::Conn(ConnRecord {
            flow: Flow {
                proto: PROTO_TCP,
                client: "198.18.1.10".parse().unwrap(),
                client_port: 10_000 + i,
                vip: "198.18.0.100".parse().unwrap(),
                vip_port: 80,
            },
            service_port: 80,
            real: "198.18.2.1".parse().unwrap(),
            real_port: 80,
            state: conn_state::ESTABLISHED,
            remaining_ms: 900_000,
            origin: 1,
        })
    }

    #[test]
    fn a_peer_receives_each_batch_once_and_counts_the_rest() {
        let k = b"shared key for the test";
        let mut out = Outbound::new(key(k), 1, 100, 1400);
        let mut inb = Inbound::new(key(k), 2, 30_000);
        let records: Vec<Record> = (0..50).map(conn).collect();
        let wires = out.encode(&records, 5_000);
        assert!(wires.len() > 1);
        let got: usize = wires
            .iter()
            .filter_map(|w| inb.receive(w, 5_100))
            .map(|m| m.records.len())
            .sum();
        assert_eq!(got, 50);
        for w in &wires {
            assert!(inb.receive(w, 5_200).is_none());
        }
        assert_eq!(inb.dropped.get("replayed"), wires.len() as u64);
        assert_eq!(inb.peers(), vec![1]);
    }

    /// Key rotation by reload: both ends take the new key in place; numbering and replay
    /// windows go on, and a peer still on the old key is counted as bad_mac.
    #[test]
    fn after_a_key_rotation_sync_goes_on_and_the_old_key_is_bad_mac() {
        let (old, new) = (b"the key before the reload", b"the key after the reload!");
        let mut out = Outbound::new(key(old), 1, 100, 1400);
        let mut laggard = Outbound::new(key(old), 3, 100, 1400);
        let mut inb = Inbound::new(key(old), 2, 30_000);
        let before = out.encode(&[conn(1)], 5_000);
        assert!(inb.receive(&before[0], 5_000).is_some());
        out.set_key(key(new), 1400);
        inb.set_key(key(new), 30_000);
        let after = out.encode(&[conn(2)], 5_100);
        assert_eq!(inb.receive(&after[0], 5_100).unwrap().header.sequence, 2);
        assert!(
            inb.receive(&before[0], 5_200).is_none(),
            "old message replayed"
        );
        assert!(inb
            .receive(&laggard.encode(&[conn(3)], 5_300)[0], 5_300)
            .is_none());
        assert_eq!(inb.dropped.get("bad_mac"), 2);
        assert_eq!(inb.accepted, 2);
    }

    /// A flood of forged messages (wrong key) leaves no trace but the counter.
    #[test]
    fn forged_messages_are_counted_and_change_nothing() {
        let mut forger = Outbound::new(key(b"not the shared key!!"), 3, 100, 1400);
        let mut inb = Inbound::new(key(b"shared key for the test"), 2, 30_000);
        for _ in 0..1000 {
            for w in forger.encode(&[conn(1)], 5_000) {
                assert!(inb.receive(&w, 5_000).is_none());
            }
        }
        assert_eq!(inb.dropped.get("bad_mac"), 1000);
        assert_eq!(inb.dropped.total(), 1000);
        assert_eq!(inb.accepted, 0);
        assert!(inb.peers().is_empty());
    }
}
