// z_table.wgsl: the standard normal quantiles z_i = z_entry(i, K) (common.wgsl),
// i = 1..K-2, for every bit width 1..=16 (K = 2^b), at z_offset(b) + i - 1.
// The normal level set of a group is fma(std, z_i, mean), so one table serves
// every group and variant. Mirrors reference::z_table.
//
// Bindings (group 0):
//   0 z_table: array<f32>  out, 2^17 - 34 entries
// Dispatch: (ceil(entries / 256), 1, 1), workgroup 256.

@group(0) @binding(0) var<storage, read_write> z_table: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let e = id.x;
    if e >= arrayLength(&z_table) {
        return;
    }
    // find the bit width whose segment holds entry e
    var bits = 2u;
    while bits < 16u && e >= z_offset(bits + 1u) {
        bits = bits + 1u;
    }
    let i = e - z_offset(bits) + 1u;
    z_table[e] = z_entry(i, 1u << bits);
}
