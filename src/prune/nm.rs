//! N:M semi-structured sparsity: at most N nonzeros in every M consecutive weights
//! along the input dimension (2:4 keeps 2 of every 4).

use rayon::prelude::*;

use super::bits::{clear, key_u64, with_bits_mut, Bits};
use super::PruneStats;
use crate::tensor::TensorSliceMut;

/// Why an N:M pattern cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NmError {
    #[error("pattern {n}:{m} needs 0 < N < M <= 32")]
    Pattern { n: usize, m: usize },
    #[error("rows of {row_len} weights are not a multiple of {m}")]
    RowLength { row_len: usize, m: usize },
}

/// Keeps the `n` largest magnitudes of every group of `m` consecutive weights of
/// each row (ties: the lower index is pruned first).
pub fn prune_n_m(
    data: TensorSliceMut,
    row_len: usize,
    n: usize,
    m: usize,
) -> Result<PruneStats, NmError> {
    if n == 0 || n >= m || m > 32 {
        return Err(NmError::Pattern { n, m });
    }
    if row_len == 0 || !row_len.is_multiple_of(m) {
        return Err(NmError::RowLength { row_len, m });
    }
    Ok(with_bits_mut!(data, d, magnitude => {
        let (stats, key) = prune_bits(d, n, m);
        PruneStats { threshold: key.map(magnitude), ..stats }
    }))
}

/// Picks the kernel for the group size and key width.
fn prune_bits<B: Bits>(data: &mut [B], n: usize, m: usize) -> (PruneStats, Option<u64>) {
    match m {
        // Packing (key, index) into a u64 needs keys of at most 62 bits.
        4 if B::WIDTH <= 32 => prune_groups_of_4(data, n),
        4 => prune_groups::<_, 4>(data, n),
        8 => prune_groups::<_, 8>(data, n),
        _ => prune_groups_dyn(data, n, m),
    }
}

/// Prunes the `m - n` smallest of a group by (key, index) rank, branch-free.
#[inline(always)]
fn prune_group<B: Bits>(group: &mut [B], keys: &[u64], drop: usize, max_pruned: &mut u64) {
    for i in 0..keys.len() {
        let ki = keys[i];
        let mut rank = 0;
        for (j, &kj) in keys.iter().enumerate() {
            rank += ((kj < ki) | ((kj == ki) & (j < i))) as usize;
        }
        let cut = rank < drop;
        group[i] = clear(group[i], cut);
        *max_pruned = (*max_pruned).max(ki * cut as u64);
    }
}

/// Groups of a size known at compile time (unrolled).
fn prune_groups<B: Bits, const M: usize>(data: &mut [B], n: usize) -> (PruneStats, Option<u64>) {
    run(data, M, |block, before, after, max_pruned| {
        for group in block.chunks_exact_mut(M) {
            let mut keys = [0u64; M];
            for (k, &x) in keys.iter_mut().zip(group.iter()) {
                *k = key_u64(x);
            }
            *before += keys.iter().filter(|&&k| k == 0).count() as u64;
            prune_group(group, &keys, M - n, max_pruned);
            *after += group.iter().filter(|&&x| key_u64(x) == 0).count() as u64;
        }
    })
}

/// Groups of four: each weight is packed with its index, `(key << 2) | i`, so that
/// (key, index) order is one integer order; a sorting network finds the pivot.
fn prune_groups_of_4<B: Bits>(data: &mut [B], n: usize) -> (PruneStats, Option<u64>) {
    let drop = 4 - n;
    run(data, 4, |block, before, after, max_pruned| {
        let (mut zeros_in, mut zeros_out, mut top) = (0u64, 0u64, 0u64);
        for group in block.chunks_exact_mut(4) {
            let p: [u64; 4] = std::array::from_fn(|i| (key_u64(group[i]) << 2) | i as u64);
            let (a, b) = (p[0].min(p[1]), p[0].max(p[1]));
            let (c, d) = (p[2].min(p[3]), p[2].max(p[3]));
            let (lo, mid1) = (a.min(c), a.max(c));
            let (mid2, hi) = (b.min(d), b.max(d));
            let sorted = [lo, mid1.min(mid2), mid1.max(mid2), hi];
            let pivot = sorted[drop - 1];
            for (x, &pi) in group.iter_mut().zip(&p) {
                let cut = pi <= pivot;
                zeros_in += (pi >> 2 == 0) as u64;
                *x = clear(*x, cut);
                zeros_out += ((pi >> 2 == 0) | cut) as u64;
            }
            top = top.max(pivot >> 2);
        }
        *before += zeros_in;
        *after += zeros_out;
        *max_pruned = (*max_pruned).max(top);
    })
}

/// Groups of any size up to 32.
fn prune_groups_dyn<B: Bits>(data: &mut [B], n: usize, m: usize) -> (PruneStats, Option<u64>) {
    run(data, m, |block, before, after, max_pruned| {
        let mut keys = [0u64; 32];
        for group in block.chunks_exact_mut(m) {
            for (k, &x) in keys.iter_mut().zip(group.iter()) {
                *k = key_u64(x);
            }
            *before += keys[..m].iter().filter(|&&k| k == 0).count() as u64;
            prune_group(group, &keys[..m], m - n, max_pruned);
            *after += group.iter().filter(|&&x| key_u64(x) == 0).count() as u64;
        }
    })
}

/// Runs `groups` over blocks of whole groups in parallel and sums the counts.
fn run<B: Bits>(
    data: &mut [B],
    m: usize,
    groups: impl Fn(&mut [B], &mut u64, &mut u64, &mut u64) + Sync,
) -> (PruneStats, Option<u64>) {
    let numel = data.len() as u64;
    let (zeros_before, zeros_after, max_pruned) = data
        .par_chunks_mut(m * 4096)
        .map(|block| {
            let (mut before, mut after, mut max_pruned) = (0, 0, 0);
            groups(block, &mut before, &mut after, &mut max_pruned);
            (before, after, max_pruned)
        })
        .reduce(|| (0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2.max(b.2)));
    // Every group prunes at least one weight, so a nonempty tensor has a threshold.
    let stats = PruneStats {
        numel,
        zeros_before,
        zeros_after,
        threshold: None,
    };
    (stats, (numel > 0).then_some(max_pruned))
}
