//! `sweep-gpu bench`: how fast the quantizer runs on the adapter in use and on
//! the CPU reference, for a model of ResNet9's size, every method x bits 1..=16
//! in one go.

use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::bridge::Region;
use crate::quant::gpu::{GpuQuantizer, GpuVariant};
use crate::quant::reference::{self, VariantKey};
use crate::quant::{Grouping, Method};

/// ResNet9's weight tensors for 100 classes (convolutions [out, in, 3, 3], then
/// the classifier [512, 100]): 6.57 M weights, the size of the headline model.
pub const RESNET9_SHAPES: [&[usize]; 9] = [
    &[64, 3, 3, 3],
    &[128, 64, 3, 3],
    &[128, 128, 3, 3],
    &[128, 128, 3, 3],
    &[256, 128, 3, 3],
    &[512, 256, 3, 3],
    &[512, 512, 3, 3],
    &[512, 512, 3, 3],
    &[512, 100],
];

/// Deterministic Kaiming-like weights (sums of uniforms) for a tensor.
fn synthetic(shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
    let scale = (2.0 / fan_in as f32).sqrt();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            let mut u = 0.0;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                u += (s >> 40) as f32 / (1u64 << 24) as f32;
            }
            (u - 2.0) * scale
        })
        .collect()
}

/// Peak memory bandwidth of well-known GPUs, bytes/s (vendor data sheets).
fn known_bandwidth(adapter: &str) -> Option<f64> {
    let a = adapter.to_lowercase();
    let table: [(&str, f64); 8] = [
        ("h200", 4.8e12),
        ("h100 pcie", 2.0e12),
        ("h100", 3.35e12),
        ("a100", 2.0e12),
        ("l40s", 0.864e12),
        ("rtx 4090", 1.008e12),
        ("rtx 3090", 0.936e12),
        ("a10", 0.6e12),
    ];
    table.iter().find(|(k, _)| a.contains(k)).map(|(_, b)| *b)
}

#[derive(Debug, Clone, Serialize)]
pub struct PathRate {
    pub seconds: f64,
    /// element quantizations (weights x variants) per second
    pub weights_per_second: f64,
    /// bytes moved per second: each element quantization reads a weight and
    /// writes a quantized weight, 8 bytes
    pub bytes_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuantBench {
    pub adapter: String,
    pub weights: usize,
    pub variants: usize,
    pub methods: Vec<String>,
    pub bits: Vec<u32>,
    pub gpu: PathRate,
    pub cpu_reference: PathRate,
    pub cpu_threads: usize,
    /// the adapter's peak memory bandwidth, when known
    pub adapter_bandwidth_bytes_per_second: Option<f64>,
    pub gpu_fraction_of_bandwidth: Option<f64>,
    /// GPU weights/s over CPU reference weights/s
    pub gpu_speedup: f64,
}

fn rate(seconds: f64, element_ops: f64) -> PathRate {
    PathRate { seconds, weights_per_second: element_ops / seconds, bytes_per_second: 8.0 * element_ops / seconds }
}

/// Quantizes a ResNet9-sized model (`scale` = 1) or a fraction of it, every
/// method x bits 1..=16 with one seed, on the GPU and on the CPU reference.
pub fn quantize_throughput(ctx: std::sync::Arc<GpuContext>, scale: f64, methods: &[Method]) -> Result<QuantBench> {
    let tensors: Vec<(Vec<f32>, Grouping)> = RESNET9_SHAPES
        .iter()
        .enumerate()
        .map(|(i, shape)| {
            let mut shape = shape.to_vec();
            shape[0] = ((shape[0] as f64 * scale).ceil() as usize).max(1);
            (synthetic(&shape, i as u64 + 1), Grouping::whole(shape.iter().product()))
        })
        .collect();
    let weights: usize = tensors.iter().map(|(w, _)| w.len()).sum();
    let bits: Vec<u32> = reference::BITS.collect();
    let variants: Vec<GpuVariant> =
        methods.iter().flat_map(|&method| bits.iter().map(move |&b| GpuVariant { method, bits: b, seed: 1 })).collect();
    let element_ops = weights as f64 * variants.len() as f64;

    // GPU: statistics and level parameters once, then every variant; the
    // timed part is the quantization, waited for on the device.
    let q = GpuQuantizer::new(ctx.clone())?;
    let uploaded: Vec<_> = tensors.iter().enumerate().map(|(i, (w, g))| q.upload(w, *g, i as u32, &bits)).collect::<Result<_>>()?;
    let limit = ctx.limits().max_storage_buffer_binding_size as usize;
    let largest = tensors.iter().map(|(w, _)| w.len()).max().unwrap_or(1);
    let per_dispatch = (limit / (largest * 4)).clamp(1, variants.len());
    let scratch = ctx.device.create_buffer(&burn::tensor::wgpu::wgpu::BufferDescriptor {
        label: Some("bench output"),
        size: (per_dispatch * largest * 4) as u64,
        usage: burn::tensor::wgpu::wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let wait = || ctx.device.poll(burn::tensor::wgpu::wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("{e}")));
    // warm-up: pipelines compiled and caches touched before timing
    let region = |n: usize, v: usize| Region { buffer: &scratch, offset: 0, size: (n * v * 4) as u64 };
    q.quantize(&uploaded[0], &variants[..1], &region(uploaded[0].len(), 1), None)?;
    wait()?;
    let t0 = Instant::now();
    for t in &uploaded {
        for chunk in variants.chunks(per_dispatch) {
            q.quantize(t, chunk, &region(t.len(), chunk.len()), None)?;
        }
    }
    wait()?;
    let gpu = rate(t0.elapsed().as_secs_f64(), element_ops);

    // CPU reference on every rayon thread, statistics and parameters outside
    // the timed part as on the GPU
    // per tensor: its weights, grouping and level parameters per bit width
    let prepared: Vec<(&Vec<f32>, Grouping, Vec<Vec<_>>)> = tensors
        .iter()
        .map(|(w, g)| {
            let stats = reference::group_stats(w, *g);
            (w, *g, bits.iter().map(|&b| reference::tensor_params(&stats, b)).collect())
        })
        .collect();
    let t0 = Instant::now();
    let mut checksum = 0u64;
    for (i, (w, g, params)) in prepared.iter().enumerate() {
        checksum += variants
            .par_iter()
            .map(|v| {
                let key = VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: i as u32 };
                reference::quantize(w, *g, &params[v.bits as usize - 1], &[], key).codes.iter().map(|&c| c as u64).sum::<u64>()
            })
            .sum::<u64>();
    }
    let cpu_reference = rate(t0.elapsed().as_secs_f64(), element_ops);
    std::hint::black_box(checksum);

    let bandwidth = known_bandwidth(&ctx.summary.name);
    Ok(QuantBench {
        adapter: ctx.summary.to_string(),
        weights,
        variants: variants.len(),
        methods: methods.iter().map(|m| m.name().to_string()).collect(),
        bits,
        gpu_speedup: gpu.weights_per_second / cpu_reference.weights_per_second,
        gpu_fraction_of_bandwidth: bandwidth.map(|b| gpu.bytes_per_second / b),
        adapter_bandwidth_bytes_per_second: bandwidth,
        gpu,
        cpu_reference,
        cpu_threads: rayon::current_num_threads(),
    })
}

fn human(x: f64) -> String {
    let (v, u) = if x >= 1e12 {
        (x / 1e12, "T")
    } else if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{v:.2} {u}")
}

impl std::fmt::Display for QuantBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "quantizer throughput on {}", self.adapter)?;
        let size = if self.weights >= 6_000_000 { "ResNet9-sized".to_string() } else { format!("{:.3} of ResNet9", self.weights as f64 / 6.57e6) };
        writeln!(f, "  model: {} weights ({size}), {} variants ({} methods x bits 1..=16)", self.weights, self.variants, self.methods.len())?;
        for (name, r) in [("GPU (WGSL)", &self.gpu), (&format!("CPU reference ({} threads)", self.cpu_threads)[..], &self.cpu_reference)] {
            writeln!(f, "  {name:<28} {:>8.3} s  {}weights/s  {}B/s", r.seconds, human(r.weights_per_second), human(r.bytes_per_second))?;
        }
        match (self.adapter_bandwidth_bytes_per_second, self.gpu_fraction_of_bandwidth) {
            (Some(b), Some(frac)) => writeln!(f, "  adapter memory bandwidth {}B/s: the GPU path reaches {:.0} % of it", human(b), frac * 100.0)?,
            _ => writeln!(f, "  adapter memory bandwidth: unknown for this adapter")?,
        }
        write!(f, "  GPU / CPU reference: {:.2}x", self.gpu_speedup)
    }
}

/// Variants scored per second for one model and split on one device, batched
/// and one variant at a time, over several timed rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ScoringBench {
    pub device: String,
    /// `wgsl` (shaders/score_mlp.wgsl), `cpu` (src/eval/dense_cpu.rs) or `burn` (burn's kernels)
    pub scorer: String,
    pub model: String,
    pub dataset: String,
    pub eval_rows: usize,
    pub variants: usize,
    /// floating-point operations of one variant's forward pass (2 per multiply-add)
    pub flop_per_variant: f64,
    /// timed rounds; each scores all the variants one at a time, then batched
    pub rounds: usize,
    pub one_at_a_time: ScoringRate,
    pub batched: ScoringRate,
    pub batch_size: usize,
    /// batched variants/s over one-at-a-time variants/s: the median over the
    /// rounds of each round's ratio (the two paths timed back to back, so a
    /// slow spell of the machine weighs on both)
    pub batched_speedup: f64,
    /// each round's ratio, in the order run
    pub batched_speedup_per_round: Vec<f64>,
}

/// One path's rate: the median round, and every round.
#[derive(Debug, Clone, Serialize)]
pub struct ScoringRate {
    /// the median round's seconds for all the variants
    pub seconds: f64,
    pub variants_per_second: f64,
    pub flop_per_second: f64,
    /// each round's variants/s, in the order run
    pub variants_per_second_per_round: Vec<f64>,
}

/// What a scoring benchmark ran on.
pub struct BenchRun {
    pub device: String,
    pub scorer: String,
    pub model: String,
    pub dataset: String,
}

fn median(values: &[f64]) -> f64 {
    crate::data::prep::percentile(values, 50.0)
}

/// Scores `variants` (already quantized, on the host) one at a time and in
/// batches of `batch`, timing only the scoring, in `rounds` rounds (at least
/// 1) that each time both paths back to back.
pub fn scoring_throughput(evaluator: &crate::eval::Evaluator, variants: &[crate::models::Weights], batch: usize, rounds: usize, run: BenchRun) -> Result<ScoringBench> {
    let BenchRun { device, scorer, model, dataset } = run;
    let dense: f64 = variants[0].tensors.iter().filter(|t| t.shape.len() == 2).map(|t| (t.shape[0] * t.shape[1]) as f64).sum();
    let flop = 2.0 * evaluator.len() as f64 * dense;
    let rate = |seconds: &[f64]| {
        let per_round: Vec<f64> = seconds.iter().map(|s| variants.len() as f64 / s).collect();
        let seconds = median(seconds);
        ScoringRate {
            seconds,
            variants_per_second: variants.len() as f64 / seconds,
            flop_per_second: variants.len() as f64 * flop / seconds,
            variants_per_second_per_round: per_round,
        }
    };
    // warm-up: every launch shape compiled (GPU: burn compiles and tunes per
    // shape) and allocations made before timing
    evaluator.score(&[&variants[0]])?;
    let mut sizes: Vec<usize> = variants.chunks(batch).map(|c| c.len()).collect();
    sizes.dedup();
    for size in sizes {
        let refs: Vec<&crate::models::Weights> = variants.iter().take(size).collect();
        evaluator.score(&refs)?;
    }
    let rounds = rounds.max(1);
    let (mut one, mut batched) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let t0 = Instant::now();
        for v in variants {
            evaluator.score(&[v])?;
        }
        one.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        for chunk in variants.chunks(batch) {
            let refs: Vec<&crate::models::Weights> = chunk.iter().collect();
            evaluator.score(&refs)?;
        }
        batched.push(t0.elapsed().as_secs_f64());
    }
    let ratios: Vec<f64> = one.iter().zip(&batched).map(|(o, b)| o / b).collect();
    Ok(ScoringBench {
        device,
        scorer,
        model,
        dataset,
        eval_rows: evaluator.len(),
        variants: variants.len(),
        flop_per_variant: flop,
        rounds,
        batched_speedup: median(&ratios),
        batched_speedup_per_round: ratios,
        one_at_a_time: rate(&one),
        batched: rate(&batched),
        batch_size: batch,
    })
}

impl std::fmt::Display for ScoringBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scoring throughput, {} scorer: {} on {} ({} test rows) on {}",
            self.scorer, self.model, self.dataset, self.eval_rows, self.device
        )?;
        let range = |v: &[f64], digits: usize| {
            let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            format!("{lo:.digits$}-{hi:.digits$}")
        };
        let rounds = if self.rounds == 1 { "1 round".to_string() } else { format!("median of {} rounds", self.rounds) };
        writeln!(f, "  {} variants, {}FLOP each; {rounds}", self.variants, human(self.flop_per_variant))?;
        for (name, r) in [("one at a time", &self.one_at_a_time), (&format!("batched ({} per launch)", self.batch_size.min(self.variants))[..], &self.batched)] {
            write!(f, "  {name:<28} {:>8.3} s  {:>9.1} variants/s  {}FLOP/s", r.seconds, r.variants_per_second, human(r.flop_per_second))?;
            if self.rounds > 1 {
                write!(f, "  (rounds: {} variants/s)", range(&r.variants_per_second_per_round, 1))?;
            }
            writeln!(f)?;
        }
        write!(f, "  batched / one at a time: {:.2}x", self.batched_speedup)?;
        if self.rounds > 1 {
            write!(f, " (rounds: {}x)", range(&self.batched_speedup_per_round, 2))?;
        }
        Ok(())
    }
}
