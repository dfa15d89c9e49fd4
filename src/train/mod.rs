//! Stage 2b, training: a dataset and a model spec -> trained weights, cached as a
//! checkpoint keyed by everything that decides them.
//!
//! Input: [`Dataset`], [`ModelSpec`], [`TrainSettings`], a burn device. Output:
//! [`Weights`] that scored best on the validation split, and a checkpoint
//! (burn record + meta.json) that the next run with the same key reuses.

pub mod checkpoint;
pub mod qat;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Targets, Task};
use crate::error::{Error, Result};
use crate::eval::{Evaluator, improves};
use crate::models::cnn::ConvNet;
use crate::models::mlp::Mlp;
use crate::models::{ModelKind, ModelSpec, Weights};
use crate::quant::apply::BnMode;
use crate::progress::{Progress, human_duration};

/// The optimizer, as recorded in checkpoint keys: Adam with PyTorch's epsilon
/// (the 2020 study trained with PyTorch; burn's default epsilon is 1e-5).
pub const OPTIMIZER: &str = "adam(beta1=0.9, beta2=0.999, epsilon=1e-8)";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub epochs: usize,
    pub batch_size: usize,
    /// the learning rate (the peak of the one-cycle schedule when it is on)
    pub learning_rate: f64,
    pub seed: u32,
    /// L2 penalty added to the gradients (0: none)
    pub weight_decay: f64,
    /// clip every gradient element to +-this (None: no clipping)
    pub grad_clip: Option<f32>,
    /// one-cycle learning rate: cosine warm-up from lr/25 over 30 % of the
    /// steps, then cosine annealing to lr/1e4 (PyTorch's OneCycleLR defaults)
    pub one_cycle: bool,
    /// random crop (4 pixels of reflection padding) and horizontal flip
    pub augment: bool,
    /// training rows used (None: all)
    pub train_limit: Option<usize>,
    /// validation rows used to pick the weights (None: all)
    pub eval_limit: Option<usize>,
    /// --qat: fine-tune the checkpoint `from` with its weights fake-quantized
    /// (absent for plain training, so earlier checkpoint keys stay as they were)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<qat::QatSettings>,
}

impl TrainSettings {
    /// The study's defaults: 10 epochs for dense classifiers, 20 for regressors;
    /// 8 for the conv nets (the ResNet9 recipe the study followed).
    pub fn default_epochs(task: Task, conv: bool) -> usize {
        match (task, conv) {
            (_, true) => 8,
            (Task::Classification { .. }, false) => 10,
            (Task::Regression, false) => 20,
        }
    }
}

/// "1 epoch", "3 epochs".
pub fn epochs_text(n: usize) -> String {
    if n == 1 { "1 epoch".into() } else { format!("{n} epochs") }
}

/// The learning rate at `step` of `total` under the one-cycle schedule.
pub fn one_cycle_lr(step: usize, total: usize, max_lr: f64) -> f64 {
    let warm = ((total as f64) * 0.3).max(1.0);
    let (start, end, t) = if (step as f64) < warm {
        (max_lr / 25.0, max_lr, step as f64 / warm)
    } else {
        (max_lr, max_lr / 25.0 / 1e4, (step as f64 - warm) / ((total as f64 - warm).max(1.0)))
    };
    end + (start - end) * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()) / 2.0
}

/// What training produced, for config.json and the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    /// when the kept weights were taken, in epochs (validation is checked four
    /// times per epoch; the best on the validation split is kept)
    pub best_epoch: f64,
    pub valid_metric: f64,
    /// mean training loss of each epoch
    pub epoch_losses: Vec<f64>,
    pub seconds: f64,
    pub device: String,
    /// the machine it trained on ([`crate::host::describe`]): on the CPU,
    /// conv nets train to other float roundings on CPUs with other caches
    /// (empty in checkpoints made before it was recorded)
    #[serde(default)]
    pub host: String,
}

/// How often per epoch the validation split is scored to pick the weights to keep.
pub const VALIDATIONS_PER_EPOCH: usize = 4;

/// A network burn can train: builds its input from host rows.
pub trait Trainable: Module + Sized {
    fn forward_rows(&self, x: Vec<f32>, rows: usize, sample_shape: &[usize], device: &Device) -> Tensor<2>;
    fn host_weights(&self) -> Result<Weights>;
    /// The forward pass with the parameters replaced by `quantized` (in
    /// [`Trainable::host_weights`]' order) and gradients passed straight
    /// through to the f32 parameters.
    fn forward_rows_quantized(&self, x: Vec<f32>, rows: usize, sample_shape: &[usize], device: &Device, quantized: &Weights) -> Result<Tensor<2>>;
}

impl Trainable for Mlp {
    fn forward_rows(&self, x: Vec<f32>, rows: usize, sample_shape: &[usize], device: &Device) -> Tensor<2> {
        self.forward(Tensor::from_data(TensorData::new(x, [rows, sample_shape.iter().product()]), device))
    }
    fn host_weights(&self) -> Result<Weights> {
        self.to_weights()
    }
    fn forward_rows_quantized(&self, x: Vec<f32>, rows: usize, sample_shape: &[usize], device: &Device, quantized: &Weights) -> Result<Tensor<2>> {
        Ok(self.forward_quantized(Tensor::from_data(TensorData::new(x, [rows, sample_shape.iter().product()]), device), quantized))
    }
}

impl Trainable for ConvNet {
    fn forward_rows(&self, x: Vec<f32>, rows: usize, s: &[usize], device: &Device) -> Tensor<2> {
        self.forward(Tensor::from_data(TensorData::new(x, [rows, s[0], s[1], s[2]]), device))
    }
    fn host_weights(&self) -> Result<Weights> {
        self.to_weights()
    }
    fn forward_rows_quantized(&self, x: Vec<f32>, rows: usize, s: &[usize], device: &Device, quantized: &Weights) -> Result<Tensor<2>> {
        self.forward_quantized(Tensor::from_data(TensorData::new(x, [rows, s[0], s[1], s[2]]), device), quantized)
    }
}

/// Writes one augmented image: a random crop of the image padded by 4 pixels
/// (by reflection) and, half the time, a horizontal flip.
fn augment_into(src: &[f32], shape: &[usize], rng: &mut Xoshiro256PlusPlus, out: &mut Vec<f32>) {
    let (c, h, w) = (shape[0], shape[1] as i64, shape[2] as i64);
    let dy = rng.random_range(-4i64..=4);
    let dx = rng.random_range(-4i64..=4);
    let flip = rng.random_bool(0.5);
    let reflect = |v: i64, n: i64| if v < 0 { -v } else if v >= n { 2 * n - 2 - v } else { v };
    for ch in 0..c {
        for y in 0..h {
            let sy = reflect(y + dy, h);
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = reflect(xx + dx, w);
                out.push(src[ch * (h * w) as usize + (sy * w + sx) as usize]);
            }
        }
    }
}

/// Trains `spec` on `dataset.train`, keeping the weights that score best on
/// `dataset.valid` (checked [`VALIDATIONS_PER_EPOCH`] times per epoch).
///
/// With `settings.qat`, fine-tunes `start` (the checkpoint it names) with its
/// weights fake-quantized: validation scores the quantized weights, and
/// `start` itself is the first candidate, so the kept weights never quantize
/// worse on validation than the weights the fine-tuning began from.
pub fn fit(spec: &ModelSpec, dataset: &Dataset, settings: &TrainSettings, start: Option<&Weights>, device: &Device, progress: &Progress) -> Result<(Weights, TrainSummary)> {
    let ad = device.clone().autodiff();
    // initialisation, dropout and nothing else in this process draw from it
    let _rng = crate::models::seed_burn(&ad, settings.seed as u64);
    if settings.qat.is_some() && start.is_none() {
        return Err(Error::Training("quantization-aware training starts from trained weights; none were given".into()));
    }
    if spec.kind.is_conv() {
        let classes = dataset.task.outputs();
        let model = match start {
            Some(w) => ConvNet::from_weights(spec.kind, classes, w, &ad),
            None => ConvNet::new(spec.kind, classes, &ad),
        };
        fit_model(model, spec.kind, dataset, settings, device, progress)
    } else {
        let model = match start {
            Some(w) => Mlp::from_weights(spec, w, &ad),
            None => Mlp::new(spec, &ad),
        };
        fit_model(model, spec.kind, dataset, settings, device, progress)
    }
}

fn fit_model<M: Trainable>(
    mut model: M,
    kind: ModelKind,
    dataset: &Dataset,
    settings: &TrainSettings,
    device: &Device,
    progress: &Progress,
) -> Result<(Weights, TrainSummary)> {
    let start = std::time::Instant::now();
    if settings.epochs == 0 || settings.batch_size == 0 {
        return Err(Error::config("--epochs/--batch-size", "must be at least 1"));
    }
    let ad = device.clone().autodiff();
    // keep in step with OPTIMIZER
    let mut adam = AdamConfig::new().with_epsilon(1e-8);
    if settings.weight_decay > 0.0 {
        adam = adam.with_weight_decay(Some(WeightDecayConfig::new(settings.weight_decay as f32)));
    }
    if let Some(c) = settings.grad_clip {
        adam = adam.with_grad_clipping(Some(burn::grad_clipping::GradientClippingConfig::Value(c)));
    }
    let mut optim = adam.init();
    let ce = CrossEntropyLossConfig::new().init(&ad);
    let train = &dataset.train;
    let shape = train.sample_shape.clone();
    let features = train.sample_len();
    let n = settings.train_limit.map_or(train.len(), |l| l.min(train.len()));
    let steps_per_epoch = n.div_ceil(settings.batch_size);
    let total_steps = settings.epochs * steps_per_epoch;
    let bar = progress.bar(total_steps as u64, "training");
    // validation scores the weights as the quantizer sees them: with --qat
    // --bn fold, BatchNorm folded into the convolutions
    let bn = settings.qat.as_ref().and_then(|q| q.bn).unwrap_or(BnMode::Keep);
    let (layout, ops) = crate::models::scored_layout(kind, model.valid().host_weights()?, bn)?;
    let valid_eval = Evaluator::new(dataset, &dataset.valid, device, &layout, ops, 128)?;

    // what validation scores: the weights themselves, or with --qat their
    // quantized form
    let scored = |weights: &Weights| -> Result<f64> {
        match &settings.qat {
            Some(q) => Ok(valid_eval.score_all(&q.quantize(weights)?)?.primary),
            None => Ok(valid_eval.score_all(weights)?.primary),
        }
    };
    let mut best: Option<(f64, f64, Weights)> = None;
    let mut last_valid = f64::NAN;
    if settings.qat.is_some() {
        let weights = model.valid().host_weights()?;
        last_valid = scored(&weights)?;
        best = Some((0.0, last_valid, weights));
    }
    let mut epoch_losses = Vec::new();
    let mut order: Vec<usize> = (0..n).collect();
    let mut step_no = 0;
    for epoch in 0..settings.epochs {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(((settings.seed as u64) << 32) | epoch as u64);
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let check_every = steps_per_epoch.div_ceil(VALIDATIONS_PER_EPOCH);
        for (step, batch) in order.chunks(settings.batch_size).enumerate() {
            let b = batch.len();
            let mut xs = Vec::with_capacity(b * features);
            for &r in batch {
                let row = &train.x[r * features..(r + 1) * features];
                if settings.augment && shape.len() == 3 {
                    augment_into(row, &shape, &mut rng, &mut xs);
                } else {
                    xs.extend_from_slice(row);
                }
            }
            let out = match &settings.qat {
                Some(q) => model.forward_rows_quantized(xs, b, &shape, &ad, &q.quantize(&model.valid().host_weights()?)?)?,
                None => model.forward_rows(xs, b, &shape, &ad),
            };
            let loss = match &train.y {
                Targets::Classes(c) => {
                    let ys: Vec<i64> = batch.iter().map(|&r| c[r] as i64).collect();
                    ce.forward(out, Tensor::<1, Int>::from_data(TensorData::new(ys, [b]), &ad))
                }
                Targets::Values(v) => {
                    let ys: Vec<f32> = batch.iter().map(|&r| v[r]).collect();
                    MseLoss::new().forward(out, Tensor::<2>::from_data(TensorData::new(ys, [b, 1]), &ad), Reduction::Mean)
                }
            };
            loss_sum += loss.clone().into_scalar::<f32>() as f64 * b as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = if settings.one_cycle { one_cycle_lr(step_no, total_steps, settings.learning_rate) } else { settings.learning_rate };
            model = optim.step(lr, model, grads);
            step_no += 1;
            bar.inc(1);
            if (step + 1) % check_every == 0 || step + 1 == steps_per_epoch {
                let weights = model.valid().host_weights()?;
                let metric = scored(&weights)?;
                let at = epoch as f64 + (step + 1) as f64 / steps_per_epoch as f64;
                if best.as_ref().is_none_or(|(_, m, _)| improves(dataset.task, metric, *m)) {
                    best = Some((at, metric, weights));
                }
                last_valid = metric;
            }
        }
        let mean_loss = loss_sum / n as f64;
        if !mean_loss.is_finite() {
            return Err(Error::Training(format!("the training loss became {mean_loss} in epoch {}", epoch + 1)));
        }
        epoch_losses.push(mean_loss);
        bar.set_message(format!("epoch {}/{} loss {mean_loss:.4} valid {last_valid:.4}", epoch + 1, settings.epochs));
        // measured time so far and its projection over the epochs left: a
        // better guide than the estimate printed before training
        let elapsed = start.elapsed().as_secs_f64();
        let left = settings.epochs - epoch - 1;
        let timing = if left > 0 {
            format!("{} so far, about {} left", human_duration(elapsed), human_duration(elapsed / (epoch + 1) as f64 * left as f64))
        } else {
            human_duration(elapsed)
        };
        progress.log(&format!("epoch {:>3}/{}: loss {mean_loss:.4}, validation {last_valid:.4} ({timing})", epoch + 1, settings.epochs));
    }
    bar.finish_and_clear();
    let (best_epoch, valid_metric, weights) = best.expect("at least one step ran");
    Ok((
        weights,
        TrainSummary {
            best_epoch,
            valid_metric,
            epoch_losses,
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{device:?}"),
            host: crate::host::describe().into(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_to_the_peak_then_anneals() {
        let total = 1000;
        assert!((one_cycle_lr(0, total, 0.01) - 0.01 / 25.0).abs() < 1e-12);
        assert!((one_cycle_lr(300, total, 0.01) - 0.01).abs() < 1e-12);
        assert!(one_cycle_lr(999, total, 0.01) < 1e-5);
        assert!(one_cycle_lr(150, total, 0.01) < one_cycle_lr(250, total, 0.01));
    }

    #[test]
    fn augmentation_keeps_shape_and_values_of_the_image() {
        let shape = [3, 32, 32];
        let src: Vec<f32> = (0..3 * 32 * 32).map(|i| i as f32).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let mut out = Vec::new();
        augment_into(&src, &shape, &mut rng, &mut out);
        assert_eq!(out.len(), src.len());
        // every output pixel comes from the same channel of the input
        for (i, v) in out.iter().enumerate() {
            let ch = i / 1024;
            assert_eq!(*v as usize / 1024, ch);
        }
    }
}
