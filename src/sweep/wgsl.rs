//! Scoring a batch of variants with the WGSL quantizer: every quantized tensor
//! of the batch is written by one dispatch straight into a burn tensor
//! [V, rows, cols] on the shared device, and the batch is scored in one burn
//! forward pass. Layers outside the batch's scope stay the fp32 tensors,
//! shared by all variants through broadcasting.

use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::{Tensor, TensorData};

use crate::error::{Error, Result};
use crate::eval::{Evaluator, Scores};
use crate::gpu::GpuContext;
use crate::gpu::bridge;
use crate::models::ParamRole;
use crate::quant::apply::{Plan, QuantReport};
use crate::quant::gpu::{GpuQuantizer, GpuTensor, GpuVariant};
use crate::quant::Granularity;
use crate::sweep::grid::Variant;

pub struct WgslScorer {
    quantizer: GpuQuantizer,
    tensors: HashMap<(usize, Granularity), GpuTensor>,
    /// fp32 parameters on the device: weights [1, in, out], biases [1, 1, out]
    fp32: Vec<Tensor<3>>,
}

/// A target's shape as the [rows, cols] of its output tensor.
fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape {
        [n] => (1, *n),
        [r, c] => (*r, *c),
        _ => (shape[0], shape[1..].iter().product()),
    }
}

impl WgslScorer {
    pub fn new(ctx: Arc<GpuContext>, plan: &Plan, granularities: &[Granularity], bits: &[u32]) -> Result<WgslScorer> {
        let quantizer = GpuQuantizer::new(ctx.clone())?;
        let mut tensors = HashMap::new();
        for (ti, t) in plan.targets.iter().enumerate() {
            for &g in granularities {
                tensors.insert((ti, g), quantizer.upload(&t.data, plan.grouping(ti, g), t.tensor_index, bits)?);
            }
        }
        let fp32 = plan
            .weights
            .tensors
            .iter()
            .map(|t| {
                let (r, c) = match t.role {
                    ParamRole::Bias => (1, t.len()),
                    ParamRole::Weight { .. } => rows_cols(&t.shape),
                };
                Tensor::<3>::from_data(TensorData::new(t.data.clone(), [1, r, c]), &ctx.burn)
            })
            .collect();
        Ok(WgslScorer { quantizer, tensors, fp32 })
    }

    /// Scores a batch whose variants share one scope and granularity.
    pub fn score(&self, plan: &Plan, batch: &[Variant], evaluator: &Evaluator, start: usize) -> Result<Vec<(QuantReport, Scores)>> {
        let first = batch.first().ok_or_else(|| Error::Eval("empty batch".into()))?;
        if batch.iter().any(|v| v.scope != first.scope || v.granularity != first.granularity) {
            return Err(Error::Eval("a WGSL batch must share one scope and granularity".into()));
        }
        let v = batch.len();
        let gv: Vec<GpuVariant> = batch.iter().map(|x| GpuVariant { method: x.method, bits: x.bits, seed: x.seed.unwrap_or(0) }).collect();
        let mut params: Vec<Tensor<3>> = self.fp32.clone();
        let mut sq_errs: Vec<Vec<(usize, f32)>> = vec![Vec::new(); v];
        for ti in plan.targets_in(first) {
            let target = &plan.targets[ti];
            let gt = &self.tensors[&(ti, first.granularity)];
            let (rows, cols) = rows_cols(&target.shape);
            let out = Tensor::<3>::empty([v, rows, cols], evaluator.device());
            let errs = bridge::with_region(&out, |region| -> Result<Vec<f32>> {
                self.quantizer.quantize(gt, &gv, &region, None)?;
                self.quantizer.sq_err(gt, &region, v)
            })??;
            for (i, e) in errs.into_iter().enumerate() {
                sq_errs[i].push((ti, e));
            }
            match target.members.as_slice() {
                [(m, _)] => params[*m] = out,
                [(w, wr), (b, _)] => {
                    // pooled [in + 1, out]: the last row is the bias
                    let w_rows = wr.len() / cols;
                    params[*w] = out.clone().narrow(1, 0, w_rows);
                    params[*b] = out.narrow(1, w_rows, 1);
                }
                _ => return Err(Error::Eval(format!("target {} has an unexpected layout", target.name))),
            }
        }
        // pair each layer's weight with its bias (zeros when it has none)
        let mut layers = Vec::new();
        let tensors = &plan.weights.tensors;
        let mut i = 0;
        while i < tensors.len() {
            let has_bias = tensors.get(i + 1).is_some_and(|b| b.role == ParamRole::Bias && b.layer == tensors[i].layer);
            let bias = if has_bias {
                params[i + 1].clone()
            } else {
                let cols = params[i].dims()[2];
                Tensor::<3>::zeros([1, 1, cols], evaluator.device())
            };
            layers.push((params[i].clone(), bias));
            i += if has_bias { 2 } else { 1 };
        }
        let scores = evaluator.score_layers(&layers, v, start)?;
        Ok(batch.iter().zip(sq_errs).zip(scores).map(|((var, e), s)| (plan.report(var, &e), s)).collect())
    }
}
