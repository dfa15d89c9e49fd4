// score_mlp.wgsl: a dense net's whole forward pass and its test metric for
// many variants in one dispatch. An invocation runs ROWS evaluation rows of
// one variant through the layers from `start` on (dense, ReLU between layers,
// none after the last), its activations in private memory, and scores them;
// the workgroup sums the scores of its 64 * ROWS rows. Every invocation of a
// workgroup reads the same variant's weights, and each weight it loads serves
// its ROWS rows.
//
// ROWS and HALF are set by the host per adapter and net (src/eval/fused.rs):
// HALF = vec4 blocks of the widest layer; ROWS = 1 on hardware GPUs, 8 on
// CPU adapters, where every storage load is a per-lane loop (Mesa 22.3's
// lavapipe), so sharing a load between rows is what makes the kernel fast
// (measured: 8 rows 2.6x the speed of 1, 16 slower than 8).
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
// Dispatch: (ceil(rows / (64 * ROWS)), variants, 1), workgroup 64.

const ROWS: u32 = 8u;
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
    // row k is (wg.x * ROWS + k) * 64 + t; its activations are two halves
    // at h[k * 2 * HALF ..]: the layer's input at `src`, its output at HALF - src
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
            var acc: array<vec4<f32>, ROWS>;
            var w = base + d.z + o;
            for (var i = 0u; i < d.x; i = i + 1u) {
                let w0 = params[w];
                let w1 = params[w + d.y];
                let w2 = params[w + 2u * d.y];
                let w3 = params[w + 3u * d.y];
                for (var k = 0u; k < ROWS; k = k + 1u) {
                    let a = h[k * 2u * HALF + src + i];
                    acc[k] = acc[k] + a.x * w0 + a.y * w1 + a.z * w2 + a.w * w3;
                }
                w = w + 4u * d.y;
            }
            for (var k = 0u; k < ROWS; k = k + 1u) {
                var y = acc[k];
                if d.w != NO_BIAS {
                    y = y + params[base + d.w + o];
                }
                if hidden {
                    y = max(y, vec4<f32>(0.0));
                }
                h[k * 2u * HALF + dst + o] = y;
            }
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
