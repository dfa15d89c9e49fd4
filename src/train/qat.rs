//! Quantization-aware training (`--qat METHOD:BITS`): a trained net is
//! fine-tuned with its weights fake-quantized in every forward pass, and the
//! gradient passed straight through the rounding to the f32 weights.
//!
//! A conv net's forward pass is then the one the sweep scores: BatchNorm with
//! its running statistics (frozen: they neither update nor come from the
//! batch), folded into the convolutions under `--bn fold`, and no dropout.
//!
//! The fake quantizer is the sweep's own CPU reference ([`Plan::apply`]) with
//! the run's bias mode, clip and rescale, so the variant the net was trained
//! for is exactly the one the sweep scores: quantizing the kept f32 weights at
//! METHOD and BITS gives the weights that were validated.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::cnn::BN_EPSILON;
use crate::models::{Weights, fold_batchnorm};
use crate::quant::apply::{BiasMode, BnMode, Plan};
use crate::quant::{Clip, Granularity, Method, Rescale};
use crate::sweep::grid::{Scope, Variant};

/// What a QAT fine-tuning quantizes to, as recorded in the checkpoint key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QatSettings {
    pub method: Method,
    pub bits: u32,
    pub granularity: Granularity,
    pub bias: BiasMode,
    #[serde(default)]
    pub clip: Option<Clip>,
    #[serde(default)]
    pub rescale: Rescale,
    /// conv nets: how BatchNorm meets the quantizer (--bn); absent for the
    /// dense nets, whose checkpoint keys predate it
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn: Option<BnMode>,
    /// the key of the checkpoint the fine-tuning starts from
    pub from: String,
    /// and the sha256 of its weights: a start trained again under the same
    /// key to other weights (another machine) gets its own fine-tuning
    /// (absent in checkpoints made before it was keyed)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_sha256: String,
}

impl QatSettings {
    /// The tensors the quantizer sees: `weights` with BatchNorm folded under
    /// `--bn fold`, as the sweep folds it.
    pub fn layout(&self, weights: &Weights) -> Weights {
        if self.bn == Some(BnMode::Fold) { fold_batchnorm(weights, BN_EPSILON) } else { weights.clone() }
    }

    /// `weights` quantized as the sweep's variant (METHOD, BITS, granularity,
    /// every layer) quantizes them, in [`QatSettings::layout`]'s layout.
    pub fn quantize(&self, weights: &Weights) -> Result<Weights> {
        if self.method.is_stochastic() {
            // refused by the config; a draw per step would not be the draw scored
            return Err(Error::config("--qat", format!("{} draws random numbers; QAT needs a deterministic method", self.method)));
        }
        let mut plan = Plan::new(self.layout(weights), self.bias, self.bn.unwrap_or(BnMode::Fold))?;
        plan.clip = self.clip;
        plan.rescale = self.rescale;
        plan.prepare(&[self.granularity], &[self.bits], &[self.method]);
        let variant = Variant { method: self.method, bits: self.bits, granularity: self.granularity, seed: None, scope: Scope::All };
        Ok(plan.apply(&variant).0)
    }

    /// The variant id the fine-tuning trained for (as in results.csv).
    pub fn variant_id(&self) -> String {
        Variant { method: self.method, bits: self.bits, granularity: self.granularity, seed: None, scope: Scope::All }.id()
    }

    /// The target as logs and reports give it: the method, the bits and every
    /// quantizer setting that is not the default.
    pub fn describe(&self) -> String {
        let mut how = vec![self.granularity.name().to_string()];
        if self.bias != BiasMode::Fp32 {
            how.push(format!("--bias {}", self.bias.name()));
        }
        if let Some(clip) = self.clip {
            how.push(format!("--clip {clip}"));
        }
        if self.rescale != Rescale::None {
            how.push(format!("--rescale {}", self.rescale.name()));
        }
        if let Some(bn) = self.bn {
            how.push(format!("--bn {}", bn.name()));
        }
        format!("{} at {} bits ({})", self.method, self.bits, how.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_every_setting_that_is_not_the_default() {
        let plain = QatSettings {
            method: Method::UniformNearest,
            bits: 2,
            granularity: Granularity::Layer,
            bias: BiasMode::Fp32,
            clip: None,
            rescale: Rescale::None,
            bn: None,
            from: "k".into(),
            from_sha256: String::new(),
        };
        assert_eq!(plain.describe(), "uniform-nearest at 2 bits (layer)");
        let all = QatSettings { granularity: Granularity::Channel, bias: BiasMode::Pool, clip: Some(Clip::Percentile(99.0)), rescale: Rescale::Gain, bn: Some(BnMode::Keep), ..plain };
        assert_eq!(all.describe(), "uniform-nearest at 2 bits (channel, --bias pool, --clip 99, --rescale gain, --bn keep)");
    }
}
