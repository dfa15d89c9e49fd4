// group_sqdev_partials.wgsl: second pass of the per-group statistics: the sum of
// squared deviations from the group mean, per block of 256, in the canonical
// tree order (reference::group_stats).
//
// The square d * d is written to shared memory by a different invocation from
// the ones that add it (invocation t squares element (t + 64) mod 256), so no
// compiler can fuse the square into the first addition: the CPU reference
// rounds the square before adding, and so must this kernel.
//
// Bindings (group 0):
//   0 weights:  array<f32>
//   1 stats:    array<GroupStats>  per group; reads mean
//   2 partials: array<Partial>     out, [group][block] (sum lane only)
//   3 shape:    array<u32, 4>      len, groups, stride, blocks per group
// Dispatch: (blocks per group, groups, 1), workgroup 256.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> stats: array<GroupStats>;
@group(0) @binding(2) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(3) var<storage, read_write> shape: array<u32, 4>;

var<workgroup> s_sum: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let len = shape[0];
    let groups = shape[1];
    let stride = shape[2];
    let blocks = shape[3];
    let g = wg.y;
    let slot = (t + 64u) & 255u;
    let k = wg.x * REDUCE_BLOCK + slot;
    let group_len = len / groups;
    var sq = 0.0;
    if k < group_len {
        let i = (k / stride) * stride * groups + g * stride + k % stride;
        let d = flush(weights[i]) - stats[g].mean;
        sq = d * d;
    }
    s_sum[slot] = sq;
    workgroupBarrier();
    for (var s = REDUCE_BLOCK / 2u; s > 0u; s = s / 2u) {
        if t < s {
            s_sum[t] = s_sum[t] + s_sum[t + s];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[g * blocks + wg.x] = Partial(0.0, 0.0, s_sum[0], 0.0);
    }
}
