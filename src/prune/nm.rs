//! N:M semi-structured sparsity: at most N nonzeros in every M consecutive weights
//! along the input dimension (2:4 keeps 2 of every 4).

use rayon::prelude::*;

use super::element::with_slice_mut;
use super::{Element, PruneStats};
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
    Ok(with_slice_mut!(data, d => prune_groups(d, n, m)))
}

fn prune_groups<T: Element>(data: &mut [T], n: usize, m: usize) -> PruneStats {
    let drop = m - n;
    let (zeros_before, zeros_after, max_pruned) = data
        .par_chunks_mut(m * 4096)
        .map(|block| {
            let (mut before, mut after, mut max_pruned) = (0u64, 0u64, None::<u64>);
            let mut keys = [0u64; 32];
            for group in block.chunks_exact_mut(m) {
                for (k, x) in keys.iter_mut().zip(group.iter()) {
                    *k = x.key();
                }
                let keys = &keys[..m];
                before += keys.iter().filter(|&&k| k == 0).count() as u64;
                for i in 0..m {
                    // Rank of element i among the group by (key, index).
                    let ki = keys[i];
                    let rank = keys
                        .iter()
                        .enumerate()
                        .filter(|&(j, &kj)| kj < ki || (kj == ki && j < i))
                        .count();
                    if rank < drop {
                        group[i] = T::ZERO;
                        max_pruned = max_pruned.max(Some(ki));
                    }
                }
                after += group.iter().filter(|x| x.key() == 0).count() as u64;
            }
            (before, after, max_pruned)
        })
        .reduce(|| (0, 0, None), |a, b| (a.0 + b.0, a.1 + b.1, a.2.max(b.2)));
    PruneStats {
        numel: data.len() as u64,
        zeros_before,
        zeros_after,
        threshold: max_pruned.map(T::magnitude),
    }
}
