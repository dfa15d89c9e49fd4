//! Applying a variant to a model: which tensors are quantized (weights, and
//! biases per `--bias`), grouped how, and what the result costs in bytes and in
//! weight error. Statistics and level parameters are computed once per tensor,
//! granularity and bit width, and shared by every variant that needs them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::reference::{self, GroupStats, LevelParams, VariantKey, tree_sum};
use super::{Granularity, Grouping, LevelSet, Method};
use crate::error::{Error, Result};
use crate::models::{ParamRole, Weights};
use crate::sweep::grid::Variant;

/// How biases meet the quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BiasMode {
    /// biases stay f32 (what deployed int8 kernels do: biases live in 32-bit accumulators)
    Fp32,
    /// each bias is its own group, quantized with the same method and bits
    Separate,
    /// the bias joins its layer's weight in one group (the 2020 study's treatment)
    Pool,
}

impl BiasMode {
    pub fn name(self) -> &'static str {
        match self {
            BiasMode::Fp32 => "fp32",
            BiasMode::Separate => "separate",
            BiasMode::Pool => "pool",
        }
    }
}

/// One tensor the quantizer sees: a weight, a bias, or a weight pooled with its
/// bias (row-major concatenation [in + 1, out], so output channels stay columns).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub layer: String,
    /// position of the (first) member in the model's tensor list: the tensor
    /// number of the stochastic-rounding hash
    pub tensor_index: u32,
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
    pub channel_axis: usize,
    /// (tensor index, element range in `data`)
    pub members: Vec<(usize, std::ops::Range<usize>)>,
}

impl Target {
    pub fn grouping(&self, g: Granularity) -> Grouping {
        Grouping::for_granularity(&self.shape, self.channel_axis, g)
    }
}

/// Bytes a group's level table costs in a deployed model: (lo, step) for evenly
/// spaced levels, (lo, hi, mean, std) for the normal prior (its levels follow
/// from those and the shared standard-normal table).
fn table_bytes(method: Method) -> usize {
    match method.level_set() {
        LevelSet::Normal => 16,
        _ => 8,
    }
}

/// What applying one variant produced besides the weights.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct QuantReport {
    /// Σ (w - q)² over quantized elements (per-tensor canonical f32 sums, added in f64)
    pub sq_err: f64,
    /// Σ w² over the same elements
    pub sq_sum: f64,
    pub quantized: usize,
    pub size_bytes: usize,
}

impl QuantReport {
    pub fn mse(&self) -> f64 {
        if self.quantized == 0 { 0.0 } else { self.sq_err / self.quantized as f64 }
    }
    /// Signal to quantization-noise ratio in dB (infinite when the error is 0).
    pub fn sqnr_db(&self) -> f64 {
        10.0 * (self.sq_sum / self.sq_err).log10()
    }
}

/// A model prepared for quantization.
pub struct Plan {
    pub weights: Weights,
    pub targets: Vec<Target>,
    pub bias: BiasMode,
    /// Σ w² of each target (canonical f32 sum), the signal of SQNR
    sq_sums: Vec<f64>,
    stats: HashMap<(usize, Granularity), Vec<GroupStats>>,
    params: HashMap<(usize, Granularity, u32), Vec<LevelParams>>,
}

impl Plan {
    pub fn new(weights: Weights, bias: BiasMode) -> Result<Plan> {
        let mut targets = Vec::new();
        let t = &weights.tensors;
        let mut i = 0;
        while i < t.len() {
            let p = &t[i];
            let bias_next = t.get(i + 1).filter(|b| b.role == ParamRole::Bias && b.layer == p.layer);
            match p.role {
                ParamRole::Weight { channel_axis } => {
                    let single = |idx: usize, axis: usize| Target {
                        name: t[idx].name.clone(),
                        layer: t[idx].layer.clone(),
                        tensor_index: idx as u32,
                        data: t[idx].data.clone(),
                        shape: t[idx].shape.clone(),
                        channel_axis: axis,
                        members: vec![(idx, 0..t[idx].len())],
                    };
                    match (bias, bias_next) {
                        (BiasMode::Pool, Some(b)) => {
                            if channel_axis + 1 != p.shape.len() {
                                return Err(Error::Quant(format!(
                                    "--bias pool needs the output channel on the last axis of {}; use --bias fp32 or separate",
                                    p.name
                                )));
                            }
                            let mut data = p.data.clone();
                            data.extend_from_slice(&b.data);
                            let mut shape = p.shape.clone();
                            shape[0] += 1;
                            shape.truncate(2);
                            targets.push(Target {
                                name: format!("{}+bias", p.name),
                                layer: p.layer.clone(),
                                tensor_index: i as u32,
                                data,
                                shape,
                                channel_axis: 1,
                                members: vec![(i, 0..p.len()), (i + 1, p.len()..p.len() + b.len())],
                            });
                            i += 2;
                            continue;
                        }
                        (BiasMode::Separate, Some(_)) => {
                            targets.push(single(i, channel_axis));
                            // a bias is one group whatever the granularity: per
                            // channel it would be one element per group
                            let mut b = single(i + 1, 0);
                            b.shape = vec![b.data.len()];
                            targets.push(b);
                            i += 2;
                            continue;
                        }
                        _ => targets.push(single(i, channel_axis)),
                    }
                }
                ParamRole::Bias => {}
            }
            i += 1;
        }
        let sq_sums = targets.iter().map(|t| tree_sum(t.data.len(), |k| t.data[k] * t.data[k]) as f64).collect();
        Ok(Plan { weights, targets, bias, sq_sums, stats: HashMap::new(), params: HashMap::new() })
    }

    pub fn grouping(&self, target: usize, g: Granularity) -> Grouping {
        let t = &self.targets[target];
        if t.shape.len() == 1 { Grouping::whole(t.data.len()) } else { t.grouping(g) }
    }

    /// Computes statistics and level parameters for every granularity and bit
    /// width the grid uses.
    pub fn prepare(&mut self, granularities: &[Granularity], bits: &[u32]) {
        for ti in 0..self.targets.len() {
            for &g in granularities {
                let grouping = self.grouping(ti, g);
                let stats = self
                    .stats
                    .entry((ti, g))
                    .or_insert_with(|| reference::group_stats(&self.targets[ti].data, grouping))
                    .clone();
                for &b in bits {
                    self.params.entry((ti, g, b)).or_insert_with(|| reference::tensor_params(&stats, b));
                }
            }
        }
    }

    /// Level parameters of a target (after [`Plan::prepare`]).
    pub fn params(&self, target: usize, g: Granularity, bits: u32) -> &[LevelParams] {
        &self.params[&(target, g, bits)]
    }

    /// Indices of the targets a scope quantizes.
    pub fn targets_in(&self, v: &Variant) -> Vec<usize> {
        (0..self.targets.len()).filter(|&i| v.scope.includes(&self.targets[i].layer)).collect()
    }

    /// Model size at a variant's precision: codes + level tables + f32 for the rest.
    pub fn size_bytes(&self, v: &Variant) -> usize {
        let mut quantized = vec![false; self.weights.tensors.len()];
        let mut bytes = 0;
        for ti in self.targets_in(v) {
            let t = &self.targets[ti];
            let groups = self.grouping(ti, v.granularity).groups;
            bytes += (t.data.len() * v.bits as usize).div_ceil(8) + groups * table_bytes(v.method);
            for (m, _) in &t.members {
                quantized[*m] = true;
            }
        }
        bytes + self.weights.tensors.iter().zip(&quantized).filter(|(_, q)| !**q).map(|(t, _)| 4 * t.len()).sum::<usize>()
    }

    /// Weight error and size, given Σ (w - q)² of each target in scope (in the
    /// canonical f32 tree order, so the CPU reference and the GPU agree bit for bit).
    pub fn report(&self, v: &Variant, sq_errs: &[(usize, f32)]) -> QuantReport {
        let mut r = QuantReport { size_bytes: self.size_bytes(v), ..Default::default() };
        for &(ti, e) in sq_errs {
            r.sq_err += e as f64;
            r.sq_sum += self.sq_sums[ti];
            r.quantized += self.targets[ti].data.len();
        }
        r
    }

    /// The model with one variant's quantized weights, by the CPU reference.
    pub fn apply(&self, v: &Variant) -> (Weights, QuantReport) {
        let mut out = self.weights.clone();
        let mut quantized = Vec::new();
        for ti in self.targets_in(v) {
            let t = &self.targets[ti];
            let key = VariantKey { method: v.method, bits: v.bits, seed: v.seed.unwrap_or(0), tensor: t.tensor_index };
            let q = reference::quantize(&t.data, self.grouping(ti, v.granularity), self.params(ti, v.granularity, v.bits), key);
            for (m, range) in &t.members {
                out.tensors[*m].data.copy_from_slice(&q.values[range.clone()]);
            }
            let w = &t.data;
            let err = tree_sum(w.len(), |k| {
                let d = w[k] - q.values[k];
                d * d
            });
            quantized.push((ti, err));
        }
        let report = self.report(v, &quantized);
        (out, report)
    }
}
