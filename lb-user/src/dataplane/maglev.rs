//! Maglev lookup tables (Eisenbud et al., NSDI 2016) with weights, and the weighted round-robin
//! sequence. Pure functions: the same real servers and weights give the same table on every
//! director, whatever order the config lists them in or which slot ids they got.
use xxhash_rust::xxh64::xxh64;

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
/// in a bitmap that stays in L1 (65,537 slots: 8 KiB).
pub fn build(backends: &[Backend], size: u32) -> Vec<u32> {
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
    let mut taken = vec![0u64; (size as usize).div_ceil(64)];
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    while filled < m {
        for (walk, b) in walks.iter_mut().zip(&live) {
            if walk.left == 0 {
                continue;
            }
            let c = walk.next_free(&mut taken, size);
            table[c] = b.slot;
            walk.left -= 1;
            filled += 1;
            if filled == m {
                break;
            }
        }
    }
    table
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = jobs.len().div_ceil(cores.max(1)).max(1);
    if jobs.len() <= 1 || cores == 1 {
        return jobs.iter().map(|(b, s)| build(b, *s)).collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || chunk.iter().map(|(b, s)| build(b, *s)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            // A build cannot panic short of allocation failure; re-raise it then.
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
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
            assert_eq!(
                build(&backends, size),
                reference_build(&backends, size),
                "case {case}: {n} backends, size {size}"
            );
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
