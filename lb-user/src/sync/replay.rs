//! Replay protection for authenticated messages: a message is accepted once, if it is fresh.
//!
//! Per sender: its epoch (start time) and a 64-message sliding window over sequence numbers
//! (IPsec's anti-replay window, RFC 4303 §3.4.3), so reordering by a few datagrams is fine and
//! a copy is not. A message from an older epoch is a replay of a previous run. A receiver that
//! restarted has no windows: the freshness bound (`max_age`, against the sender's clock) keeps it
//! from accepting old captures then. Only messages that passed the HMAC reach this guard, so a
//! forger can neither advance a window nor grow the table of senders.
use std::collections::HashMap;

/// Sequence numbers remembered below the highest seen.
pub const WINDOW: u64 = 64;

#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    #[error("replayed or too old (sequence {sequence} of director {director_id})")]
    Replayed { director_id: u32, sequence: u64 },
    #[error("sent {age_ms} ms from now by the sender's clock (more than the allowed age)")]
    Stale { age_ms: u64 },
    #[error("sent by this director (own director id)")]
    Own,
}

impl ReplayError {
    pub fn reason(&self) -> &'static str {
        match self {
            ReplayError::Replayed { .. } => "replayed",
            ReplayError::Stale { .. } => "stale",
            ReplayError::Own => "own",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    epoch: u32,
    top: u64,
    /// Bit i: sequence `top - i` was seen.
    seen: u64,
}

/// The receiver's windows, one per peer director.
#[derive(Debug)]
pub struct ReplayGuard {
    own_id: u32,
    max_age_ms: u64,
    windows: HashMap<u32, Window>,
}

impl ReplayGuard {
    pub fn new(own_id: u32, max_age_ms: u64) -> Self {
        ReplayGuard {
            own_id,
            max_age_ms,
            windows: HashMap::new(),
        }
    }

    pub fn set_max_age(&mut self, max_age_ms: u64) {
        self.max_age_ms = max_age_ms;
    }

    /// Accepts (and remembers) the message `(director_id, epoch, sequence)` sent at
    /// `sent_unix_ms`, received at `now_unix_ms`.
    pub fn accept(
        &mut self,
        header: &super::codec::Header,
        now_unix_ms: u64,
    ) -> Result<(), ReplayError> {
        if header.director_id == self.own_id {
            return Err(ReplayError::Own);
        }
        let age_ms = now_unix_ms.abs_diff(header.sent_unix_ms);
        if age_ms > self.max_age_ms {
            return Err(ReplayError::Stale { age_ms });
        }
        let replayed = ReplayError::Replayed {
            director_id: header.director_id,
            sequence: header.sequence,
        };
        let fresh = Window {
            epoch: header.epoch,
            top: header.sequence,
            seen: 1,
        };
        let Some(w) = self.windows.get_mut(&header.director_id) else {
            self.windows.insert(header.director_id, fresh);
            return Ok(());
        };
        if header.epoch < w.epoch {
            return Err(replayed);
        }
        if header.epoch > w.epoch {
            *w = fresh;
            return Ok(());
        }
        if header.sequence > w.top {
            let shift = header.sequence - w.top;
            w.seen = if shift >= WINDOW { 0 } else { w.seen << shift };
            w.seen |= 1;
            w.top = header.sequence;
            return Ok(());
        }
        let back = w.top - header.sequence;
        if back >= WINDOW || w.seen & (1 << back) != 0 {
            return Err(replayed);
        }
        w.seen |= 1 << back;
        Ok(())
    }

    /// Peers heard from (for `xlb status --peers`).
    pub fn peers(&self) -> impl Iterator<Item = u32> + '_ {
        self.windows.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::Header;
    use super::*;

    fn h(director_id: u32, epoch: u32, sequence: u64) -> Header {
        Header {
            director_id,
            epoch,
            sequence,
            sent_unix_ms: 1_000_000,
        }
    }

    #[test]
    fn a_message_is_accepted_once() {
        let mut g = ReplayGuard::new(1, 30_000);
        assert_eq!(g.accept(&h(2, 10, 5), 1_000_000), Ok(()));
        assert!(matches!(
            g.accept(&h(2, 10, 5), 1_000_000),
            Err(ReplayError::Replayed { .. })
        ));
    }

    #[test]
    fn reordering_within_the_window_is_accepted_and_copies_are_not() {
        let mut g = ReplayGuard::new(1, 30_000);
        for s in [10, 12, 11, 9, 74] {
            assert_eq!(g.accept(&h(2, 1, s), 1_000_000), Ok(()), "seq {s}");
        }
        // 74 - 10 = 64: out of the window now; 11 and 12 were seen.
        for s in [10, 11, 12, 74] {
            assert!(g.accept(&h(2, 1, s), 1_000_000).is_err(), "seq {s}");
        }
        assert_eq!(g.accept(&h(2, 1, 73), 1_000_000), Ok(()));
    }

    #[test]
    fn a_new_epoch_restarts_the_sequence_and_an_old_one_is_refused() {
        let mut g = ReplayGuard::new(1, 30_000);
        g.accept(&h(2, 10, 500), 1_000_000).unwrap();
        assert_eq!(g.accept(&h(2, 11, 1), 1_000_000), Ok(()));
        assert!(g.accept(&h(2, 10, 501), 1_000_000).is_err());
    }

    #[test]
    fn stale_and_own_messages_are_refused() {
        let mut g = ReplayGuard::new(1, 30_000);
        assert_eq!(
            g.accept(&h(2, 1, 1), 1_030_001),
            Err(ReplayError::Stale { age_ms: 30_001 })
        );
        assert_eq!(g.accept(&h(1, 1, 1), 1_000_000), Err(ReplayError::Own));
        // A refused message leaves no window behind.
        assert_eq!(g.peers().count(), 0);
    }

    #[test]
    fn senders_have_separate_windows() {
        let mut g = ReplayGuard::new(1, 30_000);
        assert_eq!(g.accept(&h(2, 1, 1), 1_000_000), Ok(()));
        assert_eq!(g.accept(&h(3, 1, 1), 1_000_000), Ok(()));
    }
}
