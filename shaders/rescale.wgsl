// rescale.wgsl: --rescale's second pass. Each group's quantized values of each
// variant are multiplied by the group's factor rescale_factor(num, den), from
// the fully reduced sums of group_products.wgsl (gain: num = Σ w w, den = Σ w q;
// lsq: num = Σ w q, den = Σ q q), as reference::rescale does.
//
// Bindings (group 0):
//   0 values: array<f32>      [variant][n] quantized, rescaled in place
//   1 num:    array<Partial>  [variant][group] (sum lane)
//   2 den:    array<Partial>  [variant][group] (sum lane)
//   3 shape:  array<u32, 4>   n, groups, stride, x workgroups
// Dispatch: (x workgroups, y, variants) with x * y * 256 >= n, workgroup 256:
// the element is (y * x workgroups + x) * 256 + local.

@group(0) @binding(0) var<storage, read_write> values: array<f32>;
@group(0) @binding(1) var<storage, read_write> num: array<Partial>;
@group(0) @binding(2) var<storage, read_write> den: array<Partial>;
@group(0) @binding(3) var<storage, read_write> shape: array<u32, 4>;

// div(num, den), or 1 when either is not a positive finite normal number or
// the quotient is not finite (reference::rescale_factor).
fn rescale_factor(a: f32, b: f32) -> f32 {
    // the smallest normal f32, 2^-126, as a bit pattern
    let min_normal = bitcast<f32>(0x00800000u);
    let normal_a = a >= min_normal && a <= F32_MAX;
    let normal_b = b >= min_normal && b <= F32_MAX;
    if !(normal_a && normal_b) {
        return 1.0;
    }
    let g = div(a, b);
    if abs(g) <= F32_MAX {
        return g;
    }
    return 1.0;
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let i = (wg.y * shape[3] + wg.x) * 256u + t;
    if i >= n {
        return;
    }
    let row = wg.z * shape[1] + (i / shape[2]) % shape[1];
    let out = wg.z * n + i;
    values[out] = values[out] * rescale_factor(num[row].sum, den[row].sum);
}
