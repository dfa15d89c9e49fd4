//! The GPU path on a real adapter (lavapipe in CI): WGSL kernels against the CPU
//! reference, exactly; quantized weights written straight into burn tensors;
//! burn-wgpu evaluation against the CPU backend. One test binary and one shared
//! device, because every process pays burn's shader compilation on lavapipe.
//!
//! A missing adapter fails these tests; it never skips them. Install Mesa's
//! software Vulkan (Debian: apt-get install mesa-vulkan-drivers) to run them
//! without a GPU.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use sweep_gpu::gpu::GpuContext;
use sweep_gpu::quant::gpu::{GivenRanges, GpuQuantizer, GpuVariant};
use sweep_gpu::quant::reference::{self, GroupStats, VariantKey};
use sweep_gpu::quant::{Clip, Granularity, Grouping, LevelSet, Method, Rescale};

/// A test's range of (method, bits row), as the reference computes it.
type RangeOf = Box<dyn Fn(Method, usize) -> Vec<GroupStats>>;

/// The shared quantizer; the Mutex serialises tests on the one device.
fn quantizer() -> &'static Mutex<GpuQuantizer> {
    static Q: OnceLock<Mutex<GpuQuantizer>> = OnceLock::new();
    Q.get_or_init(|| {
        let ctx: Arc<GpuContext> = GpuContext::shared(None).unwrap_or_else(|e| {
            panic!("GPU tests need a wgpu adapter ({e}); without a GPU install Mesa's lavapipe: apt-get install mesa-vulkan-drivers")
        });
        eprintln!("GPU tests on {}", ctx.summary);
        Mutex::new(GpuQuantizer::new(ctx).expect("quantizer"))
    })
}

/// Deterministic weights with a roughly normal spread (sum of uniforms).
fn normalish(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| ((0..4).map(|_| next()).sum::<f32>() - 2.0) * scale).collect()
}

fn all_variants(bits: &[u32], seeds: &[u32]) -> Vec<GpuVariant> {
    let mut v = Vec::new();
    for m in Method::ALL {
        for &b in bits {
            if m.is_stochastic() {
                v.extend(seeds.iter().map(|&seed| GpuVariant { method: m, bits: b, seed }));
            } else {
                v.push(GpuVariant { method: m, bits: b, seed: 0 });
            }
        }
    }
    v
}

/// The level tables of a tensor at each of `bits`, by the reference, for
/// both table level sets.
fn level_tables(data: &[f32], grouping: Grouping, bits: &[u32]) -> Vec<(LevelSet, Vec<Vec<f32>>)> {
    let stats = reference::group_stats(data, grouping);
    LevelSet::TABLES.into_iter().map(|set| (set, reference::level_tables(set, data, grouping, &stats, bits))).collect()
}

/// A tensor on the GPU with its level tables; the reference's table of a
/// method at a bit width (empty for the parametric level sets) from them.
fn upload(q: &GpuQuantizer, data: &[f32], grouping: Grouping, tensor: u32, bits: &[u32]) -> (sweep_gpu::quant::gpu::GpuTensor, impl Fn(Method, u32) -> Vec<f32>) {
    let tables = level_tables(data, grouping, bits);
    let refs: Vec<(LevelSet, Vec<&[f32]>)> = tables.iter().map(|(set, rows)| (*set, rows.iter().map(Vec::as_slice).collect())).collect();
    let t = q.upload_with(data, grouping, tensor, bits, &refs, None).unwrap();
    let bits = bits.to_vec();
    let table_of = move |m: Method, b: u32| {
        let row = bits.iter().position(|&x| x == b).unwrap();
        tables.iter().find(|(set, _)| *set == m.level_set()).map_or_else(Vec::new, |(_, rows)| rows[row].clone())
    };
    (t, table_of)
}

/// Every method, every bit width: GPU codes and values equal the reference's.
fn check_parity(name: &str, data: &[f32], shape: &[usize], channel_axis: usize, seeds: &[u32]) {
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let bits: Vec<u32> = (1..=16).collect();
    for g in [Granularity::Layer, Granularity::Channel] {
        let grouping = Grouping::for_granularity(shape, channel_axis, g);
        let (t, table_of) = upload(&q, data, grouping, 3, &bits);
        let stats = reference::group_stats(data, grouping);
        let gpu_stats = q.stats(&t).unwrap();
        assert_eq!(gpu_stats, stats, "{name} {g:?}: group statistics");
        let gpu_params = q.params(&t).unwrap();
        for (row, &b) in bits.iter().enumerate() {
            let want = reference::tensor_params(&stats, b);
            assert_eq!(&gpu_params[row * grouping.groups..(row + 1) * grouping.groups], &want[..], "{name} {g:?} {b} bits: level parameters");
        }
        let variants = all_variants(&bits, seeds);
        let got = q.quantize_to_host(&t, &variants).unwrap();
        // the single dispatch of the unspecialised pipeline gives the same
        let one = q.quantize_to_host_with(&t, &variants, true).unwrap();
        for ((v, a), b) in variants.iter().zip(&got).zip(&one) {
            assert!(a.codes == b.codes && a.values.iter().zip(&b.values).all(|(x, y)| x.to_bits() == y.to_bits()), "{name} {g:?} {v:?}: one dispatch differs");
        }
        let params: Vec<Vec<_>> = bits.iter().map(|&b| reference::tensor_params(&stats, b)).collect();
        for (v, gq) in variants.iter().zip(&got) {
            let key = VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 3 };
            let want = reference::quantize(data, grouping, &params[v.bits as usize - 1], &table_of(v.method, v.bits), key);
            if gq.codes != want.codes {
                let i = gq.codes.iter().zip(&want.codes).position(|(a, b)| a != b).unwrap();
                panic!("{name} {g:?} {v:?}: element {i} (w = {}) has GPU code {} and reference code {}", data[i], gq.codes[i], want.codes[i]);
            }
            let same_bits = gq.values.iter().zip(&want.values).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same_bits, "{name} {g:?} {v:?}: values differ");
        }
    }
}

#[test]
fn z_table_matches_the_reference_bit_for_bit() {
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let gpu = q.z_table().unwrap();
    let mut want = Vec::new();
    for b in 2..=16 {
        want.extend_from_slice(reference::z_table(b));
    }
    assert_eq!(gpu.len(), want.len());
    let diff = gpu.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(diff, None, "first differing entry");
}

#[test]
fn parity_on_one_element() {
    check_parity("one element", &[0.37], &[1, 1], 1, &[1]);
}

#[test]
fn parity_around_the_workgroup_size() {
    for n in [255usize, 256, 257] {
        check_parity(&format!("{n} elements"), &normalish(n, n as u64, 0.1), &[n, 1], 0, &[1, 2]);
    }
}

#[test]
fn parity_on_a_constant_tensor() {
    check_parity("constant", &[0.3; 300], &[30, 10], 1, &[5]);
}

#[test]
fn parity_with_an_outlier() {
    let mut w = normalish(1000, 9, 0.05);
    w[517] = 40.0;
    check_parity("outlier", &w, &[100, 10], 1, &[3]);
}

/// Ranges where lo / delta is a whole number, which the floor of a product by
/// the reciprocal can miss by one: symmetric groups (lo = -hi, as the whole
/// tensor is here) and groups whose max is 0. The ends are chosen so that
/// a * recip(a) rounds above 1, as it does for about one value in ten: there
/// an unchecked floor(lo * (1/delta)) is a bin too low.
#[test]
fn parity_on_symmetric_and_max_zero_ranges() {
    use sweep_gpu::quant::exact;
    let shape = [16usize, 64];
    let mut w = normalish(16 * 64, 31, 0.05);
    let mut ends = (1..).map(|i| 0.2 + 0.0001 * i as f32).filter(|&a| a * exact::recip(a) > 1.0);
    let top = ends.next().unwrap();
    let grouping = Grouping::for_granularity(&shape, 0, Granularity::Channel);
    for g in 0..grouping.groups {
        let at: Vec<usize> = (0..grouping.group_len()).map(|k| grouping.index(g, k)).collect();
        if g % 2 == 0 {
            (w[at[0]], w[at[1]]) = (-top, top);
        } else {
            // below top, so the tensor stays symmetric
            let lo = -ends.next().unwrap() / 2.0;
            let max = at.iter().map(|&i| w[i]).fold(f32::MIN, f32::max);
            for &i in &at {
                w[i] = (w[i] - max).max(lo);
            }
            w[at[0]] = lo;
        }
    }
    check_parity("symmetric and max-0 groups", &w, &shape, 0, &[1]);
}

/// With clipped ranges given by the host (--clip P: one range per group; --clip
/// mse: one per group, bit width and method), the GPU's level parameters and
/// codes are the reference's, each method rounding within its own range and
/// outliers landing on the end levels.
#[test]
fn parity_with_clipped_ranges() {
    let mut w = normalish(2000, 17, 0.05);
    w[3] = 9.0;
    w[1500] = -7.0;
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let bits: Vec<u32> = vec![2, 4, 8];
    // every method with ranges of its own, listed in another order than
    // Method::ALL's, so a block found by position is checked
    let methods: Vec<Method> = Method::ALL.into_iter().rev().filter(|m| m.is_clippable()).collect();
    for (shape, axis, g) in [([200usize, 10usize], 1usize, Granularity::Layer), ([200, 10], 1, Granularity::Channel)] {
        let grouping = Grouping::for_granularity(&shape, axis, g);
        let whole = reference::group_stats(&w, grouping);
        for clip in [Clip::Percentile(99.0), Clip::Mse] {
            // the range of (method, bits row)
            let (given, range): (GivenRanges, RangeOf) = match clip {
                Clip::Percentile(p) => {
                    let r = reference::clip_stats(&w, grouping, &whole, p);
                    (GivenRanges::PerGroup(r.clone()), Box::new(move |_, _| r.clone()))
                }
                Clip::Mse => {
                    let per_method: Vec<Vec<Vec<GroupStats>>> = reference::mse_clip_ranges(&w, grouping, &whole, &bits, &methods);
                    let flat = per_method.iter().flatten().flatten().copied().collect();
                    let methods = methods.clone();
                    (GivenRanges::PerMethod(methods.clone(), flat), Box::new(move |m, row| per_method[methods.iter().position(|&x| x == m).unwrap()][row].clone()))
                }
            };
            let t = q.upload_with(&w, grouping, 1, &bits, &[], Some(&given)).unwrap();
            assert_eq!(q.stats(&t).unwrap(), range(methods[0], 0));
            let outlier_group = grouping.group_of(3);
            // over the whole layer the 2-bit levels would miss the 1,998 small weights;
            // in a channel of 200, clipping the one outlier costs more than it saves
            if g == Granularity::Layer || matches!(clip, Clip::Percentile(_)) {
                assert!(range(Method::UniformNearest, 0)[outlier_group].hi < 9.0, "{clip} {g:?}: the outlier is clipped at 2 bits");
            }
            let variants: Vec<GpuVariant> = all_variants(&bits, &[1, 2]).into_iter().filter(|v| v.method.is_clippable()).collect();
            let got = q.quantize_to_host(&t, &variants).unwrap();
            for (v, gq) in variants.iter().zip(&got) {
                let row = bits.iter().position(|&b| b == v.bits).unwrap();
                let r = range(v.method, row);
                let params = reference::tensor_params(&r, v.bits);
                let want = reference::quantize(&w, grouping, &params, &[], VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 1 });
                assert_eq!(gq.codes, want.codes, "{clip} {g:?} {v:?}");
                assert!(gq.values.iter().zip(&want.values).all(|(a, b)| a.to_bits() == b.to_bits()), "{clip} {g:?} {v:?}");
                // the outlier sits on the top level, inside the clipped range
                if v.method == Method::UniformNearest {
                    assert_eq!(gq.values[3], r[outlier_group].hi, "{clip} {g:?} {v:?}");
                }
            }
            // under mse the level sets' ranges differ somewhere, and so do a
            // stochastic rounding's and its set's nearest rounding's: a wrong
            // block, or one per level set, would show
            if clip == Clip::Mse && g == Granularity::Layer {
                assert!(methods.iter().any(|&m| range(m, 0) != range(Method::UniformNearest, 0)), "{g:?}: every method chose uniform-nearest's ranges");
                let nearest = |m: Method| methods.iter().copied().find(|n| n.level_set() == m.level_set() && !n.is_stochastic()).unwrap();
                let own: Vec<Method> = methods.iter().copied().filter(|&m| m.is_stochastic() && (0..bits.len()).any(|row| range(m, row) != range(nearest(m), row))).collect();
                assert!(!own.is_empty(), "{g:?}: every random rounding chose its level set's nearest rounding's ranges");
            }
        }
    }
    // a method given no range of its own is refused, even beside its level set's nearest rounding
    let grouping = Grouping::whole(w.len());
    let whole = reference::group_stats(&w, grouping);
    let only_nearest = GivenRanges::PerMethod(vec![Method::UniformNearest], reference::mse_clip_ranges(&w, grouping, &whole, &bits, &[Method::UniformNearest]).concat().concat());
    let t = q.upload_with(&w, grouping, 1, &bits, &[], Some(&only_nearest)).unwrap();
    let err = q.quantize_to_host(&t, &[GpuVariant { method: Method::UniformStochastic, bits: 2, seed: 0 }]).expect_err("refused").to_string();
    assert!(err.contains("uniform-stochastic") && err.contains("without ranges"), "{err}");
}

#[test]
fn parity_on_a_conv_shaped_weight() {
    // [out 64, in 32, 3, 3], Kaiming-like spread: per channel groups are contiguous
    let w = normalish(64 * 32 * 9, 4, (2.0f32 / (32.0 * 9.0)).sqrt());
    check_parity("conv [64,32,3,3]", &w, &[64, 32, 3, 3], 0, &[11]);
}

#[test]
fn parity_with_thousands_of_variants_in_one_dispatch() {
    let w = normalish(777, 21, 0.2);
    let seeds: Vec<u32> = (100..140).collect(); // 13 methods x 16 bits: 16 x (6 + 7 x 40) = 4576 variants
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let bits: Vec<u32> = (1..=16).collect();
    let grouping = Grouping::whole(w.len());
    let (t, table_of) = upload(&q, &w, grouping, 0, &bits);
    let mut variants = all_variants(&bits, &seeds);
    assert_eq!(variants.len(), 4576);
    // methods interleaved, so that output slots do not follow the method order
    variants.sort_by_key(|v| (v.seed, v.bits));
    let got = q.quantize_to_host_with(&t, &variants, true).unwrap();
    let specialised = q.quantize_to_host(&t, &variants).unwrap();
    assert!(got.iter().zip(&specialised).all(|(a, b)| a.codes == b.codes), "per-method dispatches differ from the single dispatch");
    let stats = reference::group_stats(&w, grouping);
    for (v, gq) in variants.iter().zip(&got) {
        let params = reference::tensor_params(&stats, v.bits);
        let want = reference::quantize(&w, grouping, &params, &table_of(v.method, v.bits), VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 0 });
        assert_eq!(gq.codes, want.codes, "{v:?}");
    }
}

#[test]
fn weight_error_and_gain_sums_match_the_reference_bit_for_bit() {
    let mut w = normalish(3000, 5, 0.1);
    w[7] = 1e-40; // a subnormal weight, summed as the quantizer reads it: 0
    w[8] = -3e-39;
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let grouping = Grouping::whole(w.len());
    let t = q.upload(&w, grouping, 0, &[3, 7]).unwrap();
    let variants = [GpuVariant { method: Method::UniformStochastic, bits: 3, seed: 4 }, GpuVariant { method: Method::Midrise, bits: 7, seed: 0 }];
    let n = w.len();
    let values = q.quantize_to_host(&t, &variants).unwrap();
    // quantize again into one buffer to feed the error kernel
    let flat: Vec<f32> = values.iter().flat_map(|v| v.values.iter().copied()).collect();
    let buf = burn::tensor::wgpu::wgpu::util::DeviceExt::create_buffer_init(
        &q.ctx.device,
        &burn::tensor::wgpu::wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&flat),
            usage: burn::tensor::wgpu::wgpu::BufferUsages::STORAGE,
        },
    );
    let region = sweep_gpu::gpu::bridge::Region { buffer: &buf, offset: 0, size: (flat.len() * 4) as u64 };
    let gpu = q.weight_sums(&t, &region, 2).unwrap();
    for (i, v) in values.iter().enumerate() {
        let want = reference::tree_sum(n, |k| {
            let d = reference::flush(w[k]) - v.values[k];
            d * d
        });
        assert_eq!(gpu[i].0.to_bits(), want.to_bits(), "variant {i}: Σ (w - q)²");
        // the weight gain's numerator, Σ w q, in the same order
        let cross = reference::tree_sum(n, |k| reference::flush(w[k]) * v.values[k]);
        assert_eq!(gpu[i].1.to_bits(), cross.to_bits(), "variant {i}: Σ w q");
    }
}

/// --rescale on the device: the same codes, and values equal bit for bit to
/// the reference's rounding times its per-group factor, for every method
/// (table sets included), whole tensors and strided or contiguous channels
/// (groups of one and of several reduction blocks), and an all-zero channel.
#[test]
fn rescale_matches_the_reference_bit_for_bit() {
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let shape = [40usize, 300];
    let mut data = normalish(40 * 300, 11, 0.05);
    data[17] = 0.9; // an outlier
    data[23] = 2e-39; // a subnormal, read as 0
    for r in 0..40 {
        data[r * 300 + 5] = 0.0; // column 5: an all-zero channel of axis 1
    }
    let bits = [1u32, 2, 3, 8];
    let variants = all_variants(&bits, &[1, 2]);
    for (axis, g) in [(1, Granularity::Channel), (0, Granularity::Channel), (0, Granularity::Layer)] {
        let grouping = Grouping::for_granularity(&shape, axis, g);
        let (t, table_of) = upload(&q, &data, grouping, 2, &bits);
        let stats = reference::group_stats(&data, grouping);
        for mode in [Rescale::Gain, Rescale::Lsq] {
            let got = q.quantize_to_host_rescaled(&t, &variants, mode).unwrap();
            let mut changed = 0;
            for (v, gq) in variants.iter().zip(&got) {
                let key = VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 2 };
                let mut want = reference::quantize(&data, grouping, &reference::tensor_params(&stats, v.bits), &table_of(v.method, v.bits), key);
                let rounded = want.values.clone();
                reference::rescale(&data, grouping, &mut want.values, mode);
                assert_eq!(gq.codes, want.codes, "axis {axis} {g:?} {mode:?} {v:?}: codes");
                if let Some(i) = gq.values.iter().zip(&want.values).position(|(a, b)| a.to_bits() != b.to_bits()) {
                    panic!("axis {axis} {g:?} {mode:?} {v:?}: element {i} is {} on the GPU and {} by the reference (rounded to {})", gq.values[i], want.values[i], rounded[i]);
                }
                changed += usize::from(want.values != rounded);
            }
            // the rescaling did something: all but a rounding that does not
            // correlate with the weights (one level for a skewed group) change
            assert!(changed * 10 >= variants.len() * 9, "axis {axis} {g:?} {mode:?}: only {changed} of {} variants rescaled", variants.len());
        }
    }
}

/// --bias-correct's shifts on the device: per variant and output channel,
/// Σ (w - q)·mean, equal bit for bit to reference::shift_sum, for every
/// method, after --rescale or not, on strided channels longer than one
/// reduction block (a Linear weight [in, out]) and contiguous ones (a conv
/// weight [out, in·kh·kw]), with negative means and a subnormal weight.
#[test]
fn bias_correction_shifts_match_the_reference_bit_for_bit() {
    use burn::tensor::Tensor;
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let bits = [1u32, 2, 4, 8];
    let variants = all_variants(&bits, &[3]);
    for (shape, axis) in [([300usize, 40usize], 1usize), ([40, 300], 0)] {
        let mut data = normalish(12_000, 21, 0.1);
        data[31] = 3e-39; // a subnormal, read as 0
        let channels = Grouping::per_channel(&shape, axis);
        let means: Vec<f32> = (0..data.len()).map(|i| ((i as f32) * 0.37).sin() * 0.8 + 0.1).collect();
        for (g, mode) in [(Granularity::Layer, Rescale::None), (Granularity::Channel, Rescale::Gain)] {
            let grouping = Grouping::for_granularity(&shape, axis, g);
            let (t, _) = upload(&q, &data, grouping, 4, &bits);
            let n = data.len();
            let out = Tensor::<3>::empty([variants.len(), 1, n], &q.ctx.burn);
            let buffer = q.upload_means(&means);
            let shifts = sweep_gpu::gpu::bridge::with_region(&out, |region| {
                q.quantize(&t, &variants, &region, None)?;
                q.rescale(&t, &region, variants.len(), mode)?;
                q.shifts(&t, channels, &region, variants.len(), &buffer)
            })
            .unwrap()
            .unwrap();
            let values = out.try_to_vec_as::<f32>().unwrap();
            assert_eq!(shifts.len(), variants.len() * channels.groups);
            let mut nonzero = 0;
            for (i, v) in variants.iter().enumerate() {
                let qv = &values[i * n..(i + 1) * n];
                for c in 0..channels.groups {
                    let want = reference::shift_sum(&data, channels, qv, c, &means);
                    let got = shifts[i * channels.groups + c];
                    assert_eq!(got.to_bits(), want.to_bits(), "{shape:?} axis {axis} {mode:?} {v:?} channel {c}: {got} on the GPU, {want} by the reference");
                    nonzero += usize::from(want != 0.0);
                }
            }
            assert!(nonzero * 2 > shifts.len(), "{shape:?} {mode:?}: only {nonzero} of {} shifts are not 0", shifts.len());
        }
    }
}

/// The exact-arithmetic primitives of common.wgsl against quant::exact, input by input.
#[test]
fn exact_primitives_match_the_reference() {
    use burn::tensor::wgpu::wgpu;
    use sweep_gpu::quant::exact;
    use wgpu::util::DeviceExt;
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let device = &q.ctx.device;
    let kernel = r#"
@group(0) @binding(0) var<storage, read_write> xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= arrayLength(&xs) { return; }
    let x = xs[i];
    out[i * 6u + 0u] = madd(x, kc(K_C2), kc(K_HALF));
    out[i * 6u + 1u] = recip(x);
    out[i * 6u + 2u] = div(1.0, x);
    out[i * 6u + 3u] = sqrt_exact(x);
    out[i * 6u + 4u] = ln_exact(x);
    out[i * 6u + 5u] = inv_norm_cdf(fract(x));
    // a bin edge of a symmetric 11-bit midrise group, exactly and an ULP either side
    let d = (x + x) * bitcast<f32>((127u - 11u) << 23u);
    out[arrayLength(&xs) * 6u + i * 3u + 0u] = floor_div(-x, d, recip(d));
    out[arrayLength(&xs) * 6u + i * 3u + 1u] = floor_div(bitcast<f32>(bitcast<u32>(-x) + 1u), d, recip(d));
    out[arrayLength(&xs) * 6u + i * 3u + 2u] = floor_div(bitcast<f32>(bitcast<u32>(x) - 1u), d, recip(d));
}
"#;
    let source = sweep_gpu::gpu::kernels::with_prelude(&format!("{}{}", include_str!("../shaders/common.wgsl"), kernel));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(source.into()) });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let xs: Vec<f32> = (1..200).map(|i| 0.0137 * (i as f32).powf(1.7)).chain([3.0, 0.333_333_34, 1e-5, 7.5e4]).collect();
    let input = device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: bytemuck::cast_slice(&xs), usage: wgpu::BufferUsages::STORAGE });
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (xs.len() * 36) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: input.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() }],
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.set_bind_group(1, &q.constants_bind_group(&pipeline), &[]);
        pass.dispatch_workgroups((xs.len() as u32).div_ceil(64), 1, 1);
    }
    q.ctx.queue.submit([enc.finish()]);
    let got: Vec<f32> = q.read(&out, xs.len() * 36).unwrap();
    let names = ["madd", "recip", "div", "sqrt", "ln", "inv_norm_cdf"];
    let mut bad = Vec::new();
    for (i, &x) in xs.iter().enumerate() {
        let want = [exact::madd(x, exact::kc(exact::k::C.start + 1), 0.5), exact::recip(x), exact::div(1.0, x), exact::sqrt(x), exact::ln(x), exact::inv_norm_cdf(x - x.floor())];
        for k in 0..6 {
            if got[i * 6 + k].to_bits() != want[k].to_bits() {
                bad.push(format!("{}({x}) = {} on the GPU, {} in Rust", names[k], got[i * 6 + k], want[k]));
            }
        }
    }
    let n = xs.len() * 6;
    for (i, &x) in xs.iter().enumerate() {
        let d = (x + x) * f32::from_bits((127 - 11) << 23);
        let edges = [-x, f32::from_bits((-x).to_bits() + 1), f32::from_bits(x.to_bits() - 1)];
        for (k, e) in edges.into_iter().enumerate() {
            let want = exact::floor_div(e, d, exact::recip(d));
            if got[n + i * 3 + k].to_bits() != want.to_bits() {
                bad.push(format!("floor_div({e}, {d}) = {} on the GPU, {want} in Rust", got[n + i * 3 + k]));
            }
        }
        // -x / d = -1024, just below it -1025, and x - ulp inside bin 1023
        assert_eq!(edges.map(|e| exact::floor_div(e, d, exact::recip(d))), [-1024.0, -1025.0, 1023.0], "x = {x}");
    }
    assert!(bad.is_empty(), "{} mismatches, first: {:?}", bad.len(), &bad[..bad.len().min(8)]);
}



/// Quantized weights land in a burn tensor's own buffer (no host round trip)
/// and burn computes with them: the WGSL path of the sweep.
#[test]
fn quantized_weights_are_written_straight_into_burn_tensors() {
    use burn::tensor::{Tensor, TensorData};
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let (rows, cols) = (37usize, 5usize);
    let w = normalish(rows * cols, 8, 0.3);
    let grouping = Grouping::per_channel(&[rows, cols], 1);
    let t = q.upload(&w, grouping, 2, &[3, 8]).unwrap();
    let variants = [GpuVariant { method: Method::NormalStochastic, bits: 3, seed: 9 }, GpuVariant { method: Method::UniformNearest, bits: 8, seed: 0 }];
    let out = Tensor::<3>::empty([2, rows, cols], &q.ctx.burn);
    sweep_gpu::gpu::bridge::with_region(&out, |region| q.quantize(&t, &variants, &region, None)).unwrap().unwrap();
    let got = out.clone().try_to_vec_as::<f32>().unwrap();
    let stats = reference::group_stats(&w, grouping);
    for (i, v) in variants.iter().enumerate() {
        let params = reference::tensor_params(&stats, v.bits);
        let want = reference::quantize(&w, grouping, &params, &[], VariantKey { method: v.method, bits: v.bits, seed: v.seed, tensor: 2 });
        assert_eq!(&got[i * rows * cols..(i + 1) * rows * cols], &want.values[..], "{v:?}");
    }
    // burn reads the same buffer: x [1, 1, rows] @ out [2, rows, cols]
    let x: Vec<f32> = (0..rows).map(|i| (i as f32 * 0.1).sin()).collect();
    let y = Tensor::<3>::from_data(TensorData::new(x.clone(), [1, 1, rows]), &q.ctx.burn).matmul(out).try_to_vec_as::<f32>().unwrap();
    for v in 0..2 {
        for c in 0..cols {
            let want: f32 = (0..rows).map(|r| x[r] * got[v * rows * cols + r * cols + c]).sum();
            assert!((y[v * cols + c] - want).abs() < 1e-4, "variant {v} column {c}: {} vs {want}", y[v * cols + c]);
        }
    }
}

/// Runs an mlp-simple sweep on churn from `data` into `work/name` (checkpoints
/// shared in `work/ckpt`) with the extra `args`, and reads its results.csv.
fn sweep_in(work: &std::path::Path, data: &std::path::Path, name: &str, args: &[&str]) -> Vec<sweep_gpu::report::ResultRow> {
    use clap::Parser;
    let out = work.join(name);
    let mut all: Vec<String> = ["sweep-gpu", "--model", "mlp-simple", "--dataset", "churn"].iter().map(|s| s.to_string()).collect();
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(["--data-dir".into(), data.display().to_string(), "--out".into(), out.display().to_string()]);
    all.extend(["--checkpoint-dir".into(), work.join("ckpt").display().to_string()]);
    let cli = sweep_gpu::cli::Cli::parse_from(all);
    let config = sweep_gpu::config::Config::from_args(&cli.sweep).unwrap();
    sweep_gpu::sweep::run(&config, &sweep_gpu::progress::Progress::hidden()).unwrap();
    sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap()
}

/// A sweep on the GPU gives the same results.csv values with the WGSL
/// quantizer as with the CPU reference, and the same weights as a CPU run,
/// mixed-precision variants included.
#[test]
fn gpu_sweep_matches_the_reference_and_the_cpu_run() {
    drop(quantizer().lock().unwrap_or_else(|e| e.into_inner())); // open the shared device first
    let data = common::tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        // a mixed-precision scope whose held bit width is not in --bits
        let mut args = vec![
            "--epochs",
            "1",
            "--bits",
            "2,8",
            "--seeds",
            "2",
            "--methods",
            "uniform-stochastic,normal-nearest,midrise,histogram-stochastic,lloyd-nearest,lloyd-stochastic,uniform-dither-subtractive,kde-stochastic",
            "--layer-bits",
            "first=4",
        ];
        args.extend_from_slice(extra);
        sweep_in(work.path(), data.path(), name, &args)
    };
    let cpu = run("cpu", &["--device", "cpu"]);
    let wgsl = run("wgsl", &["--device", "gpu"]);
    let reference = run("reference", &["--device", "gpu", "--quantizer", "reference"]);
    assert_eq!(wgsl.len(), 2 * 2 * (3 + 5 * 2), "two scopes");
    assert_eq!(wgsl.iter().filter(|r| r.scope == "all+layers.0=4").count(), 2 * (3 + 5 * 2));
    assert!(wgsl.iter().all(|r| r.quantizer == "wgsl" && r.device == "gpu"));
    assert!(reference.iter().all(|r| r.quantizer == "cpu-reference" && r.device == "gpu"));
    let n_test = 60.0; // 20 % of 300 rows
    for ((w, r), c) in wgsl.iter().zip(&reference).zip(&cpu) {
        assert_eq!(w.variant_id, r.variant_id);
        assert_eq!((w.value, w.weight_mse, w.sqnr_db, w.weight_gain, w.size_bytes), (r.value, r.weight_mse, r.sqnr_db, r.weight_gain, r.size_bytes), "{}", w.variant_id);
        // same weights on the CPU; burn's two backends may disagree on a sample
        // whose logits tie to float precision
        assert_eq!(w.weight_mse.to_bits(), c.weight_mse.to_bits(), "{}", w.variant_id);
        assert!((w.value - c.value).abs() <= 1.0 / n_test + 1e-12, "{}: {} vs {}", w.variant_id, w.value, c.value);
    }
}

/// With --clip mse (ranges chosen on the host, one per group, bit width and
/// level set: three sets here), the WGSL quantizer gives the CPU run's weights.
#[test]
fn gpu_sweep_with_mse_clipping_matches_the_cpu_run() {
    drop(quantizer().lock().unwrap_or_else(|e| e.into_inner())); // open the shared device first
    let data = common::tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    let run = |name: &str, device: &str| {
        let args = ["--epochs", "1", "--bits", "1,2,3,8", "--seeds", "2", "--methods", "uniform-nearest,normal-stochastic,midrise,uniform-dither", "--clip", "mse", "--device", device];
        sweep_in(work.path(), data.path(), name, &args)
    };
    let cpu = run("cpu", "cpu");
    let gpu = run("gpu", "gpu");
    assert_eq!(gpu.len(), 4 * (2 + 2 * 2));
    assert!(gpu.iter().all(|r| r.quantizer == "wgsl"));
    for (g, c) in gpu.iter().zip(&cpu) {
        assert_eq!(g.variant_id, c.variant_id);
        assert_eq!((g.weight_mse.to_bits(), g.size_bytes), (c.weight_mse.to_bits(), c.size_bytes), "{}", g.variant_id);
        assert!((g.value - c.value).abs() <= 1.0 / 60.0 + 1e-12, "{}: {} vs {}", g.variant_id, g.value, c.value);
    }
}

/// --rescale in a sweep: the WGSL quantizer gives the CPU run's weights,
/// weight gains and sizes, with and without --clip.
#[test]
fn gpu_sweep_with_rescale_matches_the_cpu_run() {
    drop(quantizer().lock().unwrap_or_else(|e| e.into_inner())); // open the shared device first
    let data = common::tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    for (mode, clip) in [("gain", None), ("lsq", Some("mse"))] {
        let run = |device: &str| {
            let mut args = vec!["--epochs", "1", "--bits", "1,2,4", "--seeds", "2", "--methods", "uniform-nearest,histogram-stochastic,midrise", "--granularity", "channel", "--rescale", mode, "--device", device];
            if let Some(c) = clip {
                args.extend(["--clip", c]);
            }
            sweep_in(work.path(), data.path(), &format!("{mode}-{device}"), &args)
        };
        let cpu = run("cpu");
        let gpu = run("gpu");
        assert_eq!(gpu.len(), 3 * (1 + 2 + 1));
        assert!(gpu.iter().all(|r| r.quantizer == "wgsl"));
        for (g, c) in gpu.iter().zip(&cpu) {
            assert_eq!(g.variant_id, c.variant_id);
            assert_eq!((g.weight_mse.to_bits(), g.weight_gain.map(f64::to_bits), g.size_bytes), (c.weight_mse.to_bits(), c.weight_gain.map(f64::to_bits), c.size_bytes), "{mode} {}", g.variant_id);
            assert!((g.value - c.value).abs() <= 1.0 / 60.0 + 1e-12, "{}: {} vs {}", g.variant_id, g.value, c.value);
        }
    }
}

/// --bias-correct in a sweep: the WGSL path gives the CPU run's corrected
/// biases (the same scores up to a tied sample), with --rescale too.
#[test]
fn gpu_sweep_with_bias_correction_matches_the_cpu_run() {
    drop(quantizer().lock().unwrap_or_else(|e| e.into_inner())); // open the shared device first
    let data = common::tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    let run = |name: &str, device: &str, extra: &[&str]| {
        let mut args = vec!["--epochs", "1", "--bits", "1,2,4", "--seeds", "2", "--methods", "uniform-nearest,normal-stochastic,midrise", "--device", device];
        args.extend_from_slice(extra);
        sweep_in(work.path(), data.path(), name, &args)
    };
    let plain = run("plain", "gpu", &["--rescale", "lsq"]);
    let cpu = run("cpu", "cpu", &["--bias-correct", "active", "--rescale", "lsq", "--scope", "each-layer"]);
    let gpu = run("gpu", "gpu", &["--bias-correct", "active", "--rescale", "lsq", "--scope", "each-layer"]);
    assert_eq!(gpu.len(), 3 * 3 * (1 + 2 + 1), "three scopes");
    assert!(gpu.iter().all(|r| r.quantizer == "wgsl"));
    for (g, c) in gpu.iter().zip(&cpu) {
        assert_eq!(g.variant_id, c.variant_id);
        assert_eq!((g.weight_mse.to_bits(), g.size_bytes), (c.weight_mse.to_bits(), c.size_bytes), "{}", g.variant_id);
        assert!((g.value - c.value).abs() <= 1.0 / 60.0 + 1e-12, "{}: {} vs {}", g.variant_id, g.value, c.value);
    }
    // the correction moves the scores (the uncorrected run shares the checkpoint)
    let moved = plain.iter().zip(&gpu).filter(|(p, g)| p.value != g.value).count();
    assert!(moved > 0, "bias correction changed no score");
}

/// A grid whose naive single batch would not fit one storage binding (lavapipe
/// binds at most 128 MiB) is scored in batches that do, with the same results
/// as the CPU (which trains the checkpoint both runs use).
#[test]
fn a_grid_too_big_for_one_binding_is_split_to_fit() {
    let q = quantizer().lock().unwrap_or_else(|e| e.into_inner());
    let limit = q.ctx.limits().max_storage_buffer_binding_size as usize;
    drop(q);
    // 7 methods x 16 bits with 6 seeds: 16 x (4 + 3 x 6) = 352 variants; the
    // test split is 20 % of the rows; the widest layer of mlp-simple on churn is
    // its 13 inputs: each variant's activations take test rows x 13 x 4 bytes
    let variants = 352usize;
    let test_rows = (limit / (variants * 13 * 4) + 1).max(500);
    assert!(test_rows <= 20_000, "this test is sized for lavapipe's 128 MiB bindings, not {} MiB", limit >> 20);
    let naive = variants * test_rows * 13 * 4;
    assert!(naive > limit, "the naive batch ({naive} bytes) must exceed the binding limit ({limit})");
    let data = common::tabular_dir(test_rows * 5);
    let work = tempfile::tempdir().unwrap();
    let run = |name: &str, device: &str| {
        // burn's kernels: the WGSL scorer keeps activations in private memory,
        // so its batches are bounded by the parameters alone
        let args = ["--epochs", "1", "--batch-size", "512", "--seeds", "6", "--device", device, "--variants-per-batch", "1000000", "--scorer", "burn"];
        sweep_in(work.path(), data.path(), name, &args)
    };
    let cpu = run("cpu", "cpu");
    let gpu = run("gpu", "gpu");
    assert_eq!(gpu.len(), variants);
    for (g, c) in gpu.iter().zip(&cpu) {
        assert_eq!(g.variant_id, c.variant_id);
        assert_eq!(g.weight_mse.to_bits(), c.weight_mse.to_bits(), "{}", g.variant_id);
        // burn's two backends may disagree on a sample whose logits tie
        assert!((g.value - c.value).abs() <= 1.0 / test_rows as f64 + 1e-12, "{}: {} vs {}", g.variant_id, g.value, c.value);
    }
}

/// The WGSL scorer (one dispatch per batch: shaders/score_mlp.wgsl) gives the
/// metrics burn gives on the CPU backend, for a classifier, a regressor and a
/// 10-class classifier (top-5), the whole net and one layer alone (its input
/// the shared fp32 activations); the test split (560 rows) fills one
/// workgroup of 512 rows and part of a second.
#[test]
fn wgsl_scorer_matches_burn_on_the_cpu() {
    use burn::tensor::Device;
    use sweep_gpu::data::{DatasetId, Targets, Task};
    use sweep_gpu::eval::Evaluator;
    use sweep_gpu::models::{ModelKind, ModelSpec};
    use sweep_gpu::quant::apply::{BiasMode, BnMode, Plan};
    use sweep_gpu::sweep::grid::{GridSpec, Scope};
    let ctx = quantizer().lock().unwrap_or_else(|e| e.into_inner()).ctx.clone();
    let data = common::tabular_dir(2800);
    let churn = sweep_gpu::data::load(DatasetId::Churn, data.path(), 1).unwrap();
    let mut ten = churn.clone();
    ten.task = Task::Classification { classes: 10 };
    for t in [&mut ten.train, &mut ten.valid, &mut ten.test] {
        let n = t.len();
        t.y = Targets::Classes((0..n).map(|i| (i * 7 % 10) as _).collect());
    }
    let mv = sweep_gpu::data::load(DatasetId::Mv, data.path(), 1).unwrap();
    for (name, ds) in [("churn", &churn), ("mv", &mv), ("10 classes", &ten)] {
        let n = ds.test.len() as f64;
        assert_eq!(n, 560.0);
        let spec = ModelSpec::new(ModelKind::MlpComplex, ds.id, ds.train.sample_len(), ds.task).unwrap();
        let cpu = Device::flex();
        let weights = sweep_gpu::models::initial_weights(&spec, 5).unwrap();
        let layers = weights.layers();
        let grid = GridSpec {
            methods: vec![Method::UniformNearest, Method::NormalStochastic, Method::Midrise],
            bits: vec![2, 6],
            granularities: vec![Granularity::Layer],
            seeds: vec![1, 2],
            // all 5 layers, then 3 and 4 from the first quantized one: the
            // kernel ends in either of each row's two activation arrays
            scopes: vec![Scope::All, Scope::Layer(layers[2].clone()), Scope::Layer(layers[1].clone())],
        };
        let mut plan = Plan::new(weights.clone(), BiasMode::Fp32, BnMode::Fold).unwrap();
        plan.prepare(&grid.granularities, &grid.bits, &grid.methods);
        let on_cpu = Evaluator::new(ds, &ds.test, &cpu, &weights, None, 0).unwrap();
        let mut on_gpu = Evaluator::new(ds, &ds.test, &ctx.burn, &weights, None, 0).unwrap();
        assert!(on_gpu.use_fused_kernel(Some(ctx.clone())).unwrap(), "{name}: the kernel takes mlp-complex");
        for scope in &grid.scopes {
            let variants: Vec<_> = grid.variants().into_iter().filter(|v| &v.scope == scope).collect();
            let applied: Vec<_> = variants.iter().map(|v| plan.apply(v).0).collect();
            let refs: Vec<_> = applied.iter().collect();
            let want = on_cpu.score(&refs).unwrap();
            let got = on_gpu.score(&refs).unwrap();
            assert_eq!(got.len(), refs.len());
            for ((v, w), g) in variants.iter().zip(&want).zip(&got) {
                let what = format!("{name}, {}", v.id());
                assert_eq!(w.secondary.is_some(), g.secondary.is_some(), "{what}");
                let pairs = [(w.primary, g.primary)].into_iter().chain(w.secondary.zip(g.secondary));
                for (a, b) in pairs {
                    match ds.task {
                        // one sample whose logits tie to rounding may flip
                        Task::Classification { .. } => assert!((a - b).abs() <= 1.0 / n + 1e-12, "{what}: {a} vs {b}"),
                        Task::Regression => assert!((a - b).abs() <= 1e-5 * a.abs(), "{what}: {a} vs {b}"),
                    }
                }
            }
        }
        // rounds of copy and dispatch of 2 variants each (what a batch too
        // big for the parameter texture takes) give the same sums as one round
        let all: Vec<_> = grid.variants().iter().map(|v| plan.apply(v).0).collect();
        let refs: Vec<_> = all.iter().collect();
        let one_round = on_gpu.score(&refs).unwrap();
        on_gpu.fused_kernel_mut().unwrap().limit_variants_per_round(2);
        let rounds = on_gpu.score(&refs).unwrap();
        assert!(refs.len() > 4, "{name}: {} variants make too few rounds", refs.len());
        assert_eq!(format!("{rounds:?}"), format!("{one_round:?}"), "{name}: rounds of 2 variants");
        // a variant that changes nothing scores the fp32 net
        let fp32 = on_cpu.score_all(&weights).unwrap();
        let same = on_gpu.score(&[&weights]).unwrap()[0];
        assert!((fp32.primary - same.primary).abs() <= 1e-5 * fp32.primary.abs().max(1.0 / n), "{name}: {fp32:?} vs {same:?}");
    }
}
