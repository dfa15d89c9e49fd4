//! Finding dataset files under the data directory and reading them, gzip or not.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The gzip magic bytes; a file is decompressed when it starts with them,
/// whatever its name says.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Looks for `rel` and `rel.gz` under `dir`, in that order.
pub fn find(dir: &Path, rel: &str) -> Result<PathBuf> {
    let plain = dir.join(rel);
    let gz = dir.join(format!("{rel}.gz"));
    for candidate in [&plain, &gz] {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    Err(Error::MissingFile {
        path: plain.clone(),
        hint: format!(
            "looked for {} and {}; point --data-dir (or SWEEP_DATA_DIR) at a folder laid out as \
             datasets/README.md describes",
            plain.display(),
            gz.display()
        ),
    })
}

/// Like [`find`] over several alternative names; the first that exists wins.
pub fn find_any(dir: &Path, rels: &[&str]) -> Result<PathBuf> {
    let mut first_err = None;
    for rel in rels {
        match find(dir, rel) {
            Ok(p) => return Ok(p),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let tried: Vec<String> = rels.iter().map(|r| format!("{r}[.gz]")).collect();
    match first_err {
        Some(Error::MissingFile { path, .. }) => Err(Error::MissingFile {
            path,
            hint: format!(
                "none of {} exists under {}; point --data-dir (or SWEEP_DATA_DIR) at a folder laid \
                 out as datasets/README.md describes",
                tried.join(", "),
                dir.display()
            ),
        }),
        Some(e) => Err(e),
        None => Err(Error::file(dir, "no file names given")),
    }
}

/// Reads a whole file, decompressing gzip (detected by its magic bytes).
/// A truncated or corrupt gzip stream is an error naming the file.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decompress(path, raw)
}

/// The bytes of a file as read from `path`: gunzipped when they start with
/// gzip's magic, else as they are. Empty input is an error.
pub fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.is_empty() {
        return Err(Error::file(path, "the file is empty"));
    }
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| Error::file(path, format!("truncated or corrupt gzip data ({e}); download the file again")))?;
    if out.is_empty() {
        return Err(Error::file(path, "the gzip stream holds no data"));
    }
    Ok(out)
}

/// Reads a text file (gzip or not) and checks that it is UTF-8.
pub fn read_text(path: &Path) -> Result<String> {
    into_text(path, read_bytes(path)?)
}

/// Checks that (decompressed) file bytes are UTF-8 text.
pub fn into_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        Error::file(path, format!("not a text file: invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()))
    })
}
