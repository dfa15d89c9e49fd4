//! Fashion-MNIST in its published IDX files (`fashion-mnist/*-idx?-ubyte[.gz]`):
//! u8 images and labels, checked field by field. Preprocessing (resize to 32x32,
//! three channels, normalisation) lives in `images.rs`.
//!
//! IDX layout: a big-endian u32 magic (`0x0000_08TT`, TT = 0x03 dimensions for
//! images, 0x01 for labels), one big-endian u32 per dimension, then the u8 data.

use std::path::{Path, PathBuf};

use super::images::{ImageSource, RawImages};
use super::{DatasetId, hash_bytes, source};
use crate::error::{Error, Result};

/// Magic of an IDX file of u8 values with three dimensions (count, rows, cols).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an IDX file of u8 values with one dimension (count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Fashion-MNIST's ten classes, 0 T-shirt/top .. 9 Ankle boot.
pub const CLASSES: usize = 10;
/// Fashion-MNIST images are 28x28; anything else is another data set.
pub const SIDE: usize = 28;

const IMAGES_HEADER_BYTES: usize = 16;
const LABELS_HEADER_BYTES: usize = 8;

/// The four published files, relative to the data directory, in the order
/// they are hashed: training images, training labels, test images, test labels.
pub const FILES: [&str; 4] = [
    "fashion-mnist/train-images-idx3-ubyte",
    "fashion-mnist/train-labels-idx1-ubyte",
    "fashion-mnist/t10k-images-idx3-ubyte",
    "fashion-mnist/t10k-labels-idx1-ubyte",
];

/// The body of an IDX image file: `count` images of `rows x cols` u8 pixels,
/// row-major, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> usize {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
}

/// Checks the magic and the header length; what a file of the other IDX kind,
/// or of no IDX kind, trips over first.
fn check_header(path: &Path, bytes: &[u8], what: &str, magic: u32, header_bytes: usize) -> Result<()> {
    if bytes.len() < 4 {
        return Err(Error::file(
            path,
            format!("truncated header: an IDX {what} file starts with a {header_bytes}-byte header, found {} bytes", bytes.len()),
        ));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        let kind = match found {
            IMAGES_MAGIC => " (the magic of an IDX image file)",
            LABELS_MAGIC => " (the magic of an IDX label file)",
            _ => "",
        };
        return Err(Error::file(
            path,
            format!(
                "wrong magic number 0x{found:08x}{kind}, expected 0x{magic:08x} for an IDX {what} file: \
                 the file may be of another kind (swapped images and labels, or not IDX at all)"
            ),
        ));
    }
    if bytes.len() < header_bytes {
        return Err(Error::file(
            path,
            format!("truncated header: an IDX {what} file starts with a {header_bytes}-byte header, found {} bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// Parses an IDX image file (magic 0x00000803): its header, then exactly
/// `count * rows * cols` pixel bytes, no more and no fewer.
pub fn parse_images(path: &Path, mut bytes: Vec<u8>) -> Result<IdxImages> {
    check_header(path, &bytes, "image", IMAGES_MAGIC, IMAGES_HEADER_BYTES)?;
    let (count, rows, cols) = (be_u32(&bytes, 4), be_u32(&bytes, 8), be_u32(&bytes, 12));
    if count == 0 || rows == 0 || cols == 0 {
        return Err(Error::file(path, format!("the header says {count} images of {rows}x{cols} pixels: no pixels to read")));
    }
    let expected = count
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols))
        .ok_or_else(|| Error::file(path, format!("the header's {count} images of {rows}x{cols} pixels overflow: not an IDX image file")))?;
    let found = bytes.len() - IMAGES_HEADER_BYTES;
    if found < expected {
        return Err(Error::file(
            path,
            format!(
                "truncated: expected {expected} bytes of pixels ({count} images of {rows}x{cols}), found {found}; \
                 download the file again"
            ),
        ));
    }
    if found > expected {
        return Err(Error::file(
            path,
            format!(
                "{} bytes after the last of the header's {count} images of {rows}x{cols} (expected {expected} bytes of \
                 pixels, found {found}): the header is wrong or the file is of another kind",
                found - expected
            ),
        ));
    }
    // drain instead of copying: the training file is 47 MB
    bytes.drain(..IMAGES_HEADER_BYTES);
    Ok(IdxImages { count, rows, cols, pixels: bytes })
}

/// Parses an IDX label file (magic 0x00000801): its header, then exactly
/// `count` labels, each in `0..classes`.
pub fn parse_labels(path: &Path, bytes: &[u8], classes: usize) -> Result<Vec<u32>> {
    check_header(path, bytes, "label", LABELS_MAGIC, LABELS_HEADER_BYTES)?;
    let count = be_u32(bytes, 4);
    if count == 0 {
        return Err(Error::file(path, "the header says 0 labels: no labels to read"));
    }
    let found = bytes.len() - LABELS_HEADER_BYTES;
    if found < count {
        return Err(Error::file(path, format!("truncated: expected {count} bytes of labels, found {found}; download the file again")));
    }
    if found > count {
        return Err(Error::file(
            path,
            format!(
                "{} bytes after the header's {count} labels (expected {count} bytes of labels, found {found}): the header \
                 is wrong or the file is of another kind",
                found - count
            ),
        ));
    }
    bytes[LABELS_HEADER_BYTES..]
        .iter()
        .enumerate()
        .map(|(record, &label)| {
            if (label as usize) < classes {
                Ok(label as u32)
            } else {
                Err(Error::Record {
                    path: path.to_path_buf(),
                    record,
                    message: format!("label {label} is out of range 0..={} (record numbers count from 0)", classes - 1),
                })
            }
        })
        .collect()
}

/// Parses one images file and its labels file into Fashion-MNIST images:
/// 28x28, as many labels as images, labels in 0..10.
pub fn parse_pair(images_path: &Path, images: Vec<u8>, labels_path: &Path, labels: &[u8]) -> Result<RawImages> {
    let images = parse_images(images_path, images)?;
    if (images.rows, images.cols) != (SIDE, SIDE) {
        return Err(Error::file(
            images_path,
            format!("images are {}x{}, expected Fashion-MNIST's {SIDE}x{SIDE}: the file is of another data set", images.rows, images.cols),
        ));
    }
    let labels = parse_labels(labels_path, labels, CLASSES)?;
    if labels.len() != images.count {
        return Err(Error::file(
            labels_path,
            format!(
                "holds {} labels but {} holds {} images: the two files must come from the same release and split",
                labels.len(),
                images_path.display(),
                images.count
            ),
        ));
    }
    Ok(RawImages { channels: 1, height: images.rows, width: images.cols, pixels: images.pixels, labels })
}

/// Reads and checks the four Fashion-MNIST files (each plain or `.gz`) under `dir`.
/// The hash covers the decompressed bytes of all four, in [`FILES`] order.
pub fn read_fashion_mnist(dir: &Path) -> Result<ImageSource> {
    let files: Vec<PathBuf> = FILES.iter().map(|rel| source::find(dir, rel)).collect::<Result<_>>()?;
    let [train_images, train_labels, test_images, test_labels] =
        [&files[0], &files[1], &files[2], &files[3]].map(|p| source::read_bytes(p));
    let (train_images, train_labels, test_images, test_labels) = (train_images?, train_labels?, test_images?, test_labels?);
    let data_hash = hash_bytes(&[
        DatasetId::FashionMnist.name().as_bytes(),
        &train_images,
        &train_labels,
        &test_images,
        &test_labels,
    ]);
    let train = parse_pair(&files[0], train_images, &files[1], &train_labels)?;
    let test = parse_pair(&files[2], test_images, &files[3], &test_labels)?;
    Ok(ImageSource { train, test, files, data_hash })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// An IDX image file holding `images` (each 28x28).
    pub(crate) fn idx_images(images: &[Vec<u8>], rows: usize, cols: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [IMAGES_MAGIC, images.len() as u32, rows as u32, cols as u32] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for img in images {
            assert_eq!(img.len(), rows * cols);
            out.extend_from_slice(img);
        }
        out
    }

    pub(crate) fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        out.extend_from_slice(labels);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Image `i` of the fixtures: a distinct, non-constant 28x28 pattern.
    pub(crate) fn pattern(i: usize) -> Vec<u8> {
        (0..SIDE * SIDE).map(|p| ((p * (i + 3) + 17 * i) % 256) as u8).collect()
    }

    /// Writes a Fashion-MNIST folder with `n_train` and `n_test` images; the
    /// training files gzipped, the test files plain, as both forms must load.
    pub(crate) fn write_fixture(dir: &Path, n_train: usize, n_test: usize) {
        let d = dir.join("fashion-mnist");
        std::fs::create_dir_all(&d).unwrap();
        let train: Vec<Vec<u8>> = (0..n_train).map(pattern).collect();
        let test: Vec<Vec<u8>> = (0..n_test).map(|i| pattern(i + 1000)).collect();
        let train_labels: Vec<u8> = (0..n_train).map(|i| (i % CLASSES) as u8).collect();
        let test_labels: Vec<u8> = (0..n_test).map(|i| ((i * 3) % CLASSES) as u8).collect();
        std::fs::write(d.join("train-images-idx3-ubyte.gz"), gzip(&idx_images(&train, SIDE, SIDE))).unwrap();
        std::fs::write(d.join("train-labels-idx1-ubyte.gz"), gzip(&idx_labels(&train_labels))).unwrap();
        std::fs::write(d.join("t10k-images-idx3-ubyte"), idx_images(&test, SIDE, SIDE)).unwrap();
        std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx_labels(&test_labels)).unwrap();
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T>) -> String {
        format!("{}", r.expect_err("expected an error"))
    }

    #[test]
    fn fixture_files_round_trip_plain_and_gzipped() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 7, 3);
        let src = read_fashion_mnist(tmp.path()).unwrap();
        assert_eq!(src.files.len(), 4);
        assert!(src.files[0].ends_with("fashion-mnist/train-images-idx3-ubyte.gz"));
        assert!(src.files[2].ends_with("fashion-mnist/t10k-images-idx3-ubyte"));
        assert_eq!((src.train.len(), src.test.len()), (7, 3));
        assert_eq!((src.train.channels, src.train.height, src.train.width), (1, 28, 28));
        assert_eq!(&src.train.pixels[784 * 4..784 * 5], &pattern(4)[..]);
        assert_eq!(&src.test.pixels[..784], &pattern(1000)[..]);
        assert_eq!(src.train.labels, vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(src.test.labels, vec![0, 3, 6]);
        // the hash is of the decompressed bytes: gzipping the test files too leaves it unchanged
        let d = tmp.path().join("fashion-mnist");
        for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
            let plain = std::fs::read(d.join(name)).unwrap();
            std::fs::write(d.join(format!("{name}.gz")), gzip(&plain)).unwrap();
            std::fs::remove_file(d.join(name)).unwrap();
        }
        let again = read_fashion_mnist(tmp.path()).unwrap();
        assert_eq!(again.data_hash, src.data_hash);
        assert_eq!(again.train, src.train);
        assert_eq!(again.test, src.test);
    }

    #[test]
    fn wrong_magic_names_found_and_expected() {
        let p = Path::new("x/train-images-idx3-ubyte");
        // a label file where images are expected
        let e = err_text(parse_images(p, idx_labels(&[1, 2, 3])));
        assert!(e.contains("x/train-images-idx3-ubyte"), "{e}");
        assert!(e.contains("0x00000801") && e.contains("0x00000803") && e.contains("another kind"), "{e}");
        let e = err_text(parse_labels(Path::new("y/labels"), &idx_images(&[pattern(0)], 28, 28), 10));
        assert!(e.contains("y/labels") && e.contains("0x00000803") && e.contains("expected 0x00000801"), "{e}");
        let e = err_text(parse_images(p, b"PK\x03\x04 a zip file, not IDX at all".to_vec()));
        assert!(e.contains("0x504b0304") && e.contains("another kind"), "{e}");
    }

    #[test]
    fn truncated_idx_file_is_an_error() {
        let p = Path::new("d/train-images-idx3-ubyte");
        let mut bytes = idx_images(&[pattern(0), pattern(1)], 28, 28);
        bytes.truncate(bytes.len() - 100);
        let e = err_text(parse_images(p, bytes));
        assert!(e.contains("d/train-images-idx3-ubyte") && e.contains("truncated: expected 1568 bytes of pixels") && e.contains("found 1468"), "{e}");
        // a header cut short
        let e = err_text(parse_images(p, idx_images(&[pattern(0)], 28, 28)[..10].to_vec()));
        assert!(e.contains("truncated header") && e.contains("16-byte header, found 10 bytes"), "{e}");
        let e = err_text(parse_images(p, vec![0, 0]));
        assert!(e.contains("truncated header"), "{e}");
        let e = err_text(parse_labels(Path::new("d/labels"), &idx_labels(&[1, 2, 3])[..9], 10));
        assert!(e.contains("d/labels") && e.contains("truncated: expected 3 bytes of labels, found 1"), "{e}");
    }

    #[test]
    fn trailing_bytes_after_idx_data_are_an_error() {
        let p = Path::new("d/imgs");
        let mut bytes = idx_images(&[pattern(0)], 28, 28);
        bytes.extend_from_slice(&[0; 5]);
        let e = err_text(parse_images(p, bytes));
        assert!(e.contains("d/imgs") && e.contains("5 bytes after the last") && e.contains("expected 784 bytes of pixels, found 789"), "{e}");
        let mut labels = idx_labels(&[1, 2]);
        labels.push(3);
        let e = err_text(parse_labels(Path::new("d/labels"), &labels, 10));
        assert!(e.contains("1 bytes after") && e.contains("expected 2 bytes of labels, found 3"), "{e}");
    }

    #[test]
    fn idx_label_out_of_range_names_the_record() {
        let e = err_text(parse_labels(Path::new("d/labels"), &idx_labels(&[0, 9, 4, 10, 2]), 10));
        assert!(e.contains("d/labels, record 3") && e.contains("label 10 is out of range 0..=9"), "{e}");
    }

    #[test]
    fn idx_image_and_label_counts_must_agree() {
        let e = err_text(parse_pair(
            Path::new("d/imgs"),
            idx_images(&[pattern(0), pattern(1), pattern(2)], 28, 28),
            Path::new("d/labels"),
            &idx_labels(&[1, 2]),
        ));
        assert!(e.contains("d/labels") && e.contains("holds 2 labels but d/imgs holds 3 images"), "{e}");
    }

    #[test]
    fn idx_images_of_another_size_are_rejected() {
        let e = err_text(parse_pair(Path::new("d/imgs"), idx_images(&[vec![0; 32 * 32]], 32, 32), Path::new("d/l"), &idx_labels(&[1])));
        assert!(e.contains("d/imgs") && e.contains("32x32") && e.contains("28x28"), "{e}");
        let e = err_text(parse_images(Path::new("d/imgs"), idx_images(&[], 28, 28)));
        assert!(e.contains("0 images") && e.contains("no pixels"), "{e}");
    }

    #[test]
    fn truncated_gzip_and_empty_idx_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        write_fixture(tmp.path(), 4, 2);
        let gz = tmp.path().join("fashion-mnist/train-images-idx3-ubyte.gz");
        let full = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &full[..full.len() / 2]).unwrap();
        let e = err_text(read_fashion_mnist(tmp.path()));
        assert!(e.contains("train-images-idx3-ubyte.gz") && e.contains("truncated or corrupt gzip"), "{e}");

        std::fs::write(&gz, full).unwrap();
        let labels = tmp.path().join("fashion-mnist/t10k-labels-idx1-ubyte");
        std::fs::write(&labels, b"").unwrap();
        let e = err_text(read_fashion_mnist(tmp.path()));
        assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("empty"), "{e}");

        std::fs::remove_file(&labels).unwrap();
        let e = err_text(read_fashion_mnist(tmp.path()));
        assert!(e.contains("not found") && e.contains("t10k-labels-idx1-ubyte"), "{e}");
    }
}
