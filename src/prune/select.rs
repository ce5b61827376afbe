//! Exact selection of the k smallest magnitudes in O(n): a radix select on the key
//! bits, 16 bits per pass, with per-thread histograms over fixed chunks (integer sums,
//! so the result does not depend on the thread count). No sort, no copy of the tensor.

use rayon::prelude::*;

use super::Element;

/// Elements per parallel chunk (fixed, so that tie bookkeeping is deterministic).
pub const CHUNK: usize = 1 << 16;
const DIGIT: u32 = 16;
const BUCKETS: usize = 1 << DIGIT;

/// Where the k smallest keys end: every key below `key` is pruned, and
/// `ties_to_prune` of the `ties_total` elements whose key equals `key`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    pub key: u64,
    pub ties_to_prune: u64,
    pub ties_total: u64,
}

/// A radix selection in progress, fed slice by slice (one tensor, or many for the
/// global scope).
#[derive(Clone, Debug)]
pub struct RadixSelect {
    bits: u32,
    pass: u32,
    prefix: u64,
    /// Rank (0-based) of the wanted element within the current prefix bucket.
    rank: u64,
    /// Elements with the prefix found so far.
    bucket_count: u64,
    hist: Vec<u64>,
}

impl RadixSelect {
    /// Selects the element of rank `k - 1` (k ≥ 1) among keys of `bits` bits.
    pub fn new(bits: u32, k: u64) -> Self {
        assert!(k >= 1 && bits.is_multiple_of(DIGIT));
        RadixSelect {
            bits,
            pass: 0,
            prefix: 0,
            rank: k - 1,
            bucket_count: 0,
            hist: vec![0; BUCKETS],
        }
    }

    /// Whether every pass is done.
    pub fn is_done(&self) -> bool {
        self.pass == self.bits / DIGIT
    }

    /// Adds `data`'s keys (under `key_of`) to this pass's histogram.
    pub fn observe<T: Element>(&mut self, data: &[T], key_of: impl Fn(T) -> u64 + Sync) {
        let shift = self.bits - DIGIT * (self.pass + 1);
        let prefix_shift = shift + DIGIT;
        let (pass, prefix) = (self.pass, self.prefix);
        let hist = data
            .par_chunks(CHUNK)
            .fold(
                || vec![0u64; BUCKETS],
                |mut h, chunk| {
                    if pass == 0 {
                        for &x in chunk {
                            h[((key_of(x) >> shift) as usize) & (BUCKETS - 1)] += 1;
                        }
                    } else {
                        for &x in chunk {
                            let key = key_of(x);
                            if key >> prefix_shift == prefix {
                                h[((key >> shift) as usize) & (BUCKETS - 1)] += 1;
                            }
                        }
                    }
                    h
                },
            )
            .reduce(
                || vec![0u64; BUCKETS],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        self.hist.iter_mut().zip(&hist).for_each(|(x, y)| *x += y);
    }

    /// Chooses the bucket that holds the wanted rank and moves to the next digit.
    pub fn end_pass(&mut self) {
        let mut seen = 0u64;
        let mut bucket = BUCKETS - 1;
        for (b, &count) in self.hist.iter().enumerate() {
            if seen + count > self.rank {
                bucket = b;
                break;
            }
            seen += count;
        }
        self.rank -= seen;
        self.bucket_count = self.hist[bucket];
        self.prefix = (self.prefix << DIGIT) | bucket as u64;
        self.pass += 1;
        self.hist.iter_mut().for_each(|h| *h = 0);
    }

    /// The result, once every pass is done.
    pub fn threshold(&self) -> Threshold {
        assert!(self.is_done());
        Threshold {
            key: self.prefix,
            ties_to_prune: self.rank + 1,
            ties_total: self.bucket_count,
        }
    }
}

/// The threshold of the `k` smallest keys of `data` (k ≥ 1, k ≤ len).
pub fn select<T: Element>(
    data: &[T],
    k: u64,
    bits: u32,
    key_of: impl Fn(T) -> u64 + Sync + Copy,
) -> Threshold {
    let mut radix = RadixSelect::new(bits, k);
    while !radix.is_done() {
        radix.observe(data, key_of);
        radix.end_pass();
    }
    radix.threshold()
}

/// Counts the elements whose key equals `key`.
pub fn count_key<T: Element>(data: &[T], key: u64, key_of: impl Fn(T) -> u64 + Sync) -> u64 {
    data.par_chunks(CHUNK)
        .map(|c| c.iter().filter(|&&x| key_of(x) == key).count() as u64)
        .sum()
}

/// What [`apply`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Zeros before pruning.
    pub zeros_before: u64,
    /// Zeros after pruning.
    pub zeros_after: u64,
}

/// Zeroes every element whose key is below `key` and the first `ties` elements (in
/// index order) whose key equals it. `ties_total` is how many elements of `data` have
/// that key, or more (every tie goes when `ties >= ties_total`).
pub fn apply<T: Element>(
    data: &mut [T],
    key: u64,
    ties: u64,
    ties_total: u64,
    key_of: impl Fn(T) -> u64 + Sync + Copy,
) -> Applied {
    let all_ties = ties >= ties_total;
    let prune_ties_now = all_ties && ties > 0;
    // One pass: prune what is below the threshold (and all ties when they all go),
    // count zeros and, when only some ties go, each chunk's ties.
    let counts: Vec<(u64, u64, u64)> = data
        .par_chunks_mut(CHUNK)
        .map(|chunk| {
            let (mut zeros, mut pruned, mut tie_count) = (0u64, 0u64, 0u64);
            for x in chunk.iter_mut() {
                let k = key_of(*x);
                zeros += (x.key() == 0) as u64;
                if k < key || (prune_ties_now && k == key) {
                    *x = T::ZERO;
                    pruned += 1;
                } else if k == key {
                    tie_count += 1;
                }
            }
            (zeros, pruned, tie_count)
        })
        .collect();
    if !all_ties && ties > 0 {
        // Hand out the ties budget in chunk order, then prune that many ties per chunk.
        let mut left = ties;
        let budgets: Vec<u64> = counts
            .iter()
            .map(|&(_, _, t)| {
                let b = t.min(left);
                left -= b;
                b
            })
            .collect();
        data.par_chunks_mut(CHUNK)
            .zip(budgets.par_iter())
            .filter(|(_, &b)| b > 0)
            .for_each(|(chunk, &budget)| {
                let mut left = budget;
                for x in chunk.iter_mut() {
                    if left == 0 {
                        break;
                    }
                    if key_of(*x) == key {
                        *x = T::ZERO;
                        left -= 1;
                    }
                }
            });
    }
    let zeros_before: u64 = counts.iter().map(|c| c.0).sum();
    let pruned: u64 = counts.iter().map(|c| c.1).sum();
    let ties_seen: u64 = counts.iter().map(|c| c.2).sum();
    let ties_pruned = if all_ties { 0 } else { ties.min(ties_seen) };
    // Zeros have the smallest key: when the threshold is above 0 they are all pruned;
    // when it is 0, every zero is a tie and stays a zero.
    let zeros_after = if key == 0 {
        zeros_before
    } else {
        pruned + ties_pruned
    };
    Applied {
        zeros_before,
        zeros_after,
    }
}

/// Counts elements whose key is 0 (±0.0).
pub fn count_zeros<T: Element>(data: &[T]) -> u64 {
    count_key(data, 0, T::key)
}
