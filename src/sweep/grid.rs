//! The grid of variants: method x bits x granularity x seed x scope, in a fixed
//! order, each with a stable id.

use serde::{Deserialize, Serialize};

use crate::quant::{Granularity, Method};

/// Which layers a variant quantizes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// every layer
    All,
    /// one layer (the rest stay fp32): per-layer sensitivity
    Layer(String),
}

impl Scope {
    pub fn name(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Layer(l) => format!("layer={l}"),
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        if s == "all" {
            Some(Scope::All)
        } else {
            s.strip_prefix("layer=").map(|l| Scope::Layer(l.to_string()))
        }
    }

    pub fn includes(&self, layer: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Layer(l) => l == layer,
        }
    }
}

/// One quantized model to score.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Variant {
    pub method: Method,
    pub bits: u32,
    pub granularity: Granularity,
    /// the stochastic rounding seed; None for deterministic methods
    pub seed: Option<u32>,
    pub scope: Scope,
}

impl Variant {
    /// Stable id: `method:bits:granularity:seed:scope`, seed `-` when unused.
    pub fn id(&self) -> String {
        let seed = self.seed.map_or_else(|| "-".to_string(), |s| s.to_string());
        format!("{}:{}:{}:{}:{}", self.method, self.bits, self.granularity.name(), seed, self.scope.name())
    }
}

/// What the grid is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    pub methods: Vec<Method>,
    pub bits: Vec<u32>,
    pub granularities: Vec<Granularity>,
    /// seeds for the stochastic methods
    pub seeds: Vec<u32>,
    pub scopes: Vec<Scope>,
}

impl GridSpec {
    pub fn variants(&self) -> Vec<Variant> {
        let mut out = Vec::new();
        for scope in &self.scopes {
            for &granularity in &self.granularities {
                for &method in &self.methods {
                    for &bits in &self.bits {
                        let seeds: Vec<Option<u32>> =
                            if method.is_stochastic() { self.seeds.iter().map(|&s| Some(s)).collect() } else { vec![None] };
                        for seed in seeds {
                            out.push(Variant { method, bits, granularity, seed, scope: scope.clone() });
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_counts_seeds_only_for_stochastic_methods() {
        let g = GridSpec {
            methods: Method::ALL.to_vec(),
            bits: (1..=16).collect(),
            granularities: vec![Granularity::Layer],
            seeds: vec![7, 8, 9],
            scopes: vec![Scope::All],
        };
        let v = g.variants();
        assert_eq!(v.len(), 16 * (4 + 3 * 3));
        let mut ids: Vec<String> = v.iter().map(Variant::id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), v.len(), "ids are unique");
        assert!(ids.contains(&"uniform-stochastic:4:layer:8:all".to_string()));
        assert!(ids.contains(&"midrise:16:layer:-:all".to_string()));
    }
}
