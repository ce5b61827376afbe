//! Reading one tensor at a time, so memory is bounded by the largest tensor.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use half::{bf16, f16};

use super::{Dtype, Header, TensorEntry};

/// A byte buffer aligned for any element type up to 8 bytes.
#[derive(Default, Debug)]
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    /// Sets the length to `len` bytes (contents unspecified, reusing capacity).
    pub fn resize(&mut self, len: usize) {
        self.words.resize(len.div_ceil(8), 0);
        self.len = len;
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, mutable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// A tensor's elements, typed.
#[derive(Debug)]
pub enum TensorSlice<'a> {
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// A tensor's elements, typed and mutable.
#[derive(Debug)]
pub enum TensorSliceMut<'a> {
    F16(&'a mut [f16]),
    BF16(&'a mut [bf16]),
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl<'a> TensorSliceMut<'a> {
    /// Views `buf` as elements of `dtype`; `None` for dtypes the kernels do not handle.
    pub fn new(buf: &'a mut AlignedBuf, dtype: Dtype) -> Option<Self> {
        let bytes = buf.as_bytes_mut();
        Some(match dtype {
            Dtype::F16 => TensorSliceMut::F16(bytemuck::cast_slice_mut(bytes)),
            Dtype::BF16 => TensorSliceMut::BF16(bytemuck::cast_slice_mut(bytes)),
            Dtype::F32 => TensorSliceMut::F32(bytemuck::cast_slice_mut(bytes)),
            Dtype::F64 => TensorSliceMut::F64(bytemuck::cast_slice_mut(bytes)),
            _ => return None,
        })
    }

    /// A shared view.
    pub fn as_slice(&self) -> TensorSlice<'_> {
        match self {
            TensorSliceMut::F16(s) => TensorSlice::F16(s),
            TensorSliceMut::BF16(s) => TensorSlice::BF16(s),
            TensorSliceMut::F32(s) => TensorSlice::F32(s),
            TensorSliceMut::F64(s) => TensorSlice::F64(s),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorSliceMut::F16(s) => s.len(),
            TensorSliceMut::BF16(s) => s.len(),
            TensorSliceMut::F32(s) => s.len(),
            TensorSliceMut::F64(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads `entry`'s bytes from `file` into `buf` with positional reads.
pub fn read_tensor_into(
    file: &File,
    header: &Header,
    entry: &TensorEntry,
    buf: &mut AlignedBuf,
) -> io::Result<()> {
    let len = usize::try_from(entry.byte_len()).map_err(io::Error::other)?;
    buf.resize(len);
    file.read_exact_at(buf.as_bytes_mut(), header.data_start + entry.start)
}

/// Copies `len` bytes at `offset` of `file` to `out` through a bounded buffer.
pub fn copy_range(file: &File, offset: u64, len: u64, out: &mut impl Write) -> io::Result<()> {
    let mut buf = vec![0u8; len.min(4 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset + done)?;
        out.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_views() {
        let mut buf = AlignedBuf::default();
        buf.resize(6);
        buf.as_bytes_mut()
            .copy_from_slice(&[0, 0x3f, 0x80, 0x3f, 0, 0]);
        let view = TensorSliceMut::new(&mut buf, Dtype::BF16).unwrap();
        assert_eq!(view.len(), 3);
        match view.as_slice() {
            TensorSlice::BF16(s) => assert_eq!(s[1].to_f32(), 1.0),
            other => panic!("{other:?}"),
        }
        buf.resize(8);
        assert!(TensorSliceMut::new(&mut buf, Dtype::F64).is_some());
        assert!(TensorSliceMut::new(&mut buf, Dtype::I32).is_none());
    }

    #[test]
    fn copy_range_copies_exactly() {
        let mut tmp = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        tmp.write_all(&data).unwrap();
        let mut out = Vec::new();
        copy_range(&tmp, 100, 9000, &mut out).unwrap();
        assert_eq!(out, &data[100..9100]);
    }
}
