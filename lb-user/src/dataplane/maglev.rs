//! Maglev lookup tables (Eisenbud et al., NSDI 2016) with weights, and the weighted round-robin
//! sequence. Pure functions: the same real servers and weights give the same table on every
//! director, whatever order the config lists them in or which slot ids they got.
use std::sync::mpsc::{sync_channel, Receiver};

use xxhash_rust::xxh64::xxh64;

mod ahead;

/// One real server as the table builder sees it: a stable identity (its address and port bytes),
/// its weight, and the value to put in the table (the kernel slot id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub identity: Vec<u8>,
    pub weight: u32,
    pub slot: u32,
}

const OFFSET_SEED: u64 = 0x6d61_676c_6576_0001;
const SKIP_SEED: u64 = 0x6d61_676c_6576_0002;

/// Is `n` prime? (Table sizes are validated with it; trial division is plenty for n < 2^32.)
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Shares of `size` slots proportional to the weights (largest remainder), summing to `size`.
fn shares(weights: &[u64], size: u64) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    let mut out: Vec<u64> = weights.iter().map(|w| w * size / total).collect();
    let mut rest = size - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; ties by position (positions are in identity order, so stable).
    order.sort_by_key(|&i| std::cmp::Reverse((weights[i] * size) % total));
    for i in order {
        if rest == 0 {
            break;
        }
        out[i] += 1;
        rest -= 1;
    }
    out
}

/// Builds a Maglev table of prime `size`. Backends with weight 0 get no slot (quiescent). Each
/// backend fills slots along its own permutation (offset, skip from xxh64 of its identity) until
/// it holds its weighted share, so shares match weights to one slot and a change of one backend
/// moves about 1/N of the slots. Returns an empty table when no backend has weight.
///
/// Every director must build the same table from the same inputs: the output is pinned by a
/// property test against the textbook formulation (`reference_build` in the tests). This one
/// walks each permutation by addition instead of `(offset + n * skip) % size` and tests slots
/// in a bitmap that stays in L1 (65,537 slots: 8 KiB); walks look 64 steps ahead at once
/// ([`ahead`]) when that pays; the last 0.5% of the slots is taken by positions instead of
/// probing ([`Fill::tail`]).
pub fn build(backends: &[Backend], size: u32) -> Vec<u32> {
    build_with(backends, size, None)
}

/// How walks find their next free slot until the tail: the same slots in the same turns
/// either way (the tests build every table both ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probing {
    /// One slot at a time ([`Walk::next_free`]).
    OneByOne,
    /// 64 steps at a time ([`ahead`]).
    LookAhead(ahead::Look),
}

impl Probing {
    fn fastest(walks: usize, size: u32) -> Probing {
        if ahead::pays(walks, size as u64) {
            Probing::LookAhead(ahead::Look::best(size))
        } else {
            Probing::OneByOne
        }
    }
}

/// [`build`], probing the given way (`None`: the fastest for the input and this CPU).
fn build_with(backends: &[Backend], size: u32, probing: Option<Probing>) -> Vec<u32> {
    let mut live: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
    if live.is_empty() || size == 0 {
        return Vec::new();
    }
    live.sort_by(|a, b| a.identity.cmp(&b.identity));
    let m = size as u64;
    let targets = shares(&live.iter().map(|b| b.weight as u64).collect::<Vec<_>>(), m);
    let mut walks: Vec<Walk> = live
        .iter()
        .zip(&targets)
        .map(|(b, &target)| Walk::new(&b.identity, m, target))
        .collect();
    let mut fill = Fill {
        taken: vec![0u64; (size as usize).div_ceil(64)],
        table: vec![u32::MAX; size as usize],
        filled: 0,
    };
    let slots: Vec<u32> = live.iter().map(|b| b.slot).collect();
    let tail = tail_start(m, &walks);
    let until = tail.as_ref().map_or(m, |t| t.at);
    let next = match probing.unwrap_or_else(|| Probing::fastest(walks.len(), size)) {
        Probing::OneByOne => fill.round_robin(&mut walks, &slots, 0, until),
        Probing::LookAhead(look) => {
            ahead::round_robin(&mut fill, &mut walks, &slots, 0, until, look)
        }
    };
    if let Some(t) = tail {
        fill.tail(&mut walks, &slots, next, &t.inverses);
    }
    fill.table
}

/// When the last slots are taken by positions instead of probing (see [`Fill::tail`]): at
/// `at` slots filled, with each walk's skip inverted mod the size.
struct TailPlan {
    at: u64,
    inverses: Vec<u64>,
}

fn tail_start(m: u64, walks: &[Walk]) -> Option<TailPlan> {
    let free = m / TAIL_FRACTION;
    if free < 16 || !(TAIL_MIN_BACKENDS..=TAIL_MAX_BACKENDS).contains(&walks.len()) {
        return None;
    }
    let inverses = walks
        .iter()
        .map(|w| inverse_mod(w.skip as u64, m))
        .collect::<Option<Vec<u64>>>()?;
    Some(TailPlan {
        at: m - free,
        inverses,
    })
}

/// The tail is the last 1/TAIL_FRACTION of the slots (measured for 10 backends x 65,537 and
/// 655,373 with look-ahead before it: 1/200 beat 1/50 and 1/100, 1/400 was no better, 1/1000
/// slower; with probing one by one 1/100 had beaten 1/20, 1/40 and 1/200).
const TAIL_FRACTION: u64 = 200;
/// One bitmap of `size` bits per walk: with more backends the bitmaps cost more than probing
/// saves; with fewer than 5 the probing tail is short (3 backends measured slower with it).
const TAIL_MAX_BACKENDS: usize = 64;
const TAIL_MIN_BACKENDS: usize = 5;

/// x with a * x = 1 (mod m), if gcd(a, m) = 1.
fn inverse_mod(a: u64, m: u64) -> Option<u64> {
    let (mut r0, mut r1) = (m as i128, a as i128);
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    (r0 == 1).then(|| t0.rem_euclid(m as i128) as u64)
}

/// The table being filled: which slots are taken (a bitmap that stays in L1), and how many.
struct Fill {
    taken: Vec<u64>,
    table: Vec<u32>,
    filled: u64,
}

impl Fill {
    fn is_taken(&self, c: usize) -> bool {
        self.taken[c >> 6] & (1u64 << (c & 63)) != 0
    }

    /// The slots not taken, ascending (word by word: few are left).
    fn free_slots(&self) -> Vec<u64> {
        let m = self.table.len() as u64;
        let mut free = Vec::with_capacity((m - self.filled) as usize);
        for (w, &word) in self.taken.iter().enumerate() {
            let mut open = !word;
            while open != 0 {
                let c = w as u64 * 64 + open.trailing_zeros() as u64;
                if c >= m {
                    break;
                }
                free.push(c);
                open &= open - 1;
            }
        }
        free
    }

    fn take(&mut self, c: usize, slot: u32) {
        self.taken[c >> 6] |= 1u64 << (c & 63);
        self.table[c] = slot;
        self.filled += 1;
    }

    /// Backends take turns from `walks[first]` on, each taking its next free slot, until
    /// `until` slots are filled. Returns the walk whose turn is next.
    fn round_robin(
        &mut self,
        walks: &mut [Walk],
        slots: &[u32],
        first: usize,
        until: u64,
    ) -> usize {
        let size = self.table.len() as u32;
        let mut i = first;
        while self.filled < until {
            let walk = &mut walks[i];
            if walk.left > 0 {
                let c = walk.next_free(&mut self.taken, size);
                self.table[c] = slots[i];
                self.filled += 1;
                walk.left -= 1;
            }
            i += 1;
            if i == walks.len() {
                i = 0;
            }
        }
        i
    }

    /// The last slots, in the same turns and with the same result as probing on: each walk
    /// marks, in a bitmap indexed by steps ahead of its position, the steps that land on a
    /// slot still free now; its next free slot is then its next marked step whose slot nobody
    /// took since. Probing would test ~100 taken slots per slot taken here.
    fn tail(&mut self, walks: &mut [Walk], slots: &[u32], first: usize, inverses: &[u64]) {
        let m = self.table.len() as u64;
        let free = self.free_slots();
        let modm = ModM::new(m);
        let words = (m as usize).div_ceil(64);
        let mut ahead: Vec<Vec<u64>> = walks
            .iter()
            .zip(inverses)
            .map(|(w, &inv)| {
                let mut bits = vec![0u64; if w.left > 0 { words } else { 0 }];
                if w.left > 0 {
                    for &c in &free {
                        let d = modm.reduce(modm.reduce(c + m - w.pos as u64) * inv);
                        bits[(d >> 6) as usize] |= 1u64 << (d & 63);
                    }
                }
                bits
            })
            .collect();
        // Steps already looked at, per walk.
        let mut cursor = vec![0u64; walks.len()];
        let mut i = first;
        while self.filled < m {
            if walks[i].left > 0 {
                let (pos, skip) = (walks[i].pos as u64, walks[i].skip as u64);
                loop {
                    let d = next_set(&ahead[i], cursor[i]);
                    cursor[i] = d + 1;
                    let c = modm.reduce(pos + d * skip) as usize;
                    if !self.is_taken(c) {
                        self.take(c, slots[i]);
                        break;
                    }
                }
                walks[i].left -= 1;
            }
            i += 1;
            if i == walks.len() {
                i = 0;
            }
        }
        ahead.clear();
    }
}

/// x mod m by a multiplication (Barrett reduction): the tail reduces every free slot's
/// position for every walk, and a division per reduction would cost more than it saves.
#[derive(Clone, Copy)]
struct ModM {
    m: u64,
    /// floor(2^64 / m).
    mu: u64,
}

impl ModM {
    fn new(m: u64) -> ModM {
        ModM {
            m,
            mu: ((1u128 << 64) / m as u128) as u64,
        }
    }

    /// x mod m (any u64 x: the quotient estimate is at most one short, fixed by one subtraction).
    #[inline]
    fn reduce(self, x: u64) -> u64 {
        let q = ((x as u128 * self.mu as u128) >> 64) as u64;
        let r = x - q * self.m;
        if r >= self.m {
            r - self.m
        } else {
            r
        }
    }
}

/// The first set bit at or after `from` (one exists: a walk needing a slot has a free one
/// ahead, since every walk visits every slot once per `size` steps).
fn next_set(bits: &[u64], from: u64) -> u64 {
    let mut w = (from >> 6) as usize;
    let mut word = bits[w] & (u64::MAX << (from & 63));
    while word == 0 {
        w += 1;
        word = bits[w];
    }
    (w as u64) * 64 + word.trailing_zeros() as u64
}

/// One backend's walk along its permutation `offset, offset + skip, ...` (mod size).
struct Walk {
    pos: u32,
    skip: u32,
    /// Slots it still has to take.
    left: u64,
}

impl Walk {
    fn new(identity: &[u8], m: u64, target: u64) -> Walk {
        let offset = xxh64(identity, OFFSET_SEED) % m;
        let skip = if m > 1 {
            xxh64(identity, SKIP_SEED) % (m - 1) + 1
        } else {
            1
        };
        Walk {
            pos: offset as u32,
            skip: skip as u32,
            left: target,
        }
    }

    /// Takes the first free slot from the current position on and steps past it.
    #[inline]
    fn next_free(&mut self, taken: &mut [u64], size: u32) -> usize {
        loop {
            let c = self.pos;
            // pos, skip < size <= u32::MAX: the sum fits in u64 and one subtraction wraps it.
            let next = c as u64 + self.skip as u64;
            self.pos = if next >= size as u64 {
                (next - size as u64) as u32
            } else {
                next as u32
            };
            let (word, bit) = ((c >> 6) as usize, 1u64 << (c & 63));
            if taken[word] & bit == 0 {
                taken[word] |= bit;
                return c as usize;
            }
        }
    }
}

/// Builds many tables at once on every available core (a reload that changes many services):
/// `jobs[i] = (backends, size)` gives `out[i] == build(backends, size)`.
pub fn build_many(jobs: &[(&[Backend], u32)]) -> Vec<Vec<u32>> {
    with_builds(jobs, |builds| {
        (0..jobs.len())
            .filter_map(|_| builds.next_table())
            .collect()
    })
}

/// Tables each worker builds ahead of the consumer (bounds the memory of a 1,000-service
/// reload to a few tables per core).
const BUILDS_AHEAD: usize = 4;

/// The tables of [`with_builds`]'s jobs, handed out in job order as workers finish them.
pub struct Builds<'a> {
    jobs: &'a [(&'a [Backend], u32)],
    /// One channel per worker; job `i` comes from worker `i % workers` (strict order, no
    /// reordering buffer). Empty: the caller's thread builds each table itself.
    tables: Vec<Receiver<Vec<u32>>>,
    next: usize,
}

impl Builds<'_> {
    /// The next job's table, `None` once every job's table was handed out.
    pub fn next_table(&mut self) -> Option<Vec<u32>> {
        let i = self.next;
        let &(backends, size) = self.jobs.get(i)?;
        self.next += 1;
        let built = match self.tables.len() {
            0 => None,
            n => self.tables[i % n].recv().ok(),
        };
        // A worker gone (it could only have panicked) leaves its tables to this thread.
        Some(built.unwrap_or_else(|| build(backends, size)))
    }
}

/// Runs `consume` while worker threads (one per core) build the tables of `jobs` in order, so
/// the caller writes one table while the next ones are being built. With one core, or one job,
/// the tables are built on the caller's thread as it asks for them. Workers stop when
/// `consume` returns.
pub fn with_builds<T>(jobs: &[(&[Backend], u32)], consume: impl FnOnce(&mut Builds<'_>) -> T) -> T {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = if cores > 1 { cores.min(jobs.len()) } else { 0 };
    if workers <= 1 {
        return consume(&mut Builds {
            jobs,
            tables: Vec::new(),
            next: 0,
        });
    }
    std::thread::scope(|scope| {
        let tables = (0..workers)
            .map(|w| {
                let (tx, rx) = sync_channel(BUILDS_AHEAD);
                scope.spawn(move || {
                    for &(backends, size) in jobs.iter().skip(w).step_by(workers) {
                        // The consumer gone (done or failed): stop building.
                        if tx.send(build(backends, size)).is_err() {
                            break;
                        }
                    }
                });
                rx
            })
            .collect();
        let mut builds = Builds {
            jobs,
            tables,
            next: 0,
        };
        let out = consume(&mut builds);
        drop(builds);
        out
    })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weighted round-robin sequence (nginx's smooth weighted round robin, so a heavy server's turns
/// are spread out), at most `max_len` long: weights are divided by their gcd, then scaled down if
/// the sequence would still be longer.
pub fn round_robin(backends: &[Backend], max_len: u32) -> Vec<u32> {
    let mut live: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
    if live.is_empty() || max_len == 0 {
        return Vec::new();
    }
    live.sort_by(|a, b| a.identity.cmp(&b.identity));
    let g = live.iter().fold(0u64, |g, b| gcd(g, b.weight as u64));
    let mut weights: Vec<u64> = live.iter().map(|b| b.weight as u64 / g).collect();
    let total: u64 = weights.iter().sum();
    if total > max_len as u64 {
        weights = weights
            .iter()
            .map(|w| (w * max_len as u64 / total).max(1))
            .collect();
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; live.len()];
    let mut seq = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..live.len() {
            current[i] += weights[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        seq.push(live[best].slot);
    }
    seq
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(i: u32, weight: u32) -> Backend {
        Backend {
            identity: format!("198.18.1.{i}:80").into_bytes(),
            weight,
            slot: i,
        }
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(655_373));
        assert!(is_prime(251));
        assert!(!is_prime(65_536));
        assert!(!is_prime(1));
    }

    #[test]
    fn shares_follow_weights_exactly() {
        let backends: Vec<_> = (0..3).map(|i| backend(i, i + 1)).collect();
        let t = build(&backends, 65_537);
        let count = |s| t.iter().filter(|&&x| x == s).count() as f64;
        assert!(t.iter().all(|&x| x != u32::MAX));
        for (slot, w) in [(0u32, 1.0), (1, 2.0), (2, 3.0)] {
            let share = count(slot) / 65_537.0;
            assert!(
                (share - w / 6.0).abs() < 0.0001,
                "slot {slot} share {share}"
            );
        }
    }

    #[test]
    fn order_and_slot_ids_do_not_matter() {
        let a: Vec<_> = (0..5).map(|i| backend(i, 1)).collect();
        let mut b = a.clone();
        b.reverse();
        assert_eq!(build(&a, 251), build(&b, 251));
        // Same identities with other slot ids give the same table up to renaming.
        let c: Vec<_> = a
            .iter()
            .map(|x| Backend {
                slot: x.slot + 100,
                ..x.clone()
            })
            .collect();
        let ta = build(&a, 251);
        let tc = build(&c, 251);
        assert!(ta.iter().zip(&tc).all(|(x, y)| x + 100 == *y));
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10;
        let all: Vec<_> = (0..n).map(|i| backend(i, 1)).collect();
        let fewer: Vec<_> = all.iter().filter(|b| b.slot != 3).cloned().collect();
        let before = build(&all, 65_537);
        let after = build(&fewer, 65_537);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / 65_537.0;
        // The removed server's own 1/N must move; Maglev adds only a little on top.
        assert!((0.1 - 0.001..0.13).contains(&moved), "moved {moved}");
    }

    #[test]
    fn weight_zero_is_excluded_and_empty_is_empty() {
        let t = build(&[backend(1, 0), backend(2, 1)], 251);
        assert!(t.iter().all(|&s| s == 2));
        assert!(build(&[backend(1, 0)], 251).is_empty());
    }

    /// The textbook formulation the fast `build` must match slot for slot (directors running
    /// different xlb versions must agree on every table).
    fn reference_build(backends: &[Backend], size: u32) -> Vec<u32> {
        let mut live: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
        if live.is_empty() || size == 0 {
            return Vec::new();
        }
        live.sort_by(|a, b| a.identity.cmp(&b.identity));
        let m = size as u64;
        let targets = shares(&live.iter().map(|b| b.weight as u64).collect::<Vec<_>>(), m);
        let perms: Vec<(u64, u64)> = live
            .iter()
            .map(|b| {
                let offset = xxh64(&b.identity, OFFSET_SEED) % m;
                let skip = if m > 1 {
                    xxh64(&b.identity, SKIP_SEED) % (m - 1) + 1
                } else {
                    1
                };
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; live.len()];
        let mut placed = vec![0u64; live.len()];
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        while filled < m {
            for i in 0..live.len() {
                if placed[i] >= targets[i] {
                    continue;
                }
                let (offset, skip) = perms[i];
                loop {
                    let c = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if table[c] == u32::MAX {
                        table[c] = live[i].slot;
                        placed[i] += 1;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break;
                }
            }
        }
        table
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn build_matches_the_reference_on_random_inputs() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let sizes = [1u32, 2, 3, 7, 251, 1021, 4093, 65_537];
        for case in 0..200 {
            let n = rng.below(40) as usize;
            let backends: Vec<Backend> = (0..n)
                .map(|i| {
                    let len = 1 + rng.below(24) as usize;
                    Backend {
                        identity: (0..len).map(|_| rng.next() as u8).collect(),
                        weight: match rng.below(4) {
                            0 => 0,
                            1 => 1,
                            2 => rng.below(10) as u32,
                            _ => rng.below(100_000) as u32,
                        },
                        slot: i as u32 * 7 + 3,
                    }
                })
                .collect();
            let size = if case % 50 == 0 {
                655_373
            } else {
                sizes[rng.below(sizes.len() as u64) as usize]
            };
            let reference = reference_build(&backends, size);
            assert_eq!(
                build(&backends, size),
                reference,
                "case {case}: {n} backends, size {size}"
            );
            for probing in probings(size) {
                assert_eq!(
                    build_with(&backends, size, Some(probing)),
                    reference,
                    "case {case}: {n} backends, size {size}, {probing:?}"
                );
            }
        }
    }

    /// Every way of probing this CPU can run for tables of `size`.
    fn probings(size: u32) -> Vec<Probing> {
        let mut out = vec![Probing::OneByOne];
        out.extend(
            ahead::Look::available(size)
                .into_iter()
                .map(Probing::LookAhead),
        );
        out
    }

    /// Looking ahead (scalar and vector) against probing one slot at a time, for the backend
    /// counts the tail and the look-ahead switch on (1 to 100), weights equal, rising, with
    /// zeros and very unequal, at three sizes.
    #[test]
    fn every_probing_gives_the_same_table() {
        let weights: [fn(u32) -> u32; 4] = [
            |_| 1,
            |i| i + 1,
            |i| if i % 4 == 1 { 0 } else { 1 + i % 3 },
            |i| if i == 0 { 100_000 } else { 1 + i % 5 },
        ];
        let counts = [1u32, 2, 3, 4, 5, 6, 9, 10, 16, 31, 32, 33, 64, 65, 100];
        for (k, &n) in counts.iter().enumerate() {
            for size in [251u32, 4093, 65_537] {
                let weight = weights[k % weights.len()];
                let backends: Vec<_> = (0..n).map(|i| backend(i, weight(i))).collect();
                let one_by_one = build_with(&backends, size, Some(Probing::OneByOne));
                for probing in probings(size) {
                    assert_eq!(
                        build_with(&backends, size, Some(probing)),
                        one_by_one,
                        "{n} backends, size {size}, {probing:?}"
                    );
                }
            }
        }
        for n in [1u32, 10, 64] {
            let backends: Vec<_> = (0..n).map(|i| backend(i, 1 + i % 2)).collect();
            let one_by_one = build_with(&backends, 655_373, Some(Probing::OneByOne));
            for probing in probings(655_373) {
                assert_eq!(
                    build_with(&backends, 655_373, Some(probing)),
                    one_by_one,
                    "{n} backends, size 655373, {probing:?}"
                );
            }
        }
    }

    /// Tables of fixed inputs, pinned by a hash of their bytes as built before the tail
    /// (`Fill::tail`) and the look-ahead (`ahead`) existed, by every way of probing: a director
    /// running this version and one running an earlier version must build the same ring from
    /// the same config, slot for slot.
    /// Backends, table size, weight of backend i, hash of the table's bytes.
    type PinnedTable = (u32, u32, fn(u32) -> u32, u64);

    #[test]
    fn tables_are_those_of_earlier_versions() {
        let cases: [PinnedTable; 4] = [
            (10, 65_537, |_| 1, 0x8a1c_fdac_5061_60e8),
            (3, 655_373, |i| i + 1, 0xc7d9_1b21_5a7f_e301),
            (1000, 65_537, |i| 1 + i % 7, 0xac50_27a7_9da3_4700),
            (40, 4093, |i| i + 1, 0x7b5a_6cc8_585b_3634),
        ];
        for (n, size, weight, pinned) in cases {
            let backends: Vec<_> = (0..n).map(|i| backend(i, weight(i))).collect();
            let hash = |table: Vec<u32>| {
                let bytes: Vec<u8> = table.iter().flat_map(|s| s.to_le_bytes()).collect();
                xxh64(&bytes, 0)
            };
            assert_eq!(
                hash(build(&backends, size)),
                pinned,
                "{n} backends, size {size}"
            );
            for probing in probings(size) {
                let table = build_with(&backends, size, Some(probing));
                assert_eq!(
                    hash(table),
                    pinned,
                    "{n} backends, size {size}, {probing:?}"
                );
            }
        }
    }

    #[test]
    fn build_many_equals_build_one_by_one() {
        let sets: Vec<Vec<Backend>> = (1..20u32)
            .map(|n| (0..n).map(|i| backend(i, 1 + i % 3)).collect())
            .collect();
        let jobs: Vec<(&[Backend], u32)> = sets.iter().map(|s| (s.as_slice(), 4093)).collect();
        let many = build_many(&jobs);
        assert_eq!(many.len(), jobs.len());
        for ((b, size), t) in jobs.iter().zip(&many) {
            assert_eq!(*t, build(b, *size));
        }
        assert!(build_many(&[]).is_empty());
    }

    #[test]
    fn round_robin_spreads_by_weight() {
        let seq = round_robin(&[backend(1, 1), backend(2, 3)], 1000);
        assert_eq!(seq.len(), 4);
        assert_eq!(seq.iter().filter(|&&s| s == 2).count(), 3);
        let seq = round_robin(
            &[backend(1, 60_000), backend(2, 60_000), backend(3, 1)],
            100,
        );
        assert!(seq.len() <= 102 && seq.contains(&3));
    }
}
