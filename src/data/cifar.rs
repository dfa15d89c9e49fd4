//! CIFAR-100 in its published binary files (`cifar-100/{train,test}.bin[.gz]`):
//! fixed 3,074-byte records, checked record by record. Preprocessing lives in
//! `images.rs`.
//!
//! Record layout: byte 0 coarse label (0..20), byte 1 fine label (0..100), then
//! 3,072 pixel bytes: the R, G and B planes of a 32x32 image, each row-major.
//! The planes are already in the `[3, 32, 32]` order the networks take.

use std::path::{Path, PathBuf};

use super::images::{ImageSource, RawImages};
use super::{DatasetId, hash_bytes, source};
use crate::error::{Error, Result};

pub const SIDE: usize = 32;
pub const CHANNELS: usize = 3;
pub const PIXEL_BYTES: usize = CHANNELS * SIDE * SIDE;
/// Two label bytes, then the pixels.
pub const RECORD_BYTES: usize = 2 + PIXEL_BYTES;
pub const COARSE_CLASSES: usize = 20;
/// The fine labels are the classes sweep-gpu trains on.
pub const FINE_CLASSES: usize = 100;

const _: () = assert!(RECORD_BYTES == 3074);

/// The two published files, relative to the data directory, in hash order.
pub const FILES: [&str; 2] = ["cifar-100/train.bin", "cifar-100/test.bin"];

/// Parses a CIFAR-100 binary file into 32x32 RGB images with their fine labels.
/// Coarse labels are checked (a value out of range means a foreign file) but not kept.
pub fn parse(path: &Path, mut bytes: Vec<u8>) -> Result<RawImages> {
    let len = bytes.len();
    if len == 0 {
        return Err(Error::file(path, format!("the file is empty: expected whole {RECORD_BYTES}-byte records")));
    }
    if !len.is_multiple_of(RECORD_BYTES) {
        let last = len / RECORD_BYTES;
        return Err(Error::file(
            path,
            format!(
                "truncated or foreign file: length {len} is not a multiple of the {RECORD_BYTES}-byte record; the last \
                 record {last} is incomplete ({} of {RECORD_BYTES} bytes; records count from 0)",
                len % RECORD_BYTES
            ),
        ));
    }
    let count = len / RECORD_BYTES;
    let mut labels = Vec::with_capacity(count);
    for (record, r) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let (coarse, fine) = (r[0] as usize, r[1] as usize);
        let bad = if coarse >= COARSE_CLASSES {
            Some(format!("coarse label {coarse} (byte 0) is out of range 0..={}", COARSE_CLASSES - 1))
        } else if fine >= FINE_CLASSES {
            Some(format!("fine label {fine} (byte 1) is out of range 0..={}", FINE_CLASSES - 1))
        } else {
            None
        };
        if let Some(what) = bad {
            return Err(Error::Record {
                path: path.to_path_buf(),
                record,
                message: format!(
                    "{what} (record at byte offset {}; records count from 0): a foreign or corrupt file",
                    record * RECORD_BYTES
                ),
            });
        }
        labels.push(fine as u32);
    }
    // Drop the label bytes in place: the training file is 150 MB, too much to
    // copy for nothing. Each record's pixels move to a lower offset, so a
    // forward pass never overwrites bytes it has yet to move.
    for record in 0..count {
        let from = record * RECORD_BYTES + 2;
        bytes.copy_within(from..from + PIXEL_BYTES, record * PIXEL_BYTES);
    }
    bytes.truncate(count * PIXEL_BYTES);
    Ok(RawImages { channels: CHANNELS, height: SIDE, width: SIDE, pixels: bytes, labels })
}

/// Reads and checks both CIFAR-100 files (each plain or `.gz`) under `dir`. The
/// hash covers the decompressed bytes of both, training file first.
pub fn read_cifar100(dir: &Path) -> Result<ImageSource> {
    let files: Vec<PathBuf> = FILES.iter().map(|rel| source::find(dir, rel)).collect::<Result<_>>()?;
    // Decompressing 160 MB of gzip dominates loading; the two files inflate in parallel.
    let (train_bytes, test_bytes) = rayon::join(|| source::read_bytes(&files[0]), || source::read_bytes(&files[1]));
    let (train_bytes, test_bytes) = (train_bytes?, test_bytes?);
    let data_hash = hash_bytes(&[DatasetId::Cifar100.name().as_bytes(), &train_bytes, &test_bytes]);
    let train = parse(&files[0], train_bytes)?;
    let test = parse(&files[1], test_bytes)?;
    Ok(ImageSource { train, test, files, data_hash })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::idx::tests::gzip;

    /// Record `i` of the fixtures: labels and a distinct, non-constant image whose
    /// three planes differ.
    pub(crate) fn record(coarse: u8, fine: u8, i: usize) -> Vec<u8> {
        let mut r = vec![coarse, fine];
        // the planes are shifted copies of one pattern: their means differ by 25 grey levels
        r.extend((0..PIXEL_BYTES).map(|p| (((p % 1024) * (2 * i + 1) + 31 * i) % 200 + p / 1024 * 25) as u8));
        r
    }

    fn records(n: usize, offset: usize) -> Vec<u8> {
        (0..n).flat_map(|i| record((i % COARSE_CLASSES) as u8, ((i * 7) % FINE_CLASSES) as u8, i + offset)).collect()
    }

    /// Writes a CIFAR-100 folder: the training file gzipped, the test file plain.
    pub(crate) fn write_fixture(dir: &Path, n_train: usize, n_test: usize) {
        let d = dir.join("cifar-100");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("train.bin.gz"), gzip(&records(n_train, 0))).unwrap();
        std::fs::write(d.join("test.bin"), records(n_test, 500)).unwrap();
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
        format!("{}", r.expect_err("expected an error"))
    }

    #[test]
    fn cifar_records_round_trip_plain_and_gzipped() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 6, 2);
        let src = read_cifar100(tmp.path()).unwrap();
        assert!(src.files[0].ends_with("cifar-100/train.bin.gz") && src.files[1].ends_with("cifar-100/test.bin"));
        assert_eq!((src.train.len(), src.test.len()), (6, 2));
        assert_eq!((src.train.channels, src.train.height, src.train.width), (3, 32, 32));
        assert_eq!(src.train.pixels.len(), 6 * PIXEL_BYTES);
        // fine labels are the classes
        assert_eq!(src.train.labels, vec![0, 7, 14, 21, 28, 35]);
        assert_eq!(src.test.labels, vec![0, 7]);
        for i in 0..6 {
            assert_eq!(&src.train.pixels[i * PIXEL_BYTES..(i + 1) * PIXEL_BYTES], &record(0, 0, i)[2..], "record {i}");
        }
        assert_eq!(&src.test.pixels[PIXEL_BYTES..], &record(0, 0, 501)[2..]);
    }

    #[test]
    fn cifar_length_not_a_multiple_of_the_record_is_an_error() {
        let mut bytes = records(3, 0);
        bytes.truncate(2 * RECORD_BYTES + 100);
        let e = err_text(parse(Path::new("c/train.bin"), bytes));
        assert!(e.contains("c/train.bin"), "{e}");
        assert!(
            e.contains("truncated or foreign file: length 6248 is not a multiple of the 3074-byte record; the last record 2 is incomplete"),
            "{e}"
        );
        assert!(e.contains("100 of 3074 bytes"), "{e}");
        let e = err_text(parse(Path::new("c/test.bin"), vec![7; 10]));
        assert!(e.contains("length 10") && e.contains("last record 0 is incomplete"), "{e}");
    }

    #[test]
    fn cifar_label_out_of_range_names_the_record() {
        let mut bytes = records(4, 0);
        bytes[2 * RECORD_BYTES + 1] = 100;
        let e = err_text(parse(Path::new("c/train.bin"), bytes.clone()));
        assert!(e.contains("c/train.bin, record 2") && e.contains("fine label 100 (byte 1) is out of range 0..=99"), "{e}");
        assert!(e.contains("byte offset 6148"), "{e}");
        bytes[2 * RECORD_BYTES + 1] = 5;
        bytes[3 * RECORD_BYTES] = 20;
        let e = err_text(parse(Path::new("c/train.bin"), bytes));
        assert!(e.contains("record 3") && e.contains("coarse label 20 (byte 0) is out of range 0..=19"), "{e}");
    }

    #[test]
    fn empty_and_truncated_gzip_cifar_files_are_errors() {
        let e = err_text(parse(Path::new("c/test.bin"), Vec::new()));
        assert!(e.contains("c/test.bin") && e.contains("empty"), "{e}");

        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 5, 2);
        let gz = tmp.path().join("cifar-100/train.bin.gz");
        let full = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &full[..full.len() - 20]).unwrap();
        let e = err_text(read_cifar100(tmp.path()));
        assert!(e.contains("train.bin.gz") && e.contains("truncated or corrupt gzip"), "{e}");

        std::fs::write(tmp.path().join("cifar-100/test.bin"), b"").unwrap();
        std::fs::write(&gz, full).unwrap();
        let e = err_text(read_cifar100(tmp.path()));
        assert!(e.contains("test.bin") && e.contains("empty"), "{e}");
    }
}
