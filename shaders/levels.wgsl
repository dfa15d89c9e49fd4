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
            let a = p.below_lo;
            let c = p.upto_hi;
            if t < a {
                return normal_q(p, t);
            } else if t == a {
                return p.lo;
            } else if t <= c {
                return normal_q(p, t - 1u);
            } else if t == c + 1u {
                return p.hi;
            }
            return normal_q(p, t - 2u);
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
        // count in the z table (loads and compares: any rounding is fine for a
        // guess), then step to the exact count with the q_i (reference.rs).
        let m = last - 1u;
        let base = z_offset(p.bits);
        let zw = (w - p.mean) / p.sd;
        var a = 0u;
        var b = m;
        while a < b {
            let mid = a + (b - a) / 2u;
            if z_table[base + mid] <= zw {
                a = mid + 1u;
            } else {
                b = mid;
            }
        }
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

fn quant_code(p: LevelParams, method: u32, w: f32, u: f32) -> u32 {
    if p.degenerate != 0u {
        return 0u;
    }
    let lset = method_level_set(method);
    let last = (1u << p.bits) - 1u;
    if lset == LEVEL_MIDRISE {
        let k = floor(w * p.inv_hstep);
        return u32(clamp(k - p.k0, 0.0, f32(last)));
    }
    let j = bracket(p, lset, w);
    if j == last {
        return j;
    }
    let lj = level(p, lset, j);
    let lk = level(p, lset, j + 1u);
    var up: bool;
    if method_is_stochastic(method) {
        up = w > lj && u * (lk - lj) < w - lj;
    } else {
        up = (w - lj) >= (lk - w);
    }
    return j + select(0u, 1u, up);
}

fn quant_value(p: LevelParams, method: u32, code: u32) -> f32 {
    if p.degenerate != 0u {
        return p.lo;
    }
    return level(p, method_level_set(method), code);
}
