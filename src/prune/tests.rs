//! Property tests of the kernels against an independent, sort-based implementation.

use half::{bf16, f16};
use proptest::prelude::*;

use super::*;
use crate::tensor::{AlignedBuf, Dtype, TensorSliceMut};

const DTYPES: [Dtype; 4] = [Dtype::F16, Dtype::BF16, Dtype::F32, Dtype::F64];

/// A tensor of `dtype` holding `values` (rounded to the dtype).
fn buf(dtype: Dtype, values: &[f64]) -> AlignedBuf {
    let mut b = AlignedBuf::default();
    b.resize(values.len() * dtype.size());
    let bytes: Vec<u8> = match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f64(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f64(v).to_le_bytes())
            .collect(),
        Dtype::F32 => values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
        Dtype::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        _ => unreachable!(),
    };
    b.as_bytes_mut().copy_from_slice(&bytes);
    b
}

fn view(b: &mut AlignedBuf, dtype: Dtype) -> TensorSliceMut<'_> {
    TensorSliceMut::new(b, dtype).unwrap()
}

/// The raw elements as integers (bits), and their magnitude keys.
fn elements(b: &AlignedBuf, dtype: Dtype) -> Vec<u64> {
    b.as_bytes()
        .chunks(dtype.size())
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

fn key(bits: u64, dtype: Dtype) -> u64 {
    bits & ((1u64 << (dtype.size() * 8 - 1)) - 1)
}

/// The sort-based reference: the indices of the k smallest (key, index) pairs.
fn naive_mask(keys: &[u64], k: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by_key(|&i| (keys[i], i));
    let mut mask = vec![false; keys.len()];
    for &i in &order[..k] {
        mask[i] = true;
    }
    mask
}

/// Applies a mask to raw elements (pruned → +0).
fn masked(bits: &[u64], mask: &[bool]) -> Vec<u64> {
    bits.iter()
        .zip(mask)
        .map(|(&b, &m)| if m { 0 } else { b })
        .collect()
}

/// Values with many exact ties, zeros and negative zeros.
fn values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            3 => (-8i32..8).prop_map(|i| i as f64 / 4.0),
            1 => Just(-0.0),
            4 => -2.0f64..2.0,
        ],
        0..600,
    )
}

fn sparsity() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(0.5), Just(0.25), Just(1.0), 0.0f64..1.0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn layer_matches_the_naive_mask(vals in values(), s in sparsity(), d in 0usize..4) {
        let dtype = DTYPES[d];
        let mut b = buf(dtype, &vals);
        let before = elements(&b, dtype);
        let keys: Vec<u64> = before.iter().map(|&x| key(x, dtype)).collect();
        let k = prune_count(s, vals.len() as u64) as usize;
        let stats = prune_tensor(view(&mut b, dtype), s);
        let after = elements(&b, dtype);
        prop_assert_eq!(&after, &masked(&before, &naive_mask(&keys, k)));
        let zeros = after.iter().filter(|&&x| key(x, dtype) == 0).count() as u64;
        prop_assert_eq!(stats.zeros_after, zeros);
        prop_assert_eq!(stats.zeros_before, keys.iter().filter(|&&x| x == 0).count() as u64);
        // Idempotent: pruning again at the same sparsity changes nothing.
        prune_tensor(view(&mut b, dtype), s);
        prop_assert_eq!(elements(&b, dtype), after);
    }

    #[test]
    fn rows_match_the_naive_mask(vals in values(), row_len in 1usize..40, s in sparsity(), d in 0usize..4) {
        let dtype = DTYPES[d];
        let n = vals.len() / row_len * row_len;
        let mut b = buf(dtype, &vals[..n]);
        let before = elements(&b, dtype);
        let k = prune_count(s, row_len as u64) as usize;
        let stats = prune_rows(view(&mut b, dtype), row_len, s);
        let after = elements(&b, dtype);
        let mut expected = Vec::new();
        for row in before.chunks(row_len) {
            let keys: Vec<u64> = row.iter().map(|&x| key(x, dtype)).collect();
            expected.extend(masked(row, &naive_mask(&keys, k)));
        }
        prop_assert_eq!(&after, &expected);
        prop_assert_eq!(stats.zeros_after, after.iter().filter(|&&x| key(x, dtype) == 0).count() as u64);
    }

    #[test]
    fn global_matches_the_naive_mask(tensors in prop::collection::vec(values(), 1..5), s in sparsity(), d in 0usize..4, mixed in any::<bool>()) {
        // Mixed dtypes compare exact magnitudes across formats.
        let dtype_of = |i: usize| if mixed { DTYPES[(d + i) % 4] } else { DTYPES[d] };
        let mut bufs: Vec<AlignedBuf> = tensors.iter().enumerate().map(|(i, v)| buf(dtype_of(i), v)).collect();
        let dtypes: Vec<Dtype> = (0..bufs.len()).map(dtype_of).collect();
        let befores: Vec<Vec<u64>> = bufs.iter().zip(&dtypes).map(|(b, &dt)| elements(b, dt)).collect();
        // Reference: all magnitudes as f64, in tensor order then index order.
        let mut all: Vec<(f64, usize, usize)> = Vec::new();
        for (t, (b, &dt)) in bufs.iter_mut().zip(&dtypes).enumerate() {
            let mags: Vec<f64> = match view(b, dt) {
                TensorSliceMut::F16(x) => x.iter().map(|v| v.to_f64().abs()).collect(),
                TensorSliceMut::BF16(x) => x.iter().map(|v| v.to_f64().abs()).collect(),
                TensorSliceMut::F32(x) => x.iter().map(|v| (*v as f64).abs()).collect(),
                TensorSliceMut::F64(x) => x.iter().map(|v| v.abs()).collect(),
            };
            all.extend(mags.into_iter().enumerate().map(|(i, m)| (m, t, i)));
        }
        let total = all.len() as u64;
        let k = prune_count(s, total) as usize;
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut masks: Vec<Vec<bool>> = tensors.iter().map(|v| vec![false; v.len()]).collect();
        for &(_, t, i) in &all[..k] {
            masks[t][i] = true;
        }
        let mut selector = GlobalSelector::new(&dtypes, total, s);
        while selector.needs_pass() {
            for (b, &dt) in bufs.iter_mut().zip(&dtypes) {
                selector.observe(view(b, dt).as_slice());
            }
            selector.end_pass();
        }
        let th = selector.threshold();
        let mut left = th.ties_to_prune;
        let mut zeros_after = 0;
        for (b, &dt) in bufs.iter_mut().zip(&dtypes) {
            let ties = th.take_ties(view(b, dt).as_slice(), &mut left);
            zeros_after += th.apply(view(b, dt), ties).zeros_after;
        }
        let mut expected_zeros = 0;
        for t in 0..bufs.len() {
            let after = elements(&bufs[t], dtypes[t]);
            prop_assert_eq!(&after, &masked(&befores[t], &masks[t]), "tensor {}", t);
            expected_zeros += after.iter().filter(|&&x| key(x, dtypes[t]) == 0).count() as u64;
        }
        prop_assert_eq!(zeros_after, expected_zeros);
    }

    #[test]
    fn n_m_keeps_the_n_largest_of_each_group(vals in values(), nm in (1usize..8).prop_flat_map(|m| (1..m.max(2), Just(m.max(2)))), d in 0usize..4) {
        let (n, m) = nm;
        let dtype = DTYPES[d];
        let len = vals.len() / m * m;
        let mut b = buf(dtype, &vals[..len]);
        let before = elements(&b, dtype);
        prune_n_m(view(&mut b, dtype), m, n, m).unwrap();
        let after = elements(&b, dtype);
        for (g, (src, out)) in before.chunks(m).zip(after.chunks(m)).enumerate() {
            let keys: Vec<u64> = src.iter().map(|&x| key(x, dtype)).collect();
            prop_assert_eq!(out, &masked(src, &naive_mask(&keys, m - n))[..], "group {}", g);
            prop_assert!(out.iter().filter(|&&x| key(x, dtype) != 0).count() <= n);
        }
        prune_n_m(view(&mut b, dtype), m, n, m).unwrap();
        prop_assert_eq!(elements(&b, dtype), after);
    }

    #[test]
    fn random_is_exact_and_reproducible(n in 1usize..3000, s in sparsity(), seed in any::<u64>(), d in 0usize..4) {
        let dtype = DTYPES[d];
        let vals: Vec<f64> = (0..n).map(|i| 1.0 + (i % 7) as f64).collect();
        let mut a = buf(dtype, &vals);
        let mut b = buf(dtype, &vals);
        let stats = prune_random(view(&mut a, dtype), s, seed, "t");
        prune_random(view(&mut b, dtype), s, seed, "t");
        prop_assert_eq!(a.as_bytes(), b.as_bytes());
        prop_assert_eq!(stats.zeros_after, prune_count(s, n as u64));
        let kept_same = elements(&a, dtype).iter().zip(elements(&buf(dtype, &vals), dtype)).all(|(x, y)| *x == 0 || *x == y);
        prop_assert!(kept_same);
    }
}

#[test]
fn random_masks_differ_by_seed_and_stream() {
    let vals = vec![1.0; 10_000];
    let run = |seed, stream| {
        let mut b = buf(Dtype::F32, &vals);
        prune_random(view(&mut b, Dtype::F32), 0.5, seed, stream);
        b.as_bytes().to_vec()
    };
    assert_ne!(run(1, "a"), run(2, "a"));
    assert_ne!(run(1, "a"), run(1, "b"));
    assert_eq!(run(3, "a"), run(3, "a"));
}

#[test]
fn large_tensors_cross_chunks() {
    // More elements than a chunk. Few distinct values: ties span many chunks (the
    // sampled bracket holds too many keys and the radix select takes over). Spread
    // values: the sampled bracket finds the threshold.
    let n = 3 * select::CHUNK + 123;
    let tied: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
    let mut state = 7u64;
    let spread: Vec<f64> = (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect();
    for (vals, dtype, s) in DTYPES
        .into_iter()
        .flat_map(|d| [0.0005, 0.5, 0.9995].map(|s| (d, s)))
        .flat_map(|(d, s)| [(&tied, d, s), (&spread, d, s)])
    {
        let mut b = buf(dtype, vals);
        let before = elements(&b, dtype);
        let keys: Vec<u64> = before.iter().map(|&x| key(x, dtype)).collect();
        prune_tensor(view(&mut b, dtype), s);
        let k = prune_count(s, n as u64) as usize;
        assert_eq!(
            elements(&b, dtype),
            masked(&before, &naive_mask(&keys, k)),
            "{dtype:?} {s}"
        );
        // Pruning an already pruned tensor: the zeros are the smallest keys (a
        // threshold of 0 at the same sparsity, above 0 at a higher one).
        for again in [s, (s + 0.1).min(1.0)] {
            let before = elements(&b, dtype);
            let keys: Vec<u64> = before.iter().map(|&x| key(x, dtype)).collect();
            prune_tensor(view(&mut b, dtype), again);
            let k = prune_count(again, n as u64) as usize;
            let expected = masked(&before, &naive_mask(&keys, k));
            assert_eq!(elements(&b, dtype), expected, "{dtype:?} {s} then {again}");
        }
    }
}

#[test]
fn half_to_even_counts() {
    assert_eq!(prune_count(0.5, 5), 2);
    assert_eq!(prune_count(0.5, 7), 4);
    assert_eq!(prune_count(0.3, 5), 2);
    assert_eq!(prune_count(1.0, 9), 9);
    assert_eq!(prune_count(0.0, 9), 0);
}

#[test]
fn n_m_rejects_bad_shapes() {
    let mut b = buf(Dtype::F32, &[1.0; 12]);
    assert!(prune_n_m(view(&mut b, Dtype::F32), 6, 2, 4).is_err());
    assert!(prune_n_m(view(&mut b, Dtype::F32), 12, 4, 4).is_err());
    assert!(prune_n_m(view(&mut b, Dtype::F32), 12, 0, 4).is_err());
    assert!(prune_n_m(view(&mut b, Dtype::F32), 12, 2, 4).is_ok());
}

#[test]
fn n_m_handles_every_key_width() {
    // Large f64 magnitudes use the top key bits; each dtype keeps its own order.
    let vals = [
        1e300, -2.5, 3.0, 1e-300, -0.0, 7.0, 7.0, -7.0, 1.0, 2.0, 3.0, 4.0,
    ];
    for dtype in DTYPES {
        for (n, m) in [(2, 4), (1, 4), (3, 4), (2, 6)] {
            let len = vals.len() / m * m;
            let mut b = buf(dtype, &vals[..len]);
            let before = elements(&b, dtype);
            prune_n_m(view(&mut b, dtype), m, n, m).unwrap();
            let after = elements(&b, dtype);
            for (src, out) in before.chunks(m).zip(after.chunks(m)) {
                let keys: Vec<u64> = src.iter().map(|&x| key(x, dtype)).collect();
                assert_eq!(
                    out,
                    &masked(src, &naive_mask(&keys, m - n))[..],
                    "{dtype:?} {n}:{m}"
                );
            }
        }
    }
}
