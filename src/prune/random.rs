//! Random pruning: exactly round(s·n) positions, uniformly at random, reproducible
//! from the seed and a stream name (the tensor's name, so tensors differ).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::element::with_slice_mut;
use super::{prune_count, Element, PruneStats};
use crate::tensor::TensorSliceMut;

/// Zeroes round(s·n) positions chosen uniformly at random.
pub fn prune_random(data: TensorSliceMut, sparsity: f64, seed: u64, stream: &str) -> PruneStats {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(stream.as_bytes());
    let mut rng = ChaCha8Rng::from_seed(hasher.finalize().into());
    with_slice_mut!(data, d => prune_positions(d, sparsity, &mut rng))
}

fn prune_positions<T: Element>(data: &mut [T], sparsity: f64, rng: &mut ChaCha8Rng) -> PruneStats {
    let n = data.len();
    let k = prune_count(sparsity, n as u64) as usize;
    let zeros_before = data.iter().filter(|x| x.key() == 0).count() as u64;
    // Draw the smaller of the pruned and the kept sets by rejection on a bitmap:
    // at most n/2 draws are wanted, so each draw succeeds with probability >= 1/2.
    let (draw, chosen_are_pruned) = if k <= n / 2 {
        (k, true)
    } else {
        (n - k, false)
    };
    let mut chosen = vec![0u64; n.div_ceil(64)];
    let mut got = 0;
    while got < draw {
        let i = rng.random_range(0..n);
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if chosen[word] & bit == 0 {
            chosen[word] |= bit;
            got += 1;
        }
    }
    for (i, x) in data.iter_mut().enumerate() {
        let marked = chosen[i / 64] & (1u64 << (i % 64)) != 0;
        if marked == chosen_are_pruned {
            *x = T::ZERO;
        }
    }
    let zeros_after = data.iter().filter(|x| x.key() == 0).count() as u64;
    PruneStats {
        numel: n as u64,
        zeros_before,
        zeros_after,
        threshold: None,
    }
}
