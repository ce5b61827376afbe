//! Magnitude pruning of one tensor: the whole tensor or each row as the group.

use rayon::prelude::*;

use super::element::with_slice_mut;
use super::select::{apply, count_zeros, select};
use super::{prune_count, Element, PruneStats};
use crate::tensor::TensorSliceMut;

/// Zeroes the round(s·n) smallest magnitudes of the tensor (ties in index order).
pub fn prune_tensor(data: TensorSliceMut, sparsity: f64) -> PruneStats {
    with_slice_mut!(data, d => prune_group(d, sparsity))
}

fn prune_group<T: Element>(data: &mut [T], sparsity: f64) -> PruneStats {
    let n = data.len() as u64;
    let k = prune_count(sparsity, n);
    if k == 0 {
        let zeros = count_zeros(data);
        return PruneStats {
            numel: n,
            zeros_before: zeros,
            zeros_after: zeros,
            threshold: None,
        };
    }
    let th = select(data, k, T::KEY_BITS, T::key);
    let applied = apply(data, th.key, th.ties_to_prune, th.ties_total, T::key);
    PruneStats {
        numel: n,
        zeros_before: applied.zeros_before,
        zeros_after: applied.zeros_after,
        threshold: Some(T::magnitude(th.key)),
    }
}

/// Zeroes the round(s·row_len) smallest magnitudes of every row of `row_len`
/// elements (the output rows of a `[out, in]` weight), rows in parallel.
pub fn prune_rows(data: TensorSliceMut, row_len: usize, sparsity: f64) -> PruneStats {
    with_slice_mut!(data, d => prune_each_row(d, row_len, sparsity))
}

fn prune_each_row<T: Element>(data: &mut [T], row_len: usize, sparsity: f64) -> PruneStats {
    let n = data.len() as u64;
    let row_len = row_len.max(1);
    let k = prune_count(sparsity, row_len as u64) as usize;
    let per_row: Vec<(u64, Option<u64>)> = data
        .par_chunks_mut(row_len)
        .map_init(Vec::new, |order: &mut Vec<u128>, row| {
            let zeros = row.iter().filter(|x| x.key() == 0).count() as u64;
            let k = k.min(row.len());
            if k == 0 {
                return (zeros, None);
            }
            // (key, index) pairs order ties by index; select the k-th without sorting.
            order.clear();
            order.extend(
                row.iter()
                    .enumerate()
                    .map(|(i, x)| ((x.key() as u128) << 64) | i as u128),
            );
            let (_, &mut pivot, _) = order.select_nth_unstable(k - 1);
            for (i, x) in row.iter_mut().enumerate() {
                if (((x.key() as u128) << 64) | i as u128) <= pivot {
                    *x = T::ZERO;
                }
            }
            (zeros, Some((pivot >> 64) as u64))
        })
        .collect();
    let zeros_before = per_row.iter().map(|r| r.0).sum();
    let zeros_after = per_row.iter().map(|r| r.0.max(k as u64)).sum();
    let threshold = per_row.iter().filter_map(|r| r.1).max().map(T::magnitude);
    PruneStats {
        numel: n,
        zeros_before,
        zeros_after,
        threshold,
    }
}
