//! Checkpoints: a burn record of the trained model plus meta.json saying what
//! trained it. The key hashes the model, the dataset's bytes, the split seed and
//! the training settings (whose seed is the split seed unless --init-seed sets
//! it), so a changed input never reuses stale weights.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{TrainSettings, TrainSummary};
use crate::data::{Dataset, DatasetId};
use crate::error::{Error, Result};
use crate::models::cnn::ConvNet;
use crate::models::mlp::Mlp;
use crate::models::{ModelSpec, Weights};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub key: String,
    pub model: ModelSpec,
    pub dataset: DatasetId,
    pub data_hash: String,
    pub settings: TrainSettings,
    pub summary: TrainSummary,
    pub crate_version: String,
    /// sha256 of the saved weights ([`Weights::sha256`]), written by [`save`]
    /// and checked by [`load`] (absent in checkpoints made before it was)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights_sha256: String,
}

/// The cache key: sha256 over the settings and data that decide the trained
/// weights. The split seed is the training's seed unless --init-seed set
/// another; then it is hashed too (keys of runs without --init-seed stay as
/// they were). Not the device or the machine: a checkpoint is one net, which a
/// sweep on any device scores (a GPU sweep scores the very net a CPU run
/// trained, which is how the two are compared). Another device or a CPU with
/// other caches would train other weights; meta.json records where it
/// trained, the log and report say so on reuse, and --retrain or another
/// --checkpoint-dir trains anew here.
pub fn key(spec: &ModelSpec, dataset: &Dataset, settings: &TrainSettings, split_seed: u32) -> String {
    let mut material = serde_json::json!({
        "format": 4,
        "validations_per_epoch": super::VALIDATIONS_PER_EPOCH,
        "optimizer": super::OPTIMIZER,
        "model": spec,
        "dataset": dataset.id,
        "data_hash": dataset.data_hash,
        "preprocessing": dataset.preprocessing,
        "settings": settings,
    });
    if split_seed != settings.seed {
        material["split_seed"] = split_seed.into();
    }
    let digest = Sha256::digest(material.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Where the checkpoint for `key` lives under `root`.
pub fn dir(root: &Path, spec: &ModelSpec, dataset: DatasetId, key: &str) -> PathBuf {
    root.join(format!("{}-{}-{}", spec.kind, dataset, key))
}

fn model_path(dir: &Path) -> PathBuf {
    dir.join("model.bpk")
}

fn meta_path(dir: &Path) -> PathBuf {
    dir.join("meta.json")
}

/// Writes the model, then meta.json (through a temporary name): a checkpoint
/// without meta.json is incomplete and is retrained, never half-loaded.
pub fn save(dir: &Path, spec: &ModelSpec, weights: &Weights, meta: &CheckpointMeta) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let device = Device::flex();
    let saved = if spec.kind.is_conv() {
        ConvNet::from_weights(spec.kind, spec.outputs, weights, &device).save_file(dir.join("model"))
    } else {
        Mlp::from_weights(spec, weights, &device).save_file(dir.join("model"))
    };
    saved.map_err(|e| Error::Checkpoint { path: model_path(dir), message: format!("cannot write: {e}") })?;
    let meta = CheckpointMeta { weights_sha256: weights.sha256(), ..meta.clone() };
    crate::report::write_atomic(&meta_path(dir), serde_json::to_string_pretty(&meta).expect("meta serialises").as_bytes())
}

/// Loads the checkpoint in `dir` if it is complete; `Ok(None)` when there is none.
/// A checkpoint that exists but is corrupt or belongs to another model is an error.
pub fn load(dir: &Path, spec: &ModelSpec) -> Result<Option<(Weights, CheckpointMeta)>> {
    let Some(meta) = read_meta(dir)? else {
        return Ok(None);
    };
    if &meta.model != spec {
        return Err(Error::Checkpoint {
            path: meta_path(dir),
            message: format!("was trained for another model ({:?}, not {:?}); delete the folder or pass --retrain", meta.model, spec),
        });
    }
    let weights = load_weights(&model_path(dir), spec)?;
    let sha = weights.sha256();
    if !meta.weights_sha256.is_empty() && sha != meta.weights_sha256 {
        return Err(Error::Checkpoint {
            path: model_path(dir),
            message: format!(
                "does not hold the weights that were saved (sha256 {}… in the file, {}… in meta.json): it changed after training; delete the folder or pass --retrain",
                crate::report::short_hash(&sha),
                crate::report::short_hash(&meta.weights_sha256)
            ),
        });
    }
    Ok(Some((weights, meta)))
}

/// The meta.json of the checkpoint in `dir`; `Ok(None)` when it has none (no
/// checkpoint, or an incomplete one).
pub fn read_meta(dir: &Path) -> Result<Option<CheckpointMeta>> {
    let meta_file = meta_path(dir);
    if !meta_file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&meta_file).map_err(|e| Error::io(&meta_file, e))?;
    let meta = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: meta_file.clone(),
        message: format!("corrupt meta.json ({e}); delete the folder or pass --retrain"),
    })?;
    Ok(Some(meta))
}

/// Reads a model record into host weights; any mismatch is an error naming the file.
pub fn load_weights(path: &Path, spec: &ModelSpec) -> Result<Weights> {
    let device = Device::flex();
    let err = |e: burn::store::RecordError| Error::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot load ({e}); it is corrupt or from another model: delete it or pass --retrain"),
    };
    let weights = if spec.kind.is_conv() {
        ConvNet::new(spec.kind, spec.outputs, &device).try_load_file(path).map_err(err)?.to_weights()?
    } else {
        Mlp::new(spec, &device).try_load_file(path).map_err(err)?.to_weights()?
    };
    weights.check_finite(path)?;
    Ok(weights)
}
