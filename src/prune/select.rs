//! Exact selection of the k smallest magnitudes in O(n): a radix select on the key
//! bits, 16 bits per pass, with per-thread histograms (integer sums, so the result
//! does not depend on the thread count), and the pass that applies a threshold over
//! fixed chunks. No sort, no copy of the tensor.

use rayon::prelude::*;

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
    /// One histogram per worker thread, kept across `observe` calls of a pass.
    parts: Vec<Vec<u64>>,
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
            parts: vec![vec![0; BUCKETS]; rayon::current_num_threads().max(1)],
        }
    }

    /// Whether every pass is done.
    pub fn is_done(&self) -> bool {
        self.pass == self.bits / DIGIT
    }

    /// Adds `data`'s keys (under `key_of`) to this pass's histogram.
    pub fn observe<T: Copy + Send + Sync>(&mut self, data: &[T], key_of: impl Fn(T) -> u64 + Sync) {
        let shift = self.bits - DIGIT * (self.pass + 1);
        let prefix_shift = shift + DIGIT;
        let (first, prefix) = (self.pass == 0, self.prefix);
        let piece = data.len().div_ceil(self.parts.len()).max(1);
        let bucket = move |x: T| -> Option<usize> {
            let key = key_of(x);
            (first || key >> prefix_shift == prefix)
                .then_some(((key >> shift) as usize) & (BUCKETS - 1))
        };
        self.parts
            .par_iter_mut()
            .zip(data.par_chunks(piece))
            .for_each(|(total, chunk)| {
                // Four interleaved counters per bucket: runs of equal keys (common in
                // weights) do not wait on the previous increment of the same counter.
                let mut lanes = vec![[0u32; 4]; BUCKETS];
                for group in chunk.chunks(4 * (u32::MAX as usize / 4)) {
                    let mut quads = group.chunks_exact(4);
                    for q in &mut quads {
                        for (lane, &x) in q.iter().enumerate() {
                            if let Some(b) = bucket(x) {
                                lanes[b][lane] += 1;
                            }
                        }
                    }
                    for &x in quads.remainder() {
                        if let Some(b) = bucket(x) {
                            lanes[b][0] += 1;
                        }
                    }
                    for (t, l) in total.iter_mut().zip(lanes.iter_mut()) {
                        *t += l.iter().map(|&c| c as u64).sum::<u64>();
                        *l = [0; 4];
                    }
                }
            });
    }

    /// Chooses the bucket that holds the wanted rank and moves to the next digit.
    pub fn end_pass(&mut self) {
        let mut hist = vec![0u64; BUCKETS];
        for part in &mut self.parts {
            for (total, count) in hist.iter_mut().zip(part.iter_mut()) {
                *total += std::mem::take(count);
            }
        }
        let mut seen = 0u64;
        let mut bucket = BUCKETS - 1;
        for (b, &count) in hist.iter().enumerate() {
            if seen + count > self.rank {
                bucket = b;
                break;
            }
            seen += count;
        }
        self.rank -= seen;
        self.bucket_count = hist[bucket];
        self.prefix = (self.prefix << DIGIT) | bucket as u64;
        self.pass += 1;
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

/// Counts the elements whose key equals `key`.
pub fn count_key<T: Copy + Send + Sync>(
    data: &[T],
    key: u64,
    key_of: impl Fn(T) -> u64 + Sync,
) -> u64 {
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
/// that key, or more (every tie goes when `ties >= ties_total`). `clear(x, cut)`
/// returns +0 when `cut` and `x` otherwise (branch-free where it can be).
pub fn apply<T: Copy + Send + Sync>(
    data: &mut [T],
    clear: impl Fn(T, bool) -> T + Sync + Copy,
    key: u64,
    ties: u64,
    ties_total: u64,
    key_of: impl Fn(T) -> u64 + Sync + Copy,
) -> Applied {
    let all_ties = ties > 0 && ties >= ties_total;
    let some_ties = ties > 0 && !all_ties;
    // One branch-free pass: prune what is below the threshold (and every tie when all
    // go), count zeros and each chunk's ties.
    let counts: Vec<(u32, u32, u32)> = data
        .par_chunks_mut(CHUNK)
        .map(|chunk| {
            let (mut zeros, mut pruned, mut tied) = (0u32, 0u32, 0u32);
            for x in chunk.iter_mut() {
                let k = key_of(*x);
                zeros += (k == 0) as u32;
                tied += (k == key) as u32;
                let cut = (k < key) | (all_ties & (k == key));
                pruned += cut as u32;
                *x = clear(*x, cut);
            }
            (zeros, pruned, tied)
        })
        .collect();
    let mut ties_pruned = 0;
    if some_ties {
        // Hand the ties budget out in chunk order; only the chunks it reaches are read.
        let mut left = ties;
        let budgets: Vec<u64> = counts
            .iter()
            .map(|c| {
                let b = (c.2 as u64).min(left);
                left -= b;
                b
            })
            .collect();
        ties_pruned = ties - left;
        data.par_chunks_mut(CHUNK)
            .zip(budgets.par_iter())
            .filter(|(_, &b)| b > 0)
            .for_each(|(chunk, &budget)| {
                let mut left = budget;
                for x in chunk.iter_mut() {
                    if key_of(*x) == key {
                        *x = clear(*x, true);
                        left -= 1;
                        if left == 0 {
                            break;
                        }
                    }
                }
            });
    }
    let zeros_before: u64 = counts.iter().map(|c| c.0 as u64).sum();
    let pruned: u64 = counts.iter().map(|c| c.1 as u64).sum();
    // Zeros have the smallest key: with a threshold above 0 they are all pruned; with
    // a threshold of 0 every zero is a tie and stays a zero.
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
