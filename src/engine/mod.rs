//! The pruning engine: read a model's safetensors files tensor by tensor, prune the
//! targets, write the output files. Memory is bounded by the largest tensor.
//!
//! Shared by the worker (service jobs) and `shears prune` (local files). Blocking and
//! CPU-heavy: run it on the rayon pool, never on an async thread.

mod control;
mod plan;

pub use control::{Cancelled, Control};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sqlx::types::Json;

use crate::blob::HashingWriter;
use crate::layout::{inspect, CandidateFile};
use crate::recipe::{Recipe, Scope};
use crate::store::{FinalizeSummary, TensorMetric};
use crate::tensor::{
    copy_range, read_header_path, read_tensor_into, AlignedBuf, Header, HeaderLimits,
    SafetensorsWriter,
};
use plan::{GlobalBudgets, Located};

/// One input file.
#[derive(Clone, Debug)]
pub struct SourceFile {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// One output file: either the input file unchanged, or a rewritten file in scratch.
#[derive(Clone, Debug)]
pub struct OutputFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// Where the rewritten bytes are; `None` when the input file is reused as is.
    pub rewritten: Option<PathBuf>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct PruneOutput {
    pub files: Vec<OutputFile>,
    pub metrics: Vec<TensorMetric>,
    /// Totals of the report.
    pub totals: serde_json::Value,
    /// The output model's summary (validated from the written files).
    pub summary: FinalizeSummary,
}

/// How a run treats its output files.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Limits on the input headers.
    pub limits: HeaderLimits,
    /// Hash (sha256) the written files and sync them to disk before returning, as the
    /// service needs to publish them as blobs; `shears prune` leaves both out.
    pub durable: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Cancelled on request.
    #[error("cancelled")]
    Cancelled,
    /// The model or recipe cannot be pruned; retrying will not help.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing failed; a retry may succeed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A bug: the engine panicked. The process stays up; the job fails.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Runs [`prune_model`], turning a panic into [`EngineError::Internal`].
pub fn prune_model_guarded(
    files: &[SourceFile],
    recipe: &Recipe,
    scratch: &Path,
    ctl: &Control,
    options: &EngineOptions,
) -> Result<PruneOutput, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prune_model(files, recipe, scratch, ctl, options)
    }))
    .unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(EngineError::Internal(message))
    })
}

impl From<Cancelled> for EngineError {
    fn from(_: Cancelled) -> Self {
        EngineError::Cancelled
    }
}

/// Prunes the model made of `files` by `recipe`, writing rewritten files into `scratch`.
pub fn prune_model(
    files: &[SourceFile],
    recipe: &Recipe,
    scratch: &Path,
    ctl: &Control,
    options: &EngineOptions,
) -> Result<PruneOutput, EngineError> {
    let started = Instant::now();
    let limits = &options.limits;
    let mut headers: BTreeMap<&str, Header> = BTreeMap::new();
    for f in files.iter().filter(|f| f.name.ends_with(".safetensors")) {
        let header = read_header_path(&f.path, limits)
            .map_err(|e| EngineError::Invalid(format!("{}: {e}", f.name)))?;
        headers.insert(&f.name, header);
    }
    let located = plan::locate(&headers);
    let selection = recipe
        .select(&located)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let targets: BTreeMap<&str, &Located> = selection
        .targets
        .iter()
        .map(|t| (t.entry.name.as_str(), *t))
        .collect();
    let paths: BTreeMap<&str, &Path> = files
        .iter()
        .map(|f| (f.name.as_str(), f.path.as_path()))
        .collect();

    let budgets = match recipe.scope {
        Scope::Global => Some(GlobalBudgets::compute(
            &selection.targets,
            &headers,
            &paths,
            recipe.sparsity,
            ctl,
        )?),
        _ => None,
    };

    ctl.begin("pruning", "tensors", targets.len() as u64);
    let metadata_recipe = recipe.resolved().to_string();
    let mut metrics = Vec::with_capacity(targets.len());
    let mut outputs = Vec::with_capacity(files.len());
    let mut buf = AlignedBuf::default();
    for f in files {
        let header = headers.get(f.name.as_str());
        let has_target = header.is_some_and(|h| {
            h.tensors
                .iter()
                .any(|t| targets.contains_key(t.name.as_str()))
        });
        let Some(header) = header.filter(|_| has_target) else {
            outputs.push(OutputFile {
                name: f.name.clone(),
                sha256: f.sha256.clone(),
                size: f.size,
                rewritten: None,
            });
            continue;
        };
        let input = File::open(&f.path)?;
        let out_path = scratch.join(&f.name);
        let mut metadata = header.metadata.clone();
        metadata.insert("format".into(), "pt".into());
        metadata.insert("shears.recipe".into(), metadata_recipe.clone());
        let entries: Vec<_> = header
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.dtype, t.shape.clone()))
            .collect();
        let sink = HashingWriter::new(
            BufWriter::with_capacity(1 << 20, File::create(&out_path)?),
            options.durable,
        );
        let mut writer = SafetensorsWriter::new(sink, &entries, &metadata)
            .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
        for entry in &header.tensors {
            ctl.check()?;
            if !targets.contains_key(entry.name.as_str()) {
                copy_range(
                    &input,
                    header.data_start + entry.start,
                    entry.byte_len(),
                    &mut writer,
                )?;
                continue;
            }
            let t0 = Instant::now();
            read_tensor_into(&input, header, entry, &mut buf)?;
            let stats = plan::prune_one(recipe, entry, &mut buf, budgets.as_ref())?;
            writer
                .write_tensor(&entry.name, buf.as_bytes())
                .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
            let params = entry.numel() as i64;
            metrics.push(TensorMetric {
                name: entry.name.clone(),
                dtype: entry.dtype.as_str().into(),
                shape: Json(entry.shape.iter().map(|&d| d as u64).collect()),
                params,
                zeros_before: stats.zeros_before as i64,
                zeros_after: stats.zeros_after as i64,
                sparsity: if params == 0 {
                    0.0
                } else {
                    stats.zeros_after as f64 / params as f64
                },
                threshold: stats.threshold,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            });
            ctl.step();
        }
        let sink = writer
            .finish()
            .map_err(|e| EngineError::Io(std::io::Error::other(e.to_string())))?;
        let (buffered, sha256, size) = sink.finish()?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        if options.durable {
            file.sync_all()?;
        }
        outputs.push(OutputFile {
            name: f.name.clone(),
            sha256,
            size,
            rewritten: Some(out_path),
        });
    }
    ctl.begin("verifying", "files", outputs.len() as u64);
    let candidates: Vec<CandidateFile> = outputs
        .iter()
        .map(|o| CandidateFile {
            name: o.name.clone(),
            path: o
                .rewritten
                .clone()
                .unwrap_or_else(|| paths[o.name.as_str()].to_path_buf()),
            size: o.size,
        })
        .collect();
    let summary = inspect(&candidates, limits).map_err(|e| {
        EngineError::Io(std::io::Error::other(format!(
            "the written output is invalid: {e}"
        )))
    })?;
    metrics.sort_by(|a, b| a.name.cmp(&b.name));
    let totals = totals(
        &metrics,
        &summary,
        files,
        &outputs,
        &selection.incompatible,
        started,
    );
    Ok(PruneOutput {
        files: outputs,
        metrics,
        totals,
        summary,
    })
}

fn totals(
    metrics: &[TensorMetric],
    summary: &FinalizeSummary,
    inputs: &[SourceFile],
    outputs: &[OutputFile],
    incompatible: &[&Located],
    started: Instant,
) -> serde_json::Value {
    let target_params: i64 = metrics.iter().map(|m| m.params).sum();
    let target_zeros: i64 = metrics.iter().map(|m| m.zeros_after).sum();
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let rewritten: Vec<&OutputFile> = outputs.iter().filter(|o| o.rewritten.is_some()).collect();
    json!({
        "tensors_pruned": metrics.len(),
        "target_params": target_params,
        "target_zeros": target_zeros,
        "target_sparsity": ratio(target_zeros, target_params),
        "model_params": summary.params,
        "model_sparsity": ratio(target_zeros, summary.params),
        "bytes_in": inputs.iter().map(|f| f.size).sum::<u64>(),
        "bytes_out": outputs.iter().map(|f| f.size).sum::<u64>(),
        "bytes_rewritten": rewritten.iter().map(|f| f.size).sum::<u64>(),
        "files_rewritten": rewritten.len(),
        "files_shared": outputs.len() - rewritten.len(),
        "left_dense_incompatible": incompatible.iter().map(|t| t.entry.name.clone()).collect::<Vec<_>>(),
        "wall_seconds": started.elapsed().as_secs_f64(),
        // Provenance: the input files (digests are known for stored models).
        "input_files": inputs
            .iter()
            .map(|f| json!({"name": f.name, "size": f.size, "sha256": (!f.sha256.is_empty()).then_some(&f.sha256)}))
            .collect::<Vec<_>>(),
    })
}
