//! Pruning kernels: magnitude (per tensor, per row, global), N:M and random masks,
//! for F16, BF16, F32 and F64 tensors, computing on each dtype's own bits.
//!
//! The rule everywhere: a group of n weights at sparsity s loses exactly round(s·n)
//! weights (half to even, as Python's `round`), the smallest magnitudes first, ties in
//! index order; zeros count among the smallest; kept weights keep their bits; pruned
//! weights become +0.0.

mod bits;
mod element;
mod global;
mod magnitude;
mod nm;
mod random;
mod select;

pub use element::Element;
pub use global::{GlobalSelector, GlobalThreshold};
pub use magnitude::{prune_rows, prune_tensor};
pub use nm::{prune_n_m, NmError};
pub use random::prune_random;

/// What pruning did to one tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PruneStats {
    pub numel: u64,
    /// Elements equal to ±0 before.
    pub zeros_before: u64,
    /// Elements equal to ±0 after.
    pub zeros_after: u64,
    /// The largest magnitude pruned (`None` when nothing was).
    pub threshold: Option<f64>,
}

/// How many of `n` weights sparsity `s` prunes: round(s·n), half to even.
pub fn prune_count(sparsity: f64, n: u64) -> u64 {
    ((sparsity * n as f64).round_ties_even() as u64).min(n)
}

#[cfg(test)]
mod tests;
