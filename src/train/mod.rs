//! Stage 2b, training: a dataset and a model spec -> trained weights, cached as a
//! checkpoint keyed by everything that decides them.
//!
//! Input: [`Dataset`], [`ModelSpec`], [`TrainSettings`], a burn device. Output:
//! [`Weights`] of the epoch with the best validation score, and a checkpoint
//! (burn record + meta.json) that the next run with the same key reuses.

pub mod checkpoint;

use burn::module::Module;
use burn::nn::loss::{CrossEntropyLossConfig, MseLoss, Reduction};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Targets, Task};
use crate::error::{Error, Result};
use crate::eval::{Evaluator, higher_is_better};
use crate::models::mlp::Mlp;
use crate::models::{ModelSpec, Weights};
use crate::progress::Progress;

/// The optimizer, as recorded in checkpoint keys: Adam with PyTorch's epsilon
/// (the 2020 study trained with PyTorch; burn's default epsilon is 1e-5).
pub const OPTIMIZER: &str = "adam(beta1=0.9, beta2=0.999, epsilon=1e-8)";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u32,
}

impl TrainSettings {
    /// The study's defaults: 10 epochs for classifiers, 20 for regressors.
    pub fn default_epochs(task: Task) -> usize {
        match task {
            Task::Classification { .. } => 10,
            Task::Regression => 20,
        }
    }
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
}

/// How often per epoch the validation split is scored to pick the weights to keep.
pub const VALIDATIONS_PER_EPOCH: usize = 4;

/// Trains `spec` on `dataset.train` with Adam, keeping the weights that score
/// best on `dataset.valid` (checked [`VALIDATIONS_PER_EPOCH`] times per epoch).
pub fn fit(spec: &ModelSpec, dataset: &Dataset, settings: &TrainSettings, device: &Device, progress: &Progress) -> Result<(Weights, TrainSummary)> {
    let start = std::time::Instant::now();
    if settings.epochs == 0 || settings.batch_size == 0 {
        return Err(Error::config("--epochs/--batch-size", "must be at least 1"));
    }
    let ad = device.clone().autodiff();
    ad.seed(settings.seed as u64);
    let mut model = Mlp::new(spec, &ad);
    // keep in step with OPTIMIZER
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let ce = CrossEntropyLossConfig::new().init(&ad);
    let train = &dataset.train;
    let features = train.sample_len();
    let n = train.len();
    let steps_per_epoch = n.div_ceil(settings.batch_size);
    let bar = progress.bar((settings.epochs * steps_per_epoch) as u64, "training");
    let valid_eval = Evaluator::new(dataset, &dataset.valid, device)?;
    let better = |a: f64, b: f64| if higher_is_better(dataset.task) { a > b } else { a < b };

    let mut best: Option<(f64, f64, Weights)> = None;
    let mut last_valid = f64::NAN;
    let mut epoch_losses = Vec::new();
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..settings.epochs {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(((settings.seed as u64) << 32) | epoch as u64);
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        let check_every = steps_per_epoch.div_ceil(VALIDATIONS_PER_EPOCH);
        for (step, batch) in order.chunks(settings.batch_size).enumerate() {
            let b = batch.len();
            let mut xs = Vec::with_capacity(b * features);
            for &r in batch {
                xs.extend_from_slice(&train.x[r * features..(r + 1) * features]);
            }
            let x = Tensor::<2>::from_data(TensorData::new(xs, [b, features]), &ad);
            let out = model.forward(x);
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
            model = optim.step(settings.learning_rate, model, grads);
            bar.inc(1);
            if (step + 1) % check_every == 0 || step + 1 == steps_per_epoch {
                let weights = model.valid().to_weights()?;
                let metric = valid_eval.score(&[&weights], 0)?[0].primary;
                let at = epoch as f64 + (step + 1) as f64 / steps_per_epoch as f64;
                if best.as_ref().is_none_or(|(_, m, _)| better(metric, *m)) {
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
        progress.log(&format!("epoch {:>3}/{}: loss {mean_loss:.4}, validation {last_valid:.4}", epoch + 1, settings.epochs));
    }
    bar.finish_and_clear();
    let (best_epoch, valid_metric, weights) = best.expect("at least one epoch ran");
    Ok((
        weights,
        TrainSummary {
            best_epoch,
            valid_metric,
            epoch_losses,
            seconds: start.elapsed().as_secs_f64(),
            device: format!("{device:?}"),
        },
    ))
}
