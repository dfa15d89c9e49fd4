//! The CPU reference quantizer: the specification of every method, in exact,
//! reproducible f32 arithmetic (see `exact.rs` for why), parallel with rayon.
//!
//! For a group G and b bits (K = 2^b levels), with lo = min G, hi = max G:
//! - `uniform`: L(i) = madd(i, step, lo) for i < K-1 and L(K-1) = hi, step = (hi-lo)/(K-1).
//! - `histogram`: L(i) = madd(i + 0.5, h, lo), h = (hi-lo)/K (exact: K is a power of two).
//! - `normal`: sort({lo, hi} ∪ {madd(std, z_i, mean) : i = 1..K-2}), z_i the standard
//!   normal quantile at i/(K-1) (`z_entry`, one table per b); {lo, hi} at b = 1.
//!   `madd` is c + a·b in exact partial products (`exact.rs`: why no fma).
//!   mean and std (population) are sums in the canonical tree order of `tree_sum`.
//! - `midrise`: k = floor(w/delta) ([`floor_div`]: floor(w * (1/delta)), checked by the
//!   sign of w - k·delta), delta = (hi-lo)/K; code = clamp(k - floor(lo/delta), 0, K-1);
//!   value = (floor(lo/delta) + code + 0.5) * delta. The clamp keeps at most K levels; the
//!   study's unclamped form can produce K+1 (the top value hi lands in bin K). The floors
//!   are exact while they have at most 12 significant bits (every group that straddles 0,
//!   up to 12 bits); a group far from 0 against its range (|lo| / delta past 2^24, e.g.
//!   [1.0, 1.001] at 16 bits) is beyond what f32 integers hold, and its codes may be a bin off.
//! - `lloyd`: Lloyd-Max levels, 1-D k-means on the group in f64 ([`lloyd_levels`]): from
//!   L(i) = lo + i (hi-lo)/(K-1), at most [`LLOYD_ITERATIONS`] rounds of "each value to its
//!   nearest level (a tie to the larger), each level to the mean of its values (an empty
//!   cell keeps its level)", stopping early when no level moves; then each level rounded
//!   to f32. A group of at most K distinct values gets exactly those values (the top one
//!   repeated to fill the table). The table, min(K, group size) f32 per group, is the
//!   level set: it is sorted, and a level that appears twice is harmless to the
//!   rounding rules below.
//! - `kde`: lo, hi and the quantiles at i/(E-1), i = 1..E-2, of a Gaussian kernel density
//!   estimate of the group (bandwidth 1.06·σ·n^(-1/5), Silverman's rule), E = min(K, group
//!   size) levels in f64 ([`kde_levels`]), clamped to [lo, hi] and rounded to f32: the normal
//!   set's construction with the data's own smoothed density in place of N(mean, std).
//!   Like lloyd, a table of E levels per group built on the host.
//!
//! Rounding onto L, with j = the largest index with L(j) <= w (0 when none):
//! - `nearest`: j + 1 when (w - L(j)) >= (L(j+1) - w), else j: the closest level, an exact
//!   tie going to the larger level. The two distances are f32 differences, so for a w
//!   within an ULP or so of the midpoint the rounded distances decide (1 bit on
//!   [-1, 0.99999994, 3]: both round to 2, and 0.99999994 goes to 3 though -1 is 2^-23
//!   closer); the shaders compute the same differences and decide the same.
//! - `stochastic`: j + 1 when u * (L(j+1) - L(j)) < w - L(j), else j, with u in [0, 1) from
//!   `uniform_draw(seed, stream, tensor, element)`: P(j+1) = (w - L(j)) / (L(j+1) - L(j)).
//!
//! - `dither` (uniform set): t = u1 - u2, two of the element's uniform draws (u2 from the
//!   key hashed once more: `pcg_hash(key)`), so t has the triangular PDF on (-1, 1); the
//!   weight w' = flush(madd(t, step, w)) is rounded `nearest`. `uniform-dither` keeps that
//!   level; `uniform-dither-subtractive` returns madd(-t, step, level), the decoder
//!   regenerating t from the seed (its values are not on the level grid). A degenerate
//!   group gives lo for both.
//!
//! With `--clip P`, lo and hi are the group's P-th percentiles instead ([`clip_stats`]);
//! with `--clip mse`, at each bit width and for each method the range of least
//! squared error under that method's rounding (expected over the random draws for
//! the stochastic and dither methods, [`LevelParams::expected_sq_err`]) among 64
//! clipping depths ([`mse_clip_stats`]). Weights outside round to the end levels
//! by the same rules.
//!
//! A group whose range hi - lo is below 2^-100 (a constant tensor, say) is degenerate:
//! every element gets code 0 and the value lo. Subnormal weights are read as zero,
//! as GPUs that flush them do.
//!
//! Mirrors: shaders/common.wgsl, shaders/group_stats.wgsl, shaders/level_params.wgsl,
//! shaders/quantize.wgsl.

use std::sync::OnceLock;

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::exact::{div, floor_div, inv_norm_cdf, madd, recip, sqrt};
use super::{Grouping, LevelSet, Method, Product, Rescale, draw_key, pcg_hash, stream_id, uniform_from_key};

/// Bit widths the quantizer accepts.
pub const BITS: std::ops::RangeInclusive<u32> = 1..=16;

/// Width of one block of the canonical summation tree (and of the reduction
/// kernels' workgroups).
pub const REDUCE_BLOCK: usize = 256;

/// Ranges below this are degenerate (one level); keeps every step a normal float.
pub fn min_range() -> f32 {
    f32::from_bits(0x0D80_0000) // 2^-100
}

/// Subnormals read as zero (GPUs may flush them; this keeps both sides equal).
#[inline]
pub fn flush(w: f32) -> f32 {
    if w.abs() < f32::MIN_POSITIVE { 0.0 * w } else { w }
}

/// Sums one block of up to 256 values by halving strides, zero padded.
fn tree_sum_block(values: &mut [f32; REDUCE_BLOCK]) -> f32 {
    let mut stride = REDUCE_BLOCK / 2;
    while stride > 0 {
        for i in 0..stride {
            values[i] += values[i + stride];
        }
        stride /= 2;
    }
    values[0]
}

/// The canonical f32 sum of `len` values `f(0..len)`: blocks of 256 summed by
/// halving strides (zero padded), then the block sums the same way, until one
/// value is left. The reduction kernels add in exactly this order.
pub fn tree_sum(len: usize, f: impl Fn(usize) -> f32) -> f32 {
    if len == 0 {
        return 0.0;
    }
    let block_sums = |n: usize, g: &dyn Fn(usize) -> f32| -> Vec<f32> {
        (0..n.div_ceil(REDUCE_BLOCK))
            .map(|b| {
                let mut v = [0.0f32; REDUCE_BLOCK];
                for (i, slot) in v.iter_mut().enumerate() {
                    let k = b * REDUCE_BLOCK + i;
                    if k < n {
                        *slot = g(k);
                    }
                }
                tree_sum_block(&mut v)
            })
            .collect()
    };
    let mut partial = block_sums(len, &f);
    while partial.len() > 1 {
        let p = partial;
        partial = block_sums(p.len(), &|k| p[k]);
    }
    partial[0]
}

/// Statistics of one group, as the group statistics kernels compute them.
/// Mirrors `GroupStats` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct GroupStats {
    pub lo: f32,
    pub hi: f32,
    pub mean: f32,
    pub std: f32,
}

impl GroupStats {
    /// A range below 2^-100 (or NaN): one level, every weight lo.
    pub fn is_degenerate(&self) -> bool {
        let range = self.hi - self.lo;
        range.is_nan() || range < min_range()
    }
}

/// Statistics of every group of `w`.
pub fn group_stats(w: &[f32], grouping: Grouping) -> Vec<GroupStats> {
    (0..grouping.groups)
        .into_par_iter()
        .map(|g| {
            let n = grouping.group_len();
            let at = |k: usize| flush(w[grouping.index(g, k)]);
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for k in 0..n {
                lo = lo.min(at(k));
                hi = hi.max(at(k));
            }
            let count = n as f32;
            let mean = div(tree_sum(n, at), count);
            let var = div(
                tree_sum(n, |k| {
                    let d = at(k) - mean;
                    d * d
                }),
                count,
            );
            GroupStats { lo, hi, mean, std: sqrt(var) }
        })
        .collect()
}

/// The factor `--rescale` applies to a group with sums `num` and `den`:
/// `div(num, den)`, or 1 when either is not a positive finite normal number
/// (a group rounded to zeros, or one whose rounding does not correlate
/// positively with its weights) or the quotient is not finite. Mirrored by
/// `rescale_factor` in shaders/rescale.wgsl.
pub fn rescale_factor(num: f32, den: f32) -> f32 {
    let normal = |x: f32| (f32::MIN_POSITIVE..=f32::MAX).contains(&x);
    if !normal(num) || !normal(den) {
        return 1.0;
    }
    let g = div(num, den);
    if g.abs() <= f32::MAX { g } else { 1.0 }
}

/// Σ over group `g` of `product`(flush(w), q), in the group's canonical tree
/// order ([`tree_sum`] over k of [`Grouping::index`]), each product rounded
/// before it is added: what shaders/group_products.wgsl sums on the GPU.
pub fn product_sum(w: &[f32], grouping: Grouping, q: &[f32], g: usize, product: Product) -> f32 {
    tree_sum(grouping.group_len(), |k| {
        let i = grouping.index(g, k);
        product.of(flush(w[i]), q[i])
    })
}

/// Σ over group `g` of (flush(w) - q) × `means[i]`, i the element's flat
/// index, in the group's canonical tree order, each term rounded before it is
/// added: with one group per output channel and `means` the mean of the input
/// each weight multiplies, the shift of that output's mean that
/// --bias-correct takes back. shaders/group_products.wgsl's mode 4.
pub fn shift_sum(w: &[f32], grouping: Grouping, q: &[f32], g: usize, means: &[f32]) -> f32 {
    assert_eq!(means.len(), w.len(), "one mean per weight");
    tree_sum(grouping.group_len(), |k| {
        let i = grouping.index(g, k);
        Product::Shift.of(flush(w[i]), q[i]) * means[i]
    })
}

/// The per-group factors of `mode` for the quantized weights `q` of `w`:
/// [`rescale_factor`] of the group's two [`product_sum`]s ([`Rescale::sums`]:
/// Σw²/Σwq for gain, Σwq/Σq² for lsq); 1 without rescaling. Computed on the
/// GPU by shaders/group_products.wgsl and rescale.wgsl.
pub fn rescale_factors(w: &[f32], grouping: Grouping, q: &[f32], mode: Rescale) -> Vec<f32> {
    let Some((num, den)) = mode.sums() else {
        return vec![1.0; grouping.groups];
    };
    (0..grouping.groups).into_par_iter().map(|g| rescale_factor(product_sum(w, grouping, q, g, num), product_sum(w, grouping, q, g, den))).collect()
}

/// Applies `--rescale` to the quantized weights `q` of `w` in place: each
/// group's values times its factor ([`rescale_factors`]), one f32 product.
pub fn rescale(w: &[f32], grouping: Grouping, q: &mut [f32], mode: Rescale) {
    if mode == Rescale::None {
        return;
    }
    let f = rescale_factors(w, grouping, q, mode);
    for (i, v) in q.iter_mut().enumerate() {
        *v *= f[grouping.group_of(i)];
    }
}

/// The values of group `g` as the quantizer reads them (subnormals flushed), in group order.
fn group_values(w: &[f32], grouping: Grouping, g: usize) -> Vec<f32> {
    (0..grouping.group_len()).map(|i| flush(w[grouping.index(g, i)])).collect()
}

/// [`group_values`], sorted ascending.
fn sorted_group(w: &[f32], grouping: Grouping, g: usize) -> Vec<f32> {
    let mut v = group_values(w, grouping, g);
    v.sort_by(f32::total_cmp);
    v
}

/// Statistics with each group's range clipped to its `percentile` (in (50,
/// 100)): lo and hi become the group's values of ranks r and n-1-r of the
/// sorted group, r = floor((1 - percentile/100) (n - 1)) (order statistics, so
/// no arithmetic on the weights); mean and std stay those of the whole group.
pub fn clip_stats(w: &[f32], grouping: Grouping, stats: &[GroupStats], percentile: f64) -> Vec<GroupStats> {
    let n = grouping.group_len();
    let r = ((1.0 - percentile / 100.0) * (n - 1) as f64).floor().max(0.0) as usize;
    (0..grouping.groups)
        .into_par_iter()
        .map(|g| {
            let v = sorted_group(w, grouping, g);
            GroupStats { lo: v[r], hi: v[n - 1 - r], ..stats[g] }
        })
        .collect()
}

/// How many clipping depths [`mse_clip_stats`] tries per group and bit width.
pub const MSE_CLIP_CANDIDATES: usize = 64;

/// Statistics with each group's range clipped, for `bits`, to the one whose
/// rounding by `method` has the least expected squared error over the group
/// ([`LevelParams::expected_sq_err`]: the error itself for the deterministic
/// roundings, its mean over the random draws for the stochastic and dither
/// ones) (--clip mse). The candidates are the ranges [v_r, v_(n-1-r)] of the
/// sorted group v for r = floor(m (j/64)^2), m = floor((n-1)/2), j = 0..63:
/// order statistics, as [`clip_stats`] takes, packed densely near r = 0 (no
/// clipping), where the optimum lies at high bit widths. Each candidate's error
/// is summed in f64, in group order, over the reference's own levels on that
/// range, so the chosen range is never worse than the whole range by that
/// measure; a tie keeps the shallower clip. The depths are tried in ascending
/// order, and one whose lower bound ([`mse_bound`]: the clipped weights'
/// distance from the outermost possible outputs) already exceeds the least
/// error so far is skipped unrounded: the choice is the exhaustive search's
/// (proptest), at a fraction of the cost at high bit widths. mean and std stay
/// those of the whole group (the normal set's quantiles keep the group's own
/// distribution). Not for the table level sets.
pub fn mse_clip_stats(w: &[f32], grouping: Grouping, stats: &[GroupStats], bits: u32, method: Method) -> Vec<GroupStats> {
    mse_clip_ranges(w, grouping, stats, &[bits], &[method]).concat().pop().expect("one method and bit width")
}

/// [`mse_clip_stats`] for each of `methods` at each of `bits` ([method][bits
/// row]), each group gathered and sorted once.
pub fn mse_clip_ranges(w: &[f32], grouping: Grouping, stats: &[GroupStats], bits: &[u32], methods: &[Method]) -> Vec<Vec<Vec<GroupStats>>> {
    if let Some(m) = methods.iter().find(|m| !m.is_clippable()) {
        panic!("--clip mse does not apply to {m}");
    }
    let n = grouping.group_len();
    let depths = mse_clip_depths(n);
    // per group: its values in group order (the error's summation order) and sorted
    let groups: Vec<(Vec<f32>, Vec<f32>)> = (0..grouping.groups)
        .into_par_iter()
        .map(|g| {
            let values = group_values(w, grouping, g);
            let mut sorted = values.clone();
            sorted.sort_by(f32::total_cmp);
            (values, sorted)
        })
        .collect();
    // each (method, bits row, group) searched on its own: the depths in
    // ascending order, skipping a depth whose error cannot beat the least so
    // far ([`mse_bound`]), so the choice is the exhaustive search's
    let tasks: Vec<(usize, usize, usize)> =
        (0..methods.len()).flat_map(|mi| (0..bits.len()).flat_map(move |bi| (0..grouping.groups).map(move |g| (mi, bi, g)))).collect();
    let found: Vec<GroupStats> = tasks
        .into_par_iter()
        .map(|(mi, bi, g)| {
            let (method, b, (values, sorted), s) = (methods[mi], bits[bi], &groups[g], &stats[g]);
            let z = z_table(b);
            let range = |r: usize| GroupStats { lo: sorted[r], hi: sorted[n - 1 - r], ..*s };
            // (depth, error) of the first least error: depths ascend, so a tie
            // keeps the shallower clip; a NaN error (NaN weights) never wins
            let mut best: Option<(usize, f64)> = None;
            for &r in &depths {
                let p = LevelParams::new(&range(r), b, z);
                if let Some((_, least)) = best
                    && mse_bound(sorted, r, &p, method.level_set(), z) > least * (1.0 + MSE_BOUND_SLACK)
                {
                    continue;
                }
                let e = values.iter().map(|&x| p.expected_sq_err(method, x, z)).sum::<f64>();
                let e = if e.is_nan() { f64::INFINITY } else { e };
                if best.is_none_or(|(_, least)| e < least) {
                    best = Some((r, e));
                }
            }
            range(best.expect("at least one depth").0)
        })
        .collect();
    let per_row = grouping.groups;
    let mut rows = found.chunks(per_row).map(<[GroupStats]>::to_vec);
    methods.iter().map(|_| bits.iter().map(|_| rows.next().expect("one row per method and bit width")).collect()).collect()
}

/// The clipping depths r = floor(m (j/64)^2), m = floor((n-1)/2), j = 0..63,
/// of a group of `n` ([`mse_clip_stats`]), ascending, each once.
fn mse_clip_depths(n: usize) -> Vec<usize> {
    let m = (n.max(1) - 1) / 2;
    let mut depths: Vec<usize> = (0..MSE_CLIP_CANDIDATES).map(|j| m * j * j / (MSE_CLIP_CANDIDATES * MSE_CLIP_CANDIDATES)).collect();
    depths.dedup();
    depths
}

/// How far above the best error so far a depth's lower bound must lie for
/// [`mse_clip_ranges`] to skip it: far above the f64 rounding of either sum
/// (relative n·2^-53, below 1e-9 for a billion weights), so a skipped depth
/// could not have won.
const MSE_BOUND_SLACK: f64 = 1e-6;

/// A lower bound on any method's (expected) squared error over the sorted
/// group `sorted` on the range of depth `r` (levels `p`): every output of a
/// rounding onto `set` lies in [min(L(0), lo) - step, max(L(last), hi) + step]
/// (the levels themselves, midrise's within half a bin of the range, and
/// subtractive dither's within a step of a level), so a weight beyond that
/// interval, which only the r clipped weights at each end can be, is at least
/// its distance from it away. Cheap at high bit widths, where it is tight and
/// most deep clips are skipped.
fn mse_bound(sorted: &[f32], r: usize, p: &LevelParams, set: LevelSet, z: &[f32]) -> f64 {
    let n = sorted.len();
    let step = f64::from(p.step).abs();
    let (first, last) = if p.degenerate != 0 { (p.lo, p.hi) } else { (p.level(set, 0, z), p.level(set, p.last_code(set, z), z)) };
    let low = f64::from(first.min(p.lo)) - step;
    let high = f64::from(last.max(p.hi)) + step;
    let below: f64 = sorted[..r].iter().map(|&x| (low - f64::from(x)).max(0.0).powi(2)).sum();
    let above: f64 = sorted[n - r..].iter().map(|&x| (f64::from(x) - high).max(0.0).powi(2)).sum();
    below + above
}

/// ∫ t^k f(t) dt over [a, b] for k = 0, 1, 2, f(t) = 1 - |t| the triangular
/// density on (-1, 1), with [a, b] on one side of 0.
fn triangular_moments(a: f64, b: f64) -> [f64; 3] {
    // a primitive of t^k (1 - |t|): t^(k+1)/(k+1) - sign(t) t^(k+2)/(k+2)
    let sign = if a + b >= 0.0 { 1.0 } else { -1.0 };
    [0, 1, 2].map(|k: i32| {
        let prim = |t: f64| t.powi(k + 1) / f64::from(k + 1) - sign * t.powi(k + 2) / f64::from(k + 2);
        prim(b) - prim(a)
    })
}

/// z_i = Φ⁻¹(i/(K-1)) for the lower half of i = 1..K-2; the upper half mirrors
/// it (z_i = -z_{K-1-i}), so the normal level set of symmetric data is symmetric.
pub fn z_entry(i: u32, k: u32) -> f32 {
    let last = k - 1;
    if 2 * i < last { inv_norm_cdf(div(i as f32, last as f32)) } else { -inv_norm_cdf(div((last - i) as f32, last as f32)) }
}

/// The standard normal quantiles z_1..z_{K-2} for b bits (empty for b = 1).
pub fn z_table(bits: u32) -> &'static [f32] {
    static TABLES: [OnceLock<Vec<f32>>; 17] = [const { OnceLock::new() }; 17];
    TABLES[bits as usize].get_or_init(|| {
        let k = 1u32 << bits;
        (1..k.saturating_sub(1)).into_par_iter().map(|i| z_entry(i, k)).collect()
    })
}

/// Everything the rounding step needs about one group at one bit width.
/// Mirrors `LevelParams` in shaders/common.wgsl: keep the field order in step.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct LevelParams {
    pub lo: f32,
    pub hi: f32,
    /// uniform step (hi-lo)/(K-1) and its reciprocal
    pub step: f32,
    pub inv_step: f32,
    /// histogram bin width = midrise delta = (hi-lo)/K, and its reciprocal
    pub hstep: f32,
    pub inv_hstep: f32,
    /// midrise: floor(lo / delta)
    pub k0: f32,
    pub mean: f32,
    pub std: f32,
    pub bits: u32,
    /// normal: how many quantiles lie below lo, and how many at or below hi
    pub below_lo: u32,
    pub upto_hi: u32,
    /// 1 when hi - lo < 2^-100
    pub degenerate: u32,
    pub _pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<LevelParams>() == 64);

impl LevelParams {
    pub fn new(s: &GroupStats, bits: u32, z: &[f32]) -> LevelParams {
        let k = 1u32 << bits;
        let range = s.hi - s.lo;
        let mut p = LevelParams { lo: s.lo, hi: s.hi, mean: s.mean, std: s.std, bits, ..LevelParams::zeroed() };
        if s.is_degenerate() {
            p.degenerate = 1;
            return p;
        }
        p.step = div(range, (k - 1) as f32);
        p.inv_step = recip(p.step);
        p.hstep = range * f32::from_bits((127 - bits) << 23); // * 2^-bits, exact
        p.inv_hstep = recip(p.hstep);
        p.k0 = floor_div(s.lo, p.hstep, p.inv_hstep);
        if bits >= 2 {
            let q = |i: u32| madd(s.std, z[i as usize], s.mean);
            p.below_lo = count_while(z.len() as u32, |i| q(i) < s.lo);
            p.upto_hi = count_while(z.len() as u32, |i| q(i) <= s.hi);
        }
        p
    }

    pub fn levels(&self) -> u32 {
        1 << self.bits
    }

    /// The range and moments these parameters were built from.
    pub fn range(&self) -> GroupStats {
        GroupStats { lo: self.lo, hi: self.hi, mean: self.mean, std: self.std }
    }

    /// Level `t` of the level set (not used by midrise, whose values are
    /// `midrise_value`). `z` is the z table of this bit width for the normal set,
    /// and the group's own levels for lloyd and kde ([`level_table`]).
    #[inline]
    pub fn level(&self, set: LevelSet, t: u32, z: &[f32]) -> f32 {
        let k = self.levels();
        match set {
            LevelSet::Uniform => {
                if t == k - 1 { self.hi } else { madd(t as f32, self.step, self.lo) }
            }
            LevelSet::Histogram => madd(t as f32 + 0.5, self.hstep, self.lo),
            LevelSet::Normal => {
                let q = |i: u32| madd(self.std, z[i as usize], self.mean);
                let (a, c) = (self.below_lo, self.upto_hi);
                if t < a {
                    q(t)
                } else if t == a {
                    self.lo
                } else if t <= c {
                    q(t - 1)
                } else if t == c + 1 {
                    self.hi
                } else {
                    q(t - 2)
                }
            }
            LevelSet::Midrise => self.midrise_value(t),
            LevelSet::Lloyd | LevelSet::Kde => z[t as usize],
        }
    }

    #[inline]
    fn midrise_value(&self, code: u32) -> f32 {
        (self.k0 + code as f32 + 0.5) * self.hstep
    }

    /// The largest t with L(t) <= w, or 0 when every level exceeds w (tests
    /// compare it with [`LevelParams::bracket_by_search`]).
    #[cfg(test)]
    fn bracket(&self, set: LevelSet, w: f32, z: &[f32]) -> u32 {
        self.bracket_with(set, w, z, &mut Memo::new(self, set, z))
    }

    /// [`LevelParams::bracket`], reading levels through `memo`.
    #[inline]
    fn bracket_with(&self, set: LevelSet, w: f32, z: &[f32], memo: &mut Memo<'_>) -> u32 {
        let last = self.last_code(set, z);
        let mut at = |t: u32| memo.level(t);
        let guess = match set {
            LevelSet::Uniform => Some((w - self.lo) * self.inv_step),
            LevelSet::Histogram => Some((w - self.lo) * self.inv_hstep - 0.5),
            _ => None,
        };
        match guess {
            // a table of levels: binary search
            None if set.is_table() => count_while(last, |t| at(t + 1) <= w),
            // Evenly spaced levels: an arithmetic guess, then exact steps to the
            // bracket. The guess only saves time; the steps decide the answer.
            Some(g) => {
                let mut t = g.floor().clamp(0.0, last as f32) as u32;
                while t < last && at(t + 1) <= w {
                    t += 1;
                }
                while t > 0 && at(t) > w {
                    t -= 1;
                }
                t
            }
            None if w < self.lo || w > self.hi || self.std <= 0.0 => count_while(last, |t| at(t + 1) <= w),
            // Normal levels, w in [lo, hi]: lo and hi sit among the quantiles
            // q_i = madd(std, z_i, mean), so the bracket is #{q_i <= w} + [w >= hi].
            // Guess the count where (w - mean) / std falls in the z table (loads
            // and compares only; any rounding is fine for a guess), then step to
            // the exact count with the q_i themselves.
            None => {
                let q = |i: u32| madd(self.std, z[i as usize], self.mean);
                let m = z.len() as u32;
                let zw = (w - self.mean) / self.std;
                let mut j = if m > 256 { cdf_guess(zw, m) } else { z.partition_point(|&zi| zi <= zw) as u32 };
                while j < m && q(j) <= w {
                    j += 1;
                }
                while j > 0 && q(j - 1) > w {
                    j -= 1;
                }
                (j + (w >= self.hi) as u32).min(last)
            }
        }
    }

    /// The bracket by plain binary search over every level (the definition the
    /// faster paths above must agree with; tests compare them).
    #[cfg(test)]
    fn bracket_by_search(&self, set: LevelSet, w: f32, z: &[f32]) -> u32 {
        count_while(self.last_code(set, z), |t| self.level(set, t + 1, z) <= w)
    }

    /// The largest code: K - 1, or the last entry of a lloyd group's table.
    #[inline]
    fn last_code(&self, set: LevelSet, z: &[f32]) -> u32 {
        if set.is_table() { z.len() as u32 - 1 } else { self.levels() - 1 }
    }

    /// The code of `w` under `method` and the weight it stands for (the same
    /// as [`LevelParams::value`] of that code, each level computed once); `u`
    /// is the element's uniform draw (used by stochastic methods only).
    #[inline]
    pub fn code_value(&self, method: Method, w: f32, u: f32, z: &[f32]) -> (u32, f32) {
        if self.degenerate != 0 {
            return (0, self.lo);
        }
        let set = method.level_set();
        let last = self.last_code(set, z);
        if set == LevelSet::Midrise {
            let k = floor_div(w, self.hstep, self.inv_hstep);
            let c = (k - self.k0).clamp(0.0, last as f32) as u32;
            return (c, self.midrise_value(c));
        }
        // the bracket's steps compute L(j) and L(j + 1) as a rule: kept here
        let mut memo = Memo::new(self, set, z);
        let j = self.bracket_with(set, w, z, &mut memo);
        let lj = memo.level(j);
        if j == last {
            return (j, lj);
        }
        let lk = memo.level(j + 1);
        let up = if method.rounds_stochastically() {
            w > lj && u * (lk - lj) < w - lj
        } else {
            (w - lj) >= (lk - w)
        };
        if up { (j + 1, lk) } else { (j, lj) }
    }

    /// The expected squared error of rounding `w` by `method` (a method of a
    /// parametric level set), in f64: what --clip mse minimises.
    /// - nearest and midrise: (w - q(w))^2 of the code [`code_value`](Self::code_value) gives;
    /// - stochastic, for L(j) < w < L(j+1): (w - L(j)) (L(j+1) - w), the
    ///   variance of the unbiased choice between the two; (w - L(j))^2 on a
    ///   level or outside the range;
    /// - dither: over the triangular t on (-1, 1), the mean of (Q(w + t step) - w)^2
    ///   (`uniform-dither`) or of (Q(w + t step) - t step - w)^2 (subtractive),
    ///   Q the uniform set's nearest rounding, integrated exactly in f64 piece
    ///   by piece between the points where Q changes (the real arithmetic, not
    ///   the f32 steps of [`quantize`]). Inside the range, away from its ends,
    ///   that is step^2/4 and step^2/12.
    pub fn expected_sq_err(&self, method: Method, w: f32, z: &[f32]) -> f64 {
        let x = f64::from(w);
        if self.degenerate == 0 && method.rounds_stochastically() {
            let set = method.level_set();
            let mut memo = Memo::new(self, set, z);
            let j = self.bracket_with(set, w, z, &mut memo);
            let lj = f64::from(memo.level(j));
            if j == self.last_code(set, z) || x <= lj {
                return (x - lj).powi(2);
            }
            return (x - lj) * (f64::from(memo.level(j + 1)) - x);
        }
        if self.degenerate == 0 && method.is_dither() {
            let (lo, step, last) = (f64::from(self.lo), f64::from(self.step), f64::from(self.levels() - 1));
            // in steps: w at u, levels at the integers 0..=last, t moves it by t
            let u = (x - lo) / step;
            // Q changes where u + t crosses k + 1/2: at most twice for t in (-1, 1);
            // a crossing outside is clamped onto an end, an empty piece
            let first = (u - 1.5).ceil();
            let cross = |i: f64| (first + i + 0.5 - u).clamp(-1.0, 1.0);
            let mut cuts = [-1.0, 0.0, 1.0, cross(0.0), cross(1.0), cross(2.0)];
            cuts.sort_unstable_by(f64::total_cmp);
            let subtract = method == Method::UniformDitherSubtractive;
            let steps2: f64 = cuts
                .windows(2)
                .map(|ab| {
                    let (a, b) = (ab[0], ab[1]);
                    let code = (u + 0.5 * (a + b) + 0.5).floor().clamp(0.0, last);
                    // error in steps: d = (L(code) - w) / step, less t when
                    // subtracted; L the reference's own level (hi at the top)
                    let d = (f64::from(self.level(LevelSet::Uniform, code as u32, z)) - x) / step;
                    let [m0, m1, m2] = triangular_moments(a, b);
                    if subtract { d * d * m0 - 2.0 * d * m1 + m2 } else { d * d * m0 }
                })
                .sum();
            return steps2 * step * step;
        }
        let (_, q) = self.code_value(method, w, 0.0, z);
        (x - f64::from(q)).powi(2)
    }

    /// The weight a code stands for.
    #[inline]
    pub fn value(&self, method: Method, code: u32, z: &[f32]) -> f32 {
        if self.degenerate != 0 { self.lo } else { self.level(method.level_set(), code, z) }
    }
}

/// The last two levels a quantization step computed: the bracket's steps and
/// the rounding decision read the same one or two levels, and computing a
/// level (exact multiply-adds) is the step's main cost.
struct Memo<'a> {
    p: &'a LevelParams,
    set: LevelSet,
    z: &'a [f32],
    slots: [(u32, f32); 2],
    next: usize,
}

impl<'a> Memo<'a> {
    #[inline]
    fn new(p: &'a LevelParams, set: LevelSet, z: &'a [f32]) -> Memo<'a> {
        Memo { p, set, z, slots: [(u32::MAX, 0.0); 2], next: 0 }
    }

    /// L(t), as [`LevelParams::level`] computes it.
    #[inline]
    fn level(&mut self, t: u32) -> f32 {
        for &(k, v) in &self.slots {
            if k == t {
                return v;
            }
        }
        let v = self.p.level(self.set, t, self.z);
        self.slots[self.next] = (t, v);
        self.next ^= 1;
        v
    }
}

/// A guess at #{z_i <= x} for the table of m = K - 2 quantiles z_i =
/// Φ⁻¹((i + 1) / (K - 1)): floor(Φ(x) (K - 1)), with Φ from Abramowitz and
/// Stegun's 7.1.26 (|error| < 1.5e-7, so within one entry of the count for
/// every table). Only a starting point: the caller steps to the exact count.
/// A binary search over a 65,534-entry table costs 16 dependent loads.
fn cdf_guess(x: f32, m: u32) -> u32 {
    let x = f64::from(x);
    if !x.is_finite() {
        return if x > 0.0 { m } else { 0 };
    }
    let a = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-a * a).exp();
    let cdf = 0.5 * (1.0 + if x < 0.0 { -erf } else { erf });
    ((cdf * f64::from(m + 1)).floor().max(0.0) as u32).min(m)
}

/// The number of leading `i` in 0..n for which `pred` holds, for a `pred` that is
/// true up to some point and false after it (binary search).
fn count_while(n: u32, mut pred: impl FnMut(u32) -> bool) -> u32 {
    let (mut lo, mut hi) = (0u32, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// Rounds of Lloyd-Max at most (each costs a pass over the group's sorted values).
pub const LLOYD_ITERATIONS: usize = 64;

/// Entries of a table level set's group (lloyd, kde): min(K, group size).
pub fn table_entries(bits: u32, group_len: usize) -> usize {
    (1usize << bits).min(group_len)
}

/// Lloyd-Max levels for `sorted` (the group's values, ascending) at `k` levels:
/// the specification in this module's header. Returns min(k, sorted.len())
/// sorted levels.
pub fn lloyd_levels(sorted: &[f32], k: usize) -> Vec<f32> {
    let mut distinct: Vec<f32> = sorted.to_vec();
    distinct.dedup();
    if distinct.len() <= k {
        let top = *distinct.last().unwrap_or(&0.0);
        distinct.resize(k.min(sorted.len()), top);
        return distinct;
    }
    let x: Vec<f64> = sorted.iter().map(|&v| f64::from(v)).collect();
    // prefix[i] = x[0] + ... + x[i-1], summed in order
    let mut prefix = Vec::with_capacity(x.len() + 1);
    prefix.push(0.0f64);
    for v in &x {
        prefix.push(prefix[prefix.len() - 1] + v);
    }
    let (lo, hi) = (x[0], x[x.len() - 1]);
    let mut levels: Vec<f64> = (0..k).map(|i| if i == k - 1 { hi } else { lo + i as f64 * (hi - lo) / (k - 1) as f64 }).collect();
    let mut ends = vec![0usize; k]; // cell i is x[ends[i-1]..ends[i]]
    for _ in 0..LLOYD_ITERATIONS {
        // cell boundaries: the first value at or above each midpoint (a tie
        // goes to the larger level), found by one merge-like walk
        let mut at = 0usize;
        for i in 0..k - 1 {
            let mid = (levels[i] + levels[i + 1]) / 2.0;
            while at < x.len() && x[at] < mid {
                at += 1;
            }
            ends[i] = at;
        }
        ends[k - 1] = x.len();
        let mut moved = false;
        let mut start = 0usize;
        for i in 0..k {
            let end = ends[i];
            if end > start {
                let mean = (prefix[end] - prefix[start]) / (end - start) as f64;
                if mean != levels[i] {
                    levels[i] = mean;
                    moved = true;
                }
            }
            start = end;
        }
        if !moved {
            break;
        }
    }
    levels.into_iter().map(|l| l as f32).collect()
}

/// Gaussian kernel-density levels for `sorted` (the group's values, ascending,
/// not all equal): the specification in this module's header, `entries` levels.
pub fn kde_levels(sorted: &[f32], entries: usize) -> Vec<f32> {
    /// CDF intervals over [lo, hi]; quantiles are interpolated between them.
    const GRID: usize = 2048;
    let x: Vec<f64> = sorted.iter().map(|&v| f64::from(v)).collect();
    let n = x.len() as f64;
    let (lo, hi) = (x[0], x[x.len() - 1]);
    let mean = x.iter().sum::<f64>() / n;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let h = 1.06 * sd * n.powf(-0.2);
    // Φ by Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7)
    let phi = |z: f64| {
        let a = z.abs() / std::f64::consts::SQRT_2;
        let t = 1.0 / (1.0 + 0.327_591_1 * a);
        let erfc = t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429)))) * (-a * a).exp();
        if z < 0.0 { 0.5 * erfc } else { 1.0 - 0.5 * erfc }
    };
    // the CDF on the grid: values more than 8 bandwidths below count whole, above not at all
    let step = (hi - lo) / GRID as f64;
    let cdf: Vec<f64> = (0..=GRID)
        .map(|g| {
            let at = lo + g as f64 * step;
            let below = x.partition_point(|&v| v < at - 8.0 * h);
            let above = x.partition_point(|&v| v <= at + 8.0 * h);
            (below as f64 + x[below..above].iter().map(|&v| phi((at - v) / h)).sum::<f64>()) / n
        })
        .collect();
    let quantile = |p: f64| {
        if p <= cdf[0] {
            return lo;
        }
        if p >= cdf[GRID] {
            return hi;
        }
        let g = cdf.partition_point(|&c| c <= p) - 1;
        let (c0, c1) = (cdf[g], cdf[g + 1]);
        let frac = if c1 > c0 { (p - c0) / (c1 - c0) } else { 0.0 };
        (lo + (g as f64 + frac) * step).clamp(lo, hi)
    };
    (0..entries)
        .map(|i| {
            let level = if i == 0 {
                lo
            } else if i == entries - 1 {
                hi
            } else {
                quantile(i as f64 / (entries - 1) as f64)
            };
            level as f32
        })
        .collect()
}

/// The level tables of a table level set (lloyd, kde) for every group of `w`
/// at each of `bits`: [`table_entries`] levels per group, group after group (a
/// degenerate group: copies of its lo). Each group is sorted once.
pub fn level_tables(set: LevelSet, w: &[f32], grouping: Grouping, stats: &[GroupStats], bits: &[u32]) -> Vec<Vec<f32>> {
    assert!(set.is_table(), "{set:?} has no table");
    if bits.is_empty() {
        return Vec::new();
    }
    let sorted: Vec<Option<Vec<f32>>> = (0..grouping.groups)
        .into_par_iter()
        .map(|g| {
            if stats[g].is_degenerate() {
                return None;
            }
            Some(sorted_group(w, grouping, g))
        })
        .collect();
    bits.par_iter()
        .map(|&b| {
            let k = table_entries(b, grouping.group_len());
            let per_group: Vec<Vec<f32>> = sorted
                .par_iter()
                .zip(stats)
                .map(|(v, s)| match (v, set) {
                    (Some(v), LevelSet::Lloyd) => lloyd_levels(v, k),
                    (Some(v), _) => kde_levels(v, k),
                    (None, _) => vec![s.lo; k],
                })
                .collect();
            per_group.concat()
        })
        .collect()
}

/// [`level_tables`] at one bit width.
pub fn level_table(set: LevelSet, w: &[f32], grouping: Grouping, stats: &[GroupStats], bits: u32) -> Vec<f32> {
    level_tables(set, w, grouping, stats, &[bits]).pop().expect("one bit width")
}

/// Per-group level parameters of a tensor at one bit width.
pub fn tensor_params(stats: &[GroupStats], bits: u32) -> Vec<LevelParams> {
    let z = z_table(bits);
    stats.iter().map(|s| LevelParams::new(s, bits, z)).collect()
}

/// One quantized tensor: codes and the weights they stand for.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub codes: Vec<u32>,
    pub values: Vec<f32>,
}

/// Which variant and tensor a quantization is for (the random stream's inputs).
#[derive(Clone, Copy, Debug)]
pub struct VariantKey {
    pub method: Method,
    pub bits: u32,
    pub seed: u32,
    pub tensor: u32,
}

/// Quantizes `w` (grouped by `grouping`, with `params` from [`tensor_params`];
/// `table` is [`level_table`] of the method's level set at the key's bits for
/// the lloyd and kde methods, and may be empty for the others).
pub fn quantize(w: &[f32], grouping: Grouping, params: &[LevelParams], table: &[f32], key: VariantKey) -> Quantized {
    let k = table_entries(key.bits, grouping.group_len());
    let is_table = key.method.level_set().is_table();
    assert!(!is_table || table.len() == k * grouping.groups, "{} needs the tensor's level table at {} bits", key.method, key.bits);
    let z = z_table(key.bits);
    let draw = draw_key(key.seed, stream_id(key.method, key.bits), key.tensor);
    let dither2 = pcg_hash(draw);
    let one = |(i, &w): (usize, &f32)| {
        let g = grouping.group_of(i);
        let p = &params[g];
        let u = if key.method.is_stochastic() { uniform_from_key(draw, i as u32) } else { 0.0 };
        if key.method.is_dither() {
            let t = u - uniform_from_key(dither2, i as u32);
            let (code, level) = p.code_value(Method::UniformNearest, flush(madd(t, p.step, flush(w))), 0.0, z);
            let subtract = key.method == Method::UniformDitherSubtractive && p.degenerate == 0;
            return (code, if subtract { madd(-t, p.step, level) } else { level });
        }
        let levels = if is_table { &table[g * k..(g + 1) * k] } else { z };
        p.code_value(key.method, flush(w), u, levels)
    };
    // a tensor below 4,096 weights is one task anyway: skip rayon's collection
    let (codes, values) = if w.len() <= 4096 { w.iter().enumerate().map(one).unzip() } else { w.par_iter().enumerate().with_min_len(4096).map(one).unzip() };
    Quantized { codes, values }
}

/// Convenience: statistics, parameters (and the level table) and codes in one call.
pub fn quantize_tensor(w: &[f32], grouping: Grouping, key: VariantKey) -> Quantized {
    let stats = group_stats(w, grouping);
    let set = key.method.level_set();
    let table = if set.is_table() { level_table(set, w, grouping, &stats, key.bits) } else { Vec::new() };
    quantize(w, grouping, &tensor_params(&stats, key.bits), &table, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(w: &[f32], method: Method, bits: u32) -> Quantized {
        quantize_tensor(w, Grouping::whole(w.len()), VariantKey { method, bits, seed: 1, tensor: 0 })
    }

    #[test]
    fn the_cdf_guess_lands_within_one_entry_of_the_count() {
        for bits in 9..=16 {
            let z = z_table(bits);
            let m = z.len() as u32;
            let step = (z.len() / 500).max(1);
            let probes = z.iter().step_by(step).flat_map(|&zi| [zi, zi.next_up(), zi.next_down()]).chain([-9.0, 9.0, 0.0, f32::INFINITY, f32::NEG_INFINITY]);
            for x in probes {
                let count = z.partition_point(|&zi| zi <= x) as i64;
                let guess = i64::from(cdf_guess(x, m));
                assert!((guess - count).abs() <= 1, "{bits} bits, x {x}: guess {guess}, count {count}");
            }
        }
    }

    #[test]
    fn uniform_nearest_by_hand() {
        // levels 0, 1, 2, 3; 1.5 is a tie and goes up
        let r = q(&[0.0, 0.49, 0.5, 1.5, 1.49, 3.0], Method::UniformNearest, 2);
        assert_eq!(r.codes, vec![0, 0, 1, 2, 1, 3]);
        assert_eq!(r.values, vec![0.0, 0.0, 1.0, 2.0, 1.0, 3.0]);
    }

    #[test]
    fn histogram_nearest_by_hand() {
        // 1 bit over [0, 4]: bin centres 1 and 3; 2 is a tie and goes up
        let r = q(&[0.0, 1.9, 2.0, 4.0], Method::HistogramNearest, 1);
        assert_eq!(r.codes, vec![0, 0, 1, 1]);
        assert_eq!(r.values, vec![1.0, 1.0, 3.0, 3.0]);
    }

    #[test]
    fn midrise_is_clamped_to_k_levels() {
        // 2 bits over [0, 4]: delta 1, values 0.5..3.5; the study's unclamped form
        // would send 4.0 to a fifth value, 4.5
        let r = q(&[0.0, 0.99, 1.0, 3.99, 4.0], Method::Midrise, 2);
        assert_eq!(r.codes, vec![0, 0, 1, 3, 3]);
        assert_eq!(r.values, vec![0.5, 0.5, 1.5, 3.5, 3.5]);
    }

    #[test]
    fn midrise_bins_are_the_floors_of_w_over_delta() {
        // a symmetric group: lo / delta = -1 exactly, and 0.11 * recip(0.11) is
        // above 1 in f32, so an unchecked floor(lo * (1/delta)) puts lo in bin -2
        // and shifts every level down a bin (all three would come out negative)
        let r = q(&[-0.11, 0.05, 0.11], Method::Midrise, 1);
        assert_eq!(r.codes, vec![0, 1, 1]);
        assert_eq!(r.values, vec![-0.055, 0.055, 0.055]);

        // lo / delta is a whole number for every symmetric group (-K/2) and every
        // group whose max is 0 (-K): the codes are the exact floors, against f64
        use rand::rngs::Xoshiro256PlusPlus;
        use rand::{RngExt, SeedableRng};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        for trial in 0..3000 {
            let a = 10f32.powf(rng.random_range(-3.0..1.0));
            let top = if trial % 2 == 0 { a } else { 0.0 };
            let mut w = vec![-a, top];
            w.extend((0..6).map(|_| rng.random_range(-a..top.max(-a / 2.0))));
            for bits in 1..=16 {
                let s = group_stats(&w, Grouping::whole(w.len()))[0];
                let p = LevelParams::new(&s, bits, z_table(bits));
                let delta = f64::from(p.hstep);
                let k0 = (f64::from(s.lo) / delta).floor();
                assert_eq!(f64::from(p.k0), k0, "{w:?} at {bits} bits");
                let r = q(&w, Method::Midrise, bits);
                let last = f64::from(p.levels() - 1);
                assert_eq!((r.codes[0], f64::from(r.codes[1])), (0, last), "{w:?} at {bits} bits: lo and hi");
                // inside too, while the floors have at most 12 significant bits
                if bits <= 12 {
                    let want: Vec<u32> = w.iter().map(|&x| ((f64::from(x) / delta).floor() - k0).clamp(0.0, last) as u32).collect();
                    assert_eq!(r.codes, want, "{w:?} at {bits} bits");
                }
            }
        }
    }

    #[test]
    fn normal_levels_by_hand() {
        // 2 bits: lo, hi and the quantiles at 1/3 and 2/3 (z = ∓0.430727)
        let w = [-2.0f32, -1.0, 0.0, 1.0, 2.0];
        let s = group_stats(&w, Grouping::whole(5))[0];
        assert_eq!((s.lo, s.hi, s.mean), (-2.0, 2.0, 0.0));
        assert!((s.std - 2f32.sqrt()).abs() < 1e-6);
        let p = LevelParams::new(&s, 2, z_table(2));
        let levels: Vec<f32> = (0..4).map(|t| p.level(LevelSet::Normal, t, z_table(2))).collect();
        let z = 0.430_727_3 * 2f32.sqrt();
        assert!((levels[1] + z).abs() < 1e-5 && (levels[2] - z).abs() < 1e-5, "{levels:?}");
        assert_eq!((levels[0], levels[3]), (-2.0, 2.0));
        let r = q(&w, Method::NormalNearest, 2);
        assert_eq!(r.codes, vec![0, 1, 2, 2, 3]); // 0.0 is a tie between ∓0.609: up
    }

    #[test]
    fn normal_levels_outside_the_range_are_sorted_in() {
        // few, tightly spread values: at 8 bits most quantiles of N(mean, std) lie
        // outside [lo, hi]; the level set stays sorted and lo, hi stay levels
        let w = [0.0f32, 0.1, 0.2, 0.3, 10.0];
        let s = group_stats(&w, Grouping::whole(5))[0];
        let z = z_table(8);
        let p = LevelParams::new(&s, 8, z);
        assert!(p.below_lo > 0);
        let levels: Vec<f32> = (0..256).map(|t| p.level(LevelSet::Normal, t, z)).collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]));
        assert!(levels.contains(&0.0) && levels.contains(&10.0));
        let r = q(&w, Method::NormalNearest, 8);
        assert_eq!(r.values[0], 0.0);
        assert_eq!(r.values[4], 10.0);
    }

    #[test]
    fn constant_tensor_is_degenerate_and_exact() {
        for m in Method::ALL {
            for bits in [1, 4, 16] {
                let r = q(&[0.25; 7], m, bits);
                assert_eq!(r.codes, vec![0; 7]);
                assert_eq!(r.values, vec![0.25; 7]);
            }
        }
    }

    #[test]
    fn tree_sum_matches_exact_sums_of_integers() {
        for n in [0, 1, 255, 256, 257, 70_000] {
            assert_eq!(tree_sum(n, |k| (k % 7) as f32), (0..n).map(|k| (k % 7) as f64).sum::<f64>() as f32);
        }
    }

    #[test]
    fn per_channel_groups_use_their_own_range() {
        // Linear weight [in = 2, out = 2]: column 0 in [0, 1], column 1 in [0, 100]
        let w = [0.0f32, 0.0, 1.0, 100.0];
        let g = Grouping::per_channel(&[2, 2], 1);
        let r = quantize_tensor(&w, g, VariantKey { method: Method::UniformNearest, bits: 1, seed: 0, tensor: 0 });
        assert_eq!(r.values, w.to_vec());
    }

    #[test]
    fn stochastic_rounding_is_unbiased() {
        // w = 0.3 between levels 0 and 1 (1 bit over [0, 1]): P(up) = 0.3.
        // Over 64 seeds x 4096 elements, the mean's standard error is
        // sqrt(0.21 / 262144) = 9e-4; the bound is 5 standard errors.
        for m in [Method::UniformStochastic, Method::NormalStochastic] {
            let mut w = vec![0.3f32; 4096];
            w[0] = 0.0;
            w[1] = 1.0;
            let mut sum = 0.0f64;
            for seed in 0..64 {
                let key = VariantKey { method: m, bits: 1, seed, tensor: 3 };
                let r = quantize_tensor(&w, Grouping::whole(w.len()), key);
                sum += r.values[2..].iter().map(|&v| v as f64).sum::<f64>();
            }
            let mean = sum / (64.0 * 4094.0);
            assert!((mean - 0.3).abs() < 5.0 * 9e-4, "{m}: mean {mean}");
        }
    }

    fn finite_weights() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(prop_oneof![-1.0e3f32..1.0e3, -1.0f32..1.0, Just(0.0f32)], 1..300)
    }

    #[test]
    fn z_tables_are_sorted() {
        for b in 2..=16 {
            assert!(z_table(b).windows(2).all(|p| p[0] <= p[1]), "{b} bits");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn fast_brackets_equal_the_binary_search(w in finite_weights(), bits in 1u32..=16) {
            let g = Grouping::whole(w.len());
            let stats = group_stats(&w, g);
            let z = z_table(bits);
            let p = LevelParams::new(&stats[0], bits, z);
            if p.degenerate == 0 {
                for set in [LevelSet::Uniform, LevelSet::Histogram, LevelSet::Normal] {
                    for &x in &w {
                        let x = flush(x);
                        prop_assert_eq!(p.bracket(set, x, z), p.bracket_by_search(set, x, z), "{:?} w {}", set, x);
                    }
                }
            }
        }

        #[test]
        fn a_code_stands_for_the_level_of_that_code(w in finite_weights(), bits in 1u32..=16, m in 0usize..13, seed in any::<u32>()) {
            // quantize reads each level once (Memo): its values must be the levels
            // (all methods but subtractive dither, whose values are off the grid)
            let method = Method::ALL[m];
            prop_assume!(method != Method::UniformDitherSubtractive);
            let g = Grouping::whole(w.len());
            let stats = group_stats(&w, g);
            let p = tensor_params(&stats, bits)[0];
            let set = method.level_set();
            let table = if set.is_table() { level_table(set, &w, g, &stats, bits) } else { Vec::new() };
            let z = if set.is_table() { &table[..] } else { z_table(bits) };
            let r = quantize(&w, g, &[p], &table, VariantKey { method, bits, seed, tensor: 2 });
            for (&c, &v) in r.codes.iter().zip(&r.values) {
                prop_assert_eq!(p.value(method, c, z).to_bits(), v.to_bits(), "code {}", c);
            }
        }

        #[test]
        fn codes_are_in_range_with_at_most_k_distinct_finite_values(w in finite_weights(), bits in 1u32..=16, m in 0usize..13, seed in any::<u32>()) {
            let method = Method::ALL[m];
            let r = quantize_tensor(&w, Grouping::whole(w.len()), VariantKey { method, bits, seed, tensor: 1 });
            let k = 1u32 << bits;
            prop_assert!(r.codes.iter().all(|&c| c < k));
            prop_assert!(r.values.iter().all(|v| v.is_finite()));
            if method == Method::UniformDitherSubtractive {
                return Ok(()); // its values are level minus dither: off the grid by design
            }
            let mut distinct: Vec<u32> = r.values.iter().map(|v| v.to_bits()).collect();
            distinct.sort();
            distinct.dedup();
            prop_assert!(distinct.len() as u32 <= k);
            // the same code always stands for the same value
            for (c, v) in r.codes.iter().zip(&r.values) {
                let first = r.codes.iter().position(|x| x == c).unwrap();
                prop_assert_eq!(r.values[first].to_bits(), v.to_bits());
            }
        }

        #[test]
        fn nearest_error_is_at_most_half_the_local_step(w in finite_weights(), bits in 1u32..=16, m in 0usize..3) {
            // (the parametric sets; the table sets, lloyd and kde, have tests of their own)
            let method = [Method::UniformNearest, Method::HistogramNearest, Method::NormalNearest][m];
            let g = Grouping::whole(w.len());
            let stats = group_stats(&w, g);
            let p = tensor_params(&stats, bits)[0];
            let z = z_table(bits);
            let r = quantize(&w, g, &[p], &[], VariantKey { method, bits, seed: 0, tensor: 0 });
            if p.degenerate == 0 {
                for (&x, &c) in w.iter().zip(&r.codes) {
                    let x = flush(x);
                    let v = p.level(method.level_set(), c, z);
                    // the neighbour on the far side of x bounds the error by half the gap
                    let other = if v <= x { (c + 1).min(p.levels() - 1) } else { c.saturating_sub(1) };
                    let gap = (p.level(method.level_set(), other, z) - v).abs();
                    let edge = if method == Method::HistogramNearest { p.hstep / 2.0 } else { 0.0 };
                    let ulp = 4.0 * f32::EPSILON * x.abs().max(v.abs()).max(p.hi.abs()).max(p.lo.abs());
                    prop_assert!((x - v).abs() <= gap / 2.0 + edge + ulp, "x {x} v {v} gap {gap}");
                }
            }
        }

        #[test]
        fn quantizing_twice_changes_nothing_for_nearest(w in finite_weights(), bits in 1u32..=16) {
            // the values of a uniform-nearest pass are levels of the same range, so a
            // second pass over them (same lo and hi) returns them unchanged
            let key = VariantKey { method: Method::UniformNearest, bits, seed: 0, tensor: 0 };
            let once = quantize_tensor(&w, Grouping::whole(w.len()), key);
            let twice = quantize_tensor(&once.values, Grouping::whole(w.len()), key);
            prop_assert_eq!(once.values, twice.values);
        }

        #[test]
        fn lloyd_levels_are_sorted_and_fit_no_worse_than_the_uniform_set(w in finite_weights(), bits in 1u32..=8) {
            // Lloyd-Max starts from the uniform levels and each round lowers the
            // squared error (up to the final rounding of the levels to f32)
            let g = Grouping::whole(w.len());
            let stats = group_stats(&w, g);
            let table = level_table(LevelSet::Lloyd, &w, g, &stats, bits);
            prop_assert_eq!(table.len(), (1usize << bits).min(w.len()));
            prop_assert!(table.windows(2).all(|p| p[0] <= p[1]));
            let sq = |m: Method| {
                let r = quantize_tensor(&w, g, VariantKey { method: m, bits, seed: 0, tensor: 0 });
                w.iter().zip(&r.values).map(|(&x, &v)| (f64::from(flush(x)) - f64::from(v)).powi(2)).sum::<f64>()
            };
            let (lloyd, uniform) = (sq(Method::LloydNearest), sq(Method::UniformNearest));
            let scale: f64 = w.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().max(1e-30);
            prop_assert!(lloyd <= uniform + 1e-6 * scale, "lloyd {lloyd} uniform {uniform}");
        }
    }

    #[test]
    fn clipping_takes_the_ranges_ends_from_the_sorted_group() {
        // 101 values 0..=100 in shuffled order: the 99th percentile clips one value
        // at each end (r = floor(0.01 * 100) = 1)
        let w: Vec<f32> = (0..101).map(|i| ((i * 37) % 101) as f32).collect();
        let g = Grouping::whole(w.len());
        let stats = group_stats(&w, g);
        let c = clip_stats(&w, g, &stats, 99.0)[0];
        assert_eq!((c.lo, c.hi, c.mean, c.std), (1.0, 99.0, stats[0].mean, stats[0].std));
        // uniform at 1 bit over [1, 99]: 0 and 100 round to the end levels
        let p = LevelParams::new(&c, 1, z_table(1));
        assert_eq!(p.code_value(Method::UniformNearest, 0.0, 0.0, z_table(1)), (0, 1.0));
        assert_eq!(p.code_value(Method::UniformNearest, 100.0, 0.0, z_table(1)), (1, 99.0));
        assert_eq!(p.code_value(Method::UniformStochastic, 100.0, 0.999, z_table(1)), (1, 99.0));
        assert_eq!(clip_stats(&w, g, &stats, 99.999)[0], GroupStats { lo: 0.0, hi: 100.0, ..stats[0] }, "r = 0 keeps the range");
    }

    /// Squared error of `method` over [`GroupStats`] given per group.
    fn sq_err(w: &[f32], g: Grouping, stats: &[GroupStats], bits: u32, method: Method) -> f64 {
        let r = quantize(w, g, &tensor_params(stats, bits), &[], VariantKey { method, bits, seed: 0, tensor: 0 });
        w.iter().zip(&r.values).map(|(&x, &v)| (f64::from(flush(x)) - f64::from(v)).powi(2)).sum()
    }

    fn uniform_sq_err(w: &[f32], g: Grouping, stats: &[GroupStats], bits: u32) -> f64 {
        sq_err(w, g, stats, bits, Method::UniformNearest)
    }

    #[test]
    fn mse_clipping_cuts_an_outlier_at_low_bits_and_keeps_the_range_at_high_bits() {
        // 0..=99 and outliers at -300 and 300, per channel with a second, plain
        // channel. At 2 bits the whole range puts levels at -100 and 100 next to
        // the data (error ~ 338,000); clipping one value at each end to [0, 99]
        // costs the outliers 130,401 and leaves the rest ~ 9,000
        let mut w: Vec<f32> = (0..100).map(|i| i as f32).collect();
        w.extend([-300.0, 300.0]);
        w.extend((0..102).map(|i| (i as f32) * 0.5));
        let g = Grouping::per_channel(&[2, 102], 0);
        let stats = group_stats(&w, g);
        let two = mse_clip_stats(&w, g, &stats, 2, Method::UniformNearest);
        assert_eq!((two[0].lo, two[0].hi), (0.0, 99.0), "the outliers are clipped at 2 bits");
        assert_eq!((two[0].mean, two[0].std), (stats[0].mean, stats[0].std));
        assert!(uniform_sq_err(&w, g, &two, 2) < 0.5 * uniform_sq_err(&w, g, &stats, 2));
        // at 12 bits a step is 0.15: clipping would cost far more than it saves
        assert_eq!(mse_clip_stats(&w, g, &stats, 12, Method::UniformNearest)[0], stats[0]);
        // one far outlier costs more clipped than it saves the rest: kept even at 2 bits
        let mut far: Vec<f32> = (0..100).map(|i| i as f32).collect();
        far.push(1000.0);
        let fg = Grouping::whole(far.len());
        let fs = group_stats(&far, fg);
        assert_eq!(mse_clip_stats(&far, fg, &fs, 2, Method::UniformNearest), fs);
        // a group whose every weight is the same has nothing to choose
        let flat = vec![3.0f32; 10];
        let fg = Grouping::whole(10);
        let fs = group_stats(&flat, fg);
        for m in clipped_methods() {
            assert_eq!(mse_clip_stats(&flat, fg, &fs, 1, m), fs, "{m}");
        }
    }

    /// The methods --clip mse gives ranges of their own: all but the table sets'.
    fn clipped_methods() -> Vec<Method> {
        Method::ALL.into_iter().filter(|m| m.is_clippable()).collect()
    }

    /// Σ of [`LevelParams::expected_sq_err`] over one whole group.
    fn expected_err(w: &[f32], stats: &GroupStats, bits: u32, method: Method) -> f64 {
        let z = z_table(bits);
        let p = LevelParams::new(stats, bits, z);
        w.iter().map(|&x| p.expected_sq_err(method, flush(x), z)).sum()
    }

    /// A bell of 4,000 weights with three outliers.
    fn bell_with_outliers() -> Vec<f32> {
        let mut w: Vec<f32> = (0..4000).map(|i| inv_norm_cdf((i as f32 + 0.5) / 4000.0) * 0.05).collect();
        w.extend([0.6, -0.5, 0.45]);
        w
    }

    #[test]
    fn mse_clipping_chooses_each_level_sets_own_range() {
        // at 3 bits every set's range is narrowed, and each set's own choice
        // rounds that set's nearest rounding better than the range chosen for
        // uniform-nearest, strictly for the normal set (whose quantiles already
        // follow the bell) and for midrise
        let w = bell_with_outliers();
        let g = Grouping::whole(w.len());
        let stats = group_stats(&w, g);
        let uniform = mse_clip_stats(&w, g, &stats, 3, Method::UniformNearest);
        for m in [Method::UniformNearest, Method::HistogramNearest, Method::NormalNearest, Method::Midrise] {
            let own = mse_clip_stats(&w, g, &stats, 3, m);
            assert!(own[0].hi < stats[0].hi && own[0].lo > stats[0].lo, "{m}: {own:?}");
            let (e_own, e_uniform) = (sq_err(&w, g, &own, 3, m), sq_err(&w, g, &uniform, 3, m));
            assert!(e_own <= e_uniform, "{m}: {e_own} against {e_uniform}");
            if matches!(m, Method::NormalNearest | Method::Midrise) {
                assert!(e_own < e_uniform, "{m}: its own range rounds it better ({e_own} against {e_uniform})");
            }
        }
    }

    #[test]
    fn mse_clipping_gives_the_random_roundings_ranges_of_their_own() {
        // a stochastic rounding's expected error inside the range, (w - L(j))
        // (L(j+1) - w), is twice nearest's on average, and dither's is a
        // constant step^2/4 (step^2/12 subtracted): each trades range against
        // step otherwise than its level set's nearest rounding, so on the bell
        // at 3 bits its own range has a strictly smaller expected error than
        // the nearest rounding's range, which is not its optimum
        let w = bell_with_outliers();
        let g = Grouping::whole(w.len());
        let stats = group_stats(&w, g);
        for (m, nearest) in [
            (Method::UniformStochastic, Method::UniformNearest),
            (Method::HistogramStochastic, Method::HistogramNearest),
            (Method::NormalStochastic, Method::NormalNearest),
            (Method::UniformDither, Method::UniformNearest),
            (Method::UniformDitherSubtractive, Method::UniformNearest),
        ] {
            let own = mse_clip_stats(&w, g, &stats, 3, m)[0];
            let theirs = mse_clip_stats(&w, g, &stats, 3, nearest)[0];
            let (e_own, e_theirs) = (expected_err(&w, &own, 3, m), expected_err(&w, &theirs, 3, m));
            assert!(e_own < e_theirs, "{m}: {e_own} on its own range against {e_theirs} on {nearest}'s");
        }
    }

    #[test]
    fn the_expected_error_is_the_mean_error_over_the_random_draws() {
        // 3 bits on the range [-1, 1] (step 2/7): weights inside, on the end
        // levels, near both ends and outside, where dither moves a weight across
        // an end level; the mean of (q - w)^2 over 20,000 seeds of the
        // reference's own quantize, against expected_sq_err within 4 standard
        // errors. (Not a weight an ulp off an inner level: its rare far draws,
        // p ~ 1e-7, would not show in 20,000.)
        let w: Vec<f32> = vec![0.1, -0.33, 0.5, 0.97, -0.99, 1.0, -1.0, 1.2, -1.5, 0.0];
        let g = Grouping::whole(w.len());
        let stats = [GroupStats { lo: -1.0, hi: 1.0, mean: 0.05, std: 0.4 }];
        let params = tensor_params(&stats, 3);
        let seeds = 20_000u32;
        for m in clipped_methods() {
            let z = z_table(3);
            let mut sums = vec![(0.0f64, 0.0f64); w.len()];
            for seed in 0..seeds {
                let q = quantize(&w, g, &params, &[], VariantKey { method: m, bits: 3, seed, tensor: 2 });
                for ((s, &x), &v) in sums.iter_mut().zip(&w).zip(&q.values) {
                    let e = (f64::from(v) - f64::from(x)).powi(2);
                    s.0 += e;
                    s.1 += e * e;
                }
            }
            for (i, (&x, &(s, s2))) in w.iter().zip(&sums).enumerate() {
                let n = f64::from(seeds);
                let (mean, var) = (s / n, (s2 / n - (s / n).powi(2)).max(0.0));
                let want = params[0].expected_sq_err(m, x, z);
                let tol = 4.0 * (var / n).sqrt() + 1e-9;
                assert!((mean - want).abs() <= tol, "{m} w[{i}] = {x}: mean {mean} over the draws, expected {want} (tolerance {tol})");
            }
        }
    }

    /// --clip mse without the bound: every depth's error, the first least kept.
    fn exhaustive_mse_clip(w: &[f32], g: Grouping, stats: &[GroupStats], bits: u32, method: Method) -> Vec<GroupStats> {
        let n = g.group_len();
        let depths = mse_clip_depths(n);
        let z = z_table(bits);
        (0..g.groups)
            .map(|gi| {
                let values = group_values(w, g, gi);
                let sorted = sorted_group(w, g, gi);
                let range = |r: usize| GroupStats { lo: sorted[r], hi: sorted[n - 1 - r], ..stats[gi] };
                let err = |r: usize| {
                    let p = LevelParams::new(&range(r), bits, z);
                    let e: f64 = values.iter().map(|&x| p.expected_sq_err(method, x, z)).sum();
                    if e.is_nan() { f64::INFINITY } else { e }
                };
                let errs: Vec<f64> = depths.iter().map(|&r| err(r)).collect();
                let best = (0..depths.len()).fold(0, |b, i| if errs[i] < errs[b] { i } else { b });
                range(depths[best])
            })
            .collect()
    }

    /// Weights with a heavy tail: most small, a few large, at both ends.
    fn tailed_weights() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(prop_oneof![8 => -1.0f32..1.0, 1 => -50.0f32..50.0, 1 => Just(0.0f32)], 2..400)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn the_bounded_mse_search_chooses_what_the_exhaustive_one_does(w in tailed_weights(), bits in 1u32..=16, k in 0usize..9, channels in 1usize..=2) {
            // skipping depths whose lower bound exceeds the best error so far
            // never changes the choice, for any method or bit width
            let m = clipped_methods()[k];
            let len = w.len() - w.len() % channels;
            let g = if channels == 1 { Grouping::whole(len) } else { Grouping::per_channel(&[2, len / 2], 0) };
            let w = &w[..len];
            let stats = group_stats(w, g);
            prop_assert_eq!(mse_clip_stats(w, g, &stats, bits, m), exhaustive_mse_clip(w, g, &stats, bits, m), "{}", m);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn mse_clipping_never_rounds_worse_than_the_whole_range(w in finite_weights(), bits in 1u32..=8, k in 0usize..9) {
            let m = clipped_methods()[k];
            let g = Grouping::whole(w.len());
            let stats = group_stats(&w, g);
            let clipped = mse_clip_stats(&w, g, &stats, bits, m);
            prop_assert!(clipped[0].lo >= stats[0].lo && clipped[0].hi <= stats[0].hi && clipped[0].lo <= clipped[0].hi);
            prop_assert_eq!((clipped[0].mean, clipped[0].std), (stats[0].mean, stats[0].std));
            prop_assert!(expected_err(&w, &clipped[0], bits, m) <= expected_err(&w, &stats[0], bits, m), "{}", m);
            if !m.is_stochastic() {
                // for the deterministic roundings that is the error itself
                prop_assert!(sq_err(&w, g, &clipped, bits, m) <= sq_err(&w, g, &stats, bits, m), "{}", m);
            }
        }
    }

    #[test]
    fn triangular_dither_is_unbiased_and_subtractive_dither_leaves_a_uniform_error() {
        // 4 bits over [0, 15]: step 1. w = 7.3 never leaves the range once dithered
        // (|t| < 1), so TPDF dither makes the mean of q(w + d) equal w; the
        // error's variance is step²/12 + step²/6 = 1/4 without subtraction and
        // step²/12 with it. 64 seeds x 4094 elements: the bounds are > 5 SE.
        let mut w = vec![7.3f32; 4096];
        w[0] = 0.0;
        w[1] = 15.0;
        for (m, var_want) in [(Method::UniformDither, 0.25), (Method::UniformDitherSubtractive, 1.0 / 12.0)] {
            let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0.0f64);
            for seed in 0..64 {
                let r = quantize_tensor(&w, Grouping::whole(w.len()), VariantKey { method: m, bits: 4, seed, tensor: 3 });
                for &v in &r.values[2..] {
                    let e = f64::from(v) - 7.3f32 as f64;
                    sum += e;
                    sq += e * e;
                    n += 1.0;
                }
            }
            let (mean, var) = (sum / n, sq / n - (sum / n).powi(2));
            assert!(mean.abs() < 0.005, "{m}: mean error {mean}");
            assert!((var - var_want).abs() < 0.01, "{m}: error variance {var}, want {var_want}");
        }
        // the ends are levels, and the same seed gives the same draws
        let a = quantize_tensor(&w, Grouping::whole(w.len()), VariantKey { method: Method::UniformDither, bits: 4, seed: 5, tensor: 3 });
        let b = quantize_tensor(&w, Grouping::whole(w.len()), VariantKey { method: Method::UniformDither, bits: 4, seed: 5, tensor: 3 });
        assert_eq!(a, b);
        assert!(a.values.iter().all(|v| v.fract() == 0.0));
    }

    #[test]
    fn kde_levels_follow_the_datas_own_density() {
        // a large normal-ish sample: the KDE's quantiles sit near the normal set's
        // (its density is the data's smoothed by a narrow kernel); the ends are lo
        // and hi; the table is sorted
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        let w: Vec<f32> = (0..20_000).map(|_| (0..12).map(|_| next()).sum::<f32>() - 6.0).collect();
        let g = Grouping::whole(w.len());
        let stats = group_stats(&w, g);
        let kde = level_table(LevelSet::Kde, &w, g, &stats, 3);
        let p = LevelParams::new(&stats[0], 3, z_table(3));
        let normal: Vec<f32> = (0..8).map(|t| p.level(LevelSet::Normal, t, z_table(3))).collect();
        assert_eq!((kde[0], kde[7]), (stats[0].lo, stats[0].hi));
        assert!(kde.windows(2).all(|p| p[0] <= p[1]), "{kde:?}");
        for (k, n) in kde.iter().zip(&normal).skip(1).take(6) {
            assert!((k - n).abs() < 0.05 * stats[0].std, "kde {kde:?} normal {normal:?}");
        }
        // two far clusters: the normal prior puts its middle quantiles in the gap,
        // the KDE keeps them in the clusters
        let w: Vec<f32> = (0..1000).map(|i| if i % 2 == 0 { -5.0 + (i % 7) as f32 * 0.01 } else { 5.0 + (i % 5) as f32 * 0.01 }).collect();
        let g = Grouping::whole(w.len());
        let stats = group_stats(&w, g);
        let kde = level_table(LevelSet::Kde, &w, g, &stats, 2);
        assert!(kde.iter().all(|l| l.abs() > 4.0), "{kde:?}");
    }

    #[test]
    fn lloyd_by_hand() {
        // two clusters, 1 bit: the levels are the clusters' means
        let w = [0.0f32, 1.0, 2.0, 10.0, 11.0, 12.0];
        let r = q(&w, Method::LloydNearest, 1);
        assert_eq!(r.codes, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(r.values, vec![1.0, 1.0, 1.0, 11.0, 11.0, 11.0]);
        // at most K distinct values are kept exactly, the top one filling the table
        let g = Grouping::whole(3);
        let v = [3.0f32, -1.0, 3.0];
        assert_eq!(level_table(LevelSet::Lloyd, &v, g, &group_stats(&v, g), 2), vec![-1.0, 3.0, 3.0], "min(K, 3) entries");
        assert_eq!(level_table(LevelSet::Lloyd, &v, g, &group_stats(&v, g), 1), vec![-1.0, 3.0]);
        assert_eq!(q(&v, Method::LloydNearest, 2).values, v.to_vec());
        // 2 bits over 0, 1, 2, 3, 4, 100: k-means keeps the outlier alone
        let w = [0.0f32, 1.0, 2.0, 3.0, 4.0, 100.0];
        let g = Grouping::whole(6);
        let t = level_table(LevelSet::Lloyd, &w, g, &group_stats(&w, g), 1);
        assert_eq!(t, vec![2.0, 100.0]);
    }

    /// 8 strided channels of one bell at scales 0.02..0.16, channel 3 all zero.
    fn channel_bells() -> (Vec<f32>, Grouping) {
        let (rows, ch) = (500, 8);
        let w = (0..rows * ch)
            .map(|i| {
                let (r, c) = (i / ch, i % ch);
                let z = inv_norm_cdf(((r * 7919) % rows) as f32 / rows as f32 + 0.5 / rows as f32);
                if c == 3 { 0.0 } else { z * 0.02 * (c + 1) as f32 }
            })
            .collect();
        (w, Grouping::per_channel(&[rows, ch], 1))
    }

    #[test]
    fn rescale_restores_each_groups_gain_or_fits_it_by_least_squares() {
        let (w, g) = channel_bells();
        let stats = group_stats(&w, g);
        let members = |c: usize| (0..g.group_len()).map(move |k| g.index(c, k));
        let methods = [Method::UniformNearest, Method::UniformStochastic, Method::HistogramNearest, Method::NormalNearest, Method::Midrise];
        for method in methods {
            for bits in [1, 2, 3, 5] {
                let key = VariantKey { method, bits, seed: 3, tensor: 0 };
                let q0 = quantize(&w, g, &tensor_params(&stats, bits), &[], key).values;
                let scaled = |mode: Rescale| {
                    let mut v = q0.clone();
                    rescale(&w, g, &mut v, mode);
                    (rescale_factors(&w, g, &q0, mode), v)
                };
                let (gain_f, gain) = scaled(Rescale::Gain);
                let (lsq_f, lsq) = scaled(Rescale::Lsq);
                // Σ (w - s v)² over channel c, in f64
                let err = |v: &[f32], c: usize, s: f64| members(c).map(|i| (w[i] as f64 - s * v[i] as f64).powi(2)).sum::<f64>();
                for c in 0..g.groups {
                    // one factor per group: each value is the rounding's times it
                    for (f, v) in [(gain_f[c], &gain), (lsq_f[c], &lsq)] {
                        assert!(members(c).all(|i| v[i].to_bits() == (q0[i] * f).to_bits()), "{method} {bits} channel {c}");
                    }
                    if c == 3 {
                        assert_eq!((gain_f[c], lsq_f[c]), (1.0, 1.0), "an all-zero group keeps its levels");
                        continue;
                    }
                    let ww: f64 = members(c).map(|i| (w[i] as f64).powi(2)).sum();
                    let wq: f64 = members(c).map(|i| w[i] as f64 * gain[i] as f64).sum();
                    assert!((wq / ww - 1.0).abs() < 1e-5, "{method} {bits} channel {c}: gain {} after --rescale gain", wq / ww);
                    let e = err(&lsq, c, 1.0);
                    assert!(e <= err(&q0, c, 1.0) * (1.0 + 1e-6), "{method} {bits} channel {c}: lsq has more error than no rescaling");
                    assert!(e < err(&lsq, c, 0.99) && e < err(&lsq, c, 1.01), "{method} {bits} channel {c}: a nearby scale fits better");
                }
            }
        }
    }

    #[test]
    fn rescale_factor_is_one_unless_both_sums_are_positive_finite_normals() {
        assert_eq!(rescale_factor(3.0, 2.0), 1.5);
        for (a, b) in [(0.0, 1.0), (1.0, 0.0), (-1.0, 2.0), (2.0, -1.0), (f32::NAN, 1.0), (1.0, f32::INFINITY), (1e-39, 1.0), (1.0, 1e-39), (3e38, 1.5e-38)] {
            assert_eq!(rescale_factor(a, b), 1.0, "{a} / {b}");
        }
    }
}
