//! Service up/down from the alive weight (keepalived `quorum`, `hysteresis`). Pure.
//!
//! keepalived (`update_quorum_state`): the threshold is `quorum - hysteresis` while the service
//! is up and `quorum + hysteresis` while it is down; an up service goes down when the alive weight
//! is below the threshold (or zero), a down one comes up when it reaches the threshold. A service
//! starts up and is judged at once.

/// Sum of the weights of the alive real servers: `(up, weight)` pairs.
pub fn alive_weight<I: IntoIterator<Item = (bool, u32)>>(servers: I) -> u64 {
    servers
        .into_iter()
        .filter(|(up, _)| *up)
        .map(|(_, w)| u64::from(w))
        .sum()
}

/// The service's next state, from its previous one and the current alive weight.
pub fn next_state(prev_up: bool, alive: u64, quorum: u32, hysteresis: u32) -> bool {
    let (q, h) = (i64::from(quorum), i64::from(hysteresis));
    let alive = i64::try_from(alive).unwrap_or(i64::MAX);
    if prev_up {
        !(alive == 0 || alive < q - h)
    } else {
        alive >= q + h
    }
}

/// The quorum state of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// keepalived `quorum`.
    pub quorum: u32,
    /// keepalived `hysteresis`.
    pub hysteresis: u32,
    /// The service is at quorum.
    pub up: bool,
}

impl Quorum {
    /// The state at start: judged as an up service (keepalived).
    pub fn new(quorum: u32, hysteresis: u32, alive: u64) -> Self {
        Quorum {
            quorum,
            hysteresis,
            up: next_state(true, alive, quorum, hysteresis),
        }
    }

    /// Update with the current alive weight; returns `Some(new state)` when it changes.
    pub fn update(&mut self, alive: u64) -> Option<bool> {
        let up = next_state(self.up, alive, self.quorum, self.hysteresis);
        (up != self.up).then(|| {
            self.up = up;
            up
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights() {
        assert_eq!(
            alive_weight([(true, 3), (false, 5), (true, 0), (true, 2)]),
            5
        );
        assert_eq!(alive_weight([]), 0);
    }

    #[test]
    fn default_quorum_1() {
        assert!(next_state(true, 1, 1, 0));
        assert!(!next_state(true, 0, 1, 0));
        assert!(next_state(false, 1, 1, 0));
        assert!(!next_state(false, 0, 1, 0));
    }

    #[test]
    fn hysteresis_band() {
        // quorum 10, hysteresis 2: down below 8, up again at 12
        let mut q = Quorum::new(10, 2, 10);
        assert!(q.up);
        assert_eq!(q.update(8), None);
        assert_eq!(q.update(7), Some(false));
        assert_eq!(q.update(10), None);
        assert_eq!(q.update(11), None);
        assert_eq!(q.update(12), Some(true));
        assert_eq!(q.update(9), None);
        assert!(q.up);
    }

    #[test]
    fn start_below_quorum_and_zero_weight() {
        assert!(!Quorum::new(10, 2, 7).up);
        assert!(Quorum::new(10, 2, 8).up);
        // hysteresis == quorum: threshold 0, but no alive weight is always down
        let mut q = Quorum::new(2, 2, 1);
        assert!(q.up);
        assert_eq!(q.update(0), Some(false));
        assert_eq!(q.update(3), None);
        assert_eq!(q.update(4), Some(true));
    }
}
