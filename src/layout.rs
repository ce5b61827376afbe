//! A model's file set in Hugging Face layout: file names, and the checks that
//! finalize runs before a model becomes `ready`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::store::{FinalizeSummary, NewTensor};
use crate::tensor::{check_index, parse_index, read_header_path, Header, HeaderLimits};

/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Why a file set cannot become a model. The message names the file and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LayoutError(pub String);

/// Checks that `name` is a flat, harmless file name.
pub fn check_file_name(name: &str) -> Result<(), LayoutError> {
    let bad = |why: &str| Err(LayoutError(format!("file name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > 255 {
        return bad("is longer than 255 bytes");
    }
    if name.contains('/') || name.contains('\\') {
        return bad(
            "contains a path separator; model files must be flat (upload files from a \
             subfolder under their own name)",
        );
    }
    if name == "." || name.contains("..") {
        return bad("contains '..'; use a plain file name");
    }
    if name.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    Ok(())
}

/// A file of a model being checked: its name and where its bytes are.
#[derive(Clone, Debug)]
pub struct CandidateFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
}

/// Validates a model's files (every safetensors header, the shard index, config.json)
/// and summarizes them. Blocking: run it off the async threads.
pub fn inspect(
    files: &[CandidateFile],
    limits: &HeaderLimits,
) -> Result<FinalizeSummary, LayoutError> {
    let mut headers: BTreeMap<String, Header> = BTreeMap::new();
    for f in files.iter().filter(|f| f.name.ends_with(".safetensors")) {
        let header = read_header_path(&f.path, limits)
            .map_err(|e| LayoutError(format!("{}: {e}", f.name)))?;
        headers.insert(f.name.clone(), header);
    }
    if headers.is_empty() {
        return Err(LayoutError(
            "the model has no .safetensors file; upload model.safetensors, or the shards \
             and model.safetensors.index.json"
                .into(),
        ));
    }
    match files.iter().find(|f| f.name == INDEX_FILE) {
        Some(index) => {
            let bytes = std::fs::read(&index.path)
                .map_err(|e| LayoutError(format!("{INDEX_FILE}: cannot be read: {e}")))?;
            let index =
                parse_index(&bytes).map_err(|e| LayoutError(format!("{INDEX_FILE}: {e}")))?;
            check_index(&index, &headers).map_err(|e| LayoutError(format!("{INDEX_FILE}: {e}")))?;
        }
        None if headers.len() > 1 => {
            return Err(LayoutError(format!(
                "the model has {} safetensors files but no {INDEX_FILE}; upload the index that \
                 maps each tensor to its shard",
                headers.len()
            )))
        }
        None => {}
    }
    let architecture = match files.iter().find(|f| f.name == "config.json") {
        Some(config) => {
            let bytes = std::fs::read(&config.path)
                .map_err(|e| LayoutError(format!("config.json: cannot be read: {e}")))?;
            let value: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| LayoutError(format!("config.json: is not valid JSON: {e}")))?;
            if !value.is_object() {
                return Err(LayoutError("config.json: must be a JSON object".into()));
            }
            value["architectures"][0].as_str().map(str::to_string)
        }
        None => None,
    };
    let mut summary = FinalizeSummary {
        architecture,
        bytes: files.iter().map(|f| f.size as i64).sum(),
        ..FinalizeSummary::default()
    };
    for (file, header) in &headers {
        for t in &header.tensors {
            summary.params += t.numel() as i64;
            *summary
                .dtypes
                .entry(t.dtype.as_str().to_string())
                .or_default() += 1;
            summary.tensors.push(NewTensor {
                name: t.name.clone(),
                dtype: t.dtype.as_str().to_string(),
                shape: t.shape.iter().map(|&d| d as u64).collect(),
                file: file.clone(),
            });
        }
    }
    summary.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = summary.tensors.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(LayoutError(format!(
            "tensor '{}' appears in both {} and {}; each tensor must be stored once",
            pair[0].name, pair[0].file, pair[1].file
        )));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for ok in [
            "model.safetensors",
            "config.json",
            ".gitattributes",
            "tokenizer.model",
        ] {
            check_file_name(ok).unwrap();
        }
        for bad in [
            "",
            "a/b",
            "..",
            "../x",
            "a\\b",
            "x\u{0}y",
            "line\nbreak",
            "/etc/passwd",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_file_name("sub/model.safetensors")
            .unwrap_err()
            .0
            .contains("flat"));
    }
}
