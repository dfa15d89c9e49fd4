//! Stage 6, the report: results.csv -> summary.json, plots, report.md and
//! report.html. Everything here is recomputed from the run folder alone, so
//! `sweep-gpu report DIR` redraws a finished or interrupted run.

pub mod plot;
pub mod results;
pub mod summary;

use std::fmt::Write as _;
use std::path::Path;

pub use results::{ResultRow, ResultsWriter, read_results, write_atomic};
pub use summary::{Summary, summarize};

use crate::error::{Error, Result};
use crate::sweep::grid::Scope;
use crate::sweep::{RunInfo, metric_higher_is_better};

/// Files as a message lists them: `a, b`.
pub fn path_list(paths: &[std::path::PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The first 12 hex digits of a sha256, as messages and reports show it.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The lock file that one process writing to a run folder holds.
pub const LOCK_FILE: &str = ".sweep-gpu.lock";

/// Takes the run folder `dir` (which must exist) for this process, for as
/// long as the returned file stays open: two processes appending to one
/// results.csv would tear and mix their rows. The OS drops the lock when the
/// process ends, however it ends, so a left-over lock file holds nothing. On a
/// file system that cannot lock, the run goes on unguarded after a note.
pub fn lock_folder(dir: &Path, what: &str) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Results {
            path: dir.to_path_buf(),
            message: format!("another sweep-gpu process is writing to this folder (it holds {LOCK_FILE}); wait for it to end, or {what}"),
        }),
        // a file system without locks (some network mounts): run unguarded, and say so
        Err(std::fs::TryLockError::Error(e)) => {
            eprintln!("note: cannot lock {} ({e}); make sure no other sweep-gpu process writes to {}", path.display(), dir.display());
            Ok(file)
        }
    }
}

/// Whether a process holds `dir`'s lock now ([`lock_folder`]).
pub fn folder_busy(dir: &Path) -> bool {
    std::fs::File::open(dir.join(LOCK_FILE)).is_ok_and(|f| matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)))
}

/// A run folder's results: `results.csv`, or `results.csv.gz` where only
/// that is there (as results/ keeps its larger runs); `results.csv` when
/// neither is, for the error to name.
pub fn results_file(dir: &Path) -> std::path::PathBuf {
    let plain = dir.join("results.csv");
    let gz = dir.join("results.csv.gz");
    if !plain.exists() && gz.is_file() { gz } else { plain }
}

/// Reads a run's config.json.
pub fn read_info(dir: &Path) -> Result<RunInfo> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Results {
            path: path.clone(),
            message: format!("not found: {} holds no sweep-gpu run (a run writes config.json when it starts); give the folder a run wrote", dir.display()),
        },
        _ => Error::io(&path, e),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Results { path, message: format!("not a sweep-gpu config.json: {e}") })
}

/// Writes summary.json, the plots, report.md and report.html for the run in `dir`.
pub fn write_all(dir: &Path) -> Result<Option<Summary>> {
    let info = read_info(dir)?;
    let path = results_file(dir);
    if !path.exists() {
        return Err(Error::Results { path, message: "not found: this folder keeps no rows (neither results.csv nor results.csv.gz)".into() });
    }
    let rows = read_results(&path, false)?;
    crate::sweep::check_rows(&path, &rows, &info.config, &crate::sweep::variants_of(&info.grid, info.config.shard), "repair or remove that row")?;
    // a --qat run is measured against the net it started from
    let reference = info.qat_start.as_ref().map(|s| s.fp32_value);
    let Some(summary) = summarize(&rows, metric_higher_is_better(&info.metric), reference) else {
        return Ok(None);
    };
    write_atomic(&dir.join("summary.json"), serde_json::to_string_pretty(&summary).expect("summary serialises").as_bytes())?;
    let mut plots = Vec::new();
    let mut heatmaps = Vec::new();
    for g in &info.config.granularities {
        let stem = format!("{}_vs_bits_{}", summary.metric, g.name());
        plot::metric_vs_bits(dir, &stem, &summary, g.name(), "all")?;
        plots.push((g.name().to_string(), "all".to_string(), stem));
        // one plot per mixed-precision scope (all+LAYER=BITS...)
        let mut mixed: Vec<&str> = summary.settings.iter().filter(|s| s.granularity == g.name() && Scope::held_in_name(&s.scope).is_some()).map(|s| s.scope.as_str()).collect();
        mixed.sort();
        mixed.dedup();
        for scope in mixed {
            let slug: String = scope.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let stem = format!("{}_vs_bits_{}_{slug}", summary.metric, g.name());
            plot::metric_vs_bits(dir, &stem, &summary, g.name(), scope)?;
            plots.push((g.name().to_string(), scope.to_string(), stem));
        }
        if summary.settings.iter().any(|s| s.granularity == g.name() && s.scope.starts_with("layer=")) {
            let stem = format!("layer_sensitivity_{}", g.name());
            plot::layer_heatmap(dir, &stem, &summary, g.name())?;
            heatmaps.push((g.name().to_string(), stem));
        }
    }
    let md = markdown(&info, &summary, &plots, &heatmaps);
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let mut html = String::from("<!doctype html><meta charset=\"utf-8\"><title>sweep-gpu report</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style>\n");
    pulldown_cmark::html::push_html(&mut html, pulldown_cmark::Parser::new_ext(&md, pulldown_cmark::Options::ENABLE_TABLES));
    write_atomic(&dir.join("report.html"), html.as_bytes())?;
    Ok(Some(summary))
}

/// The report's line on --qat: what the fine-tuning trained for, and the
/// start's test metric before it (empty without --qat).
fn qat_row(info: &RunInfo, metric: &str) -> String {
    let (Some(start), Some(q)) = (&info.qat_start, &info.training.qat) else {
        return String::new();
    };
    format!(
        "fine-tuned as {} from {} (trained {}, weights from epoch {:.2}); before it: test {metric} {} at fp32, {} as {}",
        q.describe(),
        start.checkpoint.display(),
        crate::train::epochs_text(start.training.epochs),
        start.training_summary.best_epoch,
        fmt_metric(start.fp32_value, metric),
        fmt_metric(start.quantized_value, metric),
        start.variant_id
    )
}

/// The mixed-precision scopes of a run, for its grid line: "" when none.
fn mixed_scopes(info: &RunInfo) -> String {
    let names: Vec<String> = info.grid.scopes.iter().filter(|s| matches!(s, Scope::Mixed(_))).map(|s| s.name()).collect();
    if names.is_empty() { String::new() } else { format!(" and mixed precision {}", names.join(", ")) }
}

fn fmt_metric(v: f64, metric: &str) -> String {
    if metric == "accuracy" || metric == "top5" { format!("{:.2} %", 100.0 * v) } else { format!("{v:.4}") }
}

/// What one test sample weighs and how far the test split alone moves the fp32
/// accuracy (its binomial standard error), in percentage points: the scale
/// against which a variant's loss of accuracy is read.
fn sampling_note(metric: &str, p: f64, rows: usize) -> String {
    if metric != "accuracy" || rows == 0 {
        return format!("{rows} test samples");
    }
    let n = rows as f64;
    let spread = match (p * n).round() as usize {
        // no spread to estimate at 0 or n right: the rule of three bounds it instead
        0 => format!("none is right, so the accuracy is below {:.2} % with 95 % confidence (rule of three)", 300.0 / n),
        k if k == rows => format!("all are right, so the accuracy is above {:.2} % with 95 % confidence (rule of three)", 100.0 - 300.0 / n),
        _ => format!("the accuracy's binomial standard error is {:.2} points", 100.0 * (p * (1.0 - p) / n).sqrt()),
    };
    format!("{rows} test samples: one sample is {:.3} points, and {spread}", 100.0 / n)
}

/// Where the kept weights came from, for the report's training row: a reused
/// checkpoint trained on another machine says which (conv nets train to
/// other float roundings on CPUs with other caches: [`crate::host`]).
fn trained_where(info: &RunInfo) -> String {
    match (info.checkpoint_reused, crate::host::elsewhere(&info.training_summary.host, &info.host)) {
        (false, _) => String::new(),
        (true, None) => "; checkpoint reused".into(),
        (true, Some(trained_on)) => format!("; checkpoint reused, trained on {trained_on}"),
    }
}

fn markdown(info: &RunInfo, s: &Summary, plots: &[(String, String, String)], heatmaps: &[(String, String)]) -> String {
    let c = &info.config;
    let mut md = String::new();
    let _ = writeln!(md, "# {} on {}: what each bit costs\n", s.model, s.dataset);
    let _ = writeln!(md, "| setting | value |\n|---|---|");
    let rows: Vec<(&str, String)> = vec![
        ("device", format!("{} ({})", info.device, info.device_reason)),
        ("adapter", info.adapter.clone()),
        ("host", info.host.clone()),
        ("sweep-gpu", info.sweep_gpu_version.clone()),
        ("created (UTC)", info.created_utc.clone()),
        ("data", format!("{} (sha256 {}…), split {}/{}/{}", path_list(&info.dataset_files), short_hash(&info.data_hash), info.split_sizes[0], info.split_sizes[1], info.split_sizes[2])),
        ("preprocessing", info.preprocessing.clone()),
        (
            "model",
            if info.model.kind.is_conv() {
                format!("{}, {} parameters, BatchNorm {}", info.model.kind, info.parameters, info.config.bn.name())
            } else {
                format!(
                    "{} {:?}, {} parameters{}",
                    info.model.kind,
                    info.model.widths(),
                    info.parameters,
                    if info.model.dropout > 0.0 { format!(", dropout {}", info.model.dropout) } else { ", no dropout".to_string() }
                )
            },
        ),
        ("training", format!("{}, batch {}, Adam lr {}, seed {}; kept the weights at epoch {:.2} (best on validation){}", crate::train::epochs_text(info.training.epochs), info.training.batch_size, info.training.learning_rate, info.training.seed, info.training_summary.best_epoch, trained_where(info))),
        ("quantization-aware training", qat_row(info, &s.metric)),
        ("grid", format!("{} variants: methods {}, bits {:?}, granularity {}, {} seed(s) per stochastic setting, scope {}{}, bias {}", info.variants, c.methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "), c.bits, c.granularities.iter().map(|g| g.name()).collect::<Vec<_>>().join(","), c.seeds, c.scope.name(), mixed_scopes(info), c.bias.name()) + &c.clip.map_or(String::new(), |clip| format!(", {}", clip.describe())) + &c.rescale.describe().map_or(String::new(), |r| format!(", {r}")) + &c.bias_correct.describe().map_or(String::new(), |b| format!(", {b}"))),
        ("scored", format!("{} of {} variants", s.variants, info.variants)),
        (
            "fp32 baseline",
            format!(
                "{} {}{}, {} bytes",
                s.metric,
                fmt_metric(s.fp32_value, &s.metric),
                match (&s.metric2, s.fp32_value2) {
                    (Some(m), Some(v)) => format!(", {m} {}", fmt_metric(v, m)),
                    _ => String::new(),
                },
                s.fp32_size_bytes
            ),
        ),
        ("test split", sampling_note(&s.metric, s.fp32_value, info.split_sizes[2])),
    ];
    for (k, v) in rows.into_iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(md, "| {k} | {} |", v.replace('|', "\\|"));
    }
    for (g, scope, stem) in plots {
        let held = match Scope::held_in_name(scope) {
            Some(h) => format!(", {} held, the other layers at the bits shown", h.replace('+', ", ")),
            None => String::new(),
        };
        let _ = writeln!(md, "\n## {} against bits ({g} granularity{held})\n\n![{} against bits]({stem}.png)\n", s.metric, s.metric);
        let _ = writeln!(md, "Lines: mean over seeds; shaded: min..max over seeds (stochastic methods); dashed: fp32. [SVG]({stem}.svg)\n");
    }
    for (g, stem) in heatmaps {
        let _ = writeln!(md, "\n## Per-layer sensitivity ({g} granularity)\n\n![per-layer sensitivity]({stem}.png)\n");
        let _ = writeln!(md, "Each cell quantizes one layer only (the rest fp32); colour: relative loss of {} against fp32. [SVG]({stem}.svg)\n", s.metric);
    }
    let reference = s.reference_name();
    let _ = writeln!(md, "## Smallest bit width within 1 % of {reference}\n");
    if s.reference_value.is_some() {
        let _ = writeln!(
            md,
            "The start's fp32 is the test {metric} of the net the fine-tuning began from, {}; this net's own fp32 is {}. The fine-tuning makes the quantized weights good, not its f32 ones, so its quantized forms are measured against the net one had before.\n",
            fmt_metric(s.reference(), &s.metric),
            fmt_metric(s.fp32_value, &s.metric),
            metric = s.metric
        );
    }
    let _ = writeln!(md, "The smallest bit width from which on the mean {} stays within 1 % (relative) of {reference} at every larger bit width in the grid; \"—\" when none does.\n", s.metric);
    for (key, methods) in &s.smallest_bits_within_1pct {
        let _ = writeln!(md, "**{key}**\n\n| method | bits |\n|---|---|");
        for (m, b) in methods {
            let _ = writeln!(md, "| {m} | {} |", b.map_or("—".to_string(), |b| b.to_string()));
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## Smallest models within 1 % of {reference}\n");
    if s.smallest_models_within_1pct.is_empty() {
        let _ = writeln!(md, "No setting's mean {} is within 1 % of {reference}.\n", s.metric);
    } else {
        let _ = writeln!(
            md,
            "The settings whose mean {} is within 1 % (relative) of {reference}, smallest first. Size: codes, level tables and the parameters left f32. Unlike the table above, a larger bit width of the same method may fall outside 1 %.\n",
            s.metric
        );
        let _ = writeln!(md, "| bytes | fp32 / bytes | method | bits | granularity | scope | {} |\n|---|---|---|---|---|---|---|", s.metric);
        for m in &s.smallest_models_within_1pct {
            let ratio = s.fp32_size_bytes as f64 / m.size_bytes as f64;
            let _ = writeln!(md, "| {} | {ratio:.1} | {} | {} | {} | {} | {} |", m.size_bytes, m.method, m.bits, m.granularity, m.scope, fmt_metric(m.mean, &s.metric));
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## {} by method and bits (mean over seeds, 95 % interval where there are several)\n", s.metric);
    let mut bits: Vec<u32> = s.settings.iter().map(|x| x.bits).collect();
    bits.sort();
    bits.dedup();
    let mut keys: Vec<(String, String, String)> = s.settings.iter().map(|x| (x.granularity.clone(), x.scope.clone(), x.method.clone())).collect();
    keys.dedup();
    let _ = writeln!(md, "| granularity | scope | method | {} |", bits.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(md, "|---|---|---|{}", "---|".repeat(bits.len()));
    for (g, sc, m) in keys {
        let cells: Vec<String> = bits
            .iter()
            .map(|b| {
                s.settings.iter().find(|x| x.granularity == g && x.scope == sc && x.method == m && x.bits == *b).map_or(String::new(), |x| {
                    if x.n > 1 {
                        format!("{} ± {}", fmt_metric(x.mean, &s.metric), fmt_metric((x.ci95_high - x.mean).abs(), &s.metric))
                    } else {
                        fmt_metric(x.mean, &s.metric)
                    }
                })
            })
            .collect();
        let _ = writeln!(md, "| {g} | {sc} | {m} | {} |", cells.join(" | "));
    }
    let _ = writeln!(md, "\nAll numbers: results.csv in this folder (one row per variant); statistics: summary.json.");
    md
}

#[cfg(test)]
mod tests {
    use super::sampling_note;

    #[test]
    fn sampling_note_gives_the_weight_of_a_row_and_the_standard_error() {
        // p = 0.8 on 400 rows: one row 0.25 points, sqrt(0.8 * 0.2 / 400) = 2 points
        assert_eq!(sampling_note("accuracy", 0.8, 400), "400 test samples: one sample is 0.250 points, and the accuracy's binomial standard error is 2.00 points");
        assert_eq!(sampling_note("mse", 12.0, 400), "400 test samples");
        assert!(sampling_note("accuracy", 0.0, 200).ends_with("none is right, so the accuracy is below 1.50 % with 95 % confidence (rule of three)"));
        assert!(sampling_note("accuracy", 1.0, 300).ends_with("all are right, so the accuracy is above 99.00 % with 95 % confidence (rule of three)"));
    }
}
