//! Which tensors a run touches, and how each is pruned.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use crate::prune::{self, GlobalSelector, GlobalThreshold, PruneStats};
use crate::recipe::{Method, Pattern, Recipe, Scope, TensorLike};
use crate::tensor::{read_tensor_into, AlignedBuf, Header, TensorEntry, TensorSliceMut};

use super::{Control, EngineError};

/// A tensor and the file that holds it.
#[derive(Debug)]
pub struct Located<'a> {
    pub file: &'a str,
    pub entry: &'a TensorEntry,
    shape: Vec<u64>,
}

impl TensorLike for Located<'_> {
    fn name(&self) -> &str {
        &self.entry.name
    }
    fn shape(&self) -> &[u64] {
        &self.shape
    }
    fn dtype_name(&self) -> &str {
        self.entry.dtype.as_str()
    }
    fn prunable(&self) -> bool {
        self.entry.dtype.is_prunable()
    }
}

/// Every tensor of every file.
pub fn locate<'a>(headers: &'a BTreeMap<&'a str, Header>) -> Vec<Located<'a>> {
    headers
        .iter()
        .flat_map(|(file, h)| {
            h.tensors.iter().map(move |entry| Located {
                file,
                entry,
                shape: entry.shape.iter().map(|&d| d as u64).collect(),
            })
        })
        .collect()
}

fn typed<'a>(
    entry: &TensorEntry,
    buf: &'a mut AlignedBuf,
) -> Result<TensorSliceMut<'a>, EngineError> {
    TensorSliceMut::new(buf, entry.dtype).ok_or_else(|| {
        EngineError::Invalid(format!(
            "tensor '{}' has dtype {}, which cannot be pruned",
            entry.name,
            entry.dtype.as_str()
        ))
    })
}

/// The length of a row: the input dimension (the last one).
fn row_len(entry: &TensorEntry) -> usize {
    entry.shape.last().copied().unwrap_or(1).max(1)
}

/// Prunes one target tensor held in `buf`.
pub fn prune_one(
    recipe: &Recipe,
    entry: &TensorEntry,
    buf: &mut AlignedBuf,
    global: Option<&GlobalBudgets>,
) -> Result<PruneStats, EngineError> {
    let data = typed(entry, buf)?;
    let stats = match (recipe.method, recipe.pattern, recipe.scope) {
        (Method::Random, _, _) => {
            prune::prune_random(data, recipe.sparsity, recipe.seed, &entry.name)
        }
        (Method::Magnitude, Pattern::NM { n, m }, _) => {
            prune::prune_n_m(data, row_len(entry), n, m)
                .map_err(|e| EngineError::Invalid(format!("tensor '{}': {e}", entry.name)))?
        }
        (Method::Magnitude, Pattern::Unstructured, Scope::Layer) => {
            prune::prune_tensor(data, recipe.sparsity)
        }
        (Method::Magnitude, Pattern::Unstructured, Scope::Row) => {
            prune::prune_rows(data, row_len(entry), recipe.sparsity)
        }
        (Method::Magnitude, Pattern::Unstructured, Scope::Global) => {
            let global = global.expect("global budgets are computed for global scope");
            let ties = global.ties.get(&entry.name).copied().unwrap_or(0);
            global.threshold.apply(data, ties)
        }
    };
    Ok(stats)
}

/// The global threshold and each target's share of the ties at it.
pub struct GlobalBudgets {
    threshold: GlobalThreshold,
    /// Ties each target prunes, handed out in tensor-name order.
    ties: BTreeMap<String, u64>,
}

impl GlobalBudgets {
    /// Streams the targets (in name order, one at a time) through the selection passes.
    pub fn compute<'a>(
        targets: &[&'a Located<'a>],
        headers: &BTreeMap<&str, Header>,
        paths: &BTreeMap<&str, &Path>,
        sparsity: f64,
        ctl: &Control,
    ) -> Result<Self, EngineError> {
        let dtypes: Vec<_> = targets.iter().map(|t| t.entry.dtype).collect();
        let total = targets.iter().map(|t| t.entry.numel()).sum();
        let mut selector = GlobalSelector::new(&dtypes, total, sparsity);
        let mut files: BTreeMap<&'a str, File> = BTreeMap::new();
        let mut buf = AlignedBuf::default();
        let mut read = |t: &'a Located<'a>, buf: &mut AlignedBuf| -> Result<(), EngineError> {
            let file = match files.entry(t.file) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(File::open(paths[t.file])?)
                }
            };
            read_tensor_into(file, &headers[t.file], t.entry, buf)?;
            Ok(())
        };
        let mut pass = 0;
        while selector.needs_pass() {
            pass += 1;
            ctl.begin(
                &format!("selecting, pass {pass}"),
                "tensors",
                targets.len() as u64,
            );
            for &t in targets {
                ctl.check()?;
                read(t, &mut buf)?;
                selector.observe(typed(t.entry, &mut buf)?.as_slice());
                ctl.step();
            }
            selector.end_pass();
        }
        let threshold = selector.threshold();
        let mut ties = BTreeMap::new();
        if threshold.needs_tie_counts() {
            ctl.begin("counting ties", "tensors", targets.len() as u64);
            let mut left = threshold.ties_to_prune;
            for &t in targets {
                ctl.check()?;
                if left > 0 {
                    read(t, &mut buf)?;
                    let here = threshold.take_ties(typed(t.entry, &mut buf)?.as_slice(), &mut left);
                    ties.insert(t.entry.name.clone(), here);
                }
                ctl.step();
            }
        }
        Ok(GlobalBudgets { threshold, ties })
    }
}
