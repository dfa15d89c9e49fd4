//! Stage 1, data: bytes on disk -> preprocessed train/validation/test tables.
//!
//! Input: the published files under the data directory (layout in
//! datasets/README.md). Output: a [`Dataset`] whose tables are ready to become
//! tensors, plus the hash of the bytes it came from (part of the checkpoint key).

pub mod cifar;
pub mod idx;
pub mod images;
pub mod prep;
pub mod source;
pub mod tabular;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use prep::{Scaler, ScalerKind};
use tabular::RawTable;

/// The datasets sweep-gpu knows, by their CLI names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetId {
    /// Bank customer churn (Kaggle "Churn_Modelling"), binary classification.
    Churn,
    /// MAGIC gamma telescope (UCI), binary classification.
    Telescope,
    /// California housing (StatLib / KEEL), regression.
    California,
    /// KEEL "mv" artificial regression data.
    Mv,
    /// Fashion-MNIST (Zalando), 10 classes; 28x28 grey images resized to 32x32
    /// and repeated to 3 channels, as the 2020 study fed them to its 3-channel nets.
    #[serde(rename = "fashion-mnist")]
    #[value(name = "fashion-mnist")]
    FashionMnist,
    /// CIFAR-100, 100 fine classes, 32x32 RGB.
    #[serde(rename = "cifar100")]
    #[value(name = "cifar100")]
    Cifar100,
}

impl DatasetId {
    pub fn name(self) -> &'static str {
        match self {
            DatasetId::Churn => "churn",
            DatasetId::Telescope => "telescope",
            DatasetId::California => "california",
            DatasetId::Mv => "mv",
            DatasetId::FashionMnist => "fashion-mnist",
            DatasetId::Cifar100 => "cifar100",
        }
    }

    /// Fashion-MNIST and CIFAR-100: 3x32x32 images, for the conv nets.
    pub fn is_image(self) -> bool {
        matches!(self, DatasetId::FashionMnist | DatasetId::Cifar100)
    }

    pub fn task(self) -> Task {
        match self {
            DatasetId::Churn | DatasetId::Telescope => Task::Classification { classes: 2 },
            DatasetId::California | DatasetId::Mv => Task::Regression,
            DatasetId::FashionMnist => Task::Classification { classes: idx::CLASSES },
            DatasetId::Cifar100 => Task::Classification { classes: cifar::FINE_CLASSES },
        }
    }
}

impl std::fmt::Display for DatasetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Task {
    Classification { classes: usize },
    Regression,
}

impl Task {
    /// Width of the model's output layer.
    pub fn outputs(self) -> usize {
        match self {
            Task::Classification { classes } => classes,
            Task::Regression => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Class indices.
    Classes(Vec<u32>),
    /// Regression targets, standardised with the dataset's `target_scaler`.
    Values(Vec<f32>),
}

/// Samples ready to become tensors: `x` is row-major, one sample of
/// `sample_shape` after another.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub x: Vec<f32>,
    pub sample_shape: Vec<usize>,
    pub y: Targets,
}

impl Table {
    pub fn len(&self) -> usize {
        match &self.y {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub id: DatasetId,
    pub task: Task,
    pub train: Table,
    pub valid: Table,
    pub test: Table,
    /// Maps standardised regression targets back to the target's own units.
    pub target_scaler: Option<Scaler>,
    /// Unit of regression targets after `target_scaler` is inverted.
    pub target_unit: Option<&'static str>,
    pub feature_names: Vec<String>,
    pub files: Vec<PathBuf>,
    /// sha256 of the decompressed bytes of `files`, hex.
    pub data_hash: String,
    /// One line saying what preprocessing did; recorded in config.json.
    pub preprocessing: String,
}

impl Dataset {
    /// Maps a standardised regression value back to the target's units.
    pub fn unscale_target(&self, v: f32) -> f32 {
        match &self.target_scaler {
            Some(s) => s.invert(v as f64, 0) as f32,
            None => v,
        }
    }
}

fn hash_bytes(chunks: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// How to split a dataset, and how much of an image dataset to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Seeds the split (60/20/20 for tables, 90/10 of the training file for images).
    pub seed: u64,
    /// Image datasets only: keep the first N of the seeded-shuffled training part.
    pub train_limit: Option<usize>,
    /// Image datasets only: keep the first N of the validation and of the test part.
    pub eval_limit: Option<usize>,
}

/// Loads, preprocesses and splits a dataset found under `dir`, whole.
pub fn load(id: DatasetId, dir: &Path, seed: u64) -> Result<Dataset> {
    load_with(id, dir, &LoadOptions { seed, train_limit: None, eval_limit: None })
}

/// Loads, preprocesses and splits a dataset found under `dir`; the limits in
/// `options` apply to the image datasets only (see [`images::build`]).
pub fn load_with(id: DatasetId, dir: &Path, options: &LoadOptions) -> Result<Dataset> {
    let seed = options.seed;
    if dir.exists() && !dir.is_dir() {
        return Err(Error::File {
            path: dir.to_path_buf(),
            message: "is a file, not the data folder; pass --data-dir or set SWEEP_DATA_DIR to the folder that holds churn/, magic/, ...".into(),
        });
    }
    if !dir.is_dir() {
        return Err(Error::MissingFile {
            path: dir.to_path_buf(),
            hint: "the data directory does not exist; pass --data-dir or set SWEEP_DATA_DIR".into(),
        });
    }
    let (path, raw, preprocessing, x_kind): (PathBuf, RawTable, String, ScalerKind) = match id {
        DatasetId::FashionMnist => return images::build(id, idx::read_fashion_mnist(dir)?, options),
        DatasetId::Cifar100 => return images::build(id, cifar::read_cifar100(dir)?, options),
        DatasetId::Churn => {
            let path = source::find(dir, "churn/Churn_Modelling.csv")?;
            let raw = tabular::parse_churn(&path, &source::read_text(&path)?)?;
            (path, raw, "drop RowNumber/CustomerId/Surname; one-hot Geography, Gender; standardise 13 features".into(), ScalerKind::Standard)
        }
        DatasetId::Telescope => {
            let path = source::find(dir, "magic/magic04.data")?;
            let raw = tabular::parse_magic(&path, &source::read_text(&path)?)?;
            (path, raw, "standardise 10 features; g = 0, h = 1".into(), ScalerKind::Standard)
        }
        DatasetId::California => {
            // KEEL's file first: it is the one the 2020 study read.
            let path = source::find_any(dir, &["california/california.dat", "california/cal_housing.data"])?;
            let text = source::read_text(&path)?;
            let is_keel = text.trim_start().starts_with('@');
            let mut raw = if is_keel {
                tabular::parse_keel_california(&path, &text)?
            } else {
                tabular::parse_cal_housing(&path, &text)?
            };
            california_study_filter(&mut raw);
            (path, raw, "keep housingMedianAge..medianIncome (6 features); target in thousands of USD; keep rows within the 5th..95th target percentiles; min-max scale features; standardise the target for training".into(), ScalerKind::MinMax)
        }
        DatasetId::Mv => {
            let path = source::find(dir, "mv/mv.dat")?;
            let raw = tabular::parse_keel_mv(&path, &source::read_text(&path)?)?;
            (path, raw, "min-max scale 10 features; standardise the target for training".into(), ScalerKind::MinMax)
        }
    };
    let data_hash = hash_bytes(&[id.name().as_bytes(), &source::read_bytes(&path)?]);
    build(id, raw, x_kind, seed, vec![path], data_hash, preprocessing)
}

/// California as the study prepared it: 6 features (housingMedianAge..medianIncome),
/// target in thousands of dollars, rows within the 5th..95th target percentiles
/// (linear interpolation as numpy's, both bounds kept), over all rows before the
/// split, as the study filtered.
fn california_study_filter(raw: &mut RawTable) {
    let cols = raw.features();
    let keep_cols = 2..8;
    let lo = prep::percentile(&raw.y, 5.0);
    let hi = prep::percentile(&raw.y, 95.0);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (r, &t) in raw.y.iter().enumerate() {
        if t >= lo && t <= hi {
            x.extend_from_slice(&raw.x[r * cols + keep_cols.start..r * cols + keep_cols.end]);
            y.push(t / 1000.0);
        }
    }
    raw.names = raw.names[keep_cols].to_vec();
    raw.x = x;
    raw.y = y;
}

fn build(
    id: DatasetId,
    raw: RawTable,
    x_kind: ScalerKind,
    seed: u64,
    files: Vec<PathBuf>,
    data_hash: String,
    preprocessing: String,
) -> Result<Dataset> {
    let task = id.task();
    let cols = raw.features();
    let [train_rows, valid_rows, test_rows] = prep::split_indices(raw.rows(), seed);
    if train_rows.is_empty() || valid_rows.is_empty() || test_rows.is_empty() {
        return Err(Error::file(&files[0], format!("only {} rows: too few to split 60/20/20 (5 give each part a row)", raw.rows())));
    }
    let x_scaler = Scaler::fit(x_kind, &raw.x, cols, &train_rows);
    let target_scaler = match task {
        Task::Regression => Some(Scaler::fit(ScalerKind::Standard, &raw.y, 1, &train_rows)),
        Task::Classification { .. } => None,
    };
    let table = |rows: &[usize]| Table {
        x: x_scaler.transform(&raw.x, rows),
        sample_shape: vec![cols],
        y: match &target_scaler {
            Some(s) => Targets::Values(rows.iter().map(|&r| s.apply(raw.y[r], 0) as f32).collect()),
            None => Targets::Classes(rows.iter().map(|&r| raw.y[r] as u32).collect()),
        },
    };
    Ok(Dataset {
        id,
        task,
        train: table(&train_rows),
        valid: table(&valid_rows),
        test: table(&test_rows),
        target_scaler,
        target_unit: match id {
            DatasetId::California => Some("thousand USD"),
            DatasetId::Mv => Some("Y"),
            _ => None,
        },
        feature_names: raw.names,
        files,
        data_hash,
        preprocessing,
    })
}
