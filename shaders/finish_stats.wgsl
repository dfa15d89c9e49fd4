// finish_stats.wgsl: turns each group's fully reduced partial into statistics.
// mode 0: lo, hi and mean = sum / n; mode 1: std = sqrt(sum of squared
// deviations / n) (population). Division and square root are the exact-
// reproducible ones of common.wgsl.
//
// Bindings (group 0):
//   0 partials: array<Partial>     one per group
//   1 stats:    array<GroupStats>  out (mode 0 writes lo, hi, mean; mode 1 std)
//   2 shape:    array<u32, 4>      groups, group length, mode, 0
// Dispatch: (ceil(groups / 64), 1, 1), workgroup 64: one invocation per group.

@group(0) @binding(0) var<storage, read_write> partials: array<Partial>;
@group(0) @binding(1) var<storage, read_write> stats: array<GroupStats>;
@group(0) @binding(2) var<storage, read_write> shape: array<u32, 4>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = id.x;
    if g >= shape[0] {
        return;
    }
    let n = f32(shape[1]);
    let p = partials[g];
    if shape[2] == 0u {
        stats[g] = GroupStats(p.lo, p.hi, div(p.sum, n), 0.0);
    } else {
        stats[g].sd = sqrt_exact(div(p.sum, n));
    }
}
