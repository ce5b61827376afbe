//! Kernels on the raw bits of a tensor: u16 for f16/bf16, u32 for f32, u64 for f64.
//! The magnitude key is the bits with the sign cleared; a pruned weight becomes all
//! zero bits (+0.0). Plain integer loops, so the compiler vectorizes them.

use std::ops::BitAnd;

use rayon::prelude::*;

use super::select::{RadixSelect, Threshold, CHUNK};

/// An unsigned integer holding one element's bits.
pub trait Bits: bytemuck::Pod + Ord + Send + Sync + BitAnd<Output = Self> + Into<u64> {
    /// All one bits when `keep`, else zero (a branch-free mask).
    fn mask(keep: bool) -> Self;
    /// Whether `lo <= self <= hi`, with a single comparison.
    fn within(self, lo: Self, hi: Self) -> bool;
    /// Width in bits.
    const WIDTH: u32;
    /// Clears the sign bit.
    const MAGNITUDE: Self;
    /// All zero bits.
    const ZERO: Self;
    /// The smallest nonzero key.
    const ONE: Self;
}

macro_rules! bits {
    ($t:ty, $w:expr) => {
        impl Bits for $t {
            const WIDTH: u32 = $w;
            const MAGNITUDE: Self = <$t>::MAX >> 1;
            const ZERO: Self = 0;
            const ONE: Self = 1;
            #[inline(always)]
            fn mask(keep: bool) -> Self {
                (keep as $t).wrapping_neg()
            }
            #[inline(always)]
            fn within(self, lo: Self, hi: Self) -> bool {
                self.wrapping_sub(lo) <= hi.wrapping_sub(lo)
            }
        }
    };
}
bits!(u16, 16);
bits!(u32, 32);
bits!(u64, 64);

/// Calls `$body` with `$data` bound to the tensor's bits (`&mut [u16|u32|u64]`) and
/// `$mag` to the function that turns a key back into a magnitude.
macro_rules! with_bits_mut {
    ($slice:expr, $data:ident, $mag:ident => $body:expr) => {
        match $slice {
            $crate::tensor::TensorSliceMut::F16(d) => {
                let $data: &mut [u16] = bytemuck::cast_slice_mut(d);
                let $mag = |k: u64| half::f16::from_bits(k as u16).to_f64();
                $body
            }
            $crate::tensor::TensorSliceMut::BF16(d) => {
                let $data: &mut [u16] = bytemuck::cast_slice_mut(d);
                let $mag = |k: u64| half::bf16::from_bits(k as u16).to_f64();
                $body
            }
            $crate::tensor::TensorSliceMut::F32(d) => {
                let $data: &mut [u32] = bytemuck::cast_slice_mut(d);
                let $mag = |k: u64| f32::from_bits(k as u32) as f64;
                $body
            }
            $crate::tensor::TensorSliceMut::F64(d) => {
                let $data: &mut [u64] = bytemuck::cast_slice_mut(d);
                let $mag = f64::from_bits;
                $body
            }
        }
    };
}
pub(crate) use with_bits_mut;

#[inline(always)]
fn key<B: Bits>(x: B) -> B {
    x & B::MAGNITUDE
}

/// The magnitude key of `x` as a u64.
#[inline(always)]
pub fn key_u64<B: Bits>(x: B) -> u64 {
    key(x).into()
}

/// Tensors up to this size are selected on a copy of their keys.
const SMALL: usize = 1 << 15;
/// Most samples drawn to bracket the threshold of a large tensor (one per 32
/// elements below that).
const SAMPLES: usize = 1 << 16;

/// The threshold of the `k` smallest keys (1 ≤ k ≤ len), in O(n) without sorting the
/// tensor: a sample brackets the threshold, one counting pass keeps the few keys in
/// the bracket, and those are selected exactly. A bracket that misses (or holds too
/// many keys) falls back to a radix select.
pub fn threshold<B: Bits>(data: &[B], k: u64) -> Threshold {
    let n = data.len();
    if n <= SMALL {
        let mut keys: Vec<B> = data.iter().map(|&x| key(x)).collect();
        return exact_in(&mut keys, k - 1, 0);
    }
    let rank = k - 1;
    // Deterministic sample positions (a multiplicative walk over the tensor).
    let samples = (n / 32).clamp(1 << 10, SAMPLES);
    let mut sample: Vec<B> = (0..samples as u64)
        .map(|i| key(data[((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) % n as u64) as usize]))
        .collect();
    sample.sort_unstable();
    let p = rank as f64 / n as f64;
    let spread = 3.5 * (samples as f64 * p * (1.0 - p)).sqrt() + 8.0;
    let centre = p * samples as f64;
    let lo_i = (centre - spread).floor();
    let hi_i = (centre + spread).ceil();
    // Zeros (often half of an already pruned tensor) stay out of the bracket: they are
    // counted below it, so a threshold of 0 is found without collecting them.
    let lo = if lo_i <= 0.0 {
        B::ZERO
    } else {
        sample[lo_i as usize]
    }
    .max(B::ONE);
    let hi = if hi_i >= (samples - 1) as f64 {
        B::MAGNITUDE
    } else {
        sample[hi_i as usize]
    }
    .max(lo);
    let cap = (n / 8).max(SMALL);
    let parts: Vec<(u64, Vec<B>)> = data
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut less = 0u64;
            let mut band = Vec::new();
            let cap = chunk.len() / 4 + 64;
            for &x in chunk {
                let kx = key(x);
                less += (kx < lo) as u64;
                // One well-predicted branch: few keys fall in the bracket.
                if kx.within(lo, hi) && band.len() < cap {
                    band.push(kx);
                }
            }
            (less, band)
        })
        .collect();
    let less: u64 = parts.iter().map(|p| p.0).sum();
    if lo == B::ONE && rank < less {
        // The threshold is 0: `less` counts the zeros.
        return Threshold {
            key: 0,
            ties_to_prune: rank + 1,
            ties_total: less,
        };
    }
    let band_len: usize = parts.iter().map(|p| p.1.len()).sum();
    let truncated = parts
        .iter()
        .zip(data.chunks(CHUNK))
        .any(|(p, c)| p.1.len() >= c.len() / 4 + 64);
    if !truncated && band_len <= cap && less <= rank && rank < less + band_len as u64 {
        let mut band: Vec<B> = Vec::with_capacity(band_len);
        for (_, part) in parts {
            band.extend(part);
        }
        return exact_in(&mut band, rank - less, less);
    }
    drop(parts);
    radix(data, k)
}

/// Selects rank `rank` in `keys` (all keys of the tensor between two bounds, with
/// `below` keys of the tensor under them).
fn exact_in<B: Bits>(keys: &mut [B], rank: u64, below: u64) -> Threshold {
    let (_, &mut t, _) = keys.select_nth_unstable(rank as usize);
    let less = keys.iter().filter(|&&x| x < t).count() as u64;
    let ties_total = keys.iter().filter(|&&x| x == t).count() as u64;
    Threshold {
        key: t.into(),
        ties_to_prune: below + rank + 1 - (below + less),
        ties_total,
    }
}

fn radix<B: Bits>(data: &[B], k: u64) -> Threshold {
    let mut select = RadixSelect::new(B::WIDTH, k);
    while !select.is_done() {
        select.observe(data, key_u64::<B>);
        select.end_pass();
    }
    select.threshold()
}

/// `x`, or zero bits when `cut`, without a branch.
#[inline(always)]
pub fn clear<B: Bits>(x: B, cut: bool) -> B {
    x & B::mask(!cut)
}

/// Counts elements whose key is 0 (±0.0).
pub fn count_zeros<B: Bits>(data: &[B]) -> u64 {
    data.par_chunks(CHUNK)
        .map(|c| c.iter().filter(|&&x| key(x) == B::ZERO).count() as u64)
        .sum()
}
