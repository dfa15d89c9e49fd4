//! The study's convolutional nets (github.com/mohitgulla/Edge, model/cnn.py):
//! `cnn` (a VGG-style net, about 3.28 M parameters for 100 classes) and
//! `resnet9` (the DAWNBench ResNet9, about 6.62 M parameters for 100 classes).
//! Both take [batch, 3, 32, 32] and use convolutions with bias, as the study did.
//!
//! The same network exists twice: as burn modules, to train, and as a
//! [`Program`], a list of operations over host weights that the evaluator runs
//! for many variants at once (variants stacked on the channel axis).

use burn::module::{Module, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::{ModelKind, ParamRole, ParamTensor, Weights};
use crate::error::{Error, Result};

/// BatchNorm's epsilon (PyTorch's and burn's default).
pub const BN_EPSILON: f64 = 1e-5;

/// conv3x3 (+ bias) -> BatchNorm (optional) -> ReLU -> maxpool (optional),
/// with dropout before the convolution (probability 0: none).
#[derive(Module, Debug)]
pub struct ConvBlock {
    pub drop: Dropout,
    pub conv: Conv2d,
    pub bn: Option<BatchNorm>,
    /// maxpool kernel and stride; 0 for none
    pub pool: usize,
}

/// One block of the architecture table: (in, out, batch norm, pool, dropout before).
type BlockSpec = (usize, usize, bool, usize, f64);

const CNN_BLOCKS: [BlockSpec; 6] = [
    (3, 32, true, 0, 0.0),
    (32, 64, false, 2, 0.0),
    (64, 128, true, 0, 0.2),
    (128, 128, true, 2, 0.3),
    (128, 256, true, 0, 0.0),
    (256, 256, true, 2, 0.0),
];

const RESNET9_BLOCKS: [BlockSpec; 8] = [
    (3, 64, true, 0, 0.0),
    (64, 128, true, 2, 0.0),
    (128, 128, true, 0, 0.0), // res1
    (128, 128, true, 0, 0.0), // res1
    (128, 256, true, 2, 0.0),
    (256, 512, true, 2, 0.0),
    (512, 512, true, 0, 0.0), // res2
    (512, 512, true, 0, 0.0), // res2
];

/// ResNet9's residual pairs: out = blocks[b](blocks[a](x)) + x.
const RESNET9_RESIDUALS: [(usize, usize); 2] = [(2, 3), (6, 7)];

#[derive(Module, Debug)]
pub struct ConvNet {
    pub blocks: Vec<ConvBlock>,
    pub fc: Vec<Linear>,
    /// dropout before the classifier (cnn: 0.3)
    pub head_drop: Dropout,
    /// 0 = cnn, 1 = resnet9
    pub arch: usize,
}

fn blocks_of(kind: ModelKind) -> &'static [BlockSpec] {
    match kind {
        ModelKind::Resnet9 => &RESNET9_BLOCKS,
        _ => &CNN_BLOCKS,
    }
}

impl ConvNet {
    /// Freshly initialised: the weights are drawn from burn's process-wide
    /// generator when first read (seeded: [`super::initial_weights`]).
    pub fn new(kind: ModelKind, classes: usize, device: &Device) -> ConvNet {
        let blocks = blocks_of(kind)
            .iter()
            .map(|&(i, o, bn, pool, p)| ConvBlock {
                drop: DropoutConfig::new(p).init(),
                conv: Conv2dConfig::new([i, o], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(device),
                bn: bn.then(|| BatchNormConfig::new(o).with_epsilon(BN_EPSILON).init(device)),
                pool,
            })
            .collect();
        let (fc, head, arch) = match kind {
            ModelKind::Resnet9 => (vec![LinearConfig::new(512, classes).init(device)], 0.0, 1),
            _ => (vec![LinearConfig::new(256 * 4 * 4, 512).init(device), LinearConfig::new(512, classes).init(device)], 0.3, 0),
        };
        ConvNet { blocks, fc, head_drop: DropoutConfig::new(head).init(), arch }
    }

    fn block(b: &ConvBlock, x: Tensor<4>) -> Tensor<4> {
        let mut x = b.conv.forward(b.drop.forward(x));
        if let Some(bn) = &b.bn {
            x = bn.forward(x);
        }
        x = relu(x);
        if b.pool > 0 { max_pool2d(x, MaxPoolOptions::new([b.pool, b.pool])) } else { x }
    }

    /// [batch, 3, 32, 32] -> logits [batch, classes].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = x;
        if self.arch == 1 {
            let mut i = 0;
            while i < self.blocks.len() {
                if let Some(&(a, b)) = RESNET9_RESIDUALS.iter().find(|(a, _)| *a == i) {
                    x = Self::block(&self.blocks[b], Self::block(&self.blocks[a], x.clone())) + x;
                    i = b + 1;
                } else {
                    x = Self::block(&self.blocks[i], x);
                    i += 1;
                }
            }
            x = max_pool2d(x, MaxPoolOptions::new([4, 4]));
        } else {
            for b in &self.blocks {
                x = Self::block(b, x);
            }
        }
        let mut h: Tensor<2> = self.head_drop.forward(x).flatten(1, 3);
        let last = self.fc.len() - 1;
        for (i, l) in self.fc.iter().enumerate() {
            h = l.forward(h);
            if i < last {
                h = relu(h);
            }
        }
        h
    }

    pub fn kind(&self) -> ModelKind {
        if self.arch == 1 { ModelKind::Resnet9 } else { ModelKind::Cnn }
    }

    /// The net as the sweep scores it, with every tensor the quantizer sees
    /// replaced by its value in `quantized`: BatchNorm with its running
    /// statistics (folded into the convolutions when `quantized` holds no
    /// BatchNorm tensors, as [`fold_batchnorm`](super::fold_batchnorm) folds
    /// it), no dropout. Each tensor enters as `p + (q - p)` with the difference
    /// detached, so the gradient reaches the f32 parameters (through the fold)
    /// as if the rounding were the identity: the straight-through estimator.
    pub fn forward_quantized(&self, x: Tensor<4>, quantized: &Weights) -> Result<Tensor<2>> {
        let folded = self.blocks.iter().any(|b| b.bn.is_some()) && !quantized.tensors.iter().any(|t| t.role.is_bn());
        let live = self.live_params(folded);
        let (want, got): (Vec<&str>, Vec<&str>) = (live.iter().map(|(n, _)| n.as_str()).collect(), quantized.tensors.iter().map(|t| t.name.as_str()).collect());
        if want != got {
            return Err(Error::Training(format!("the quantized weights ({}) are not the net's ({})", got.join(", "), want.join(", "))));
        }
        let device = x.device();
        let params: Vec<Tensor<3>> = live
            .into_iter()
            .zip(&quantized.tensors)
            .map(|((_, p), q)| {
                let q = Tensor::<3>::from_data(TensorData::new(q.data.clone(), p.dims().to_vec()), &device);
                p.clone() + (q - p).detach()
            })
            .collect();
        let out = crate::eval::run_program(&program(self.kind(), quantized, folded)?, &params, x);
        let [_, rows, outputs] = out.dims();
        Ok(out.reshape([rows, outputs]))
    }

    /// The parameters as live tensors shaped as the evaluator stacks them
    /// ([1, rows, cols]), named and ordered as [`ConvNet::to_weights`] (or,
    /// `folded`, [`fold_batchnorm`](super::fold_batchnorm)) lays them out.
    fn live_params(&self, folded: bool) -> Vec<(String, Tensor<3>)> {
        let row = |t: Tensor<1>| -> Tensor<3> { t.unsqueeze::<3>() };
        let mut out = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let layer = format!("blocks.{i}");
            let w = b.conv.weight.val();
            let [cout, cin, kh, kw] = w.dims();
            let w: Tensor<3> = w.reshape([1, cout, cin * kh * kw]);
            let bias = b.conv.bias.as_ref().map(|p| p.val());
            match &b.bn {
                Some(bn) if folded => {
                    let (gamma, beta, mean, var) = (bn.gamma.val(), bn.beta.val(), bn.running_mean.value(), bn.running_var.value());
                    let scale = gamma / var.add_scalar(BN_EPSILON).sqrt();
                    let shift = match bias {
                        Some(b) => (b - mean) * scale.clone() + beta,
                        None => beta - mean * scale.clone(),
                    };
                    out.push((format!("{layer}.conv.weight"), w * scale.reshape([1, cout, 1])));
                    out.push((format!("{layer}.conv.bias"), row(shift)));
                }
                _ => {
                    out.push((format!("{layer}.conv.weight"), w));
                    if let Some(b) = bias {
                        out.push((format!("{layer}.conv.bias"), row(b)));
                    }
                    if let Some(bn) = &b.bn {
                        out.push((format!("{layer}.bn.gamma"), row(bn.gamma.val())));
                        out.push((format!("{layer}.bn.beta"), row(bn.beta.val())));
                        out.push((format!("{layer}.bn.running_mean"), row(bn.running_mean.value())));
                        out.push((format!("{layer}.bn.running_var"), row(bn.running_var.value())));
                    }
                }
            }
        }
        for (i, l) in self.fc.iter().enumerate() {
            out.push((format!("fc.{i}.weight"), l.weight.val().unsqueeze::<3>()));
            if let Some(b) = &l.bias {
                out.push((format!("fc.{i}.bias"), row(b.val())));
            }
        }
        out
    }

    /// Trainable parameters (convolutions, BatchNorm scale and shift, linear
    /// layers), as PyTorch counts them: BatchNorm running statistics excluded.
    pub fn trainable_params(&self) -> usize {
        let mut n = 0;
        for b in &self.blocks {
            n += b.conv.weight.lazy_shape().num_elements() + b.conv.bias.as_ref().map_or(0, |p| p.lazy_shape().num_elements());
            if let Some(bn) = &b.bn {
                n += 2 * bn.gamma.lazy_shape().num_elements();
            }
        }
        for l in &self.fc {
            n += l.weight.lazy_shape().num_elements() + l.bias.as_ref().map_or(0, |p| p.lazy_shape().num_elements());
        }
        n
    }

    /// Host copy of every parameter and BatchNorm statistic, block by block
    /// (conv weight [out, in, 3, 3], conv bias, gamma, beta, running mean,
    /// running variance), then the linear layers (weight [in, out], bias).
    pub fn to_weights(&self) -> Result<Weights> {
        let read = |t: Tensor<1>, name: &str| t.try_to_vec_as::<f32>().map_err(|e| Error::Training(format!("reading {name}: {e:?}")));
        let mut tensors = Vec::new();
        for (i, b) in self.blocks.iter().enumerate() {
            let layer = format!("blocks.{i}");
            let w = b.conv.weight.val();
            let shape = w.dims().to_vec();
            let data = w.try_to_vec_as::<f32>().map_err(|e| Error::Training(format!("reading {layer}.conv.weight: {e:?}")))?;
            tensors.push(ParamTensor { name: format!("{layer}.conv.weight"), layer: layer.clone(), shape, role: ParamRole::Weight { channel_axis: 0 }, data });
            if let Some(bias) = &b.conv.bias {
                let v = bias.val();
                let shape = v.dims().to_vec();
                tensors.push(ParamTensor { name: format!("{layer}.conv.bias"), layer: layer.clone(), shape, role: ParamRole::Bias, data: read(v, "bias")? });
            }
            if let Some(bn) = &b.bn {
                let c = bn.gamma.dims()[0];
                for (name, role, t) in [
                    ("bn.gamma", ParamRole::BnGamma, bn.gamma.val()),
                    ("bn.beta", ParamRole::BnBeta, bn.beta.val()),
                    ("bn.running_mean", ParamRole::BnMean, bn.running_mean.value()),
                    ("bn.running_var", ParamRole::BnVar, bn.running_var.value()),
                ] {
                    tensors.push(ParamTensor { name: format!("{layer}.{name}"), layer: layer.clone(), shape: vec![c], role, data: read(t, name)? });
                }
            }
        }
        for (i, l) in self.fc.iter().enumerate() {
            let layer = format!("fc.{i}");
            let w = l.weight.val();
            let shape = w.dims().to_vec();
            let data = w.try_to_vec_as::<f32>().map_err(|e| Error::Training(format!("reading {layer}.weight: {e:?}")))?;
            tensors.push(ParamTensor { name: format!("{layer}.weight"), layer: layer.clone(), shape, role: ParamRole::Weight { channel_axis: 1 }, data });
            if let Some(bias) = &l.bias {
                let v = bias.val();
                let shape = v.dims().to_vec();
                tensors.push(ParamTensor { name: format!("{layer}.bias"), layer, shape, role: ParamRole::Bias, data: read(v, "bias")? });
            }
        }
        Ok(Weights { tensors })
    }

    /// A network holding `weights` (in [`ConvNet::to_weights`]'s order).
    pub fn from_weights(kind: ModelKind, classes: usize, weights: &Weights, device: &Device) -> ConvNet {
        let mut net = ConvNet::new(kind, classes, device);
        let t = |p: &ParamTensor| Tensor::<1>::from_data(TensorData::new(p.data.clone(), [p.data.len()]), device);
        let mut it = weights.tensors.iter();
        for b in &mut net.blocks {
            let w = it.next().expect("conv weight");
            b.conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.data.clone(), w.shape.clone()), device));
            if b.conv.bias.is_some() {
                b.conv.bias = Some(Param::from_tensor(t(it.next().expect("conv bias"))));
            }
            if let Some(bn) = &mut b.bn {
                bn.gamma = Param::from_tensor(t(it.next().expect("gamma")));
                bn.beta = Param::from_tensor(t(it.next().expect("beta")));
                bn.running_mean = RunningState::new(t(it.next().expect("mean")));
                bn.running_var = RunningState::new(t(it.next().expect("var")));
            }
        }
        for l in &mut net.fc {
            let w = it.next().expect("fc weight");
            l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.data.clone(), w.shape.clone()), device));
            if l.bias.is_some() {
                l.bias = Some(Param::from_tensor(t(it.next().expect("fc bias"))));
            }
        }
        net
    }
}

/// The evaluation program of a conv net: operations over parameter tensors
/// (indices into [`Weights::tensors`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// conv3x3, padding 1: weight, bias
    Conv { weight: usize, bias: Option<usize> },
    /// BatchNorm with running statistics: gamma, beta, mean, var
    Bn { gamma: usize, beta: usize, mean: usize, var: usize },
    Relu,
    MaxPool(usize),
    /// remember the current activation
    Save,
    /// add the remembered activation
    AddSaved,
    /// [B, C, H, W] per variant -> [V, B, C * H * W]
    Flatten,
    /// weight [in, out], bias
    Linear { weight: usize, bias: Option<usize> },
}

/// The program of `kind` for weights laid out as [`ConvNet::to_weights`] lays
/// them out. `folded` drops the BatchNorm operations (their effect was folded
/// into the convolutions).
pub fn program(kind: ModelKind, weights: &Weights, folded: bool) -> Result<Vec<Op>> {
    let idx = |name: &str| weights.tensors.iter().position(|t| t.name == name);
    let need = |name: &str| idx(name).ok_or_else(|| Error::Eval(format!("the weights have no tensor {name}")));
    let blocks = blocks_of(kind);
    let mut ops = Vec::new();
    let block_ops = |i: usize, ops: &mut Vec<Op>| -> Result<()> {
        let l = format!("blocks.{i}");
        ops.push(Op::Conv { weight: need(&format!("{l}.conv.weight"))?, bias: idx(&format!("{l}.conv.bias")) });
        if blocks[i].2 && !folded {
            ops.push(Op::Bn {
                gamma: need(&format!("{l}.bn.gamma"))?,
                beta: need(&format!("{l}.bn.beta"))?,
                mean: need(&format!("{l}.bn.running_mean"))?,
                var: need(&format!("{l}.bn.running_var"))?,
            });
        }
        ops.push(Op::Relu);
        if blocks[i].3 > 0 {
            ops.push(Op::MaxPool(blocks[i].3));
        }
        Ok(())
    };
    for i in 0..blocks.len() {
        let residual = kind == ModelKind::Resnet9 && RESNET9_RESIDUALS.iter().any(|(a, _)| *a == i);
        if residual {
            ops.push(Op::Save);
        }
        block_ops(i, &mut ops)?;
        if kind == ModelKind::Resnet9 && RESNET9_RESIDUALS.iter().any(|(_, b)| *b == i) {
            ops.push(Op::AddSaved);
        }
    }
    if kind == ModelKind::Resnet9 {
        ops.push(Op::MaxPool(4));
    }
    ops.push(Op::Flatten);
    let fcs = weights.tensors.iter().filter(|t| t.layer.starts_with("fc.") && t.name.ends_with(".weight")).count();
    for j in 0..fcs {
        ops.push(Op::Linear { weight: need(&format!("fc.{j}.weight"))?, bias: idx(&format!("fc.{j}.bias")) });
        if j + 1 < fcs {
            ops.push(Op::Relu);
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// conv3x3 with bias, optionally followed by BatchNorm (scale and shift trainable).
    fn conv(cin: usize, cout: usize, bn: bool) -> usize {
        cin * cout * 9 + cout + if bn { 2 * cout } else { 0 }
    }

    fn fc(i: usize, o: usize) -> usize {
        i * o + o
    }

    /// Every parameter to a multiple of an eighth of its tensor's largest
    /// magnitude, except the BatchNorm tensors (a stand-in quantizer that
    /// keeps BatchNorm f32 and leaves no layer all zeros).
    fn eighths(w: &Weights) -> Weights {
        let mut q = w.clone();
        for t in q.tensors.iter_mut().filter(|t| !t.role.is_bn()) {
            let step = t.data.iter().fold(0f32, |m, v| m.max(v.abs())) / 8.0;
            if step > 0.0 {
                t.data.iter_mut().for_each(|v| *v = (*v / step).round() * step);
            }
        }
        q
    }

    /// `layout`'s tensors with the folded weights of `folded` and BatchNorm
    /// made the identity: the net that computes what the folded one does.
    fn identity_batchnorm(layout: &Weights, folded: &Weights) -> Weights {
        let mut identity = layout.clone();
        for t in &mut identity.tensors {
            if let Some(f) = folded.tensors.iter().find(|f| f.name == t.name) {
                t.data = f.data.clone();
            }
            match t.role {
                ParamRole::BnGamma => t.data.fill(1.0),
                ParamRole::BnBeta | ParamRole::BnMean => t.data.fill(0.0),
                ParamRole::BnVar => t.data.fill((1.0 - BN_EPSILON) as f32),
                _ => {}
            }
        }
        identity
    }

    /// BatchNorm statistics and affine moved away from their initial 0 and 1,
    /// so that folding them changes the weights.
    fn spread_batchnorm(w: &mut Weights) {
        for (k, t) in w.tensors.iter_mut().enumerate().filter(|(_, t)| t.role.is_bn()) {
            let spread = |c: usize| ((c * 7 + k) % 11) as f32 / 10.0;
            match t.role {
                ParamRole::BnGamma | ParamRole::BnVar => t.data.iter_mut().enumerate().for_each(|(c, v)| *v = 0.5 + spread(c)),
                _ => t.data.iter_mut().enumerate().for_each(|(c, v)| *v = spread(c) - 0.5),
            }
        }
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}[{i}]: {a} against {b}");
        }
    }

    #[test]
    fn the_quantized_forward_is_the_scored_nets_and_passes_gradients_straight_through() {
        let ad = Device::flex().autodiff();
        let _rng = crate::models::seed_burn(&ad, 5);
        let net = ConvNet::new(ModelKind::Cnn, 10, &ad);
        let mut w = net.to_weights().unwrap();
        spread_batchnorm(&mut w);
        let net = ConvNet::from_weights(ModelKind::Cnn, 10, &w, &ad);
        let x: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let x = || Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 3, 32, 32]), &ad);
        let inference = |weights: &Weights| {
            let reference = ConvNet::from_weights(ModelKind::Cnn, 10, weights, &Device::flex());
            values(reference.forward(Tensor::from_data(x().into_data(), &Device::flex())))
        };

        // BatchNorm kept: the forward pass is the quantized net's at inference
        let q = eighths(&w);
        assert!(q.tensors.iter().zip(&w.tensors).any(|(a, b)| a.data != b.data));
        let y = net.forward_quantized(x(), &q).unwrap();
        close(&values(y.clone()), &inference(&q), 1e-4, "kept: output");
        // and its gradient is the quantized net's own, passed straight through
        let quantized = ConvNet::from_weights(ModelKind::Cnn, 10, &q, &ad);
        let yq = quantized.forward_quantized(x(), &q).unwrap();
        let (g, gq) = ((y.clone() * y).sum().backward(), (yq.clone() * yq).sum().backward());
        for (b, bq) in net.blocks.iter().zip(&quantized.blocks) {
            let a = b.conv.weight.val().grad(&g).expect("the f32 weight gets a gradient");
            let want = bq.conv.weight.val().grad(&gq).unwrap();
            let (a, want) = (a.into_data().try_to_vec::<f32>().unwrap(), want.into_data().try_to_vec::<f32>().unwrap());
            assert!(want.iter().any(|v| *v != 0.0));
            close(&a, &want, 1e-3, "kept: conv weight gradient");
        }

        // BatchNorm folded: the forward pass is that of a net whose BatchNorm
        // is the identity and whose convolutions are the quantized folded ones
        let folded = eighths(&crate::models::fold_batchnorm(&w, BN_EPSILON));
        assert!(!folded.tensors.iter().any(|t| t.role.is_bn()));
        let identity = identity_batchnorm(&q, &folded);
        let y = net.forward_quantized(x(), &folded).unwrap();
        close(&values(y.clone()), &inference(&identity), 1e-4, "folded: output");
        // the gradient reaches each f32 weight through the fold's scale
        let identity = ConvNet::from_weights(ModelKind::Cnn, 10, &identity, &ad);
        let yi = identity.forward_quantized(x(), &folded).unwrap();
        let (g, gi) = ((y.clone() * y).sum().backward(), (yi.clone() * yi).sum().backward());
        for (b, bi) in net.blocks.iter().zip(&identity.blocks) {
            let a = b.conv.weight.val().grad(&g).expect("the f32 weight gets a gradient").into_data().try_to_vec::<f32>().unwrap();
            let mut want = bi.conv.weight.val().grad(&gi).unwrap().into_data().try_to_vec::<f32>().unwrap();
            assert!(want.iter().any(|v| *v != 0.0));
            if let Some(bn) = &b.bn {
                let gamma = bn.gamma.val().into_data().try_to_vec::<f32>().unwrap();
                let var = bn.running_var.value().into_data().try_to_vec::<f32>().unwrap();
                let inner = want.len() / gamma.len();
                for (c, row) in want.chunks_mut(inner).enumerate() {
                    row.iter_mut().for_each(|v| *v *= gamma[c] / (var[c] + BN_EPSILON as f32).sqrt());
                }
            }
            close(&a, &want, 1e-3, "folded: conv weight gradient");
        }
        // quantized weights of another net are refused
        let mut other = q.clone();
        other.tensors.pop();
        assert!(net.forward_quantized(x(), &other).unwrap_err().to_string().contains("are not the net's"));
    }

    /// ResNet9's residual program takes the quantized tensors in the same
    /// order: its quantized forward pass is the scored net's, kept and folded,
    /// and every convolution gets a gradient.
    #[test]
    fn resnet9s_quantized_forward_is_the_scored_nets() {
        let ad = Device::flex().autodiff();
        let _rng = crate::models::seed_burn(&ad, 6);
        let mut w = ConvNet::new(ModelKind::Resnet9, 10, &ad).to_weights().unwrap();
        spread_batchnorm(&mut w);
        let net = ConvNet::from_weights(ModelKind::Resnet9, 10, &w, &ad);
        let x: Vec<f32> = (0..3 * 32 * 32).map(|i| ((i * 29 % 19) as f32 - 9.0) / 6.0).collect();
        let x = || Tensor::<4>::from_data(TensorData::new(x.clone(), [1, 3, 32, 32]), &ad);
        let inference = |weights: &Weights| {
            let reference = ConvNet::from_weights(ModelKind::Resnet9, 10, weights, &Device::flex());
            values(reference.forward(Tensor::from_data(x().into_data(), &Device::flex())))
        };
        let q = eighths(&w);
        let y = net.forward_quantized(x(), &q).unwrap();
        close(&values(y.clone()), &inference(&q), 1e-4, "kept: output");
        let folded = eighths(&crate::models::fold_batchnorm(&w, BN_EPSILON));
        let yf = net.forward_quantized(x(), &folded).unwrap();
        close(&values(yf.clone()), &inference(&identity_batchnorm(&q, &folded)), 1e-4, "folded: output");
        let g = (yf.clone() * yf).sum().backward();
        for (i, b) in net.blocks.iter().enumerate() {
            let grad = b.conv.weight.val().grad(&g).unwrap_or_else(|| panic!("block {i} gets no gradient"));
            assert!(grad.into_data().try_to_vec::<f32>().unwrap().iter().any(|v| *v != 0.0), "block {i}: zero gradient");
        }
    }

    #[test]
    fn parameter_counts_are_the_studys() {
        let device = Device::flex();
        for classes in [10, 100] {
            let cnn = conv(3, 32, true)
                + conv(32, 64, false)
                + conv(64, 128, true)
                + conv(128, 128, true)
                + conv(128, 256, true)
                + conv(256, 256, true)
                + fc(4096, 512)
                + fc(512, classes);
            let resnet9 = conv(3, 64, true)
                + conv(64, 128, true)
                + 2 * conv(128, 128, true)
                + conv(128, 256, true)
                + conv(256, 512, true)
                + 2 * conv(512, 512, true)
                + fc(512, classes);
            for (kind, expected) in [(ModelKind::Cnn, cnn), (ModelKind::Resnet9, resnet9)] {
                let w = ConvNet::new(kind, classes, &device).to_weights().unwrap();
                assert_eq!(w.trainable_params(), expected, "{kind:?} for {classes} classes");
                // plus the running mean and variance of every BatchNorm
                let bn_channels: usize = w.tensors.iter().filter(|t| t.role == ParamRole::BnGamma).map(|t| t.len()).sum();
                assert_eq!(w.num_params(), expected + 2 * bn_channels);
            }
        }
        // the rounded figures for 100 classes
        assert_eq!(ConvNet::new(ModelKind::Cnn, 100, &device).to_weights().unwrap().trainable_params(), 3_276_644);
        assert_eq!(ConvNet::new(ModelKind::Resnet9, 100, &device).to_weights().unwrap().trainable_params(), 6_621_540);
    }
}
