//! Reading and validating a safetensors header.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::Dtype;

/// One tensor of a header. Offsets are relative to the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub start: u64,
    pub end: u64,
}

impl TensorEntry {
    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Bytes of data.
    pub fn byte_len(&self) -> u64 {
        self.end - self.start
    }
}

/// A validated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// N, the JSON header's length.
    pub header_len: u64,
    /// Where the data section starts in the file (8 + N).
    pub data_start: u64,
    /// Tensors in data order.
    pub tensors: Vec<TensorEntry>,
    /// `__metadata__`.
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Limits that protect the server from hostile headers.
#[derive(Clone, Debug)]
pub struct HeaderLimits {
    /// Largest accepted N.
    pub max_header_bytes: u64,
    /// Most tensors in one file.
    pub max_tensors: usize,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_bytes: 100 << 20,
            max_tensors: 100_000,
        }
    }
}

/// Why a header is invalid; each message says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error(
        "the file is {0} bytes, too short for a safetensors header (8-byte length, then JSON)"
    )]
    TooShort(u64),
    #[error("the header length is 0; a safetensors file starts with the length of a JSON header")]
    EmptyHeader,
    #[error("the header length {len} exceeds the limit of {limit} bytes")]
    HeaderTooLarge { len: u64, limit: u64 },
    #[error("the header length {len} points past the end of the {file_len}-byte file (truncated upload?)")]
    HeaderPastEnd { len: u64, file_len: u64 },
    #[error("the header is not valid JSON: {0}")]
    Json(String),
    #[error("the header must be a JSON object")]
    NotObject,
    #[error("tensor name {0:?} appears twice in the header")]
    DuplicateName(String),
    #[error("a tensor name is empty")]
    EmptyName,
    #[error("__metadata__ must map strings to strings")]
    BadMetadata,
    #[error("tensor '{name}': {problem}")]
    Tensor { name: String, problem: String },
    #[error("the file holds {count} tensors, more than the limit of {limit}")]
    TooManyTensors { count: usize, limit: usize },
    #[error("tensors '{first}' and '{second}' overlap in the data section")]
    Overlap { first: String, second: String },
    #[error("{0}")]
    Layout(String),
    #[error("reading the file failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads and validates the header of the safetensors file at `path`.
pub fn read_header_path(path: &Path, limits: &HeaderLimits) -> Result<Header, HeaderError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    read_header(&mut file, len, limits)
}

/// Reads and validates the header of a safetensors file of `file_len` bytes.
/// The header length is checked against the file and the limit before it is read.
pub fn read_header<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    limits: &HeaderLimits,
) -> Result<Header, HeaderError> {
    if file_len < 8 {
        return Err(HeaderError::TooShort(file_len));
    }
    file.seek(SeekFrom::Start(0))?;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix)?;
    let len = u64::from_le_bytes(prefix);
    if len == 0 {
        return Err(HeaderError::EmptyHeader);
    }
    if len > limits.max_header_bytes {
        return Err(HeaderError::HeaderTooLarge {
            len,
            limit: limits.max_header_bytes,
        });
    }
    if len > file_len - 8 {
        return Err(HeaderError::HeaderPastEnd { len, file_len });
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text)?;
    parse_header(&text, file_len, limits)
}

/// Validates header JSON `text` of a file of `file_len` bytes.
fn parse_header(text: &[u8], file_len: u64, limits: &HeaderLimits) -> Result<Header, HeaderError> {
    let header_len = text.len() as u64;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let entries = serde_json::Deserializer::from_slice(text)
        .deserialize_any(EntriesVisitor)
        .map_err(|e| match e.to_string() {
            m if m.contains(NOT_OBJECT) => HeaderError::NotObject,
            m => HeaderError::Json(m),
        })?;
    let mut seen = std::collections::HashSet::new();
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, value) in entries {
        if !seen.insert(name.clone()) {
            return Err(HeaderError::DuplicateName(name));
        }
        if name == "__metadata__" {
            let map = value.as_object().ok_or(HeaderError::BadMetadata)?;
            for (k, v) in map {
                metadata.insert(
                    k.clone(),
                    v.as_str().ok_or(HeaderError::BadMetadata)?.to_string(),
                );
            }
            continue;
        }
        if name.is_empty() {
            return Err(HeaderError::EmptyName);
        }
        if tensors.len() == limits.max_tensors {
            return Err(HeaderError::TooManyTensors {
                count: tensors.len() + 1,
                limit: limits.max_tensors,
            });
        }
        tensors.push(parse_entry(name, &value)?);
    }
    tensors.sort_by_key(|t| (t.start, t.end));
    let mut cursor = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        if t.start < cursor {
            return Err(HeaderError::Overlap {
                first: tensors[i - 1].name.clone(),
                second: t.name.clone(),
            });
        }
        if t.start > cursor {
            return Err(HeaderError::Layout(format!(
                "{} unused bytes before tensor '{}' (data_offsets must cover the data section without gaps)",
                t.start - cursor,
                t.name
            )));
        }
        cursor = t.end;
    }
    if cursor != data_len {
        return Err(HeaderError::Layout(if cursor > data_len {
            format!("the tensors need {cursor} bytes of data but the file has {data_len} (truncated upload?)")
        } else {
            format!(
                "{} bytes after the last tensor are not described by the header",
                data_len - cursor
            )
        }));
    }
    Ok(Header {
        header_len,
        data_start,
        tensors,
        metadata,
    })
}

fn parse_entry(name: String, value: &Value) -> Result<TensorEntry, HeaderError> {
    let bad = |problem: String| HeaderError::Tensor {
        name: name.clone(),
        problem,
    };
    let obj = value
        .as_object()
        .ok_or_else(|| bad("must be an object with dtype, shape and data_offsets".into()))?;
    let dtype_text = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("dtype is missing or not a string".into()))?;
    let dtype =
        Dtype::parse(dtype_text).ok_or_else(|| bad(format!("unknown dtype {dtype_text:?}")))?;
    let shape_value = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("shape is missing or not an array".into()))?;
    let mut shape = Vec::with_capacity(shape_value.len());
    let mut numel: u64 = 1;
    for d in shape_value {
        let d = d.as_u64().ok_or_else(|| {
            bad(format!(
                "shape {shape_value:?} must hold non-negative integers"
            ))
        })?;
        numel = numel.checked_mul(d).ok_or_else(|| {
            bad(format!(
                "shape {shape_value:?} has more elements than fit in 64 bits"
            ))
        })?;
        shape.push(usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large")))?);
    }
    let bytes = numel.checked_mul(dtype.size() as u64).ok_or_else(|| {
        bad(format!(
            "shape {shape_value:?} of {dtype_text} is larger than 2^64 bytes"
        ))
    })?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("data_offsets is missing or not an array".into()))?;
    let (start, end) = match offsets.as_slice() {
        [a, b] => (
            a.as_u64()
                .ok_or_else(|| bad("data_offsets must be two non-negative integers".into()))?,
            b.as_u64()
                .ok_or_else(|| bad("data_offsets must be two non-negative integers".into()))?,
        ),
        _ => return Err(bad("data_offsets must be [begin, end]".into())),
    };
    if start > end {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] end before they begin"
        )));
    }
    if end - start != bytes {
        return Err(bad(format!(
            "data_offsets [{start}, {end}] span {} bytes but shape {shape:?} of {dtype_text} needs {bytes}",
            end - start
        )));
    }
    Ok(TensorEntry {
        name,
        dtype,
        shape,
        start,
        end,
    })
}

const NOT_OBJECT: &str = "header is not an object";

/// Collects a JSON object's entries in order, keeping duplicates.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Vec<(String, Value)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(NOT_OBJECT)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.push((k, v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn file(header: &str, data_len: usize) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(vec![0u8; data_len]);
        out
    }

    fn check(bytes: &[u8]) -> Result<Header, HeaderError> {
        read_header(
            &mut Cursor::new(bytes),
            bytes.len() as u64,
            &HeaderLimits::default(),
        )
    }

    #[test]
    fn valid_header_in_any_key_order() {
        let h = r#"{"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[16,16]}}  "#;
        let header = check(&file(h, 16)).unwrap();
        let names: Vec<_> = header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "z"]);
        assert_eq!(header.metadata["format"], "pt");
        assert_eq!(header.data_start, 8 + h.len() as u64);
        assert_eq!(header.get("a").unwrap().numel(), 4);
    }

    #[test]
    fn every_problem_is_named() {
        let t = |body: &str| format!("{{\"w\":{body}}}");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "too short"),
            (0u64.to_le_bytes().to_vec(), "length is 0"),
            (file("[1]", 0), "must be a JSON object"),
            (file("{\"w\":", 0), "not valid JSON"),
            (
                file(&t(r#"{"dtype":"F33","shape":[1],"data_offsets":[0,4]}"#), 4),
                "unknown dtype",
            ),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#),
                    4,
                ),
                "non-negative",
            ),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}"#),
                    4,
                ),
                "64 bits",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#), 4),
                "needs 8",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[1],"data_offsets":[4,0]}"#), 4),
                "end before",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[1],"data_offsets":[0]}"#), 4),
                "[begin, end]",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#), 8),
                "unused bytes",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#), 6),
                "not described",
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#), 4),
                "truncated",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    8,
                ),
                "overlap",
            ),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    8,
                ),
                "twice",
            ),
            (file(r#"{"__metadata__":{"x":1}}"#, 0), "strings to strings"),
            (
                file(
                    r#"{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
                    4,
                ),
                "empty",
            ),
        ];
        for (bytes, needle) in cases {
            let err = check(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
        let mut bytes = file("{}", 0);
        bytes.extend([0u8; 0]);
        bytes[..8].copy_from_slice(&100u64.to_le_bytes());
        assert!(check(&bytes)
            .unwrap_err()
            .to_string()
            .contains("past the end"));
        let mut non_utf8 = file("{\"\u{e9}\":1}", 0);
        let pos = non_utf8.iter().position(|&b| b == 0xc3).unwrap();
        non_utf8[pos] = 0xff;
        assert!(check(&non_utf8).is_err());
    }

    #[test]
    fn huge_declared_header_is_refused_before_reading() {
        let mut bytes = (10u64 << 30).to_le_bytes().to_vec();
        bytes.extend(b"{}");
        let limits = HeaderLimits {
            max_header_bytes: 1 << 20,
            max_tensors: 10,
        };
        let err = read_header(&mut Cursor::new(&bytes), 20u64 << 30, &limits).unwrap_err();
        assert!(matches!(err, HeaderError::HeaderTooLarge { .. }), "{err}");
        let err = read_header(
            &mut Cursor::new(&bytes),
            bytes.len() as u64,
            &HeaderLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                HeaderError::HeaderTooLarge { .. } | HeaderError::HeaderPastEnd { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn tensor_count_limit() {
        let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
        let bytes = file(h, 2);
        let limits = HeaderLimits {
            max_header_bytes: 1 << 20,
            max_tensors: 1,
        };
        let err = read_header(&mut Cursor::new(&bytes), bytes.len() as u64, &limits).unwrap_err();
        assert!(err.to_string().contains("limit of 1"), "{err}");
    }
}
