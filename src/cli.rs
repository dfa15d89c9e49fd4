//! The command line (clap derive only); `config.rs` turns it into a validated
//! [`crate::config::Config`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::data::DatasetId;
use crate::models::ModelKind;
use crate::quant::apply::{BiasMode, BnMode};
use crate::quant::{BiasCorrect, Clip, Granularity, Method, Rescale};

#[derive(Parser, Debug)]
#[command(
    name = "sweep-gpu",
    version,
    about = "What each bit of weight precision really costs: trains (or loads) a model, builds \
             post-training-quantized weight variants, scores every one on real data and writes \
             results.csv, summary.json, plots and report.md.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

/// The sweep flags `--resume` takes: where the data and checkpoints are,
/// which adapter, and how the work is batched. Every other setting is the
/// folder's own (its config.json), and giving one with `--resume` is an error.
pub const RESUME_OVERRIDES: [&str; 4] = ["data_dir", "checkpoint_dir", "adapter", "variants_per_batch"];

/// The command line as the binary parses it: [`Cli`], with `--resume`
/// refusing every sweep setting but [`RESUME_OVERRIDES`].
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let fixed: Vec<clap::Id> = cmd
        .get_arguments()
        .map(|a| a.get_id().clone())
        .filter(|id| !["resume", "help", "version"].contains(&id.as_str()) && !RESUME_OVERRIDES.contains(&id.as_str()))
        .collect();
    cmd.mut_arg("resume", |a| a.conflicts_with_all(fixed))
}

/// Parses the process's arguments with [`command`], exiting with clap's
/// message on bad ones.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.sweep.data_dir_given = matches!(matches.value_source("data_dir"), Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable));
    cli
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the GPU adapters wgpu finds (best first) and say which --device auto picks.
    Devices,
    /// Join the result folders of the shards of one sweep (`--shard K/N`) into one run.
    Merge {
        /// The shards' output folders.
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Folder for the merged run.
        #[arg(long)]
        out: PathBuf,
    },
    /// Redraw summary.json, the plots, report.md and report.html of a run from its results.csv (or results.csv.gz)
    Report {
        /// The run's output folder.
        dir: PathBuf,
    },
    /// Measure the quantizer on the GPU adapter and on the CPU reference: a
    /// ResNet9-sized model, all seven methods x bits 1..=16 in one go.
    Bench {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Fraction of the ResNet9-sized model to use, in (0, 1] (1 = 6.57 M weights).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Choose the GPU adapter whose name contains this text.
        #[arg(long, env = "SWEEP_ADAPTER")]
        adapter: Option<String>,
        /// Where the scoring benchmark runs (the quantizer benchmark always
        /// compares the GPU adapter with the CPU reference).
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
        /// Folder holding the datasets (the scoring benchmark uses churn's test split).
        #[arg(long, env = "SWEEP_DATA_DIR", default_value = "datasets")]
        data_dir: PathBuf,
        /// Variants scored by the scoring benchmark.
        #[arg(long, default_value_t = 512)]
        variants: usize,
        /// Variants per launch in the batched scoring [default: as a sweep would choose].
        #[arg(long)]
        batch: Option<usize>,
        /// Timed rounds of the scoring benchmark: each scores all the variants
        /// one at a time, then batched; it reports the median round and the
        /// spread (a machine's speed drifts between runs).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Skip the quantizer benchmark (it needs a GPU adapter).
        #[arg(long)]
        skip_quantizer: bool,
        /// Methods of the quantizer benchmark [default: the study's seven, the only ones it takes].
        #[arg(long, value_enum, value_delimiter = ',')]
        methods: Vec<Method>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceChoice {
    /// a hardware GPU when there is one, else burn's CPU backend and the CPU reference quantizer
    Auto,
    /// the GPU path on the chosen adapter, software adapters (lavapipe) included
    Gpu,
    /// burn's CPU backend (flex) and the CPU reference quantizer
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuantizerChoice {
    /// the WGSL kernels on a GPU device, the CPU reference otherwise
    Auto,
    /// the CPU reference (the specification), whatever the device
    Reference,
    /// the WGSL kernels (needs a GPU device)
    Wgsl,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScorerChoice {
    /// dense nets: the WGSL kernel on a GPU, the CPU kernel (src/eval/dense_cpu.rs) on the CPU; conv nets: burn's kernels
    #[default]
    Auto,
    /// the WGSL kernel: one dispatch per batch runs the whole dense net and its metric (GPU, dense nets)
    Wgsl,
    /// burn's kernels, layer by layer (any device, any model)
    Burn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScopeChoice {
    /// quantize every layer
    All,
    /// also quantize each layer alone, the rest fp32 (per-layer sensitivity)
    EachLayer,
}

impl ScopeChoice {
    /// The name --scope takes.
    pub fn name(self) -> &'static str {
        match self {
            ScopeChoice::All => "all",
            ScopeChoice::EachLayer => "each-layer",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// Model to train (or load) and sweep.
    #[arg(long, value_enum, required_unless_present = "resume")]
    pub model: Option<ModelKind>,

    /// Dataset, read from --data-dir in its published format (see datasets/README.md).
    #[arg(long, value_enum, required_unless_present = "resume")]
    pub dataset: Option<DatasetId>,

    /// Continue the interrupted run in DIR with its own settings (config.json):
    /// variants already in its results.csv are kept, the rest are scored. Only
    /// --data-dir, --checkpoint-dir, --adapter and --variants-per-batch may be
    /// given with it (relative paths in config.json are taken from the folder
    /// the run was started in).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["model", "dataset", "out"])]
    pub resume: Option<PathBuf>,

    /// Folder holding the datasets (churn/, magic/, california/, mv/, fashion-mnist/, cifar-100/; see datasets/README.md).
    #[arg(long, env = "SWEEP_DATA_DIR", default_value = "datasets")]
    pub data_dir: PathBuf,

    /// Whether --data-dir (or SWEEP_DATA_DIR) was given rather than defaulted:
    /// set by [`parse`], for --resume.
    #[arg(skip)]
    pub data_dir_given: bool,

    /// Output folder [default: results/<model>-<dataset>-<UTC time>]. One that holds a run is
    /// continued only with the settings that made it.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Bit widths: a list and/or inclusive ranges, e.g. 1..=16, 2,4,8 or 1-4,8.
    #[arg(long, default_value = "1..=16")]
    pub bits: String,

    /// Methods, comma-separated [default: the study's seven: not lloyd-*, kde-* or uniform-dither*].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub methods: Vec<Method>,

    /// Quantization groups: one per layer, one per output channel, or both (layer,channel).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "layer")]
    pub granularity: Vec<Granularity>,

    /// Base seed: data split, training, and the first stochastic-rounding seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u32,

    /// Seed of the initial weights, dropout and training order only [default:
    /// --seed]. Vary it with --seed fixed to tell the training's share of the
    /// spread from the split's.
    #[arg(long, value_name = "N")]
    pub init_seed: Option<u32>,

    /// Train from N initial states (init seeds K, K+1, ..., K = --init-seed or
    /// --seed) and keep the one best on validation. Each is cached as its own
    /// checkpoint; config.json lists them all.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub restarts: u32,

    /// Stochastic-rounding seeds per stochastic setting (seed, seed+1, ...).
    #[arg(long, default_value_t = 32)]
    pub seeds: u32,

    /// Which layers each variant quantizes.
    #[arg(long, value_enum, default_value = "all")]
    pub scope: ScopeChoice,

    /// Mixed precision: hold these layers at their own bit width (same method) or
    /// fp32 while --bits applies to the others, e.g. first=8,last=8 or
    /// first=fp32. Names: first, last, or a layer as the report lists it
    /// (layers.0, ...). Adds a scope next to `all`; repeat the flag for more.
    #[arg(long, value_name = "LAYER=BITS,...")]
    pub layer_bits: Vec<String>,

    /// Clip each group's range before the levels are built; weights outside
    /// round to the end levels. P (e.g. 99.9): to the group's P-th percentile
    /// at both ends. mse: at each bit width and for each method, to the range
    /// (of 64 depths) whose rounding by that method has the least squared
    /// error over the group (for the stochastic and dither methods, the least
    /// expected error over their random draws). For the uniform, histogram,
    /// normal and midrise methods.
    #[arg(long, value_name = "P|mse", allow_negative_numbers = true)]
    pub clip: Option<Clip>,

    /// Scale each group's quantized weights after rounding, by one factor per
    /// group and variant computed from the group's fp32 weights w and
    /// quantized weights q; a deployed model folds it into the group's scale,
    /// so sizes do not change. Any method, with or without --clip.
    #[arg(long, value_enum, default_value = "none")]
    pub rescale: Rescale,

    /// How biases meet the quantizer.
    #[arg(long, value_enum, default_value = "fp32")]
    pub bias: BiasMode,

    /// Correct each quantized layer's f32 bias, after rounding (and
    /// --rescale), for the shift its rounding gives the layer's mean output:
    /// Σ (w - q)·μ per output, μ a mean of the layer's input over the training
    /// split through the fp32 net (conv nets: its first 1,024 images). --bias
    /// fp32, and for conv nets --bn fold or keep; sizes do not change.
    #[arg(long, value_enum, default_value = "none")]
    pub bias_correct: BiasCorrect,

    /// How BatchNorm meets the quantizer (conv nets): fold it into the
    /// convolutions first, keep it f32, or pool its scale and shift with the
    /// layer's weights as the 2020 study did.
    #[arg(long, value_enum, default_value = "fold")]
    pub bn: BnMode,

    /// Where training and scoring run.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceChoice,

    /// What quantizes the weights; both give the same codes and weights.
    #[arg(long, value_enum, default_value = "auto")]
    pub quantizer: QuantizerChoice,

    /// What runs the quantized nets on the test split; both give the same
    /// metrics to float rounding.
    #[arg(long, value_enum, default_value = "auto")]
    pub scorer: ScorerChoice,

    /// Choose the GPU adapter whose name contains this text (see `sweep-gpu devices`).
    #[arg(long, env = "SWEEP_ADAPTER")]
    pub adapter: Option<String>,

    /// Training epochs [default: 10 for classifiers, 20 for regressors].
    #[arg(long)]
    pub epochs: Option<usize>,

    /// Training batch size [default: 16 for the dense nets (the 2020 study's), 128 for the conv nets].
    #[arg(long)]
    pub batch_size: Option<usize>,

    /// Adam learning rate, the peak of the one-cycle schedule for the conv nets
    /// [default: 1e-3 for the dense nets, 0.01 for the conv nets].
    #[arg(long)]
    pub lr: Option<f64>,

    /// Quantization-aware training: fine-tune the trained net with its weights
    /// quantized by METHOD at BITS (every layer; per layer, or per channel with
    /// --granularity channel alone; with --bias, --clip and --rescale) in each forward pass, gradients passed
    /// straight through, keeping the weights whose quantized form scores best on
    /// validation; then sweep the fine-tuned net. METHOD is a deterministic one
    /// (e.g. uniform-nearest:4). Conv nets run as the sweep scores them:
    /// BatchNorm as --bn treats it, with its running statistics frozen, and no
    /// dropout. Cached as its own checkpoint.
    #[arg(long, value_name = "METHOD:BITS", value_parser = parse_qat)]
    pub qat: Option<QatTarget>,

    /// Epochs of --qat fine-tuning.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub qat_epochs: usize,

    /// Adam learning rate of --qat fine-tuning [default: a tenth of the training's].
    #[arg(long, value_name = "LR")]
    pub qat_lr: Option<f64>,

    /// L2 weight decay [default: 0 for the dense nets, 1e-4 for the conv nets].
    #[arg(long)]
    pub weight_decay: Option<f64>,

    /// Clip each gradient element to +-this; 0 turns clipping off
    /// [default: off for the dense nets, 0.1 for the conv nets].
    #[arg(long)]
    pub grad_clip: Option<f32>,

    /// Dense nets: dropout probability after each hidden layer, in [0, 1)
    /// [default: the study's: 0.1 for mlp-complex, none for mlp-simple]. The
    /// conv nets' dropouts belong to their architecture.
    #[arg(long, value_name = "P", allow_negative_numbers = true)]
    pub dropout: Option<f64>,

    /// Conv nets: train at a constant learning rate instead of one-cycle.
    #[arg(long)]
    pub no_one_cycle: bool,

    /// Conv nets: no random-crop and flip augmentation.
    #[arg(long)]
    pub no_augment: bool,

    /// Use only the first N training images or rows (seeded order), to make a run fit a CPU.
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,

    /// Score on only the first N validation and test images (image datasets only).
    #[arg(long, value_name = "N")]
    pub eval_limit: Option<usize>,

    /// Train even when a matching checkpoint exists.
    #[arg(long)]
    pub retrain: bool,

    /// Checkpoint cache [default: checkpoints/ beside the output folder].
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,

    /// Variants scored per launch [default: from the device's memory and buffer limits].
    #[arg(long)]
    pub variants_per_batch: Option<usize>,

    /// Load the data, print the grid's size and an estimate of the scoring time (measured on a
    /// sample), and stop: nothing is trained or written.
    #[arg(long)]
    pub dry_run: bool,

    /// Run shard K of N (1-based): every N-th variant of the grid from the K-th
    /// on, a deterministic, disjoint share; `sweep-gpu merge` joins the shards.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
}

/// Parses `K/N` with 1 <= K <= N.
/// --qat's target: a method and a bit width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QatTarget {
    pub method: Method,
    pub bits: u32,
}

/// `METHOD:BITS`, e.g. `uniform-nearest:4`.
pub fn parse_qat(text: &str) -> Result<QatTarget, String> {
    let (m, b) = text.split_once(':').ok_or_else(|| format!("{text:?}: expected METHOD:BITS, e.g. uniform-nearest:4"))?;
    let method = Method::from_str(m.trim(), true).map_err(|_| {
        let names: Vec<String> = Method::value_variants().iter().filter(|m| !m.is_stochastic()).map(|m| m.to_string()).collect();
        format!("{m:?} is not a method; the deterministic ones are {}", names.join(", "))
    })?;
    if method.is_stochastic() {
        return Err(format!("{method} draws random numbers, so the draw trained for would not be the draw scored; use a deterministic method"));
    }
    let bits = b.trim().parse::<u32>().map_err(|_| format!("{text:?}: {b:?} is not a whole number of bits"))?;
    if !crate::quant::reference::BITS.contains(&bits) {
        return Err(format!("{bits} bits is outside 1..=16"));
    }
    Ok(QatTarget { method, bits })
}

pub fn parse_shard(text: &str) -> Result<(u32, u32), String> {
    let (k, n) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected K/N, e.g. 2/8"))?;
    let k: u32 = k.trim().parse().map_err(|_| format!("{text:?}: {k:?} is not a whole number"))?;
    let n: u32 = n.trim().parse().map_err(|_| format!("{text:?}: {n:?} is not a whole number"))?;
    if n == 0 || k == 0 || k > n {
        return Err(format!("{text:?}: K must be in 1..=N and N at least 1"));
    }
    Ok((k, n))
}

/// Parses `1..=16`, `1-16`, `2,4,8` and mixtures into a sorted, deduplicated list.
pub fn parse_bits(text: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let range = if let Some((a, b)) = part.split_once("..=") {
            Some((a, b))
        } else if part.contains("..") {
            return Err(format!("{part:?}: write an inclusive range as A..=B (or A-B)"));
        } else {
            part.split_once('-')
        };
        let num = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("{part:?}: {s:?} is not a whole number"));
        match range {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("{part:?}: the range is empty ({a} > {b})"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err("no bit widths given".into());
    }
    if let Some(b) = out.iter().find(|b| !crate::quant::reference::BITS.contains(b)) {
        return Err(format!("{b} bits is outside 1..=16"));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_lists_and_ranges() {
        assert_eq!(parse_bits("1..=16").unwrap(), (1..=16).collect::<Vec<_>>());
        assert_eq!(parse_bits("8,2, 4,2").unwrap(), vec![2, 4, 8]);
        assert_eq!(parse_bits("1-3,16").unwrap(), vec![1, 2, 3, 16]);
    }

    #[test]
    fn bad_bits_are_errors_that_say_why() {
        assert!(parse_bits("0").unwrap_err().contains("outside 1..=16"));
        assert!(parse_bits("17").unwrap_err().contains("outside 1..=16"));
        assert!(parse_bits("1..16").unwrap_err().contains("A..=B"));
        assert!(parse_bits("x").unwrap_err().contains("not a whole number"));
        assert!(parse_bits("5..=3").unwrap_err().contains("empty"));
        assert!(parse_bits("").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn resume_refuses_settings_but_takes_where_things_are() {
        let parse = |args: &[&str]| command().try_get_matches_from(std::iter::once("sweep-gpu").chain(args.iter().copied()));
        for flag in [&["--bits", "4"][..], &["--methods", "midrise"], &["--epochs", "5"], &["--seed", "2"], &["--device", "cpu"], &["--retrain"]] {
            let e = parse(&[&["--resume", "r"], flag].concat()).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{flag:?}");
            assert!(e.to_string().contains(flag[0]), "{e}");
        }
        let ok = parse(&["--resume", "r", "--data-dir", "d", "--checkpoint-dir", "c", "--adapter", "x", "--variants-per-batch", "3"]);
        assert!(ok.is_ok(), "{ok:?}");
    }
}
