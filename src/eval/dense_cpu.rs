//! Dense nets on the CPU: a variant's whole forward pass and its test metric in
//! one pass over the evaluation rows, the CPU counterpart of
//! shaders/score_mlp.wgsl. burn's CPU backend runs a dense net as a matmul per
//! layer (packing both operands for a general kernel) plus separate passes for
//! the bias, the ReLU, argmax and the comparison with the labels; nets of this
//! size (widths 10-100) spend much of that time outside the multiply-adds.
//! Here a tile of rows goes through every layer while its activations stay in
//! a few KiB of cache, and only the metric's two sums leave it.
//!
//! Arithmetic, the same as the WGSL kernel's: each output is the sum over the
//! inputs i, in order of i, of h[i] * W[i][o] (a multiply, then an add: never
//! fused), then + bias; ReLU after every layer but the last. The metric per
//! row is the kernel's too (first largest logit, fewer than 5 logits above the
//! label's; or the error in the target's units).
//!
//! On x86-64 the layer loop has AVX-512 and AVX2 forms besides the plain one;
//! the widest the CPU runs is picked once, and all give the same bits (the
//! same operations in the same order).

use rayon::prelude::*;

use crate::models::Weights;

/// Outputs computed together: one 16-float block per accumulator row.
const BLOCK: usize = 16;
/// Evaluation rows per tile, each with its own accumulators.
const TILE: usize = 8;
/// Evaluation rows per parallel task.
const CHUNK: usize = 256;

/// One layer of one variant, laid out for the tile loop: W [inputs][outputs
/// padded to BLOCK] and the bias padded likewise.
struct Layer {
    inputs: usize,
    outputs: usize,
    padded: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The evaluation split, held on the host for [`DenseCpu::sums`].
pub struct DenseCpu {
    /// per layer: (weight, bias) tensor indices in a [`Weights`]
    layers: Vec<(usize, Option<usize>)>,
    /// per layer: the fp32 activations entering it, [rows][inputs]
    inputs: Vec<Vec<f32>>,
    /// per row: the class index, or the target in its own units
    truth: Vec<f32>,
    classifier: bool,
    /// (mean, std) turning a regressor's output into the target's units
    target_affine: (f32, f32),
    /// the layer loop's form for this CPU
    kernel: Form,
}

impl DenseCpu {
    /// `prefixes[l]`: the fp32 activations entering layer l, [rows][inputs of
    /// layer l], row-major; `truth`: per row, the class index or the target.
    pub fn new(layers: Vec<(usize, Option<usize>)>, prefixes: Vec<Vec<f32>>, truth: Vec<f32>, classifier: bool, target_affine: (f32, f32)) -> DenseCpu {
        DenseCpu { layers, inputs: prefixes, truth, classifier, target_affine, kernel: Form::pick() }
    }

    /// Per-variant sums over the rows (accuracy hits and top-5 hits, or
    /// squared and absolute errors); layers before `start[k]` are the fp32
    /// ones for variant k. Variants and chunks of rows run in parallel; the
    /// sums are added in a fixed order, so they do not depend on the threads.
    pub fn sums(&self, variants: &[&Weights], start: &[usize]) -> Vec<[f64; 2]> {
        let packed: Vec<Vec<Layer>> = variants.iter().zip(start).map(|(w, &s)| self.pack(w, s)).collect();
        let rows = self.truth.len();
        let chunks = rows.div_ceil(CHUNK);
        let parts: Vec<[f64; 2]> = (0..variants.len() * chunks)
            .into_par_iter()
            .map(|task| {
                let (k, c) = (task / chunks, task % chunks);
                self.chunk(&packed[k], start[k], c * CHUNK..((c + 1) * CHUNK).min(rows))
            })
            .collect();
        parts.chunks(chunks).map(|p| p.iter().fold([0.0; 2], |a, s| [a[0] + s[0], a[1] + s[1]])).collect()
    }

    fn pack(&self, weights: &Weights, start: usize) -> Vec<Layer> {
        self.layers[start..]
            .iter()
            .map(|&(w, b)| {
                let t = &weights.tensors[w];
                let (inputs, outputs) = (t.shape[0], t.len() / t.shape[0].max(1));
                let padded = outputs.div_ceil(BLOCK) * BLOCK;
                let mut wp = vec![0.0f32; inputs * padded];
                for (dst, src) in wp.chunks_mut(padded).zip(t.data.chunks(outputs.max(1))) {
                    dst[..outputs].copy_from_slice(src);
                }
                let mut bp = vec![0.0f32; padded];
                if let Some(b) = b {
                    bp[..outputs].copy_from_slice(&weights.tensors[b].data);
                }
                Layer { inputs, outputs, padded, w: wp, b: bp }
            })
            .collect()
    }

    /// The metric's sums over `rows` for one variant's layers (from `start`).
    /// A tile's activations are row-major, row r at r * stride.
    fn chunk(&self, layers: &[Layer], start: usize, rows: std::ops::Range<usize>) -> [f64; 2] {
        let stride = layers.iter().map(|l| l.inputs.max(l.padded)).max().unwrap_or(1);
        let x = &self.inputs[start];
        let n_in = layers[0].inputs;
        let mut h = vec![0.0f32; TILE * stride];
        let mut y = vec![0.0f32; TILE * stride];
        // what the layer loop's forms rely on (see Form::run), checked once here
        for l in layers {
            assert!(l.inputs <= stride && l.padded <= stride && l.padded.is_multiple_of(BLOCK));
            assert!(l.w.len() == l.inputs * l.padded && l.b.len() == l.padded);
        }
        let mut sums = [0.0f64; 2];
        for first in rows.clone().step_by(TILE) {
            // rows past the chunk's end repeat its last row; their scores are dropped
            for r in 0..TILE {
                let row = (first + r).min(rows.end - 1);
                h[r * stride..r * stride + n_in].copy_from_slice(&x[row * n_in..(row + 1) * n_in]);
            }
            for (l, layer) in layers.iter().enumerate() {
                // SAFETY: the bounds are asserted above, and `kernel` came from
                // Form::pick
                unsafe { self.kernel.run(layer, &h, &mut y, stride, l + 1 < layers.len()) };
                std::mem::swap(&mut h, &mut y);
            }
            let outputs = layers[layers.len() - 1].outputs;
            for r in 0..TILE.min(rows.end - first) {
                let s = self.score_row(&h[r * stride..r * stride + outputs], first + r);
                sums[0] += s[0];
                sums[1] += s[1];
            }
        }
        sums
    }

    /// One row's metric from the last layer's outputs (as the WGSL kernel).
    fn score_row(&self, out: &[f32], row: usize) -> [f64; 2] {
        if self.classifier {
            let label = self.truth[row] as usize;
            let mine = out[label];
            let (mut best, mut top, mut above) = (0, out[0], 0);
            for (o, &v) in out.iter().enumerate() {
                if v > top {
                    top = v;
                    best = o;
                }
                if v > mine {
                    above += 1;
                }
            }
            [f64::from(u8::from(best == label)), f64::from(u8::from(above < 5))]
        } else {
            let (mean, std) = self.target_affine;
            let err = out[0] * std + mean - self.truth[row];
            [f64::from(err * err), f64::from(err.abs())]
        }
    }
}

/// A form of the layer loop, `y = act(h W + b)` for the TILE rows of a tile,
/// both row-major with row r at r * stride; every form does the same
/// multiplies and adds in the same order, so they give the same bits.
#[derive(Clone, Copy, Debug)]
enum Form {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Plain,
}

impl Form {
    /// The widest form this CPU runs.
    fn pick() -> Form {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Form::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Form::Avx2;
            }
        }
        Form::Plain
    }

    /// # Safety
    /// `layer.inputs` and `layer.padded` are at most `stride`, `layer.padded`
    /// is a multiple of BLOCK with W and b of that width, `h` and `y` hold
    /// TILE * stride floats, and the form came from [`Form::pick`] on this CPU.
    unsafe fn run(self, layer: &Layer, h: &[f32], y: &mut [f32], stride: usize, hidden: bool) {
        match self {
            // SAFETY: the caller's contract
            #[cfg(target_arch = "x86_64")]
            Form::Avx512 => unsafe { dense_avx512(layer, h, y, stride, hidden) },
            #[cfg(target_arch = "x86_64")]
            Form::Avx2 => unsafe { dense_avx2(layer, h, y, stride, hidden) },
            Form::Plain => dense_body(layer, h, y, stride, hidden),
        }
    }
}

/// [`dense_body`] with AVX-512 vectors: a row's 16 outputs in one register,
/// the TILE rows' accumulators in registers; ReLU as max(v, 0), which gives 0
/// for a NaN, -0 or negative v as `dense_body` does.
///
/// # Safety
/// As [`Form::run`]; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dense_avx512(layer: &Layer, h: &[f32], y: &mut [f32], stride: usize, hidden: bool) {
    use std::arch::x86_64::*;
    let (p, hp, yp, wp) = (layer.padded, h.as_ptr(), y.as_mut_ptr(), layer.w.as_ptr());
    for o in (0..p).step_by(BLOCK) {
        let mut acc = [_mm512_setzero_ps(); TILE];
        for i in 0..layer.inputs {
            // SAFETY (all loads and stores): i < inputs <= stride, o + 16 <= padded <= stride
            let w = unsafe { _mm512_loadu_ps(wp.add(i * p + o)) };
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_add_ps(*acc, _mm512_mul_ps(_mm512_set1_ps(unsafe { *hp.add(r * stride + i) }), w));
            }
        }
        let b = unsafe { _mm512_loadu_ps(layer.b.as_ptr().add(o)) };
        for (r, acc) in acc.iter().enumerate() {
            let mut v = _mm512_add_ps(*acc, b);
            if hidden {
                v = _mm512_max_ps(v, _mm512_setzero_ps());
            }
            unsafe { _mm512_storeu_ps(yp.add(r * stride + o), v) };
        }
    }
}

/// [`dense_body`] with AVX2 vectors: a row's 16 outputs in two registers, the
/// tile in two halves of 4 rows (16 accumulators would not fit the registers).
///
/// # Safety
/// As [`Form::run`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dense_avx2(layer: &Layer, h: &[f32], y: &mut [f32], stride: usize, hidden: bool) {
    use std::arch::x86_64::*;
    const HALF: usize = TILE / 2;
    let (p, hp, yp, wp) = (layer.padded, h.as_ptr(), y.as_mut_ptr(), layer.w.as_ptr());
    for o in (0..p).step_by(BLOCK) {
        // SAFETY (all loads and stores): as in dense_avx512
        let (b0, b1) = unsafe { (_mm256_loadu_ps(layer.b.as_ptr().add(o)), _mm256_loadu_ps(layer.b.as_ptr().add(o + 8))) };
        for half in 0..2 {
            let mut acc = [[_mm256_setzero_ps(); 2]; HALF];
            for i in 0..layer.inputs {
                let (w0, w1) = unsafe { (_mm256_loadu_ps(wp.add(i * p + o)), _mm256_loadu_ps(wp.add(i * p + o + 8))) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(unsafe { *hp.add((half * HALF + r) * stride + i) });
                    acc[0] = _mm256_add_ps(acc[0], _mm256_mul_ps(x, w0));
                    acc[1] = _mm256_add_ps(acc[1], _mm256_mul_ps(x, w1));
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let (mut v0, mut v1) = (_mm256_add_ps(acc[0], b0), _mm256_add_ps(acc[1], b1));
                if hidden {
                    v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
                    v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
                }
                let at = (half * HALF + r) * stride + o;
                unsafe {
                    _mm256_storeu_ps(yp.add(at), v0);
                    _mm256_storeu_ps(yp.add(at + 8), v1);
                }
            }
        }
    }
}

/// ReLU as the vector forms compute it (max(v, 0)): 0 unless v > 0, so a NaN
/// or -0 gives 0.
fn relu(v: f32) -> f32 {
    if v > 0.0 { v } else { 0.0 }
}

/// The layer loop: for each block of 16 outputs, TILE x 16 accumulators
/// summed over the inputs in order, then the bias, and ReLU (0 unless v > 0).
fn dense_body(layer: &Layer, h: &[f32], y: &mut [f32], stride: usize, hidden: bool) {
    let p = layer.padded;
    for o in (0..p).step_by(BLOCK) {
        let mut acc = [[0.0f32; BLOCK]; TILE];
        for (i, w) in layer.w.chunks_exact(p).enumerate() {
            let w = &w[o..o + BLOCK];
            for (r, acc) in acc.iter_mut().enumerate() {
                let a = h[r * stride + i];
                for k in 0..BLOCK {
                    acc[k] += a * w[k];
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for k in 0..BLOCK {
                let v = acc[k] + layer.b[o + k];
                y[r * stride + o + k] = if hidden { relu(v) } else { v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::values;
    use crate::models::{ParamRole, ParamTensor};

    fn tensor(name: &str, shape: Vec<usize>, role: ParamRole, data: Vec<f32>) -> ParamTensor {
        ParamTensor { name: name.into(), layer: name.split('.').take(2).collect::<Vec<_>>().join("."), shape, role, data }
    }

    /// A dense net of `widths` as Weights: per layer W [in][out] then its bias.
    fn net(widths: &[usize], seed: u32) -> (Weights, Vec<(usize, Option<usize>)>) {
        let mut tensors = Vec::new();
        let mut layers = Vec::new();
        for (l, w) in widths.windows(2).enumerate() {
            let (i, o) = (w[0], w[1]);
            layers.push((tensors.len(), Some(tensors.len() + 1)));
            tensors.push(tensor(&format!("layers.{l}.weight"), vec![i, o], ParamRole::Weight { channel_axis: 1 }, values(i * o, seed + 2 * l as u32)));
            tensors.push(tensor(&format!("layers.{l}.bias"), vec![o], ParamRole::Bias, values(o, seed + 2 * l as u32 + 1)));
        }
        (Weights { tensors }, layers)
    }

    /// The forward pass written out plainly: the same operations in the same
    /// order as the kernel (sum over i in order, then + bias, ReLU between).
    fn plain_forward(w: &Weights, layers: &[(usize, Option<usize>)], x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        for (l, &(wi, bi)) in layers.iter().enumerate() {
            let t = &w.tensors[wi];
            let (n_in, n_out) = (t.shape[0], t.shape[1]);
            let b = &w.tensors[bi.unwrap()].data;
            h = (0..n_out)
                .map(|o| {
                    let mut acc = 0.0f32;
                    for (i, &a) in h.iter().enumerate().take(n_in) {
                        acc += a * t.data[i * n_out + o];
                    }
                    let v = acc + b[o];
                    if l + 1 < layers.len() { relu(v) } else { v }
                })
                .collect();
        }
        h
    }

    #[test]
    fn every_vector_form_gives_the_same_bits() {
        let (w, layers) = net(&[13, 37], 5);
        let dense = DenseCpu::new(layers.clone(), vec![vec![]], vec![], true, (0.0, 1.0));
        let layer = &dense.pack(&w, 0)[0];
        assert_eq!(layer.padded, 48);
        let stride = 50;
        // rows of 13 inputs at r * stride; the rest of each row is never read
        let h = values(TILE * stride, 9);
        for hidden in [false, true] {
            let run = |f: &dyn Fn(&mut [f32])| {
                let mut y = vec![f32::NAN; TILE * stride];
                f(&mut y);
                y
            };
            let plain = run(&|y| dense_body(layer, &h, y, stride, hidden));
            let mut forms = vec![("dispatched", run(&|y| unsafe { dense.kernel.run(layer, &h, y, stride, hidden) }))];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    forms.push(("avx2", run(&|y| unsafe { dense_avx2(layer, &h, y, stride, hidden) })));
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    forms.push(("avx512", run(&|y| unsafe { dense_avx512(layer, &h, y, stride, hidden) })));
                }
            }
            for (name, y) in &forms {
                let same = y.iter().zip(&plain).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{name} differs from the plain loop (hidden {hidden})");
            }
            // and the plain loop is the layer, row by row
            for r in 0..TILE {
                let expect = plain_forward(&w, &layers, &h[r * stride..r * stride + 13]);
                for o in 0..37 {
                    let want = if hidden { relu(expect[o]) } else { expect[o] };
                    assert_eq!(plain[r * stride + o].to_bits(), want.to_bits(), "row {r} output {o}");
                }
            }
        }
    }

    #[test]
    fn sums_equal_the_plain_forward_pass_row_by_row() {
        // 300 rows: two chunks, the second ending in a partial tile
        let rows = 300;
        let (w, layers) = net(&[6, 20, 9, 3], 11);
        let x = values(rows * 6, 21);
        let classes: Vec<f32> = (0..rows).map(|r| (r % 3) as f32).collect();
        let targets = values(rows, 31);
        for classifier in [true, false] {
            let (w, layers) = if classifier { (w.clone(), layers.clone()) } else { net(&[6, 20, 9, 1], 11) };
            let truth = if classifier { classes.clone() } else { targets.clone() };
            let affine = (0.25, 2.0);
            let dense = DenseCpu::new(layers.clone(), vec![x.clone()], truth.clone(), classifier, affine);
            let got = dense.sums(&[&w], &[0])[0];
            let mut want = [0.0f64; 2];
            for r in 0..rows {
                let out = plain_forward(&w, &layers, &x[r * 6..(r + 1) * 6]);
                let s = dense.score_row(&out, r);
                want[0] += s[0];
                want[1] += s[1];
            }
            assert!(want[0] > 0.0, "the check needs hits or errors to count");
            for k in 0..2 {
                assert!((got[k] - want[k]).abs() <= 1e-9 * want[k].abs(), "classifier {classifier}: {got:?} against {want:?}");
            }
        }
    }

    #[test]
    fn a_variant_starts_from_the_shared_activations_of_its_first_changed_layer() {
        let rows = 40;
        let (w, layers) = net(&[5, 12, 4], 3);
        let x = values(rows * 5, 7);
        let hidden: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let h = plain_forward(&w, &layers[..1], &x[r * 5..(r + 1) * 5]);
                h.into_iter().map(|v| v.max(0.0))
            })
            .collect();
        let truth: Vec<f32> = (0..rows).map(|r| (r % 4) as f32).collect();
        let dense = DenseCpu::new(layers, vec![x, hidden], truth, true, (0.0, 1.0));
        // the same weights from layer 0 and from layer 1 give the same sums
        let s = dense.sums(&[&w, &w], &[0, 1]);
        assert_eq!(s[0], s[1]);
    }

    /// Layer `l`'s outputs before its ReLU, given fp32 inputs (the layers
    /// before it from `fp32`, layer l from `w`), summed in f64 over the rows
    /// where `keep(row, output)`.
    fn layer_output_sums(fp32: &Weights, w: &Weights, layers: &[(usize, Option<usize>)], x: &[f32], features: usize, l: usize, keep: &dyn Fn(usize, usize) -> bool) -> Vec<(f64, f64)> {
        let (wi, bi) = layers[l];
        let n_out = w.tensors[wi].shape[1];
        let single = Weights { tensors: vec![w.tensors[wi].clone(), w.tensors[bi.unwrap()].clone()] };
        let mut sums = vec![(0.0f64, 0.0f64); n_out];
        for (r, row) in x.chunks(features).enumerate() {
            let h = if l == 0 { row.to_vec() } else { plain_forward(fp32, &layers[..l], row).into_iter().map(relu).collect() };
            for (j, v) in plain_forward(&single, &[(0, Some(1))], &h).into_iter().enumerate() {
                if keep(r, j) {
                    sums[j].0 += v as f64;
                    sums[j].1 += 1.0;
                }
            }
        }
        sums
    }

    /// --bias-correct: the input means are those of a plain forward pass; with
    /// `mean` each quantized layer's mean output over the calibration rows
    /// (its inputs fp32) is the fp32 layer's again, and with `active` its mean
    /// over the rows where the fp32 output passes the ReLU, where rounding had
    /// moved them. The weights stay as rounded.
    #[test]
    fn bias_correction_restores_each_layers_mean_output() {
        use crate::data::{Table, Targets};
        use crate::quant::apply::{BiasMode, BnMode, Plan};
        use crate::quant::{BiasCorrect, Granularity, Method};
        use crate::sweep::grid::{Scope, Variant};
        let widths = [5, 12, 7, 1];
        let (fp32, layers) = net(&widths, 40);
        let rows = 300;
        // inputs in [0, 1] with means far from 0, as min-max scaling leaves them
        let x: Vec<f32> = values(rows * widths[0], 7).iter().map(|v| 0.5 + 0.5 * v).collect();
        let table = Table { x: x.clone(), sample_shape: vec![widths[0]], y: Targets::Values(vec![0.0; rows]) };
        let inputs = |l: usize| -> Vec<Vec<f32>> { x.chunks(widths[0]).map(|r| if l == 0 { r.to_vec() } else { plain_forward(&fp32, &layers[..l], r).into_iter().map(relu).collect() }).collect() };
        // fp32 pre-activation of layer l, output j, row r
        let z = |l: usize| -> Vec<Vec<f32>> { x.chunks(widths[0]).map(|r| plain_forward(&fp32, &layers[..=l], r)).collect() };
        let mut plain = Plan::new(fp32.clone(), BiasMode::Fp32, BnMode::Fold).unwrap();
        plain.prepare(&[Granularity::Layer], &[2], &[Method::UniformNearest]);
        for mode in [BiasCorrect::Mean, BiasCorrect::Active] {
            let means = crate::eval::dense_input_means(&fp32, &table, mode).unwrap();
            let mut corrected = Plan::new(fp32.clone(), BiasMode::Fp32, BnMode::Fold).unwrap();
            corrected.set_input_means(&means).unwrap();
            corrected.prepare(&[Granularity::Layer], &[2], &[Method::UniformNearest]);
            for l in 0..layers.len() {
                let (h, zl) = (inputs(l), z(l));
                let (n_in, n_out) = (widths[l], widths[l + 1]);
                let passes = |r: usize, j: usize| mode == BiasCorrect::Mean || l + 1 == layers.len() || zl[r][j] > 0.0;
                // the means against a plain count
                let got = &means[&format!("layers.{l}")];
                assert_eq!(got.len(), n_in * n_out);
                for (e, &got) in got.iter().enumerate() {
                    let (i, j) = (e / n_out, e % n_out);
                    let (s, c) = (0..rows).filter(|&r| passes(r, j)).fold((0.0f64, 0.0f64), |(s, c), r| (s + h[r][i] as f64, c + 1.0));
                    let want = if c > 0.0 { (s / c) as f32 } else { 0.0 };
                    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{mode:?} layer {l} weight {e}: {got} against {want}");
                }
                let v = Variant { method: Method::UniformNearest, bits: 2, granularity: Granularity::Layer, seed: None, scope: Scope::Layer(format!("layers.{l}")) };
                let (rounded, report) = plain.apply(&v);
                let (fixed, fixed_report) = corrected.apply(&v);
                assert_eq!(report.sq_err, fixed_report.sq_err, "the weights are the same");
                let want = layer_output_sums(&fp32, &fp32, &layers, &x, widths[0], l, &passes);
                let off = |w: &Weights| {
                    let s = layer_output_sums(&fp32, w, &layers, &x, widths[0], l, &passes);
                    s.iter().zip(&want).filter(|(a, _)| a.1 > 0.0).map(|(a, b)| (a.0 - b.0).abs() / a.1).fold(0.0, f64::max)
                };
                assert!(off(&fixed) < 1e-4, "{mode:?} layer {l}: mean output off by {} after the correction", off(&fixed));
                assert!(off(&rounded) > 1e-2, "{mode:?} layer {l}: rounding moved the mean output by only {}", off(&rounded));
            }
        }
        // the two differ where a ReLU follows
        let (m, a) = (crate::eval::dense_input_means(&fp32, &table, BiasCorrect::Mean).unwrap(), crate::eval::dense_input_means(&fp32, &table, BiasCorrect::Active).unwrap());
        assert_ne!(m["layers.0"], a["layers.0"]);
        assert_eq!(m["layers.2"], a["layers.2"], "the last layer has no ReLU after it");
        // the correction adds to f32 biases only
        let mut separate = Plan::new(fp32, BiasMode::Separate, BnMode::Fold).unwrap();
        let e = separate.set_input_means(&m).unwrap_err().to_string();
        assert!(e.contains("--bias fp32"), "{e}");
    }
}
