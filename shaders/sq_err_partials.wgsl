// sq_err_partials.wgsl: per variant and block of 256 elements, the sum of
// squared weight errors (w - q)^2 (mode 0) or of products w q (mode 1, for the
// weight gain), in the canonical tree order of reference::tree_sum; the terms
// are written by other invocations than the ones that add them (see
// group_sqdev_partials.wgsl) so that no compiler fuses them into the
// additions. reduce_partials.wgsl finishes the sum per variant.
//
// Bindings (group 0):
//   0 weights:  array<f32>      the tensor, n elements
//   1 values:   array<f32>      [variant][n] quantized
//   2 partials: array<Partial>  out, [variant][block] (sum lane)
//   3 shape:    array<u32, 4>   n, blocks, mode, 0
// Dispatch: (blocks, variants, 1), workgroup 256.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(3) var<storage, read_write> shape: array<u32, 4>;

var<workgroup> s_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let blocks = shape[1];
    let slot = (t + 64u) & 255u;
    let k = wg.x * REDUCE_BLOCK + slot;
    var term = 0.0;
    if k < n {
        let w = weights[k];
        let q = values[wg.y * n + k];
        if shape[2] == 1u {
            term = w * q;
        } else {
            let d = w - q;
            term = d * d;
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
        partials[wg.y * blocks + wg.x] = Partial(0.0, 0.0, s_sum[0], 0.0);
    }
}
