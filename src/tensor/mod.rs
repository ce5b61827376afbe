//! Safetensors files: header validation, the shard index, tensor-at-a-time reads and
//! streaming writes.
//!
//! Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (the
//! header), then the data section. Offsets in the header are relative to the data
//! section.

#[cfg(target_endian = "big")]
compile_error!("shears reads tensor bytes in place and supports little-endian hosts only");

mod dtype;
mod header;
mod index;
mod reader;
mod writer;

pub use dtype::Dtype;
pub use header::{read_header, read_header_path, Header, HeaderError, HeaderLimits, TensorEntry};
pub use index::{check_index, parse_index, IndexError, ShardIndex};
pub use reader::{copy_range, read_tensor_into, AlignedBuf, TensorSlice, TensorSliceMut};
pub use writer::{encode_header, SafetensorsWriter, WriteError};
