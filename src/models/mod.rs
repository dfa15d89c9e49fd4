//! Stage 2a, models: the networks the study used, as burn modules for training
//! and as plain weight lists for quantization and batched evaluation.
//!
//! Input: a model name and the dataset's shape. Output: a module to train, and
//! [`Weights`], the host copy of its parameters in a fixed order.

pub mod cnn;
pub mod mlp;

use std::sync::{Mutex, MutexGuard, PoisonError};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::data::{DatasetId, Task};
use crate::error::{Error, Result};

/// burn's backends keep one random generator per process: `Device::seed` sets
/// it, and weight initialisation and dropout draw from it. Two trainings at
/// once in one process (parallel tests, a library user's threads) would
/// interleave their draws, and neither would be its seed's; whatever seeds
/// burn holds this lock until its last draw.
static BURN_RNG: Mutex<()> = Mutex::new(());

/// Seeds burn's process-wide random generator with `seed` and keeps it to the
/// caller until the guard drops (a second caller waits): everything drawn
/// meanwhile depends on `seed` alone. Not reentrant: drop the guard before
/// anything that seeds again (`train::fit` does).
pub fn seed_burn(device: &Device, seed: u64) -> MutexGuard<'static, ()> {
    let guard = BURN_RNG.lock().unwrap_or_else(PoisonError::into_inner);
    device.seed(seed);
    guard
}

/// A model's randomly initialised weights, drawn on the CPU from `seed` alone
/// (holding [`seed_burn`]): the dry run and the benchmark time scoring with
/// them, and tests use them as a net of the right shape.
pub fn initial_weights(spec: &ModelSpec, seed: u64) -> Result<Weights> {
    let flex = Device::flex();
    let _rng = seed_burn(&flex, seed);
    if spec.kind.is_conv() { cnn::ConvNet::new(spec.kind, spec.outputs, &flex).to_weights() } else { mlp::Mlp::new(spec, &flex).to_weights() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One hidden layer of 10 units (the study's "simple" dense net).
    MlpSimple,
    /// Four hidden layers with dropout 0.1 (the study's "complex" dense net; see --dropout).
    MlpComplex,
    /// The study's VGG-style CNN with BatchNorm (3.28 M parameters for 100 classes).
    Cnn,
    /// ResNet9 (6.62 M parameters for 100 classes).
    Resnet9,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::MlpSimple => "mlp-simple",
            ModelKind::MlpComplex => "mlp-complex",
            ModelKind::Cnn => "cnn",
            ModelKind::Resnet9 => "resnet9",
        }
    }

    pub fn is_conv(self) -> bool {
        matches!(self, ModelKind::Cnn | ModelKind::Resnet9)
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A model's architecture, resolved for one dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub kind: ModelKind,
    pub inputs: usize,
    pub outputs: usize,
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

/// Conv nets take images, dense nets tabular rows: the error names both.
pub fn check_data_kind(kind: ModelKind, dataset: DatasetId) -> Result<()> {
    let images = dataset.is_image();
    if kind.is_conv() == images {
        return Ok(());
    }
    Err(Error::config(
        "--model",
        format!(
            "{kind} needs {} data; {dataset} is {}",
            if kind.is_conv() { "image (fashion-mnist, cifar100)" } else { "tabular (churn, telescope, california, mv)" },
            if images { "images" } else { "tabular" }
        ),
    ))
}

impl ModelSpec {
    /// The study's architectures: `mlp-complex` is [20, 40, 60, 30] for the
    /// classifiers and [50, 100, 100, 50] for the regressors.
    pub fn new(kind: ModelKind, dataset: DatasetId, inputs: usize, task: Task) -> Result<ModelSpec> {
        check_data_kind(kind, dataset)?;
        let (hidden, dropout) = match kind {
            ModelKind::Cnn | ModelKind::Resnet9 => (vec![], 0.0),
            ModelKind::MlpSimple => (vec![10], 0.0),
            ModelKind::MlpComplex => match task {
                Task::Classification { .. } => (vec![20, 40, 60, 30], 0.1),
                Task::Regression => (vec![50, 100, 100, 50], 0.1),
            },
        };
        if inputs == 0 {
            return Err(Error::config("--dataset", format!("{dataset} has no features")));
        }
        Ok(ModelSpec { kind, inputs, outputs: task.outputs(), hidden, dropout })
    }

    /// Layer widths from input to output.
    pub fn widths(&self) -> Vec<usize> {
        let mut w = vec![self.inputs];
        w.extend(&self.hidden);
        w.push(self.outputs);
        w
    }
}

/// What a parameter tensor is, for the quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamRole {
    /// A layer's weight; `channel_axis` is its output-channel axis.
    Weight { channel_axis: usize },
    Bias,
    /// BatchNorm scale, shift and running statistics (one value per channel).
    BnGamma,
    BnBeta,
    BnMean,
    BnVar,
}

impl ParamRole {
    pub fn is_bn(self) -> bool {
        matches!(self, ParamRole::BnGamma | ParamRole::BnBeta | ParamRole::BnMean | ParamRole::BnVar)
    }
}

/// One parameter tensor on the host, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    /// Module path, e.g. `layers.0.weight`.
    pub name: String,
    /// The layer it belongs to, e.g. `layers.0` (the unit of per-layer scope).
    pub layer: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
    pub data: Vec<f32>,
}

impl ParamTensor {
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// What the quantizer and the evaluator see of a trained net: a conv net's
/// tensors with BatchNorm folded into the convolutions under `bn` fold, and
/// the program that scores them; a dense net's tensors as they are, with no
/// program.
pub fn scored_layout(kind: ModelKind, weights: Weights, bn: crate::quant::apply::BnMode) -> Result<(Weights, Option<Vec<cnn::Op>>)> {
    if !kind.is_conv() {
        return Ok((weights, None));
    }
    let folded = bn == crate::quant::apply::BnMode::Fold;
    let weights = if folded { fold_batchnorm(&weights, cnn::BN_EPSILON) } else { weights };
    let ops = cnn::program(kind, &weights, folded)?;
    Ok((weights, Some(ops)))
}

/// Folds every BatchNorm into the convolution before it, with the running
/// statistics: scale = gamma / sqrt(var + eps), w' = w * scale (per output
/// channel), b' = (b - mean) * scale + beta. The BatchNorm tensors are removed.
pub fn fold_batchnorm(weights: &Weights, epsilon: f64) -> Weights {
    let t = &weights.tensors;
    let find = |layer: &str, role: ParamRole| t.iter().find(|x| x.layer == layer && x.role == role);
    let mut out = Vec::new();
    for p in t {
        if p.role.is_bn() {
            continue;
        }
        let (Some(g), Some(b), Some(m), Some(v)) =
            (find(&p.layer, ParamRole::BnGamma), find(&p.layer, ParamRole::BnBeta), find(&p.layer, ParamRole::BnMean), find(&p.layer, ParamRole::BnVar))
        else {
            out.push(p.clone());
            continue;
        };
        let scale: Vec<f64> = g.data.iter().zip(&v.data).map(|(&g, &v)| g as f64 / (v as f64 + epsilon).sqrt()).collect();
        let mut q = p.clone();
        match p.role {
            ParamRole::Weight { channel_axis: 0 } => {
                let inner = p.len() / scale.len();
                for (c, row) in q.data.chunks_mut(inner).enumerate() {
                    for w in row {
                        *w = (*w as f64 * scale[c]) as f32;
                    }
                }
                out.push(q);
                if find(&p.layer, ParamRole::Bias).is_none() {
                    let data = (0..scale.len()).map(|c| (b.data[c] as f64 - m.data[c] as f64 * scale[c]) as f32).collect();
                    out.push(ParamTensor { name: p.name.replace(".weight", ".bias"), layer: p.layer.clone(), shape: vec![scale.len()], role: ParamRole::Bias, data });
                }
            }
            ParamRole::Bias => {
                for (c, x) in q.data.iter_mut().enumerate() {
                    *x = ((*x as f64 - m.data[c] as f64) * scale[c] + b.data[c] as f64) as f32;
                }
                out.push(q);
            }
            _ => out.push(q),
        }
    }
    Weights { tensors: out }
}

/// All parameters of a model in a fixed order (the tensor index of the
/// stochastic-rounding hash is the position in this list).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    pub tensors: Vec<ParamTensor>,
}

impl Weights {
    pub fn num_params(&self) -> usize {
        self.tensors.iter().map(|t| t.len()).sum()
    }

    /// Trainable parameters, as PyTorch counts them (BatchNorm running statistics excluded).
    pub fn trainable_params(&self) -> usize {
        self.tensors.iter().filter(|t| !matches!(t.role, ParamRole::BnMean | ParamRole::BnVar)).map(|t| t.len()).sum()
    }

    /// sha256 over every tensor's name, shape and f32 bits (little-endian on
    /// x86-64 and aarch64), hex: two runs
    /// scored the same net exactly when these agree (the checkpoint key names
    /// only the settings, and the same settings train other weights on CPUs
    /// with other caches: [`crate::host`]).
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in &self.tensors {
            h.update((t.name.len() as u64).to_le_bytes());
            h.update(t.name.as_bytes());
            h.update((t.shape.len() as u64).to_le_bytes());
            for &d in &t.shape {
                h.update((d as u64).to_le_bytes());
            }
            h.update(bytemuck::cast_slice::<f32, u8>(&t.data));
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Refuses NaN, infinity and magnitudes no quantizer range can hold, naming the tensor.
    pub fn check_finite(&self, origin: &std::path::Path) -> Result<()> {
        for t in &self.tensors {
            if let Some((i, v)) = t.data.iter().enumerate().find(|(_, v)| !v.is_finite() || v.abs() > 1e30) {
                return Err(Error::Checkpoint {
                    path: origin.to_path_buf(),
                    message: format!("tensor {} holds {v} at element {i}; refusing to quantize a model with non-finite weights", t.name),
                });
            }
        }
        Ok(())
    }

    /// Distinct layer names, in order.
    pub fn layers(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.tensors {
            if !out.contains(&t.layer) {
                out.push(t.layer.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sha256_changes_with_any_bit_name_or_shape() {
        let w = Weights {
            tensors: vec![ParamTensor {
                name: "layers.0.weight".into(),
                layer: "layers.0".into(),
                shape: vec![2, 3],
                role: ParamRole::Weight { channel_axis: 0 },
                data: vec![0.5, -1.0, 2.0, 0.0, 3.5, -0.25],
            }],
        };
        let base = w.sha256();
        assert_eq!(base.len(), 64);
        assert_eq!(w.clone().sha256(), base);
        let mut bit = w.clone();
        bit.tensors[0].data[5] = f32::from_bits(bit.tensors[0].data[5].to_bits() ^ 1);
        let mut name = w.clone();
        name.tensors[0].name = "layers.1.weight".into();
        let mut shape = w.clone();
        shape.tensors[0].shape = vec![3, 2];
        let mut zero = w.clone();
        zero.tensors[0].data[3] = -0.0;
        for other in [bit, name, shape, zero] {
            assert_ne!(other.sha256(), base);
        }
    }
}
