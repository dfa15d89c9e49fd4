//! The study's dense nets: Linear -> ReLU (-> Dropout) per hidden layer, then a
//! Linear output layer (2 logits for classifiers, 1 value for regressors).

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::{ModelSpec, ParamRole, ParamTensor, Weights};
use crate::error::{Error, Result};

#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub dropout: Dropout,
}

impl Mlp {
    /// Freshly initialised: the weights are drawn from burn's process-wide
    /// generator when first read (seeded: [`super::initial_weights`]).
    pub fn new(spec: &ModelSpec, device: &Device) -> Mlp {
        let widths = spec.widths();
        let layers = widths.windows(2).map(|w| LinearConfig::new(w[0], w[1]).init(device)).collect();
        Mlp { layers, dropout: DropoutConfig::new(spec.dropout).init() }
    }

    /// `x`: [batch, inputs] -> [batch, outputs]. Dropout acts only on autodiff
    /// (training) inputs.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = self.dropout.forward(relu(h));
            }
        }
        h
    }

    /// [`Mlp::forward`] with every parameter replaced by its value in
    /// `quantized` ([`Mlp::to_weights`]' order): the forward pass sees
    /// `w + (q - w)` with the difference detached, so the gradient reaches `w`
    /// as if the rounding were the identity (the straight-through estimator).
    pub fn forward_quantized(&self, x: Tensor<2>, quantized: &Weights) -> Tensor<2> {
        let device = x.device();
        let straight_through = |w: Tensor<2>, q: &ParamTensor| {
            let q = Tensor::<2>::from_data(TensorData::new(q.data.clone(), w.dims().to_vec()), &device);
            w.clone() + (q - w).detach()
        };
        let mut it = quantized.tensors.iter();
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let w = straight_through(layer.weight.val(), it.next().expect("one weight per layer"));
            h = h.matmul(w);
            if let Some(b) = &layer.bias {
                let b = straight_through(b.val().unsqueeze::<2>(), it.next().expect("one bias per layer"));
                h = h + b;
            }
            if i < last {
                h = self.dropout.forward(relu(h));
            }
        }
        h
    }

    /// The host copy of the parameters: for each layer, weight [in, out] (output
    /// channel on axis 1) then bias [out].
    pub fn to_weights(&self) -> Result<Weights> {
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_name = format!("layers.{i}");
            let w = layer.weight.val();
            let shape = w.dims().to_vec();
            let data = w.try_to_vec_as::<f32>().map_err(|e| Error::Training(format!("reading {layer_name}.weight: {e:?}")))?;
            tensors.push(ParamTensor {
                name: format!("{layer_name}.weight"),
                layer: layer_name.clone(),
                shape,
                role: ParamRole::Weight { channel_axis: 1 },
                data,
            });
            if let Some(b) = &layer.bias {
                let b = b.val();
                let shape = b.dims().to_vec();
                let data = b.try_to_vec_as::<f32>().map_err(|e| Error::Training(format!("reading {layer_name}.bias: {e:?}")))?;
                tensors.push(ParamTensor { name: format!("{layer_name}.bias"), layer: layer_name, shape, role: ParamRole::Bias, data });
            }
        }
        Ok(Weights { tensors })
    }

    /// A module holding `weights` (in [`Mlp::to_weights`]'s order) on `device`.
    pub fn from_weights(spec: &ModelSpec, weights: &Weights, device: &Device) -> Mlp {
        let mut mlp = Mlp::new(spec, device);
        let mut it = weights.tensors.iter();
        for layer in &mut mlp.layers {
            let w = it.next().expect("one weight per layer");
            layer.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w.data.clone(), w.shape.clone()), device));
            if layer.bias.is_some() {
                let b = it.next().expect("one bias per layer");
                layer.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b.data.clone(), b.shape.clone()), device)));
            }
        }
        mlp
    }
}

/// The evaluation forward pass for V variants at once, from layer `start` on:
/// `x` is that layer's input [1 or V, N, in] (shared by all variants when its
/// first axis is 1), each layer a weight [V or 1, in, out] and a bias
/// [V or 1, 1, out]; returns [V, N, outputs]. `layers[..start]` are not used.
pub fn forward_variants(x: Tensor<3>, layers: &[(Tensor<3>, Option<Tensor<3>>)], start: usize) -> Tensor<3> {
    let last = layers.len() - 1;
    let mut h = x;
    for (i, (w, b)) in layers.iter().enumerate().skip(start) {
        h = h.matmul(w.clone());
        if let Some(b) = b {
            h = h + b.clone();
        }
        if i < last {
            h = relu(h);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DatasetId, Task};
    use crate::models::ModelKind;

    #[test]
    fn the_quantized_forward_is_the_quantized_nets_and_passes_gradients_straight_through() {
        let device = Device::flex().autodiff();
        let _rng = crate::models::seed_burn(&device, 4);
        let spec = ModelSpec::new(ModelKind::MlpComplex, DatasetId::Mv, 10, Task::Regression).unwrap();
        let spec = ModelSpec { dropout: 0.0, ..spec };
        let mlp = Mlp::new(&spec, &device);
        // a stand-in quantizer: every parameter to a multiple of 1/8
        let mut q = mlp.to_weights().unwrap();
        for t in &mut q.tensors {
            t.data.iter_mut().for_each(|v| *v = (*v * 8.0).round() / 8.0);
        }
        assert!(q.tensors.iter().zip(&mlp.to_weights().unwrap().tensors).any(|(a, b)| a.data != b.data));
        let x: Vec<f32> = (0..7 * 10).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [7, 10]), &device);
        let quantized = Mlp::from_weights(&spec, &q, &device);
        let (y, yq) = (mlp.forward_quantized(x.clone(), &q), quantized.forward(x));
        let (a, b) = (y.clone().into_data().try_to_vec::<f32>().unwrap(), yq.clone().into_data().try_to_vec::<f32>().unwrap());
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} against {b}");
        }
        // d(sum y)/dw of the f32 net is the quantized net's d(sum y)/dq
        let (g, gq) = ((y.clone() * y).sum().backward(), (yq.clone() * yq).sum().backward());
        for (layer, lq) in mlp.layers.iter().zip(&quantized.layers) {
            let a = layer.weight.val().grad(&g).expect("the f32 weight gets a gradient").into_data().try_to_vec::<f32>().unwrap();
            let b = lq.weight.val().grad(&gq).unwrap().into_data().try_to_vec::<f32>().unwrap();
            assert!(b.iter().any(|v| *v != 0.0));
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} against {b}");
            }
            let a = layer.bias.as_ref().unwrap().val().grad(&g).expect("the f32 bias gets a gradient").into_data().try_to_vec::<f32>().unwrap();
            let b = lq.bias.as_ref().unwrap().val().grad(&gq).unwrap().into_data().try_to_vec::<f32>().unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} against {b}");
            }
        }
    }
}
