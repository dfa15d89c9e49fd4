// levels.wgsl: level sets and rounding, shared by level_params.wgsl and
// quantize.wgsl (appended after common.wgsl by src/gpu/kernels.rs). Expects the
// kernel to declare `z_table: array<f32>` (the standard normal quantiles of
// every bit width, laid out by z_offset).
//
// Mirrors LevelParams::{level, bracket, code, value} in src/quant/reference.rs.

fn normal_q(p: LevelParams, i: u32) -> f32 {
    return madd(p.sd, z_table[z_offset(p.bits) + i], p.mean);
}

// Level t of a level set (midrise: the value of code t).
fn level(p: LevelParams, lset: u32, t: u32) -> f32 {
    let k = 1u << p.bits;
    switch lset {
        case 0u: {
            if t == k - 1u {
                return p.hi;
            }
            return madd(f32(t), p.step, p.lo);
        }
        case 1u: {
            return madd(f32(t) + 0.5, p.hstep, p.lo);
        }
        case 2u: {
            // q_0..q_{a-1}, lo, q_a..q_{c-1}, hi, q_c..: one table read
            // whichever case (c >= a), so a SIMD compiler pays for one
            let a = p.below_lo;
            let c = p.upto_hi;
            let q = normal_q(p, select(select(t - 2u, t - 1u, t <= c), t, t < a));
            if t == a {
                return p.lo;
            }
            if t == c + 1u {
                return p.hi;
            }
            return q;
        }
        default: {
            return (p.k0 + f32(t) + 0.5) * p.hstep;
        }
    }
}

// The largest t with level(t) <= w, or 0 when every level exceeds w.
fn bracket(p: LevelParams, lset: u32, w: f32) -> u32 {
    let last = (1u << p.bits) - 1u;
    if lset == LEVEL_NORMAL {
        if w < p.lo || w > p.hi || p.sd <= 0.0 {
            // binary search: the count of t in 0..last with level(t + 1) <= w
            var lo = 0u;
            var hi = last;
            while lo < hi {
                let mid = lo + (hi - lo) / 2u;
                if level(p, lset, mid + 1u) <= w {
                    lo = mid + 1u;
                } else {
                    hi = mid;
                }
            }
            return lo;
        }
        // w in [lo, hi]: the bracket is #{q_i <= w} + (w >= hi). Guess the
        // count from the normal CDF, #{i : i/(K-1) <= Φ(zw)} (Abramowitz and
        // Stegun 7.1.26, |error| < 1.5e-7: a step or two off at 16 bits), then
        // step to the exact count with the q_i, as reference.rs does from its
        // z-table search. Any rounding is fine for a guess; the steps decide.
        let m = last - 1u;
        let zw = (w - p.mean) / p.sd;
        let x = abs(zw) * 0.70710678;
        let s = 1.0 / (1.0 + 0.3275911 * x);
        let poly = ((((1.061405429 * s - 1.453152027) * s + 1.421413741) * s - 0.284496736) * s + 0.254829592) * s;
        let phi = 0.5 + 0.5 * sign(zw) * (1.0 - poly * exp(-x * x));
        let a = u32(clamp(floor(phi * f32(last)), 0.0, f32(m)));
        var j = a;
        loop {
            if j < m && normal_q(p, j) <= w {
                j = j + 1u;
            } else {
                break;
            }
        }
        loop {
            if j > 0u && normal_q(p, j - 1u) > w {
                j = j - 1u;
            } else {
                break;
            }
        }
        return min(j + select(0u, 1u, w >= p.hi), last);
    }
    // evenly spaced levels: an arithmetic guess, then exact steps to the bracket
    var g: f32;
    if lset == LEVEL_UNIFORM {
        g = (w - p.lo) * p.inv_step;
    } else {
        g = (w - p.lo) * p.inv_hstep - 0.5;
    }
    var t = u32(clamp(floor(g), 0.0, f32(last)));
    loop {
        if t < last && level(p, lset, t + 1u) <= w {
            t = t + 1u;
        } else {
            break;
        }
    }
    loop {
        if t > 0u && level(p, lset, t) > w {
            t = t - 1u;
        } else {
            break;
        }
    }
    return t;
}

struct Rounded {
    code: u32,
    value: f32,
}

// The code of w and its level (the quantized weight): the levels compared
// while rounding are the ones returned, so each is computed once.
fn round_weight(p: LevelParams, method: u32, w: f32, u: f32) -> Rounded {
    if p.degenerate != 0u {
        return Rounded(0u, p.lo);
    }
    let lset = method_level_set(method);
    let last = (1u << p.bits) - 1u;
    if lset == LEVEL_MIDRISE {
        let k = floor_div(w, p.hstep, p.inv_hstep);
        let code = u32(clamp(k - p.k0, 0.0, f32(last)));
        return Rounded(code, level(p, lset, code));
    }
    let j = bracket(p, lset, w);
    let lj = level(p, lset, j);
    if j == last {
        return Rounded(j, lj);
    }
    return round_between(method, w, u, j, lj, level(p, lset, j + 1u));
}

// Rounding between L(j) = lj <= w and L(j + 1) = lk: nearest (an exact tie up)
// or stochastic (up with probability (w - lj) / (lk - lj)).
fn round_between(method: u32, w: f32, u: f32, j: u32, lj: f32, lk: f32) -> Rounded {
    var up: bool;
    if method_is_stochastic(method) {
        up = w > lj && u * (lk - lj) < w - lj;
    } else {
        up = (w - lj) >= (lk - w);
    }
    return Rounded(j + select(0u, 1u, up), select(lj, lk, up));
}
