//! Magnitude pruning of one tensor: the whole tensor or each row as the group.

use rayon::prelude::*;

use super::bits::{clear, count_zeros, key_u64, threshold, with_bits_mut, Bits};
use super::select::apply;
use super::{prune_count, PruneStats};
use crate::tensor::TensorSliceMut;

/// Zeroes the round(s·n) smallest magnitudes of the tensor (ties in index order).
pub fn prune_tensor(data: TensorSliceMut, sparsity: f64) -> PruneStats {
    with_bits_mut!(data, d, magnitude => {
        let (stats, key) = prune_group(d, sparsity);
        PruneStats { threshold: key.map(magnitude), ..stats }
    })
}

/// Prunes one group; returns the stats and the threshold key.
fn prune_group<B: Bits>(data: &mut [B], sparsity: f64) -> (PruneStats, Option<u64>) {
    let n = data.len() as u64;
    let k = prune_count(sparsity, n);
    if k == 0 {
        let zeros = count_zeros(data);
        let stats = PruneStats {
            numel: n,
            zeros_before: zeros,
            zeros_after: zeros,
            threshold: None,
        };
        return (stats, None);
    }
    let th = threshold(data, k);
    let applied = apply(
        data,
        clear::<B>,
        th.key,
        th.ties_to_prune,
        th.ties_total,
        key_u64::<B>,
    );
    let stats = PruneStats {
        numel: n,
        zeros_before: applied.zeros_before,
        zeros_after: applied.zeros_after,
        threshold: None,
    };
    (stats, Some(th.key))
}

/// Zeroes the round(s·row_len) smallest magnitudes of every row of `row_len`
/// elements (the output rows of a `[out, in]` weight), rows in parallel.
pub fn prune_rows(data: TensorSliceMut, row_len: usize, sparsity: f64) -> PruneStats {
    with_bits_mut!(data, d, magnitude => {
        let (stats, key) = prune_each_row(d, row_len, sparsity);
        PruneStats { threshold: key.map(magnitude), ..stats }
    })
}

fn prune_each_row<B: Bits>(
    data: &mut [B],
    row_len: usize,
    sparsity: f64,
) -> (PruneStats, Option<u64>) {
    let n = data.len() as u64;
    let row_len = row_len.max(1);
    let k = prune_count(sparsity, row_len as u64) as usize;
    let per_row: Vec<(u64, Option<u64>)> = data
        .par_chunks_mut(row_len)
        .map_init(Vec::new, |order: &mut Vec<u128>, row| {
            let zeros = row.iter().filter(|&&x| key_u64(x) == 0).count() as u64;
            let k = k.min(row.len());
            if k == 0 {
                return (zeros, None);
            }
            // (key, index) pairs order ties by index; select the k-th without sorting.
            order.clear();
            order.extend(
                row.iter()
                    .enumerate()
                    .map(|(i, &x)| ((key_u64(x) as u128) << 64) | i as u128),
            );
            let (_, &mut pivot, _) = order.select_nth_unstable(k - 1);
            for (i, x) in row.iter_mut().enumerate() {
                if (((key_u64(*x) as u128) << 64) | i as u128) <= pivot {
                    *x = B::ZERO;
                }
            }
            (zeros, Some((pivot >> 64) as u64))
        })
        .collect();
    let stats = PruneStats {
        numel: n,
        zeros_before: per_row.iter().map(|r| r.0).sum(),
        zeros_after: per_row.iter().map(|r| r.0.max(k as u64)).sum(),
        threshold: None,
    };
    (stats, per_row.iter().filter_map(|r| r.1).max())
}
