//! `model.safetensors.index.json`: which shard holds each tensor.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::Header;

/// A parsed shard index.
#[derive(Clone, Debug, Deserialize)]
pub struct ShardIndex {
    /// Free-form metadata (often `total_size`).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Tensor name → shard file name.
    pub weight_map: BTreeMap<String, String>,
}

/// Why an index does not match its shards.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(
        "not a valid index ({0}); it needs a \"weight_map\" object of tensor name to shard file"
    )]
    Json(String),
    #[error("weight_map names shard {0:?}, which was not uploaded")]
    MissingShard(String),
    #[error("tensor '{tensor}' is mapped to {mapped:?} but that shard does not hold it")]
    NotInShard { tensor: String, mapped: String },
    #[error("tensor '{tensor}' of shard {shard:?} is missing from weight_map")]
    Unmapped { tensor: String, shard: String },
    #[error("tensor '{tensor}' is mapped to {mapped:?} but stored in {actual:?}")]
    WrongShard {
        tensor: String,
        mapped: String,
        actual: String,
    },
    #[error("shard {0:?} is not named in weight_map; remove it or fix the index")]
    UnusedShard(String),
}

/// Parses an index file.
pub fn parse_index(bytes: &[u8]) -> Result<ShardIndex, IndexError> {
    serde_json::from_slice(bytes).map_err(|e| IndexError::Json(e.to_string()))
}

/// Checks that `index` describes exactly the tensors of `shards` (file name → header).
pub fn check_index(
    index: &ShardIndex,
    shards: &BTreeMap<String, Header>,
) -> Result<(), IndexError> {
    let mut location: BTreeMap<&str, &str> = BTreeMap::new();
    for (file, header) in shards {
        for t in &header.tensors {
            location.insert(&t.name, file);
        }
    }
    for (tensor, mapped) in &index.weight_map {
        if !shards.contains_key(mapped) {
            return Err(IndexError::MissingShard(mapped.clone()));
        }
        match location.get(tensor.as_str()) {
            None => {
                return Err(IndexError::NotInShard {
                    tensor: tensor.clone(),
                    mapped: mapped.clone(),
                })
            }
            Some(actual) if *actual != mapped => {
                return Err(IndexError::WrongShard {
                    tensor: tensor.clone(),
                    mapped: mapped.clone(),
                    actual: actual.to_string(),
                })
            }
            Some(_) => {}
        }
    }
    for (tensor, shard) in &location {
        if !index.weight_map.contains_key(*tensor) {
            return Err(IndexError::Unmapped {
                tensor: tensor.to_string(),
                shard: shard.to_string(),
            });
        }
    }
    let used: BTreeSet<&str> = index.weight_map.values().map(String::as_str).collect();
    if let Some(unused) = shards.keys().find(|s| !used.contains(s.as_str())) {
        return Err(IndexError::UnusedShard(unused.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Dtype, TensorEntry};

    fn header(names: &[&str]) -> Header {
        Header {
            header_len: 2,
            data_start: 10,
            tensors: names
                .iter()
                .map(|n| TensorEntry {
                    name: n.to_string(),
                    dtype: Dtype::F32,
                    shape: vec![0],
                    start: 0,
                    end: 0,
                })
                .collect(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn index_must_match_shards() {
        let shards: BTreeMap<String, Header> = [
            ("s1".to_string(), header(&["a", "b"])),
            ("s2".to_string(), header(&["c"])),
        ]
        .into();
        let ok = parse_index(
            br#"{"metadata":{"total_size":0},"weight_map":{"a":"s1","b":"s1","c":"s2"}}"#,
        )
        .unwrap();
        check_index(&ok, &shards).unwrap();
        let cases = [
            (
                r#"{"weight_map":{"a":"s1","b":"s1","c":"s3"}}"#,
                "not uploaded",
            ),
            (
                r#"{"weight_map":{"a":"s1","b":"s1","c":"s2","d":"s2"}}"#,
                "does not hold",
            ),
            (
                r#"{"weight_map":{"a":"s1","b":"s2","c":"s2"}}"#,
                "stored in",
            ),
            (
                r#"{"weight_map":{"a":"s1","c":"s2"}}"#,
                "missing from weight_map",
            ),
        ];
        for (text, needle) in cases {
            let err = check_index(&parse_index(text.as_bytes()).unwrap(), &shards)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let mut extra = shards.clone();
        extra.insert("s3".into(), header(&[]));
        assert!(check_index(&ok, &extra)
            .unwrap_err()
            .to_string()
            .contains("not named"));
        assert!(parse_index(b"{}")
            .unwrap_err()
            .to_string()
            .contains("weight_map"));
    }
}
