// reduce_partials.wgsl: folds blocks of 256 consecutive partials (min, max,
// sum) into one, the next level of the canonical summation tree. Run until one
// partial per row is left.
//
// Bindings (group 0):
//   0 src:   array<Partial>  [row][n]
//   1 dst:   array<Partial>  out, [row][ceil(n / 256)]
//   2 shape: array<u32, 4>   n, ceil(n / 256), 0, 0
// Dispatch: (ceil(n / 256), rows, 1), workgroup 256.

@group(0) @binding(0) var<storage, read_write> src: array<Partial>;
@group(0) @binding(1) var<storage, read_write> dst: array<Partial>;
@group(0) @binding(2) var<storage, read_write> shape: array<u32, 4>;

var<workgroup> s_lo: array<f32, 256>;
var<workgroup> s_hi: array<f32, 256>;
var<workgroup> s_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let out_n = shape[1];
    let row = wg.y;
    let k = wg.x * REDUCE_BLOCK + t;
    if k < n {
        let p = src[row * n + k];
        s_lo[t] = p.lo;
        s_hi[t] = p.hi;
        s_sum[t] = p.sum;
    } else {
        s_lo[t] = F32_MAX;
        s_hi[t] = -F32_MAX;
        s_sum[t] = 0.0;
    }
    workgroupBarrier();
    for (var s = REDUCE_BLOCK / 2u; s > 0u; s = s / 2u) {
        if t < s {
            s_lo[t] = min(s_lo[t], s_lo[t + s]);
            s_hi[t] = max(s_hi[t], s_hi[t + s]);
            s_sum[t] = s_sum[t] + s_sum[t + s];
        }
        workgroupBarrier();
    }
    if t == 0u {
        dst[row * out_n + wg.x] = Partial(s_lo[0], s_hi[0], s_sum[0], 0.0);
    }
}
