// score_mlp.wgsl: a dense net's whole forward pass and its test metric for
// many variants in one dispatch. An invocation runs 8 evaluation rows of one
// variant through the layers from `start` on (dense, ReLU between layers, none
// after the last), their activations in private memory, and scores them; the
// workgroup sums the scores of its 512 rows. Every invocation of a workgroup
// reads the same variant's weights, and each weight it loads serves its 8 rows
// (register blocking: on lavapipe, Mesa 22.3, every storage load is a loop
// over the lanes, so sharing loads is what makes the kernel fast). The 8 rows
// are unrolled by hand in the layer loop: lavapipe did not unroll a loop over
// them, and the unrolled form measured 1.5x its speed (median of 3
// interleaved runs; 1.8x best against best) (8 rows measured
// faster than 1, 4 and 16). HALF, the vec4 blocks of the widest layer, is set
// by the host (src/eval/fused.rs).
//
// perf on lavapipe puts the largest share of the time in the weight loads:
// each is a loop over the 8 lanes with a bounds check per lane, though every
// lane reads the same address. Only a uniform-buffer load at a constant
// offset becomes one scalar load there. A form with the net written out by
// the host and the weights in a uniform buffer (git branch
// written-out-scorer) ran 1.06-1.13x this kernel back to back, within the
// VM's run-to-run noise, and was not merged (README, Speed).
//
// Widths are padded to multiples of 4 with zero weights (the host packs them
// so) and the arithmetic runs on vec4 blocks. Each output is
// sum_i h[i] * W[i][o] in order of i, then + bias.
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
//   3 params:   array<vec4<f32>>    [variant][stride] layers start.. packed:
//                                   per layer W [inputs padded][outputs padded]
//                                   row-major, then its bias [outputs padded]
//   4 partials: array<vec2<f32>>    out, [variant][workgroups along x]
// Dispatch: (ceil(rows / 512), variants, 1), workgroup 64.

const ROWS: u32 = 8u; // the layer loop below is unrolled for exactly 8
const HALF: u32 = 32u;
const NO_BIAS: u32 = 0xffffffffu;

struct Net {
    rows: u32,
    start: u32,
    layers: u32,
    stride: u32,          // vec4s per variant in `params`
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
@group(0) @binding(3) var<storage, read_write> params: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> partials: array<vec2<f32>>;

var<workgroup> s_score: array<vec2<f32>, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let base = wg.y * net.stride;
    var score = vec2<f32>(0.0, 0.0);
    // row k (0..8) is (wg.x * ROWS + k) * 64 + t; its activations are two
    // halves at h[k * 2 * HALF ..]: the layer's input at `src`, its output at
    // HALF - src
    var h: array<vec4<f32>, 2 * HALF * ROWS>;
    let inputs = net.layer[net.start].x;
    for (var k = 0u; k < ROWS; k = k + 1u) {
        let row = min((wg.x * ROWS + k) * 64u + t, net.rows - 1u);
        for (var i = 0u; i < inputs; i = i + 1u) {
            h[k * 2u * HALF + i] = x[row * inputs + i];
        }
    }
    var src = 0u;
    for (var l = net.start; l < net.layers; l = l + 1u) {
        let d = net.layer[l];
        let dst = HALF - src;
        let hidden = l + 1u < net.layers;
        for (var o = 0u; o < d.y; o = o + 1u) {
            var acc0 = vec4<f32>(0.0);
            var acc1 = vec4<f32>(0.0);
            var acc2 = vec4<f32>(0.0);
            var acc3 = vec4<f32>(0.0);
            var acc4 = vec4<f32>(0.0);
            var acc5 = vec4<f32>(0.0);
            var acc6 = vec4<f32>(0.0);
            var acc7 = vec4<f32>(0.0);
            var w = base + d.z + o;
            for (var i = 0u; i < d.x; i = i + 1u) {
                let w0 = params[w];
                let w1 = params[w + d.y];
                let w2 = params[w + 2u * d.y];
                let w3 = params[w + 3u * d.y];
                let a0 = h[0u * 2u * HALF + src + i];
                acc0 = acc0 + a0.x * w0 + a0.y * w1 + a0.z * w2 + a0.w * w3;
                let a1 = h[1u * 2u * HALF + src + i];
                acc1 = acc1 + a1.x * w0 + a1.y * w1 + a1.z * w2 + a1.w * w3;
                let a2 = h[2u * 2u * HALF + src + i];
                acc2 = acc2 + a2.x * w0 + a2.y * w1 + a2.z * w2 + a2.w * w3;
                let a3 = h[3u * 2u * HALF + src + i];
                acc3 = acc3 + a3.x * w0 + a3.y * w1 + a3.z * w2 + a3.w * w3;
                let a4 = h[4u * 2u * HALF + src + i];
                acc4 = acc4 + a4.x * w0 + a4.y * w1 + a4.z * w2 + a4.w * w3;
                let a5 = h[5u * 2u * HALF + src + i];
                acc5 = acc5 + a5.x * w0 + a5.y * w1 + a5.z * w2 + a5.w * w3;
                let a6 = h[6u * 2u * HALF + src + i];
                acc6 = acc6 + a6.x * w0 + a6.y * w1 + a6.z * w2 + a6.w * w3;
                let a7 = h[7u * 2u * HALF + src + i];
                acc7 = acc7 + a7.x * w0 + a7.y * w1 + a7.z * w2 + a7.w * w3;
                w = w + 4u * d.y;
            }
            var bias = vec4<f32>(0.0);
            if d.w != NO_BIAS {
                bias = params[base + d.w + o];
            }
            h[0u * 2u * HALF + dst + o] = select(acc0 + bias, max(acc0 + bias, vec4<f32>(0.0)), hidden);
            h[1u * 2u * HALF + dst + o] = select(acc1 + bias, max(acc1 + bias, vec4<f32>(0.0)), hidden);
            h[2u * 2u * HALF + dst + o] = select(acc2 + bias, max(acc2 + bias, vec4<f32>(0.0)), hidden);
            h[3u * 2u * HALF + dst + o] = select(acc3 + bias, max(acc3 + bias, vec4<f32>(0.0)), hidden);
            h[4u * 2u * HALF + dst + o] = select(acc4 + bias, max(acc4 + bias, vec4<f32>(0.0)), hidden);
            h[5u * 2u * HALF + dst + o] = select(acc5 + bias, max(acc5 + bias, vec4<f32>(0.0)), hidden);
            h[6u * 2u * HALF + dst + o] = select(acc6 + bias, max(acc6 + bias, vec4<f32>(0.0)), hidden);
            h[7u * 2u * HALF + dst + o] = select(acc7 + bias, max(acc7 + bias, vec4<f32>(0.0)), hidden);
        }
        src = dst;
    }
    for (var k = 0u; k < ROWS; k = k + 1u) {
        let row = (wg.x * ROWS + k) * 64u + t;
        if row >= net.rows {
            continue;
        }
        let out = k * 2u * HALF + src;
        if net.task == 0u {
            let label = u32(truth[row]);
            let mine = h[out + label / 4u][label % 4u];
            var best = 0u;
            var top = h[out].x;
            var above = 0u;
            for (var o = 0u; o < net.outputs; o = o + 1u) {
                let y = h[out + o / 4u][o % 4u];
                if y > top {
                    top = y;
                    best = o;
                }
                if y > mine {
                    above = above + 1u;
                }
            }
            score = score + vec2<f32>(select(0.0, 1.0, best == label), select(0.0, 1.0, above < 5u));
        } else {
            let err = h[out].x * net.target_std + net.target_mean - truth[row];
            score = score + vec2<f32>(err * err, abs(err));
        }
    }
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
