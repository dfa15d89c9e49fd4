//! Loaders on fixtures in the real formats (good and corrupt), and the CLI end
//! to end on the CPU path. One test binary: the burn-linked executable is large
//! and each extra binary costs link time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use sweep_gpu::data::{self, DatasetId, Targets, Task};
use sweep_gpu::error::Error;

fn load(id: DatasetId, dir: &Path) -> Result<data::Dataset, Error> {
    data::load(id, dir, 1)
}

#[test]
fn tabular_fixtures_load_with_the_study_preprocessing() {
    let d = tabular_dir(300);
    let churn = load(DatasetId::Churn, d.path()).unwrap();
    assert_eq!(churn.train.sample_len(), 13);
    assert_eq!(churn.train.len() + churn.valid.len() + churn.test.len(), 300);
    assert_eq!(churn.task, Task::Classification { classes: 2 });
    // standardised on the training split: column means ~0
    let n = churn.train.len();
    let mean0: f32 = (0..n).map(|r| churn.train.x[r * 13]).sum::<f32>() / n as f32;
    assert!(mean0.abs() < 1e-4, "{mean0}");

    let magic = load(DatasetId::Telescope, d.path()).unwrap();
    assert_eq!(magic.train.sample_len(), 10);

    let cal = load(DatasetId::California, d.path()).unwrap();
    assert_eq!(cal.train.sample_len(), 6);
    let kept = cal.train.len() + cal.valid.len() + cal.test.len();
    assert!((265..=275).contains(&kept), "the 5..95 percentile filter keeps about 90 %: {kept}");
    // min-max scaled on train: train features within [0, 1]
    assert!(cal.train.x.iter().all(|v| (0.0..=1.0).contains(v)));
    let Targets::Values(t) = &cal.test.y else { panic!("regression") };
    let raw = cal.unscale_target(t[0]);
    assert!(raw > 10.0 && raw < 510.0, "target in thousands of dollars: {raw}");

    let mv = load(DatasetId::Mv, d.path()).unwrap();
    assert_eq!(mv.train.sample_len(), 10);
}

#[test]
fn statlib_california_is_read_when_keel_is_absent() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "california/cal_housing.data.gz", &gzip(cal_housing_data(200).as_bytes()));
    let cal = load(DatasetId::California, d.path()).unwrap();
    assert_eq!(cal.train.sample_len(), 6);
    assert!(cal.files[0].ends_with("cal_housing.data.gz"));
}

#[test]
fn same_seed_same_split_other_seed_other_split() {
    let d = tabular_dir(200);
    let a = data::load(DatasetId::Mv, d.path(), 5).unwrap();
    let b = data::load(DatasetId::Mv, d.path(), 5).unwrap();
    let c = data::load(DatasetId::Mv, d.path(), 6).unwrap();
    assert_eq!(a.test, b.test);
    assert_ne!(a.test, c.test);
    assert_eq!(a.data_hash, c.data_hash);
}

fn err_text(id: DatasetId, dir: &Path) -> String {
    load(id, dir).expect_err("must fail").to_string()
}

#[test]
fn missing_file_is_an_error_naming_the_path_and_the_fix() {
    let d = tempfile::tempdir().unwrap();
    let e = err_text(DatasetId::Churn, d.path());
    assert!(e.contains("Churn_Modelling.csv") && e.contains("--data-dir"), "{e}");
    let e = err_text(DatasetId::Churn, &d.path().join("nope"));
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn empty_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "magic/magic04.data", b"");
    assert!(err_text(DatasetId::Telescope, d.path()).contains("empty"));
}

#[test]
fn truncated_gzip_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let gz = gzip(churn_csv(100).as_bytes());
    write(d.path(), "churn/Churn_Modelling.csv.gz", &gz[..gz.len() / 2]);
    let e = err_text(DatasetId::Churn, d.path());
    assert!(e.contains("Churn_Modelling.csv.gz") && e.contains("truncated or corrupt gzip"), "{e}");
}

#[test]
fn csv_row_with_a_missing_field_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let mut text = churn_csv(20);
    text.push_str("21,1,X,600,France,Male,40,1,0.0,1,1\r\n");
    write(d.path(), "churn/Churn_Modelling.csv", text.as_bytes());
    let e = err_text(DatasetId::Churn, d.path());
    assert!(e.contains("line 22"), "{e}");
}

#[test]
fn non_numeric_field_names_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let mut text = magic_data(10);
    text.push_str("1,2,3,4,5,6,7,abc,9,10,g\n");
    write(d.path(), "magic/magic04.data", text.as_bytes());
    let e = err_text(DatasetId::Telescope, d.path());
    assert!(e.contains("line 11") && e.contains("fM3Trans") && e.contains("\"abc\""), "{e}");
}

#[test]
fn nan_and_infinity_in_data_are_refused() {
    for bad in ["NaN", "inf"] {
        let d = tempfile::tempdir().unwrap();
        let mut text = magic_data(10);
        text.push_str(&format!("1,2,3,4,5,6,7,8,9,{bad},g\n"));
        write(d.path(), "magic/magic04.data", text.as_bytes());
        let e = err_text(DatasetId::Telescope, d.path());
        assert!(e.contains("line 11") && e.contains("not a finite number"), "{e}");
    }
}

#[test]
fn labels_out_of_range_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut text = magic_data(10);
    text.push_str("1,2,3,4,5,6,7,8,9,10,x\n");
    write(d.path(), "magic/magic04.data", text.as_bytes());
    assert!(err_text(DatasetId::Telescope, d.path()).contains("expected g or h"));

    let d = tempfile::tempdir().unwrap();
    let text = churn_csv(10).replacen(",0\r\n", ",2\r\n", 1);
    write(d.path(), "churn/Churn_Modelling.csv", text.as_bytes());
    assert!(err_text(DatasetId::Churn, d.path()).contains("expected 0 or 1"));

    let d = tempfile::tempdir().unwrap();
    let text = churn_csv(10).replacen("France", "Narnia", 1);
    write(d.path(), "churn/Churn_Modelling.csv", text.as_bytes());
    assert!(err_text(DatasetId::Churn, d.path()).contains("Geography"));

    // the line named is the file's line, blank lines counted, CRLF or LF
    let mut lines: Vec<String> = churn_csv(10).split("\r\n").map(String::from).collect();
    lines.insert(3, String::new());
    lines[6] = lines[6].replacen("France", "Narnia", 1).replacen("Spain", "Narnia", 1).replacen("Germany", "Narnia", 1);
    for end in ["\r\n", "\n"] {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "churn/Churn_Modelling.csv", lines.join(end).as_bytes());
        let e = err_text(DatasetId::Churn, d.path());
        assert!(e.contains("line 7:") && e.contains("Narnia"), "{end:?}: {e}");
    }
}

#[test]
fn keel_file_without_data_section_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "mv/mv.dat", b"@relation mv\r\n@attribute X1 real\r\n1,2\r\n");
    assert!(err_text(DatasetId::Mv, d.path()).contains("@data"));
}

#[test]
fn wrong_field_count_in_keel_names_the_line() {
    let d = tempfile::tempdir().unwrap();
    let mut text = keel_mv(5);
    text.push_str("1,2,3\r\n");
    write(d.path(), "mv/mv.dat", text.as_bytes());
    let e = err_text(DatasetId::Mv, d.path());
    assert!(e.contains("line 21") && e.contains("expected 11"), "{e}");
}

#[test]
fn churn_header_without_a_column_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let text = churn_csv(5).replacen("Geography", "Country", 1);
    write(d.path(), "churn/Churn_Modelling.csv", text.as_bytes());
    let e = err_text(DatasetId::Churn, d.path());
    assert!(e.contains("line 1") && e.contains("\"Geography\""), "{e}");
}

// ---- the binary -------------------------------------------------------------

fn sweep_gpu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sweep-gpu"));
    c.env_remove("SWEEP_DATA_DIR").env_remove("SWEEP_ADAPTER");
    c
}

/// Runs sweep-gpu with `args` on the files in `data`, into `work/out`, with the
/// checkpoints shared in `work/ckpt`; gives the process's output and the folder.
fn sweep_into(data: &Path, work: &Path, out: &str, args: &[&str]) -> (std::process::Output, std::path::PathBuf) {
    let dir = work.join(out);
    let ckpt = work.join("ckpt");
    let o = sweep_gpu()
        .args(args)
        .args(["--data-dir", data.to_str().unwrap(), "--checkpoint-dir", ckpt.to_str().unwrap(), "--out", dir.to_str().unwrap()])
        .output()
        .unwrap();
    (o, dir)
}

/// [`sweep_into`] that must succeed: its results.csv rows, report.md and config.json.
fn sweep_and_read(data: &Path, work: &Path, out: &str, args: &[&str]) -> (Vec<sweep_gpu::report::ResultRow>, String, serde_json::Value) {
    let (o, dir) = sweep_into(data, work, out, args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    (sweep_gpu::report::read_results(&dir.join("results.csv"), false).unwrap(), std::fs::read_to_string(dir.join("report.md")).unwrap(), config)
}

fn run_fail(args: &[&str]) -> String {
    let out = sweep_gpu().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} must fail");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_flags_exit_non_zero_with_a_message() {
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--bits", "0"]);
    assert!(e.contains("--bits") && e.contains("outside 1..=16"), "{e}");
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--bits", "17"]);
    assert!(e.contains("outside 1..=16"), "{e}");
    // usage errors exit 2, ours as clap's; a missing file is a failure (1)
    let code = |args: &[&str]| sweep_gpu().args(args).output().unwrap().status.code();
    assert_eq!(code(&["--model", "mlp-simple", "--dataset", "churn", "--bits", "0"]), Some(2));
    assert_eq!(code(&["--model", "mlp-simple", "--dataset", "churn", "--methods", "magic"]), Some(2));
    assert_eq!(code(&["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--data-dir", "/nonexistent"]), Some(1));
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--methods", "magic"]);
    assert!(e.contains("invalid value 'magic'"), "{e}");
    let e = run_fail(&["--model", "resnet1000", "--dataset", "churn"]);
    assert!(e.contains("invalid value 'resnet1000'"), "{e}");
    let e = run_fail(&["--dataset", "churn"]);
    assert!(e.contains("--model"), "{e}");
    let e = run_fail(&["bench", "--methods", "lloyd-nearest"]);
    assert!(e.contains("--methods") && e.contains("study's seven"), "{e}");
    // a model on the wrong kind of data is refused before any file is read
    let e = run_fail(&["--model", "cnn", "--dataset", "churn", "--data-dir", "/nonexistent"]);
    assert!(e.contains("cnn needs image (fashion-mnist, cifar100) data; churn is tabular") && !e.contains("/nonexistent"), "{e}");
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "cifar100", "--data-dir", "/nonexistent"]);
    assert!(e.contains("mlp-simple needs tabular") && e.contains("cifar100 is images") && !e.contains("/nonexistent"), "{e}");
    // a folder without a run says so, for report and --resume alike
    for args in [&["report", "/nonexistent/run"][..], &["--resume", "/nonexistent/run"]] {
        let e = run_fail(args);
        assert!(e.contains("/nonexistent/run/config.json") && e.contains("holds no sweep-gpu run"), "{e}");
    }
    // any other OS error is said once, not again as a cause
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("config.json")).unwrap();
    let e = run_fail(&["report", d.path().to_str().unwrap()]);
    assert!(e.contains("config.json") && e.matches("os error").count() == 1, "{e}");
    let d = tempfile::tempdir().unwrap();
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--data-dir", d.path().to_str().unwrap(), "--device", "cpu", "--out", d.path().join("o").to_str().unwrap()]);
    assert!(e.contains("Churn_Modelling.csv"), "{e}");
}

#[test]
fn help_documents_every_flag_with_its_default() {
    let out = sweep_gpu().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--model", "--dataset", "--data-dir", "--out", "--bits", "--methods", "--seed", "--device", "--adapter", "--epochs", "--batch-size", "--dropout", "--retrain", "--layer-bits"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("[default: 1..=16]") && help.contains("[default: auto]"), "{help}");
}

#[test]
fn dropout_is_checked_recorded_and_part_of_the_checkpoint_key() {
    for p in ["1", "-0.1", "NaN"] {
        let e = run_fail(&["--model", "mlp-complex", "--dataset", "churn", "--dropout", p]);
        assert!(e.contains("--dropout") && e.contains("not a probability in [0, 1)"), "{p}: {e}");
    }
    let e = run_fail(&["--model", "cnn", "--dataset", "cifar100", "--dropout", "0.2"]);
    assert!(e.contains("--dropout") && e.contains("part of its architecture"), "{e}");

    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let ckpts = work.path().join("ckpts");
    let run = |out: &str, dropout: Option<&str>| -> serde_json::Value {
        let dir = work.path().join(out);
        let o = sweep_gpu()
            .args(["--model", "mlp-complex", "--dataset", "churn", "--device", "cpu", "--bits", "8", "--methods", "uniform-nearest", "--epochs", "1"])
            .args(["--data-dir", data.path().to_str().unwrap(), "--checkpoint-dir", ckpts.to_str().unwrap(), "--out", dir.to_str().unwrap()])
            .args(dropout.map(|p| vec!["--dropout", p]).unwrap_or_default())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{stderr}");
        assert!(!stderr.contains("reusing checkpoint"), "another dropout is another model: {stderr}");
        let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
        let want = if dropout == Some("0") { "no dropout" } else { "dropout 0.1" };
        assert!(report.contains(want), "report.md lacks {want:?}");
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
    };
    let study = run("study", None);
    let off = run("off", Some("0"));
    assert_eq!(study["model"]["dropout"], 0.1);
    assert_eq!(off["model"]["dropout"], 0.0);
    assert_eq!(off["config"]["dropout"], 0.0);
    assert!(study["config"]["dropout"].is_null());
    assert_ne!(study["checkpoint"], off["checkpoint"]);
    assert_eq!(std::fs::read_dir(&ckpts).unwrap().count(), 2);
}

#[test]
fn mixed_precision_scopes_hold_their_layers_and_agree_with_the_other_scopes() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let common = ["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--epochs", "1", "--data-dir", d];

    // a name the model lacks is refused before training, with the model's names
    let refused = work.path().join("refused");
    let e = run_fail(&[&common[..], &["--layer-bits", "fc1=8", "--out", refused.to_str().unwrap()]].concat());
    assert!(e.contains("--layer-bits") && e.contains("no layer \"fc1\"") && e.contains("layers.0, layers.1"), "{e}");
    assert!(!refused.exists(), "nothing is written for a refused run");
    let e = run_fail(&[&common[..], &["--layer-bits", "first=8,last=4"]].concat());
    assert!(e.contains("every layer is held"), "{e}");

    let out = work.path().join("run");
    let o = sweep_gpu()
        .args(common)
        .args(["--bits", "2,8", "--methods", "uniform-stochastic,normal-nearest", "--seeds", "2", "--scope", "each-layer"])
        .args(["--layer-bits", "last=fp32", "--layer-bits", "first=8", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap();
    let per_scope = 2 * (1 + 2);
    assert_eq!(rows.len(), 5 * per_scope, "all, two single layers, two mixed scopes");
    let find = |scope: &str, method: &str, bits: u32, seed: Option<u32>| {
        rows.iter().find(|r| r.scope == scope && r.method == method && r.bits == bits && r.seed == seed).unwrap_or_else(|| panic!("no {scope} {method} {bits} {seed:?}"))
    };
    let same = |a: &sweep_gpu::report::ResultRow, b: &sweep_gpu::report::ResultRow| {
        assert_eq!((a.value, a.weight_mse.to_bits(), a.size_bytes), (b.value, b.weight_mse.to_bits(), b.size_bytes), "{} vs {}", a.variant_id, b.variant_id);
    };
    for (method, seeds) in [("uniform-stochastic", vec![Some(1), Some(2)]), ("normal-nearest", vec![None])] {
        for &seed in &seeds {
            for bits in [2, 8] {
                // the last layer held at fp32 is the first layer alone
                same(find("all+layers.1=fp32", method, bits, seed), find("layer=layers.0", method, bits, seed));
            }
            // the first layer held at 8 bits is `all` at 8 bits; at 2 bits it
            // costs more bytes than `all` and fewer than 8 bits everywhere
            same(find("all+layers.0=8", method, 8, seed), find("all", method, 8, seed));
            let (mixed, low, high) = (find("all+layers.0=8", method, 2, seed), find("all", method, 2, seed), find("all", method, 8, seed));
            assert!(low.size_bytes < mixed.size_bytes && mixed.size_bytes < high.size_bytes);
            assert_ne!(mixed.weight_mse, low.weight_mse);
        }
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("layers.0=8 held") && report.contains("mixed precision all+layers.1=fp32, all+layers.0=8"), "{report}");
    for stem in ["accuracy_vs_bits_layer_all_layers_0_8", "accuracy_vs_bits_layer_all_layers_1_fp32"] {
        assert!(out.join(format!("{stem}.svg")).is_file() && out.join(format!("{stem}.png")).is_file(), "{stem}");
    }
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["smallest_bits_within_1pct"]["layer/all+layers.0=8"].is_object());
}

#[test]
fn clipping_is_checked_recorded_and_changes_the_levels() {
    for p in ["50", "100", "NaN", "-3"] {
        let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--clip", p]);
        assert!(e.contains("--clip") && e.contains("not a percentile"), "{p}: {e}");
    }
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--clip", "99", "--methods", "uniform-nearest,lloyd-nearest"]);
    assert!(e.contains("--clip") && e.contains("lloyd-nearest"), "{e}");

    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let run = |out: &str, clip: &[&str]| {
        let base = ["--model", "mlp-complex", "--dataset", "churn", "--device", "cpu", "--epochs", "1", "--bits", "2,4", "--methods", "uniform-nearest,normal-nearest,midrise"];
        let (o, dir) = sweep_into(data.path(), work.path(), out, &[&base[..], clip].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (sweep_gpu::report::read_results(&dir.join("results.csv"), false).unwrap(), std::fs::read_to_string(dir.join("report.md")).unwrap())
    };
    let (plain, _) = run("plain", &[]);
    let (clipped, report) = run("clipped", &["--clip", "95"]);
    assert!(report.contains("clipped to its 95th percentile"), "{report}");
    assert_eq!(plain.len(), clipped.len());
    for (a, b) in plain.iter().zip(&clipped) {
        assert_eq!(a.variant_id, b.variant_id);
        // the same checkpoint, other levels: the weight error moves
        assert_eq!(a.fp32_value, b.fp32_value);
        assert_ne!(a.weight_mse, b.weight_mse, "{}", a.variant_id);
    }
    let config = |out: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(work.path().join(out).join("config.json")).unwrap()).unwrap() };
    assert_eq!(config("clipped")["config"]["clip"], 95.0, "a percentile is written as a number, as before --clip mse");

    // --clip mse: per bit width and method, the range of least error under
    // that method's rounding: no deterministic method's weight error rises,
    // and each method's range moves somewhere
    let (mse, report) = run("mse", &["--clip", "mse"]);
    assert!(report.contains("least squared error"), "{report}");
    assert_eq!(config("mse")["config"]["clip"], "mse");
    let mut lower = std::collections::BTreeMap::new();
    for (a, b) in plain.iter().zip(&mse) {
        assert_eq!((&a.variant_id, a.fp32_value), (&b.variant_id, b.fp32_value));
        assert!(b.weight_mse <= a.weight_mse * (1.0 + 1e-6), "{}: {} against {}", a.variant_id, b.weight_mse, a.weight_mse);
        *lower.entry(a.method.clone()).or_insert(0) += usize::from(b.weight_mse < a.weight_mse);
    }
    assert_eq!(lower.len(), 3);
    assert!(lower.values().all(|&n| n > 0), "mse clipping moved no range of some method: {lower:?}");
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--clip", "msq"]);
    assert!(e.contains("--clip") && e.contains("nor 'mse'"), "{e}");
}

/// --rescale: gain brings every variant's weight gain to 1, lsq never adds
/// weight error, neither changes a size; it is recorded, reported, and a
/// folder swept with it is not continued without it.
#[test]
fn rescaling_restores_the_gain_or_lowers_the_error_and_is_recorded() {
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--rescale", "unit"]);
    assert!(e.contains("--rescale") && e.contains("gain") && e.contains("lsq"), "{e}");
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let base = ["--model", "mlp-complex", "--dataset", "churn", "--device", "cpu", "--epochs", "1", "--bits", "1,2,4", "--seeds", "2", "--methods", "uniform-nearest,uniform-stochastic,midrise"];
    let run = |out: &str, extra: &[&str]| sweep_into(data.path(), work.path(), out, &[&base[..], extra].concat());
    let read = |out: &str, extra: &[&str]| sweep_and_read(data.path(), work.path(), out, &[&base[..], extra].concat());
    let (plain, _, config) = read("plain", &[]);
    assert!(config["config"].get("rescale").is_none(), "no rescaling is left out of config.json, as before --rescale");
    let (gain, report, config) = read("gain", &["--rescale", "gain"]);
    assert_eq!(config["config"]["rescale"], "gain");
    assert!(report.contains("Σw²/Σwq"), "{report}");
    let (lsq, report, _) = read("lsq", &["--rescale", "lsq"]);
    assert!(report.contains("Σwq/Σq²"), "{report}");
    assert_eq!(plain.len(), 3 * (1 + 2 + 1));
    let mut moved = 0;
    for ((p, g), l) in plain.iter().zip(&gain).zip(&lsq) {
        assert!(p.variant_id == g.variant_id && p.variant_id == l.variant_id);
        assert!(p.size_bytes == g.size_bytes && p.size_bytes == l.size_bytes, "{}: the factor costs no bytes", p.variant_id);
        let gg = g.weight_gain.unwrap();
        assert!((gg - 1.0).abs() < 1e-4, "{}: gain {gg} after --rescale gain", p.variant_id);
        assert!(l.weight_mse <= p.weight_mse * (1.0 + 1e-6), "{}: {} against {}", p.variant_id, l.weight_mse, p.weight_mse);
        moved += usize::from(l.weight_mse < p.weight_mse && (p.weight_gain.unwrap() - 1.0).abs() > 1e-3);
    }
    assert!(moved > 0, "lsq lowered no variant's error");
    // the folder of a rescaled run is not continued without it
    let (o, _) = run("gain", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("rescale") && stderr.contains("--resume"), "{stderr}");
}

/// --bias-correct: the weights, their error and the sizes stay as rounded,
/// the scores move; it is recorded and reported, a folder swept with it is not
/// continued without it, and it is refused where it has no f32 bias to correct
/// (--bias separate or pool; a conv net's BatchNorm pooled with its weights).
#[test]
fn bias_correction_moves_the_scores_not_the_weights_and_is_recorded() {
    let e = run_fail(&["--model", "cnn", "--dataset", "fashion-mnist", "--bias-correct", "mean", "--bn", "pool"]);
    assert!(e.contains("--bias-correct") && e.contains("--bn fold or keep"), "{e}");
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--bias-correct", "active", "--bias", "pool"]);
    assert!(e.contains("--bias-correct") && e.contains("--bias fp32"), "{e}");
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "churn", "--bias-correct", "median"]);
    assert!(e.contains("--bias-correct") && e.contains("mean") && e.contains("active"), "{e}");
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let base = ["--model", "mlp-complex", "--dataset", "churn", "--device", "cpu", "--epochs", "1", "--bits", "1,2,4", "--seeds", "2", "--methods", "uniform-nearest,normal-stochastic"];
    let run = |out: &str, extra: &[&str]| sweep_into(data.path(), work.path(), out, &[&base[..], extra].concat());
    let read = |out: &str, extra: &[&str]| sweep_and_read(data.path(), work.path(), out, &[&base[..], extra].concat());
    let (plain, report, config) = read("plain", &[]);
    assert!(config["config"].get("bias_correct").is_none() && !report.contains("biases corrected"), "left out when none, as before the flag");
    for mode in ["mean", "active"] {
        let (fixed, report, config) = read(mode, &["--bias-correct", mode]);
        assert_eq!(config["config"]["bias_correct"], mode);
        assert!(report.contains("biases corrected"), "{report}");
        assert_eq!(plain.len(), 3 * (1 + 2));
        let mut moved = 0;
        for (p, f) in plain.iter().zip(&fixed) {
            assert_eq!(p.variant_id, f.variant_id);
            assert_eq!((p.weight_mse.to_bits(), p.weight_gain.map(f64::to_bits), p.size_bytes), (f.weight_mse.to_bits(), f.weight_gain.map(f64::to_bits), f.size_bytes), "{}", p.variant_id);
            assert_eq!(p.fp32_value, f.fp32_value);
            moved += usize::from(p.value != f.value);
        }
        assert!(moved > 0, "--bias-correct {mode} changed no score");
    }
    // the log says what calibrated it: the 120 training rows of 200 (60 %)
    let (o, _) = run("active-again", &["--bias-correct", "active"]);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && log.contains("--bias-correct active: input means over the 120 training rows"), "{log}");
    let (o, _) = run("mean", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("bias_correct") && stderr.contains("--resume"), "{stderr}");
}

/// --init-seed changes the training, not the split: its own checkpoint, the
/// same data split; equal to --seed it is the plain run; and a folder trained
/// with one init seed is not continued with another.
#[test]
fn the_init_seed_moves_the_training_and_not_the_split() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let run = |out: &str, extra: &[&str]| {
        let base = ["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--epochs", "2", "--bits", "4", "--methods", "uniform-nearest"];
        let seed: &[&str] = if extra.contains(&"--seed") { &[] } else { &["--seed", "3"] };
        let (o, dir) = sweep_into(data.path(), work.path(), out, &[&base[..], seed, extra].concat());
        let info: serde_json::Value = std::fs::read_to_string(dir.join("config.json")).ok().map(|t| serde_json::from_str(&t).unwrap()).unwrap_or_default();
        (o, info)
    };
    let (o, plain) = run("plain", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (o, same) = run("same", &["--init-seed", "3"]);
    assert!(o.status.success());
    assert_eq!(same["checkpoint"], plain["checkpoint"], "--init-seed equal to --seed is the plain run");
    assert_eq!(same["checkpoint_reused"], true);
    assert!(same["config"].get("init_seed").is_none());
    let (o, other) = run("other", &["--init-seed", "4"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.contains("init seed 4"), "{stderr}");
    assert_eq!(other["config"]["init_seed"], 4);
    assert_ne!(other["checkpoint"], plain["checkpoint"]);
    assert_ne!(other["training_summary"]["epoch_losses"], plain["training_summary"]["epoch_losses"], "other initial weights train differently");
    for key in ["split_sizes", "data_hash", "preprocessing"] {
        assert_eq!(other[key], plain[key], "{key}: the split is --seed's");
    }
    // --seed 4 alone trains on another split: it must not take seed 3's split
    // trained from init seed 4 out of the cache
    let (o, four) = run("four", &["--seed", "4"]);
    assert!(o.status.success());
    assert_eq!(four["checkpoint_reused"], false, "{}", four["checkpoint"]);
    assert_ne!(four["checkpoint"], other["checkpoint"]);
    // a folder is continued only with the init seed that trained it, both ways
    let (o, _) = run("other", &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("init_seed 4 (here default)"), "{stderr}");
    let (o, _) = run("plain", &["--init-seed", "5"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("init_seed default (here 5)"), "{stderr}");
}

/// --restarts N trains from init seeds K..K+N-1, keeps the best on validation
/// (a regressor: the lowest MSE), lists every training in config.json, and
/// reuses each one's checkpoint the next time.
#[test]
fn quantization_aware_training_is_checked_recorded_and_cached() {
    let dense = ["--model", "mlp-simple", "--dataset", "churn"];
    for (qat, want) in [
        ("uniform-stochastic:4", "deterministic method"),
        ("uniform-nearest", "expected METHOD:BITS"),
        ("uniform-nearest:17", "outside 1..=16"),
        ("uniform-nearest:x", "not a whole number of bits"),
        ("magic:4", "the deterministic ones are uniform-nearest"),
    ] {
        let e = run_fail(&[&dense[..], &["--qat", qat]].concat());
        assert!(e.contains("--qat") && e.contains(want), "{qat}: {e}");
    }
    // the conv nets take --qat too: this run gets as far as the data
    let e = run_fail(&["--model", "cnn", "--dataset", "fashion-mnist", "--qat", "uniform-nearest:4", "--data-dir", "/nonexistent"]);
    assert!(!e.contains("--qat") && e.contains("/nonexistent"), "{e}");
    let e = run_fail(&[&dense[..], &["--qat", "uniform-nearest:4", "--qat-epochs", "0"]].concat());
    assert!(e.contains("--qat-epochs") && e.contains("at least 1"), "{e}");
    let e = run_fail(&[&dense[..], &["--qat", "lloyd-nearest:4", "--clip", "99"]].concat());
    assert!(e.contains("--qat") && e.contains("--clip"), "{e}");

    let data = tabular_dir(600);
    let work = tempfile::tempdir().unwrap();
    let base = ["--model", "mlp-simple", "--dataset", "telescope", "--device", "cpu", "--epochs", "4", "--seed", "3", "--bits", "2,8", "--methods", "uniform-nearest,midrise"];
    let (plain_rows, _, plain) = sweep_and_read(data.path(), work.path(), "plain", &base);
    let qat = [&base[..], &["--qat", "uniform-nearest:2", "--qat-epochs", "2"]].concat();
    let (rows, report, info) = sweep_and_read(data.path(), work.path(), "qat", &qat);
    // the machine is recorded, in config.json and the report
    assert!(plain["host"].as_str().unwrap().contains(&format!("{} logical CPUs", std::thread::available_parallelism().unwrap())), "{plain}");
    assert!(report.contains("| host | ") && report.contains("logical CPUs"), "{report}");
    // a plain run records nothing of it
    assert!(plain.get("qat_start").is_none() && plain["training"].get("qat").is_none() && plain["config"].get("qat").is_none());
    // the fine-tuning starts from the plain run's checkpoint and is cached as its own
    let start = &info["qat_start"];
    assert_eq!(start["checkpoint"], plain["checkpoint"]);
    assert_ne!(info["checkpoint"], plain["checkpoint"]);
    assert_eq!(start["training"], plain["training"]);
    assert_eq!(start["variant_id"], "uniform-nearest:2:layer:-:all");
    let q = &info["training"]["qat"];
    assert_eq!((q["method"].as_str(), q["bits"].as_u64(), q["granularity"].as_str()), (Some("uniform-nearest"), Some(2), Some("layer")));
    assert_eq!(info["training"]["epochs"], 2);
    assert!(info["training_summary"]["best_epoch"].as_f64().unwrap() > 0.0, "the fine-tuning kept its start: {info}");
    assert_eq!(info["training"]["learning_rate"].as_f64().unwrap(), plain["training"]["learning_rate"].as_f64().unwrap() / 10.0);
    // the start's scores before the fine-tuning are the plain run's own
    let plain_at = |id: &str| plain_rows.iter().find(|r| r.variant_id == id).unwrap().value;
    assert_eq!(start["fp32_value"].as_f64().unwrap(), plain_rows[0].fp32_value);
    assert_eq!(start["quantized_value"].as_f64().unwrap(), plain_at("uniform-nearest:2:layer:-:all"));
    assert_eq!(rows.len(), plain_rows.len());
    assert!(report.contains("| quantization-aware training | fine-tuned as uniform-nearest at 2 bits (layer) from "), "{report}");
    // within 1 % is measured against the start's fp32, not the fine-tuned net's
    let summary: sweep_gpu::report::summary::Summary = serde_json::from_str(&std::fs::read_to_string(work.path().join("qat/summary.json")).unwrap()).unwrap();
    assert_eq!(summary.reference_value, Some(plain_rows[0].fp32_value));
    assert!(!std::fs::read_to_string(work.path().join("plain/summary.json")).unwrap().contains("reference_value"));
    assert_eq!(summary.fp32_value, rows[0].fp32_value);
    let redone = sweep_gpu::report::summary::summarize(&rows, true, Some(plain_rows[0].fp32_value)).unwrap();
    assert_eq!(summary.smallest_bits_within_1pct, redone.smallest_bits_within_1pct);
    assert!(report.contains("## Smallest bit width within 1 % of the start's fp32") && report.contains("this net's own fp32 is"), "{report}");
    // again: the start and the fine-tuning both come from their checkpoints
    let (o, again) = sweep_into(data.path(), work.path(), "again", &qat);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert_eq!(log.matches("reusing checkpoint").count(), 2, "{log}");
    assert!(!log.lines().any(|l| l.starts_with("quantization-aware training")), "{log}");
    let again: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(again.join("config.json")).unwrap()).unwrap();
    assert_eq!(again["checkpoint"], info["checkpoint"]);
    // another target is another fine-tuning
    let (_, _, other) = sweep_and_read(data.path(), work.path(), "other", &[&base[..], &["--qat", "midrise:2", "--qat-epochs", "2"]].concat());
    assert_ne!(other["checkpoint"], info["checkpoint"]);
    assert_eq!(other["qat_start"]["checkpoint"], plain["checkpoint"]);
    // the fine-tuning is keyed by its start's weights too: a start trained
    // again under its key to other weights gets a fine-tuning of its own
    assert_eq!(q["from_sha256"], plain["weights_sha256"]);
    retrain_elsewhere_at(Path::new(plain["checkpoint"].as_str().unwrap()));
    let (o, moved) = sweep_into(data.path(), work.path(), "moved", &qat);
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && log.lines().any(|l| l.starts_with("quantization-aware training")), "{log}");
    let moved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(moved.join("config.json")).unwrap()).unwrap();
    assert_ne!(moved["checkpoint"], info["checkpoint"]);
}

/// Adam at lr 1e-3 and nothing else: no schedule, decay, clipping or augmentation.
fn plain_training(epochs: usize, batch_size: usize, seed: u32) -> sweep_gpu::train::TrainSettings {
    sweep_gpu::train::TrainSettings {
        epochs,
        batch_size,
        learning_rate: 1e-3,
        seed,
        weight_decay: 0.0,
        grad_clip: None,
        one_cycle: false,
        augment: false,
        train_limit: None,
        eval_limit: None,
        qat: None,
    }
}

/// A --qat target: uniform-nearest at `bits`, biases f32, no clip or rescale.
fn uniform_nearest_target(bits: u32, granularity: sweep_gpu::quant::Granularity, bn: Option<sweep_gpu::quant::apply::BnMode>) -> sweep_gpu::train::qat::QatSettings {
    sweep_gpu::train::qat::QatSettings {
        method: sweep_gpu::quant::Method::UniformNearest,
        bits,
        granularity,
        bias: sweep_gpu::quant::apply::BiasMode::Fp32,
        clip: None,
        rescale: Default::default(),
        bn,
        from: "test".into(),
        from_sha256: String::new(),
    }
}

#[test]
fn quantization_aware_training_lifts_the_variant_it_trains_for() {
    use sweep_gpu::models::ModelSpec;
    use sweep_gpu::train::{TrainSettings, fit};
    let data = tabular_dir(600);
    let dataset = load(DatasetId::Telescope, data.path()).unwrap();
    let spec = ModelSpec::new(sweep_gpu::models::ModelKind::MlpSimple, dataset.id, dataset.train.sample_len(), dataset.task).unwrap();
    let device = burn::tensor::Device::flex();
    let progress = sweep_gpu::progress::Progress::hidden();
    let settings = plain_training(10, 16, 3);
    let (start, _) = fit(&spec, &dataset, &settings, None, &device, &progress).unwrap();
    let qat = uniform_nearest_target(2, sweep_gpu::quant::Granularity::Layer, None);
    let tuned_settings = TrainSettings { epochs: 4, learning_rate: 1e-3, qat: Some(qat.clone()), ..settings.clone() };
    let e = fit(&spec, &dataset, &tuned_settings, None, &device, &progress).unwrap_err();
    assert!(e.to_string().contains("starts from trained weights"), "{e}");
    let (tuned, summary) = fit(&spec, &dataset, &tuned_settings, Some(&start), &device, &progress).unwrap();
    // the same fine-tuning without the quantizer in the forward pass
    let plain_settings = TrainSettings { qat: None, ..tuned_settings.clone() };
    let (plain, _) = fit(&spec, &dataset, &plain_settings, Some(&start), &device, &progress).unwrap();
    let valid = sweep_gpu::eval::Evaluator::new(&dataset, &dataset.valid, &device, &start, None, 64).unwrap();
    let accuracy = |w: &sweep_gpu::models::Weights| valid.score_all(w).unwrap().primary;
    let before = accuracy(&qat.quantize(&start).unwrap());
    let after = accuracy(&qat.quantize(&tuned).unwrap());
    let plain = accuracy(&qat.quantize(&plain).unwrap());
    // the kept weights are the ones validated, as quantized
    assert_eq!(after, summary.valid_metric);
    assert!(summary.best_epoch > 0.0);
    // and training through the quantizer made a better 2-bit net than the
    // start, and than the same fine-tuning of the f32 weights
    assert!(after > before && after > plain, "2-bit validation accuracy {before} before, {after} after, {plain} fine-tuned without the quantizer");
    // the loss trained on is the quantized net's: an epoch at a learning rate
    // too small to move the weights reports the quantized start's loss
    let loss = |w: &sweep_gpu::models::Weights| -> f64 {
        use burn::tensor::{Int, Tensor, TensorData};
        let n = dataset.train.len();
        let x = Tensor::<2>::from_data(TensorData::new(dataset.train.x.clone(), [n, dataset.train.sample_len()]), &device);
        let Targets::Classes(c) = &dataset.train.y else { unreachable!() };
        let y = Tensor::<1, Int>::from_data(TensorData::new(c.iter().map(|&v| v as i64).collect::<Vec<_>>(), [n]), &device);
        let logits = sweep_gpu::models::mlp::Mlp::from_weights(&spec, w, &device).forward(x);
        burn::nn::loss::CrossEntropyLossConfig::new().init(&device).forward(logits, y).into_scalar::<f32>() as f64
    };
    let still = TrainSettings { epochs: 1, learning_rate: 1e-12, ..tuned_settings.clone() };
    let trained_on = fit(&spec, &dataset, &still, Some(&start), &device, &progress).unwrap().1.epoch_losses[0];
    let (quantized_loss, f32_loss) = (loss(&qat.quantize(&start).unwrap()), loss(&start));
    assert!((trained_on - quantized_loss).abs() < 1e-4 * quantized_loss, "loss {trained_on}: the quantized start's is {quantized_loss}, the f32 start's {f32_loss}");
    assert!((quantized_loss - f32_loss).abs() > 1e-2 * f32_loss);
}

/// A conv net's QAT trains the net the sweep scores: BatchNorm on its frozen
/// running statistics (folded under --bn fold), no dropout, the weights
/// quantized by the sweep's own quantizer.
#[test]
fn conv_quantization_aware_training_trains_and_keeps_the_scored_net() {
    use burn::tensor::{Int, Tensor, TensorData};
    use sweep_gpu::data::{Table, Task};
    use sweep_gpu::models::{ModelKind, ModelSpec, cnn::ConvNet};
    use sweep_gpu::quant::apply::BnMode;
    use sweep_gpu::train::{TrainSettings, fit};
    // noisy images whose class is which band of rows is bright in which channel
    let mut rng = common::Lcg(17);
    let mut images = |n: usize| -> Table {
        let mut x = Vec::with_capacity(n * 3072);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let class = (i % 10) as u32;
            y.push(class);
            for c in 0..3 {
                for p in 0..1024 {
                    let lit = (p / 32 / 8) as u32 * 3 + c as u32 == class;
                    x.push(if lit { 1.5 } else { 0.0 } + (rng.next() as f32 - 0.5));
                }
            }
        }
        Table { x, sample_shape: vec![3, 32, 32], y: Targets::Classes(y) }
    };
    let (train, valid) = (images(40), images(20));
    let dataset = sweep_gpu::data::Dataset {
        id: DatasetId::FashionMnist,
        task: Task::Classification { classes: 10 },
        test: valid.clone(),
        train,
        valid,
        target_scaler: None,
        target_unit: None,
        feature_names: vec![],
        files: vec![],
        data_hash: "synthetic".into(),
        preprocessing: "synthetic".into(),
    };
    let spec = ModelSpec::new(ModelKind::Cnn, dataset.id, 3072, dataset.task).unwrap();
    let device = burn::tensor::Device::flex();
    let progress = sweep_gpu::progress::Progress::hidden();
    let settings = plain_training(2, 40, 4);
    let (start, _) = fit(&spec, &dataset, &settings, None, &device, &progress).unwrap();
    // the same seed trains the same net, bit for bit, whatever else this
    // process trains meanwhile (the other tests here)
    let again = fit(&spec, &dataset, &settings, None, &device, &progress).unwrap().0;
    assert!(again == start, "the same seed trained the conv net to other weights");
    let qat = |bn: BnMode| uniform_nearest_target(2, sweep_gpu::quant::Granularity::Channel, Some(bn));

    // --bn fold: the kept weights, folded and quantized, are the ones validated
    let fold = qat(BnMode::Fold);
    let tuned_settings = TrainSettings { qat: Some(fold.clone()), ..settings.clone() };
    let (tuned, summary) = fit(&spec, &dataset, &tuned_settings, Some(&start), &device, &progress).unwrap();
    assert!(tuned.tensors.iter().any(|t| t.role.is_bn()), "the checkpoint keeps its BatchNorm");
    assert_ne!(tuned.tensors, start.tensors);
    let folded = fold.layout(&start);
    let ops = sweep_gpu::models::cnn::program(ModelKind::Cnn, &folded, true).unwrap();
    let valid = sweep_gpu::eval::Evaluator::new(&dataset, &dataset.valid, &device, &folded, Some(ops), 64).unwrap();
    let accuracy = |w: &sweep_gpu::models::Weights| valid.score_all(w).unwrap().primary;
    let (before, after) = (accuracy(&fold.quantize(&start).unwrap()), accuracy(&fold.quantize(&tuned).unwrap()));
    assert_eq!(after, summary.valid_metric);
    assert!(after >= before, "the start ({before}) is among the weights validation picks from; kept {after}");

    // --bn keep: the loss trained on is the quantized net's at inference (no
    // batch statistics), so an epoch too slow to move the weights reports it
    let keep = qat(BnMode::Keep);
    let still = TrainSettings { epochs: 1, learning_rate: 1e-12, qat: Some(keep.clone()), ..settings.clone() };
    let trained_on = fit(&spec, &dataset, &still, Some(&start), &device, &progress).unwrap().1.epoch_losses[0];
    let loss = |w: &sweep_gpu::models::Weights| -> f64 {
        let n = dataset.train.len();
        let x = Tensor::<4>::from_data(TensorData::new(dataset.train.x.clone(), [n, 3, 32, 32]), &device);
        let Targets::Classes(c) = &dataset.train.y else { unreachable!() };
        let y = Tensor::<1, Int>::from_data(TensorData::new(c.iter().map(|&v| v as i64).collect::<Vec<_>>(), [n]), &device);
        let logits = ConvNet::from_weights(ModelKind::Cnn, 10, w, &device).forward(x);
        burn::nn::loss::CrossEntropyLossConfig::new().init(&device).forward(logits, y).into_scalar::<f32>() as f64
    };
    let (quantized_loss, f32_loss) = (loss(&keep.quantize(&start).unwrap()), loss(&start));
    assert!((trained_on - quantized_loss).abs() < 1e-4 * quantized_loss, "loss {trained_on}: the quantized start's is {quantized_loss}, the f32 start's {f32_loss}");
    assert!((quantized_loss - f32_loss).abs() > 1e-3 * f32_loss);
}

/// burn's random generator is one per process: two trainings at once must not
/// share its draws (initialisation and dropout), or neither is its seed's.
#[test]
fn trainings_at_once_in_one_process_each_train_their_seeds_net() {
    use sweep_gpu::models::{ModelKind, ModelSpec};
    use sweep_gpu::train::fit;
    let data = tabular_dir(300);
    let dataset = load(DatasetId::Telescope, data.path()).unwrap();
    // mlp-complex: dropout 0.1 draws in every step
    let spec = ModelSpec::new(ModelKind::MlpComplex, dataset.id, dataset.train.sample_len(), dataset.task).unwrap();
    assert!(spec.dropout > 0.0);
    let device = burn::tensor::Device::flex();
    let progress = sweep_gpu::progress::Progress::hidden();
    let train = |seed: u32| fit(&spec, &dataset, &plain_training(3, 8, seed), None, &device, &progress).unwrap().0;
    let (alone_5, alone_6) = (train(5), train(6));
    assert_ne!(alone_5, alone_6);
    let (at_once_5, at_once_6) = std::thread::scope(|s| {
        let a = s.spawn(|| train(5));
        let b = s.spawn(|| train(6));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(at_once_5 == alone_5 && at_once_6 == alone_6, "trained beside another training, a seed gave other weights");
}

#[test]
fn restarts_keep_the_training_best_on_validation() {
    let e = run_fail(&["--model", "mlp-simple", "--dataset", "mv", "--restarts", "0"]);
    assert!(e.contains("--restarts") && e.contains("at least 1"), "{e}");
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let run = |out: &str, extra: &[&str]| {
        let base = ["--model", "mlp-simple", "--dataset", "mv", "--device", "cpu", "--epochs", "2", "--bits", "4", "--methods", "uniform-nearest", "--seed", "2"];
        let (o, dir) = sweep_into(data.path(), work.path(), out, &[&base[..], extra].concat());
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{stderr}");
        let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        (stderr, info)
    };
    let (_, plain) = run("plain", &[]);
    assert!(plain.get("restarts").is_none() && plain["config"].get("restarts").is_none());
    let (log, three) = run("three", &["--restarts", "3", "--init-seed", "5"]);
    let restarts = three["restarts"].as_array().unwrap();
    assert_eq!(restarts.iter().map(|r| r["init_seed"].as_u64().unwrap()).collect::<Vec<_>>(), vec![5, 6, 7]);
    let valid: Vec<f64> = restarts.iter().map(|r| r["valid_metric"].as_f64().unwrap()).collect();
    let best = (0..3).fold(0, |b, i| if valid[i] < valid[b] { i } else { b });
    assert_eq!(three["checkpoint"], restarts[best]["checkpoint"], "the lowest validation MSE is kept: {valid:?}");
    assert_eq!(three["training_summary"]["valid_metric"].as_f64().unwrap(), valid[best]);
    assert!(log.contains(&format!("kept init seed {}", 5 + best)), "{log}");
    assert_eq!(log.matches("training mlp-simple").count(), 3, "{log}");
    // again: all three from their checkpoints, the same one kept
    let (log, again) = run("again", &["--restarts", "3", "--init-seed", "5"]);
    assert_eq!(log.matches("reusing checkpoint").count(), 3, "{log}");
    assert_eq!(again["checkpoint"], three["checkpoint"]);
    // the first restart is the plain run's training when it starts at --seed
    let (_, from_seed) = run("from-seed", &["--restarts", "2"]);
    assert_eq!(from_seed["restarts"][0]["checkpoint"], plain["checkpoint"]);
}

#[test]
fn the_scoring_bench_reports_every_round_and_their_median() {
    let data = tabular_dir(200);
    let d = data.path().to_str().unwrap();
    let args = ["bench", "--skip-quantizer", "--device", "cpu", "--data-dir", d, "--variants", "3", "--batch", "2", "--rounds", "3", "--json"];
    let out = sweep_gpu().args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // the figures name the machine they were measured on
    assert!(json["host"].as_str().unwrap().contains("logical CPUs"), "{json}");
    let b = &json["scoring"][0];
    assert_eq!(b["rounds"], 3, "{b}");
    let per_round = |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let one = per_round(&b["one_at_a_time"]["variants_per_second_per_round"]);
    let batched = per_round(&b["batched"]["variants_per_second_per_round"]);
    let ratios = per_round(&b["batched_speedup_per_round"]);
    assert!(one.len() == 3 && batched.len() == 3 && ratios.len() == 3, "{b}");
    // each round's ratio is that round's two rates; the reported one is the median round's
    for k in 0..3 {
        assert!((ratios[k] - batched[k] / one[k]).abs() <= 1e-9 * ratios[k], "{b}");
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(b["batched_speedup"].as_f64().unwrap(), sorted[1], "{b}");
    let mut rates = one.clone();
    rates.sort_by(f64::total_cmp);
    let median = b["one_at_a_time"]["variants_per_second"].as_f64().unwrap();
    assert!((median - rates[1]).abs() <= 1e-9 * median, "{b}");

    let e = run_fail(&["bench", "--skip-quantizer", "--device", "cpu", "--data-dir", d, "--rounds", "0"]);
    assert!(e.contains("--rounds"), "{e}");
}

/// The one checkpoint folder under `root`.
fn the_checkpoint(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// The one checkpoint under `root` trained again elsewhere, as a CPU with other
/// caches trains a conv net: the same key and meta, one weight an ulp off.
fn retrain_elsewhere(root: &Path) {
    retrain_elsewhere_at(&the_checkpoint(root));
}

/// [`retrain_elsewhere`] for the checkpoint in `dir`.
fn retrain_elsewhere_at(dir: &Path) {
    use sweep_gpu::train::checkpoint;
    let meta: checkpoint::CheckpointMeta = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let mut w = checkpoint::load_weights(&dir.join("model.bpk"), &meta.model).unwrap();
    w.tensors[0].data[0] = f32::from_bits(w.tensors[0].data[0].to_bits() + 1);
    checkpoint::save(dir, &meta.model, &w, &meta).unwrap();
}

#[test]
fn sweep_on_the_cpu_writes_every_output_and_reuses_its_checkpoint() {
    let data = tabular_dir(400);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run1");
    let args = |out: &Path| -> Vec<String> {
        [
            "--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--bits", "2,8", "--methods",
            "uniform-nearest,uniform-stochastic,midrise", "--epochs", "2", "--seeds", "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["--data-dir".into(), data.path().display().to_string(), "--out".into(), out.display().to_string()])
        .collect()
    };
    let run = sweep_gpu().args(args(&out)).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("training mlp-simple on churn"), "{stderr}");
    for f in ["results.csv", "summary.json", "config.json", "report.md", "report.html", "accuracy_vs_bits_layer.svg", "accuracy_vs_bits_layer.png"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let rows = sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap();
    // 2 bit widths x (2 deterministic + 1 stochastic x 2 seeds)
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.device == "cpu" && r.metric == "accuracy" && r.adapter.contains("flex")));
    // size by hand: mlp-simple on churn is 13x10 and 10x2 weights, 10 + 2 f32
    // biases; each weight layer is one group whose uniform or midrise levels
    // take lo and hi (8 bytes)
    for r in &rows {
        let b = r.bits as usize;
        assert_eq!(r.size_bytes, (130 * b).div_ceil(8) + (20 * b).div_ceil(8) + 2 * 8 + 4 * 12, "{r:?}");
        assert_eq!(r.fp32_size_bytes, 4 * (150 + 12), "{r:?}");
    }
    let png = std::fs::read(out.join("accuracy_vs_bits_layer.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // a second run reuses the checkpoint and gives the same numbers
    let out2 = work.path().join("run2");
    let run = sweep_gpu().args(args(&out2)).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && stderr.contains("reusing checkpoint") && !stderr.contains("another machine"), "{stderr}");
    let rows2 = sweep_gpu::report::read_results(&out2.join("results.csv"), false).unwrap();
    let key = |r: &sweep_gpu::report::ResultRow| (r.variant_id.clone(), r.value.to_bits(), r.weight_mse.to_bits());
    assert_eq!(rows.iter().map(key).collect::<Vec<_>>(), rows2.iter().map(key).collect::<Vec<_>>());

    // the checkpoint records the machine it trained on; a run reusing it
    // elsewhere names that machine in its report
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["training_summary"]["host"], config["host"], "{config}");
    let md = std::fs::read_to_string(out2.join("report.md")).unwrap();
    assert!(md.contains("(best on validation); checkpoint reused |"), "{md}");
    let meta_json = the_checkpoint(&work.path().join("checkpoints")).join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_json).unwrap()).unwrap();
    meta["summary"]["host"] = "another machine, L1d 48 KiB 12-way".into();
    std::fs::write(&meta_json, meta.to_string()).unwrap();
    let out3 = work.path().join("run3");
    let run = sweep_gpu().args(args(&out3)).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success() && stderr.contains("on another machine: another machine, L1d 48 KiB 12-way, weights from epoch"), "{stderr}");
    let md = std::fs::read_to_string(out3.join("report.md")).unwrap();
    assert!(md.contains("checkpoint reused, trained on another machine, L1d 48 KiB 12-way |"), "{md}");

    // a checkpoint trained again under the same key holds other weights:
    // resuming run1 on it is refused, and run1's rows stay as they were
    retrain_elsewhere(&work.path().join("checkpoints"));
    let before = std::fs::read(out.join("results.csv")).unwrap();
    let o = sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !stderr.contains("panicked"), "{stderr}");
    for needle in ["results.csv", "other weights", "trained on another machine", "--checkpoint-dir"] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);

    // with the checkpoint lost, resuming trains it again, says beforehand that the
    // rows are continued only on the same weights, and a dense net gets them
    std::fs::remove_dir_all(the_checkpoint(&work.path().join("checkpoints"))).unwrap();
    let o = sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let note = stderr.find("note: ").expect("a note before the training");
    let training = stderr.find("training mlp-simple on churn").expect("a training");
    assert!(note < training, "{stderr}");
    for needle in ["rows scored on weights with sha256", "trained on this machine", "is gone, so the net is trained again", "dense nets do on any CPU", "--checkpoint-dir"] {
        assert!(stderr[note..].contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);
    // the note names where the rows' weights were trained, and says when the device differs
    let info_json = out.join("config.json");
    let mut info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&info_json).unwrap()).unwrap();
    info["training_summary"]["host"] = "another machine, L1d 48 KiB 12-way".into();
    info["training_summary"]["device"] = "Device<Wgpu(DiscreteGpu(0))>".into();
    std::fs::write(&info_json, info.to_string()).unwrap();
    std::fs::remove_dir_all(the_checkpoint(&work.path().join("checkpoints"))).unwrap();
    let o = sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    for needle in ["trained on another machine, L1d 48 KiB 12-way with Device<Wgpu(DiscreteGpu(0))>;", "training on another device gives other weights"] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);

    // the report is redrawn from results.csv alone
    std::fs::remove_file(out.join("report.md")).unwrap();
    let rep = sweep_gpu().args(["report", out.to_str().unwrap()]).output().unwrap();
    assert!(rep.status.success());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("uniform-stochastic") && md.contains("Smallest bit width"), "{md}");
    assert!(md.contains("| test split | 80 test samples: one sample is 1.250 points, and the accuracy's binomial standard error is"), "{md}");
}

#[test]
fn regression_sweep_reports_mse_and_mae_in_target_units() {
    let data = tabular_dir(300);
    let out = tempfile::tempdir().unwrap();
    let run = sweep_gpu()
        .args(["--model", "mlp-simple", "--dataset", "california", "--device", "cpu", "--bits", "4,16", "--methods", "histogram-nearest", "--epochs", "2"])
        .args(["--data-dir", data.path().to_str().unwrap(), "--out", out.path().join("r").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let rows = sweep_gpu::report::read_results(&out.path().join("r/results.csv"), false).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.metric, "mse");
        assert_eq!(r.metric2.as_deref(), Some("mae"));
        // in thousands of dollars: an error of a few tens, squared in the hundreds or thousands
        assert!(r.fp32_value2.unwrap() > 1.0 && r.fp32_value2.unwrap() < 500.0, "{r:?}");
    }
    // 16-bit is indistinguishable from fp32; 4-bit is worse
    let r16 = rows.iter().find(|r| r.bits == 16).unwrap();
    assert!((r16.value - r16.fp32_value).abs() / r16.fp32_value < 1e-3);
    // and keeps the weights' scale: a gain of 1 to within the 16-bit step
    let g16 = r16.weight_gain.expect("weight_gain is written");
    assert!((g16 - 1.0).abs() < 1e-4, "{g16}");
}

/// A results.csv written before the weight_gain column still reads (`report`
/// redraws from it, the gain left empty), but no run appends to it: resuming
/// is refused before any training, naming the file, and the file is untouched.
#[test]
fn a_results_file_from_before_the_weight_gain_column_reads_and_is_not_appended_to() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let (o, dir) = sweep_into(data.path(), work.path(), "old", &["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--epochs", "1", "--bits", "2,3", "--seeds", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv_path = dir.join("results.csv");
    let rows = sweep_gpu::report::read_results(&csv_path, false).unwrap();
    assert!(rows.iter().all(|r| r.weight_gain.is_some_and(f64::is_finite)));
    // the earlier layout: the column dropped, and the last row not yet written
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|&c| c == "weight_gain").unwrap();
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    w.write_record(header.iter().enumerate().filter(|&(i, _)| i != col).map(|(_, c)| *c)).unwrap();
    let records: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    for rec in &records[..records.len() - 1] {
        w.write_record(rec.iter().enumerate().filter(|&(i, _)| i != col).map(|(_, c)| c)).unwrap();
    }
    let old = w.into_inner().unwrap();
    std::fs::write(&csv_path, &old).unwrap();

    let legacy = sweep_gpu::report::read_results(&csv_path, false).unwrap();
    assert_eq!(legacy.len(), rows.len() - 1);
    assert!(legacy.iter().zip(&rows).all(|(a, b)| a.weight_gain.is_none() && a.value == b.value && a.weight_mse == b.weight_mse));
    let rep = sweep_gpu().args(["report", dir.to_str().unwrap()]).output().unwrap();
    assert!(rep.status.success(), "{}", String::from_utf8_lossy(&rep.stderr));
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(summary["settings"].as_array().unwrap().iter().all(|s| s["weight_gain_mean"].is_null()), "{summary}");

    let resumed = sweep_gpu().args(["--resume", dir.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(!resumed.status.success() && !stderr.contains("panicked"), "{stderr}");
    for needle in ["results.csv", "weight_gain", "new --out"] {
        assert!(stderr.contains(needle), "missing {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("training mlp-simple"), "{stderr}");
    assert_eq!(std::fs::read(&csv_path).unwrap(), old);
}

/// Interrupts a sweep after `abort_after` batches (and tears its last row, as a
/// kill in the middle of a write would), resumes it, and checks that the rows
/// equal an uninterrupted run's.
#[test]
fn a_killed_sweep_resumes_to_exactly_the_rows_of_an_uninterrupted_one() {
    let data = tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    let base = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = ["--model", "mlp-simple", "--dataset", "telescope", "--device", "cpu", "--bits", "1..=6", "--seeds", "3", "--epochs", "1", "--variants-per-batch", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--data-dir".into(), data.path().display().to_string(), "--out".into(), out.display().to_string()]);
        a.extend(["--checkpoint-dir".into(), work.path().join("ckpt").display().to_string()]);
        a
    };
    let key = |rows: Vec<sweep_gpu::report::ResultRow>| {
        let mut k: Vec<String> = rows
            .into_iter()
            .map(|mut r| {
                r.eval_ms = 0.0;
                format!("{r:?}")
            })
            .collect();
        k.sort();
        k
    };
    let full = work.path().join("full");
    assert!(sweep_gpu().args(base(&full)).status().unwrap().success());
    let want = key(sweep_gpu::report::read_results(&full.join("results.csv"), false).unwrap());
    assert_eq!(want.len(), 6 * (4 + 3 * 3));
    for abort_after in [1usize, 7, 15] {
        let out = work.path().join(format!("killed-{abort_after}"));
        let status = sweep_gpu().args(base(&out)).env("SWEEP_GPU_ABORT_AFTER_BATCHES", abort_after.to_string()).status().unwrap();
        assert!(!status.success(), "the hook must kill the run");
        let partial = sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap();
        assert_eq!(partial.len(), 5 * abort_after, "every finished batch was flushed");
        // a row torn by a kill mid-write
        let mut f = std::fs::OpenOptions::new().append(true).open(out.join("results.csv")).unwrap();
        std::io::Write::write_all(&mut f, b"uniform-nearest:9:layer:-:all,mlp-simple,tele").unwrap();
        // report leaves the torn row out, and says so
        let rep = sweep_gpu().args(["report", out.to_str().unwrap()]).output().unwrap();
        assert!(rep.status.success() && String::from_utf8_lossy(&rep.stdout).contains("is incomplete"), "{rep:?}");
        let resumed = sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&resumed.stderr);
        assert!(resumed.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("resuming: {} of 78 variants", 5 * abort_after)), "{stderr}");
        let stdout = String::from_utf8_lossy(&resumed.stdout);
        let split = format!("78 variants, {} of them scored now", 78 - 5 * abort_after);
        assert!(stdout.contains(&split) && stdout.contains(&format!("{} by the earlier run", 5 * abort_after)), "{stdout}");
        let got = key(sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap());
        assert_eq!(got, want, "abort after {abort_after} batches");
    }
}

#[test]
fn an_output_folder_is_continued_only_with_the_settings_that_made_it() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run");
    let common_args = ["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--seeds", "1"];
    let run_on = |data: &Path, bits: &str, epochs: &str| {
        sweep_gpu()
            .args(common_args)
            .args(["--bits", bits, "--epochs", epochs, "--data-dir", data.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let run = |bits: &str, epochs: &str| run_on(data.path(), bits, epochs);
    assert!(run("2,3", "1").status.success());
    let rows = std::fs::read(out.join("results.csv")).unwrap();
    let refused_with = |o: std::process::Output, needles: &[&str]| {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && !stderr.contains("panicked"), "{stderr}");
        for n in ["results.csv"].iter().chain(needles) {
            assert!(stderr.contains(n), "missing {n:?} in: {stderr}");
        }
        // refused before any training, and nothing written
        assert!(!stderr.contains("training mlp-simple"), "{stderr}");
        assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), rows);
    };
    // another grid, or another model from other training settings: two runs in one results.csv
    refused_with(run("4", "1"), &["holds a run with", "bits [2,3] (here [4])", "--resume"]);
    refused_with(run("2,3", "2"), &["holds a run with", "epochs 1 (here 2)", "--resume"]);
    // the same settings on other data
    let other = tabular_dir(210);
    refused_with(run_on(other.path(), "2,3", "1"), &["holds a run with", "other data", "point --data-dir at the files it used"]);
    // the same settings continue the run (here: nothing left to score)
    let same = run("2,3", "1");
    let stderr = String::from_utf8_lossy(&same.stderr);
    assert!(same.status.success() && stderr.contains("nothing left to score"), "{stderr}");
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), rows);
    // a training setting given as its default's value continues a folder made
    // with the default; another value does not
    let defaulted = work.path().join("defaulted");
    let sweep = |extra: &[&str]| {
        sweep_gpu()
            .args(common_args)
            .args(["--bits", "2", "--methods", "uniform-nearest", "--data-dir", data.path().to_str().unwrap(), "--out", defaulted.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(sweep(&[]).status.success());
    let o = sweep(&["--epochs", "10", "--batch-size", "16", "--lr", "0.001"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nothing left to score"), "{o:?}");
    let o = sweep(&["--epochs", "9"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("epochs default (here 9)"), "{stderr}");

    // rows without a config.json beside them are refused before training,
    // and no config.json is written that would claim them
    std::fs::remove_file(out.join("config.json")).unwrap();
    refused_with(run("4", "1"), &["no config.json beside it"]);
    assert!(!out.join("config.json").exists());
}

/// Float tolerance between batched and one-at-a-time scoring: the same
/// products summed in another order. Accuracy may move by one sample whose two
/// logits tie to within rounding; regression errors by a relative 1e-5.
const BATCHED_MSE_RTOL: f64 = 1e-5;

#[test]
fn batched_scoring_equals_one_at_a_time_and_shared_prefixes_change_nothing() {
    use burn::tensor::Device;
    use sweep_gpu::eval::Evaluator;
    use sweep_gpu::models::{ModelKind, ModelSpec};
    use sweep_gpu::quant::apply::{BiasMode, BnMode, Plan};
    use sweep_gpu::sweep::grid::{GridSpec, Scope};
    let data = tabular_dir(400);
    for id in [DatasetId::Churn, DatasetId::Mv] {
        let ds = load(id, data.path()).unwrap();
        let spec = ModelSpec::new(ModelKind::MlpComplex, id, ds.train.sample_len(), ds.task).unwrap();
        let device = Device::flex();
        let weights = sweep_gpu::models::initial_weights(&spec, 3).unwrap();
        let layers = weights.layers();
        let grid = GridSpec {
            methods: sweep_gpu::quant::Method::ALL.to_vec(),
            bits: vec![2, 5],
            granularities: vec![sweep_gpu::quant::Granularity::Layer],
            seeds: vec![1, 2],
            scopes: vec![Scope::All, Scope::Layer(layers[2].clone())],
        };
        let mut plan = Plan::new(weights.clone(), BiasMode::Fp32, BnMode::Fold).unwrap();
        plan.prepare(&grid.granularities, &grid.bits, &grid.methods);
        let eval = Evaluator::new(&ds, &ds.test, &device, &weights, None, 0).unwrap();
        // the CPU kernel (src/eval/dense_cpu.rs) against burn's kernels
        let mut kernel = Evaluator::new(&ds, &ds.test, &device, &weights, None, 0).unwrap();
        assert!(kernel.use_cpu_kernel(true).unwrap() && kernel.uses_cpu_kernel());
        let n = ds.test.len() as f64;
        for scope in &grid.scopes {
            let variants: Vec<_> = grid.variants().into_iter().filter(|v| &v.scope == scope).collect();
            let applied: Vec<_> = variants.iter().map(|v| plan.apply(v).0).collect();
            let refs: Vec<_> = applied.iter().collect();
            // one layer's scope starts from the shared fp32 activations
            let batched = eval.score(&refs).unwrap();
            let on_kernel = kernel.score(&refs).unwrap();
            for ((w, b), k) in applied.iter().zip(&batched).zip(&on_kernel) {
                match ds.task {
                    sweep_gpu::data::Task::Classification { .. } => assert!((k.primary - b.primary).abs() <= 1.0 / n + 1e-12, "{k:?} {b:?}"),
                    sweep_gpu::data::Task::Regression => {
                        assert!((k.primary - b.primary).abs() <= BATCHED_MSE_RTOL * b.primary.abs(), "{k:?} {b:?}");
                        let (ks, bs) = (k.secondary.unwrap(), b.secondary.unwrap());
                        assert!((ks - bs).abs() <= BATCHED_MSE_RTOL * bs.abs(), "{k:?} {b:?}");
                    }
                }
                // one variant alone gives the kernel's batched scores (bit for bit
                // when both start at layer 0; a one-layer scope starts from burn's
                // fp32 activations)
                let alone = kernel.score_all(w).unwrap();
                if *scope == Scope::All {
                    assert_eq!(alone, *k);
                } else {
                    assert!((alone.primary - k.primary).abs() <= BATCHED_MSE_RTOL * k.primary.abs() + 1.0 / n + 1e-12, "{alone:?} {k:?}");
                }
                // every tensor treated as changed: the whole forward pass
                let one = eval.score_all(w).unwrap();
                match ds.task {
                    sweep_gpu::data::Task::Classification { .. } => assert!((one.primary - b.primary).abs() <= 1.0 / n + 1e-12),
                    sweep_gpu::data::Task::Regression => {
                        assert!((one.primary - b.primary).abs() <= BATCHED_MSE_RTOL * one.primary.abs(), "{one:?} {b:?}")
                    }
                }
            }
        }
    }
}

/// Copies the files of folder `from` into a new folder `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A run folder is written by one process at a time; `report` checks the rows
/// it draws as `--resume` does, and reads a gzipped results.csv, which a run
/// refuses to continue.
#[test]
fn run_folders_are_locked_checked_and_read_gzipped() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("r");
    let run = || {
        sweep_gpu()
            .args(["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--bits", "2,4", "--methods", "uniform-nearest,midrise", "--epochs", "1"])
            .args(["--data-dir", data.path().to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--checkpoint-dir", work.path().join("ckpt").to_str().unwrap()])
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let before = std::fs::read(out.join("results.csv")).unwrap();

    // another process holds the folder: refused, rows untouched
    let lock = std::fs::File::open(out.join(sweep_gpu::report::LOCK_FILE)).unwrap();
    lock.lock().unwrap();
    for o in [run(), sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap()] {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains("another sweep-gpu process is writing to this folder"), "{stderr}");
    }
    // report still draws what is there, and says a run is writing
    let o = sweep_gpu().args(["report", out.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("still writing"), "{o:?}");
    drop(lock);
    assert!(run().status.success());
    assert_eq!(std::fs::read(out.join("results.csv")).unwrap(), before);

    // report refuses rows that are not the run's, naming the line
    let good = String::from_utf8(before.clone()).unwrap();
    let first = good.lines().nth(1).unwrap();
    for (bad, why) in [
        (format!("{good}{first}\n"), "appears twice"),
        (format!("{good}{}\n", first.replace("uniform-nearest:2:", "uniform-nearest:3:")), "is not in this grid"),
        (format!("{good}{}\n", first.replace(",mlp-simple,churn,", ",mlp-complex,telescope,")), "mlp-complex on telescope"),
    ] {
        std::fs::write(out.join("results.csv"), &bad).unwrap();
        let o = sweep_gpu().args(["report", out.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains(&format!("row {} ", bad.lines().count())) && stderr.contains(why), "{why}: {stderr}");
    }

    // gzipped rows: report reads them; a run refuses to continue them
    std::fs::write(out.join("results.csv.gz"), common::gzip(&before)).unwrap();
    std::fs::remove_file(out.join("results.csv")).unwrap();
    std::fs::remove_file(out.join("summary.json")).unwrap();
    let o = sweep_gpu().args(["report", out.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("summary.json").is_file());
    let o = sweep_gpu().args(["--resume", out.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("gunzip -k"), "{stderr}");
    assert!(!out.join("results.csv").exists());
}

/// A run started with relative paths resumes from any folder, and --resume
/// takes another data or checkpoint folder (and nothing that changes results).
#[test]
fn resume_finds_relative_paths_and_takes_only_places() {
    let data = tabular_dir(200);
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(data.path(), work.path().join("data")).unwrap();
    let o = sweep_gpu()
        .current_dir(work.path())
        .args(["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--bits", "2,4", "--methods", "uniform-nearest", "--epochs", "1"])
        .args(["--data-dir", "data", "--out", "runs/r", "--checkpoint-dir", "ck"])
        .env("SWEEP_GPU_ABORT_AFTER_BATCHES", "1")
        .args(["--variants-per-batch", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "the hook must kill the run");
    let out = work.path().join("runs/r");
    let elsewhere = tempfile::tempdir().unwrap();
    let resume = |extra: &[&str]| sweep_gpu().current_dir(elsewhere.path()).env_remove("SWEEP_DATA_DIR").args(["--resume", out.to_str().unwrap()]).args(extra).output().unwrap();

    // another data folder is taken (and this one is not there)
    let o = resume(&["--data-dir", "/nonexistent-data"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("/nonexistent-data"), "{stderr}");
    // settings are refused
    let o = resume(&["--bits", "4"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cannot be used with"), "{o:?}");
    // from another folder: data and checkpoint found where the run started
    let o = resume(&[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && stderr.contains("reusing checkpoint"), "{stderr}");
    assert_eq!(sweep_gpu::report::read_results(&out.join("results.csv"), false).unwrap().len(), 2);
}

#[test]
fn two_shards_merged_equal_one_run() {
    let data = tabular_dir(250);
    let work = tempfile::tempdir().unwrap();
    let run = |name: &str, shard: Option<&str>| {
        let out = work.path().join(name);
        let mut c = sweep_gpu();
        c.args(["--model", "mlp-simple", "--dataset", "mv", "--device", "cpu", "--bits", "2,5,9", "--seeds", "3", "--epochs", "1", "--scope", "each-layer"])
            .args(["--data-dir", data.path().to_str().unwrap(), "--out", out.to_str().unwrap()])
            .args(["--checkpoint-dir", work.path().join("ckpt").to_str().unwrap()]);
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let whole = run("whole", None);
    let a = run("a", Some("1/2"));
    let b = run("b", Some("2/2"));
    let merged = work.path().join("merged");
    let o = sweep_gpu().args(["merge", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let strip = |dir: &Path| -> Vec<String> {
        sweep_gpu::report::read_results(&dir.join("results.csv"), false)
            .unwrap()
            .into_iter()
            .map(|mut r| {
                r.eval_ms = 0.0;
                format!("{r:?}")
            })
            .collect()
    };
    let (sa, sb) = (strip(&a), strip(&b));
    assert!(!sa.is_empty() && !sb.is_empty() && sa.iter().all(|r| !sb.contains(r)), "shards are disjoint");
    assert_eq!(strip(&merged), strip(&whole));
    assert_eq!(std::fs::read(merged.join("summary.json")).unwrap(), std::fs::read(whole.join("summary.json")).unwrap());
    let merge_into = |out: &Path| sweep_gpu().args(["merge", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out.to_str().unwrap()]).output().unwrap();
    // merging again over the earlier merge of these shards is fine; over a
    // shard or another run's folder it is refused, and their rows stay
    assert!(merge_into(&merged).status.success());
    for (target, why) in [(&a, "is one of the shards"), (&whole, "holds another run")] {
        let before = std::fs::read(target.join("results.csv")).unwrap();
        let o = merge_into(target);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && stderr.contains(why), "{stderr}");
        assert_eq!(std::fs::read(target.join("results.csv")).unwrap(), before);
    }
    // a shard with a row twice is refused by its file and line
    let doubled = work.path().join("doubled");
    copy_dir(&b, &doubled);
    let mut text = std::fs::read_to_string(doubled.join("results.csv")).unwrap();
    let second = text.lines().nth(1).unwrap().to_string();
    text.push_str(&format!("{second}\n"));
    std::fs::write(doubled.join("results.csv"), &text).unwrap();
    let o = sweep_gpu().args(["merge", a.to_str().unwrap(), doubled.to_str().unwrap(), "--out", work.path().join("bad3").to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = text.lines().count();
    assert!(!o.status.success() && stderr.contains("doubled/results.csv") && stderr.contains(&format!("row {line} ")) && stderr.contains("appears twice"), "{stderr}");
    // a shard of another grid is refused
    let other = work.path().join("other");
    let o = sweep_gpu()
        .args(["--model", "mlp-simple", "--dataset", "mv", "--device", "cpu", "--bits", "3", "--seeds", "1", "--epochs", "1", "--shard", "2/2"])
        .args(["--data-dir", data.path().to_str().unwrap(), "--out", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = sweep_gpu().args(["merge", a.to_str().unwrap(), other.to_str().unwrap(), "--out", work.path().join("bad").to_str().unwrap()]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("another sweep"), "{}", String::from_utf8_lossy(&o.stderr));
    // a shard run with another quantizer setting (--clip) is another sweep
    let clipped = work.path().join("clipped");
    let o = sweep_gpu()
        .args(["--model", "mlp-simple", "--dataset", "mv", "--device", "cpu", "--bits", "2,5,9", "--seeds", "3", "--epochs", "1", "--scope", "each-layer", "--clip", "99"])
        .args(["--data-dir", data.path().to_str().unwrap(), "--out", clipped.to_str().unwrap(), "--shard", "2/2"])
        .args(["--checkpoint-dir", work.path().join("ckpt").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = sweep_gpu().args(["merge", a.to_str().unwrap(), clipped.to_str().unwrap(), "--out", work.path().join("bad4").to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("settings differ: clip"), "{stderr}");
    // a shard scored on a checkpoint trained again elsewhere (same key, other
    // weights) is refused too
    retrain_elsewhere(&work.path().join("ckpt"));
    let b2 = run("b2", Some("2/2"));
    let o = sweep_gpu().args(["merge", a.to_str().unwrap(), b2.to_str().unwrap(), "--out", work.path().join("bad2").to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && stderr.contains("other weights") && stderr.contains("one --checkpoint-dir"), "{stderr}");
    assert!(!work.path().join("bad2").join("results.csv").exists());
}

#[test]
fn corrupt_foreign_and_non_finite_checkpoints_are_refused_by_name() {
    use sweep_gpu::models::{ModelKind, ModelSpec};
    use sweep_gpu::train::checkpoint;
    let data = tabular_dir(300);
    let work = tempfile::tempdir().unwrap();
    let ckpts = work.path().join("ckpts");
    let run = |out: &str| {
        sweep_gpu()
            .args(["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--bits", "4", "--methods", "uniform-nearest", "--epochs", "1"])
            .args(["--data-dir", data.path().to_str().unwrap(), "--checkpoint-dir", ckpts.to_str().unwrap()])
            .args(["--out", work.path().join(out).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let first = run("a");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let dir = std::fs::read_dir(&ckpts).unwrap().next().unwrap().unwrap().path();
    let model = dir.join("model.bpk");
    let good = std::fs::read(&model).unwrap();
    let meta_text = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    let meta: checkpoint::CheckpointMeta = serde_json::from_str(&meta_text).unwrap();
    let expect_failure = |out: &str, needles: &[&str]| {
        let o = run(out);
        let e = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success() && !e.contains("panicked"), "{e}");
        for n in needles {
            assert!(e.contains(n), "missing {n:?} in: {e}");
        }
    };

    // garbage bytes where the record was
    std::fs::write(&model, b"this is not a burn record").unwrap();
    expect_failure("b", &["model.bpk", "corrupt", "--retrain"]);

    // the record of another model (mlp-complex) under mlp-simple's meta.json
    let other = ModelSpec::new(ModelKind::MlpComplex, meta.dataset, meta.model.inputs, Task::Classification { classes: 2 }).unwrap();
    let elsewhere = work.path().join("other");
    let w = sweep_gpu::models::initial_weights(&other, 1).unwrap();
    checkpoint::save(&elsewhere, &other, &w, &checkpoint::CheckpointMeta { model: other.clone(), ..meta.clone() }).unwrap();
    std::fs::copy(elsewhere.join("model.bpk"), &model).unwrap();
    expect_failure("c", &["model.bpk", "another model"]);

    // a meta.json that says another model
    std::fs::write(&model, &good).unwrap();
    std::fs::write(dir.join("meta.json"), meta_text.replace("\"mlp-simple\"", "\"mlp-complex\"")).unwrap();
    expect_failure("d", &["meta.json", "another model"]);

    // NaN in a weight: refused with the tensor's name
    std::fs::write(dir.join("meta.json"), &meta_text).unwrap();
    let mut w = checkpoint::load_weights(&model, &meta.model).unwrap();
    let name = w.tensors[0].name.clone();
    w.tensors[0].data[3] = f32::NAN;
    checkpoint::save(&dir, &meta.model, &w, &meta).unwrap();
    expect_failure("e", &[&name, "NaN", "non-finite"]);

    // one weight an ulp off under the meta.json that was saved with the
    // checkpoint (a damaged or edited file): refused by the weights' sha256
    std::fs::write(&model, &good).unwrap();
    std::fs::write(dir.join("meta.json"), &meta_text).unwrap();
    assert!(meta_text.contains("weights_sha256"), "{meta_text}");
    let mut w = checkpoint::load_weights(&model, &meta.model).unwrap();
    w.tensors[0].data[0] = w.tensors[0].data[0].next_up();
    checkpoint::save(&dir, &meta.model, &w, &meta).unwrap();
    std::fs::write(dir.join("meta.json"), &meta_text).unwrap();
    expect_failure("f", &["model.bpk", "sha256", "changed after training", "--retrain"]);
}

#[test]
fn an_output_folder_that_cannot_be_created_is_an_error_before_any_work() {
    let data = tabular_dir(100);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let e = run_fail(&[
        "--model", "mlp-simple", "--dataset", "churn", "--device", "cpu",
        "--data-dir", data.path().to_str().unwrap(), "--out", out.to_str().unwrap(),
    ]);
    assert!(e.contains(out.to_str().unwrap()) || e.contains(file.to_str().unwrap()), "{e}");
    assert!(!e.contains("training"), "must fail before training: {e}");

    // a file where a folder belongs: named as such, before any work
    let d = data.path().to_str().unwrap();
    let f = file.to_str().unwrap();
    let base = ["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu"];
    let fresh = work.path().join("fresh");
    let o = fresh.to_str().unwrap();
    for (args, flag) in [
        (vec!["--data-dir", d, "--out", f], "give --out a folder"),
        (vec!["--data-dir", d, "--out", o, "--checkpoint-dir", f], "give --checkpoint-dir a folder"),
        (vec!["--data-dir", f, "--out", o], "is a file, not the data folder"),
    ] {
        let e = run_fail(&[&base[..], &args].concat());
        assert!(e.contains(f) && e.contains(flag) && !e.contains("training"), "{e}");
        assert!(!fresh.exists(), "no --out folder is left behind: {e}");
    }

    // rows without the config.json that says which run wrote them are not continued
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::write(fresh.join("results.csv"), b"variant_id\n").unwrap();
    let e = run_fail(&[&base[..], &["--data-dir", d, "--out", o]].concat());
    assert!(e.contains("no config.json beside it") && !e.contains("training"), "{e}");
    assert!(!fresh.join("config.json").exists());

    // conv-only settings on a dense net, and an image-only one on a table
    for flag in [&["--bn", "pool"][..], &["--no-augment"], &["--no-one-cycle"]] {
        let e = run_fail(&[&base[..], &["--data-dir", d], flag].concat());
        assert!(e.contains(flag[0]) && e.contains("applies to the conv nets"), "{e}");
    }
    let e = run_fail(&[&base[..], &["--data-dir", d, "--eval-limit", "50"]].concat());
    assert!(e.contains("--eval-limit") && e.contains("scored whole"), "{e}");

    // seeds past u32
    let e = run_fail(&[&base[..], &["--data-dir", d, "--seed", "4294967295", "--seeds", "3"]].concat());
    assert!(e.contains("--seed") && e.contains("runs past 4294967295"), "{e}");
}

/// Small valid inputs of every format sweep-gpu reads, the seeds of the
/// mutation fuzzer below (and, written out by fuzz/run.sh, of cargo-fuzz).
fn fuzz_seeds() -> Vec<(sweep_gpu::fuzz::Format, Vec<u8>)> {
    use sweep_gpu::fuzz::Format;
    let mut idx_images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    idx_images.extend((0..3 * 28 * 28).map(|i| (i * 7 % 256) as u8));
    let idx_labels = vec![0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 4];
    let mut cifar = Vec::new();
    for (coarse, fine) in [(3u8, 17u8), (19, 99)] {
        cifar.extend([coarse, fine]);
        cifar.extend((0..3072).map(|i| (i * 13 % 251) as u8));
    }
    // a real run's results.csv, config.json and checkpoint meta.json
    let data = tabular_dir(60);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("run");
    let ckpts = work.path().join("ckpts");
    let run = sweep_gpu()
        .args(["--model", "mlp-simple", "--dataset", "churn", "--device", "cpu", "--bits", "2,3", "--methods", "uniform-stochastic,midrise", "--seeds", "2", "--epochs", "1"])
        .args(["--data-dir", data.path().to_str().unwrap(), "--out", out.to_str().unwrap(), "--checkpoint-dir", ckpts.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let ckpt = std::fs::read_dir(&ckpts).unwrap().next().unwrap().unwrap().path();
    let read = |p: &Path| std::fs::read(p).unwrap();
    let mut seeds = vec![
        (Format::Churn, churn_csv(12).into_bytes()),
        (Format::Magic, magic_data(12).into_bytes()),
        (Format::CalHousing, cal_housing_data(12).into_bytes()),
        (Format::KeelCalifornia, keel_california(12).into_bytes()),
        (Format::KeelMv, keel_mv(12).into_bytes()),
        (Format::IdxImages, idx_images),
        (Format::IdxLabels, idx_labels),
        (Format::Cifar, cifar),
        (Format::ResultsCsv, read(&out.join("results.csv"))),
        (Format::ConfigJson, read(&out.join("config.json"))),
        (Format::CheckpointMeta, read(&ckpt.join("meta.json"))),
    ];
    for (f, bytes) in seeds.clone() {
        seeds.push((f, gzip(&bytes)));
    }
    seeds
}

/// A brief, seeded mutation fuzzer over every file parser: bit flips, byte
/// substitutions with the characters that matter to each format, deletions,
/// duplications, truncation. Every input must come back as Ok or as an error
/// naming the file; none may panic.
#[test]
fn file_parsers_survive_mutated_input() {
    use sweep_gpu::fuzz::{Format, parse};
    let seeds = fuzz_seeds();
    for f in Format::ALL {
        let (good, gz): (Vec<_>, Vec<_>) = seeds.iter().filter(|(g, _)| *g == f).partition(|(_, b)| b[0] != 0x1f);
        assert!(parse(f, &good[0].1).is_ok(), "{f:?} seed must parse: {:?}", parse(f, &good[0].1));
        assert!(parse(f, &gz[0].1).is_ok(), "{f:?} gzipped seed must parse");
    }
    if let Ok(dir) = std::env::var("SWEEP_FUZZ_SEEDS") {
        for (i, (f, bytes)) in seeds.iter().enumerate() {
            let d = Path::new(&dir).join(format!("{f:?}").to_lowercase());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(format!("seed-{i}")), bytes).unwrap();
        }
    }
    const SPECIAL: &[u8] = b"\0\n\r,;.-+e9@ \xff\x7fgh?";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let mut errors = 0usize;
    for (f, seed) in &seeds {
        for _ in 0..3000 {
            let mut b = seed.clone();
            for _ in 0..1 + rand(4) {
                let len = b.len();
                match rand(7) {
                    0 if len > 0 => b[rand(len)] ^= 1 << rand(8),
                    1 if len > 0 => b[rand(len)] = SPECIAL[rand(SPECIAL.len())],
                    2 if len > 0 => {
                        let at = rand(len);
                        let n = 1 + rand(16.min(len - at));
                        b.drain(at..at + n);
                    }
                    3 if len > 0 => {
                        let at = rand(len);
                        let piece: Vec<u8> = b[at..(at + 1 + rand(64)).min(len)].to_vec();
                        let to = rand(len);
                        b.splice(to..to, piece);
                    }
                    4 => b.truncate(rand(len + 1)),
                    5 => {
                        let to = rand(len + 1);
                        b.insert(to, rand(256) as u8);
                    }
                    _ if len >= 8 => {
                        // a big-endian field set to an extreme
                        let at = rand(len - 4);
                        b[at..at + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0xf0 | rand(16) as u8]);
                    }
                    _ => {}
                }
            }
            let result = std::panic::catch_unwind(|| parse(*f, &b));
            match result {
                Err(_) => panic!("{f:?} parser panicked on input {:?}", String::from_utf8_lossy(&b)),
                Ok(Err(e)) => {
                    errors += 1;
                    let msg = e.to_string();
                    assert!(msg.contains(f.file_name()), "{f:?}: the error does not name the file: {msg}");
                }
                Ok(Ok(())) => {}
            }
        }
    }
    assert!(errors > seeds.len() * 100, "the mutations must reach the error paths ({errors} errors)");
}

/// Building a net from weights (as `fit` does from a QAT start, holding the
/// generator) and loading a checkpoint draw nothing from burn's generator:
/// burn initialises a parameter when it is first read, and these replace
/// every one unread.
#[test]
fn nets_built_from_weights_or_loaded_draw_nothing_from_burns_generator() {
    use burn::module::Module;
    use burn::tensor::{Distribution, Tensor};
    use sweep_gpu::models::{ModelKind, ModelSpec, cnn::ConvNet, initial_weights, mlp::Mlp, seed_burn};
    use sweep_gpu::train::checkpoint;
    let flex = burn::tensor::Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let draw = || Tensor::<1>::random([8], Distribution::Default, &flex).into_data().try_to_vec::<f32>().unwrap();
    let conv = ModelSpec::new(ModelKind::Cnn, DatasetId::FashionMnist, 3072, Task::Classification { classes: 10 }).unwrap();
    let dense = ModelSpec::new(ModelKind::MlpComplex, DatasetId::Churn, 13, Task::Classification { classes: 2 }).unwrap();
    let (cw, dw) = (initial_weights(&conv, 1).unwrap(), initial_weights(&dense, 1).unwrap());
    let (cpath, dpath) = (dir.path().join("conv.bpk"), dir.path().join("dense.bpk"));
    ConvNet::from_weights(conv.kind, 10, &cw, &flex).save_file(&cpath).unwrap();
    Mlp::from_weights(&dense, &dw, &flex).save_file(&dpath).unwrap();
    let _rng = seed_burn(&flex, 9);
    let untouched = draw();
    flex.seed(9);
    let built = (ConvNet::from_weights(conv.kind, 10, &cw, &flex).to_weights().unwrap(), Mlp::from_weights(&dense, &dw, &flex).to_weights().unwrap());
    let loaded = (checkpoint::load_weights(&cpath, &conv).unwrap(), checkpoint::load_weights(&dpath, &dense).unwrap());
    assert!(built.0 == cw && built.1 == dw && loaded.0 == cw && loaded.1 == dw);
    assert_eq!(draw(), untouched, "building or loading a net drew from burn's generator");
    // and a fresh net does draw, so the comparison can tell
    flex.seed(9);
    let _fresh = Mlp::new(&dense, &flex).to_weights().unwrap();
    assert_ne!(draw(), untouched);
}
