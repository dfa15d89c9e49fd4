//! Stage 5, the sweep: config -> trained model -> every variant scored ->
//! results.csv (row by row) -> summary, plots and report.
//!
//! Input: a validated [`Config`]. Output: the run folder described in README.md.

pub mod grid;
pub mod wgsl;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Device;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cli::{DeviceChoice, QuantizerChoice, ScopeChoice, ScorerChoice};
use crate::config::Config;
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::eval::{Evaluator, Scores, metric_names};
use crate::gpu::{self, AdapterSummary, GpuContext};
use crate::models::{ModelSpec, Weights};
use crate::progress::{Progress, human_duration};
use crate::quant::apply::{Plan, QuantReport};
use crate::quant::{BiasCorrect, Clip};
use crate::quant::reference::MSE_CLIP_CANDIDATES;
use clap::Parser;
use crate::report::{self, ResultRow, ResultsWriter};
use crate::train::qat::QatSettings;
use crate::train::{self, TrainSettings, TrainSummary, checkpoint};
use grid::{GridSpec, Scope, Variant};

/// Where the work runs.
#[derive(Clone)]
pub enum Compute {
    /// burn's CPU backend (flex) and the CPU reference quantizer
    Cpu { device: Device },
    /// burn on our wgpu device
    Gpu { ctx: Arc<GpuContext> },
}

impl Compute {
    pub fn burn_device(&self) -> Device {
        match self {
            Compute::Cpu { device } => device.clone(),
            Compute::Gpu { ctx } => ctx.burn.clone(),
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            Compute::Cpu { .. } => "cpu",
            Compute::Gpu { .. } => "gpu",
        }
    }
    pub fn adapter(&self) -> String {
        match self {
            Compute::Cpu { .. } => format!("cpu (burn flex, {} threads)", rayon::current_num_threads()),
            Compute::Gpu { ctx } => ctx.summary.to_string(),
        }
    }
}

/// Resolves `--device`, saying which device was chosen and why.
pub fn resolve_device(choice: DeviceChoice, adapter: Option<&str>) -> Result<(Compute, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Compute::Cpu { device: Device::flex() }, "--device cpu".into())),
        DeviceChoice::Gpu => {
            let ctx = GpuContext::shared(adapter)?;
            let why = if ctx.summary.hardware {
                "--device gpu".to_string()
            } else {
                "--device gpu on a software adapter: correct but slow (20-90 s of shader compilation first)".to_string()
            };
            Ok((Compute::Gpu { ctx }, why))
        }
        DeviceChoice::Auto => match gpu::context::hardware_adapter() {
            Some(_) => {
                let ctx = GpuContext::shared(adapter)?;
                Ok((Compute::Gpu { ctx }, "--device auto found a hardware GPU".into()))
            }
            None => {
                let found: Vec<String> = gpu::list_adapters().iter().map(AdapterSummary::to_string).collect();
                let found = if found.is_empty() { "none".to_string() } else { found.join(", ") };
                Ok((
                    Compute::Cpu { device: Device::flex() },
                    format!(
                        "--device auto found no hardware GPU (adapters: {found}); the CPU path (burn's CPU backend, \
                         the CPU kernel for dense nets) is faster here than a software adapter. --device gpu runs \
                         the GPU path anyway"
                    ),
                ))
            }
        },
    }
}

/// config.json: the resolved settings and what the run was made of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    pub sweep_gpu_version: String,
    pub created_utc: String,
    pub config: Config,
    pub device: String,
    pub adapter: String,
    pub device_reason: String,
    /// the machine ([`crate::host::describe`]): CPU model, widest SIMD,
    /// logical CPUs, data caches, OS and architecture (absent in runs made
    /// before it was recorded; the caches since 2026-12-02)
    #[serde(default)]
    pub host: String,
    pub dataset_files: Vec<PathBuf>,
    pub data_hash: String,
    pub preprocessing: String,
    pub split_sizes: [usize; 3],
    pub model: ModelSpec,
    pub parameters: usize,
    pub training: TrainSettings,
    pub training_summary: TrainSummary,
    pub checkpoint: PathBuf,
    pub checkpoint_reused: bool,
    /// sha256 of the weights the sweep quantizes ([`crate::models::Weights::sha256`]):
    /// resuming and merging refuse rows scored on other weights (empty in runs
    /// made before it was recorded)
    #[serde(default)]
    pub weights_sha256: String,
    /// with --restarts: every training, the kept one being `checkpoint`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<Restart>,
    /// with --qat: the trained net the fine-tuning started from (`training`
    /// and `checkpoint` above are the fine-tuning's)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat_start: Option<QatStart>,
    /// the folder the run was started in: relative paths in `config` are
    /// from there (empty in runs made before it was recorded)
    #[serde(default)]
    pub working_dir: PathBuf,
    /// a `merge`'s output: the shard folders it joined
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<PathBuf>,
    pub grid: GridSpec,
    pub variants: usize,
    pub metric: String,
    pub metric2: Option<String>,
}

/// What a finished sweep hands back to the CLI.
pub struct Outcome {
    pub out: PathBuf,
    pub summary: Option<report::Summary>,
    pub variants: usize,
    /// variants scored by this process (the rest were in results.csv already)
    pub scored: usize,
    pub scoring_seconds: f64,
}

/// One training of a model, as config.json lists it under `restarts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restart {
    pub init_seed: u32,
    pub valid_metric: f64,
    pub checkpoint: PathBuf,
}

/// The net a --qat fine-tuning started from, and how it scored on the test
/// split before the fine-tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatStart {
    pub checkpoint: PathBuf,
    pub training: TrainSettings,
    pub training_summary: TrainSummary,
    /// the variant the fine-tuning trained for, as in results.csv
    pub variant_id: String,
    /// the start's test metric at fp32 and as that variant
    pub fp32_value: f64,
    pub quantized_value: f64,
}

type Trained = (Weights, TrainSettings, TrainSummary, PathBuf, bool);

/// Trains (or loads) the model, then with --qat fine-tunes it (or loads the
/// fine-tuned checkpoint).
/// `earlier` is the run this one continues (its config.json), if any.
fn train_or_load(config: &Config, dataset: &Dataset, spec: &ModelSpec, compute: &Compute, earlier: Option<&RunInfo>, progress: &Progress) -> Result<(Trained, Vec<Restart>, Option<QatStart>)> {
    let (base, restarts) = train_or_load_base(config, dataset, spec, compute, earlier, progress)?;
    let Some(choice) = config.qat else {
        return Ok((base, restarts, None));
    };
    let (start, start_settings, start_summary, start_dir, _) = base;
    let qat = QatSettings {
        method: choice.method,
        bits: choice.bits,
        granularity: config.granularities[0],
        bias: config.bias,
        clip: config.clip,
        rescale: config.rescale,
        bn: spec.kind.is_conv().then_some(config.bn),
        from: checkpoint::key(spec, dataset, &start_settings, config.seed),
        from_sha256: start.sha256(),
    };
    let settings = TrainSettings {
        epochs: choice.epochs,
        learning_rate: choice.learning_rate.unwrap_or(start_settings.learning_rate / 10.0),
        qat: Some(qat.clone()),
        ..start_settings.clone()
    };
    // the start's test scores, for the report's before-and-after
    // (a conv net's fp32 value with BatchNorm as the sweep treats it: folded under --bn fold)
    let (layout, ops) = crate::models::scored_layout(spec.kind, start.clone(), config.bn)?;
    let mut evaluator = crate::eval::Evaluator::new(dataset, &dataset.test, &Device::flex(), &layout, ops, 64)?;
    evaluator.use_cpu_kernel(true)?;
    let fp32_value = evaluator.score_all(&layout)?.primary;
    let quantized_value = evaluator.score_all(&qat.quantize(&start)?)?.primary;
    let tuned = train_or_load_one(config, dataset, spec, settings, Some(&start), compute, earlier, progress)?;
    let start = QatStart {
        checkpoint: start_dir,
        training: start_settings,
        training_summary: start_summary,
        variant_id: qat.variant_id(),
        fp32_value,
        quantized_value,
    };
    Ok((tuned, restarts, Some(start)))
}

/// Trains (or loads) the model; with --restarts N, from N initial states (init
/// seeds K, K+1, ...), keeping the one best on validation (the first of a tie).
fn train_or_load_base(config: &Config, dataset: &Dataset, spec: &ModelSpec, compute: &Compute, earlier: Option<&RunInfo>, progress: &Progress) -> Result<(Trained, Vec<Restart>)> {
    let base = train_settings(config, dataset, spec);
    if config.restarts <= 1 {
        return Ok((train_or_load_one(config, dataset, spec, base, None, compute, earlier, progress)?, Vec::new()));
    }
    let mut best: Option<Trained> = None;
    let mut all = Vec::new();
    for k in 0..config.restarts {
        let settings = TrainSettings { seed: base.seed.wrapping_add(k), ..base.clone() };
        let trained = train_or_load_one(config, dataset, spec, settings, None, compute, earlier, progress)?;
        let valid = trained.2.valid_metric;
        all.push(Restart { init_seed: trained.1.seed, valid_metric: valid, checkpoint: trained.3.clone() });
        if best.as_ref().is_none_or(|b| crate::eval::improves(dataset.task, valid, b.2.valid_metric)) {
            best = Some(trained);
        }
    }
    let best = best.expect("at least two restarts ran");
    progress.log(&format!(
        "restarts: validation {} by init seed; kept init seed {}",
        all.iter().map(|r| format!("{}: {:.4}", r.init_seed, r.valid_metric)).collect::<Vec<_>>().join(", "),
        best.1.seed
    ));
    Ok((best, all))
}

/// One training, or with `settings.qat` one fine-tuning of `start`.
#[allow(clippy::too_many_arguments)]
fn train_or_load_one(
    config: &Config,
    dataset: &Dataset,
    spec: &ModelSpec,
    settings: TrainSettings,
    start: Option<&Weights>,
    compute: &Compute,
    earlier: Option<&RunInfo>,
    progress: &Progress,
) -> Result<Trained> {
    let key = checkpoint::key(spec, dataset, &settings, config.seed);
    let dir = checkpoint::dir(&config.checkpoint_dir, spec, dataset.id, &key);
    if !config.retrain
        && let Some((weights, meta)) = checkpoint::load(&dir, spec)?
    {
        let elsewhere = crate::host::elsewhere(&meta.summary.host, crate::host::describe()).map_or(String::new(), |h| format!(" on another machine: {h}"));
        progress.log(&format!("reusing checkpoint {} (trained on {}{elsewhere}, weights from epoch {:.2})", dir.display(), meta.summary.device, meta.summary.best_epoch));
        return Ok((weights, settings, meta.summary, dir, true));
    }
    if let Some(note) = earlier.and_then(|e| retraining_note(config, e, &dir, compute)) {
        progress.log(&note);
    }
    let epochs = train::epochs_text(settings.epochs);
    let schedule = format!(
        "batch {}, Adam lr {}{}{}{}{}",
        settings.batch_size,
        settings.learning_rate,
        if settings.one_cycle { " one-cycle" } else { "" },
        if settings.weight_decay > 0.0 { format!(", weight decay {}", settings.weight_decay) } else { String::new() },
        settings.grad_clip.map_or(String::new(), |c| format!(", gradients clipped at {c}")),
        if settings.augment { ", crop+flip augmentation" } else { "" },
    );
    progress.log(&match &settings.qat {
        Some(q) => format!("quantization-aware training: {epochs} of {} fake-quantized as {}, {schedule}, on {}", spec.kind, q.describe(), compute.kind()),
        None => format!(
            "training {} on {} ({}{epochs}, {schedule}{}) on {}",
            spec.kind,
            dataset.id,
            // conv specs carry no dropout of their own (theirs is in the architecture)
            if spec.dropout > 0.0 { format!("dropout {}, ", spec.dropout) } else { String::new() },
            if settings.seed != config.seed { format!(", init seed {}", settings.seed) } else { String::new() },
            compute.kind()
        ),
    });
    if spec.kind.is_conv() {
        let rough = estimate_training_seconds(spec, dataset, &settings, compute);
        progress.log(&format!(
            "training estimate: about {} on {} ({} images x {epochs}, at a fixed guess of the device's speed; each epoch's line gives the measured time); --train-limit, --epochs and --eval-limit make a CPU-sized run",
            human_duration(rough),
            compute.adapter(),
            settings.train_limit.map_or(dataset.train.len(), |l| l.min(dataset.train.len())),
        ));
    }
    let (weights, summary) = train::fit(spec, dataset, &settings, start, &compute.burn_device(), progress)?;
    weights.check_finite(&dir)?;
    let meta = checkpoint::CheckpointMeta {
        key,
        model: spec.clone(),
        dataset: dataset.id,
        data_hash: dataset.data_hash.clone(),
        settings: settings.clone(),
        summary: summary.clone(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        // save records it
        weights_sha256: String::new(),
    };
    checkpoint::save(&dir, spec, &weights, &meta)?;
    Ok((weights, settings, summary, dir, false))
}

/// Said before a training in a folder that already holds rows: they are
/// continued only if it gives the weights that scored them
/// ([`check_same_weights`], after the training), and a conv net trained on a
/// CPU with other caches does not. So the user can stop at once and point
/// --checkpoint-dir at the checkpoint instead of losing the training time.
fn retraining_note(config: &Config, earlier: &RunInfo, dir: &std::path::Path, compute: &Compute) -> Option<String> {
    if earlier.weights_sha256.is_empty() {
        return None;
    }
    let then = &earlier.training_summary;
    let elsewhere = crate::host::elsewhere(&then.host, crate::host::describe());
    let device_here = format!("{:?}", compute.burn_device());
    let why = if config.retrain {
        "--retrain trains the net again".to_string()
    } else if dir == earlier.checkpoint {
        format!("its checkpoint {} is gone, so the net is trained again", dir.display())
    } else {
        format!("there is no checkpoint in {} (that run's was {}), so the net is trained again", dir.display(), earlier.checkpoint.display())
    };
    let odds = if then.device != device_here {
        "training on another device gives other weights"
    } else if !earlier.model.kind.is_conv() {
        "dense nets do on any CPU"
    } else if elsewhere.is_some() {
        "conv nets trained on CPUs with other data caches do not (results/README.md, \"Reproducibility across CPUs\")"
    } else {
        "conv nets do on the same machine and device"
    };
    Some(format!(
        "note: {} holds rows scored on weights with sha256 {}…, trained {} with {}; {why} here with {device_here}. The rows are continued only if that gives the same weights: {odds}. To skip the training, stop now and restore that checkpoint or point --checkpoint-dir at a copy.",
        config.out.display(),
        report::short_hash(&earlier.weights_sha256),
        match elsewhere {
            Some(host) => format!("on {host}"),
            None if then.host.is_empty() => "on a machine not recorded".to_string(),
            None => "on this machine".to_string(),
        },
        then.device,
    ))
}

/// The grid's scopes: `all`; with `--scope each-layer`, each layer alone; and
/// one mixed-precision scope per `--layer-bits`, its names checked against the
/// model's `layers`.
fn scopes(config: &Config, layers: &[String]) -> Result<Vec<Scope>> {
    let mut out = vec![Scope::All];
    if config.scope == ScopeChoice::EachLayer {
        out.extend(layers.iter().cloned().map(Scope::Layer));
    }
    for held in config.held_layers()? {
        let scope = Scope::Mixed(grid::resolve_held(&held, layers).map_err(|m| Error::config("--layer-bits", m))?);
        if out.contains(&scope) {
            return Err(Error::config("--layer-bits", format!("{} is given twice", scope.name())));
        }
        out.push(scope);
    }
    Ok(out)
}

/// Variants a dry run quantizes and scores to estimate a sweep's time.
const DRY_RUN_SAMPLE: usize = 16;

/// Seconds per variant, measured by quantizing and scoring a few variants of
/// an untrained model of the right shape (the time does not depend on the
/// weights). On a GPU the first launch, which compiles kernels, is not counted.
/// Conv nets are timed on the first 32 test images and scaled to the split.
fn estimate_seconds_per_variant(spec: &ModelSpec, dataset: &Dataset, compute: &Compute, config: &Config) -> Result<f64> {
    let weights = crate::models::initial_weights(spec, config.seed as u64)?;
    let conv = spec.kind.is_conv();
    let rows = if conv { dataset.test.len().min(32) } else { dataset.test.len() };
    let table = head(&dataset.test, rows);
    // the scoring time does not depend on the ranges or the biases: skip
    // --clip mse's search and --bias-correct's calibration
    let config = &Config { clip: config.clip.filter(|c| *c != Clip::Mse), bias_correct: BiasCorrect::None, ..config.clone() };
    let prepared = prepare_on(config, spec, dataset, &table, weights, compute)?;
    let plan = &prepared.plan;
    let evaluator = &prepared.evaluator;
    let grid = GridSpec {
        methods: config.methods.clone(),
        bits: config.bits.clone(),
        granularities: config.granularities.clone(),
        seeds: config.rounding_seeds(),
        scopes: vec![Scope::All],
    };
    let sample_size = if conv { 2 } else { prepared.per_batch.clamp(2, DRY_RUN_SAMPLE) };
    let sample: Vec<Variant> = grid.variants().into_iter().cycle().take(sample_size).collect();
    let score = |vs: &[Variant]| -> Result<()> {
        let applied: Vec<Weights> = vs.par_iter().map(|v| plan.apply(v).0).collect();
        match compute {
            Compute::Cpu { .. } => applied.par_iter().try_for_each(|w| evaluator.score(&[w]).map(|_| ())),
            Compute::Gpu { .. } => evaluator.score(&applied.iter().collect::<Vec<_>>()).map(|_| ()),
        }
    };
    score(&sample)?; // warm-up
    let t0 = Instant::now();
    score(&sample)?;
    let per_variant = t0.elapsed().as_secs_f64() / sample.len() as f64;
    Ok(per_variant * dataset.test.len() as f64 / rows.max(1) as f64)
}

/// The first `rows` samples of a table.
fn head(table: &data::Table, rows: usize) -> data::Table {
    let len = table.sample_len();
    data::Table {
        x: table.x[..rows * len].to_vec(),
        sample_shape: table.sample_shape.clone(),
        y: match &table.y {
            data::Targets::Classes(c) => data::Targets::Classes(c[..rows].to_vec()),
            data::Targets::Values(v) => data::Targets::Values(v[..rows].to_vec()),
        },
    }
}

/// The training settings a config resolves to for a model and dataset.
fn train_settings(config: &Config, dataset: &Dataset, spec: &ModelSpec) -> TrainSettings {
    let conv = spec.kind.is_conv();
    TrainSettings {
        epochs: config.epochs.unwrap_or_else(|| TrainSettings::default_epochs(dataset.task, conv)),
        batch_size: config.batch_size.unwrap_or(if conv { 128 } else { 16 }),
        learning_rate: config.learning_rate.unwrap_or(if conv { 0.01 } else { 1e-3 }),
        seed: config.init_seed.unwrap_or(config.seed),
        weight_decay: config.weight_decay.unwrap_or(if conv { 1e-4 } else { 0.0 }),
        grad_clip: match config.grad_clip {
            Some(c) if c > 0.0 => Some(c),
            Some(_) => None,
            None => conv.then_some(0.1),
        },
        one_cycle: conv && !config.no_one_cycle,
        augment: conv && !config.no_augment && dataset.id == crate::data::DatasetId::Cifar100,
        train_limit: config.train_limit,
        eval_limit: config.eval_limit,
        qat: None,
    }
}

/// Floats of the largest activation of one image in a conv net (resnet9's
/// second block: 128 channels at 32 x 32 before its pooling).
const CONV_ACTIVATION_FLOATS: usize = 128 * 32 * 32;

/// The most variants of a conv net one launch can hold in storage bindings
/// of `limit` bytes: one image's largest activation for each within a quarter
/// of a binding, and the quantized copies of the largest weight tensor
/// (`largest` floats) within half of one.
fn conv_variants_fit(limit: usize, largest: usize) -> usize {
    (limit / 4 / (CONV_ACTIVATION_FLOATS * 4)).min(limit / 2 / (largest.max(1) * 4)).max(1)
}

/// A rough training time: forward and backward cost about three forward passes;
/// the CPU reaches about 10 GFLOP/s training convolutions here (measured), a hardware GPU a few
/// TFLOP/s, lavapipe well under 1.
fn estimate_training_seconds(spec: &ModelSpec, dataset: &Dataset, settings: &TrainSettings, compute: &Compute) -> f64 {
    let gflop_per_image = match spec.kind {
        crate::models::ModelKind::Resnet9 => 0.75,
        _ => 0.27,
    };
    let rate = match compute {
        Compute::Cpu { .. } => 10.0,
        Compute::Gpu { ctx } if ctx.summary.hardware => 3000.0,
        Compute::Gpu { .. } => 1.0,
    };
    let images = settings.train_limit.map_or(dataset.train.len(), |l| l.min(dataset.train.len())) * settings.epochs;
    3.0 * gflop_per_image * images as f64 / rate
}

/// The model as the sweep quantizes and scores it.
pub struct Prepared {
    /// after BatchNorm folding, when `--bn fold`
    pub weights: Weights,
    pub plan: Plan,
    pub evaluator: Evaluator,
    /// variants per scoring launch
    pub per_batch: usize,
    /// for the log: why `--variants-per-batch` was lowered, when it was, and
    /// how long the levels took, when that was long
    pub notes: Vec<String>,
}

/// Folds BatchNorm when asked, builds the quantization plan (statistics and
/// level parameters for the grid), and the evaluator on the test split.
pub fn prepare(config: &Config, spec: &ModelSpec, dataset: &Dataset, trained: Weights, compute: &Compute) -> Result<Prepared> {
    prepare_on(config, spec, dataset, &dataset.test, trained, compute)
}

/// [`prepare`] with the evaluator on `table` instead of the test split.
fn prepare_on(config: &Config, spec: &ModelSpec, dataset: &Dataset, table: &data::Table, trained: Weights, compute: &Compute) -> Result<Prepared> {
    let conv = spec.kind.is_conv();
    let (weights, ops) = crate::models::scored_layout(spec.kind, trained, config.bn)?;
    let mut plan = Plan::new(weights.clone(), config.bias, config.bn)?;
    plan.clip = config.clip;
    plan.rescale = config.rescale;
    let mut calibration = None;
    if config.bias_correct != BiasCorrect::None {
        let start = Instant::now();
        let (means, rows) = if let Some(ops) = &ops {
            let images = crate::eval::CONV_CALIBRATION_IMAGES.min(dataset.train.len());
            (crate::eval::program_input_means(ops, &weights, &dataset.train, config.bias_correct, images)?, format!("the first {images} training images"))
        } else {
            (crate::eval::dense_input_means(&weights, &dataset.train, config.bias_correct)?, format!("the {} training rows", dataset.train.len()))
        };
        plan.set_input_means(&means)?;
        calibration = Some(format!("--bias-correct {}: input means over {rows} in {:.1} s", config.bias_correct.name(), start.elapsed().as_secs_f64()));
    }
    let start = Instant::now();
    plan.prepare(&config.granularities, &config.quantized_bits(), &config.methods);
    let prepare_seconds = start.elapsed().as_secs_f64();
    let largest = plan.targets.iter().map(|t| t.data.len()).max().unwrap_or(1);
    let fits_kernel = crate::eval::fused_kernel_fits(&weights, table.len());
    let fused = match (compute, config.scorer) {
        (Compute::Gpu { .. }, ScorerChoice::Wgsl) if !fits_kernel => {
            use crate::eval::fused::{MAX_LAYERS, MAX_ROWS, MAX_WIDTH};
            let why = format!("runs dense nets of at most {MAX_LAYERS} layers {MAX_WIDTH} wide on at most {MAX_ROWS} rows; use --scorer burn for {}", spec.kind);
            return Err(Error::config("--scorer wgsl", why));
        }
        (Compute::Gpu { .. }, ScorerChoice::Auto | ScorerChoice::Wgsl) => fits_kernel,
        _ => false,
    };
    let limit = match compute {
        Compute::Gpu { ctx } => ctx.limits().max_storage_buffer_binding_size as usize,
        Compute::Cpu { .. } => 1 << 30,
    };
    // the most variants whose tensors fit the device's storage bindings: the
    // largest activation [V, N, widest] and quantized tensor [V, n] (f32)
    // within half a binding (dense nets); conv activations [V * channels, 32,
    // 32] for one row within a quarter
    let fits = match compute {
        Compute::Cpu { .. } => usize::MAX,
        Compute::Gpu { .. } if conv => conv_variants_fit(limit, largest),
        // the WGSL scorer keeps activations in private memory: a variant
        // takes its packed parameters
        Compute::Gpu { .. } if fused => (limit / 2 / (weights.tensors.iter().map(|t| t.len()).sum::<usize>().max(largest) * 4)).max(1),
        Compute::Gpu { .. } => {
            let widest = spec.widths().into_iter().max().unwrap_or(1);
            let per_variant = (table.len().max(1) * widest).max(largest) * 4;
            (limit / 2 / per_variant).max(1)
        }
    };
    // and within the device's workgroups per dimension: the per-group sums
    // dispatch one row per variant and group (quant::gpu::products, reduce)
    let fits = match compute {
        Compute::Gpu { ctx } => {
            let groups = (0..plan.targets.len()).flat_map(|t| config.granularities.iter().map(move |&g| (t, g))).map(|(t, g)| plan.grouping(t, g).groups).max().unwrap_or(1);
            fits.min((ctx.limits().max_compute_workgroups_per_dimension as usize / groups.max(1)).max(1))
        }
        Compute::Cpu { .. } => fits,
    };
    let wanted = match (config.variants_per_batch, compute) {
        (Some(v), _) => v,
        // flex runs small matmuls faster one variant at a time than batched
        // (../shared/BURN-WGPU-NOTES.md §5): batches set the flush rhythm, and
        // variants are scored in parallel
        (None, Compute::Cpu { .. }) => 32,
        (None, Compute::Gpu { .. }) if conv => 4,
        (None, Compute::Gpu { .. }) => 256,
    };
    let per_batch = wanted.min(fits);
    let mut notes = Vec::new();
    if config.variants_per_batch.is_some() && per_batch < wanted {
        notes.push(format!(
            "--variants-per-batch {wanted} would not fit the adapter's {} MiB storage bindings or its dispatch limits: scoring {per_batch} variants per launch",
            limit >> 20
        ));
    }
    notes.extend(calibration);
    if prepare_seconds >= 1.0 {
        let bits = config.quantized_bits().len();
        let weights: usize = plan.targets.iter().map(|t| t.data.len()).sum();
        notes.push(format!("group ranges and levels for {weights} weights x {bits} bit widths prepared in {prepare_seconds:.1} s"));
    }
    // conv activations [rows, V * channels, 32, 32] within a quarter of a binding
    let rows = match compute {
        Compute::Cpu { .. } => 64,
        Compute::Gpu { .. } => (limit / 4 / (per_batch * CONV_ACTIVATION_FLOATS * 4)).max(1),
    };
    let mut evaluator = Evaluator::new(dataset, table, &compute.burn_device(), &weights, ops, rows)?;
    if let (Compute::Gpu { ctx }, true) = (compute, fused) {
        evaluator.use_fused_kernel(Some(ctx.clone()))?;
    }
    // on the CPU, dense nets run on the CPU kernel (src/eval/dense_cpu.rs)
    // unless burn's kernels are asked for; conv nets stay on burn's
    if let (Compute::Cpu { .. }, ScorerChoice::Auto) = (compute, config.scorer) {
        evaluator.use_cpu_kernel(true)?;
    }
    Ok(Prepared { weights, plan, evaluator, per_batch, notes })
}

/// Runs a whole sweep.
pub fn run(config: &Config, progress: &Progress) -> Result<Outcome> {
    let (compute, reason) = resolve_device(config.device, config.adapter.as_deref())?;
    progress.log(&format!("device: {} ({reason})", compute.adapter()));

    let options = data::LoadOptions { seed: config.seed as u64, train_limit: config.train_limit, eval_limit: config.eval_limit };
    let dataset = data::load_with(config.dataset, &config.data_dir, &options)?;
    progress.log(&format!(
        "data: {} from {} ({} train / {} validation / {} test rows, {} features)",
        dataset.id,
        report::path_list(&dataset.files),
        dataset.train.len(),
        dataset.valid.len(),
        dataset.test.len(),
        dataset.train.sample_len()
    ));
    let mut spec = ModelSpec::new(config.model, dataset.id, dataset.train.sample_len(), dataset.task)?;
    if let Some(p) = config.dropout {
        spec.dropout = p;
    }

    // the layer names do not depend on the weights: check --layer-bits before
    // training, building an untrained model only when a scope names layers
    let layers = if config.scope == ScopeChoice::EachLayer || !config.layer_bits.is_empty() { crate::models::initial_weights(&spec, config.seed as u64)?.layers() } else { Vec::new() };
    let scopes = scopes(config, &layers)?;
    let grid = GridSpec {
        methods: config.methods.clone(),
        bits: config.bits.clone(),
        granularities: config.granularities.clone(),
        seeds: config.rounding_seeds(),
        scopes: scopes.clone(),
    };
    if config.dry_run {
        let total = grid.variants().len();
        let per_scope = total / scopes.len();
        println!(
            "{total} variants: {} scope(s) x {per_scope} ({} methods x {} bit widths x {} granularity, {} seeds for each stochastic setting)",
            scopes.len(),
            config.methods.len(),
            config.bits.len(),
            config.granularities.len(),
            config.seeds
        );
        let per_variant = estimate_seconds_per_variant(&spec, &dataset, &compute, config)?;
        println!(
            "estimate: {} of scoring on {} ({:.1} ms per variant, measured on a sample), plus training unless a checkpoint is cached",
            human_duration(per_variant * total as f64),
            compute.adapter(),
            per_variant * 1000.0,
        );
        return Ok(Outcome { out: config.out.clone(), summary: None, variants: total, scored: 0, scoring_seconds: 0.0 });
    }

    // fail on an unwritable checkpoint or output folder before spending time on training
    create_folder(&config.checkpoint_dir, "--checkpoint-dir")?;
    create_folder(&config.out, "--out")?;
    let _lock = report::lock_folder(&config.out, "choose another --out")?;
    if !config.out.join("results.csv").exists() && config.out.join("results.csv.gz").is_file() {
        return Err(Error::Results {
            path: config.out.join("results.csv.gz"),
            message: "this folder keeps its rows gzipped; `gunzip -k` it to continue the run here, or choose a new --out".into(),
        });
    }
    let earlier = check_earlier_run(config, &dataset, &spec)?;
    if spec.kind.is_conv() {
        // a full-size conv run on a CPU takes hours: say so before starting
        let total = grid.variants().len();
        let per_variant = estimate_seconds_per_variant(&spec, &dataset, &compute, config)?;
        progress.log(&format!(
            "scoring estimate: about {} for {total} variants on {} test images ({:.1} s each); --eval-limit, --bits, --methods and --seeds make it smaller",
            human_duration(per_variant * total as f64),
            dataset.test.len(),
            per_variant
        ));
    }
    let ((weights, settings, train_summary, ckpt, reused), restarts, qat_start) = train_or_load(config, &dataset, &spec, &compute, earlier.as_ref(), progress)?;
    if let (Some(start), Some(q)) = (&qat_start, &settings.qat) {
        progress.log(&format!(
            "before quantization-aware training: test {metric} {:.4} at fp32, {:.4} as {}; the fine-tuned net's validation {metric} as {}: {:.4} (weights from epoch {:.2})",
            start.fp32_value,
            start.quantized_value,
            q.describe(),
            q.describe(),
            train_summary.valid_metric,
            train_summary.best_epoch,
            metric = metric_names(dataset.task).0,
        ));
    }
    let variants = variants_of(&grid, config.shard);
    let (metric, metric2) = metric_names(dataset.task);

    let info = RunInfo {
        sweep_gpu_version: env!("CARGO_PKG_VERSION").into(),
        created_utc: chrono::Utc::now().to_rfc3339(),
        config: config.clone(),
        device: compute.kind().into(),
        adapter: compute.adapter(),
        device_reason: reason,
        host: crate::host::describe().into(),
        dataset_files: dataset.files.clone(),
        data_hash: dataset.data_hash.clone(),
        preprocessing: dataset.preprocessing.clone(),
        split_sizes: [dataset.train.len(), dataset.valid.len(), dataset.test.len()],
        model: spec.clone(),
        parameters: weights.trainable_params(),
        training: settings,
        training_summary: train_summary,
        checkpoint: ckpt,
        checkpoint_reused: reused,
        weights_sha256: weights.sha256(),
        restarts,
        qat_start,
        working_dir: std::env::current_dir().unwrap_or_default(),
        merged_from: Vec::new(),
        grid: grid.clone(),
        variants: variants.len(),
        metric: metric.into(),
        metric2: metric2.map(Into::into),
    };
    let config_json = config.out.join("config.json");
    check_same_weights(config, earlier.as_ref(), &info)?;
    if !config_json.is_file() || !config.out.join("results.csv").is_file() {
        report::write_atomic(&config_json, serde_json::to_string_pretty(&info).expect("RunInfo serialises").as_bytes())?;
    }

    if config.clip == Some(Clip::Mse) {
        let methods = config.methods.len();
        progress.log(&format!("--clip mse: trying {MSE_CLIP_CANDIDATES} ranges per group at each bit width, for each of {methods} method(s)"));
    }
    let Prepared { weights, plan, evaluator, per_batch, notes } = prepare(config, &spec, &dataset, weights, &compute)?;
    for note in notes {
        progress.log(&note);
    }
    let fp32 = evaluator.score(&[&weights])?[0];
    progress.log(&format!(
        "fp32 test {metric}: {:.4}{}",
        fp32.primary,
        match (metric2, fp32.secondary) {
            (Some(m), Some(v)) => format!(", {m} {v:.4}"),
            _ => String::new(),
        }
    ));

    let wgsl = match (&compute, config.quantizer) {
        (Compute::Gpu { ctx }, QuantizerChoice::Auto | QuantizerChoice::Wgsl) => {
            Some(wgsl::WgslScorer::new(ctx.clone(), &plan, &config.granularities, &config.quantized_bits())?)
        }
        (Compute::Cpu { .. }, QuantizerChoice::Wgsl) => {
            return Err(Error::config("--quantizer", "wgsl needs a GPU device (--device gpu)"));
        }
        _ => None,
    };
    let quantizer = if wgsl.is_some() { "wgsl" } else { "cpu-reference" };
    progress.log(&format!("quantizer: {quantizer}; {} variants, up to {per_batch} per batch", variants.len()));

    let results_path = config.out.join("results.csv");
    let done = finished_variants(&results_path, config, &variants)?;
    if !done.is_empty() {
        progress.log(&format!("resuming: {} of {} variants already in {}", done.len(), variants.len(), results_path.display()));
    }
    let todo: Vec<Variant> = variants.iter().filter(|v| !done.contains(&v.id())).cloned().collect();
    let mut writer = ResultsWriter::open(&results_path)?;
    let bar = progress.bar(variants.len() as u64, "variants");
    bar.inc(done.len() as u64);
    let started = Instant::now();
    let fp32_size = 4 * weights.num_params();
    // Testing hook: die like a killed process after N flushed batches, so the
    // resume tests can interrupt a sweep at a chosen point.
    let abort_after: Option<usize> = std::env::var("SWEEP_GPU_ABORT_AFTER_BATCHES").ok().and_then(|v| v.parse().ok());
    // lowered for good when the device refuses an allocation (score_split)
    let mut cap = per_batch;
    for (batch_no, batch) in batches(&todo, per_batch).into_iter().enumerate() {
        if abort_after == Some(batch_no) {
            std::process::abort();
        }
        let t0 = Instant::now();
        // burn compiles (and on some devices tunes) kernels per tensor shape:
        // on a GPU, a short batch is padded to the usual size with copies of
        // its last variant (their scores are dropped) instead of paying a new
        // compilation. The WGSL scorer takes any count as it is.
        let padded: Vec<Variant> = match &compute {
            Compute::Gpu { .. } if wgsl.is_none() && batch.len() < per_batch && todo.len() >= per_batch && cap == per_batch => {
                let mut p = batch.to_vec();
                p.resize(per_batch, batch[batch.len() - 1].clone());
                p
            }
            _ => batch.to_vec(),
        };
        let cap_before = cap;
        let scored: Vec<(QuantReport, Scores)> = score_split(&padded, &mut cap, &mut |part: &[Variant]| match (&wgsl, &compute) {
            (Some(w), _) => w.score(&plan, part, &evaluator),
            // the CPU backend runs small matmuls faster one variant at a time than
            // batched (../shared/BURN-WGPU-NOTES.md §5): variants in parallel
            (None, Compute::Cpu { .. }) => part
                .par_iter()
                .map(|v| {
                    let (w, q) = plan.apply(v);
                    Ok((q, evaluator.score(&[&w])?[0]))
                })
                .collect::<Result<Vec<_>>>(),
            (None, Compute::Gpu { .. }) => {
                let applied: Vec<(Weights, QuantReport)> = part.par_iter().map(|v| plan.apply(v)).collect();
                let refs: Vec<&Weights> = applied.iter().map(|(w, _)| w).collect();
                let scores = evaluator.score(&refs)?;
                Ok(applied.iter().map(|(_, q)| *q).zip(scores).collect())
            }
        })?;
        if cap < cap_before {
            progress.log(&format!("the device refused an allocation for {cap_before} variants at once: scoring {cap} per launch from here on"));
        }
        let eval_ms = t0.elapsed().as_secs_f64() * 1000.0 / batch.len() as f64;
        let rows: Vec<ResultRow> = batch
            .iter()
            .zip(&scored)
            .map(|(v, (q, s))| row(config, &compute, quantizer, v, s, &fp32, q, fp32_size, metric, metric2, eval_ms))
            .collect();
        writer.append(&rows)?;
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    let scoring_seconds = started.elapsed().as_secs_f64();
    if variants.is_empty() {
        progress.log(&format!("this shard has no variants: the grid's {} are fewer than its shards", grid.variants().len()));
    } else if todo.is_empty() {
        progress.log(&format!("nothing left to score: all {} variants were in {} already", variants.len(), results_path.display()));
    } else {
        let rate = todo.len() as f64 / scoring_seconds;
        let rate = if rate >= 10.0 { format!("{rate:.0} variants/s") } else { format!("{:.1} s per variant", 1.0 / rate) };
        progress.log(&format!("scored {} variants in {} ({rate})", todo.len(), human_duration(scoring_seconds)));
    }
    let summary = report::write_all(&config.out)?;
    Ok(Outcome { out: config.out.clone(), summary, variants: variants.len(), scored: todo.len(), scoring_seconds })
}

#[allow(clippy::too_many_arguments)]
fn row(
    config: &Config,
    compute: &Compute,
    quantizer: &str,
    v: &Variant,
    s: &Scores,
    fp32: &Scores,
    q: &QuantReport,
    fp32_size: usize,
    metric: &str,
    metric2: Option<&str>,
    eval_ms: f64,
) -> ResultRow {
    ResultRow {
        variant_id: v.id(),
        model: config.model.to_string(),
        dataset: config.dataset.to_string(),
        method: v.method.to_string(),
        bits: v.bits,
        granularity: v.granularity.name().into(),
        seed: v.seed,
        scope: v.scope.name(),
        bias: config.bias.name().into(),
        bn: if config.model.is_conv() { config.bn.name().into() } else { String::new() },
        metric: metric.into(),
        value: s.primary,
        fp32_value: fp32.primary,
        metric2: metric2.map(Into::into),
        value2: s.secondary,
        fp32_value2: fp32.secondary,
        weight_mse: q.mse(),
        sqnr_db: q.sqnr_db(),
        weight_gain: Some(q.gain()),
        size_bytes: q.size_bytes,
        fp32_size_bytes: fp32_size,
        device: compute.kind().into(),
        adapter: compute.adapter(),
        quantizer: quantizer.into(),
        eval_ms,
    }
}

/// The scoring benchmark: mlp-complex on churn's test split (randomly
/// initialised weights: the rate does not depend on them), `n` variants of the
/// default grid quantized by the CPU reference, scored on the chosen device:
/// by burn's kernels, and first by the WGSL scorer (GPU) or the CPU kernel, in
/// `rounds` timed rounds.
pub fn scoring_bench(choice: DeviceChoice, adapter: Option<&str>, data_dir: &std::path::Path, n: usize, batch: Option<usize>, rounds: usize) -> Result<Vec<crate::bench::ScoringBench>> {
    use crate::models::ModelKind;
    let (compute, _) = resolve_device(choice, adapter)?;
    let dataset = data::load(crate::data::DatasetId::Churn, data_dir, 1)?;
    let spec = ModelSpec::new(ModelKind::MlpComplex, dataset.id, dataset.train.sample_len(), dataset.task)?;
    let cli = crate::cli::Cli::parse_from(["sweep-gpu", "--model", "mlp-complex", "--dataset", "churn"]);
    let mut config = Config::from_args(&cli.sweep)?;
    config.variants_per_batch = batch;
    let scorers: &[ScorerChoice] = match compute {
        Compute::Gpu { .. } => &[ScorerChoice::Wgsl, ScorerChoice::Burn],
        Compute::Cpu { .. } => &[ScorerChoice::Auto, ScorerChoice::Burn],
    };
    let grid = GridSpec {
        methods: config.methods.clone(),
        bits: config.bits.clone(),
        granularities: config.granularities.clone(),
        seeds: config.rounding_seeds(),
        scopes: vec![Scope::All],
    };
    let weights = crate::models::initial_weights(&spec, 1)?;
    let mut variants: Vec<Weights> = Vec::new();
    let mut benches = Vec::new();
    for &scorer in scorers {
        config.scorer = scorer;
        let prepared = prepare(&config, &spec, &dataset, weights.clone(), &compute)?;
        let per_batch = match (&compute, batch) {
            // the sweep scores one at a time on the CPU; batch as a GPU would
            (Compute::Cpu { .. }, None) => 32,
            _ => prepared.per_batch,
        };
        for note in &prepared.notes {
            eprintln!("{note}");
        }
        if variants.is_empty() {
            let plan = &prepared.plan;
            variants = grid.variants().iter().cycle().take(n).collect::<Vec<_>>().par_iter().map(|v| plan.apply(v).0).collect();
        }
        let name = if prepared.evaluator.uses_fused_kernel() {
            "wgsl"
        } else if prepared.evaluator.uses_cpu_kernel() {
            "cpu"
        } else {
            "burn"
        };
        let run = crate::bench::BenchRun { device: compute.adapter(), scorer: name.into(), model: spec.kind.to_string(), dataset: dataset.id.to_string() };
        benches.push(crate::bench::scoring_throughput(&prepared.evaluator, &variants, per_batch, rounds, run)?);
    }
    Ok(benches)
}

/// Creates the folder `path` that `flag` names, or says why it cannot.
fn create_folder(path: &std::path::Path, flag: &str) -> Result<()> {
    let message = if path.exists() && !path.is_dir() {
        format!("is a file, not a folder: give {flag} a folder")
    } else {
        match std::fs::create_dir_all(path) {
            Ok(()) => return Ok(()),
            Err(e) => format!("cannot create this folder ({flag}): {e}"),
        }
    };
    Err(Error::Results { path: path.to_path_buf(), message })
}

/// Training settings that are absent when left to the model's default: a run
/// that gives one as the default's value continues a folder made without it.
const DEFAULTED_TRAINING_SETTINGS: [&str; 6] = ["epochs", "batch_size", "learning_rate", "weight_decay", "grad_clip", "dropout"];

/// Settings that change nothing in results.csv: where things go, and how the
/// work is batched.
const SETTINGS_WITHOUT_EFFECT: [&str; 7] = ["out", "checkpoint_dir", "retrain", "variants_per_batch", "dry_run", "data_dir", "adapter"];

/// An output folder that already holds results is continued only with the
/// settings and data that made them: anything else would mix two runs in one
/// results.csv. Checked before training, so that a mistyped --out costs nothing.
/// Gives the earlier run's config.json, for [`check_same_weights`] once the
/// weights are known.
fn check_earlier_run(config: &Config, dataset: &Dataset, spec: &ModelSpec) -> Result<Option<RunInfo>> {
    let results = config.out.join("results.csv");
    if !results.is_file() {
        return Ok(None);
    }
    if !config.out.join("config.json").is_file() {
        return Err(Error::Results {
            path: results,
            message: "has no config.json beside it, so the run that wrote these rows is unknown; move them away or choose a new --out".into(),
        });
    }
    report::results::check_appendable(&results)?;
    let earlier = report::read_info(&config.out)?;
    let refuse = |what: String, fix: &str| Error::Results { path: results.clone(), message: format!("this folder holds a run with {what}; {fix} or choose a new --out") };
    if earlier.data_hash != dataset.data_hash {
        return Err(refuse(
            format!(
                "other data (sha256 {}… there, {}… in {})",
                report::short_hash(&earlier.data_hash),
                report::short_hash(&dataset.data_hash),
                report::path_list(&dataset.files)
            ),
            &format!("point --data-dir at the files it used ({})", report::path_list(&earlier.dataset_files)),
        ));
    }
    // a training setting given here as its default's value (--epochs 10 on a
    // folder made with the default) is the same training: the model and the
    // resolved settings the earlier run recorded are compared instead
    let same_training = earlier.qat_start.is_none() && earlier.model == *spec && earlier.training == train_settings(config, dataset, spec);
    let differ = settings_differ(&earlier.config, config, if same_training { &DEFAULTED_TRAINING_SETTINGS[..] } else { &[] });
    let resume = format!("continue it with its own settings (sweep-gpu --resume {})", config.out.display());
    if differ.is_empty() { Ok(Some(earlier)) } else { Err(refuse(format!("other settings: {}", differ.join(", ")), &resume)) }
}

/// The settings in which `then` and `now` differ, as `name then-value (here
/// now-value)`: every field of [`Config`] but [`SETTINGS_WITHOUT_EFFECT`] and
/// `also_ignored`.
fn settings_differ(then: &Config, now: &Config, also_ignored: &[&str]) -> Vec<String> {
    let as_map = |c: &Config| match serde_json::to_value(c).expect("Config serialises") {
        serde_json::Value::Object(mut m) => {
            for k in SETTINGS_WITHOUT_EFFECT.iter().chain(also_ignored) {
                m.remove(*k);
            }
            m
        }
        _ => unreachable!("Config is a struct"),
    };
    let (then, now) = (as_map(then), as_map(now));
    // null is a setting left to the model's default
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "default".to_string(),
        Some(v) => v.to_string(),
    };
    // both ways: a setting left out when unset (init_seed) is in only one of them
    let keys: std::collections::BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    keys.into_iter().filter(|k| then.get(*k) != now.get(*k)).map(|k| format!("{k} {} (here {})", show(then.get(k)), show(now.get(k)))).collect()
}

/// A folder's rows are continued only on the weights that scored them. The
/// checkpoint key names the settings, not the weights: a checkpoint trained
/// again under the same key (another machine, or a lost checkpoint folder)
/// can hold another net, and conv nets trained on CPUs with other caches do.
fn check_same_weights(config: &Config, earlier: Option<&RunInfo>, now: &RunInfo) -> Result<()> {
    let Some(earlier) = earlier.filter(|e| !e.weights_sha256.is_empty() && e.weights_sha256 != now.weights_sha256) else {
        return Ok(());
    };
    Err(Error::Results {
        path: config.out.join("results.csv"),
        message: format!(
            "this folder's rows were scored on other weights (sha256 {}… there, trained on {}; {}… now, from {}, trained on {}); point --checkpoint-dir at the checkpoint that run used, or choose a new --out",
            report::short_hash(&earlier.weights_sha256),
            or_unrecorded(&earlier.training_summary.host),
            report::short_hash(&now.weights_sha256),
            now.checkpoint.display(),
            or_unrecorded(&now.training_summary.host),
        ),
    })
}

/// A training's host for messages; checkpoints made before it was recorded have none.
fn or_unrecorded(host: &str) -> &str {
    if host.is_empty() { "a machine not recorded" } else { host }
}

/// The ids of the variants already in results.csv (a torn last line, left by a
/// killed process, is cut off). Rows that belong to another model, dataset or
/// grid are an error: resuming must never mix two runs.
fn finished_variants(path: &std::path::Path, config: &Config, grid: &[Variant]) -> Result<std::collections::HashSet<String>> {
    if !path.is_file() {
        return Ok(Default::default());
    }
    let rows = report::read_results(path, true)?;
    check_rows(path, &rows, config, grid, "resume only the folder a run wrote, or choose a new --out")
}

/// The ids of `rows` (read from `path`), each checked to be a variant of
/// `grid` scored for `config`'s model, dataset and bias treatment, once; a
/// row that is not is an error naming its line and ending with `fix`.
pub fn check_rows(path: &std::path::Path, rows: &[report::ResultRow], config: &Config, grid: &[Variant], fix: &str) -> Result<std::collections::HashSet<String>> {
    let ids: std::collections::HashSet<String> = grid.iter().map(Variant::id).collect();
    let mut done = std::collections::HashSet::new();
    for (i, r) in rows.iter().enumerate() {
        let other = |what: &str| Error::Results { path: path.to_path_buf(), message: format!("row {} is from another run ({what}); {fix}", i + 2) };
        if r.model != config.model.name() || r.dataset != config.dataset.name() {
            return Err(other(&format!("{} on {}", r.model, r.dataset)));
        }
        if r.bias != config.bias.name() {
            return Err(other(&format!("bias {}", r.bias)));
        }
        if !ids.contains(&r.variant_id) {
            return Err(other(&format!("variant {} is not in this grid", r.variant_id)));
        }
        if !done.insert(r.variant_id.clone()) {
            return Err(other(&format!("variant {} appears twice", r.variant_id)));
        }
    }
    Ok(done)
}

/// The variants a run scores: the grid's, or with `--shard K/N` every Nth
/// from the Kth (round robin over the grid order: disjoint, covering, balanced).
pub fn variants_of(grid: &GridSpec, shard: Option<(u32, u32)>) -> Vec<Variant> {
    match shard {
        Some((k, n)) => grid.variants().into_iter().enumerate().filter(|(i, _)| *i as u32 % n == k - 1).map(|(_, v)| v).collect(),
        None => grid.variants(),
    }
}

/// Consecutive runs of at most `size` variants that share a scope and a
/// granularity (the grid lists variants scope by scope, granularity by granularity).
/// Whether an error is the device refusing an allocation, which a smaller
/// batch avoids (burn reports it when the scores are read back).
pub fn is_allocation_failure(e: &Error) -> bool {
    let text = e.to_string().to_lowercase();
    ["allocate", "out of memory", "outofmemory"].iter().any(|k| text.contains(k))
}

/// Scores `batch` in parts of at most `cap` variants; when the device refuses
/// an allocation, the part is halved (and `cap` with it, for the batches that
/// follow) down to single variants, rather than the sweep aborting. The
/// results come back in `batch`'s order.
pub fn score_split<T>(batch: &[Variant], cap: &mut usize, score: &mut dyn FnMut(&[Variant]) -> Result<Vec<T>>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(batch.len());
    let mut start = 0;
    while start < batch.len() {
        let part = &batch[start..(start + (*cap).max(1)).min(batch.len())];
        match score(part) {
            Ok(s) => out.extend(s),
            Err(e) if part.len() > 1 && is_allocation_failure(&e) => {
                *cap = part.len() / 2;
                continue;
            }
            Err(e) => return Err(e),
        }
        start += part.len();
    }
    Ok(out)
}

fn batches(variants: &[Variant], size: usize) -> Vec<&[Variant]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=variants.len() {
        let boundary = i == variants.len()
            || i - start == size
            || variants[i].scope != variants[start].scope
            || variants[i].granularity != variants[start].granularity;
        if boundary {
            out.push(&variants[start..i]);
            start = i;
        }
    }
    out
}

/// Whether larger is better for a run's metric name.
pub fn metric_higher_is_better(metric: &str) -> bool {
    metric == "accuracy"
}


/// Joins the folders of the shards of one sweep into `out`: every shard must
/// come from the same settings, data and checkpoint, and together they must
/// cover the grid exactly once. The merged results.csv lists the variants in
/// grid order, as an unsharded run writes them.
pub fn merge(dirs: &[PathBuf], out: &std::path::Path) -> Result<Option<report::Summary>> {
    let err = |path: &std::path::Path, message: String| Error::Results { path: path.to_path_buf(), message };
    let infos: Vec<RunInfo> = dirs.iter().map(|d| report::read_info(d)).collect::<Result<_>>()?;
    let first = &infos[0];
    let n = match first.config.shard {
        Some((_, n)) => n,
        None => return Err(err(&dirs[0], "is not a shard (it was not run with --shard K/N)".into())),
    };
    let mut seen = vec![false; n as usize];
    for (dir, info) in dirs.iter().zip(&infos) {
        let Some((k, nn)) = info.config.shard else { return Err(err(dir, "is not a shard (it was not run with --shard K/N)".into())) };
        if nn != n {
            return Err(err(dir, format!("is shard {k}/{nn}, the first folder is one of {n}")));
        }
        if std::mem::replace(&mut seen[k as usize - 1], true) {
            return Err(err(dir, format!("shard {k}/{n} is given twice")));
        }
        let same = info.grid == first.grid && info.data_hash == first.data_hash && info.training == first.training && info.checkpoint.file_name() == first.checkpoint.file_name();
        let settings = settings_differ(&first.config, &info.config, &["shard"]);
        if !same || !settings.is_empty() {
            let what = if settings.is_empty() { "grid, data, training or checkpoint differ".to_string() } else { format!("settings differ: {}", settings.join(", ")) };
            return Err(err(dir, format!("belongs to another sweep than {} ({what})", dirs[0].display())));
        }
        if info.weights_sha256 != first.weights_sha256 {
            return Err(err(
                dir,
                format!(
                    "was scored on other weights than {} (sha256 {}… against {}…): the same checkpoint key was trained twice, {}; run every shard with one --checkpoint-dir",
                    dirs[0].display(),
                    report::short_hash(&info.weights_sha256),
                    report::short_hash(&first.weights_sha256),
                    match (or_unrecorded(&info.training_summary.host), or_unrecorded(&first.training_summary.host)) {
                        (a, b) if a == b => format!("both times on {a}"),
                        (a, b) => format!("on {a} and on {b}"),
                    },
                ),
            ));
        }
    }
    let missing: Vec<String> = seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| format!("{}/{n}", i + 1)).collect();
    if !missing.is_empty() {
        return Err(err(out, format!("shards {} are missing; merge all {n} shards", missing.join(", "))));
    }
    let order: std::collections::HashMap<String, usize> = first.grid.variants().iter().enumerate().map(|(i, v)| (v.id(), i)).collect();
    let mut rows = Vec::new();
    for (dir, info) in dirs.iter().zip(&infos) {
        let path = report::results_file(dir);
        let shard_rows = report::read_results(&path, false)?;
        // each shard's rows are its own share of the grid, once: so together they are the grid's at most once
        check_rows(&path, &shard_rows, &info.config, &variants_of(&info.grid, info.config.shard), "repair or remove that row, or run the shard again")?;
        rows.extend(shard_rows);
    }
    if rows.len() != order.len() {
        return Err(err(out, format!("the shards hold {} of the grid's {} variants: finish (--resume) every shard first", rows.len(), order.len())));
    }
    rows.sort_by_key(|r| order[&r.variant_id]);
    check_merge_target(dirs, out, first)?;
    create_folder(out, "--out")?;
    let _lock = report::lock_folder(out, "choose another --out")?;
    let mut merged = first.clone();
    merged.config.shard = None;
    merged.merged_from = dirs.to_vec();
    merged.config.out = out.to_path_buf();
    merged.variants = rows.len();
    report::write_atomic(&out.join("config.json"), serde_json::to_string_pretty(&merged).expect("RunInfo serialises").as_bytes())?;
    let mut csv = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        csv.serialize(r).map_err(|e| err(out, format!("cannot write results.csv: {e}")))?;
    }
    let bytes = csv.into_inner().map_err(|e| err(out, format!("cannot write results.csv: {e}")))?;
    report::write_atomic(&out.join("results.csv"), &bytes)?;
    report::write_all(out)
}

/// `merge --out` writes into a new folder, or over an earlier merge of the
/// same sweep; never over one of its shards or another run's rows (an
/// unsharded run of the same sweep included: its config.json is its own).
fn check_merge_target(dirs: &[PathBuf], out: &std::path::Path, first: &RunInfo) -> Result<()> {
    let err = |message: String| Error::Results { path: out.to_path_buf(), message };
    if out.exists() && !out.is_dir() {
        return Err(err("is a file, not a folder: give --out a folder".into()));
    }
    let same_place = |d: &PathBuf| matches!((d.canonicalize(), out.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if dirs.iter().any(same_place) {
        return Err(err("is one of the shards being merged: give --out a new folder".into()));
    }
    let held = ["results.csv", "results.csv.gz", "config.json"].into_iter().any(|f| out.join(f).exists());
    if !held {
        return Ok(());
    }
    let earlier_merge = report::read_info(out).is_ok_and(|i| {
        !i.merged_from.is_empty()
            && settings_differ(&first.config, &i.config, &["shard"]).is_empty()
            && i.grid == first.grid
            && i.data_hash == first.data_hash
            && i.training == first.training
            && i.weights_sha256 == first.weights_sha256
    });
    if earlier_merge {
        Ok(())
    } else {
        Err(err("holds another run; merging here would replace its results.csv: give --out a new folder".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::quant::{Granularity, Method};

    #[test]
    fn conv_batches_keep_the_largest_quantized_tensor_within_a_binding() {
        // lavapipe's 128 MiB; ResNet9's 512x512x3x3 conv is 9 MiB a variant
        let (limit, largest) = (128 << 20, 512 * 512 * 9);
        let v = conv_variants_fit(limit, largest);
        assert!(v >= 1 && v * largest * 4 <= limit / 2, "{v}");
        assert_eq!(v, 7);
        // small tensors leave the activations as the bound
        assert_eq!(conv_variants_fit(limit, 1000), limit / 4 / (CONV_ACTIVATION_FLOATS * 4));
    }

    #[test]
    fn refused_allocations_split_the_batch_and_keep_the_order() {
        let grid = GridSpec {
            methods: Method::STUDY.to_vec(),
            bits: (1..=16).collect(),
            granularities: vec![Granularity::Layer],
            seeds: vec![1, 2],
            scopes: vec![Scope::All],
        };
        let variants = grid.variants();
        assert!(variants.len() > 100);
        // a device that refuses more than 7 variants at once
        let mut calls = Vec::new();
        let mut score = |part: &[Variant]| -> Result<Vec<String>> {
            calls.push(part.len());
            if part.len() > 7 {
                return Err(Error::Eval("reading scores back: can't allocate buffer of size: 245760000".into()));
            }
            Ok(part.iter().map(Variant::id).collect())
        };
        let mut cap = 64;
        let out = score_split(&variants, &mut cap, &mut score).unwrap();
        assert_eq!(out, variants.iter().map(Variant::id).collect::<Vec<_>>());
        assert!((4..=7).contains(&cap), "halved down to what fits: {cap}");
        assert_eq!(&calls[..4], &[64, 32, 16, 8], "halved on each refusal");
        assert!(calls[4..].iter().all(|&n| n <= 7), "the lowered cap is kept: {calls:?}");

        // any other error is not retried
        let mut cap = 64;
        let mut failing = |_: &[Variant]| -> Result<Vec<String>> { Err(Error::Eval("shape mismatch".into())) };
        assert!(score_split(&variants, &mut cap, &mut failing).is_err());
        assert_eq!(cap, 64);
    }
}
