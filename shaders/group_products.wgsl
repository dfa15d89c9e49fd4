// group_products.wgsl: per variant and block of 256 elements of one group (in
// the group's canonical element order, as group_partials.wgsl), the sum of
// w w (mode 0), w q (mode 1), q q (mode 2), (w - q)^2 (mode 3) or
// (w - q) means[i] (mode 4; the modes are quant::Product's), w the flushed
// weight, q the variant's quantized value and i the element's index, in the canonical tree order of reference::product_sum (mode 4:
// reference::shift_sum). Modes 0-2 per group are --rescale's sums
// (reference::rescale_factors); modes 3 and 1 over the whole tensor (one
// group) are the weight error and the weight gain's Σ w q
// (apply::Plan::apply); mode 4 per output channel is --bias-correct's shift. As in group_sqdev_partials.wgsl, invocation t forms
// the product of element (t + 64) mod 256, so that no compiler fuses a
// product into an addition. reduce_partials.wgsl finishes each (variant,
// group) row.
//
// Bindings (group 0):
//   0 weights:  array<f32>      the tensor, row-major, n elements
//   1 values:   array<f32>      [variant][n] quantized
//   2 partials: array<Partial>  out, [variant][group][block] (sum lane)
//   3 shape:    array<u32, 8>   n, groups, stride, blocks per group, mode, 0, 0, 0
//   4 means:    array<f32>      n, one per weight, read by mode 4 only
// Dispatch: (blocks per group, groups, variants), workgroup 256.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(3) var<storage, read_write> shape: array<u32, 8>;
@group(0) @binding(4) var<storage, read_write> means: array<f32>;

var<workgroup> s_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let groups = shape[1];
    let stride = shape[2];
    let blocks = shape[3];
    let mode = shape[4];
    let g = wg.y;
    let slot = (t + 64u) & 255u;
    let k = wg.x * REDUCE_BLOCK + slot;
    var term = 0.0;
    if k < n / groups {
        let i = (k / stride) * stride * groups + g * stride + k % stride;
        let w = flush(weights[i]);
        let q = values[wg.z * n + i];
        if mode == 0u {
            term = w * w;
        } else if mode == 1u {
            term = w * q;
        } else if mode == 2u {
            term = q * q;
        } else if mode == 3u {
            let d = w - q;
            term = d * d;
        } else {
            term = (w - q) * means[i];
        }
    }
    s_sum[slot] = term;
    workgroupBarrier();
    for (var s = REDUCE_BLOCK / 2u; s > 0u; s = s / 2u) {
        if t < s {
            s_sum[t] = s_sum[t] + s_sum[t + s];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[(wg.z * groups + g) * blocks + wg.x] = Partial(0.0, 0.0, s_sum[0], 0.0);
    }
}
