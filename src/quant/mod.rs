//! Stage 3, quantization: f32 weights -> quantized weights of every variant.
//!
//! Input: a model's quantizable tensors and the grid's (method, bits, granularity,
//! seed). Output: integer codes and the f32 weights they stand for. The CPU
//! reference (`reference.rs`) *is* the specification in ../shared/DESIGN.md made
//! exact; the WGSL kernels must produce the same codes and the same weights.

pub mod apply;
pub mod exact;
pub mod gpu;
pub mod reference;

use serde::{Deserialize, Serialize};

/// The study's seven methods (three level sets x {nearest, stochastic}, plus
/// midrise), Lloyd-Max and kernel-density levels with either rounding, and the
/// uniform set with triangular dither (non-subtractive and subtractive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    UniformNearest,
    UniformStochastic,
    HistogramNearest,
    HistogramStochastic,
    NormalNearest,
    NormalStochastic,
    Midrise,
    LloydNearest,
    LloydStochastic,
    UniformDither,
    UniformDitherSubtractive,
    KdeNearest,
    KdeStochastic,
}

/// How a group's levels are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LevelSet {
    /// K points from lo to hi inclusive.
    Uniform,
    /// Centres of K equal-width bins over [lo, hi].
    Histogram,
    /// lo, hi and K-2 quantiles of N(mean, std).
    Normal,
    /// delta * (k + 0.5) for K consecutive integers k, delta = (hi - lo) / K.
    Midrise,
    /// K levels from Lloyd-Max (1-D k-means) on the group, from the uniform set.
    Lloyd,
    /// lo, hi and K-2 quantiles of a Gaussian kernel density estimate of the group.
    Kde,
}

impl Method {
    /// Every method, in the order of their kernel codes.
    pub const ALL: [Method; 13] = [
        Method::UniformNearest,
        Method::UniformStochastic,
        Method::HistogramNearest,
        Method::HistogramStochastic,
        Method::NormalNearest,
        Method::NormalStochastic,
        Method::Midrise,
        Method::LloydNearest,
        Method::LloydStochastic,
        Method::UniformDither,
        Method::UniformDitherSubtractive,
        Method::KdeNearest,
        Method::KdeStochastic,
    ];

    /// The 2020 study's seven, the first seven of [`Method::ALL`]: the default grid.
    pub const STUDY: &'static [Method] = Method::ALL.split_at(7).0;

    pub fn name(self) -> &'static str {
        match self {
            Method::UniformNearest => "uniform-nearest",
            Method::UniformStochastic => "uniform-stochastic",
            Method::HistogramNearest => "histogram-nearest",
            Method::HistogramStochastic => "histogram-stochastic",
            Method::NormalNearest => "normal-nearest",
            Method::NormalStochastic => "normal-stochastic",
            Method::Midrise => "midrise",
            Method::LloydNearest => "lloyd-nearest",
            Method::LloydStochastic => "lloyd-stochastic",
            Method::UniformDither => "uniform-dither",
            Method::UniformDitherSubtractive => "uniform-dither-subtractive",
            Method::KdeNearest => "kde-nearest",
            Method::KdeStochastic => "kde-stochastic",
        }
    }

    pub fn level_set(self) -> LevelSet {
        match self {
            Method::UniformNearest | Method::UniformStochastic | Method::UniformDither | Method::UniformDitherSubtractive => LevelSet::Uniform,
            Method::HistogramNearest | Method::HistogramStochastic => LevelSet::Histogram,
            Method::NormalNearest | Method::NormalStochastic => LevelSet::Normal,
            Method::Midrise => LevelSet::Midrise,
            Method::LloydNearest | Method::LloydStochastic => LevelSet::Lloyd,
            Method::KdeNearest | Method::KdeStochastic => LevelSet::Kde,
        }
    }

    /// Whether the method draws random numbers (and so is run for every seed).
    pub fn is_stochastic(self) -> bool {
        matches!(self, Method::UniformStochastic | Method::HistogramStochastic | Method::NormalStochastic | Method::LloydStochastic | Method::KdeStochastic) || self.is_dither()
    }

    /// Stochastic rounding: up with probability (w - L(j)) / (L(j+1) - L(j)).
    pub fn rounds_stochastically(self) -> bool {
        self.is_stochastic() && !self.is_dither()
    }

    /// Whether --clip applies: the method's levels are built from a group's
    /// range and moments, not a table of the group's own values.
    pub fn is_clippable(self) -> bool {
        !self.level_set().is_table()
    }

    /// Triangular dither added before nearest rounding on the uniform set.
    pub fn is_dither(self) -> bool {
        matches!(self, Method::UniformDither | Method::UniformDitherSubtractive)
    }

    /// Salt of the random stream, so that two stochastic methods with the same
    /// seed draw independent numbers (the two roundings of a level set share
    /// one: only one of them draws).
    fn stream_salt(self) -> u32 {
        match self {
            Method::UniformNearest | Method::UniformStochastic => 1,
            Method::HistogramNearest | Method::HistogramStochastic => 2,
            Method::NormalNearest | Method::NormalStochastic => 3,
            Method::Midrise => 4,
            Method::LloydNearest | Method::LloydStochastic => 5,
            Method::UniformDither => 6,
            Method::UniformDitherSubtractive => 7,
            Method::KdeNearest | Method::KdeStochastic => 8,
        }
    }

    /// The method's number in the kernels' variant table (shaders/quantize.wgsl).
    pub fn code(self) -> u32 {
        Method::ALL.iter().position(|m| *m == self).expect("Method::ALL lists every method") as u32
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LevelSet {
    /// The level sets whose levels are a table built on the host (reference::level_tables).
    pub const TABLES: [LevelSet; 2] = [LevelSet::Lloyd, LevelSet::Kde];

    pub fn is_table(self) -> bool {
        LevelSet::TABLES.contains(&self)
    }
}

/// --clip: how each group's range [lo, hi] is narrowed before its levels are built.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "ClipText", try_from = "ClipText")]
pub enum Clip {
    /// lo and hi are the group's P-th percentiles (P in (50, 100)), the same for every bit width.
    Percentile(f64),
    /// At each bit width and for each method, the range whose rounding by that
    /// method has the least (expected) squared error over the group
    /// (reference::mse_clip_stats): every method rounds within its own.
    Mse,
}

/// How config.json spells a [`Clip`]: the percentile as a number (as before
/// `mse` existed), or the text `mse`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ClipText {
    Number(f64),
    Text(String),
}

impl From<Clip> for ClipText {
    fn from(c: Clip) -> ClipText {
        match c {
            Clip::Percentile(p) => ClipText::Number(p),
            Clip::Mse => ClipText::Text("mse".into()),
        }
    }
}

impl TryFrom<ClipText> for Clip {
    type Error = String;
    fn try_from(t: ClipText) -> Result<Clip, String> {
        match t {
            ClipText::Number(p) => Ok(Clip::Percentile(p)),
            ClipText::Text(s) => s.parse(),
        }
    }
}

impl std::str::FromStr for Clip {
    type Err = String;
    /// A percentile such as `99.9`, or `mse`; the percentile's range is checked by the config.
    fn from_str(s: &str) -> Result<Clip, String> {
        if s.eq_ignore_ascii_case("mse") {
            return Ok(Clip::Mse);
        }
        s.trim().parse::<f64>().map(Clip::Percentile).map_err(|_| format!("'{s}' is neither a percentile (e.g. 99.9) nor 'mse'"))
    }
}

impl std::fmt::Display for Clip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clip::Percentile(p) => write!(f, "{p}"),
            Clip::Mse => f.write_str("mse"),
        }
    }
}

impl Clip {
    /// How the report says it.
    pub fn describe(self) -> String {
        match self {
            Clip::Percentile(p) => format!("each group's range clipped to its {p}th percentile"),
            Clip::Mse => "each group's range clipped, per bit width and method, to the one with the least squared error under that method's rounding (expected over the random draws for the stochastic and dither methods)".into(),
        }
    }
}

/// --rescale: a scale applied to each group's quantized weights after
/// rounding, chosen from the group's fp32 weights w and quantized weights q
/// (reference::rescale). A deployed model folds it into the group's
/// dequantization parameters (scale and offset, or level table), so it costs
/// no bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Rescale {
    /// the levels as rounded
    #[default]
    None,
    /// Σw² / Σwq: each group's weight gain Σwq/Σw² becomes 1, undoing the
    /// systematic shrinkage (or growth) of the rounding; the noise scales with it
    Gain,
    /// Σwq / Σq²: the least-squares fit of the fp32 weights, the least weight
    /// error these codes can have under one scale per group
    Lsq,
}

impl Rescale {
    /// The per-group sums of its factor, numerator and denominator (None: no
    /// rescaling): gain Σww/Σwq, lsq Σwq/Σqq.
    pub fn sums(self) -> Option<(Product, Product)> {
        match self {
            Rescale::None => None,
            Rescale::Gain => Some((Product::WW, Product::WQ)),
            Rescale::Lsq => Some((Product::WQ, Product::QQ)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Rescale::None => "none",
            Rescale::Gain => "gain",
            Rescale::Lsq => "lsq",
        }
    }

    /// How the report says it (None for no rescaling).
    pub fn describe(self) -> Option<&'static str> {
        match self {
            Rescale::None => None,
            Rescale::Gain => Some("each group's quantized weights rescaled by Σw²/Σwq after rounding (weight gain 1)"),
            Rescale::Lsq => Some("each group's quantized weights rescaled by Σwq/Σq² after rounding (least-squares fit of the fp32 weights)"),
        }
    }
}

/// --bias-correct: after rounding (and --rescale), each quantized layer's f32
/// bias gains the shift its rounding gives the layer's mean output,
/// Σ (w - q)·μ per output, μ a mean of the input each weight multiplies over
/// the training split through the fp32 net (the calibration rows; a conv
/// net's first eval::CONV_CALIBRATION_IMAGES images, over every output position).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BiasCorrect {
    /// the biases as trained
    #[default]
    None,
    /// μ the input's mean over every calibration row: each output's mean over
    /// them is the fp32 layer's again
    Mean,
    /// μ, for each output, the input's mean over the rows (and positions)
    /// where the fp32 output passes the ReLU that follows (every row for the
    /// last layer): the mean shift where the next layer sees it
    Active,
}

impl BiasCorrect {
    pub fn name(self) -> &'static str {
        match self {
            BiasCorrect::None => "none",
            BiasCorrect::Mean => "mean",
            BiasCorrect::Active => "active",
        }
    }

    /// How the report says it (None without correction).
    pub fn describe(self) -> Option<&'static str> {
        match self {
            BiasCorrect::None => None,
            BiasCorrect::Mean => Some("biases corrected for the shift of each output's mean (input means over the training split)"),
            BiasCorrect::Active => Some("biases corrected for the shift of each output's mean where it passes the ReLU (input means over the training rows where it does)"),
        }
    }
}

/// A product of a weight w (flushed, as the quantizer reads it) and its
/// quantized value q, summed per group for --rescale and over a whole tensor
/// for the weight error and gain (reference::product_sum); the discriminant
/// is its mode in shaders/group_products.wgsl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    WW = 0,
    WQ = 1,
    QQ = 2,
    /// (w - q)²
    SqErr = 3,
    /// (w - q) times the mean of the input it multiplies (--bias-correct):
    /// summed per output channel, the shift of that output's mean
    /// ([`reference::shift_sum`]); `of` gives the difference alone
    Shift = 4,
}

impl Product {
    /// The product, rounded to f32 before any addition (as the kernel forms it).
    pub fn of(self, w: f32, q: f32) -> f32 {
        match self {
            Product::WW => w * w,
            Product::WQ => w * q,
            Product::QQ => q * q,
            Product::SqErr => {
                let d = w - q;
                d * d
            }
            Product::Shift => w - q,
        }
    }
}

/// Whole tensor or one group per output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Granularity {
    Layer,
    Channel,
}

impl Granularity {
    pub fn name(self) -> &'static str {
        match self {
            Granularity::Layer => "layer",
            Granularity::Channel => "channel",
        }
    }
}

/// How a tensor of `len` elements splits into `groups` groups: the k-th element
/// of group g sits at flat index `(k / stride) * stride * groups + g * stride + k % stride`.
/// A whole tensor is one group with stride `len`; output channels of a row-major
/// tensor whose channel axis is followed by `inner` elements have stride `inner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grouping {
    pub len: usize,
    pub groups: usize,
    pub stride: usize,
}

impl Grouping {
    pub fn whole(len: usize) -> Grouping {
        Grouping { len, groups: 1, stride: len.max(1) }
    }

    /// One group per index of `axis` of a row-major tensor of `shape`.
    pub fn per_channel(shape: &[usize], axis: usize) -> Grouping {
        let len = shape.iter().product();
        let stride = shape[axis + 1..].iter().product::<usize>().max(1);
        Grouping { len, groups: shape[axis], stride }
    }

    pub fn for_granularity(shape: &[usize], channel_axis: usize, g: Granularity) -> Grouping {
        match g {
            Granularity::Layer => Grouping::whole(shape.iter().product()),
            Granularity::Channel => Grouping::per_channel(shape, channel_axis),
        }
    }

    pub fn group_len(&self) -> usize {
        self.len / self.groups
    }

    /// Flat index of the k-th element of group g.
    pub fn index(&self, g: usize, k: usize) -> usize {
        (k / self.stride) * self.stride * self.groups + g * self.stride + k % self.stride
    }

    /// The group of the element at flat index `i`.
    pub fn group_of(&self, i: usize) -> usize {
        (i / self.stride) % self.groups
    }
}

/// The 32-bit PCG hash (O'Neill's permuted congruential step, as popularised for
/// GPU hashing by Jarzynski and Olano, 2020). Mirrored in shaders/common.wgsl.
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The random stream of a stochastic variant: its method's salt and bit width.
pub fn stream_id(method: Method, bits: u32) -> u32 {
    (method.stream_salt() << 8) | bits
}

/// The uniform number in [0, 1) that stochastic rounding uses for one element:
/// a counter-based hash of (seed, stream, tensor, element), so every device,
/// batch size and launch shape draws the same numbers. 24 random bits, exact in f32.
pub fn uniform_draw(seed: u32, stream: u32, tensor: u32, element: u32) -> f32 {
    uniform_from_key(draw_key(seed, stream, tensor), element)
}

/// The part of the hash chain that is the same for every element of a tensor
/// in one variant (the quantize kernel gets it in its variant table).
pub fn draw_key(seed: u32, stream: u32, tensor: u32) -> u32 {
    pcg_hash(tensor ^ pcg_hash(stream ^ pcg_hash(seed)))
}

/// [`uniform_draw`] of `element` from its variant's [`draw_key`].
pub fn uniform_from_key(key: u32, element: u32) -> f32 {
    (pcg_hash(element ^ key) >> 8) as f32 * (1.0 / 16_777_216.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_grouping_visits_every_index_once() {
        for (shape, axis) in [(vec![3usize, 5], 1usize), (vec![4, 2, 3, 3], 0), (vec![7], 0), (vec![2, 3, 4], 1)] {
            let g = Grouping::per_channel(&shape, axis);
            let mut seen = vec![false; g.len];
            for grp in 0..g.groups {
                for k in 0..g.group_len() {
                    let i = g.index(grp, k);
                    assert!(!seen[i]);
                    seen[i] = true;
                    assert_eq!(g.group_of(i), grp);
                }
            }
            assert!(seen.iter().all(|s| *s));
        }
        // Linear weights are [in, out]: channel j is column j
        let g = Grouping::per_channel(&[3, 5], 1);
        assert_eq!((0..3).map(|k| g.index(2, k)).collect::<Vec<_>>(), vec![2, 7, 12]);
    }

    #[test]
    fn draws_are_in_unit_interval_and_depend_on_every_input() {
        let base = uniform_draw(1, 2, 3, 4);
        assert!((0.0..1.0).contains(&base));
        assert_ne!(base, uniform_draw(2, 2, 3, 4));
        assert_ne!(base, uniform_draw(1, 3, 3, 4));
        assert_ne!(base, uniform_draw(1, 2, 4, 4));
        assert_ne!(base, uniform_draw(1, 2, 3, 5));
        let mean = (0..100_000).map(|i| uniform_draw(9, 1, 0, i) as f64).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
    }

    #[test]
    fn method_codes_and_names_round_trip() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.code() as usize, i);
            assert_eq!(<Method as clap::ValueEnum>::from_str(m.name(), false).unwrap(), *m);
        }
    }
}
