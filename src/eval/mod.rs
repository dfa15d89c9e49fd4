//! Stage 4, evaluation: weights of many variants -> metrics on the test split.
//!
//! Input: [`Weights`] of V variants and a split. Output: one [`Scores`] per
//! variant (accuracy, or MSE and MAE in the target's own units), computed by
//! burn on the chosen device with the variants stacked on a leading axis.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::{Dataset, Table, Targets, Task};
use crate::error::{Error, Result};
use crate::models::{Weights, mlp};

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

/// One split on one device, ready to score variants of a dense net.
pub struct Evaluator {
    device: Device,
    task: Task,
    n: usize,
    x: Tensor<3>,
    labels: Option<Tensor<3, Int>>,
    targets: Option<Tensor<3>>,
    /// (mean, std) of the standardised regression target
    target_affine: (f32, f32),
    /// inputs of each layer under the fp32 weights [1, N, in], set by
    /// `share_prefixes`: a variant that quantizes only layer l starts there
    prefixes: Vec<Tensor<3>>,
}

impl Evaluator {
    pub fn new(dataset: &Dataset, table: &Table, device: &Device) -> Result<Evaluator> {
        let n = table.len();
        if n == 0 {
            return Err(Error::Eval("the evaluation split is empty".into()));
        }
        let features = table.sample_len();
        let x = Tensor::<3>::from_data(TensorData::new(table.x.clone(), [1, n, features]), device);
        let (labels, targets) = match &table.y {
            Targets::Classes(c) => {
                let v: Vec<i64> = c.iter().map(|&c| c as i64).collect();
                (Some(Tensor::<3, Int>::from_data(TensorData::new(v, [1, n, 1]), device)), None)
            }
            Targets::Values(v) => {
                let raw: Vec<f32> = v.iter().map(|&t| dataset.unscale_target(t)).collect();
                (None, Some(Tensor::<3>::from_data(TensorData::new(raw, [1, n, 1]), device)))
            }
        };
        let target_affine = match &dataset.target_scaler {
            Some(s) => (s.shift[0] as f32, s.scale[0] as f32),
            None => (0.0, 1.0),
        };
        let prefixes = vec![x.clone()];
        Ok(Evaluator { device: device.clone(), task: dataset.task, n, x, labels, targets, target_affine, prefixes })
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Stacks the dense-net layers of every variant: weight [V, in, out], bias [V, 1, out].
    fn stack(&self, variants: &[&Weights]) -> Result<Vec<(Tensor<3>, Tensor<3>)>> {
        let first = variants.first().ok_or_else(|| Error::Eval("no variants to score".into()))?;
        let v = variants.len();
        let mut layers = Vec::new();
        let mut i = 0;
        while i < first.tensors.len() {
            let w = &first.tensors[i];
            let b = first.tensors.get(i + 1).filter(|t| t.layer == w.layer && t.shape.len() == 1);
            let (din, dout) = (w.shape[0], w.shape[1]);
            let mut wd = Vec::with_capacity(v * din * dout);
            let mut bd = Vec::with_capacity(v * dout);
            for var in variants {
                wd.extend_from_slice(&var.tensors[i].data);
                match b {
                    Some(_) => bd.extend_from_slice(&var.tensors[i + 1].data),
                    None => bd.extend(std::iter::repeat_n(0.0, dout)),
                }
            }
            layers.push((
                Tensor::<3>::from_data(TensorData::new(wd, [v, din, dout]), &self.device),
                Tensor::<3>::from_data(TensorData::new(bd, [v, 1, dout]), &self.device),
            ));
            i += if b.is_some() { 2 } else { 1 };
        }
        Ok(layers)
    }

    /// Computes, once, every layer's input under the fp32 weights, so that
    /// variants that quantize one layer only start from it.
    pub fn share_prefixes(&mut self, fp32: &Weights) -> Result<()> {
        let layers = self.stack(&[fp32])?;
        let mut h = self.x.clone();
        let mut prefixes = vec![h.clone()];
        for (w, b) in layers.iter().take(layers.len() - 1) {
            h = burn::tensor::activation::relu(h.matmul(w.clone()) + b.clone());
            prefixes.push(h.clone());
        }
        self.prefixes = prefixes;
        Ok(())
    }

    /// Scores every variant; all of them share one forward pass. `start` is the
    /// first layer that differs from fp32 (0 unless only later layers are quantized).
    pub fn score(&self, variants: &[&Weights], start: usize) -> Result<Vec<Scores>> {
        let layers = self.stack(variants)?;
        self.score_layers(&layers, variants.len(), start)
    }

    /// Scores `v` variants given as per-layer tensors already on the device:
    /// weight [V or 1, in, out] and bias [V or 1, 1, out] (1 = shared by all).
    /// Layers before `start` must be the fp32 ones (see `share_prefixes`).
    pub fn score_layers(&self, layers: &[(Tensor<3>, Tensor<3>)], v: usize, start: usize) -> Result<Vec<Scores>> {
        let x = self.prefixes.get(start).cloned().ok_or_else(|| Error::Eval(format!("no shared input for layer {start}: call share_prefixes")))?;
        let out = mlp::forward_variants(x, layers, start);
        let out = if out.dims()[0] == v { out } else { out.expand([v as i64, -1, -1]) };
        self.metrics(out, v)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Metrics from the outputs [V, N, outputs].
    fn metrics(&self, out: Tensor<3>, v: usize) -> Result<Vec<Scores>> {
        let n = self.n as f64;
        let read = |t: Tensor<1>| -> Result<Vec<f64>> {
            t.try_to_vec_as::<f32>()
                .map(|v| v.into_iter().map(f64::from).collect())
                .map_err(|e| Error::Eval(format!("reading scores back: {e:?}")))
        };
        match self.task {
            Task::Classification { classes } => {
                let labels = self.labels.clone().expect("classifier has labels");
                let pred = out.clone().argmax(2); // [V, N, 1]
                let correct = pred.equal(labels.clone().expand([v, self.n, 1])).float().sum_dim(1).reshape([v]);
                let acc = read(correct)?;
                let top5 = if classes > 5 {
                    let idx = out.argtopk(5, 2); // [V, N, 5]
                    let hit = idx.equal(labels.expand([v, self.n, 5])).float().sum_dim(2).sum_dim(1).reshape([v]);
                    Some(read(hit)?)
                } else {
                    None
                };
                Ok((0..v)
                    .map(|i| Scores { primary: acc[i] / n, secondary: top5.as_ref().map(|t| t[i] / n) })
                    .collect())
            }
            Task::Regression => {
                let (mean, std) = self.target_affine;
                let pred = out.mul_scalar(std).add_scalar(mean);
                let err = pred - self.targets.clone().expect("regressor has targets");
                let mse = read(err.clone().powi_scalar(2).sum_dim(1).reshape([v]))?;
                let mae = read(err.abs().sum_dim(1).reshape([v]))?;
                Ok((0..v).map(|i| Scores { primary: mse[i] / n, secondary: Some(mae[i] / n) }).collect())
            }
        }
    }
}
