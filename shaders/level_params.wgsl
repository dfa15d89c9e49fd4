// level_params.wgsl: per (bit width, group), everything rounding needs: steps
// and their reciprocals, the midrise offset, and where lo and hi fall among the
// normal quantiles. Mirrors LevelParams::new in src/quant/reference.rs.
//
// Bindings (group 0):
//   0 stats:   array<GroupStats>   per group, or [row][group] when shape[2] is 1
//   1 z_table: array<f32>          from z_table.wgsl
//   2 bits:    array<u32>          the bit width of each row of params
//   3 params:  array<LevelParams>  out, [row][group]
//   4 shape:   array<u32, 4>       groups, rows, stats per row (0 or 1), 0
// A row is a bit width, or under --clip mse a (method, bit width) pair, each
// method with host-chosen ranges of its own.
// Dispatch: (ceil(groups / 64), rows, 1), workgroup 64.

@group(0) @binding(0) var<storage, read_write> stats: array<GroupStats>;
@group(0) @binding(1) var<storage, read_write> z_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> bit_widths: array<u32>;
@group(0) @binding(3) var<storage, read_write> params: array<LevelParams>;
@group(0) @binding(4) var<storage, read_write> shape: array<u32, 4>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let groups = shape[0];
    let g = id.x;
    if g >= groups {
        return;
    }
    let bits = bit_widths[id.y];
    // host-clipped ranges may differ per row (--clip mse)
    let s = stats[select(g, id.y * groups + g, shape[2] == 1u)];
    let k = 1u << bits;
    let range = s.hi - s.lo;
    var p = LevelParams(s.lo, s.hi, 0.0, 0.0, 0.0, 0.0, 0.0, s.mean, s.sd, bits, 0u, 0u, 0u, 0u, 0u, 0u);
    // !(a >= b) also catches NaN ranges
    if !(range >= bitcast<f32>(0x0D800000u)) {
        p.degenerate = 1u;
    } else {
        p.step = div(range, f32(k - 1u));
        p.inv_step = recip(p.step);
        p.hstep = range * bitcast<f32>((127u - bits) << 23u);
        p.inv_hstep = recip(p.hstep);
        p.k0 = floor_div(s.lo, p.hstep, p.inv_hstep);
        if bits >= 2u {
            let m = k - 2u;
            var lo = 0u;
            var hi = m;
            while lo < hi {
                let mid = lo + (hi - lo) / 2u;
                if normal_q(p, mid) < s.lo { lo = mid + 1u; } else { hi = mid; }
            }
            p.below_lo = lo;
            lo = 0u;
            hi = m;
            while lo < hi {
                let mid = lo + (hi - lo) / 2u;
                if normal_q(p, mid) <= s.hi { lo = mid + 1u; } else { hi = mid; }
            }
            p.upto_hi = lo;
        }
    }
    params[id.y * groups + g] = p;
}
