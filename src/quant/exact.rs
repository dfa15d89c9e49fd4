//! Reproducible f32 arithmetic: the only operations the quantizer specification
//! uses, so that the WGSL kernels, on any GPU, and this CPU reference produce
//! the same bits.
//!
//! Vulkan guarantees correctly rounded f32 `+`, `-` and `*`; comparisons,
//! `floor` and bit casts are exact. Two things are *not* the same everywhere:
//! - WGSL's `/`, `sqrt`, `log` and `exp` have driver-defined error (a division
//!   may be 2.5 ULP off), so the specification builds them from `+`, `-`, `*`.
//! - `fma` and contraction: a shader compiler may fuse `a * b + c` into one
//!   rounding (NVIDIA does), or not (lavapipe computes even WGSL's `fma()` as a
//!   multiply and an add, measured here), while Rust never fuses.
//!
//! So the rule of this module and of shaders/common.wgsl: **an inexact product
//! is never an operand of an addition or subtraction** (nor of [`madd`], which
//! subtracts inside). Raw products feed only comparisons, `floor` and stores;
//! products that feed arithmetic are `madd(a, b, 0)`. [`madd`] splits both
//! factors into 12-bit halves whose four partial products are exact, so fusing
//! any of them into an addition cannot change a bit. Products by powers of two
//! are exact and exempt. Constants are given as bit patterns.
//!
//! Mirrors: shaders/common.wgsl (keep the two in step, operation for operation).

/// The specification's literal constants, by name, as f32 bit patterns. The
/// kernels read them from a storage buffer (bind group 1, see
/// src/gpu/kernels.rs) instead of from literals: shader compilers fold and
/// reassociate arithmetic on literals (Mesa's NIR turned `madd(x, 1.37, 0.5)`
/// into a different order of additions here) but cannot see through a load.
/// Products by the literal powers of two 0.5 and 2 are exact and stay literal.
pub const CONSTANTS: [(&str, u32); 33] = [
    ("ZERO", 0x0000_0000),
    ("ONE", 0x3F80_0000),
    ("THREE_HALVES", 0x3FC0_0000),
    ("HALF", 0x3F00_0000),
    ("LN2", 0x3F31_7218),
    // atanh series of ln: 1/13, 1/11, 1/9, 1/7, 1/5, 1/3
    ("LN_C13", 0x3D9D_89D9),
    ("LN_C11", 0x3DBA_2E8C),
    ("LN_C9", 0x3DE3_8E39),
    ("LN_C7", 0x3E12_4925),
    ("LN_C5", 0x3E4C_CCCD),
    ("LN_C3", 0x3EAA_AAAB),
    // Wichura's AS 241 PPND7 (highest degree first)
    ("SPLIT1", 0x3E38_F5C3), // 0.180625
    ("A3", 0x426C_7000),
    ("A2", 0x431F_4A88),
    ("A1", 0x4249_BCB2),
    ("A0", 0x4058_C6C8),
    ("B3", 0x4286_6008),
    ("B2", 0x429D_83F9),
    ("B1", 0x418F_294F),
    ("C3", 0x3E2E_52ED),
    ("C2", 0x3FA7_42E1),
    ("C1", 0x4030_6FAA),
    ("C0", 0x3FB6_3331),
    ("D2", 0x3DF6_315C),
    ("D1", 0x3F3C_AC24),
    ("E3", 0x3C8E_06C1),
    ("E2", 0x3EDB_7C55),
    ("E1", 0x4045_32D0),
    ("E0", 0x40D5_0D8F),
    ("F2", 0x3C48_D6A1),
    ("F1", 0x3E77_C954),
    ("SPLIT2", 0x3FCC_CCCD), // 1.6
    ("FIVE", 0x40A0_0000),
];

/// Index of every constant in [`CONSTANTS`] (the kernels get the same names as
/// `K_<NAME>`, generated from the table).
pub mod k {
    pub const ZERO: usize = 0;
    pub const ONE: usize = 1;
    pub const THREE_HALVES: usize = 2;
    pub const HALF: usize = 3;
    pub const LN2: usize = 4;
    pub const LN_SERIES: std::ops::Range<usize> = 5..11;
    pub const SPLIT1: usize = 11;
    pub const A: std::ops::Range<usize> = 12..16;
    pub const B: std::ops::Range<usize> = 16..19;
    pub const C: std::ops::Range<usize> = 19..23;
    pub const D: std::ops::Range<usize> = 23..25;
    pub const E: std::ops::Range<usize> = 25..29;
    pub const F: std::ops::Range<usize> = 29..31;
    pub const SPLIT2: usize = 31;
    pub const FIVE: usize = 32;
}

/// The value of constant `i`.
#[inline]
pub fn kc(i: usize) -> f32 {
    f32::from_bits(CONSTANTS[i].1)
}

/// The constants as the kernels' storage buffer holds them.
pub fn constants_buffer() -> Vec<f32> {
    CONSTANTS.iter().map(|(_, b)| f32::from_bits(*b)).collect()
}

/// Splits `a` into a high part with at most 12 significant bits (the mantissa's
/// low 12 bits cleared) and the exact remainder, which also has at most 12.
#[inline]
pub fn split(a: f32) -> (f32, f32) {
    let hi = f32::from_bits(a.to_bits() & 0xFFFF_F000);
    (hi, a - hi)
}

/// c + a * b with every partial product exact: ((ah·bh + (ah·bl + al·bh)) + al·bl) + c.
/// The same bits whether or not a compiler fuses multiplies into additions.
/// `c` is added last because `c` is often a literal, and shader compilers
/// reassociate `(x + literal) + y` into `(x + y) + literal` (Mesa's NIR does):
/// a literal that is the last addend of a result that is never itself an addend
/// leaves them nothing to move.
#[inline]
pub fn madd(a: f32, b: f32, c: f32) -> f32 {
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    ((ah * bh + (ah * bl + al * bh)) + al * bl) + c
}

/// Reciprocal of a positive normal `x` (the only inputs the specification
/// passes: counts, level counts and value ranges): a bit-level first guess and
/// four Newton steps, accurate to about 1 ULP.
pub fn recip(x: f32) -> f32 {
    let mut y = f32::from_bits(0x7EF3_11C3u32.wrapping_sub(x.to_bits()));
    for _ in 0..4 {
        let e = madd(-x, y, kc(k::ONE));
        y = madd(y, e, y);
    }
    y
}

/// `a / b` for positive normal `b`, as `a * recip(b)` (through `madd`, so the
/// result may feed further arithmetic).
pub fn div(a: f32, b: f32) -> f32 {
    madd(a, recip(b), kc(k::ZERO))
}

/// x - a·b from exact partial products, the largest first:
/// (((x - ah·bh) - ah·bl) - al·bh) - al·bl. Its sign is exact when `a` has at
/// most 12 significant bits (al = 0): where x - a·b is near 0, x is within a
/// factor 2 of ah·bh, so the first subtraction is exact and the second is the
/// only rounding. (Fusing any of these exact products into its subtraction
/// changes nothing.)
pub fn minus_product(x: f32, a: f32, b: f32) -> f32 {
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    (((x - ah * bh) - ah * bl) - al * bh) - al * bl
}

/// The integer floor(x / d) for a positive normal `d` with reciprocal `inv`
/// ([`recip`]`(d)`): floor(x * inv), which an `inv` an ULP off, or the
/// product's rounding, can put one too low or too high near a whole x / d;
/// checked and corrected by the sign of x - k·d ([`minus_product`]). Exact
/// for every x when the floor has at most 12 significant bits.
pub fn floor_div(x: f32, d: f32, inv: f32) -> f32 {
    // f ± 1 is integer arithmetic below 2^24, exact however a shader compiler
    // reorders it: the literal needs no constants buffer
    let f = (x * inv).floor();
    if minus_product(x, f, d) < 0.0 {
        f - 1.0
    } else if minus_product(x, f + 1.0, d) >= 0.0 {
        f + 1.0
    } else {
        f
    }
}

/// Square root of a non-negative `x` (0 for 0): an inverse square root by bit
/// guess and Newton steps, then one correction of the root itself.
pub fn sqrt(x: f32) -> f32 {
    if x <= 0.0 {
        return 0.0;
    }
    let h = 0.5 * x;
    let mut y = f32::from_bits(0x5F37_5A86u32.wrapping_sub(x.to_bits() >> 1));
    for _ in 0..4 {
        let r = madd(y, y, kc(k::ZERO));
        let t = madd(-h, r, kc(k::THREE_HALVES));
        y = madd(y, t, kc(k::ZERO));
    }
    let s = madd(x, y, kc(k::ZERO));
    let e = madd(-s, s, x);
    madd(0.5 * y, e, s)
}

/// Natural log of a positive normal `x`: x = m * 2^e with m in [sqrt(1/2), sqrt(2)),
/// ln m = 2 atanh(s), s = (m - 1) / (m + 1), by its series to s^13 (|s| <= 0.172,
/// truncation below 1e-12).
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xFF) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    if m > f32::from_bits(0x3FB5_04F3) {
        // sqrt(2); halving is exact
        m *= 0.5;
        e += 1;
    }
    let s = div(m - kc(k::ONE), m + kc(k::ONE));
    let s2 = madd(s, s, kc(k::ZERO));
    let mut p = kc(k::LN_SERIES.start);
    for c in k::LN_SERIES.skip(1) {
        p = madd(p, s2, kc(c));
    }
    p = madd(p, s2, kc(k::ONE));
    // ln x = e ln 2 + 2 s p; 2 s is exact
    madd(2.0 * s, p, madd(e as f32, kc(k::LN2), kc(k::ZERO)))
}

// Wichura's AS 241 PPND7 is the algorithm's single-precision variant (relative
// error about 1e-7; all coefficients positive in its variable, so f32 Horner
// evaluation loses nothing to cancellation).

/// Horner's rule over the constants `coeffs` (highest degree first, constant term last).
fn horner(coeffs: std::ops::Range<usize>, x: f32) -> f32 {
    let mut p = kc(coeffs.start);
    for c in coeffs.skip(1) {
        p = madd(p, x, kc(c));
    }
    p
}

/// `horner` for a denominator whose constant term is 1.
fn horner1(coeffs: std::ops::Range<usize>, x: f32) -> f32 {
    madd(horner(coeffs, x), x, kc(k::ONE))
}

/// The standard normal quantile z with P(Z <= z) = p, for p in (0, 1), by
/// AS 241 PPND7. Computed for the lower half and mirrored, so
/// `inv_norm_cdf(1 - p) == -inv_norm_cdf(p)` whenever 1 - p is exact.
pub fn inv_norm_cdf(p: f32) -> f32 {
    let upper = p > 0.5;
    let p = if upper { kc(k::ONE) - p } else { p }; // exact for p in [0.5, 1)
    let q = p - kc(k::HALF);
    let z = if q.abs() <= 0.425 {
        let r = madd(-q, q, kc(k::SPLIT1));
        div(madd(q, horner(k::A, r), kc(k::ZERO)), horner1(k::B, r))
    } else {
        let r = sqrt(-ln(p));
        if r <= 5.0 {
            let r = r - kc(k::SPLIT2);
            -div(horner(k::C, r), horner1(k::D, r))
        } else {
            let r = r - kc(k::FIVE);
            -div(horner(k::E, r), horner1(k::F, r))
        }
    };
    if upper { -z } else { z }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every constant is the nearest f32 of its definition.
    #[test]
    fn constants_are_the_nearest_f32_of_their_definitions() {
        // Wichura's published PPND7 coefficients, highest degree first
        let defs: [(&str, f64); 33] = [
            ("ZERO", 0.0),
            ("ONE", 1.0),
            ("THREE_HALVES", 1.5),
            ("HALF", 0.5),
            ("LN2", std::f64::consts::LN_2),
            ("LN_C13", 1.0 / 13.0),
            ("LN_C11", 1.0 / 11.0),
            ("LN_C9", 1.0 / 9.0),
            ("LN_C7", 1.0 / 7.0),
            ("LN_C5", 1.0 / 5.0),
            ("LN_C3", 1.0 / 3.0),
            ("SPLIT1", 0.180625),
            ("A3", 59.109374720),
            ("A2", 159.29113202),
            ("A1", 50.434271938),
            ("A0", 3.3871327179),
            ("B3", 67.187563600),
            ("B2", 78.757757664),
            ("B1", 17.895169469),
            ("C3", 0.17023821103),
            ("C2", 1.3067284816),
            ("C1", 2.7568153900),
            ("C0", 1.4234372777),
            ("D2", 0.12021132975),
            ("D1", 0.73700164250),
            ("E3", 0.017337203997),
            ("E2", 0.42868294337),
            ("E1", 3.0812263860),
            ("E0", 6.6579051150),
            ("F2", 0.012258202635),
            ("F1", 0.24197894225),
            ("SPLIT2", 1.6),
            ("FIVE", 5.0),
        ];
        for ((name, bits), (def_name, value)) in CONSTANTS.iter().zip(defs) {
            assert_eq!(*name, def_name);
            assert_eq!(*bits, (value as f32).to_bits(), "{name}");
        }
    }

    #[test]
    fn recip_div_sqrt_are_within_one_ulp() {
        let mut x = 1.0e-30f32;
        while x < 1.0e30 {
            for v in [x, x * 1.37, x * 2.9] {
                let r = recip(v);
                let exact = (1.0 / v as f64) as f32;
                assert!((r.to_bits() as i64 - exact.to_bits() as i64).abs() <= 1, "recip({v}) = {r}, want {exact}");
                let s = sqrt(v);
                let exact = (v as f64).sqrt() as f32;
                assert!((s.to_bits() as i64 - exact.to_bits() as i64).abs() <= 1, "sqrt({v}) = {s}, want {exact}");
            }
            x *= 3.7;
        }
        assert_eq!(sqrt(0.0), 0.0);
        assert_eq!(div(6.0, 3.0), 2.0);
    }

    #[test]
    fn ln_is_accurate() {
        let mut x = 1.0e-30f32;
        while x < 1.0e30 {
            let got = ln(x) as f64;
            let want = (x as f64).ln();
            assert!((got - want).abs() <= 2e-7 * want.abs().max(1.0), "ln({x}) = {got}, want {want}");
            x *= 1.9;
        }
        assert!(ln(1.0).abs() < 1e-7);
    }

    /// Φ(z) by erfc in f64, to check quantiles by their probability.
    fn norm_cdf(z: f64) -> f64 {
        0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
    }

    /// Stated tolerance of the f32 inverse normal CDF: the probability of the
    /// returned quantile, Φ(z), is within 2e-6 of p relative to the tail
    /// probability min(p, 1 - p), once the f32 spacing of p near 0.5 (6e-8
    /// absolute) is allowed for.
    pub const INV_NORM_CDF_TOLERANCE: f64 = 2e-6;

    #[test]
    fn inv_norm_cdf_meets_its_stated_tolerance() {
        let mut worst = 0.0f64;
        for k in 1..=65534u32 {
            let p = k as f32 / 65535.0;
            let z = inv_norm_cdf(p) as f64;
            let tail = (p as f64).min(1.0 - p as f64);
            let err = (norm_cdf(z) - p as f64).abs() / tail;
            worst = worst.max(err - 6e-8 / tail);
        }
        assert!(worst <= INV_NORM_CDF_TOLERANCE, "worst relative error {worst}");
        for p in [2f32.powi(-20), 2f32.powi(-7), 0.125, 0.4375] {
            assert_eq!(inv_norm_cdf(1.0 - p), -inv_norm_cdf(p), "p = {p}");
        }
    }
}
