// quantize.wgsl: codes and quantized weights of many variants of one tensor in
// one dispatch. Each invocation rounds one element for one variant: nearest
// (the closest level, an exact tie to the larger), stochastic (up with
// probability (w - L[j]) / (L[j+1] - L[j]), u from uniform_draw of (seed,
// stream, tensor, element)) or midrise (floor, clamped to K codes); see
// levels.wgsl and src/quant/reference.rs, which this matches bit for bit.
//
// Bindings (group 0):
//   0 weights:  array<f32>          the tensor, row-major, n elements
//   1 z_table:  array<f32>
//   2 params:   array<LevelParams>  [bits row][group]
//   3 variants: array<vec4<u32>>    per variant: method, bits, seed, params row * groups
//   4 values:   array<f32>          out, [variant][n] (a burn tensor's buffer)
//   5 codes:    array<u32>          out, [variant][n] when shape[3] == 1 (parity tests)
//   6 shape:    array<u32, 8>       n, groups, stride, write codes, tensor index,
//                                   x workgroups, 0, 0
// Dispatch: (x workgroups, y, variants) with x * y * 256 >= n, workgroup 256:
// the element is (y * x workgroups + x) * 256 + local, the variant is z.

@group(0) @binding(0) var<storage, read_write> weights: array<f32>;
@group(0) @binding(1) var<storage, read_write> z_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> params: array<LevelParams>;
@group(0) @binding(3) var<storage, read_write> variants: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> values: array<f32>;
@group(0) @binding(5) var<storage, read_write> codes: array<u32>;
@group(0) @binding(6) var<storage, read_write> shape: array<u32, 8>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let n = shape[0];
    let i = (wg.y * shape[5] + wg.x) * 256u + t;
    if i >= n {
        return;
    }
    let v = variants[wg.z];
    let method = v.x;
    let group = (i / shape[2]) % shape[1];
    let p = params[v.w + group];
    var u = 0.0;
    if method_is_stochastic(method) {
        u = uniform_draw(v.z, stream_id(method, v.y), shape[4], i);
    }
    let code = quant_code(p, method, flush(weights[i]), u);
    let out = wg.z * n + i;
    values[out] = quant_value(p, method, code);
    if shape[3] == 1u {
        codes[out] = code;
    }
}
