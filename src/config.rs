//! The validated configuration of a sweep, written to config.json.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cli::{DeviceChoice, QuantizerChoice, ScopeChoice, SweepArgs, parse_bits};
use crate::data::DatasetId;
use crate::error::{Error, Result};
use crate::models::ModelKind;
use crate::quant::apply::BiasMode;
use crate::quant::{Granularity, Method};

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
    pub seeds: u32,
    pub scope: ScopeChoice,
    pub bias: BiasMode,
    pub device: DeviceChoice,
    pub quantizer: QuantizerChoice,
    pub adapter: Option<String>,
    /// None: the task's default
    pub epochs: Option<usize>,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub retrain: bool,
    pub variants_per_batch: Option<usize>,
    pub dry_run: bool,
}

impl Config {
    /// The settings of an earlier run, read from its config.json, to resume it.
    pub fn for_resume(dir: &std::path::Path) -> Result<Config> {
        let info = crate::report::read_info(dir)?;
        let mut config = info.config;
        config.out = dir.to_path_buf();
        config.retrain = false;
        config.dry_run = false;
        Ok(config)
    }

    pub fn from_args(a: &SweepArgs) -> Result<Config> {
        if let Some(dir) = &a.resume {
            return Config::for_resume(dir);
        }
        let model = a.model.ok_or_else(|| Error::config("--model", "is required"))?;
        let dataset = a.dataset.ok_or_else(|| Error::config("--dataset", "is required"))?;
        let bits = parse_bits(&a.bits).map_err(|m| Error::config("--bits", m))?;
        let mut methods = if a.methods.is_empty() { Method::ALL.to_vec() } else { a.methods.clone() };
        methods.sort();
        methods.dedup();
        let mut granularities = a.granularity.clone();
        granularities.sort();
        granularities.dedup();
        if a.seeds == 0 {
            return Err(Error::config("--seeds", "must be at least 1"));
        }
        if a.batch_size == 0 {
            return Err(Error::config("--batch-size", "must be at least 1"));
        }
        if a.epochs == Some(0) {
            return Err(Error::config("--epochs", "must be at least 1"));
        }
        if !(a.lr > 0.0 && a.lr.is_finite()) {
            return Err(Error::config("--lr", format!("{} is not a positive learning rate", a.lr)));
        }
        if a.quantizer == QuantizerChoice::Wgsl && a.device == DeviceChoice::Cpu {
            return Err(Error::config("--quantizer", "wgsl runs on a GPU device: use --device gpu (or auto on a machine with a GPU)"));
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
            seeds: a.seeds,
            scope: a.scope,
            bias: a.bias,
            device: a.device,
            quantizer: a.quantizer,
            adapter: a.adapter.clone(),
            epochs: a.epochs,
            batch_size: a.batch_size,
            learning_rate: a.lr,
            retrain: a.retrain,
            variants_per_batch: a.variants_per_batch,
            dry_run: a.dry_run,
        })
    }

    /// The stochastic-rounding seeds: seed, seed + 1, ...
    pub fn rounding_seeds(&self) -> Vec<u32> {
        (0..self.seeds).map(|i| self.seed.wrapping_add(i)).collect()
    }
}
