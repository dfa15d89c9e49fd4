//! sweep-gpu: what each bit of weight precision really costs.
//!
//! data (files -> tables) -> models + train (checkpoint) -> quant (a grid of
//! quantized variants, CPU reference or WGSL) -> eval (burn, many variants per
//! launch) -> report (results.csv, summary.json, plots, report.md).

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod fuzz;
pub mod eval;
pub mod gpu;
pub mod host;
pub mod models;
pub mod progress;
pub mod quant;
pub mod report;
pub mod sweep;
pub mod train;

use cli::{Cli, Command};
pub use error::{Error, Result};

/// Runs the command line; what the binary's `main` calls.
pub fn run(cli: Cli) -> Result<()> {
    let progress = progress::Progress::new();
    match cli.command {
        Some(Command::Devices) => {
            let adapters = gpu::list_adapters();
            if adapters.is_empty() {
                println!("no GPU adapter found (Vulkan, Metal, DX12); --device auto uses the CPU");
            }
            for (i, a) in adapters.iter().enumerate() {
                println!("{i}: {a} [{}]{}", if a.hardware { "hardware" } else { "software" }, if i == 0 { "  <- --device gpu picks this one" } else { "" });
            }
            match adapters.iter().find(|a| a.hardware) {
                Some(a) => println!("--device auto: GPU ({})", a.name),
                None => println!("--device auto: CPU (burn flex); no hardware GPU"),
            }
            Ok(())
        }
        Some(Command::Bench { json, scale, adapter, device, data_dir, variants, batch, rounds, skip_quantizer, methods }) => {
            if !(scale > 0.0 && scale <= 1.0) {
                return Err(Error::config("--scale", format!("{scale} is not in (0, 1]")));
            }
            if variants == 0 || batch == Some(0) || rounds == 0 {
                return Err(Error::config("--variants/--batch/--rounds", "must be at least 1"));
            }
            if let Some(m) = methods.iter().find(|m| !quant::Method::STUDY.contains(m)) {
                return Err(Error::config("--methods", format!("the quantizer benchmark times the study's seven methods; {m} is beyond them")));
            }
            progress.log(&format!("host: {}", host::describe()));
            let quantizer = if skip_quantizer {
                None
            } else {
                let ctx = gpu::GpuContext::shared(adapter.as_deref())?;
                progress.log(&format!("quantizer benchmark on {} and the CPU reference ...", ctx.summary));
                let methods = if methods.is_empty() { quant::Method::STUDY.to_vec() } else { methods };
                Some(bench::quantize_throughput(ctx, scale, &methods)?)
            };
            // the quantizer's figures are printed before the scoring benchmark
            // runs, so that a missing dataset does not lose them
            if let (false, Some(q)) = (json, &quantizer) {
                println!("{q}\n");
            }
            progress.log("scoring benchmark: mlp-complex on churn ...");
            let scoring = sweep::scoring_bench(device, adapter.as_deref(), &data_dir, variants, batch, rounds);
            if json {
                let scoring_json = match &scoring {
                    Ok(s) => serde_json::json!(s),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                };
                let both = serde_json::json!({ "host": host::describe(), "quantizer": quantizer, "scoring": scoring_json });
                println!("{}", serde_json::to_string_pretty(&both).expect("bench report serialises"));
            } else if let Ok(s) = &scoring {
                let text: Vec<String> = s.iter().map(|b| b.to_string()).collect();
                println!("{}", text.join("\n\n"));
            }
            scoring.map(drop)
        }
        Some(Command::Merge { dirs, out }) => {
            match sweep::merge(&dirs, &out)? {
                Some(s) => println!("merged {} shards into {}: {} variants", dirs.len(), out.display(), s.variants),
                None => println!("merged {} shards into {}: no rows", dirs.len(), out.display()),
            }
            Ok(())
        }
        Some(Command::Report { dir }) => {
            if report::folder_busy(&dir) {
                println!("note: a sweep-gpu process is still writing to {}: this report covers the rows written so far", dir.display());
            } else if report::results::ends_torn(&report::results_file(&dir)) {
                println!("note: the last line of {} is incomplete (a run was killed while writing it) and is left out; --resume cuts it and scores that variant again", report::results_file(&dir).display());
            }
            let summary = report::write_all(&dir)?;
            match summary {
                Some(s) => println!("{}: {} variants; report.md, report.html, summary.json and plots redrawn", dir.display(), s.variants),
                None => println!("{}: results.csv has no rows yet; nothing redrawn (a summary.json or report.md there was drawn from rows it no longer holds)", dir.display()),
            }
            Ok(())
        }
        None => {
            let config = config::Config::from_args(&cli.sweep)?;
            let outcome = sweep::run(&config, &progress)?;
            if let Some(s) = &outcome.summary {
                let scored = if outcome.scored == outcome.variants {
                    format!("{} variants scored in {:.1} s", outcome.variants, outcome.scoring_seconds)
                } else {
                    format!(
                        "{} variants, {} of them scored now in {:.1} s and {} by the earlier run",
                        outcome.variants,
                        outcome.scored,
                        outcome.scoring_seconds,
                        outcome.variants - outcome.scored
                    )
                };
                println!("{} on {}: fp32 {} {:.4}; {scored}", s.model, s.dataset, s.metric, s.fp32_value);
                for (key, methods) in &s.smallest_bits_within_1pct {
                    println!("smallest bits within 1 % of {} ({key}):", s.reference_name());
                    for (m, b) in methods {
                        println!("  {m:<26} {}", b.map_or("none".to_string(), |b| b.to_string()));
                    }
                }
                match s.smallest_models_within_1pct.first() {
                    Some(m) => println!(
                        "smallest model within 1 % of {}: {} bytes, {:.1}x smaller than fp32 ({}, {} bits, {} granularity, scope {}; {} {:.4})",
                        s.reference_name(),
                        m.size_bytes,
                        s.fp32_size_bytes as f64 / m.size_bytes as f64,
                        m.method,
                        m.bits,
                        m.granularity,
                        m.scope,
                        s.metric,
                        m.mean
                    ),
                    None => println!("no setting is within 1 % of {}", s.reference_name()),
                }
                println!("wrote {}/{{results.csv, summary.json, config.json, report.md, report.html, *.svg, *.png}}", outcome.out.display());
            }
            Ok(())
        }
    }
}
