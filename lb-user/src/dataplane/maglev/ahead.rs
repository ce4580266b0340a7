//! Maglev's turns with look-ahead: instead of probing its permutation one slot at a time (a
//! branch per slot that goes either way in the middle of the fill), a walk tests its next 64
//! steps' slots at once, without a branch per slot, and keeps the steps that landed on a free
//! slot as a 64-bit mask. Its turns then take the mask's steps in order, each checked once more
//! against the bitmap (another walk may have taken the slot since the look): the first step
//! still free is the walk's next free slot, as probing would find it, because the steps
//! between were taken at the look already and taken slots stay taken. When the mask runs out,
//! the walk looks at its next 64 steps. Same slots in the same turns as
//! [`super::Walk::next_free`]; the tests compare both on many inputs.
use super::{Fill, Walk};

/// Steps a walk looks at at once (one bit each in [`Ahead::free`]).
const STEPS: usize = 64;

/// How a look tests its steps' slots: one by one, or 8 at a time with AVX2 gathers (x86-64,
/// detected at run time). Measured on AMD EPYC Zen 4: a gather costs about what scalar loads
/// do per slot, the vector work around it is what it saves; a 16-lane AVX-512 look was slower
/// than AVX2's (and fewer CPUs have it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Look {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// Tables below this size only for AVX2: lanes hold `base + lane[j] < 2 * size` and the wrap
/// test compares unsigned 32-bit lanes (the config allows up to 16,777,259 slots).
#[cfg(target_arch = "x86_64")]
const AVX2_MAX_SIZE: u32 = 1 << 31;

impl Look {
    /// The fastest look this CPU has for tables of `size` slots.
    pub(super) fn best(size: u32) -> Look {
        #[cfg(target_arch = "x86_64")]
        if size < AVX2_MAX_SIZE && std::arch::is_x86_feature_detected!("avx2") {
            return Look::Avx2;
        }
        let _ = size;
        Look::Scalar
    }

    /// Every look this CPU can run for tables of `size` slots (the tests compare them all).
    #[cfg(test)]
    pub(super) fn available(size: u32) -> Vec<Look> {
        let mut looks = vec![Look::Scalar];
        if Look::best(size) != Look::Scalar {
            looks.push(Look::best(size));
        }
        looks
    }
}

/// Does looking ahead pay for `walks` walks over `size` slots? A walk's masked steps go stale
/// (another walk takes their slot before their turn) in proportion to 64 steps x walks / size:
/// with 1,000 walks over 65,537 slots most would, and probing is faster (measured; 10 and 100
/// walks over 65,537 slots, 10 to 1,000 over 655,373: looking ahead is faster).
pub(super) fn pays(walks: usize, size: u64) -> bool {
    (walks as u64).saturating_mul(4 * STEPS as u64) <= size
}

/// One walk's look-ahead.
struct Ahead {
    /// `lane[j] = j * skip mod size`: step j of a look from slot `base` lands on
    /// `(base + lane[j]) mod size`.
    lane: [u32; STEPS],
    /// `STEPS * skip mod size`: from one look's first step to the next one's.
    jump: u32,
    /// The slot of the last look's first step.
    base: u32,
    /// The slot of the next look's first step.
    next_base: u32,
    /// Bit j: step j of the last look landed on a slot free then, and the walk has not been
    /// past it yet.
    free: u64,
    /// The walk's slots still to take, its value in the table, the last slot it took.
    left: u64,
    slot: u32,
    last: u32,
}

impl Ahead {
    fn new(walk: &Walk, slot: u32, size: u32) -> Ahead {
        let mut lane = [0u32; STEPS];
        let mut at = 0u32;
        for l in lane.iter_mut() {
            *l = at;
            at = add_mod(at, walk.skip, size);
        }
        Ahead {
            lane,
            jump: at,
            base: walk.pos,
            next_base: walk.pos,
            free: 0,
            left: walk.left,
            slot,
            last: 0,
        }
    }

    /// Moves to the next look's steps: `free` is set from `taken_steps` (bit j: step j's slot
    /// is taken).
    fn advance(&mut self, taken_steps: u64, size: u32) {
        self.base = self.next_base;
        self.next_base = add_mod(self.base, self.jump, size);
        self.free = !taken_steps;
    }

    /// Which of the next look's steps land on a taken slot, slot by slot (no branch per slot).
    fn taken_steps_scalar(&self, taken: &[u64], size: u32) -> u64 {
        let mut steps = 0u64;
        for (j, &l) in self.lane.iter().enumerate() {
            let c = add_mod(self.next_base, l, size);
            let word = taken[(c >> 6) as usize];
            steps |= ((word >> (c & 63)) & 1) << j;
        }
        steps
    }

    /// As [`Ahead::taken_steps_scalar`], 8 slots at a time: slot positions by vector additions,
    /// their bitmap words by one gather, the slot's bit shifted to the sign, 8 signs to a byte.
    ///
    /// # Safety
    /// The CPU has AVX2; `size < AVX2_MAX_SIZE`; `taken` holds at least `size` bits.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn taken_steps_avx2(&self, taken: &[u64], size: u32) -> u64 {
        use std::arch::x86_64::*;
        let base = _mm256_set1_epi32(self.next_base as i32);
        let size_v = _mm256_set1_epi32(size as i32);
        let low5 = _mm256_set1_epi32(31);
        let mut steps = 0u64;
        for (q, lanes) in self.lane.chunks_exact(8).enumerate() {
            // SAFETY: `lanes` is 8 u32 (unaligned load).
            let l = unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) };
            let c = _mm256_add_epi32(base, l);
            // c < 2 * size: c - size wraps above c exactly when c < size.
            let c = _mm256_min_epu32(c, _mm256_sub_epi32(c, size_v));
            // SAFETY: every lane's c < size, so u32 word c / 32 is inside `taken` (bit c of
            // the u64 bitmap is bit c % 32 of u32 word c / 32: x86-64 is little-endian).
            let words = unsafe {
                _mm256_i32gather_epi32::<4>(taken.as_ptr().cast(), _mm256_srli_epi32::<5>(c))
            };
            // Shift left by 31 - c % 32: the slot's bit becomes the lane's sign.
            let signs = _mm256_sllv_epi32(words, _mm256_andnot_si256(c, low5));
            let byte = _mm256_movemask_ps(_mm256_castsi256_ps(signs)) as u32 as u64;
            steps |= byte << (8 * q);
        }
        steps
    }
}

/// (a + b) mod size for a, b < size (the sum is taken in u64: any u32 size).
#[inline(always)]
fn add_mod(a: u32, b: u32, size: u32) -> u32 {
    let s = a as u64 + b as u64;
    if s >= size as u64 {
        (s - size as u64) as u32
    } else {
        s as u32
    }
}

/// How one look's steps are tested (the two ways of [`Look`]).
trait TakenSteps {
    /// # Safety
    /// As the implementation's function says.
    unsafe fn taken_steps(a: &Ahead, taken: &[u64], size: u32) -> u64;
}

struct Scalar;

impl TakenSteps for Scalar {
    #[inline(always)]
    unsafe fn taken_steps(a: &Ahead, taken: &[u64], size: u32) -> u64 {
        a.taken_steps_scalar(taken, size)
    }
}

#[cfg(target_arch = "x86_64")]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl TakenSteps for Avx2 {
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn taken_steps(a: &Ahead, taken: &[u64], size: u32) -> u64 {
        // SAFETY: forwarded from the caller.
        unsafe { a.taken_steps_avx2(taken, size) }
    }
}

/// [`Fill::round_robin`] with look-ahead: backends take turns from `walks[first]` on until
/// `until` slots are filled; returns the walk whose turn is next.
pub(super) fn round_robin(
    fill: &mut Fill,
    walks: &mut [Walk],
    slots: &[u32],
    first: usize,
    until: u64,
    look: Look,
) -> usize {
    match look {
        #[cfg(target_arch = "x86_64")]
        Look::Avx2
            if fill.table.len() < AVX2_MAX_SIZE as usize
                && std::arch::is_x86_feature_detected!("avx2") =>
        {
            // SAFETY: the CPU has AVX2 and the table is small enough (checked just above).
            unsafe { round_robin_avx2(fill, walks, slots, first, until) }
        }
        _ => {
            // SAFETY: the scalar test has no requirement.
            unsafe { turns::<Scalar>(fill, walks, slots, first, until) }
        }
    }
}

/// # Safety
/// The CPU has AVX2; the table has fewer than `AVX2_MAX_SIZE` slots.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn round_robin_avx2(
    fill: &mut Fill,
    walks: &mut [Walk],
    slots: &[u32],
    first: usize,
    until: u64,
) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { turns::<Avx2>(fill, walks, slots, first, until) }
}

/// The turns themselves, inlined into each caller above (so into its `target_feature`). The
/// counts and positions live in [`Ahead`] (one place per turn) and go back to `walks` at the end.
///
/// # Safety
/// `T::taken_steps` may be called for this table (the CPU has its instructions).
#[inline(always)]
unsafe fn turns<T: TakenSteps>(
    fill: &mut Fill,
    walks: &mut [Walk],
    slots: &[u32],
    first: usize,
    until: u64,
) -> usize {
    let size = fill.table.len() as u32;
    let mut ahead: Vec<Ahead> = walks
        .iter()
        .zip(slots)
        .map(|(w, &slot)| Ahead::new(w, slot, size))
        .collect();
    let Fill {
        taken,
        table,
        filled,
    } = fill;
    let mut n = *filled;
    let mut i = first;
    while n < until {
        let a = &mut ahead[i];
        if a.left > 0 {
            let c = loop {
                while a.free == 0 {
                    // SAFETY: forwarded from the caller.
                    let taken_steps = unsafe { T::taken_steps(a, taken, size) };
                    a.advance(taken_steps, size);
                }
                let j = a.free.trailing_zeros() as usize;
                a.free &= a.free - 1;
                let c = add_mod(a.base, a.lane[j], size) as usize;
                if taken[c >> 6] & (1u64 << (c & 63)) == 0 {
                    break c;
                }
            };
            taken[c >> 6] |= 1u64 << (c & 63);
            table[c] = a.slot;
            n += 1;
            a.last = c as u32;
            a.left -= 1;
        }
        i += 1;
        if i == ahead.len() {
            i = 0;
        }
    }
    *filled = n;
    for (w, a) in walks.iter_mut().zip(&ahead) {
        if a.left < w.left {
            // Where probing would go on from: the step after the last slot taken.
            w.pos = add_mod(a.last, w.skip, size);
            w.left = a.left;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector look must mark exactly the scalar look's steps (a step marked free by
    /// mistake would only cost a recheck, one marked taken by mistake would change the table:
    /// the table tests catch the second, this test both).
    #[test]
    fn vector_and_scalar_looks_mark_the_same_steps() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for size in [
            1u32, 2, 3, 31, 32, 33, 63, 64, 65, 251, 4093, 65_537, 655_373,
        ] {
            for _ in 0..20 {
                let taken: Vec<u64> = (0..(size as usize).div_ceil(64)).map(|_| next()).collect();
                let walk = Walk {
                    pos: (next() % size as u64) as u32,
                    skip: if size > 1 {
                        (next() % (size as u64 - 1)) as u32 + 1
                    } else {
                        1
                    },
                    left: 1,
                };
                let a = Ahead::new(&walk, 0, size);
                let scalar = a.taken_steps_scalar(&taken, size);
                for look in Look::available(size) {
                    let got = match look {
                        Look::Scalar => scalar,
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: `available` lists AVX2 only when the CPU has it.
                        Look::Avx2 => unsafe { a.taken_steps_avx2(&taken, size) },
                    };
                    assert_eq!(got, scalar, "size {size}, {look:?}");
                }
            }
        }
    }
}
