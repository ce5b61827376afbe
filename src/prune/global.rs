//! Global magnitude pruning: one threshold across many tensors (as
//! torch.nn.utils.prune.global_unstructured), exact count over the whole set, without
//! concatenating tensors or holding more than one at a time.
//!
//! The caller streams the targets through [`GlobalSelector::observe`] once per pass
//! (one pass for bf16-only or f16-only targets, two for 32-bit keys, four for 64-bit),
//! then prunes each tensor with [`GlobalThreshold::apply`]. Ties at the threshold go
//! in tensor-name order, then index order: the caller hands out the ties budget in
//! name order using [`GlobalThreshold::count_ties`] when
//! [`GlobalThreshold::needs_tie_counts`] says some but not all ties go.

use super::element::{with_slice, with_slice_mut};
use super::select::{apply, count_key, RadixSelect};
use super::{prune_count, Element, PruneStats};
use crate::tensor::{Dtype, TensorSlice, TensorSliceMut};

/// The key every target is compared by. Magnitudes convert exactly into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    /// The element's own 16-bit key (every target is bf16, or every target is f16).
    Native16,
    /// The magnitude as an f32 (bf16, f16 and f32 targets).
    F32,
    /// The magnitude as an f64 (when any target is f64).
    F64,
}

impl KeyKind {
    fn for_dtypes(dtypes: &[Dtype]) -> KeyKind {
        let all = |d: Dtype| !dtypes.is_empty() && dtypes.iter().all(|&x| x == d);
        if all(Dtype::BF16) || all(Dtype::F16) {
            KeyKind::Native16
        } else if dtypes.contains(&Dtype::F64) {
            KeyKind::F64
        } else {
            KeyKind::F32
        }
    }

    fn bits(self) -> u32 {
        match self {
            KeyKind::Native16 => 16,
            KeyKind::F32 => 32,
            KeyKind::F64 => 64,
        }
    }

    fn magnitude(self, key: u64) -> f64 {
        match self {
            KeyKind::Native16 | KeyKind::F32 => f32::from_bits(key as u32) as f64,
            KeyKind::F64 => f64::from_bits(key),
        }
    }
}

/// Runs `$body` with `$key` bound to the key function of `$kind` (a closure the kernels
/// inline, rather than a function pointer called per element).
macro_rules! with_key {
    ($kind:expr, $key:ident => $body:expr) => {
        match $kind {
            KeyKind::Native16 => {
                let $key = |x| Element::key(x);
                $body
            }
            KeyKind::F32 => {
                let $key = |x| Element::f32_key(x);
                $body
            }
            KeyKind::F64 => {
                let $key = |x| Element::f64_key(x);
                $body
            }
        }
    };
}

/// `x`, or +0 when `cut`.
fn clear_element<T: Element>(x: T, cut: bool) -> T {
    if cut {
        T::ZERO
    } else {
        x
    }
}

/// Finds the global threshold, pass by pass.
#[derive(Clone, Debug)]
pub struct GlobalSelector {
    kind: KeyKind,
    /// The dtype of the 16-bit native key, to report magnitudes.
    native: Option<Dtype>,
    radix: Option<RadixSelect>,
    k: u64,
}

impl GlobalSelector {
    /// A selection of round(s·total) weights among targets of `dtypes`.
    pub fn new(dtypes: &[Dtype], total: u64, sparsity: f64) -> Self {
        let kind = KeyKind::for_dtypes(dtypes);
        let k = prune_count(sparsity, total);
        GlobalSelector {
            kind,
            native: (kind == KeyKind::Native16).then(|| dtypes[0]),
            radix: (k > 0).then(|| RadixSelect::new(kind.bits(), k)),
            k,
        }
    }

    /// Whether another pass over the targets is needed.
    pub fn needs_pass(&self) -> bool {
        self.radix.as_ref().is_some_and(|r| !r.is_done())
    }

    /// Feeds one target into the current pass.
    pub fn observe(&mut self, data: TensorSlice) {
        let kind = self.kind;
        if let Some(radix) = &mut self.radix {
            with_slice!(data, d => with_key!(kind, key_of => radix.observe(d, key_of)));
        }
    }

    /// Ends the current pass.
    pub fn end_pass(&mut self) {
        if let Some(radix) = &mut self.radix {
            radix.end_pass();
        }
    }

    /// The threshold, once no pass is needed.
    pub fn threshold(&self) -> GlobalThreshold {
        let th = self.radix.as_ref().map(|r| r.threshold());
        GlobalThreshold {
            kind: self.kind,
            native: self.native,
            key: th.map_or(0, |t| t.key),
            ties_to_prune: th.map_or(0, |t| t.ties_to_prune),
            ties_total: th.map_or(0, |t| t.ties_total),
            k: self.k,
        }
    }
}

/// The global threshold: every magnitude below `key` goes, and `ties_to_prune` of
/// the `ties_total` weights equal to it.
#[derive(Clone, Copy, Debug)]
pub struct GlobalThreshold {
    kind: KeyKind,
    native: Option<Dtype>,
    key: u64,
    /// Ties at the threshold to prune, over all targets.
    pub ties_to_prune: u64,
    /// Ties at the threshold, over all targets.
    pub ties_total: u64,
    k: u64,
}

impl GlobalThreshold {
    /// Whether some but not all ties go, so that each tensor's share must be known.
    pub fn needs_tie_counts(&self) -> bool {
        self.ties_to_prune > 0 && self.ties_to_prune < self.ties_total
    }

    /// Ties at the threshold in one tensor.
    pub fn count_ties(&self, data: TensorSlice) -> u64 {
        let (kind, key) = (self.kind, self.key);
        with_slice!(data, d => with_key!(kind, key_of => count_key(d, key, key_of)))
    }

    /// This tensor's share of the ties to prune, taken from `left` (which starts at
    /// `ties_to_prune`); call it for each target in name order. Reads the tensor only
    /// when some but not all ties go.
    pub fn take_ties(&self, data: TensorSlice, left: &mut u64) -> u64 {
        if !self.needs_tie_counts() || *left == 0 {
            return 0;
        }
        let here = self.count_ties(data).min(*left);
        *left -= here;
        here
    }

    /// The threshold magnitude (`None` when nothing is pruned).
    pub fn magnitude(&self) -> Option<f64> {
        (self.k > 0).then(|| match (self.kind, self.native) {
            (KeyKind::Native16, Some(Dtype::BF16)) => {
                half::bf16::from_bits(self.key as u16).to_f64()
            }
            (KeyKind::Native16, _) => half::f16::from_bits(self.key as u16).to_f64(),
            (kind, _) => kind.magnitude(self.key),
        })
    }

    /// Prunes one target: every magnitude below the threshold, and `ties` of its
    /// weights equal to it (in index order).
    pub fn apply(&self, data: TensorSliceMut, ties: u64) -> PruneStats {
        let (kind, key, threshold) = (self.kind, self.key, self.magnitude());
        if self.k == 0 {
            let zeros = with_slice!(data.as_slice(), d => with_key!(kind, key_of => count_key(d, 0, key_of)));
            return PruneStats {
                numel: data.len() as u64,
                zeros_before: zeros,
                zeros_after: zeros,
                threshold: None,
            };
        }
        let numel = data.len() as u64;
        // When every tie goes, any budget at least the tensor's size prunes them all.
        let (ties, total) = if self.needs_tie_counts() {
            (ties, u64::MAX)
        } else if self.ties_to_prune > 0 {
            (u64::MAX, 0)
        } else {
            (0, 0)
        };
        let applied = with_slice_mut!(data, d => with_key!(kind, key_of => apply(d, clear_element, key, ties, total, key_of)));
        PruneStats {
            numel,
            zeros_before: applied.zeros_before,
            zeros_after: applied.zeros_after,
            threshold,
        }
    }
}
