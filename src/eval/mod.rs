//! Stage 4, evaluation: weights of many variants -> metrics on the test split.
//!
//! Input: the parameters of V variants, each model tensor stacked on a leading
//! variant axis ([V, rows, cols], or [1, rows, cols] when all variants share
//! it). Output: one [`Scores`] per variant (accuracy and top-5, or MSE and MAE in
//! the target's own units), computed by burn on the chosen device in one
//! forward pass per chunk of evaluation rows. Dense nets stack variants on a
//! batch axis of their matmuls; conv nets stack them on the channel axis
//! (the first convolution fans the shared input out, later ones are grouped).
//! A variant's layers are shared until its first quantized one, so the work
//! before a one-layer scope is done once.

use burn::tensor::activation::relu;
use burn::tensor::module::{batch_norm, conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Int, Tensor, TensorData};

use std::sync::Arc;

use crate::data::{Dataset, Table, Targets, Task};
use crate::gpu::GpuContext;
use crate::error::{Error, Result};
use crate::models::cnn::{BN_EPSILON, Op};
use crate::models::{ParamRole, Weights, mlp};
use crate::quant::BiasCorrect;

pub mod dense_cpu;
pub mod fused;

/// Metrics of one variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scores {
    /// accuracy (fraction) for classifiers, MSE (target units squared) for regressors
    pub primary: f64,
    /// MAE for regressors; top-5 accuracy for classifiers with more than 5 classes
    pub secondary: Option<f64>,
}

/// Metric names for a task: (primary, secondary).
pub fn metric_names(task: Task) -> (&'static str, Option<&'static str>) {
    match task {
        Task::Classification { classes } if classes > 5 => ("accuracy", Some("top5")),
        Task::Classification { .. } => ("accuracy", None),
        Task::Regression => ("mse", Some("mae")),
    }
}

/// Whether larger is better for the task's primary metric.
pub fn higher_is_better(task: Task) -> bool {
    matches!(task, Task::Classification { .. })
}

/// Whether primary metric `a` is strictly better than `b` for the task.
pub fn improves(task: Task, a: f64, b: f64) -> bool {
    if higher_is_better(task) { a > b } else { a < b }
}

/// [rows, cols] of a tensor's stacked form: weights keep their first axis and
/// flatten the rest; one-dimensional tensors (biases, BatchNorm) are one row.
pub fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape {
        [n] => (1, *n),
        _ => (shape[0], shape[1..].iter().product()),
    }
}

/// Stacks one model tensor of every variant: [V, rows, cols], or [1, rows,
/// cols] when every variant holds the same values.
pub fn stack_tensor(variants: &[&Weights], i: usize, device: &Device) -> Tensor<3> {
    let first = &variants[0].tensors[i];
    let (r, c) = rows_cols(&first.shape);
    if variants.iter().all(|w| w.tensors[i].data == first.data) {
        return Tensor::from_data(TensorData::new(first.data.clone(), [1, r, c]), device);
    }
    let mut data = Vec::with_capacity(variants.len() * first.len());
    for w in variants {
        data.extend_from_slice(&w.tensors[i].data);
    }
    Tensor::from_data(TensorData::new(data, [variants.len(), r, c]), device)
}

enum Arch {
    /// dense layers as (weight, bias) tensor indices; inputs [1, N, features]
    /// `prefixes[l]`: layer l's input under the fp32 weights; `truth`: the
    /// class index or the target in its own units, per row; `fused`: the WGSL
    /// kernel scoring whole batches, when enabled; `cpu`: the CPU kernel
    /// scoring host weights, when enabled
    Mlp { layers: Vec<(usize, Option<usize>)>, prefixes: Vec<Tensor<3>>, truth: Vec<f32>, fused: Option<fused::FusedMlp>, cpu: Option<dense_cpu::DenseCpu> },
    /// a conv program; inputs [N, 3, 32, 32] scored in chunks of rows
    Conv { ops: Vec<Op>, x: Tensor<4>, chunk: usize },
}

/// One split on one device, ready to score variants.
pub struct Evaluator {
    device: Device,
    task: Task,
    n: usize,
    arch: Arch,
    labels: Option<Tensor<2, Int>>,
    targets: Option<Tensor<2>>,
    /// (mean, std) of the standardised regression target
    target_affine: (f32, f32),
    /// the unquantized weights: a tensor equal to its fp32 value in every
    /// variant lets a dense net start from the shared activations
    fp32: Weights,
}

/// Sums over a chunk of rows, per variant.
struct Sums {
    primary: Vec<f64>,
    secondary: Option<Vec<f64>>,
}

fn dense_layers(weights: &Weights) -> Vec<(usize, Option<usize>)> {
    let t = &weights.tensors;
    t.iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.role, ParamRole::Weight { .. }))
        .map(|(i, p)| (i, t.iter().position(|b| b.layer == p.layer && b.role == ParamRole::Bias)))
        .collect()
}

/// --bias-correct's calibration for a dense net (ReLU between layers): by
/// layer name, the mean over the rows of `table`, through the fp32 weights,
/// of the input each weight multiplies, one per weight in its [in][out]
/// layout. `Mean`: over every row (the same for every output). `Active`: for
/// each output, over the rows where its fp32 value passes the ReLU after it
/// (every row for the last layer; 0 for an output no row passes). The net runs
/// as a program of linear layers and ReLUs through [`program_input_means`].
pub fn dense_input_means(weights: &Weights, table: &Table, mode: BiasCorrect) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    let t = &weights.tensors;
    let layers = dense_layers(weights);
    if t.iter().any(|p| p.shape.len() > 2) || layers.is_empty() {
        return Err(Error::Eval("input means are for the dense nets (mlp-simple, mlp-complex)".into()));
    }
    let features = table.sample_len();
    if t[layers[0].0].shape[0] != features {
        return Err(Error::Eval(format!("the net takes {} inputs, the rows have {features}", t[layers[0].0].shape[0])));
    }
    let mut ops = Vec::new();
    for (l, &(weight, bias)) in layers.iter().enumerate() {
        ops.push(Op::Linear { weight, bias });
        if l + 1 < layers.len() {
            ops.push(Op::Relu);
        }
    }
    program_input_means(&ops, weights, table, mode, table.len())
}

/// The training images a conv net's --bias-correct calibration reads at most
/// (the first of the seeded-shuffled training part): means settle long before
/// a 45,000-image pass on the CPU would end.
pub const CONV_CALIBRATION_IMAGES: usize = 1024;

/// --bias-correct's calibration: for every Conv (3x3, padding 1) and Linear
/// of a program (a dense net's, or a conv net's with BatchNorm folded or
/// kept), by its weight's layer, the mean of the input each weight
/// multiplies, one per weight in the weight's layout ([out][in·3·3] for a
/// conv: the padded input patch at the weight's offset, over images and output
/// positions; [in][out] for a linear layer), over the first `limit` samples
/// (rows or images) of `table`. `Active`: for each output channel, over the
/// (sample, position) pairs where its fp32 value passes the ReLU after it
/// (after the BatchNorm between them, when it is kept; every pair for the
/// last layer; 0 for an output none passes). Runs on burn's CPU backend
/// whatever the run's device, so CPU and GPU runs correct by the same means;
/// sums of each chunk of samples are added in f64 in a fixed order.
pub fn program_input_means(ops: &[Op], weights: &Weights, table: &Table, mode: BiasCorrect, limit: usize) -> Result<std::collections::HashMap<String, Vec<f32>>> {
    use burn::tensor::ops::PadMode;
    let device = Device::flex();
    let t = &weights.tensors;
    let shape = table.sample_shape.clone();
    if !matches!(shape.len(), 1 | 3) {
        return Err(Error::Eval(format!("calibration reads rows of features or images, not samples of shape {shape:?}")));
    }
    let len = table.sample_len();
    let tensor = |i: usize| -> Tensor<1> { Tensor::from_data(TensorData::new(t[i].data.clone(), [t[i].len()]), &device) };
    // per Conv / Linear op: its weight, Σ input per weight place, and the rows counted per output
    struct Acc {
        weight: usize,
        sums: Vec<f64>,
        rows: Vec<f64>,
    }
    let mut accs: Vec<Option<Acc>> = ops
        .iter()
        .map(|op| match *op {
            Op::Conv { weight, .. } | Op::Linear { weight, .. } => Some(Acc { weight, sums: vec![0.0; t[weight].len()], rows: vec![0.0; t[weight].shape[if matches!(op, Op::Conv { .. }) { 0 } else { 1 }]] }),
            _ => None,
        })
        .collect();
    let add = |acc: &mut Vec<f64>, x: Tensor<1>| -> Result<()> {
        let v = x.try_to_vec_as::<f32>().map_err(|e| Error::Eval(format!("calibration read-back: {e:?}")))?;
        acc.iter_mut().zip(v).for_each(|(a, v)| *a += v as f64);
        Ok(())
    };
    let n = table.len().min(limit);
    // images in chunks of 64, rows of features in chunks of 1,024
    let chunk = if shape.len() == 3 { 64 } else { 1024 };
    let mut start = 0;
    while start < n {
        let b = chunk.min(n - start);
        let data = TensorData::new(table.x[start * len..(start + b) * len].to_vec(), [b * len]);
        enum Act {
            Maps(Tensor<4>),
            Rows(Tensor<2>),
        }
        let x = Tensor::<1>::from_data(data, &device);
        let mut act = if let [c, h, w] = shape[..] { Act::Maps(x.reshape([b, c, h, w])) } else { Act::Rows(x.reshape([b, len])) };
        let mut saved: Option<Tensor<4>> = None;
        for (j, op) in ops.iter().enumerate() {
            // the ReLU the output meets: next, or after a kept BatchNorm
            let bn_next = match ops.get(j + 1) {
                Some(&Op::Bn { gamma, beta, mean, var }) if matches!(ops.get(j + 2), Some(Op::Relu)) => Some([gamma, beta, mean, var]),
                _ => None,
            };
            let gated = mode == BiasCorrect::Active && (matches!(ops.get(j + 1), Some(Op::Relu)) || bn_next.is_some());
            let bn = |z: Tensor<4>, [gamma, beta, mean, var]: [usize; 4]| batch_norm(z, tensor(gamma), tensor(beta), tensor(mean), tensor(var), BN_EPSILON);
            act = match (op, act) {
                (Op::Conv { weight, bias }, Act::Maps(x)) => {
                    let [out, cin, kh, kw] = t[*weight].shape[..] else { return Err(Error::Eval(format!("{} is not a conv weight", t[*weight].name))) };
                    let wt: Tensor<4> = tensor(*weight).reshape([out, cin, kh, kw]);
                    if (kh, kw) != (3, 3) {
                        return Err(Error::Eval(format!("{} is not a 3x3 convolution", t[*weight].name)));
                    }
                    let z = conv2d(x.clone(), wt, bias.map(tensor), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
                    let [bs, _, zh, zw] = z.dims();
                    let positions = bs * zh * zw;
                    let inner = cin * kh * kw;
                    // the input each weight place (channel, ky, kx) meets at every
                    // output position: the zero-padded input shifted by (ky, kx)
                    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
                    let shifted = |ky: usize, kx: usize| -> Tensor<4> { padded.clone().slice([0..bs, 0..cin, ky..ky + zh, kx..kx + zw]) };
                    let acc = accs[j].as_mut().expect("a Conv has an accumulator");
                    // [out or 1][cin] sums at offset (ky, kx) into [out][in·3·3]
                    let mut add_at = |ky: usize, kx: usize, s: Tensor<2>| -> Result<()> {
                        let [rows, _] = s.dims();
                        let v = s.try_to_vec_as::<f32>().map_err(|e| Error::Eval(format!("calibration read-back: {e:?}")))?;
                        for o in 0..out {
                            for i in 0..cin {
                                acc.sums[o * inner + (i * kh + ky) * kw + kx] += v[if rows == 1 { i } else { o * cin + i }] as f64;
                            }
                        }
                        Ok(())
                    };
                    if gated {
                        // [out, B·H·W]: which positions pass the ReLU (after the BatchNorm, if kept)
                        let seen = bn_next.map_or_else(|| z.clone(), |p| bn(z.clone(), p));
                        let mask: Tensor<2> = seen.greater_elem(0.0).float().swap_dims(0, 1).reshape([out, positions]);
                        for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                            let input: Tensor<2> = shifted(ky, kx).swap_dims(0, 1).reshape([cin, positions]);
                            add_at(ky, kx, mask.clone().matmul(input.transpose()))?;
                        }
                        add(&mut acc.rows, mask.sum_dim(1).reshape([out]))?;
                    } else {
                        for (ky, kx) in (0..kh).flat_map(|ky| (0..kw).map(move |kx| (ky, kx))) {
                            let input: Tensor<2> = shifted(ky, kx).swap_dims(0, 1).reshape([cin, positions]);
                            add_at(ky, kx, input.sum_dim(1).reshape([1, cin]))?;
                        }
                        acc.rows.iter_mut().for_each(|r| *r += positions as f64);
                    }
                    Act::Maps(z)
                }
                (Op::Linear { weight, bias }, Act::Rows(x)) => {
                    let [inputs, out] = t[*weight].shape[..] else { return Err(Error::Eval(format!("{} is not a linear weight", t[*weight].name))) };
                    let mut z = x.clone().matmul(tensor(*weight).reshape([inputs, out]));
                    if let Some(bias) = bias {
                        z = z + tensor(*bias).unsqueeze_dim::<2>(0);
                    }
                    let acc = accs[j].as_mut().expect("a Linear has an accumulator");
                    if gated {
                        let mask = z.clone().greater_elem(0.0).float();
                        add(&mut acc.sums, x.transpose().matmul(mask.clone()).reshape([inputs * out]))?;
                        add(&mut acc.rows, mask.sum_dim(0).reshape([out]))?;
                    } else {
                        let s: Tensor<2> = x.sum_dim(0);
                        add(&mut acc.sums, s.transpose().repeat_dim(1, out).reshape([inputs * out]))?;
                        acc.rows.iter_mut().for_each(|r| *r += b as f64);
                    }
                    Act::Rows(z)
                }
                (&Op::Bn { gamma, beta, mean, var }, Act::Maps(x)) => Act::Maps(bn(x, [gamma, beta, mean, var])),
                (Op::Relu, Act::Maps(x)) => Act::Maps(relu(x)),
                (Op::Relu, Act::Rows(x)) => Act::Rows(relu(x)),
                (Op::MaxPool(k), Act::Maps(x)) => Act::Maps(max_pool2d(x, MaxPoolOptions::new([*k, *k]))),
                (Op::Save, Act::Maps(x)) => {
                    saved = Some(x.clone());
                    Act::Maps(x)
                }
                (Op::AddSaved, Act::Maps(x)) => Act::Maps(x + saved.take().expect("AddSaved follows Save")),
                (Op::Flatten, Act::Maps(x)) => {
                    let [bs, ch, hh, ww] = x.dims();
                    Act::Rows(x.reshape([bs, ch * hh * ww]))
                }
                (op, _) => return Err(Error::Eval(format!("conv program out of order at {op:?}"))),
            };
        }
        start += b;
    }
    Ok(accs
        .into_iter()
        .flatten()
        .map(|acc| {
            let out = acc.rows.len();
            let inner = acc.sums.len() / out;
            // conv [out][inner], linear [inner][out]: the output a place belongs to
            let conv = t[acc.weight].shape.len() == 4;
            let means = acc
                .sums
                .iter()
                .enumerate()
                .map(|(e, &s)| {
                    let rows = acc.rows[if conv { e / inner } else { e % out }];
                    if rows > 0.0 { (s / rows) as f32 } else { 0.0 }
                })
                .collect();
            (t[acc.weight].layer.clone(), means)
        })
        .collect())
}

/// The first dense layer that any variant changes: the activations before it
/// are the fp32 ones, computed once.
fn first_changed(layers: &[(usize, Option<usize>)], changed: &[bool]) -> usize {
    layers.iter().position(|(w, b)| changed[*w] || b.is_some_and(|b| changed[b])).unwrap_or(0)
}

/// Whether the WGSL scorer (shaders/score_mlp.wgsl) runs this net on `rows`
/// evaluation rows: a dense net within its width, depth and row limits.
pub fn fused_kernel_fits(weights: &Weights, rows: usize) -> bool {
    let dims: Vec<(usize, usize)> = dense_layers(weights).iter().map(|&(w, _)| rows_cols(&weights.tensors[w].shape)).collect();
    let conv = weights.tensors.iter().any(|t| t.shape.len() > 2);
    !conv && fused::supports(&dims, rows)
}

impl Evaluator {
    /// `fp32`: the unquantized weights (they fix the network's layout and the
    /// shared activations); `ops`: the conv program, None for a dense net;
    /// `chunk`: evaluation rows per forward pass of a conv net.
    pub fn new(dataset: &Dataset, table: &Table, device: &Device, fp32: &Weights, ops: Option<Vec<Op>>, chunk: usize) -> Result<Evaluator> {
        let n = table.len();
        if n == 0 {
            return Err(Error::Eval("the evaluation split is empty".into()));
        }
        // per row: the class index, or the target in its own units
        let truth: Vec<f32> = match &table.y {
            Targets::Classes(c) => c.iter().map(|&c| c as f32).collect(),
            Targets::Values(v) => v.iter().map(|&t| dataset.unscale_target(t)).collect(),
        };
        let (labels, targets) = match &table.y {
            Targets::Classes(c) => {
                let v: Vec<i64> = c.iter().map(|&c| c as i64).collect();
                (Some(Tensor::<2, Int>::from_data(TensorData::new(v, [n, 1]), device)), None)
            }
            Targets::Values(_) => (None, Some(Tensor::<2>::from_data(TensorData::new(truth.clone(), [n, 1]), device))),
        };
        let target_affine = match &dataset.target_scaler {
            Some(s) => (s.shift[0] as f32, s.scale[0] as f32),
            None => (0.0, 1.0),
        };
        let arch = match ops {
            None => {
                let x = Tensor::<3>::from_data(TensorData::new(table.x.clone(), [1, n, table.sample_len()]), device);
                let layers = dense_layers(fp32);
                let mut ev_prefixes = vec![x.clone()];
                let stacked: Vec<Tensor<3>> = (0..fp32.tensors.len()).map(|i| stack_tensor(&[fp32], i, device)).collect();
                let mut h = x.clone();
                for &(w, b) in layers.iter().take(layers.len().saturating_sub(1)) {
                    h = h.matmul(stacked[w].clone());
                    if let Some(b) = b {
                        h = h + stacked[b].clone();
                    }
                    h = relu(h);
                    ev_prefixes.push(h.clone());
                }
                Arch::Mlp { layers, prefixes: ev_prefixes, truth, fused: None, cpu: None }
            }
            Some(ops) => {
                let shape = &table.sample_shape;
                if shape.len() != 3 {
                    return Err(Error::Eval(format!("a conv net needs [channels, height, width] samples, not {shape:?}")));
                }
                let x = Tensor::<4>::from_data(TensorData::new(table.x.clone(), [n, shape[0], shape[1], shape[2]]), device);
                Arch::Conv { ops, x, chunk: chunk.max(1) }
            }
        };
        Ok(Evaluator { device: device.clone(), task: dataset.task, n, arch, labels, targets, target_affine, fp32: fp32.clone() })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Scores dense nets with one WGSL dispatch per batch
    /// (shaders/score_mlp.wgsl) on `ctx`, the GPU this evaluator's device
    /// lives on, instead of burn's per-layer kernels; None goes back to burn's.
    /// Returns whether the kernel is in use: conv nets, and dense nets beyond
    /// its limits, stay on burn's kernels.
    pub fn use_fused_kernel(&mut self, ctx: Option<Arc<GpuContext>>) -> Result<bool> {
        let task = self.task;
        let Arch::Mlp { layers, prefixes, truth, fused, .. } = &mut self.arch else {
            return Ok(false);
        };
        *fused = None;
        let Some(ctx) = ctx else {
            return Ok(false);
        };
        let dims = layers.iter().map(|&(w, _)| rows_cols(&self.fp32.tensors[w].shape)).collect();
        let split = fused::Split {
            prefixes,
            truth: truth.clone(),
            classifier: matches!(task, Task::Classification { .. }),
            target_affine: self.target_affine,
        };
        *fused = fused::FusedMlp::new(ctx, dims, split)?;
        Ok(fused.is_some())
    }

    /// Scores dense nets on the host with the CPU kernel (src/eval/dense_cpu.rs)
    /// instead of burn's per-layer kernels, or goes back to burn's (`false`).
    /// Returns whether the kernel is in use (conv nets stay on burn's).
    pub fn use_cpu_kernel(&mut self, enable: bool) -> Result<bool> {
        let classifier = matches!(self.task, Task::Classification { .. });
        let target_affine = self.target_affine;
        let Arch::Mlp { layers, prefixes, truth, cpu, .. } = &mut self.arch else {
            return Ok(false);
        };
        *cpu = None;
        if enable {
            let host = prefixes
                .iter()
                .map(|p| p.clone().try_to_vec_as::<f32>().map_err(|e| Error::Eval(format!("reading activations back: {e:?}"))))
                .collect::<Result<Vec<_>>>()?;
            *cpu = Some(dense_cpu::DenseCpu::new(layers.clone(), host, truth.clone(), classifier, target_affine));
        }
        Ok(enable)
    }

    /// Whether [`Evaluator::use_cpu_kernel`] put the CPU kernel in use.
    pub fn uses_cpu_kernel(&self) -> bool {
        matches!(&self.arch, Arch::Mlp { cpu: Some(_), .. })
    }

    /// Whether tensor i differs from its fp32 value in any of `variants`.
    fn changed(&self, variants: &[&Weights]) -> Vec<bool> {
        (0..variants[0].tensors.len())
            .map(|i| self.fp32.tensors.get(i).is_none_or(|f| variants.iter().any(|w| w.tensors[i].data != f.data)))
            .collect()
    }

    /// The kernels' per-variant sums (WGSL or CPU: [primary, secondary]) as
    /// [`Sums`], the secondary kept where the task has that metric.
    fn pair_sums(&self, sums: &[[f64; 2]]) -> Sums {
        let secondary = metric_names(self.task).1.is_some();
        Sums { primary: sums.iter().map(|s| s[0]).collect(), secondary: secondary.then(|| sums.iter().map(|s| s[1]).collect()) }
    }

    /// Per-variant scores: the sums over the rows divided by the rows.
    fn per_row(&self, total: &Sums) -> Vec<Scores> {
        let n = self.n as f64;
        (0..total.primary.len())
            .map(|i| Scores { primary: total.primary[i] / n, secondary: total.secondary.as_ref().map(|s| s[i] / n) })
            .collect()
    }

    /// Whether [`Evaluator::use_fused_kernel`] put the WGSL kernel in use.
    pub fn uses_fused_kernel(&self) -> bool {
        matches!(&self.arch, Arch::Mlp { fused: Some(_), .. })
    }

    /// The WGSL kernel, when [`Evaluator::use_fused_kernel`] put it in use.
    pub fn fused_kernel_mut(&mut self) -> Option<&mut fused::FusedMlp> {
        match &mut self.arch {
            Arch::Mlp { fused: Some(f), .. } => Some(f),
            _ => None,
        }
    }

    /// Scores host weights of every variant (stacked and uploaded here).
    pub fn score(&self, variants: &[&Weights]) -> Result<Vec<Scores>> {
        let first = variants.first().ok_or_else(|| Error::Eval("no variants to score".into()))?;
        if let Arch::Mlp { layers, cpu: Some(cpu), .. } = &self.arch {
            // each variant starts at its own first changed layer
            let start: Vec<usize> = variants.iter().map(|w| first_changed(layers, &self.changed(&[w]))).collect();
            return Ok(self.per_row(&self.pair_sums(&cpu.sums(variants, &start))));
        }
        let params: Vec<Tensor<3>> = (0..first.tensors.len()).map(|i| stack_tensor(variants, i, &self.device)).collect();
        self.score_params(&params, variants.len(), &self.changed(variants))
    }

    /// Scores one set of weights that may differ from the layout weights in
    /// every tensor (training's validation checks).
    pub fn score_all(&self, weights: &Weights) -> Result<Scores> {
        if let Arch::Mlp { cpu: Some(cpu), .. } = &self.arch {
            return Ok(self.per_row(&self.pair_sums(&cpu.sums(&[weights], &[0])))[0]);
        }
        let params: Vec<Tensor<3>> = (0..weights.tensors.len()).map(|i| stack_tensor(&[weights], i, &self.device)).collect();
        Ok(self.score_params(&params, 1, &vec![true; params.len()])?[0])
    }

    /// Scores `v` variants given as stacked tensors on the device (one per model
    /// tensor, [V or 1, rows, cols]); `changed[i]` says whether tensor i differs
    /// from its fp32 value in any variant.
    pub fn score_params(&self, params: &[Tensor<3>], v: usize, changed: &[bool]) -> Result<Vec<Scores>> {
        let mut total = Sums { primary: vec![0.0; v], secondary: None };
        match &self.arch {
            Arch::Mlp { layers, fused: Some(f), .. } => {
                total = self.pair_sums(&f.sums(params, layers, v, first_changed(layers, changed))?);
            }
            Arch::Mlp { layers, prefixes, fused: None, .. } => {
                let start = first_changed(layers, changed);
                let pairs: Vec<(Tensor<3>, Option<Tensor<3>>)> =
                    layers.iter().map(|&(w, b)| (params[w].clone(), b.map(|b| params[b].clone()))).collect();
                let out = mlp::forward_variants(prefixes[start].clone(), &pairs, start);
                let out = if out.dims()[0] == v { out } else { out.expand([v as i64, -1, -1]) };
                total = self.sums(out, v, 0, self.n)?;
            }
            Arch::Conv { ops, x, chunk } => {
                let mut start = 0;
                while start < self.n {
                    let len = (*chunk).min(self.n - start);
                    let out = run_program(ops, params, x.clone().narrow(0, start, len));
                    let out = if out.dims()[0] == v { out } else { out.expand([v as i64, -1, -1]) };
                    let s = self.sums(out, v, start, len)?;
                    for (t, x) in total.primary.iter_mut().zip(&s.primary) {
                        *t += x;
                    }
                    if let Some(sec) = s.secondary {
                        let acc = total.secondary.get_or_insert_with(|| vec![0.0; v]);
                        for (t, x) in acc.iter_mut().zip(&sec) {
                            *t += x;
                        }
                    }
                    start += len;
                }
            }
        }
        Ok(self.per_row(&total))
    }

    /// Per-variant sums of the metrics over rows `start..start + len`, from the
    /// outputs [V, len, outputs].
    fn sums(&self, out: Tensor<3>, v: usize, start: usize, len: usize) -> Result<Sums> {
        let read = |t: Tensor<1>| -> Result<Vec<f64>> {
            t.try_to_vec_as::<f32>()
                .map(|v| v.into_iter().map(f64::from).collect())
                .map_err(|e| Error::Eval(format!("reading scores back: {e:?}")))
        };
        match self.task {
            Task::Classification { classes } => {
                let labels: Tensor<3, Int> = self.labels.clone().expect("classifier has labels").narrow(0, start, len).unsqueeze::<3>();
                let pred = out.clone().argmax(2); // [V, len, 1]
                let correct = read(pred.equal(labels.clone().expand([v, len, 1])).float().sum_dim(1).reshape([v]))?;
                let top5 = if classes > 5 {
                    let idx = out.argtopk(5, 2); // [V, len, 5]
                    Some(read(idx.equal(labels.expand([v, len, 5])).float().sum_dim(2).sum_dim(1).reshape([v]))?)
                } else {
                    None
                };
                Ok(Sums { primary: correct, secondary: top5 })
            }
            Task::Regression => {
                let (mean, std) = self.target_affine;
                let pred = out.mul_scalar(std).add_scalar(mean);
                let targets: Tensor<3> = self.targets.clone().expect("regressor has targets").narrow(0, start, len).unsqueeze::<3>();
                let err = pred - targets;
                let sq = read(err.clone().powi_scalar(2).sum_dim(1).reshape([v]))?;
                let abs = read(err.abs().sum_dim(1).reshape([v]))?;
                Ok(Sums { primary: sq, secondary: Some(abs) })
            }
        }
    }
}

/// Repeats a [V0 * c] per-channel vector to `v` variants when V0 = 1.
fn per_channel(p: &Tensor<3>, v: usize) -> Tensor<1> {
    let [pv, _, c] = p.dims();
    let flat: Tensor<1> = p.clone().reshape([pv * c]);
    if pv == v { flat } else { flat.repeat_dim(0, v) }
}

/// Runs a conv program on `x` [B, C, H, W] for the stacked parameters;
/// returns [V or 1, B, outputs].
pub(crate) fn run_program(ops: &[Op], params: &[Tensor<3>], x: Tensor<4>) -> Tensor<3> {
    enum Act {
        Maps(Tensor<4>, usize),
        Rows(Tensor<3>),
    }
    let mut act = Act::Maps(x, 1);
    let mut saved: Option<(Tensor<4>, usize)> = None;
    for op in ops {
        act = match (op, act) {
            (Op::Conv { weight, bias }, Act::Maps(h, vh)) => {
                let [vw, out, inner] = params[*weight].dims();
                let cin = inner / 9;
                let v = vh.max(vw);
                let mut w: Tensor<4> = params[*weight].clone().reshape([vw * out, cin, 3, 3]);
                if vw < v {
                    w = w.repeat_dim(0, v);
                }
                let b = bias.map(|b| per_channel(&params[b], v));
                // a shared input fans out to every variant's channels; variant
                // inputs meet their own weights in groups
                let groups = if vh == 1 { 1 } else { v };
                Act::Maps(conv2d(h, w, b, ConvOptions::new([1, 1], [1, 1], [1, 1], groups)), v)
            }
            (Op::Bn { gamma, beta, mean, var }, Act::Maps(h, vh)) => {
                let v = [gamma, beta, mean, var].iter().map(|&&i| params[i].dims()[0]).fold(vh, usize::max);
                let h = if vh < v { h.repeat_dim(1, v) } else { h };
                Act::Maps(
                    batch_norm(
                        h,
                        per_channel(&params[*gamma], v),
                        per_channel(&params[*beta], v),
                        per_channel(&params[*mean], v),
                        per_channel(&params[*var], v),
                        BN_EPSILON,
                    ),
                    v,
                )
            }
            (Op::Relu, Act::Maps(h, v)) => Act::Maps(relu(h), v),
            (Op::Relu, Act::Rows(h)) => Act::Rows(relu(h)),
            (Op::MaxPool(k), Act::Maps(h, v)) => Act::Maps(max_pool2d(h, MaxPoolOptions::new([*k, *k])), v),
            (Op::Save, Act::Maps(h, v)) => {
                saved = Some((h.clone(), v));
                Act::Maps(h, v)
            }
            (Op::AddSaved, Act::Maps(h, v)) => {
                let (s, vs) = saved.take().expect("AddSaved follows Save");
                let s = if vs < v { s.repeat_dim(1, v) } else { s };
                let h = if v < vs { h.repeat_dim(1, vs) } else { h };
                Act::Maps(h + s, v.max(vs))
            }
            (Op::Flatten, Act::Maps(h, v)) => {
                let [b, c, hh, ww] = h.dims();
                let r: Tensor<3> = h.reshape([b, v, (c / v) * hh * ww]);
                Act::Rows(r.swap_dims(0, 1))
            }
            (Op::Linear { weight, bias }, Act::Rows(h)) => {
                let mut y = h.matmul(params[*weight].clone());
                if let Some(b) = bias {
                    y = y + params[*b].clone();
                }
                Act::Rows(y)
            }
            (op, _) => panic!("conv program out of order at {op:?}"),
        };
    }
    match act {
        Act::Rows(h) => h,
        Act::Maps(..) => panic!("a conv program ends with a linear layer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Table, Targets};
    use crate::models::ParamTensor;
    use crate::quant::apply::{BiasMode, BnMode, Plan};
    use crate::quant::{Granularity, Method};
    use crate::sweep::grid::{Scope, Variant};

    /// Deterministic values in [-1, 1) (a 32-bit LCG's top bits); the CPU kernel's tests use them too.
    pub(super) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn tensor(name: &str, layer: &str, shape: Vec<usize>, role: ParamRole, seed: u32) -> ParamTensor {
        let n = shape.iter().product();
        ParamTensor { name: name.into(), layer: layer.into(), shape, role, data: values(n, seed) }
    }

    /// A 3x3 convolution (padding 1) written out: [out][y][x] of one image [in][h][w].
    fn conv(x: &[f32], (cin, h, w): (usize, usize, usize), weight: &[f32], bias: &[f32]) -> Vec<f32> {
        let out = bias.len();
        let mut z = vec![0.0f32; out * h * w];
        for o in 0..out {
            for y in 0..h {
                for xx in 0..w {
                    let mut acc = bias[o];
                    for (k, &wv) in weight[o * cin * 9..(o + 1) * cin * 9].iter().enumerate() {
                        if let Some(v) = patch(x, (cin, h, w), k, y, xx) {
                            acc += wv * v;
                        }
                    }
                    z[(o * h + y) * w + xx] = acc;
                }
            }
        }
        z
    }

    /// The padded input that weight place k (channel, ky, kx) meets at output (y, x); None in the padding.
    fn patch(x: &[f32], (_, h, w): (usize, usize, usize), k: usize, y: usize, xx: usize) -> Option<f32> {
        let (i, ky, kx) = (k / 9, (k / 3) % 3, k % 3);
        let (yy, xs) = ((y + ky).checked_sub(1)?, (xx + kx).checked_sub(1)?);
        (yy < h && xs < w).then(|| x[(i * h + yy) * w + xs])
    }

    /// Conv nets' calibration: the means of a program (conv, ReLU, pool,
    /// linear, ReLU, linear) over the first `limit` images, in two chunks,
    /// equal a plain count, per weight place, over every position (mean) or
    /// over the positions where the output passes its ReLU (active); and the
    /// corrected conv bias restores the conv's mean output over them.
    #[test]
    fn conv_program_means_match_a_plain_count_and_correct_the_conv() {
        for kept_bn in [false, true] {
            conv_program_case(kept_bn);
        }
    }

    /// One program of the test above: with a kept BatchNorm between the conv
    /// and its ReLU, the positions that pass are those after the BatchNorm.
    fn conv_program_case(kept_bn: bool) {
        let (cin, hw, out, hidden) = (2usize, 4usize, 3usize, 5usize);
        let mut tensors = vec![
            tensor("c.weight", "c", vec![out, cin, 3, 3], ParamRole::Weight { channel_axis: 0 }, 1),
            tensor("c.bias", "c", vec![out], ParamRole::Bias, 2),
            tensor("f.weight", "f", vec![out * 4, hidden], ParamRole::Weight { channel_axis: 1 }, 3),
            tensor("f.bias", "f", vec![hidden], ParamRole::Bias, 4),
            tensor("g.weight", "g", vec![hidden, 2], ParamRole::Weight { channel_axis: 1 }, 5),
            tensor("g.bias", "g", vec![2], ParamRole::Bias, 6),
        ];
        // a BatchNorm that flips one channel's sign and moves the others
        let bn = [vec![1.5f32, -0.8, 0.6], vec![0.3, 0.1, 0.2], vec![0.2, -0.1, 0.1], vec![0.7, 1.3, 0.4]];
        for (name, role, data) in [("gamma", ParamRole::BnGamma, &bn[0]), ("beta", ParamRole::BnBeta, &bn[1]), ("mean", ParamRole::BnMean, &bn[2]), ("var", ParamRole::BnVar, &bn[3])] {
            if kept_bn {
                tensors.push(ParamTensor { name: format!("c.bn.{name}"), layer: "c".into(), shape: vec![out], role, data: data.clone() });
            }
        }
        let weights = Weights { tensors };
        let t = &weights.tensors;
        let mut ops = vec![Op::Conv { weight: 0, bias: Some(1) }];
        if kept_bn {
            ops.push(Op::Bn { gamma: 6, beta: 7, mean: 8, var: 9 });
        }
        ops.extend([
            Op::Relu,
            Op::MaxPool(2),
            Op::Flatten,
            Op::Linear { weight: 2, bias: Some(3) },
            Op::Relu,
            Op::Linear { weight: 4, bias: Some(5) },
        ]);
        // what the conv's ReLU sees: its output, through the BatchNorm if kept
        let seen = |o: usize, z: f32| if kept_bn { bn[0][o] * (z - bn[2][o]) / (bn[3][o] + BN_EPSILON as f32).sqrt() + bn[1][o] } else { z };
        let (images, limit) = (70, 67);
        let len = cin * hw * hw;
        // non-negative images with means far from 0, as the image loaders leave them
        let x: Vec<f32> = values(images * len, 9).iter().map(|v| 0.5 + 0.5 * v).collect();
        let table = Table { x: x.clone(), sample_shape: vec![cin, hw, hw], y: Targets::Classes(vec![0; images]) };
        let shape = (cin, hw, hw);
        // the plain forward pass up to each linear layer's input
        let conv_out: Vec<Vec<f32>> = x.chunks(len).take(limit).map(|img| conv(img, shape, &t[0].data, &t[1].data)).collect();
        let flat: Vec<Vec<f32>> = conv_out
            .iter()
            .map(|z| {
                let mut f = Vec::new();
                for o in 0..out {
                    for py in 0..2 {
                        for px in 0..2 {
                            let v = (0..4).map(|d| seen(o, z[(o * hw + 2 * py + d / 2) * hw + 2 * px + d % 2]).max(0.0)).fold(f32::MIN, f32::max);
                            f.push(v);
                        }
                    }
                }
                f
            })
            .collect();
        let f_pre: Vec<Vec<f32>> = flat.iter().map(|f| (0..hidden).map(|j| t[3].data[j] + (0..out * 4).map(|i| f[i] * t[2].data[i * hidden + j]).sum::<f32>()).collect()).collect();
        let close = |got: f32, want: f64, what: &str| assert!((got as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "{what}: {got} against {want}");
        for mode in [BiasCorrect::Mean, BiasCorrect::Active] {
            let means = program_input_means(&ops, &weights, &table, mode, limit).unwrap();
            let gated = mode == BiasCorrect::Active;
            let c = &means["c"];
            assert_eq!(c.len(), out * cin * 9);
            for o in 0..out {
                for k in 0..cin * 9 {
                    let (mut s, mut n) = (0.0f64, 0.0f64);
                    for (img, z) in x.chunks(len).zip(&conv_out) {
                        for y in 0..hw {
                            for xx in 0..hw {
                                if !gated || seen(o, z[(o * hw + y) * hw + xx]) > 0.0 {
                                    s += patch(img, shape, k, y, xx).unwrap_or(0.0) as f64;
                                    n += 1.0;
                                }
                            }
                        }
                    }
                    assert!(n > 0.0, "output {o} passes its ReLU nowhere: the test gates nothing");
                    close(c[o * cin * 9 + k], s / n, &format!("{mode:?} (BatchNorm kept: {kept_bn}) conv output {o} place {k}"));
                }
            }
            for (layer, inputs, outputs, rows, pre) in [("f", out * 4, hidden, &flat, Some(&f_pre)), ("g", hidden, 2, &f_pre.iter().map(|v| v.iter().map(|a| a.max(0.0)).collect()).collect::<Vec<Vec<f32>>>(), None)] {
                let m = &means[layer];
                for i in 0..inputs {
                    for j in 0..outputs {
                        let pass = |r: usize| !gated || pre.is_none_or(|p| p[r][j] > 0.0);
                        let (s, n) = (0..limit).filter(|&r| pass(r)).fold((0.0f64, 0.0f64), |(s, n), r| (s + rows[r][i] as f64, n + 1.0));
                        close(m[i * outputs + j], if n > 0.0 { s / n } else { 0.0 }, &format!("{mode:?} (BatchNorm kept: {kept_bn}) {layer} input {i} output {j}"));
                    }
                }
            }
            // the conv's corrected bias brings its mean output over those positions back
            let mut plan = Plan::new(weights.clone(), BiasMode::Fp32, if kept_bn { BnMode::Keep } else { BnMode::Fold }).unwrap();
            plan.set_input_means(&means).unwrap();
            plan.prepare(&[Granularity::Layer], &[2], &[Method::UniformNearest]);
            let v = Variant { method: Method::UniformNearest, bits: 2, granularity: Granularity::Layer, seed: None, scope: Scope::Layer("c".into()) };
            let (q, _) = plan.apply(&v);
            let q_out: Vec<Vec<f32>> = x.chunks(len).take(limit).map(|img| conv(img, shape, &q.tensors[0].data, &q.tensors[1].data)).collect();
            let rounded: Vec<Vec<f32>> = x.chunks(len).take(limit).map(|img| conv(img, shape, &q.tensors[0].data, &t[1].data)).collect();
            for o in 0..out {
                let mean_of = |zs: &[Vec<f32>]| {
                    let (mut s, mut n) = (0.0f64, 0.0f64);
                    for (z, z32) in zs.iter().zip(&conv_out) {
                        for p in 0..hw * hw {
                            if !gated || seen(o, z32[o * hw * hw + p]) > 0.0 {
                                s += z[o * hw * hw + p] as f64;
                                n += 1.0;
                            }
                        }
                    }
                    s / n
                };
                let (want, fixed, moved) = (mean_of(&conv_out), mean_of(&q_out), mean_of(&rounded));
                assert!((fixed - want).abs() < 1e-4, "{mode:?} (BatchNorm kept: {kept_bn}) output {o}: {fixed} after the correction, {want} at fp32");
                assert!((moved - want).abs() > 1e-2, "{mode:?} output {o}: rounding moved the mean by only {}", (moved - want).abs());
            }
        }
    }
}
