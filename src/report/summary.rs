//! summary.json: statistics over seeds per (method, bits, granularity, scope),
//! the fp32 baseline, each method's smallest bit width within 1 % of fp32, and
//! the smallest models within 1 %. Computed from results.csv rows alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::results::ResultRow;

/// Statistics of one setting over its seeds (one sample for deterministic methods).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingStats {
    pub method: String,
    pub bits: u32,
    pub granularity: String,
    pub scope: String,
    pub n: usize,
    pub mean: f64,
    /// sample standard deviation (n - 1); 0 for a single sample
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// 95 % interval for the mean over seeds (Student's t); equal to the mean when n = 1
    pub ci95_low: f64,
    pub ci95_high: f64,
    pub value2_mean: Option<f64>,
    pub weight_mse_mean: f64,
    pub sqnr_db_mean: f64,
    /// mean weight gain (Σ w q / Σ w²); None when the rows predate the column
    #[serde(default)]
    pub weight_gain_mean: Option<f64>,
    pub size_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub model: String,
    pub dataset: String,
    pub metric: String,
    pub metric2: Option<String>,
    pub higher_is_better: bool,
    pub fp32_value: f64,
    pub fp32_value2: Option<f64>,
    pub fp32_size_bytes: usize,
    pub adapter: String,
    pub device: String,
    pub variants: usize,
    pub settings: Vec<SettingStats>,
    /// per "granularity/scope", per method: the smallest bit width from which on
    /// (it and every larger bit width in the grid) the mean stays within 1 %
    /// (relative) of fp32; null when none does
    pub smallest_bits_within_1pct: BTreeMap<String, BTreeMap<String, Option<u32>>>,
    /// the settings whose mean is within 1 % (relative) of fp32, smallest model
    /// first (a better mean breaks a tie), at most [`SMALLEST_MODELS`]
    #[serde(default)]
    pub smallest_models_within_1pct: Vec<SmallModel>,
    /// what "within 1 %" is measured against when it is not this net's fp32:
    /// in a --qat run, the start's fp32 metric. The fine-tuning makes the
    /// quantized weights good, not its f32 ones, so the question is what the
    /// quantized net gives up against the net one had before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_value: Option<f64>,
}

impl Summary {
    /// The value "within 1 %" is measured against.
    pub fn reference(&self) -> f64 {
        self.reference_value.unwrap_or(self.fp32_value)
    }

    /// How reports name [`Summary::reference`].
    pub fn reference_name(&self) -> &'static str {
        if self.reference_value.is_some() { "the start's fp32" } else { "fp32" }
    }
}

/// How many of the smallest models within 1 % the summary keeps.
pub const SMALLEST_MODELS: usize = 5;

/// A setting within 1 % of fp32 and what it weighs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmallModel {
    pub method: String,
    pub bits: u32,
    pub granularity: String,
    pub scope: String,
    pub size_bytes: usize,
    /// the metric's mean over seeds
    pub mean: f64,
}

/// Two-sided 95 % quantile of Student's t with `df` degrees of freedom.
pub fn t95(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => TABLE[df - 1],
        _ => {
            // Cornish-Fisher expansion around z = 1.959964
            let z: f64 = 1.959_964;
            let d = df as f64;
            z + (z.powi(3) + z) / (4.0 * d) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

/// Whether `value` is within 1 % (relative) of `fp32` on the good side (any
/// value better than fp32 is). A value exactly on the line counts: the margin
/// is widened by one part in 10^9, because f64 rounding can put the line
/// itself an ULP inside (3267/3804 against 0.99 x 3300/3804 on telescope).
/// Accuracies differ by whole test samples and errors far more than that.
pub fn within_1pct(value: f64, fp32: f64, higher_is_better: bool) -> bool {
    let margin = 0.01 * fp32.abs() * (1.0 + 1e-9);
    if higher_is_better { value >= fp32 - margin } else { value <= fp32 + margin }
}

/// Statistics per setting and the smallest settings within 1 % of
/// `reference_value` (None: the rows' fp32 value).
pub fn summarize(rows: &[ResultRow], higher_is_better: bool, reference_value: Option<f64>) -> Option<Summary> {
    let first = rows.first()?;
    let reference = reference_value.unwrap_or(first.fp32_value);
    let mut groups: BTreeMap<(String, String, String, u32), Vec<&ResultRow>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.granularity.clone(), r.scope.clone(), r.method.clone(), r.bits)).or_default().push(r);
    }
    let mut settings = Vec::new();
    for ((granularity, scope, method, bits), rs) in &groups {
        let v: Vec<f64> = rs.iter().map(|r| r.value).collect();
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        let half = if n > 1 { t95(n - 1) * std / (n as f64).sqrt() } else { 0.0 };
        let mean_of = |f: &dyn Fn(&ResultRow) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / n as f64;
        settings.push(SettingStats {
            method: method.clone(),
            bits: *bits,
            granularity: granularity.clone(),
            scope: scope.clone(),
            n,
            mean,
            std,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ci95_low: mean - half,
            ci95_high: mean + half,
            value2_mean: first.value2.map(|_| mean_of(&|r| r.value2.unwrap_or(f64::NAN))),
            weight_mse_mean: mean_of(&|r| r.weight_mse),
            sqnr_db_mean: mean_of(&|r| r.sqnr_db),
            weight_gain_mean: rs.iter().all(|r| r.weight_gain.is_some()).then(|| mean_of(&|r| r.weight_gain.unwrap_or(f64::NAN))),
            size_bytes: rs[0].size_bytes,
        });
    }
    let mut smallest: BTreeMap<String, BTreeMap<String, Option<u32>>> = BTreeMap::new();
    for s in &settings {
        let key = format!("{}/{}", s.granularity, s.scope);
        smallest.entry(key).or_default().entry(s.method.clone()).or_insert(None);
    }
    for (key, methods) in smallest.iter_mut() {
        for (method, best) in methods.iter_mut() {
            let mut by_bits: Vec<&SettingStats> =
                settings.iter().filter(|s| &format!("{}/{}", s.granularity, s.scope) == key && &s.method == method).collect();
            by_bits.sort_by_key(|s| std::cmp::Reverse(s.bits));
            for s in by_bits {
                if within_1pct(s.mean, reference, higher_is_better) {
                    *best = Some(s.bits);
                } else {
                    break;
                }
            }
        }
    }
    let mut small: Vec<&SettingStats> = settings.iter().filter(|s| within_1pct(s.mean, reference, higher_is_better)).collect();
    small.sort_by(|a, b| {
        let better = if higher_is_better { b.mean.total_cmp(&a.mean) } else { a.mean.total_cmp(&b.mean) };
        a.size_bytes.cmp(&b.size_bytes).then(better)
    });
    let smallest_models_within_1pct = small
        .into_iter()
        .take(SMALLEST_MODELS)
        .map(|s| SmallModel { method: s.method.clone(), bits: s.bits, granularity: s.granularity.clone(), scope: s.scope.clone(), size_bytes: s.size_bytes, mean: s.mean })
        .collect();
    Some(Summary {
        model: first.model.clone(),
        dataset: first.dataset.clone(),
        metric: first.metric.clone(),
        metric2: first.metric2.clone(),
        higher_is_better,
        fp32_value: first.fp32_value,
        fp32_value2: first.fp32_value2,
        fp32_size_bytes: first.fp32_size_bytes,
        adapter: first.adapter.clone(),
        device: first.device.clone(),
        variants: rows.len(),
        settings,
        smallest_bits_within_1pct: smallest,
        smallest_models_within_1pct,
        reference_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_exactly_on_the_1pct_line_is_within() {
        // telescope: 3267 of 3804 is exactly 0.99 x 3300 of 3804, but in f64
        // 0.8675... - 0.01 x 0.8675... rounds an ULP above 3267/3804
        let (fp32, on_line) = (3300.0 / 3804.0, 3267.0 / 3804.0);
        assert!(on_line < fp32 - 0.01 * fp32, "the rounding this test is about");
        assert!(within_1pct(on_line, fp32, true));
        assert!(!within_1pct(3266.0 / 3804.0, fp32, true));
        // an error: 1 % above is within, a hair more is not
        assert!(within_1pct(101.0, 100.0, false) && !within_1pct(101.0001, 100.0, false));
        assert!(within_1pct(0.5, 100.0, false) && within_1pct(0.9, 0.8, true));
    }

    #[test]
    fn t_quantiles_are_close_to_tables() {
        assert_eq!(t95(1), 12.706);
        assert!((t95(31) - 2.0395).abs() < 2e-3);
        assert!((t95(120) - 1.9799).abs() < 2e-3);
    }

    fn row(method: &str, bits: u32, seed: Option<u32>, value: f64, fp32: f64, size: usize) -> ResultRow {
        ResultRow {
            variant_id: format!("{method}:{bits}:layer:{}:all", seed.map_or("-".to_string(), |s| s.to_string())),
            model: "m".into(),
            dataset: "d".into(),
            method: method.into(),
            bits,
            granularity: "layer".into(),
            seed,
            scope: "all".into(),
            bias: "fp32".into(),
            bn: String::new(),
            metric: "mse".into(),
            value,
            fp32_value: fp32,
            metric2: None,
            value2: None,
            fp32_value2: None,
            weight_mse: 0.0,
            sqnr_db: 0.0,
            weight_gain: Some(1.0),
            size_bytes: size,
            fp32_size_bytes: 1000,
            device: "cpu".into(),
            adapter: "cpu".into(),
            quantizer: "cpu-reference".into(),
            eval_ms: 0.0,
        }
    }

    #[test]
    fn smallest_models_within_one_percent_are_the_smallest_first_by_their_mean() {
        // MSE, fp32 100: within 1 % means at most 101
        let rows = vec![
            row("a", 2, None, 100.5, 100.0, 300),
            row("a", 3, None, 102.0, 100.0, 400), // outside
            row("b", 2, None, 99.0, 100.0, 300),  // same size, better: first
            row("c", 1, None, 150.0, 100.0, 200), // outside
            // stochastic: the mean of its seeds decides (100 and 102.5: 101.25, outside)
            row("s", 1, Some(1), 100.0, 100.0, 100),
            row("s", 1, Some(2), 102.5, 100.0, 100),
            row("s", 2, Some(1), 100.0, 100.0, 350),
            row("s", 2, Some(2), 101.0, 100.0, 350),
        ];
        let s = summarize(&rows, false, None).unwrap();
        let got: Vec<(&str, u32, usize)> = s.smallest_models_within_1pct.iter().map(|m| (m.method.as_str(), m.bits, m.size_bytes)).collect();
        assert_eq!(got, vec![("b", 2, 300), ("a", 2, 300), ("s", 2, 350)]);
        assert_eq!(s.smallest_models_within_1pct[2].mean, 100.5);
        assert_eq!((s.reference(), s.reference_name()), (100.0, "fp32"));
    }

    #[test]
    fn a_reference_other_than_fp32_is_what_within_one_percent_measures_against() {
        // a --qat run: its own fp32 (150) is worse than the start's (100)
        let rows = vec![row("a", 2, None, 120.0, 150.0, 300), row("a", 3, None, 100.5, 150.0, 400), row("a", 4, None, 100.2, 150.0, 500)];
        let own = summarize(&rows, false, None).unwrap();
        assert_eq!(own.smallest_bits_within_1pct["layer/all"]["a"], Some(2));
        let start = summarize(&rows, false, Some(100.0)).unwrap();
        assert_eq!(start.smallest_bits_within_1pct["layer/all"]["a"], Some(3));
        let got: Vec<u32> = start.smallest_models_within_1pct.iter().map(|m| m.bits).collect();
        assert_eq!(got, vec![3, 4]);
        assert_eq!((start.reference(), start.reference_name(), start.fp32_value), (100.0, "the start's fp32", 150.0));
    }

    #[test]
    fn within_one_percent_respects_the_metric_direction() {
        assert!(within_1pct(0.851, 0.859, true));
        assert!(!within_1pct(0.85, 0.859, true));
        assert!(within_1pct(100.9, 100.0, false));
        assert!(!within_1pct(101.1, 100.0, false));
    }
}
