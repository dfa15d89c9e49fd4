//! The validated configuration of a sweep, written to config.json.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::{DeviceChoice, QuantizerChoice, ScopeChoice, ScorerChoice, SweepArgs, parse_bits, parse_shard};
use crate::data::DatasetId;
use crate::error::{Error, Result};
use crate::models::ModelKind;
use crate::quant::apply::{BiasMode, BnMode};
use crate::quant::{BiasCorrect, Clip, Granularity, Method, Rescale};
use crate::sweep::grid::{Held, held_text, parse_held};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub model: ModelKind,
    pub dataset: DatasetId,
    pub data_dir: PathBuf,
    pub out: PathBuf,
    pub checkpoint_dir: PathBuf,
    pub bits: Vec<u32>,
    pub methods: Vec<Method>,
    pub granularities: Vec<Granularity>,
    pub seed: u32,
    /// --init-seed: the training's seed when it is not `seed`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_seed: Option<u32>,
    /// --restarts: trainings from successive init seeds, the best on validation kept
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub restarts: u32,
    /// --qat: quantization-aware fine-tuning of the trained net (absent when off)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<QatChoice>,
    pub seeds: u32,
    pub scope: ScopeChoice,
    /// mixed-precision scopes (--layer-bits), each in its canonical form
    /// (`first=8,last=fp32`), layer names as given
    #[serde(default)]
    pub layer_bits: Vec<String>,
    /// --clip: a percentile (written as a number) or `mse`
    #[serde(default)]
    pub clip: Option<Clip>,
    /// --rescale (absent from config.json when none)
    #[serde(default, skip_serializing_if = "is_default")]
    pub rescale: Rescale,
    /// --bias-correct (absent from config.json when none)
    #[serde(default, skip_serializing_if = "is_default")]
    pub bias_correct: BiasCorrect,
    pub bias: BiasMode,
    #[serde(default = "default_bn")]
    pub bn: BnMode,
    pub device: DeviceChoice,
    pub quantizer: QuantizerChoice,
    #[serde(default)]
    pub scorer: ScorerChoice,
    pub adapter: Option<String>,
    /// None: the model's default (see `cli.rs`)
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub learning_rate: Option<f64>,
    #[serde(default)]
    pub weight_decay: Option<f64>,
    #[serde(default)]
    pub grad_clip: Option<f32>,
    /// None: the model's own (see `ModelSpec::new`)
    #[serde(default)]
    pub dropout: Option<f64>,
    #[serde(default)]
    pub no_one_cycle: bool,
    #[serde(default)]
    pub no_augment: bool,
    #[serde(default)]
    pub train_limit: Option<usize>,
    #[serde(default)]
    pub eval_limit: Option<usize>,
    pub retrain: bool,
    pub variants_per_batch: Option<usize>,
    pub dry_run: bool,
    /// (K, N): this run is shard K of N
    #[serde(default)]
    pub shard: Option<(u32, u32)>,
}

/// --qat, --qat-epochs and --qat-lr.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatChoice {
    pub method: Method,
    pub bits: u32,
    pub epochs: usize,
    /// None: a tenth of the training's learning rate
    pub learning_rate: Option<f64>,
}

fn default_bn() -> BnMode {
    BnMode::Fold
}

impl Config {
    /// The settings of an earlier run, read from its config.json, to resume it,
    /// with the places and batching `a` gives ([`crate::cli::RESUME_OVERRIDES`]).
    /// A relative data or checkpoint folder is taken from the folder the run
    /// was started in, where config.json records it and the path is there.
    pub fn for_resume(dir: &std::path::Path, a: &SweepArgs) -> Result<Config> {
        let info = crate::report::read_info(dir)?;
        let started_in = info.working_dir;
        let resolve = |p: PathBuf| {
            if p.is_absolute() || started_in.as_os_str().is_empty() {
                return p;
            }
            let there = started_in.join(&p);
            if there.exists() || !p.exists() { there } else { p }
        };
        let mut config = info.config;
        config.out = dir.to_path_buf();
        config.retrain = false;
        config.dry_run = false;
        config.data_dir = if a.data_dir_given { a.data_dir.clone() } else { resolve(config.data_dir) };
        config.checkpoint_dir = a.checkpoint_dir.clone().unwrap_or_else(|| resolve(config.checkpoint_dir));
        config.adapter = a.adapter.clone().or(config.adapter);
        config.variants_per_batch = a.variants_per_batch.or(config.variants_per_batch);
        Ok(config)
    }

    pub fn from_args(a: &SweepArgs) -> Result<Config> {
        if let Some(dir) = &a.resume {
            return Config::for_resume(dir, a);
        }
        let model = a.model.ok_or_else(|| Error::config("--model", "is required"))?;
        let dataset = a.dataset.ok_or_else(|| Error::config("--dataset", "is required"))?;
        // before a device is chosen or a file read
        crate::models::check_data_kind(model, dataset)?;
        let bits = parse_bits(&a.bits).map_err(|m| Error::config("--bits", m))?;
        let mut methods = if a.methods.is_empty() { Method::STUDY.to_vec() } else { a.methods.clone() };
        methods.sort();
        methods.dedup();
        let layer_bits = a
            .layer_bits
            .iter()
            .map(|t| parse_held(t).map(|h| held_text(&h)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| Error::config("--layer-bits", m))?;
        if let Some(clip) = a.clip {
            if let Clip::Percentile(p) = clip
                && !(p > 50.0 && p < 100.0)
            {
                return Err(Error::config("--clip", format!("{p} is not a percentile in (50, 100), e.g. 99.9, nor mse")));
            }
            if let Some(m) = methods.iter().find(|m| !m.is_clippable()) {
                return Err(Error::config("--clip", format!("{m} builds its levels from the whole group's values; drop it from --methods or drop --clip")));
            }
        }
        let mut granularities = a.granularity.clone();
        granularities.sort();
        granularities.dedup();
        if a.restarts == 0 {
            return Err(Error::config("--restarts", "must be at least 1 (one training)"));
        }
        if a.seeds == 0 {
            return Err(Error::config("--seeds", "must be at least 1"));
        }
        // the rounding seeds run seed..seed+N-1, the restarts' init seeds K..K+N-1: within u32
        if a.seed.checked_add(a.seeds - 1).is_none() {
            return Err(Error::config("--seed", format!("{} with --seeds {} runs past {}: the rounding seeds are --seed, --seed + 1, ...", a.seed, a.seeds, u32::MAX)));
        }
        if a.init_seed.unwrap_or(a.seed).checked_add(a.restarts - 1).is_none() {
            return Err(Error::config("--init-seed", format!("{} with --restarts {} runs past {}: the restarts train init seeds K, K + 1, ...", a.init_seed.unwrap_or(a.seed), a.restarts, u32::MAX)));
        }
        if a.batch_size == Some(0) {
            return Err(Error::config("--batch-size", "must be at least 1"));
        }
        if a.train_limit == Some(0) || a.eval_limit == Some(0) {
            return Err(Error::config("--train-limit/--eval-limit", "must be at least 1"));
        }
        if a.eval_limit.is_some() && !dataset.is_image() {
            return Err(Error::config("--eval-limit", format!("cuts the image datasets' validation and test parts; {dataset}'s are scored whole (drop the flag)")));
        }
        if let Some(w) = a.weight_decay
            && !(w >= 0.0 && w.is_finite())
        {
            return Err(Error::config("--weight-decay", format!("{w} is not a non-negative number")));
        }
        if let Some(c) = a.grad_clip
            && !(c >= 0.0 && c.is_finite())
        {
            return Err(Error::config("--grad-clip", format!("{c} is not a non-negative number")));
        }
        if a.epochs == Some(0) {
            return Err(Error::config("--epochs", "must be at least 1"));
        }
        if let Some(lr) = a.lr
            && !(lr > 0.0 && lr.is_finite())
        {
            return Err(Error::config("--lr", format!("{lr} is not a positive learning rate")));
        }
        if let Some(p) = a.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config("--dropout", format!("{p} is not a probability in [0, 1)")));
            }
            if model.is_conv() {
                return Err(Error::config(
                    "--dropout",
                    format!("sets the dense nets' dropout (mlp-simple, mlp-complex); {model}'s dropouts are part of its architecture"),
                ));
            }
        }
        // conv-only settings on a dense net would be recorded in every row while changing nothing
        if !model.is_conv() {
            let conv_only = [
                (a.bn != BnMode::Fold).then_some("--bn"),
                a.no_augment.then_some("--no-augment"),
                a.no_one_cycle.then_some("--no-one-cycle"),
            ];
            if let Some(flag) = conv_only.into_iter().flatten().next() {
                return Err(Error::config(flag, format!("applies to the conv nets (cnn, resnet9); {model} has no BatchNorm and trains without augmentation or one-cycle")));
            }
        }
        if a.bias_correct != BiasCorrect::None && model.is_conv() && a.bn == BnMode::Pool {
            return Err(Error::config("--bias-correct", "adds to the f32 conv biases; --bn pool quantizes BatchNorm's shift with the weights: use --bn fold or keep"));
        }
        if a.bias_correct != BiasCorrect::None && a.bias != BiasMode::Fp32 {
            return Err(Error::config("--bias-correct", format!("adds to the f32 biases, which --bias {} quantizes: use --bias fp32", a.bias.name())));
        }
        let qat = match a.qat {
            None => None,
            Some(_) if a.qat_epochs == 0 => return Err(Error::config("--qat-epochs", "must be at least 1")),
            Some(t) => {
                if let Some(lr) = a.qat_lr
                    && !(lr > 0.0 && lr.is_finite())
                {
                    return Err(Error::config("--qat-lr", format!("{lr} is not a positive learning rate")));
                }
                Some(QatChoice { method: t.method, bits: t.bits, epochs: a.qat_epochs, learning_rate: a.qat_lr })
            }
        };
        if qat.is_some() && a.clip.is_some() && !a.qat.is_some_and(|t| t.method.is_clippable()) {
            return Err(Error::config("--qat", "builds its levels from the whole group's values, which --clip does not apply to; choose another method or drop --clip"));
        }
        if a.quantizer == QuantizerChoice::Wgsl && a.device == DeviceChoice::Cpu {
            return Err(Error::config("--quantizer", "wgsl runs on a GPU device: use --device gpu (or auto on a machine with a GPU)"));
        }
        if a.scorer == ScorerChoice::Wgsl && a.device == DeviceChoice::Cpu {
            return Err(Error::config("--scorer", "wgsl runs on a GPU device: use --device gpu (or auto on a machine with a GPU)"));
        }
        if a.variants_per_batch == Some(0) {
            return Err(Error::config("--variants-per-batch", "must be at least 1"));
        }
        let out = match &a.out {
            Some(o) => o.clone(),
            None => {
                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                PathBuf::from("results").join(format!("{model}-{dataset}-{stamp}"))
            }
        };
        let checkpoint_dir = match &a.checkpoint_dir {
            Some(c) => c.clone(),
            None => out.parent().map(|p| p.join("checkpoints")).unwrap_or_else(|| PathBuf::from("checkpoints")),
        };
        Ok(Config {
            model,
            dataset,
            data_dir: a.data_dir.clone(),
            out,
            checkpoint_dir,
            bits,
            methods,
            granularities,
            seed: a.seed,
            init_seed: a.init_seed.filter(|&s| s != a.seed),
            restarts: a.restarts,
            qat,
            seeds: a.seeds,
            scope: a.scope,
            layer_bits,
            clip: a.clip,
            rescale: a.rescale,
            bias_correct: a.bias_correct,
            bias: a.bias,
            bn: a.bn,
            device: a.device,
            quantizer: a.quantizer,
            scorer: a.scorer,
            adapter: a.adapter.clone(),
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            weight_decay: a.weight_decay,
            grad_clip: a.grad_clip,
            dropout: a.dropout,
            no_one_cycle: a.no_one_cycle,
            no_augment: a.no_augment,
            train_limit: a.train_limit,
            eval_limit: a.eval_limit,
            retrain: a.retrain,
            variants_per_batch: a.variants_per_batch,
            dry_run: a.dry_run,
            shard: a.shard.as_deref().map(parse_shard).transpose().map_err(|m| Error::config("--shard", m))?,
        })
    }

    /// The --layer-bits lists, parsed (a config.json edited by hand is checked here).
    pub fn held_layers(&self) -> Result<Vec<Vec<Held>>> {
        self.layer_bits.iter().map(|t| parse_held(t).map_err(|m| Error::config("--layer-bits", m))).collect()
    }

    /// Every bit width a variant gives some layer: --bits and the held layers' own.
    pub fn quantized_bits(&self) -> Vec<u32> {
        let mut bits = self.bits.clone();
        bits.extend(self.held_layers().unwrap_or_default().iter().flatten().filter_map(|h| h.bits));
        bits.sort();
        bits.dedup();
        bits
    }

    /// The stochastic-rounding seeds: seed, seed + 1, ...
    pub fn rounding_seeds(&self) -> Vec<u32> {
        (0..self.seeds).map(|i| self.seed.wrapping_add(i)).collect()
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A setting at its default (none), left out of config.json so that folders
/// written before it existed read the same.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
