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
