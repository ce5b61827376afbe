//! Streaming safetensors writer: the header is computed up front from names, dtypes
//! and shapes, then tensors are written one after another.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::{json, Map, Value};

use super::Dtype;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("expected tensor '{expected}' next, got '{got}'")]
    OutOfOrder { expected: String, got: String },
    #[error("tensor '{name}' needs {expected} bytes, got {got}")]
    WrongSize {
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("tensor '{0}' was not written")]
    Missing(String),
    #[error("more tensors written than declared")]
    TooMany,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The 8-byte length and the JSON header for `entries` (in data order), padded with
/// spaces so the data section starts at a multiple of 8.
pub fn encode_header(
    entries: &[(String, Dtype, Vec<usize>)],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0u64;
    for (name, dtype, shape) in entries {
        let len = shape.iter().map(|&d| d as u64).product::<u64>() * dtype.size() as u64;
        map.insert(name.clone(), json!({"dtype": dtype.as_str(), "shape": shape, "data_offsets": [offset, offset + len]}));
        offset += len;
    }
    let mut text = serde_json::to_vec(&Value::Object(map)).expect("a header serializes");
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out
}

/// Writes a safetensors file tensor by tensor.
pub struct SafetensorsWriter<W: Write> {
    out: W,
    /// (name, bytes) of each tensor, in data order.
    plan: Vec<(String, u64)>,
    next: usize,
    /// Bytes of the current tensor written so far (chunked writes).
    partial: u64,
}

impl<W: Write> SafetensorsWriter<W> {
    /// Writes the header for `entries` (data order) and `metadata`.
    pub fn new(
        mut out: W,
        entries: &[(String, Dtype, Vec<usize>)],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, WriteError> {
        out.write_all(&encode_header(entries, metadata))?;
        let plan = entries
            .iter()
            .map(|(name, dtype, shape)| {
                (
                    name.clone(),
                    shape.iter().map(|&d| d as u64).product::<u64>() * dtype.size() as u64,
                )
            })
            .collect();
        Ok(SafetensorsWriter {
            out,
            plan,
            next: 0,
            partial: 0,
        })
    }

    /// Writes the whole of tensor `name`, which must be the next one.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<(), WriteError> {
        let (expected_name, expected) = self.plan.get(self.next).ok_or(WriteError::TooMany)?;
        if expected_name != name {
            return Err(WriteError::OutOfOrder {
                expected: expected_name.clone(),
                got: name.into(),
            });
        }
        if self.partial != 0 || bytes.len() as u64 != *expected {
            return Err(WriteError::WrongSize {
                name: name.into(),
                expected: *expected,
                got: bytes.len() as u64,
            });
        }
        self.out.write_all(bytes)?;
        self.next += 1;
        Ok(())
    }

    /// Finishes the file; every declared tensor must have been written.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if let Some((name, _)) = self.plan.get(self.next) {
            return Err(WriteError::Missing(name.clone()));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Raw chunks of the current tensor (for copying untouched tensors in pieces).
impl<W: Write> Write for SafetensorsWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((name, expected)) = self.plan.get(self.next) else {
            return Err(io::Error::other(WriteError::TooMany));
        };
        let room = expected - self.partial;
        if buf.len() as u64 > room {
            return Err(io::Error::other(format!(
                "tensor '{name}' is {expected} bytes; more were written"
            )));
        }
        let n = self.out.write(buf)?;
        self.partial += n as u64;
        if self.partial == *expected {
            self.next += 1;
            self.partial = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{read_header, HeaderLimits};
    use std::io::Cursor;

    #[test]
    fn round_trip() {
        let entries = vec![
            ("b".to_string(), Dtype::BF16, vec![2, 3]),
            ("a".to_string(), Dtype::F32, vec![2]),
            ("empty".to_string(), Dtype::F64, vec![0, 4]),
        ];
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        let mut w = SafetensorsWriter::new(Vec::new(), &entries, &metadata).unwrap();
        w.write_tensor("b", &[1; 12]).unwrap();
        w.write_all(&[2; 3]).unwrap();
        w.write_all(&[2; 5]).unwrap();
        w.write_tensor("empty", &[]).unwrap();
        let bytes = w.finish().unwrap();
        let header = read_header(
            &mut Cursor::new(&bytes),
            bytes.len() as u64,
            &HeaderLimits::default(),
        )
        .unwrap();
        assert_eq!(header.data_start % 8, 0);
        assert_eq!(header.metadata, metadata);
        let names: Vec<_> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["b", "a", "empty"]);
        let a = header.get("a").unwrap();
        assert_eq!(
            &bytes[(header.data_start + a.start) as usize..][..8],
            &[2; 8]
        );
    }

    #[test]
    fn misuse_is_an_error() {
        let entries = vec![
            ("a".to_string(), Dtype::F32, vec![2]),
            ("b".to_string(), Dtype::F32, vec![1]),
        ];
        let meta = BTreeMap::new();
        let mut w = SafetensorsWriter::new(Vec::new(), &entries, &meta).unwrap();
        assert!(matches!(
            w.write_tensor("b", &[0; 4]),
            Err(WriteError::OutOfOrder { .. })
        ));
        assert!(matches!(
            w.write_tensor("a", &[0; 4]),
            Err(WriteError::WrongSize { .. })
        ));
        w.write_tensor("a", &[0; 8]).unwrap();
        assert!(matches!(w.finish(), Err(WriteError::Missing(name)) if name == "b"));
    }
}
