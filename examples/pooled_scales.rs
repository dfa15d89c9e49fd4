//! What `--bn pool` does to a conv net's BatchNorm scales: for a checkpoint, a
//! method and bit widths, quantizes the whole net with its BatchNorm parameters
//! pooled into each layer's group (the 2020 study's treatment) and prints, per
//! layer, the scales' range before and after and their largest relative error.
//!
//! cargo run --example pooled_scales -- CHECKPOINT_DIR [METHOD] [BITS,...]
//! e.g. cargo run --example pooled_scales -- results/checkpoints/resnet9-fashion-mnist-8ee49412547c1b4c normal-nearest 8,16

use sweep_gpu::models::ParamRole;
use sweep_gpu::quant::apply::{BiasMode, BnMode, Plan};
use sweep_gpu::quant::{Granularity, Method};
use sweep_gpu::sweep::grid::{Scope, Variant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(std::path::PathBuf::from) else {
        return Err("usage: pooled_scales CHECKPOINT_DIR [METHOD] [BITS,...]".into());
    };
    let method = <Method as clap::ValueEnum>::from_str(args.get(1).map_or("normal-nearest", String::as_str), false)?;
    let bits: Vec<u32> = args.get(2).map_or("8,16", String::as_str).split(',').map(str::parse).collect::<Result<_, _>>()?;
    use sweep_gpu::train::checkpoint;
    let no_checkpoint = || format!("{}: no checkpoint there (expected meta.json and model.bpk)", dir.display());
    let spec = checkpoint::read_meta(&dir)?.ok_or_else(no_checkpoint)?.model;
    let (weights, _) = checkpoint::load(&dir, &spec)?.ok_or_else(no_checkpoint)?;
    let mut plan = Plan::new(weights, BiasMode::Fp32, BnMode::Pool)?;
    plan.prepare(&[Granularity::Layer], &bits, &[method]);
    println!("{} {}, BatchNorm pooled with each layer's weights, per-layer groups", spec.kind, method);
    println!("| bits | layer | scales (fp32) | scales (quantized) | largest relative error |");
    println!("|---|---|---|---|---|");
    for &b in &bits {
        let variant = Variant { method, bits: b, granularity: Granularity::Layer, seed: method.is_stochastic().then_some(1), scope: Scope::All };
        let (q, _) = plan.apply(&variant);
        for (i, t) in plan.weights.tensors.iter().enumerate() {
            if t.role != ParamRole::BnGamma {
                continue;
            }
            let range = |d: &[f32]| (d.iter().cloned().fold(f32::MAX, f32::min), d.iter().cloned().fold(f32::MIN, f32::max));
            let (lo, hi) = range(&t.data);
            let (qlo, qhi) = range(&q.tensors[i].data);
            let worst = t.data.iter().zip(&q.tensors[i].data).map(|(w, q)| ((q - w) / w).abs()).fold(0.0f32, f32::max);
            println!("| {b} | {} | {lo:.3}..{hi:.3} | {qlo:.3}..{qhi:.3} | {:.1} % |", t.layer, 100.0 * worst);
        }
    }
    Ok(())
}
