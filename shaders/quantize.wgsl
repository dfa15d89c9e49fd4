// quantize.wgsl: codes and quantized weights of many variants of one tensor in
// one dispatch. Each invocation rounds one element for one variant: nearest
// (the closest level, an exact tie to the larger), stochastic (up with
// probability (w - L[j]) / (L[j+1] - L[j]), u from uniform_draw of (seed,
// stream, tensor, element)), midrise (floor, clamped to K codes) or dither
// (nearest after a triangular dither); see levels.wgsl and
// src/quant/reference.rs, which this matches bit for bit.
//
// Lloyd-Max and kernel-density levels are not computed here: the host builds
// them (min(K, group size) per group, reference::level_table) and the kernel
// searches the group's table.
//
// Specialisation: the pipeline-overridable constant METHOD fixes the method
// (Method::code) when below 255, so the compiler drops every other level set's
// code; 255 leaves it to each variant's entry (one pipeline for any mix). On
// lavapipe, which runs both sides of every branch, the specialised pipelines
// are 2-4x faster; both give the same codes (tests/gpu.rs).
override METHOD: u32 = 255u;

// One entry of the variant table: the method, bit width and seed, the row of
// the level parameters (bits row * groups), the output slot, the key of the
// random stream and, for lloyd and kde, where its bit width's tables start.
struct Variant {
    method: u32,
    bits: u32,
    seed: u32,
    row: u32,
    slot: u32,
    // quant::draw_key(seed, stream, tensor) of a stochastic method
    key: u32,
    // lloyd, kde: the offset of group 0's levels in `tables`; group g's
    // min(K, group size) levels follow at g times that
    table: u32,
    pad: u32,
}

// Bindings (group 0):
//   0 weights:  array<f32>          the tensor, row-major, n elements
//   1 z_table:  array<f32>
//   2 params:   array<LevelParams>  [bits row][group]
//   3 variants: array<Variant>
//   4 values:   array<f32>          out, [slot][n] (a burn tensor's buffer)
//   5 codes:    array<u32>          out, [slot][n] when shape[3] == 1 (parity tests)
//   6 shape:    array<u32, 8>       n, groups, stride, write codes, tensor index,
//                                   x workgroups, table entries, entries per
//                                   invocation
//   7 tables:   array<f32>          level tables [set][bits row][group][min(K, n /
//                                   groups)] (lloyd, kde; a dummy otherwise)
// Dispatch: (x workgroups, y, ceil(entries / per invocation)) with
// x * y * 256 >= n, workgroup 256: the element is (y * x workgroups + x) * 256
// + local; the invocation rounds it for entries z * per .. (z + 1) * per, so
// the weight and its group are loaded once for all of them.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> z_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<LevelParams>;
@group(0) @binding(3) var<storage, read_write> variants: array<Variant>;
@group(0) @binding(4) var<storage, read_write> values: array<f32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read_write> shape: array<u32, 8>;
@group(0) @binding(7) var<storage, read_write> tables: array<f32>;

// Triangular dither t = u1 - u2 (u2 from the key hashed once more), nearest on
// the uniform set; the subtractive method (10) takes t back off the level.
fn round_dither(p: LevelParams, method: u32, w: f32, u: f32, key: u32, i: u32) -> Rounded {
    let t = u - uniform_from_key(pcg_hash(key), i);
    var r = round_weight(p, 0u, flush(madd(t, p.step, w)), 0.0);
    if method == 10u && p.degenerate == 0u {
        r.value = madd(-t, p.step, r.value);
    }
    return r;
}

// Rounding onto a group's table of `entries` levels at `base`: the bracket by
// binary search (the largest t with L(t) <= w, 0 when none), then
// round_between.
fn round_table(p: LevelParams, method: u32, w: f32, u: f32, base: u32, entries: u32) -> Rounded {
    if p.degenerate != 0u {
        return Rounded(0u, p.lo);
    }
    let last = entries - 1u;
    var lo = 0u;
    var hi = last;
    while lo < hi {
        let mid = lo + (hi - lo) / 2u;
        if tables[base + mid + 1u] <= w {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    let lj = tables[base + lo];
    if lo == last {
        return Rounded(lo, lj);
    }
    return round_between(method, w, u, lo, lj, tables[base + lo + 1u]);
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let i = (wg.y * shape[5] + wg.x) * 256u + t;
    if i >= n {
        return;
    }
    let w = flush(weights[i]);
    let group = (i / shape[2]) % shape[1];
    let first = wg.z * shape[7];
    let end = min(first + shape[7], shape[6]);
    for (var z = first; z < end; z++) {
        let v = variants[z];
        let method = select(v.method, METHOD, METHOD < 255u);
        let p = params[v.row + group];
        var u = 0.0;
        if method_is_stochastic(method) || method_is_dither(method) {
            u = uniform_from_key(v.key, i);
        }
        var r: Rounded;
        if method_is_dither(method) {
            r = round_dither(p, method, w, u, v.key, i);
        } else if method_level_set(method) == LEVEL_TABLE {
            let entries = min(1u << v.bits, n / shape[1]);
            r = round_table(p, method, w, u, v.table + group * entries, entries);
        } else {
            r = round_weight(p, method, w, u);
        }
        let out = v.slot * n + i;
        values[out] = r.value;
        if shape[3] == 1u {
            codes[out] = r.code;
        }
    }
}
