//! One error type for the library, grouped by pipeline stage. Every message says
//! what was wrong, where (file, line, record, flag) and, where it helps, what to do.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- configuration -------------------------------------------------
    #[error("invalid value for {flag}: {message}")]
    Config { flag: &'static str, message: String },

    // ---- data ----------------------------------------------------------
    #[error("dataset file not found: {path} ({hint})")]
    MissingFile { path: PathBuf, hint: String },

    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },

    #[error("{path}, line {line}: {message}")]
    Parse { path: PathBuf, line: usize, message: String },

    #[error("{path}, record {record}: {message}")]
    Record { path: PathBuf, record: usize, message: String },

    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, #[source] source: std::io::Error },

    // ---- devices ---------------------------------------------------------
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    #[error("GPU: {0}")]
    Gpu(String),

    // ---- training and checkpoints ----------------------------------------
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    #[error("training: {0}")]
    Training(String),

    // ---- quantization and evaluation --------------------------------------
    #[error("quantizer: {0}")]
    Quant(String),

    #[error("evaluation: {0}")]
    Eval(String),

    // ---- results -----------------------------------------------------------
    #[error("results {path}: {message}")]
    Results { path: PathBuf, message: String },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::File { path: path.into(), message: message.into() }
    }
    pub fn parse(path: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Error::Parse { path: path.into(), line, message: message.into() }
    }
    pub fn config(flag: &'static str, message: impl Into<String>) -> Self {
        Error::Config { flag, message: message.into() }
    }
}
