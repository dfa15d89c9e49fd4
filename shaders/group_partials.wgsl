// group_partials.wgsl: first pass of the per-group statistics. Each workgroup
// reduces one block of 256 consecutive elements of one group (in the group's
// canonical element order, see Grouping in src/quant/mod.rs) to its min, max
// and sum, adding by halving strides exactly as reference::tree_sum does.
//
// Bindings (group 0):
//   0 weights:  array<f32>      the tensor, row-major
//   1 partials: array<Partial>  out, [group][block]
//   2 shape:    array<u32, 4>   len, groups, stride, blocks per group
// Dispatch: (blocks per group, groups, 1), workgroup 256: x = block, y = group.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(2) var<storage, read_write> shape: array<u32, 4>;

var<workgroup> s_lo: array<f32, 256>;
var<workgroup> s_hi: array<f32, 256>;
var<workgroup> s_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let len = shape[0];
    let groups = shape[1];
    let stride = shape[2];
    let blocks = shape[3];
    let g = wg.y;
    let k = wg.x * REDUCE_BLOCK + t;
    let group_len = len / groups;
    if k < group_len {
        let i = (k / stride) * stride * groups + g * stride + k % stride;
        let w = flush(weights[i]);
        s_lo[t] = w;
        s_hi[t] = w;
        s_sum[t] = w;
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
        partials[g * blocks + wg.x] = Partial(s_lo[0], s_hi[0], s_sum[0], 0.0);
    }
}
