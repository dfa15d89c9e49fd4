//! Entry points for the fuzzers: the cargo-fuzz targets in fuzz/ and the
//! mutation fuzzer in the test suite. Each feeds raw file bytes through exactly
//! the path a file read from disk takes (gzip detection, UTF-8 check, parser),
//! so a crash found here is a crash a user's file could cause. Every entry
//! must return, never panic; what it returns is beside the point.

use std::path::Path;

use crate::data::{cifar, idx, source, tabular};
use crate::error::Result;

/// The file formats sweep-gpu reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Churn,
    Magic,
    CalHousing,
    KeelCalifornia,
    KeelMv,
    IdxImages,
    IdxLabels,
    Cifar,
    ResultsCsv,
    ConfigJson,
    CheckpointMeta,
}

impl Format {
    pub const ALL: [Format; 11] = [
        Format::Churn,
        Format::Magic,
        Format::CalHousing,
        Format::KeelCalifornia,
        Format::KeelMv,
        Format::IdxImages,
        Format::IdxLabels,
        Format::Cifar,
        Format::ResultsCsv,
        Format::ConfigJson,
        Format::CheckpointMeta,
    ];

    /// The name the fuzz target and the error messages use for the input.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Churn => "Churn_Modelling.csv",
            Format::Magic => "magic04.data",
            Format::CalHousing => "cal_housing.data",
            Format::KeelCalifornia => "california.dat",
            Format::KeelMv => "mv.dat",
            Format::IdxImages => "train-images-idx3-ubyte",
            Format::IdxLabels => "train-labels-idx1-ubyte",
            Format::Cifar => "train.bin",
            Format::ResultsCsv => "results.csv",
            Format::ConfigJson => "config.json",
            Format::CheckpointMeta => "meta.json",
        }
    }
}

/// Parses `bytes` as a file of `format` would be parsed.
pub fn parse(format: Format, bytes: &[u8]) -> Result<()> {
    let path = Path::new(format.file_name());
    let text = || source::into_text(path, source::decompress(path, bytes.to_vec())?);
    let json = |text: String| -> Result<()> {
        let invalid = |e: serde_json::Error| crate::Error::file(path, format!("invalid JSON: {e}"));
        match format {
            Format::ConfigJson => serde_json::from_str::<crate::sweep::RunInfo>(&text).map(drop).map_err(invalid),
            _ => serde_json::from_str::<crate::train::checkpoint::CheckpointMeta>(&text).map(drop).map_err(invalid),
        }
    };
    match format {
        Format::Churn => tabular::parse_churn(path, &text()?).map(drop),
        Format::Magic => tabular::parse_magic(path, &text()?).map(drop),
        Format::CalHousing => tabular::parse_cal_housing(path, &text()?).map(drop),
        Format::KeelCalifornia => tabular::parse_keel_california(path, &text()?).map(drop),
        Format::KeelMv => tabular::parse_keel_mv(path, &text()?).map(drop),
        Format::IdxImages => idx::parse_images(path, source::decompress(path, bytes.to_vec())?).map(drop),
        Format::IdxLabels => idx::parse_labels(path, &source::decompress(path, bytes.to_vec())?, 10).map(drop),
        Format::Cifar => cifar::parse(path, source::decompress(path, bytes.to_vec())?).map(drop),
        Format::ResultsCsv => crate::report::results::parse_results(path, &text()?).map(drop),
        Format::ConfigJson | Format::CheckpointMeta => json(text()?),
    }
}
