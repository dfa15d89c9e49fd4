// score_mlp.wgsl: a dense net's whole forward pass and its test metric for
// many variants in one dispatch. An invocation runs 8 evaluation rows of one
// variant through the layers from `start` on (dense, ReLU between layers, none
// after the last), their activations in private memory, and scores them; the
// workgroup sums the scores of its 512 rows. Every invocation of a workgroup
// reads the same variant's weights. Register blocking: each weight it loads
// serves its 8 rows, and each activation it loads serves two vec4 blocks of
// outputs (8 outputs). The 8 rows and two blocks are unrolled by hand in
// `dense`: lavapipe did not unroll a loop over the rows, and the unrolled form
// measured 1.5x its speed (8 rows measured faster than 1, 4 and 16). HALF, the
// vec4 blocks of the widest layer, and SHIFT are set by the host
// (src/eval/fused.rs).
//
// Why loads are what is saved: on lavapipe (Mesa 22.3) every storage-buffer
// load is a loop over the 8 SIMD lanes with a check per lane, even where every
// lane reads the same address (perf, and the JIT code read back with gdb).
// Texel fetches gather whole texels instead, so the parameters are read from
// an rgba32float texture. Reads of private memory at a computed index (the
// activations) cost more the larger the array, as far as the timings show. So
// each row keeps its activations in two small arrays of its own, input and
// output, swapped from layer to layer, and each pass over a layer's inputs
// computes two output blocks. Runs of `sweep-gpu bench --skip-quantizer
// --device gpu --variants 512` on the 2-core VM, batched variants/s (README,
// Speed):
//   - one output block per pass, storage buffer, one activation array for all
//     rows: 196-332 (8 runs, median 238);
//   - two blocks, storage buffer: 254-331 (7 runs);
//   - two blocks, texture: 222-389 (11 runs, median 295);
//   - and one array per row: 288-395 (7 runs);
//   - and two arrays per row (this kernel): 305-370 (6 runs, median 323), when
//     the previous form ran 232-300 (median 281) in the runs between.
// Four blocks per pass ran about as fast in two runs (311-323) with 128
// accumulator registers, which would cut a real GPU's occupancy; 4 rows by 4
// blocks ran slower (197-218). A form with the net written out by the host and
// the weights in a uniform buffer (git branch written-out-scorer) ran
// 1.06-1.13x the first form above and was not merged.
//
// Output widths are padded to multiples of 8 and input widths to multiples
// of 4, with zero weights (the host packs them so); the arithmetic runs on vec4
// blocks. Each output is sum_i h[i] * W[i][o] in order of i, then + bias.
//
// Classifiers: lane 0 = 1 when the first largest logit is the label (argmax),
// lane 1 = 1 when fewer than 5 logits are larger than the label's (top-5).
// Regressors: the output in the target's units, y * target_std + target_mean,
// minus the target: lane 0 = its square, lane 1 = its absolute value.
//
// Bindings (group 0):
//   0 net:      Net                 the layer table (below)
//   1 x:        array<vec4<f32>>    [rows][inputs of layer `start`, padded / 4]
//   2 truth:    array<f32>          [rows] class index, or target in its units
//   3 params:   texture_2d<f32>     rgba32float, 2^SHIFT texels wide, read as
//                                   texel t = variant * stride + offset, row by
//                                   row: [variant][stride] layers start.. packed,
//                                   per layer W [inputs padded][outputs padded]
//                                   row-major, then its bias [outputs padded]
//   4 partials: array<vec2<f32>>    out, [variant][workgroups along x]
// Dispatch: (ceil(rows / 512), variants, 1), workgroup 64.

const ROWS: u32 = 8u; // `dense` is unrolled for exactly 8
const HALF: u32 = 32u;
const NO_BIAS: u32 = 0xffffffffu;
const SHIFT: u32 = 8u; // the parameter texture is 256 texels wide

// one row's activations entering or leaving a layer
alias Row = array<vec4<f32>, HALF>;

struct Net {
    rows: u32,
    start: u32,
    layers: u32,
    stride: u32,          // texels per variant in `params`: whole texture rows
    task: u32,            // 0 classifier, 1 regressor
    target_mean: f32,
    target_std: f32,
    outputs: u32,         // the last layer's real outputs
    // per layer, in vec4 blocks: inputs, outputs, weight offset, bias offset
    // (or NO_BIAS); offsets are within one variant's stride
    layer: array<vec4<u32>, 8>,
}

@group(0) @binding(0) var<storage, read_write> net: Net;
@group(0) @binding(1) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> truth: array<f32>;
@group(0) @binding(3) var params: texture_2d<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;

// texel t of the parameters (see binding 3)
fn param(t: u32) -> vec4<f32> {
    return textureLoad(params, vec2<u32>(t & ((1u << SHIFT) - 1u), t >> SHIFT), 0);
}

// one row's score from the last layer's output hk
fn score_row(hk: ptr<function, Row>, row: u32) -> vec2<f32> {
    if net.task == 0u {
        let label = u32(truth[row]);
        let mine = (*hk)[label / 4u][label % 4u];
        var best = 0u;
        var top = (*hk)[0].x;
        var above = 0u;
        for (var o = 0u; o < net.outputs; o = o + 1u) {
            let y = (*hk)[o / 4u][o % 4u];
            if y > top {
                top = y;
                best = o;
            }
            if y > mine {
                above = above + 1u;
            }
        }
        return vec2<f32>(select(0.0, 1.0, best == label), select(0.0, 1.0, above < 5u));
    } else {
        let err = (*hk)[0].x * net.target_std + net.target_mean - truth[row];
        return vec2<f32>(err * err, abs(err));
    }
}

// row `row`'s inputs (the last row's where `row` is past the end) into hk
fn load_row(hk: ptr<function, Row>, row: u32, inputs: u32) {
    let r = min(row, net.rows - 1u);
    for (var i = 0u; i < inputs; i = i + 1u) {
        (*hk)[i] = x[r * inputs + i];
    }
}

// row `row`'s score from the array that holds the last layer's output (v
// when in_v), nothing for a row past the end
fn score_last(u: ptr<function, Row>, v: ptr<function, Row>, in_v: bool, row: u32) -> vec2<f32> {
    if row >= net.rows {
        return vec2<f32>(0.0, 0.0);
    }
    if in_v {
        return score_row(v, row);
    }
    return score_row(u, row);
}

// acc + sum_c a[c] * w_c, in order of c
fn mac(acc: vec4<f32>, a: vec4<f32>, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
    return acc + a.x * w0 + a.y * w1 + a.z * w2 + a.w * w3;
}

// ReLU after a hidden layer, none after the last
fn act(y: vec4<f32>, hidden: bool) -> vec4<f32> {
    return select(y, max(y, vec4<f32>(0.0)), hidden);
}

// layer l of the variant whose parameters start at texel `base`: rows k = 0..8
// read their inputs from i_k and write their outputs to o_k (a function, not a
// loop over the rows: the 8 rows and two output blocks are unrolled by hand)
fn dense(
    l: u32,
    base: u32,
    i0: ptr<function, Row>, i1: ptr<function, Row>, i2: ptr<function, Row>, i3: ptr<function, Row>,
    i4: ptr<function, Row>, i5: ptr<function, Row>, i6: ptr<function, Row>, i7: ptr<function, Row>,
    o0: ptr<function, Row>, o1: ptr<function, Row>, o2: ptr<function, Row>, o3: ptr<function, Row>,
    o4: ptr<function, Row>, o5: ptr<function, Row>, o6: ptr<function, Row>, o7: ptr<function, Row>,
) {
    let d = net.layer[l];
    let hidden = l + 1u < net.layers;
    for (var o = 0u; o < d.y; o = o + 2u) {
        var acc0_0 = vec4<f32>(0.0);
        var acc1_0 = vec4<f32>(0.0);
        var acc2_0 = vec4<f32>(0.0);
        var acc3_0 = vec4<f32>(0.0);
        var acc4_0 = vec4<f32>(0.0);
        var acc5_0 = vec4<f32>(0.0);
        var acc6_0 = vec4<f32>(0.0);
        var acc7_0 = vec4<f32>(0.0);
        var acc0_1 = vec4<f32>(0.0);
        var acc1_1 = vec4<f32>(0.0);
        var acc2_1 = vec4<f32>(0.0);
        var acc3_1 = vec4<f32>(0.0);
        var acc4_1 = vec4<f32>(0.0);
        var acc5_1 = vec4<f32>(0.0);
        var acc6_1 = vec4<f32>(0.0);
        var acc7_1 = vec4<f32>(0.0);
        var w = base + d.z + o;
        for (var i = 0u; i < d.x; i = i + 1u) {
            let w0_0 = param(w);
            let w0_1 = param(w + d.y);
            let w0_2 = param(w + 2u * d.y);
            let w0_3 = param(w + 3u * d.y);
            let w1_0 = param(w + 1u);
            let w1_1 = param(w + 1u + d.y);
            let w1_2 = param(w + 1u + 2u * d.y);
            let w1_3 = param(w + 1u + 3u * d.y);
            let a0 = (*i0)[i];
            acc0_0 = mac(acc0_0, a0, w0_0, w0_1, w0_2, w0_3);
            acc0_1 = mac(acc0_1, a0, w1_0, w1_1, w1_2, w1_3);
            let a1 = (*i1)[i];
            acc1_0 = mac(acc1_0, a1, w0_0, w0_1, w0_2, w0_3);
            acc1_1 = mac(acc1_1, a1, w1_0, w1_1, w1_2, w1_3);
            let a2 = (*i2)[i];
            acc2_0 = mac(acc2_0, a2, w0_0, w0_1, w0_2, w0_3);
            acc2_1 = mac(acc2_1, a2, w1_0, w1_1, w1_2, w1_3);
            let a3 = (*i3)[i];
            acc3_0 = mac(acc3_0, a3, w0_0, w0_1, w0_2, w0_3);
            acc3_1 = mac(acc3_1, a3, w1_0, w1_1, w1_2, w1_3);
            let a4 = (*i4)[i];
            acc4_0 = mac(acc4_0, a4, w0_0, w0_1, w0_2, w0_3);
            acc4_1 = mac(acc4_1, a4, w1_0, w1_1, w1_2, w1_3);
            let a5 = (*i5)[i];
            acc5_0 = mac(acc5_0, a5, w0_0, w0_1, w0_2, w0_3);
            acc5_1 = mac(acc5_1, a5, w1_0, w1_1, w1_2, w1_3);
            let a6 = (*i6)[i];
            acc6_0 = mac(acc6_0, a6, w0_0, w0_1, w0_2, w0_3);
            acc6_1 = mac(acc6_1, a6, w1_0, w1_1, w1_2, w1_3);
            let a7 = (*i7)[i];
            acc7_0 = mac(acc7_0, a7, w0_0, w0_1, w0_2, w0_3);
            acc7_1 = mac(acc7_1, a7, w1_0, w1_1, w1_2, w1_3);
            w = w + 4u * d.y;
        }
        var bias0 = vec4<f32>(0.0);
        var bias1 = vec4<f32>(0.0);
        if d.w != NO_BIAS {
            bias0 = param(base + d.w + o + 0u);
            bias1 = param(base + d.w + o + 1u);
        }
        (*o0)[o + 0u] = act(acc0_0 + bias0, hidden);
        (*o0)[o + 1u] = act(acc0_1 + bias1, hidden);
        (*o1)[o + 0u] = act(acc1_0 + bias0, hidden);
        (*o1)[o + 1u] = act(acc1_1 + bias1, hidden);
        (*o2)[o + 0u] = act(acc2_0 + bias0, hidden);
        (*o2)[o + 1u] = act(acc2_1 + bias1, hidden);
        (*o3)[o + 0u] = act(acc3_0 + bias0, hidden);
        (*o3)[o + 1u] = act(acc3_1 + bias1, hidden);
        (*o4)[o + 0u] = act(acc4_0 + bias0, hidden);
        (*o4)[o + 1u] = act(acc4_1 + bias1, hidden);
        (*o5)[o + 0u] = act(acc5_0 + bias0, hidden);
        (*o5)[o + 1u] = act(acc5_1 + bias1, hidden);
        (*o6)[o + 0u] = act(acc6_0 + bias0, hidden);
        (*o6)[o + 1u] = act(acc6_1 + bias1, hidden);
        (*o7)[o + 0u] = act(acc7_0 + bias0, hidden);
        (*o7)[o + 1u] = act(acc7_1 + bias1, hidden);
    }
}

var<workgroup> s_score: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let base = wg.y * net.stride;
    var score = vec2<f32>(0.0, 0.0);
    // row k (0..8) is (wg.x * ROWS + k) * 64 + t; its activations are in u_k
    // and v_k, one layer's input in one and its output in the other
    var u0: Row;
    var u1: Row;
    var u2: Row;
    var u3: Row;
    var u4: Row;
    var u5: Row;
    var u6: Row;
    var u7: Row;
    var v0: Row;
    var v1: Row;
    var v2: Row;
    var v3: Row;
    var v4: Row;
    var v5: Row;
    var v6: Row;
    var v7: Row;
    let inputs = net.layer[net.start].x;
    // row k of this invocation is first + 64 k
    let first = wg.x * ROWS * 64u + t;
    load_row(&u0, first + 0u, inputs);
    load_row(&u1, first + 64u, inputs);
    load_row(&u2, first + 128u, inputs);
    load_row(&u3, first + 192u, inputs);
    load_row(&u4, first + 256u, inputs);
    load_row(&u5, first + 320u, inputs);
    load_row(&u6, first + 384u, inputs);
    load_row(&u7, first + 448u, inputs);
    // layers alternate: l - start even reads u_k and writes v_k, odd the reverse
    for (var l = net.start; l < net.layers; l = l + 2u) {
        dense(l, base, &u0, &u1, &u2, &u3, &u4, &u5, &u6, &u7, &v0, &v1, &v2, &v3, &v4, &v5, &v6, &v7);
        if l + 1u < net.layers {
            dense(l + 1u, base, &v0, &v1, &v2, &v3, &v4, &v5, &v6, &v7, &u0, &u1, &u2, &u3, &u4, &u5, &u6, &u7);
        }
    }
    let in_v = (net.layers - net.start) % 2u == 1u;
    score = score + score_last(&u0, &v0, in_v, first + 0u);
    score = score + score_last(&u1, &v1, in_v, first + 64u);
    score = score + score_last(&u2, &v2, in_v, first + 128u);
    score = score + score_last(&u3, &v3, in_v, first + 192u);
    score = score + score_last(&u4, &v4, in_v, first + 256u);
    score = score + score_last(&u5, &v5, in_v, first + 320u);
    score = score + score_last(&u6, &v6, in_v, first + 384u);
    score = score + score_last(&u7, &v7, in_v, first + 448u);
    s_score[t] = score;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s / 2u) {
        if t < s {
            s_score[t] = s_score[t] + s_score[t + s];
        }
        workgroupBarrier();
    }
    if t == 0u {
        partials[wg.y * groups.x + wg.x] = s_score[0];
    }
}
