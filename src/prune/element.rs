//! Element types the kernels prune, and their magnitude keys.
//!
//! The key of a weight is its bit pattern with the sign bit cleared, read as an
//! unsigned integer. For IEEE formats (and bfloat16) this orders magnitudes exactly,
//! in the tensor's own dtype, with NaN above infinity, so a bf16 or f16 magnitude is
//! never converted to compare it.

use half::{bf16, f16};

/// A prunable element type.
pub trait Element: Copy + Send + Sync + 'static {
    /// The value written for a pruned weight (+0.0).
    const ZERO: Self;
    /// The magnitude key.
    fn key(self) -> u64;
    /// The magnitude a key stands for.
    fn magnitude(key: u64) -> f64;
    /// The key of this element's magnitude as an f32 (exact for 16-bit formats).
    fn f32_key(self) -> u64;
    /// The key of this element's magnitude as an f64 (exact for every format).
    #[inline(always)]
    fn f64_key(self) -> u64 {
        Self::magnitude(self.key()).to_bits()
    }
}

impl Element for bf16 {
    const ZERO: Self = bf16::ZERO;
    #[inline(always)]
    fn key(self) -> u64 {
        (self.to_bits() & 0x7fff) as u64
    }
    fn magnitude(key: u64) -> f64 {
        bf16::from_bits(key as u16).to_f64()
    }
    #[inline(always)]
    fn f32_key(self) -> u64 {
        self.key() << 16
    }
}

impl Element for f16 {
    const ZERO: Self = f16::ZERO;
    #[inline(always)]
    fn key(self) -> u64 {
        (self.to_bits() & 0x7fff) as u64
    }
    fn magnitude(key: u64) -> f64 {
        f16::from_bits(key as u16).to_f64()
    }
    #[inline(always)]
    fn f32_key(self) -> u64 {
        (self.to_f32().to_bits() & 0x7fff_ffff) as u64
    }
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn key(self) -> u64 {
        (self.to_bits() & 0x7fff_ffff) as u64
    }
    fn magnitude(key: u64) -> f64 {
        f32::from_bits(key as u32) as f64
    }
    #[inline(always)]
    fn f32_key(self) -> u64 {
        self.key()
    }
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn key(self) -> u64 {
        self.to_bits() & 0x7fff_ffff_ffff_ffff
    }
    fn magnitude(key: u64) -> f64 {
        f64::from_bits(key)
    }
    /// Not exact for f64; global selection uses 64-bit keys when any target is f64.
    fn f32_key(self) -> u64 {
        unreachable!("f64 tensors are selected with f64 keys")
    }
}

/// Calls `$body` with `$data` bound to the typed slice of a `TensorSliceMut`.
macro_rules! with_slice_mut {
    ($slice:expr, $data:ident => $body:expr) => {
        match $slice {
            $crate::tensor::TensorSliceMut::F16($data) => $body,
            $crate::tensor::TensorSliceMut::BF16($data) => $body,
            $crate::tensor::TensorSliceMut::F32($data) => $body,
            $crate::tensor::TensorSliceMut::F64($data) => $body,
        }
    };
}
pub(crate) use with_slice_mut;

/// Calls `$body` with `$data` bound to the typed slice of a `TensorSlice`.
macro_rules! with_slice {
    ($slice:expr, $data:ident => $body:expr) => {
        match $slice {
            $crate::tensor::TensorSlice::F16($data) => $body,
            $crate::tensor::TensorSlice::BF16($data) => $body,
            $crate::tensor::TensorSlice::F32($data) => $body,
            $crate::tensor::TensorSlice::F64($data) => $body,
        }
    };
}
pub(crate) use with_slice;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_magnitudes() {
        let vals = [
            0.0f32,
            -0.0,
            1e-40,
            -1e-30,
            0.5,
            -0.75,
            1.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for a in vals {
            for b in vals {
                if !a.is_nan() && !b.is_nan() {
                    assert_eq!(a.abs() < b.abs(), a.key() < b.key(), "{a} {b}");
                    let (ha, hb) = (bf16::from_f32(a), bf16::from_f32(b));
                    assert_eq!(ha.to_f32().abs() < hb.to_f32().abs(), ha.key() < hb.key());
                    assert_eq!(ha.f32_key(), ha.to_f32().key());
                    let (fa, fb) = (f16::from_f32(a), f16::from_f32(b));
                    assert_eq!(fa.to_f32().abs() < fb.to_f32().abs(), fa.key() < fb.key());
                    assert_eq!(fa.f32_key(), fa.to_f32().key());
                }
            }
            assert!(f32::NAN.key() > f32::INFINITY.key());
        }
        assert_eq!((-0.0f64).key(), 0);
        assert_eq!(f32::magnitude(0.5f32.key()), 0.5);
        assert_eq!(bf16::magnitude(bf16::from_f32(-2.0).key()), 2.0);
    }
}
