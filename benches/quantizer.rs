//! Criterion bench of the quantizer: one ResNet9 convolution weight
//! ([128, 64, 3, 3], 73,728 weights), all seven methods x bits 1..=16, on the
//! CPU reference (every rayon thread) and with the WGSL kernels on the first
//! adapter wgpu finds (lavapipe without a GPU). `sweep-gpu bench` measures the
//! whole ResNet9-sized model; this bench tracks the kernels between commits.
//!
//!     cargo bench --bench quantizer

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;
use sweep_gpu::gpu::GpuContext;
use sweep_gpu::gpu::bridge::Region;
use sweep_gpu::quant::gpu::{GpuQuantizer, GpuVariant};
use sweep_gpu::quant::reference::{self, VariantKey};
use sweep_gpu::quant::{Grouping, Method};

fn weights(n: usize) -> Vec<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let w = weights(128 * 64 * 9);
    let grouping = Grouping::whole(w.len());
    let bits: Vec<u32> = (1..=16).collect();
    let variants: Vec<GpuVariant> = Method::STUDY.iter().flat_map(|&method| bits.iter().map(move |&b| GpuVariant { method, bits: b, seed: 1 })).collect();
    let mut group = c.benchmark_group("quantize [128,64,3,3] x 7 methods x 16 bits");
    group.throughput(Throughput::Elements((w.len() * variants.len()) as u64));
    group.sample_size(10);

    let stats = reference::group_stats(&w, grouping);
    let params: Vec<_> = bits.iter().map(|&b| reference::tensor_params(&stats, b)).collect();
    group.bench_function("cpu reference", |b| {
        b.iter(|| {
            variants
                .par_iter()
                .map(|v| {
                    let key = VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 0 };
                    reference::quantize(&w, grouping, &params[v.bits as usize - 1], &[], key).codes.len()
                })
                .sum::<usize>()
        })
    });

    match GpuContext::shared(None) {
        Ok(ctx) => {
            let q = GpuQuantizer::new(ctx.clone()).expect("quantizer");
            let t = q.upload(&w, grouping, 0, &bits).expect("upload");
            let out = ctx.device.create_buffer(&burn::tensor::wgpu::wgpu::BufferDescriptor {
                label: Some("bench output"),
                size: (w.len() * variants.len() * 4) as u64,
                usage: burn::tensor::wgpu::wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            let region = Region { buffer: &out, offset: 0, size: out.size() };
            group.bench_function(format!("wgsl on {}", ctx.summary.name), |b| {
                b.iter(|| {
                    q.quantize(&t, &variants, &region, None).expect("quantize");
                    ctx.device.poll(burn::tensor::wgpu::wgpu::PollType::wait_indefinitely()).expect("poll");
                })
            });
        }
        Err(e) => eprintln!("no GPU adapter ({e}): only the CPU reference is measured"),
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
