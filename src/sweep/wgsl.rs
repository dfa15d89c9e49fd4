//! Scoring a batch of variants with the WGSL quantizer: every quantized tensor
//! of the batch is written by one dispatch straight into a burn tensor
//! [V, rows, cols] on the shared device, and the batch is scored in one burn
//! forward pass per chunk of rows. Tensors outside the batch's scope stay the
//! fp32 ones, shared by all variants through broadcasting.

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::eval::{Evaluator, Scores, stack_tensor};
use crate::gpu::GpuContext;
use crate::gpu::bridge;
use crate::quant::{Granularity, LevelSet};
use crate::quant::apply::{Layout, Plan, QuantReport};
use crate::quant::gpu::{GpuQuantizer, GpuTensor, GpuVariant, Tables};
use crate::sweep::grid::Variant;

/// Per variant Σ (w - q)² and Σ w q; with --bias-correct, the shifts [variant][channel].
type WeightSumsAndShifts = (Vec<(f32, f32)>, Option<Vec<f32>>);

pub struct WgslScorer {
    quantizer: GpuQuantizer,
    tensors: HashMap<(usize, Granularity), GpuTensor>,
    /// fp32 parameters on the device, stacked once: [1, rows, cols]
    fp32: Vec<Tensor<3>>,
    /// --bias-correct: per target with a correction, its input means on the device
    means: HashMap<usize, wgpu::Buffer>,
}

impl WgslScorer {
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan, granularities: &[Granularity], bits: &[u32]) -> Result<WgslScorer> {
        let quantizer = GpuQuantizer::new(ctx.clone())?;
        let mut tensors = HashMap::new();
        for (ti, t) in plan.targets.iter().enumerate() {
            for &g in granularities {
                // the level tables of the table level sets the plan prepared (lloyd, kde)
                let tables: Vec<Tables<'_>> = LevelSet::TABLES
                    .into_iter()
                    .map(|set| (set, bits.iter().map(|&b| plan.table(ti, g, b, set)).collect::<Vec<_>>()))
                    .filter(|(_, rows)| rows.iter().all(|t| !t.is_empty()))
                    .collect();
                // clipped ranges come from the host (order statistics of the group)
                let ranges = plan.clipped_ranges(ti, g, bits);
                tensors.insert((ti, g), quantizer.upload_with(&t.data, plan.grouping(ti, g), t.tensor_index, bits, &tables, ranges.as_ref())?);
            }
        }
        let fp32 = (0..plan.weights.tensors.len()).map(|i| stack_tensor(&[&plan.weights], i, &ctx.burn)).collect();
        let means = plan.corrections.iter().enumerate().filter_map(|(ti, c)| Some((ti, quantizer.upload_means(&c.as_ref()?.means)))).collect();
        Ok(WgslScorer { quantizer, tensors, fp32, means })
    }

    /// Scores a batch whose variants share one scope and granularity.
    pub fn score(&self, plan: &Plan, batch: &[Variant], evaluator: &Evaluator) -> Result<Vec<(QuantReport, Scores)>> {
        let first = batch.first().ok_or_else(|| Error::Eval("empty batch".into()))?;
        if batch.iter().any(|v| v.scope != first.scope || v.granularity != first.granularity) {
            return Err(Error::Eval("a WGSL batch must share one scope and granularity".into()));
        }
        let v = batch.len();
        let mut params: Vec<Tensor<3>> = self.fp32.clone();
        let mut changed = vec![false; params.len()];
        let mut sums: Vec<Vec<(usize, f32, f32)>> = vec![Vec::new(); v];
        for (ti, _) in plan.targets_in(first) {
            let target = &plan.targets[ti];
            // the variants share a scope, so each has this target in it; a held
            // layer takes its own bits
            let gv: Vec<GpuVariant> = batch
                .iter()
                .map(|x| GpuVariant { method: x.method, bits: x.bits_for(&target.layer).unwrap_or(x.bits), seed: x.seed.unwrap_or(0) })
                .collect();
            let gt = &self.tensors[&(ti, first.granularity)];
            let (rows, cols) = if target.shape.len() == 1 { (1, target.data.len()) } else { (target.shape[0], target.cols()) };
            let out = Tensor::<3>::empty([v, rows, cols], evaluator.device());
            let correction = plan.corrections.get(ti).and_then(Option::as_ref);
            let (per_variant, shifts) = bridge::with_region(&out, |region| -> Result<WeightSumsAndShifts> {
                self.quantizer.quantize(gt, &gv, &region, None)?;
                self.quantizer.rescale(gt, &region, v, plan.rescale)?;
                let shifts = correction.map(|c| self.quantizer.shifts(gt, c.channels, &region, v, &self.means[&ti])).transpose()?;
                Ok((self.quantizer.weight_sums(gt, &region, v)?, shifts))
            })??;
            for (i, (e, c)) in per_variant.into_iter().enumerate() {
                sums[i].push((ti, e, c));
            }
            if let (Some(c), Some(shifts)) = (correction, shifts) {
                let data: Vec<f32> = shifts.chunks(c.channels.groups).flat_map(|s| plan.bias_plus(c, s)).collect();
                let [_, r, cols] = self.fp32[c.bias].dims();
                params[c.bias] = Tensor::from_data(TensorData::new(data, [v, r, cols]), evaluator.device());
                changed[c.bias] = true;
            }
            for m in &target.members {
                let [_, r, c] = self.fp32[m.tensor].dims();
                let part = match m.layout {
                    Layout::Rows { first_row } if target.members.len() == 1 && first_row == 0 => out.clone(),
                    Layout::Rows { first_row } => out.clone().narrow(1, first_row, r),
                    Layout::Cols { first_col, width } => out.clone().narrow(2, first_col, width),
                };
                params[m.tensor] = part.reshape([v, r, c]);
                changed[m.tensor] = true;
            }
        }
        let scores = evaluator.score_params(&params, v, &changed)?;
        Ok(batch.iter().zip(sums).zip(scores).map(|((var, e), s)| (plan.report(var, &e), s)).collect())
    }
}
