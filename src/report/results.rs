//! results.csv: one row per variant, appended and flushed as batches finish, so
//! an interrupted sweep keeps every finished row; read back for resume, merge
//! and the report.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One scored variant. Column order is the CSV's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub variant_id: String,
    pub model: String,
    pub dataset: String,
    pub method: String,
    pub bits: u32,
    pub granularity: String,
    /// empty for deterministic methods
    pub seed: Option<u32>,
    pub scope: String,
    /// fp32, separate or pool
    pub bias: String,
    /// fold, keep or pool for conv nets (empty for dense nets)
    pub bn: String,
    /// accuracy (classifiers) or mse (regressors, target units squared)
    pub metric: String,
    pub value: f64,
    pub fp32_value: f64,
    /// mae (regressors, target units) or top5 (classifiers with > 5 classes); else empty
    pub metric2: Option<String>,
    pub value2: Option<f64>,
    pub fp32_value2: Option<f64>,
    /// mean squared weight error over the quantized tensors
    pub weight_mse: f64,
    /// signal-to-quantization-noise ratio of the quantized weights, dB
    pub sqnr_db: f64,
    /// Σ w q / Σ w² over the quantized tensors: the least-squares scale of the
    /// quantized weights on the fp32 ones (1: kept; below 1: shrunk). Empty in
    /// a results.csv written before the column was added.
    #[serde(default)]
    pub weight_gain: Option<f64>,
    pub size_bytes: usize,
    pub fp32_size_bytes: usize,
    /// cpu or gpu: where the model was evaluated
    pub device: String,
    pub adapter: String,
    /// cpu-reference or wgsl: what quantized the weights
    pub quantizer: String,
    pub eval_ms: f64,
}

/// Appends rows to results.csv, one flush per batch.
pub struct ResultsWriter {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl ResultsWriter {
    /// Opens `path` for appending; writes the header when the file is new or
    /// empty, and refuses a file with another header (one written before the
    /// weight_gain column, say): appending would mix two layouts.
    pub fn open(path: &Path) -> Result<ResultsWriter> {
        check_appendable(path)?;
        let fresh = std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true);
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        let writer = csv::WriterBuilder::new().has_headers(fresh).from_writer(file);
        Ok(ResultsWriter { path: path.to_path_buf(), writer })
    }

    /// Writes the rows of one finished batch and flushes them to the OS and disk.
    pub fn append(&mut self, rows: &[ResultRow]) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::Results { path: self.path.clone(), message: format!("cannot write: {e}") };
        for row in rows {
            self.writer.serialize(row).map_err(|e| err(&e))?;
        }
        self.writer.flush().map_err(|e| err(&e))?;
        self.writer.get_ref().sync_data().map_err(|e| err(&e))?;
        Ok(())
    }
}

/// Whether rows of this version can be appended to `path`: it is missing or
/// empty, or its header is this version's. A results.csv written before the
/// weight_gain column still reads, but appending would mix two layouts.
pub fn check_appendable(path: &Path) -> Result<()> {
    if std::fs::metadata(path).map(|m| m.len() == 0).unwrap_or(true) {
        return Ok(());
    }
    let mut first = String::new();
    BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?).read_line(&mut first).map_err(|e| Error::io(path, e))?;
    if first.trim_end() == csv_header().join(",") {
        return Ok(());
    }
    Err(Error::Results {
        path: path.to_path_buf(),
        message: "its header is not this version's (an earlier sweep-gpu wrote it, without the weight_gain column): no rows can be added to it; rerun into a new --out, or move the folder away".into(),
    })
}

/// Reads results.csv. A last line without its newline is a row torn by a killed
/// process: it is dropped (and cut from the file when `repair` is set) so that
/// the run can resume from the rows that were complete.
pub fn read_results(path: &Path, repair: bool) -> Result<Vec<ResultRow>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        // a kept run, read whole: a torn last line is an error there
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text)
            .map_err(|e| Error::Results { path: path.to_path_buf(), message: format!("not a readable gzip file: {e}") })?;
        return parse_results(path, &text);
    }
    let mut text = String::new();
    let mut reader = BufReader::new(file);
    let mut complete_len = 0usize;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        if line.ends_with('\n') {
            complete_len += n;
            text.push_str(&line);
        } else if repair {
            let f = OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
            f.set_len(complete_len as u64).map_err(|e| Error::io(path, e))?;
        }
    }
    parse_results(path, &text)
}

/// Whether the plain results.csv at `path` ends in an incomplete line (a
/// gzipped one is read whole; a missing one is not torn).
pub fn ends_torn(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    if path.extension().is_some_and(|e| e == "gz") {
        return false;
    }
    let Ok(mut f) = File::open(path) else { return false };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && std::io::Read::read_exact(&mut f, &mut last).is_ok() && last[0] != b'\n'
}

/// Parses the complete lines of a results.csv (`path` only names it in errors).
pub fn parse_results(path: &Path, text: &str) -> Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    if text.trim().is_empty() {
        // killed before its first flush: nothing was written yet
        return Ok(rows);
    }
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| Error::Results { path: path.to_path_buf(), message: format!("unreadable header: {e}") })?.clone();
    let expected = csv_header();
    let found: Vec<&str> = headers.iter().collect();
    // files written before the weight_gain column read with it empty
    let legacy: Vec<&str> = expected.iter().copied().filter(|&c| c != "weight_gain").collect();
    if found != expected && found != legacy {
        return Err(Error::Results {
            path: path.to_path_buf(),
            message: format!("the header is not sweep-gpu's results.csv header (expected {})", expected.join(",")),
        });
    }
    for (i, rec) in rdr.deserialize::<ResultRow>().enumerate() {
        rows.push(rec.map_err(|e| Error::Results { path: path.to_path_buf(), message: format!("row {}: {e}", i + 2) })?);
    }
    Ok(rows)
}

/// The column names, in order.
pub fn csv_header() -> Vec<&'static str> {
    vec![
        "variant_id", "model", "dataset", "method", "bits", "granularity", "seed", "scope", "bias", "bn", "metric", "value",
        "fp32_value", "metric2", "value2", "fp32_value2", "weight_mse", "sqnr_db", "weight_gain", "size_bytes", "fp32_size_bytes",
        "device", "adapter", "quantizer", "eval_ms",
    ]
}

/// Writes a file through a temporary name and a rename, so a reader never sees
/// half of it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
