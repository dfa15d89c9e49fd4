//! The study's preprocessing: seeded 60/20/20 splits, scalers fitted on the
//! training part only, and the percentile filter for California's target.

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Row indices of a seeded 60/20/20 train/validation/test split of `n` rows.
pub fn split_indices(n: usize, seed: u64) -> [Vec<usize>; 3] {
    let mut idx: Vec<usize> = (0..n).collect();
    // Xoshiro256++ is a fixed, documented algorithm, and Cargo.lock pins rand
    // (0.10), whose shuffle draws from it: the split of a seed is the same on
    // every machine (a rand release that changes its shuffle would change it).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_5b1f_0000_0000);
    idx.shuffle(&mut rng);
    let n_train = n * 3 / 5;
    let n_valid = n / 5;
    let test = idx.split_off(n_train + n_valid);
    let valid = idx.split_off(n_train);
    [idx, valid, test]
}

/// The q-th percentile (0..=100) with linear interpolation between order
/// statistics (numpy's default).
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A per-feature affine map `x' = (x - shift) / scale`, fitted on training rows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scaler {
    pub kind: ScalerKind,
    pub shift: Vec<f64>,
    pub scale: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ScalerKind {
    /// Zero mean, unit (population) standard deviation.
    Standard,
    /// Training minimum to 0, training maximum to 1.
    MinMax,
}

impl Scaler {
    /// Fits on the rows `rows` of the row-major matrix `x` with `cols` columns.
    /// A column constant over `rows` gets shift = that value and scale 1, so
    /// that it maps to exactly 0 (its computed variance is rarely exactly 0:
    /// 6,000 copies of 0.1 give a std of 1e-14, which would blow any other
    /// value up to 1e13).
    pub fn fit(kind: ScalerKind, x: &[f64], cols: usize, rows: &[usize]) -> Scaler {
        let mut shift = vec![0.0; cols];
        let mut scale = vec![1.0; cols];
        for c in 0..cols {
            let column = rows.iter().map(|&r| x[r * cols + c]);
            let first = column.clone().next().unwrap_or(0.0);
            if column.clone().all(|v| v == first) {
                shift[c] = first;
                continue;
            }
            match kind {
                ScalerKind::Standard => {
                    let n = rows.len() as f64;
                    let mean = column.clone().sum::<f64>() / n;
                    let var = column.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                    shift[c] = mean;
                    scale[c] = if var > 0.0 { var.sqrt() } else { 1.0 };
                }
                ScalerKind::MinMax => {
                    let (lo, hi) = column.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
                    shift[c] = lo;
                    scale[c] = if hi > lo { hi - lo } else { 1.0 };
                }
            }
        }
        Scaler { kind, shift, scale }
    }

    pub fn apply(&self, value: f64, col: usize) -> f64 {
        (value - self.shift[col]) / self.scale[col]
    }

    pub fn invert(&self, value: f64, col: usize) -> f64 {
        value * self.scale[col] + self.shift[col]
    }

    /// Scales the rows `rows` of `x` into a new row-major f32 matrix.
    pub fn transform(&self, x: &[f64], rows: &[usize]) -> Vec<f32> {
        let cols = self.shift.len();
        let mut out = Vec::with_capacity(rows.len() * cols);
        for &r in rows {
            for c in 0..cols {
                out.push(self.apply(x[r * cols + c], c) as f32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_disjoint_complete_and_seeded() {
        let [a, b, c] = split_indices(101, 7);
        assert_eq!((a.len(), b.len(), c.len()), (60, 20, 21));
        let mut all: Vec<usize> = a.iter().chain(&b).chain(&c).copied().collect();
        all.sort();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
        assert_eq!(split_indices(101, 7), [a.clone(), b, c]);
        assert_ne!(split_indices(101, 8)[0], a);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 4.0);
        // numpy.percentile([1,2,3,4], 5) == 1.15
        assert!((percentile(&v, 5.0) - 1.15).abs() < 1e-12);
    }

    #[test]
    fn scalers_fit_on_the_given_rows_only() {
        // two columns, four rows; fit on rows 0 and 1 only
        let x = [0.0, 10.0, 2.0, 10.0, 100.0, -5.0, 4.0, 7.0];
        let s = Scaler::fit(ScalerKind::MinMax, &x, 2, &[0, 1]);
        assert_eq!(s.transform(&x, &[2]), vec![50.0, -15.0]);
        let s = Scaler::fit(ScalerKind::Standard, &x, 2, &[0, 1]);
        assert_eq!(s.shift, vec![1.0, 10.0]);
        assert_eq!(s.scale, vec![1.0, 1.0]); // column 1 is constant on the fit rows
    }

    #[test]
    fn a_constant_column_maps_to_zero_and_keeps_other_values_finite_and_small() {
        // 6,000 copies of 0.1: the computed mean is 1e-14 off, the variance ~1e-28
        let n = 6000;
        let mut x = vec![0.1; n];
        x.push(0.3);
        let rows: Vec<usize> = (0..n).collect();
        for kind in [ScalerKind::Standard, ScalerKind::MinMax] {
            let s = Scaler::fit(kind, &x, 1, &rows);
            assert_eq!(s.apply(0.1, 0), 0.0, "{kind:?}");
            assert!((s.apply(0.3, 0) - 0.2).abs() < 1e-12, "{kind:?}: {}", s.apply(0.3, 0));
        }
    }
}
