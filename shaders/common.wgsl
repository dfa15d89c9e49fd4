// common.wgsl: the quantizer specification's arithmetic, shared by every kernel
// (prepended to each kernel's source by src/gpu/kernels.rs).
//
// Mirrors src/quant/exact.rs and src/quant/reference.rs operation for operation,
// so that every GPU and the CPU produce the same bits. Vulkan rounds f32 +, -
// and * correctly; WGSL's /, sqrt and log are driver-defined, so they are built
// here from +, - and *. And compilers differ on fusing a * b + c: NVIDIA fuses,
// lavapipe computes even fma() as a multiply and an add. Hence the rule: no
// inexact product is ever an operand of + or - (nor of madd, which subtracts
// inside): raw products feed only comparisons, floor and stores, products that
// feed arithmetic are madd(a, b, 0.0), and madd's four partial products (12-bit
// halves) are exact, so no fusion can change a bit. Powers of two are exempt.
// Constants are bit patterns so both sides parse the same value.

struct LevelParams {
    lo: f32,
    hi: f32,
    step: f32,       // uniform: (hi - lo) / (K - 1)
    inv_step: f32,
    hstep: f32,      // histogram bin width = midrise delta = (hi - lo) / K
    inv_hstep: f32,
    k0: f32,         // midrise: floor(lo / delta)
    mean: f32,
    sd: f32,
    bits: u32,
    below_lo: u32,   // normal: quantiles below lo
    upto_hi: u32,    // normal: quantiles at or below hi
    degenerate: u32, // 1 when hi - lo < 2^-100
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct GroupStats {
    lo: f32,
    hi: f32,
    mean: f32,
    sd: f32,
}

// One partial result of a reduction: min, max and sum of a block.
struct Partial {
    lo: f32,
    hi: f32,
    sum: f32,
    pad: f32,
}

const REDUCE_BLOCK: u32 = 256u;
// Neutral elements of min and max over finite weights.
const F32_MAX: f32 = 3.40282347e38;

const LEVEL_UNIFORM: u32 = 0u;
const LEVEL_HISTOGRAM: u32 = 1u;
const LEVEL_NORMAL: u32 = 2u;
const LEVEL_MIDRISE: u32 = 3u;
// a table of levels built on the host: lloyd and kde
const LEVEL_TABLE: u32 = 4u;

// Method numbers are the positions in Method::ALL (src/quant/mod.rs).
fn method_level_set(method: u32) -> u32 {
    switch method {
        case 0u, 1u: { return LEVEL_UNIFORM; }
        case 2u, 3u: { return LEVEL_HISTOGRAM; }
        case 4u, 5u: { return LEVEL_NORMAL; }
        case 7u, 8u, 11u, 12u: { return LEVEL_TABLE; }
        case 9u, 10u: { return LEVEL_UNIFORM; }
        default: { return LEVEL_MIDRISE; }
    }
}

// Stochastic rounding (up with probability (w - L(j)) / (L(j+1) - L(j))).
fn method_is_stochastic(method: u32) -> bool {
    return method == 1u || method == 3u || method == 5u || method == 8u || method == 12u;
}

// Triangular dither before nearest on the uniform set (9: kept, 10: subtracted).
fn method_is_dither(method: u32) -> bool {
    return method == 9u || method == 10u;
}

// Subnormals read as zero, on GPUs that keep them too.
fn flush(w: f32) -> f32 {
    return select(w, 0.0 * w, abs(w) < bitcast<f32>(0x00800000u));
}

// The specification's constants (CONSTANTS in src/quant/exact.rs), read from a
// buffer rather than written as literals, because compilers fold and
// reassociate arithmetic on literals. The K_<NAME> indices are generated from
// the Rust table (src/gpu/kernels.rs).
@group(1) @binding(0) var<storage, read_write> K: array<f32>;

fn kc(i: u32) -> f32 {
    return K[i];
}

// a split into a high part of at most 12 significant bits and the exact rest
fn split_hi(a: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(a) & 0xFFFFF000u);
}

// c + a * b with exact partial products: ((ah bh + (ah bl + al bh)) + al bl) + c
fn madd(a: f32, b: f32, c: f32) -> f32 {
    let ah = split_hi(a);
    let al = a - ah;
    let bh = split_hi(b);
    let bl = b - bh;
    return ((ah * bh + (ah * bl + al * bh)) + al * bl) + c;
}

fn recip(x: f32) -> f32 {
    var y = bitcast<f32>(0x7EF311C3u - bitcast<u32>(x));
    for (var i = 0u; i < 4u; i++) {
        let e = madd(-x, y, kc(K_ONE));
        y = madd(y, e, y);
    }
    return y;
}

fn div(a: f32, b: f32) -> f32 {
    return madd(a, recip(b), kc(K_ZERO));
}

// x - a b from exact partial products, the largest first (exact.rs: minus_product)
fn minus_product(x: f32, a: f32, b: f32) -> f32 {
    let ah = split_hi(a);
    let al = a - ah;
    let bh = split_hi(b);
    let bl = b - bh;
    return (((x - ah * bh) - ah * bl) - al * bh) - al * bl;
}

// floor(x / d) for d > 0 with inv = recip(d): floor(x * inv), corrected by
// the sign of x - k d (exact.rs: floor_div)
fn floor_div(x: f32, d: f32, inv: f32) -> f32 {
    let f = floor(x * inv);
    if minus_product(x, f, d) < 0.0 {
        return f - 1.0;
    }
    if minus_product(x, f + 1.0, d) >= 0.0 {
        return f + 1.0;
    }
    return f;
}

fn sqrt_exact(x: f32) -> f32 {
    if x <= 0.0 {
        return 0.0;
    }
    let h = 0.5 * x;
    var y = bitcast<f32>(0x5F375A86u - (bitcast<u32>(x) >> 1u));
    for (var i = 0u; i < 4u; i++) {
        let r = madd(y, y, kc(K_ZERO));
        let t = madd(-h, r, kc(K_THREE_HALVES));
        y = madd(y, t, kc(K_ZERO));
    }
    let s = madd(x, y, kc(K_ZERO));
    let e = madd(-s, s, x);
    return madd(0.5 * y, e, s);
}

fn ln_exact(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = i32((bits >> 23u) & 0xFFu) - 127;
    var m = bitcast<f32>((bits & 0x007FFFFFu) | 0x3F800000u);
    if m > bitcast<f32>(0x3FB504F3u) { // sqrt(2)
        m = m * 0.5;
        e = e + 1;
    }
    let s = div(m - kc(K_ONE), m + kc(K_ONE));
    let s2 = madd(s, s, kc(K_ZERO));
    var p = kc(K_LN_C13);
    p = madd(p, s2, kc(K_LN_C11));
    p = madd(p, s2, kc(K_LN_C9));
    p = madd(p, s2, kc(K_LN_C7));
    p = madd(p, s2, kc(K_LN_C5));
    p = madd(p, s2, kc(K_LN_C3));
    p = madd(p, s2, kc(K_ONE));
    // ln x = e ln 2 + 2 s p; 2 s is exact
    return madd(2.0 * s, p, madd(f32(e), kc(K_LN2), kc(K_ZERO)));
}

// Wichura's AS 241 PPND7 inverse normal CDF, lower half mirrored (exact.rs).
fn inv_norm_cdf(p_in: f32) -> f32 {
    let upper = p_in > 0.5;
    let p = select(p_in, kc(K_ONE) - p_in, upper);
    let q = p - kc(K_HALF);
    var z: f32;
    if abs(q) <= 0.425 {
        let r = madd(-q, q, kc(K_SPLIT1));
        var n = kc(K_A3);
        n = madd(n, r, kc(K_A2));
        n = madd(n, r, kc(K_A1));
        n = madd(n, r, kc(K_A0));
        var d = kc(K_B3);
        d = madd(d, r, kc(K_B2));
        d = madd(d, r, kc(K_B1));
        d = madd(d, r, kc(K_ONE));
        z = div(madd(q, n, kc(K_ZERO)), d);
    } else {
        var r = sqrt_exact(-ln_exact(p));
        if r <= 5.0 {
            r = r - kc(K_SPLIT2);
            var n = kc(K_C3);
            n = madd(n, r, kc(K_C2));
            n = madd(n, r, kc(K_C1));
            n = madd(n, r, kc(K_C0));
            var d = kc(K_D2);
            d = madd(d, r, kc(K_D1));
            d = madd(d, r, kc(K_ONE));
            z = -div(n, d);
        } else {
            r = r - kc(K_FIVE);
            var n = kc(K_E3);
            n = madd(n, r, kc(K_E2));
            n = madd(n, r, kc(K_E1));
            n = madd(n, r, kc(K_E0));
            var d = kc(K_F2);
            d = madd(d, r, kc(K_F1));
            d = madd(d, r, kc(K_ONE));
            z = -div(n, d);
        }
    }
    return select(z, -z, upper);
}

// z_i = inv_norm_cdf(i / (K - 1)) for the lower half; the upper half mirrors
// it, z_i = -z_{K-1-i}, so every normal level set of symmetric data is symmetric.
fn z_entry(i: u32, k: u32) -> f32 {
    let last = k - 1u;
    if 2u * i < last {
        return inv_norm_cdf(div(f32(i), f32(last)));
    }
    return -inv_norm_cdf(div(f32(last - i), f32(last)));
}

// Offset of b bits' quantiles in the z table: sum over b' < b of (2^b' - 2).
fn z_offset(bits: u32) -> u32 {
    return (1u << bits) - 2u * bits;
}

// O'Neill's PCG step as a 32-bit hash (Jarzynski and Olano, 2020).
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The stream (quant::stream_id: the method's salt and the bit width) is built on
// the host, which hands the kernel each variant's key.
fn uniform_draw(seed: u32, stream: u32, tensor: u32, element: u32) -> f32 {
    return uniform_from_key(pcg_hash(tensor ^ pcg_hash(stream ^ pcg_hash(seed))), element);
}

// uniform_draw of an element from its variant's key (quant::draw_key): the
// quantize kernel gets the key in its variant table and hashes once per element.
fn uniform_from_key(key: u32, element: u32) -> f32 {
    return f32(pcg_hash(element ^ key) >> 8u) * bitcast<f32>(0x33800000u); // 2^-24
}
