//! Applying a variant to a model: which tensors are quantized (weights, and
//! biases per `--bias`), grouped how, and what the result costs in bytes and in
//! weight error. Statistics and level parameters are computed once per tensor,
//! granularity and bit width, and shared by every variant that needs them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::gpu::GivenRanges;
use super::reference::{self, GroupStats, LevelParams, VariantKey};
use super::{Clip, Granularity, Grouping, LevelSet, Method, Product, Rescale};
use crate::error::{Error, Result};
use crate::models::{ParamRole, Weights};
use crate::sweep::grid::Variant;

/// How biases meet the quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BiasMode {
    /// biases stay f32 (what deployed int8 kernels do: biases live in 32-bit accumulators)
    Fp32,
    /// each bias is its own group, quantized with the same method and bits
    Separate,
    /// the bias joins its layer's weight in one group (the 2020 study's treatment)
    Pool,
}

impl BiasMode {
    pub fn name(self) -> &'static str {
        match self {
            BiasMode::Fp32 => "fp32",
            BiasMode::Separate => "separate",
            BiasMode::Pool => "pool",
        }
    }
}

/// How BatchNorm meets the quantizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BnMode {
    /// fold each BatchNorm into the convolution before it, then quantize (what
    /// a deployment does: the folded model has no BatchNorm left)
    Fold,
    /// quantize the weights, keep BatchNorm's parameters and statistics f32
    Keep,
    /// quantize BatchNorm's scale and shift in one group with the layer's
    /// weight (the 2020 study's treatment)
    Pool,
}

impl BnMode {
    pub fn name(self) -> &'static str {
        match self {
            BnMode::Fold => "fold",
            BnMode::Keep => "keep",
            BnMode::Pool => "pool",
        }
    }
}

/// Where a model tensor sits inside a target's row-major [rows, cols] data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// the tensor is rows `first_row..` of the target (output channels on the
    /// last axis: a Linear weight [in, out] with its bias as an extra row)
    Rows { first_row: usize },
    /// row c of the tensor is columns `first_col..first_col + width` of row c of
    /// the target (output channels first: a conv weight [out, in*kh*kw] with
    /// per-channel bias, gamma and beta as extra columns)
    Cols { first_col: usize, width: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub tensor: usize,
    pub layout: Layout,
}

/// One tensor the quantizer sees: a weight, a bias, or a weight pooled with its
/// layer's bias and BatchNorm scale and shift (one group per output channel
/// keeps each channel's extras with its weights).
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub layer: String,
    /// position of the (first) member in the model's tensor list: the tensor
    /// number of the stochastic-rounding hash
    pub tensor_index: u32,
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
    pub channel_axis: usize,
    pub members: Vec<Member>,
}

impl Target {
    pub fn grouping(&self, g: Granularity) -> Grouping {
        Grouping::for_granularity(&self.shape, self.channel_axis, g)
    }

    /// Columns of the target's row-major data ([rows, cols]).
    pub fn cols(&self) -> usize {
        if self.shape.len() == 1 { self.data.len() } else { self.data.len() / self.shape[0] }
    }

    /// Copies a member's part of `values` (laid out like `data`) into `out`.
    pub fn scatter(&self, m: &Member, values: &[f32], out: &mut [f32]) {
        let cols = self.cols();
        match m.layout {
            Layout::Rows { first_row } => out.copy_from_slice(&values[first_row * cols..first_row * cols + out.len()]),
            Layout::Cols { first_col, width } => {
                for (c, row) in out.chunks_mut(width).enumerate() {
                    row.copy_from_slice(&values[c * cols + first_col..c * cols + first_col + width]);
                }
            }
        }
    }
}

/// Bytes a group's level table costs in a deployed model: (lo, step) for evenly
/// spaced levels, (lo, hi, mean, std) for the normal prior (its levels follow
/// from those and the shared standard-normal table), and every level, f32, for
/// the table level sets' codebooks (lloyd, kde: min(K, group size) levels).
fn table_bytes(method: Method, bits: u32, group_len: usize) -> usize {
    match method.level_set() {
        LevelSet::Normal => 16,
        s if s.is_table() => 4 * reference::table_entries(bits, group_len),
        _ => 8,
    }
}

/// What applying one variant produced besides the weights.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct QuantReport {
    /// Σ (w - q)² over quantized elements (per-tensor canonical f32 sums, added in f64)
    pub sq_err: f64,
    /// Σ w² over the same elements
    pub sq_sum: f64,
    /// Σ w q over the same elements
    pub cross: f64,
    pub quantized: usize,
    pub size_bytes: usize,
}

impl QuantReport {
    pub fn mse(&self) -> f64 {
        if self.quantized == 0 { 0.0 } else { self.sq_err / self.quantized as f64 }
    }
    /// Signal to quantization-noise ratio in dB (infinite when the error is 0).
    pub fn sqnr_db(&self) -> f64 {
        10.0 * (self.sq_sum / self.sq_err).log10()
    }
    /// The weight gain Σ w q / Σ w²: the least-squares scale of the quantized
    /// weights on the fp32 ones, the systematic part of the error (1: none;
    /// below 1: shrunk). NaN when nothing was quantized or every weight is 0.
    pub fn gain(&self) -> f64 {
        self.cross / self.sq_sum
    }
}

/// --bias-correct for one target: after rounding (and --rescale), each output
/// channel's f32 bias gains Σ (w - q) × means[i] over the channel
/// (reference::shift_sum), so that the layer's mean output over the
/// calibration rows is the fp32 layer's again.
#[derive(Clone, Debug, PartialEq)]
pub struct Correction {
    /// the layer's bias tensor (f32: --bias fp32)
    pub bias: usize,
    /// one group per output channel of the target
    pub channels: Grouping,
    /// the mean of the input each weight multiplies, one per weight (in the
    /// target's layout)
    pub means: Vec<f32>,
}

/// (target, granularity, bits, method whose ranges these are: None when every
/// method shares them)
type RangeKey = (usize, Granularity, u32, Option<Method>);

/// A model prepared for quantization.
pub struct Plan {
    pub weights: Weights,
    pub targets: Vec<Target>,
    pub bias: BiasMode,
    /// Σ w² of each target (w flushed, canonical f32 sum), the signal of SQNR and the gain's denominator
    sq_sums: Vec<f64>,
    /// statistics of each group over all its values
    stats: HashMap<(usize, Granularity), Vec<GroupStats>>,
    /// level parameters, built from the whole groups' statistics or with --clip
    /// from the clipped ones (under --clip mse each method's own, see
    /// [`Plan::range_key`])
    params: HashMap<RangeKey, Vec<LevelParams>>,
    /// level tables (reference::level_table) of the table level sets the grid uses
    tables: HashMap<(usize, Granularity, u32, LevelSet), Vec<f32>>,
    /// --clip: how each group's range is narrowed
    pub clip: Option<Clip>,
    /// --rescale: the scale applied to each group's quantized weights after rounding
    pub rescale: Rescale,
    /// --bias-correct: per target, its correction (None: its bias stays as trained)
    pub corrections: Vec<Option<Correction>>,
}

impl Plan {
    /// Targets of `weights` (BatchNorm already folded when `bn` is `Fold`).
    pub fn new(weights: Weights, bias: BiasMode, bn: BnMode) -> Result<Plan> {
        let mut targets = Vec::new();
        let t = &weights.tensors;
        let in_layer = |layer: &str, role: ParamRole| t.iter().position(|x| x.layer == layer && x.role == role);
        for (i, p) in t.iter().enumerate() {
            let ParamRole::Weight { channel_axis } = p.role else { continue };
            let single = |idx: usize, shape: Vec<usize>, axis: usize| Target {
                name: t[idx].name.clone(),
                layer: t[idx].layer.clone(),
                tensor_index: idx as u32,
                data: t[idx].data.clone(),
                shape,
                channel_axis: axis,
                members: vec![Member { tensor: idx, layout: Layout::Rows { first_row: 0 } }],
            };
            let bias_idx = in_layer(&p.layer, ParamRole::Bias);
            let mut extras = Vec::new();
            if bias == BiasMode::Pool {
                extras.extend(bias_idx);
            }
            if bn == BnMode::Pool {
                extras.extend(in_layer(&p.layer, ParamRole::BnGamma));
                extras.extend(in_layer(&p.layer, ParamRole::BnBeta));
            }
            if extras.is_empty() {
                targets.push(single(i, p.shape.clone(), channel_axis));
            } else {
                let out = p.shape[channel_axis];
                let inner = p.len() / out;
                let mut members = vec![];
                let (data, shape, axis) = if channel_axis + 1 == p.shape.len() {
                    // [in, out]: extras are extra rows
                    let mut data = p.data.clone();
                    members.push(Member { tensor: i, layout: Layout::Rows { first_row: 0 } });
                    for (j, &e) in extras.iter().enumerate() {
                        data.extend_from_slice(&t[e].data);
                        members.push(Member { tensor: e, layout: Layout::Rows { first_row: inner + j } });
                    }
                    (data, vec![inner + extras.len(), out], 1)
                } else if channel_axis == 0 {
                    // [out, ...]: extras are extra columns of each channel's row
                    let cols = inner + extras.len();
                    let mut data = Vec::with_capacity(out * cols);
                    for c in 0..out {
                        data.extend_from_slice(&p.data[c * inner..(c + 1) * inner]);
                        data.extend(extras.iter().map(|&e| t[e].data[c]));
                    }
                    members.push(Member { tensor: i, layout: Layout::Cols { first_col: 0, width: inner } });
                    for (j, &e) in extras.iter().enumerate() {
                        members.push(Member { tensor: e, layout: Layout::Cols { first_col: inner + j, width: 1 } });
                    }
                    (data, vec![out, cols], 0)
                } else {
                    return Err(Error::Quant(format!("cannot pool parameters with {}: its output channels are not its first or last axis", p.name)));
                };
                let names: Vec<&str> = extras.iter().map(|&e| t[e].name.rsplit('.').next().unwrap_or("")).collect();
                targets.push(Target {
                    name: format!("{}+{}", p.name, names.join("+")),
                    layer: p.layer.clone(),
                    tensor_index: i as u32,
                    data,
                    shape,
                    channel_axis: axis,
                    members,
                });
            }
            // a bias is one group whatever the granularity: per channel it
            // would be one element per group
            if bias == BiasMode::Separate
                && let Some(b) = bias_idx
            {
                targets.push(single(b, vec![t[b].len()], 0));
            }
        }
        let sq_sums = targets.iter().map(|t| reference::product_sum(&t.data, Grouping::whole(t.data.len()), &t.data, 0, Product::WW) as f64).collect();
        Ok(Plan { weights, targets, bias, sq_sums, stats: HashMap::new(), params: HashMap::new(), tables: HashMap::new(), clip: None, rescale: Rescale::None, corrections: Vec::new() })
    }

    /// Turns on --bias-correct, given for each layer (by name) the mean of the
    /// input each of its weights multiplies over the calibration rows
    /// (eval::dense_input_means). Every weight target gets a correction; its
    /// layer needs an f32 bias (--bias fp32) and one mean per weight.
    pub fn set_input_means(&mut self, means: &HashMap<String, Vec<f32>>) -> Result<()> {
        if self.bias != BiasMode::Fp32 {
            return Err(Error::Quant(format!("--bias-correct adds to the f32 biases; --bias {} quantizes them: use --bias fp32", self.bias.name())));
        }
        let t = &self.weights.tensors;
        let mut corrections = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let [m] = target.members.as_slice() else {
                return Err(Error::Quant(format!("--bias-correct: {} pools several tensors in one group", target.name)));
            };
            let ParamRole::Weight { .. } = t[m.tensor].role else {
                return Err(Error::Quant(format!("--bias-correct: {} is not a weight", target.name)));
            };
            let bias = t.iter().position(|x| x.layer == target.layer && x.role == ParamRole::Bias);
            let (Some(bias), Some(mean)) = (bias, means.get(&target.layer)) else {
                return Err(Error::Quant(format!("--bias-correct: layer {} needs a bias and the mean of its input", target.layer)));
            };
            let channels = Grouping::per_channel(&target.shape, target.channel_axis);
            if mean.len() != target.data.len() || t[bias].len() != channels.groups {
                return Err(Error::Quant(format!(
                    "--bias-correct: {} has {} weights in {} outputs, its bias {} values and its input means {}",
                    target.name,
                    target.data.len(),
                    channels.groups,
                    t[bias].len(),
                    mean.len()
                )));
            }
            corrections.push(Some(Correction { bias, channels, means: mean.clone() }));
        }
        self.corrections = corrections;
        Ok(())
    }

    /// The bias tensor of target `ti` and its corrected values for the
    /// target's quantized (and rescaled) values `q`, each channel's shift by
    /// reference::shift_sum. None without --bias-correct.
    pub fn corrected_bias(&self, ti: usize, q: &[f32]) -> Option<(usize, Vec<f32>)> {
        let c = self.corrections.get(ti)?.as_ref()?;
        let w = &self.targets[ti].data;
        let shifts: Vec<f32> = (0..c.channels.groups).map(|g| reference::shift_sum(w, c.channels, q, g, &c.means)).collect();
        Some((c.bias, self.bias_plus(c, &shifts)))
    }

    /// The trained bias of a correction plus `shifts`, one per channel, one
    /// f32 addition each: the CPU reference's and the WGSL scorer's.
    pub fn bias_plus(&self, c: &Correction, shifts: &[f32]) -> Vec<f32> {
        self.weights.tensors[c.bias].data.iter().zip(shifts).map(|(b, s)| b + s).collect()
    }

    pub fn grouping(&self, target: usize, g: Granularity) -> Grouping {
        let t = &self.targets[target];
        if t.shape.len() == 1 { Grouping::whole(t.data.len()) } else { t.grouping(g) }
    }

    /// Whose ranges a method's levels are built from: its own under --clip mse
    /// (each rounding onto each level set has its own optimum), None (shared by
    /// every method) otherwise.
    pub fn range_key(&self, method: Method) -> Option<Method> {
        (self.clip == Some(Clip::Mse)).then_some(method)
    }

    /// Computes statistics and level parameters for every granularity and bit
    /// width the grid uses, and the level tables of the table level sets in `methods`.
    pub fn prepare(&mut self, granularities: &[Granularity], bits: &[u32], methods: &[Method]) {
        let table_sets: Vec<LevelSet> = LevelSet::TABLES.into_iter().filter(|&s| methods.iter().any(|m| m.level_set() == s)).collect();
        // the methods with ranges of their own (--clip mse), or one shared range
        let range_methods: Vec<Method> = if self.clip == Some(Clip::Mse) { Method::ALL.into_iter().filter(|m| methods.contains(m) && m.is_clippable()).collect() } else { Vec::new() };
        let keys: Vec<Option<Method>> = if range_methods.is_empty() { vec![None] } else { range_methods.iter().copied().map(Some).collect() };
        for ti in 0..self.targets.len() {
            for &g in granularities {
                let grouping = self.grouping(ti, g);
                let data = &self.targets[ti].data;
                let whole = self.stats.entry((ti, g)).or_insert_with(|| reference::group_stats(data, grouping)).clone();
                let missing: Vec<u32> = bits.iter().copied().filter(|&b| keys.iter().any(|&k| !self.params.contains_key(&(ti, g, b, k)))).collect();
                if !missing.is_empty() {
                    // [key][missing bits row]: the statistics each one's levels are built from
                    let ranges: Vec<Vec<Vec<GroupStats>>> = match self.clip {
                        None => vec![vec![whole.clone(); missing.len()]],
                        // a percentile's range is the same at every bit width
                        Some(Clip::Percentile(p)) => vec![vec![reference::clip_stats(data, grouping, &whole, p); missing.len()]],
                        Some(Clip::Mse) => reference::mse_clip_ranges(data, grouping, &whole, &missing, &range_methods),
                    };
                    for (&key, per_bits) in keys.iter().zip(ranges) {
                        for (&b, r) in missing.iter().zip(per_bits) {
                            self.params.entry((ti, g, b, key)).or_insert_with(|| reference::tensor_params(&r, b));
                        }
                    }
                }
                for &set in &table_sets {
                    let missing: Vec<u32> = bits.iter().copied().filter(|&b| !self.tables.contains_key(&(ti, g, b, set))).collect();
                    let tables = reference::level_tables(set, data, grouping, &whole, &missing);
                    for (b, table) in missing.into_iter().zip(tables) {
                        self.tables.insert((ti, g, b, set), table);
                    }
                }
            }
        }
    }

    /// With --clip, the clipped ranges of a target at `bits` for the GPU
    /// quantizer (after [`Plan::prepare`]): those its level parameters were
    /// built from. None without.
    pub fn clipped_ranges(&self, target: usize, g: Granularity, bits: &[u32]) -> Option<GivenRanges> {
        let ranges = |b: u32, key: Option<Method>| self.params[&(target, g, b, key)].iter().map(LevelParams::range);
        let first = *bits.first()?;
        match self.clip? {
            // the same at every bit width
            Clip::Percentile(_) => Some(GivenRanges::PerGroup(ranges(first, None).collect())),
            Clip::Mse => {
                let methods: Vec<Method> = Method::ALL.into_iter().filter(|&m| self.params.contains_key(&(target, g, first, Some(m)))).collect();
                let flat = methods.iter().flat_map(|&m| bits.iter().flat_map(move |&b| ranges(b, Some(m)))).collect();
                Some(GivenRanges::PerMethod(methods, flat))
            }
        }
    }

    /// Level parameters of a target for a method (after [`Plan::prepare`]).
    pub fn params(&self, target: usize, g: Granularity, bits: u32, method: Method) -> &[LevelParams] {
        &self.params[&(target, g, bits, self.range_key(method))]
    }

    /// The level table of a target for a table level set (empty unless
    /// [`Plan::prepare`] had a method of that set).
    pub fn table(&self, target: usize, g: Granularity, bits: u32, set: LevelSet) -> &[f32] {
        self.tables.get(&(target, g, bits, set)).map_or(&[], Vec::as_slice)
    }

    /// The targets a variant quantizes, each with its bit width (the
    /// variant's, or a mixed-precision scope's own for a held layer).
    pub fn targets_in(&self, v: &Variant) -> Vec<(usize, u32)> {
        (0..self.targets.len()).filter_map(|i| v.bits_for(&self.targets[i].layer).map(|b| (i, b))).collect()
    }

    /// Model size at a variant's precision: codes + level tables + f32 for the rest.
    pub fn size_bytes(&self, v: &Variant) -> usize {
        let mut quantized = vec![false; self.weights.tensors.len()];
        let mut bytes = 0;
        for (ti, bits) in self.targets_in(v) {
            let t = &self.targets[ti];
            let grouping = self.grouping(ti, v.granularity);
            bytes += (t.data.len() * bits as usize).div_ceil(8) + grouping.groups * table_bytes(v.method, bits, grouping.group_len());
            for m in &t.members {
                quantized[m.tensor] = true;
            }
        }
        bytes + self.weights.tensors.iter().zip(&quantized).filter(|(_, q)| !**q).map(|(t, _)| 4 * t.len()).sum::<usize>()
    }

    /// Weight error, gain and size, given Σ (w - q)² and Σ w q of each target
    /// in scope (in the canonical f32 tree order, so the CPU reference and the
    /// GPU agree bit for bit).
    pub fn report(&self, v: &Variant, sums: &[(usize, f32, f32)]) -> QuantReport {
        let mut r = QuantReport { size_bytes: self.size_bytes(v), ..Default::default() };
        for &(ti, e, c) in sums {
            r.sq_err += e as f64;
            r.cross += c as f64;
            r.sq_sum += self.sq_sums[ti];
            r.quantized += self.targets[ti].data.len();
        }
        r
    }

    /// The model with one variant's quantized weights, by the CPU reference.
    pub fn apply(&self, v: &Variant) -> (Weights, QuantReport) {
        let mut out = self.weights.clone();
        let mut quantized = Vec::new();
        for (ti, bits) in self.targets_in(v) {
            let t = &self.targets[ti];
            let key = VariantKey { method: v.method, bits, seed: v.seed.unwrap_or(0), tensor: t.tensor_index };
            let grouping = self.grouping(ti, v.granularity);
            let mut q = reference::quantize(&t.data, grouping, self.params(ti, v.granularity, bits, v.method), self.table(ti, v.granularity, bits, v.method.level_set()), key);
            reference::rescale(&t.data, grouping, &mut q.values, self.rescale);
            for m in &t.members {
                t.scatter(m, &q.values, &mut out.tensors[m.tensor].data);
            }
            if let Some((b, values)) = self.corrected_bias(ti, &q.values) {
                out.tensors[b].data = values;
            }
            let whole = Grouping::whole(t.data.len());
            let err = reference::product_sum(&t.data, whole, &q.values, 0, Product::SqErr);
            let cross = reference::product_sum(&t.data, whole, &q.values, 0, Product::WQ);
            quantized.push((ti, err, cross));
        }
        let report = self.report(v, &quantized);
        (out, report)
    }
}
