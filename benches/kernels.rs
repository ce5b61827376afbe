//! Pruning kernels on 64 Mi-element tensors (bf16 and f32), in GB/s of weights, next
//! to a plain copy of the same bytes measured in the same run (the machine's limit).
//!
//!     cargo bench --bench kernels
//!
//! Per-layer magnitude and N:M (2:4) prune one tensor in place; global magnitude
//! prunes 16 such tensors with one threshold (selection passes, tie counts, apply).
//! Every iteration prunes a fresh copy of dense weights (the copy is not timed).

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use shears::prune::{prune_n_m, prune_tensor, GlobalSelector};
use shears::tensor::{AlignedBuf, Dtype, TensorSliceMut};

const NUMEL: usize = 64 << 20;
const GLOBAL_TENSORS: usize = 16;
/// Rows of the benchmark tensors: [8192, 8192].
const ROW: usize = 8192;

fn tensor(dtype: Dtype, seed: u64) -> AlignedBuf {
    let mut buf = AlignedBuf::default();
    buf.resize(NUMEL * dtype.size());
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    match TensorSliceMut::new(&mut buf, dtype).expect("a float dtype") {
        TensorSliceMut::BF16(d) => d.iter_mut().for_each(|x| *x = half::bf16::from_f32(next())),
        TensorSliceMut::F32(d) => d.iter_mut().for_each(|x| *x = next()),
        _ => unreachable!(),
    }
    buf
}

fn name(dtype: Dtype) -> &'static str {
    dtype.as_str()
}

fn single_tensor(c: &mut Criterion) {
    let mut group = c.benchmark_group("tensor_64Mi");
    group.sample_size(10);
    for dtype in [Dtype::BF16, Dtype::F32] {
        let bytes = (NUMEL * dtype.size()) as u64;
        group.throughput(Throughput::Bytes(bytes));
        let src = tensor(dtype, 1);
        let mut dst = tensor(dtype, 2);
        group.bench_function(BenchmarkId::new("copy", name(dtype)), |b| {
            b.iter(|| dst.as_bytes_mut().copy_from_slice(src.as_bytes()))
        });
        let dense = tensor(dtype, 3);
        let fresh = || {
            let mut t = AlignedBuf::default();
            t.resize(dense.as_bytes().len());
            t.as_bytes_mut().copy_from_slice(dense.as_bytes());
            t
        };
        group.bench_function(BenchmarkId::new("magnitude_layer_0.5", name(dtype)), |b| {
            b.iter_batched_ref(
                fresh,
                |data| prune_tensor(TensorSliceMut::new(data, dtype).unwrap(), 0.5),
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::new("nm_2:4", name(dtype)), |b| {
            b.iter_batched_ref(
                fresh,
                |data| prune_n_m(TensorSliceMut::new(data, dtype).unwrap(), ROW, 2, 4).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn global(c: &mut Criterion) {
    let mut group = c.benchmark_group("global_16x64Mi");
    group.sample_size(10);
    for dtype in [Dtype::BF16, Dtype::F32] {
        let bytes = (GLOBAL_TENSORS * NUMEL * dtype.size()) as u64;
        group.throughput(Throughput::Bytes(bytes));
        let dense: Vec<AlignedBuf> = (0..GLOBAL_TENSORS as u64)
            .map(|s| tensor(dtype, 10 + s))
            .collect();
        let mut tensors: Vec<AlignedBuf> = (0..GLOBAL_TENSORS as u64)
            .map(|s| tensor(dtype, 40 + s))
            .collect();
        group.bench_function(BenchmarkId::new("copy", name(dtype)), |b| {
            b.iter(|| {
                for (dst, src) in tensors.iter_mut().zip(&dense) {
                    dst.as_bytes_mut().copy_from_slice(src.as_bytes());
                }
            })
        });
        let dtypes = vec![dtype; GLOBAL_TENSORS];
        group.bench_function(BenchmarkId::new("magnitude_global_0.5", name(dtype)), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iters {
                    // Restore dense weights (not timed), then prune them.
                    for (dst, src) in tensors.iter_mut().zip(&dense) {
                        dst.as_bytes_mut().copy_from_slice(src.as_bytes());
                    }
                    let started = std::time::Instant::now();
                    prune_global(&mut tensors, &dtypes, dtype);
                    total += started.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Global magnitude pruning of in-memory tensors, as the engine streams them.
fn prune_global(tensors: &mut [AlignedBuf], dtypes: &[Dtype], dtype: Dtype) {
    let mut selector = GlobalSelector::new(dtypes, (GLOBAL_TENSORS * NUMEL) as u64, 0.5);
    while selector.needs_pass() {
        for t in tensors.iter_mut() {
            selector.observe(TensorSliceMut::new(t, dtype).unwrap().as_slice());
        }
        selector.end_pass();
    }
    let th = selector.threshold();
    let mut left = th.ties_to_prune;
    for t in tensors.iter_mut() {
        let ties = th.take_ties(TensorSliceMut::new(t, dtype).unwrap().as_slice(), &mut left);
        th.apply(TensorSliceMut::new(t, dtype).unwrap(), ties);
    }
}

criterion_group!(benches, single_tensor, global);
criterion_main!(benches);
