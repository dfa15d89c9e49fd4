//! Stage 2a, models: the networks the study used, as burn modules for training
//! and as plain weight lists for quantization and batched evaluation.
//!
//! Input: a model name and the dataset's shape. Output: a module to train, and
//! [`Weights`], the host copy of its parameters in a fixed order.

pub mod mlp;

use serde::{Deserialize, Serialize};

use crate::data::{DatasetId, Task};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One hidden layer of 10 units (the study's "simple" dense net).
    MlpSimple,
    /// Four hidden layers with dropout 0.1 (the study's "complex" dense net).
    MlpComplex,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::MlpSimple => "mlp-simple",
            ModelKind::MlpComplex => "mlp-complex",
        }
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

impl ModelSpec {
    /// The study's architectures: `mlp-complex` is [20, 40, 60, 30] for the
    /// classifiers and [50, 100, 100, 50] for the regressors.
    pub fn new(kind: ModelKind, dataset: DatasetId, inputs: usize, task: Task) -> Result<ModelSpec> {
        let (hidden, dropout) = match kind {
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
