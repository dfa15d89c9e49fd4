//! Image preprocessing shared by Fashion-MNIST (`idx.rs`) and CIFAR-100
//! (`cifar.rs`): decoded u8 images -> `[n, 3, 32, 32]` f32 tables, split 90/10
//! from the published training file, the published test file as the test split,
//! each channel normalised with statistics of the training part only.

use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::{Dataset, DatasetId, LoadOptions, Table, Targets};
use crate::error::{Error, Result};

/// Every image enters the networks as 3 channels of 32x32.
pub const CHANNELS: usize = 3;
pub const SIDE: usize = 32;
pub const SAMPLE_LEN: usize = CHANNELS * SIDE * SIDE;

/// Images as decoded from the published files: u8 pixels, one sample after
/// another, each `channels` planes of `height x width`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RawImages {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
}

impl RawImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn sample_len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// An image dataset's published training and test files, decoded and checked.
#[derive(Debug, Clone)]
pub struct ImageSource {
    pub train: RawImages,
    pub test: RawImages,
    /// The files read, training files first.
    pub files: Vec<PathBuf>,
    /// sha256 of the dataset name and the decompressed bytes of `files`, hex.
    pub data_hash: String,
}

/// Indices of a seeded 90/10 training/validation split of `n` images.
/// Same generator and seed mixing as `prep::split_indices`: a seed splits the
/// same way on every machine and rand release.
pub fn split_train_valid(n: usize, seed: u64) -> [Vec<usize>; 2] {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_5b1f_0000_0000);
    idx.shuffle(&mut rng);
    let valid = idx.split_off(n * 9 / 10);
    [idx, valid]
}

/// Where one output pixel reads along one axis: `(1 - w) * src[lo] + w * src[hi]`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tap {
    lo: usize,
    hi: usize,
    w: f32,
}

/// Bilinear taps with the align-corners=false convention (PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`, torchvision's `Resize`):
/// output pixel centres map to `(o + 0.5) * in / out - 0.5`, clamped at 0 below
/// and at the last pixel above.
fn taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let lo = (src as usize).min(input - 1);
            let hi = (lo + 1).min(input - 1);
            Tap { lo, hi, w: src - lo as f32 }
        })
        .collect()
}

fn resize_with(src: &[f32], in_w: usize, rows: &[Tap], cols: &[Tap], out: &mut [f32]) {
    let out_w = cols.len();
    for (oy, ty) in rows.iter().enumerate() {
        let (r0, r1) = (&src[ty.lo * in_w..(ty.lo + 1) * in_w], &src[ty.hi * in_w..(ty.hi + 1) * in_w]);
        for (ox, tx) in cols.iter().enumerate() {
            // same grouping as PyTorch's CPU kernel: columns first within each row
            let top = (1.0 - tx.w) * r0[tx.lo] + tx.w * r0[tx.hi];
            let bottom = (1.0 - tx.w) * r1[tx.lo] + tx.w * r1[tx.hi];
            out[oy * out_w + ox] = (1.0 - ty.w) * top + ty.w * bottom;
        }
    }
}

/// Resizes one `in_h x in_w` plane (row-major) to `out_h x out_w` with bilinear
/// interpolation, align-corners=false (as torchvision's `Resize`; for upsampling
/// its antialias option changes nothing).
///
/// # Panics
/// If `src` does not hold `in_h * in_w` values.
pub fn resize_bilinear(src: &[f32], in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    assert_eq!(src.len(), in_h * in_w, "resize_bilinear: the plane is not {in_h}x{in_w}");
    let mut out = vec![0.0; out_h * out_w];
    if in_h > 0 && in_w > 0 {
        resize_with(src, in_w, &taps(in_h, out_h), &taps(in_w, out_w), &mut out);
    }
    out
}

/// Turns the images `rows` of `raw` into `[rows.len(), 3, 32, 32]` f32 pixels in
/// [0, 1]. One-channel images (Fashion-MNIST's 28x28) are resized to 32x32 with
/// bilinear interpolation (align-corners=false, as torchvision's `Resize`) and
/// repeated to three channels: how the 2020 study fed Fashion-MNIST to its
/// 3-channel nets. The resize runs in f32 on pixels already scaled to [0, 1]
/// (torchvision's tensor path); its PIL path would round back to u8 first, at
/// most half a grey level away.
fn to_unit_pixels(raw: &RawImages, rows: &[usize]) -> Vec<f32> {
    let (h, w) = (raw.height, raw.width);
    let plane = h * w;
    let resize = (h, w) != (SIDE, SIDE);
    let (row_taps, col_taps) = (taps(h, SIDE), taps(w, SIDE));
    let mut x = vec![0.0f32; rows.len() * SAMPLE_LEN];
    x.par_chunks_mut(SAMPLE_LEN).zip(rows.par_iter()).for_each(|(out, &r)| {
        let sample = &raw.pixels[r * raw.sample_len()..(r + 1) * raw.sample_len()];
        let mut unit = vec![0.0f32; plane];
        let mut resized = vec![0.0f32; SIDE * SIDE];
        for c in 0..CHANNELS {
            // one-channel images repeat their only plane
            let src_c = if raw.channels == 1 { 0 } else { c };
            for (u, &p) in unit.iter_mut().zip(&sample[src_c * plane..(src_c + 1) * plane]) {
                *u = p as f32 / 255.0;
            }
            let dst = &mut out[c * SIDE * SIDE..(c + 1) * SIDE * SIDE];
            if resize {
                resize_with(&unit, w, &row_taps, &col_taps, &mut resized);
                dst.copy_from_slice(&resized);
            } else {
                dst.copy_from_slice(&unit);
            }
        }
    });
    x
}

/// Per-channel mean and (population) standard deviation of pixels in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelStats {
    pub mean: [f64; CHANNELS],
    pub std: [f64; CHANNELS],
}

impl ChannelStats {
    /// Fits on `[n, 3, 32, 32]` pixels. Sums per sample (in parallel) and then
    /// over samples in order, so the result does not depend on the thread count.
    /// A constant channel gets std 1 so that it maps to 0 instead of NaN.
    pub fn fit(x: &[f32]) -> ChannelStats {
        let plane = SIDE * SIDE;
        let values_per_channel = (x.len() / SAMPLE_LEN * plane) as f64;
        let per_sample = |f: &(dyn Fn(usize, f32) -> f64 + Sync)| -> [f64; CHANNELS] {
            let sums: Vec<[f64; CHANNELS]> = x
                .par_chunks(SAMPLE_LEN)
                .map(|s| std::array::from_fn(|c| s[c * plane..(c + 1) * plane].iter().map(|&v| f(c, v)).sum()))
                .collect();
            std::array::from_fn(|c| sums.iter().map(|s| s[c]).sum::<f64>() / values_per_channel)
        };
        let mean = per_sample(&|_, v| v as f64);
        let var = per_sample(&|c, v| (v as f64 - mean[c]).powi(2));
        let std = std::array::from_fn(|c| if var[c] > 0.0 { var[c].sqrt() } else { 1.0 });
        ChannelStats { mean, std }
    }

    /// Normalises `[n, 3, 32, 32]` pixels in place: `(v - mean) / std` per channel.
    pub fn apply(&self, x: &mut [f32]) {
        let plane = SIDE * SIDE;
        x.par_chunks_mut(SAMPLE_LEN).for_each(|s| {
            for (c, ch) in s.chunks_mut(plane).enumerate() {
                for v in ch {
                    *v = ((*v as f64 - self.mean[c]) / self.std[c]) as f32;
                }
            }
        });
    }
}

fn table(raw: &RawImages, rows: &[usize]) -> Table {
    Table {
        x: to_unit_pixels(raw, rows),
        sample_shape: vec![CHANNELS, SIDE, SIDE],
        y: Targets::Classes(rows.iter().map(|&r| raw.labels[r]).collect()),
    }
}

/// Builds an image [`Dataset`] from its decoded files:
/// - the published training file, shuffled with `options.seed`, splits 90/10 into
///   training and validation; `train_limit` keeps the first N of the shuffled
///   training part (a prefix: the split itself does not depend on the limit);
/// - the published test file is the test split; `eval_limit` keeps the first N
///   of validation and of test;
/// - pixels are scaled to [0, 1] (Fashion-MNIST first resized to 32x32 and
///   repeated to 3 channels), then each channel is normalised with the mean and
///   std of the training part as used, i.e. after `train_limit`.
pub fn build(id: DatasetId, source: ImageSource, options: &LoadOptions) -> Result<Dataset> {
    let ImageSource { train: published_train, test: published_test, files, data_hash } = source;
    let first_file = files.first().cloned().unwrap_or_default();
    for (flag, limit) in [("--train-limit", options.train_limit), ("--eval-limit", options.eval_limit)] {
        if limit == Some(0) {
            return Err(Error::config(flag, "must be at least 1: 0 images leaves nothing to train or evaluate on"));
        }
    }
    for raw in [&published_train, &published_test] {
        // the parsers only produce these; a new loader that does not is a bug here
        if !(raw.channels == 1 || raw.channels == CHANNELS) || raw.pixels.len() != raw.len() * raw.sample_len() {
            return Err(Error::file(
                &first_file,
                format!("decoded images are {} channels of {}x{}: expected 1 or 3 channels", raw.channels, raw.height, raw.width),
            ));
        }
    }
    let n = published_train.len();
    let [mut train_rows, mut valid_rows] = split_train_valid(n, options.seed);
    if train_rows.is_empty() || valid_rows.is_empty() || published_test.is_empty() {
        return Err(Error::file(
            &first_file,
            format!("only {n} training images: too few to split 90/10 into training and validation"),
        ));
    }
    let mut test_rows: Vec<usize> = (0..published_test.len()).collect();
    if let Some(limit) = options.train_limit {
        train_rows.truncate(limit);
    }
    if let Some(limit) = options.eval_limit {
        valid_rows.truncate(limit);
        test_rows.truncate(limit);
    }

    let mut train = table(&published_train, &train_rows);
    let mut valid = table(&published_train, &valid_rows);
    let mut test = table(&published_test, &test_rows);
    let stats = ChannelStats::fit(&train.x);
    for t in [&mut train, &mut valid, &mut test] {
        stats.apply(&mut t.x);
    }

    let input = if published_train.channels == 1 {
        format!(
            "{}x{} grey images resized to {SIDE}x{SIDE} (bilinear, align-corners=false, as torchvision's Resize) and repeated to 3 channels",
            published_train.height, published_train.width
        )
    } else {
        format!("{SIDE}x{SIDE} RGB images as published, fine labels")
    };
    let fmt3 = |v: [f64; CHANNELS]| v.map(|x| format!("{x:.4}")).join(", ");
    let mut preprocessing = format!(
        "{input}; pixels / 255; each channel normalised with the training part's mean ({}) and std ({}); \
         seeded 90/10 train/validation split of the published training file ({n} images); published test file ({} images) as test",
        fmt3(stats.mean),
        fmt3(stats.std),
        published_test.len()
    );
    if let Some(limit) = options.train_limit {
        preprocessing.push_str(&format!("; --train-limit {limit}: first {} of the shuffled training part", train.len()));
    }
    if let Some(limit) = options.eval_limit {
        preprocessing.push_str(&format!("; --eval-limit {limit}: first {} validation and {} test images", valid.len(), test.len()));
    }

    Ok(Dataset {
        id,
        task: id.task(),
        train,
        valid,
        test,
        target_scaler: None,
        target_unit: None,
        feature_names: Vec::new(),
        files,
        data_hash,
        preprocessing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Task, cifar, idx, load, load_with};
    use std::path::Path;

    fn classes(t: &Table) -> &[u32] {
        match &t.y {
            Targets::Classes(c) => c,
            Targets::Values(_) => panic!("expected classes"),
        }
    }

    /// Mean and population std of channel `c` over all samples of `x`.
    fn channel_moments(x: &[f32], c: usize) -> (f64, f64) {
        let vals: Vec<f64> =
            x.chunks(SAMPLE_LEN).flat_map(|s| s[c * SIDE * SIDE..(c + 1) * SIDE * SIDE].iter().map(|&v| v as f64)).collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
        (mean, var.sqrt())
    }

    const NO_LIMITS: LoadOptions = LoadOptions { seed: 3, train_limit: None, eval_limit: None };

    #[test]
    fn dataset_ids_have_their_cli_and_serde_names() {
        use clap::ValueEnum;
        for (id, name, classes) in [(DatasetId::FashionMnist, "fashion-mnist", 10), (DatasetId::Cifar100, "cifar100", 100)] {
            assert_eq!(id.name(), name);
            assert_eq!(id.to_string(), name);
            assert_eq!(id.task(), Task::Classification { classes });
            assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<DatasetId>(&format!("\"{name}\"")).unwrap(), id);
            assert_eq!(DatasetId::from_str(name, false).unwrap(), id);
        }
    }

    #[test]
    fn split_is_90_10_disjoint_complete_and_seeded() {
        let [a, b] = split_train_valid(60_000, 1);
        assert_eq!((a.len(), b.len()), (54_000, 6_000));
        let [a, b] = split_train_valid(101, 7);
        assert_eq!((a.len(), b.len()), (90, 11));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(split_train_valid(101, 7), [a.clone(), b]);
        assert_ne!(split_train_valid(101, 8)[0], a);
    }

    #[test]
    fn resize_matches_hand_computed_bilinear_weights() {
        // 28 -> 32: output o reads source (o + 0.5) * 0.875 - 0.5
        // a horizontal ramp stays a ramp: value 9 * source column, clamped at the edges
        let ramp: Vec<f32> = (0..28 * 28).map(|p| (p % 28) as f32 * 9.0).collect();
        let out = resize_bilinear(&ramp, 28, 28, 32, 32);
        for row in 0..32 {
            for col in 0..32 {
                let src = ((col as f32 + 0.5) * 0.875 - 0.5).clamp(0.0, 27.0);
                assert!((out[row * 32 + col] - 9.0 * src).abs() < 1e-4, "({row}, {col}): {}", out[row * 32 + col]);
            }
        }
        assert_eq!((out[0], out[1], out[31]), (0.0, 7.3125, 243.0));
        // a single bright pixel in the corner: weights (1 - 0.8125) = 0.1875 per axis
        let mut delta = vec![0.0f32; 28 * 28];
        delta[0] = 1.0;
        let out = resize_bilinear(&delta, 28, 28, 32, 32);
        assert_eq!(out[0], 1.0);
        assert!((out[1] - 0.1875).abs() < 1e-6 && (out[32] - 0.1875).abs() < 1e-6);
        assert!((out[33] - 0.1875 * 0.1875).abs() < 1e-6);
        assert_eq!(out[2], 0.0); // column 2 reads source 1.6875: columns 1 and 2
        assert_eq!(out.iter().filter(|&&v| v != 0.0).count(), 4);
        // a constant plane stays constant; same size is the identity
        let out = resize_bilinear(&[0.25; 28 * 28], 28, 28, 32, 32);
        assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-7));
        assert_eq!(resize_bilinear(&ramp, 28, 28, 28, 28), ramp);
    }

    #[test]
    fn fashion_mnist_becomes_normalised_3x32x32_tables() {
        let tmp = tempfile::tempdir().unwrap();
        idx::tests::write_fixture(tmp.path(), 20, 5);
        let d = load_with(DatasetId::FashionMnist, tmp.path(), &NO_LIMITS).unwrap();
        assert_eq!(d.task, Task::Classification { classes: 10 });
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (18, 2, 5));
        for t in [&d.train, &d.valid, &d.test] {
            assert_eq!(t.sample_shape, vec![3, 32, 32]);
            assert_eq!(t.x.len(), t.len() * 3 * 32 * 32);
            assert!(t.x.iter().all(|v| v.is_finite()));
        }
        assert!(d.target_scaler.is_none() && d.target_unit.is_none() && d.feature_names.is_empty());
        assert_eq!(d.files.len(), 4);
        assert_eq!(d.data_hash.len(), 64);
        assert!(d.preprocessing.contains("resized to 32x32") && d.preprocessing.contains("repeated to 3 channels"), "{}", d.preprocessing);
        assert!(!d.preprocessing.contains('\n'));

        // training part: each channel has mean 0 and std 1; the channels are copies
        for c in 0..3 {
            let (mean, std) = channel_moments(&d.train.x, c);
            assert!(mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-5, "channel {c}: {mean} {std}");
        }
        let plane = 32 * 32;
        assert_eq!(&d.test.x[..plane], &d.test.x[plane..2 * plane]);
        assert_eq!(&d.test.x[..plane], &d.test.x[2 * plane..3 * plane]);

        // labels follow the split; test images keep file order
        let [train_rows, valid_rows] = split_train_valid(20, 3);
        let want = |rows: &[usize]| rows.iter().map(|&r| (r % 10) as u32).collect::<Vec<_>>();
        assert_eq!(classes(&d.train), want(&train_rows));
        assert_eq!(classes(&d.valid), want(&valid_rows));
        assert_eq!(classes(&d.test), &[0, 3, 6, 9, 2]);

        // a test pixel, by hand: resize test image 0, scale, normalise with the
        // training part's statistics (which are those of the resized training images)
        let raw: Vec<f32> = idx::tests::pattern(1000).iter().map(|&p| p as f32 / 255.0).collect();
        let resized = resize_bilinear(&raw, 28, 28, 32, 32);
        let train_unit: Vec<f32> = train_rows
            .iter()
            .flat_map(|&r| {
                let img: Vec<f32> = idx::tests::pattern(r).iter().map(|&p| p as f32 / 255.0).collect();
                let one = resize_bilinear(&img, 28, 28, 32, 32);
                [one.clone(), one.clone(), one].concat()
            })
            .collect();
        let (mean, std) = channel_moments(&train_unit, 0);
        for p in [0, 1, 33, 500, 1023] {
            let want = (resized[p] as f64 - mean) / std;
            assert!((d.test.x[p] as f64 - want).abs() < 1e-4, "pixel {p}: {} vs {want}", d.test.x[p]);
        }
    }

    #[test]
    fn cifar100_becomes_normalised_tables_with_fine_labels() {
        let tmp = tempfile::tempdir().unwrap();
        cifar::tests::write_fixture(tmp.path(), 30, 4);
        let d = load(DatasetId::Cifar100, tmp.path(), 11).unwrap();
        assert_eq!(d.task, Task::Classification { classes: 100 });
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (27, 3, 4));
        assert_eq!(d.train.sample_shape, vec![3, 32, 32]);
        assert!(d.preprocessing.contains("RGB") && !d.preprocessing.contains("resized"), "{}", d.preprocessing);
        let mut means = [0.0; 3];
        for (c, m) in means.iter_mut().enumerate() {
            let (mean, std) = channel_moments(&d.train.x, c);
            assert!(mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-5, "channel {c}: {mean} {std}");
            // the fixture's planes differ, so the raw channel means do too
            let raw: Vec<f32> = split_train_valid(30, 11)[0]
                .iter()
                .flat_map(|&r| cifar::tests::record(0, 0, r)[2..].iter().map(|&p| p as f32 / 255.0).collect::<Vec<_>>())
                .collect();
            *m = channel_moments(&raw, c).0;
        }
        assert!(means[0] != means[1] && means[1] != means[2]);
        assert_eq!(classes(&d.test), &[0, 7, 14, 21]);
        let [train_rows, _] = split_train_valid(30, 11);
        assert_eq!(classes(&d.train), train_rows.iter().map(|&r| ((r * 7) % 100) as u32).collect::<Vec<_>>());
        // a test pixel by hand: record 500 + 2 of the fixture, green plane
        let (mean, std) = {
            let raw: Vec<f32> = train_rows
                .iter()
                .flat_map(|&r| cifar::tests::record(0, 0, r)[2..].iter().map(|&p| p as f32 / 255.0).collect::<Vec<_>>())
                .collect();
            channel_moments(&raw, 1)
        };
        let p = 1024 + 77;
        let want = (cifar::tests::record(0, 0, 502)[2 + p] as f64 / 255.0 - mean) / std;
        assert!((d.test.x[2 * 3072 + p] as f64 - want).abs() < 1e-4);
    }

    #[test]
    fn limits_keep_a_prefix_of_a_split_that_does_not_move() {
        let tmp = tempfile::tempdir().unwrap();
        idx::tests::write_fixture(tmp.path(), 40, 9);
        let full = load_with(DatasetId::FashionMnist, tmp.path(), &NO_LIMITS).unwrap();
        let opts = LoadOptions { seed: 3, train_limit: Some(10), eval_limit: Some(2) };
        let small = load_with(DatasetId::FashionMnist, tmp.path(), &opts).unwrap();
        assert_eq!((small.train.len(), small.valid.len(), small.test.len()), (10, 2, 2));
        assert_eq!(classes(&small.train), &classes(&full.train)[..10]);
        assert_eq!(classes(&small.valid), &classes(&full.valid)[..2]);
        assert_eq!(classes(&small.test), &classes(&full.test)[..2]);
        assert_eq!(small.data_hash, full.data_hash);
        assert!(small.preprocessing.contains("--train-limit 10") && small.preprocessing.contains("--eval-limit 2"));
        // statistics come from the training part as used
        let (mean, _) = channel_moments(&small.train.x, 0);
        assert!(mean.abs() < 1e-5);
        // limits beyond the sizes change nothing
        let big = LoadOptions { seed: 3, train_limit: Some(1000), eval_limit: Some(1000) };
        let same = load_with(DatasetId::FashionMnist, tmp.path(), &big).unwrap();
        assert_eq!((&same.train, &same.valid, &same.test), (&full.train, &full.valid, &full.test));
        // a zero limit is a configuration error
        let zero = LoadOptions { seed: 3, train_limit: Some(0), eval_limit: None };
        let e = load_with(DatasetId::FashionMnist, tmp.path(), &zero).unwrap_err().to_string();
        assert!(e.contains("--train-limit") && e.contains("at least 1"), "{e}");
        // the seed moves the split
        let other = load_with(DatasetId::FashionMnist, tmp.path(), &LoadOptions { seed: 4, ..NO_LIMITS }).unwrap();
        assert_ne!(classes(&other.train), classes(&full.train));
    }

    #[test]
    fn too_few_images_to_split_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        idx::tests::write_fixture(tmp.path(), 1, 1);
        let e = load_with(DatasetId::FashionMnist, tmp.path(), &NO_LIMITS).unwrap_err().to_string();
        assert!(e.contains("train-images-idx3-ubyte") && e.contains("only 1 training images"), "{e}");
    }

    #[test]
    fn missing_image_dataset_files_say_where_they_were_looked_for() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load_with(DatasetId::Cifar100, tmp.path(), &NO_LIMITS).unwrap_err().to_string();
        assert!(e.contains("cifar-100/train.bin") && e.contains("train.bin.gz"), "{e}");
    }

    fn real_datasets_dir() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
        if dir.is_dir() {
            Some(dir)
        } else {
            println!("checked nothing: {} does not exist (the real data sets are not on this machine)", dir.display());
            None
        }
    }

    fn per_class(labels: &[u32], classes: usize) -> Vec<usize> {
        let mut n = vec![0; classes];
        for &l in labels {
            n[l as usize] += 1;
        }
        n
    }

    #[test]
    fn reads_the_real_fashion_mnist_files_when_present() {
        let Some(dir) = real_datasets_dir() else { return };
        let src = idx::read_fashion_mnist(&dir).unwrap();
        assert_eq!((src.train.len(), src.test.len()), (60_000, 10_000));
        assert_eq!(per_class(&src.train.labels, 10), vec![6_000; 10]);
        assert_eq!(per_class(&src.test.labels, 10), vec![1_000; 10]);
        // the well-known training pixel mean, before the resize
        let mean = src.train.pixels.iter().map(|&p| p as f64).sum::<f64>() / src.train.pixels.len() as f64 / 255.0;
        assert!((mean - 0.2860).abs() < 5e-5, "{mean}");
        let opts = LoadOptions { seed: 1, train_limit: Some(2_000), eval_limit: Some(500) };
        let d = build(DatasetId::FashionMnist, src, &opts).unwrap();
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (2_000, 500, 500));
        assert_eq!(d.train.x.len(), 2_000 * 3 * 32 * 32);
        let (m, s) = channel_moments(&d.train.x, 2);
        assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-4);
    }

    #[test]
    fn reads_the_real_cifar100_files_when_present() {
        let Some(dir) = real_datasets_dir() else { return };
        let src = cifar::read_cifar100(&dir).unwrap();
        assert_eq!((src.train.len(), src.test.len()), (50_000, 10_000));
        assert_eq!(per_class(&src.train.labels, 100), vec![500; 100]);
        assert_eq!(per_class(&src.test.labels, 100), vec![100; 100]);
        let opts = LoadOptions { seed: 1, train_limit: Some(2_000), eval_limit: Some(500) };
        let d = build(DatasetId::Cifar100, src, &opts).unwrap();
        assert_eq!((d.train.len(), d.valid.len(), d.test.len()), (2_000, 500, 500));
        for c in 0..3 {
            let (m, s) = channel_moments(&d.train.x, c);
            assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-4);
        }
    }
}
