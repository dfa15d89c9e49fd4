//! The grid of variants: method x bits x granularity x seed x scope, in a fixed
//! order, each with a stable id.

use serde::{Deserialize, Serialize};

use crate::quant::{Granularity, Method};

/// A layer that a mixed-precision scope holds at its own precision.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Held {
    /// a layer name as the model lists it, or `first` / `last` before
    /// [`resolve_held`] replaces them
    pub layer: String,
    /// the layer's bit width; None keeps it fp32
    pub bits: Option<u32>,
}

/// `LAYER=BITS` or `LAYER=fp32`, as --layer-bits takes it.
impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bits {
            Some(b) => write!(f, "{}={b}", self.layer),
            None => write!(f, "{}=fp32", self.layer),
        }
    }
}

/// A --layer-bits list written back in its canonical form (`first=8,last=fp32`).
pub fn held_text(held: &[Held]) -> String {
    held.iter().map(Held::to_string).collect::<Vec<_>>().join(",")
}

/// Which layers a variant quantizes, and at what bit width.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// every layer at the variant's bits
    All,
    /// one layer (the rest stay fp32): per-layer sensitivity
    Layer(String),
    /// mixed precision: every layer at the variant's bits, except the held
    /// ones, each at its own bit width (same method) or fp32
    Mixed(Vec<Held>),
}

impl Scope {
    /// `all`, `layer=NAME`, or `all+NAME=BITS+NAME=fp32...` (mixed precision).
    pub fn name(&self) -> String {
        match self {
            Scope::All => "all".into(),
            Scope::Layer(l) => format!("layer={l}"),
            Scope::Mixed(held) => std::iter::once("all".to_string()).chain(held.iter().map(Held::to_string)).collect::<Vec<_>>().join("+"),
        }
    }

    /// The held layers of a mixed scope's name (`layers.0=8+layers.4=fp32` of
    /// `all+layers.0=8+layers.4=fp32`); None for the other scopes.
    pub fn held_in_name(name: &str) -> Option<&str> {
        name.strip_prefix("all+")
    }

    /// The bit width this scope gives `layer` in a variant of `bits`; None: the
    /// layer stays fp32.
    pub fn bits_for(&self, layer: &str, bits: u32) -> Option<u32> {
        match self {
            Scope::All => Some(bits),
            Scope::Layer(l) => (l == layer).then_some(bits),
            Scope::Mixed(held) => held.iter().find(|h| h.layer == layer).map_or(Some(bits), |h| h.bits),
        }
    }
}

/// Parses a `--layer-bits` list, `NAME=BITS` pairs separated by commas, where
/// BITS is 1..=16 or `fp32` (e.g. `first=8,last=fp32`). Layer names are checked
/// later, against the model ([`resolve_held`]).
pub fn parse_held(text: &str) -> Result<Vec<Held>, String> {
    let mut out: Vec<Held> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (layer, bits) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected LAYER=BITS, e.g. first=8 or layers.0=fp32"))?;
        let (layer, bits) = (layer.trim(), bits.trim());
        if layer.is_empty() || layer.contains(['+', ':', ' ']) {
            return Err(format!("{part:?}: {layer:?} is not a layer name"));
        }
        let bits = match bits {
            "fp32" | "32" => None,
            b => match b.parse::<u32>() {
                Ok(b) if crate::quant::reference::BITS.contains(&b) => Some(b),
                _ => return Err(format!("{part:?}: {bits:?} is neither a bit width in 1..=16 nor fp32")),
            },
        };
        if out.iter().any(|h| h.layer == layer) {
            return Err(format!("{text:?}: {layer} is given twice"));
        }
        out.push(Held { layer: layer.to_string(), bits });
    }
    if out.is_empty() {
        return Err(format!("{text:?}: no LAYER=BITS pairs"));
    }
    Ok(out)
}

/// Replaces `first` and `last` by the model's first and last layer and checks
/// every name against `layers` (in the model's order). A list that holds every
/// layer leaves nothing for --bits and is refused.
pub fn resolve_held(held: &[Held], layers: &[String]) -> Result<Vec<Held>, String> {
    let mut out: Vec<Held> = Vec::new();
    for h in held {
        let layer = match h.layer.as_str() {
            "first" => layers.first(),
            "last" => layers.last(),
            name => layers.iter().find(|l| *l == name),
        }
        .ok_or_else(|| format!("the model has no layer {:?}; its layers are first, last, {}", h.layer, layers.join(", ")))?;
        if out.iter().any(|o| &o.layer == layer) {
            return Err(format!("{layer} is given twice (first and last name the model's first and last layer)"));
        }
        out.push(Held { layer: layer.clone(), bits: h.bits });
    }
    if layers.iter().all(|l| out.iter().any(|h| &h.layer == l)) {
        return Err(format!("every layer is held ({}), which leaves nothing for --bits to set", layers.join(", ")));
    }
    // the model's order, so that one assignment has one name
    out.sort_by_key(|h| layers.iter().position(|l| *l == h.layer));
    Ok(out)
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

    /// The bit width of `layer` in this variant; None: it stays fp32.
    pub fn bits_for(&self, layer: &str) -> Option<u32> {
        self.scope.bits_for(layer, self.bits)
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
            methods: Method::STUDY.to_vec(),
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

    fn layers() -> Vec<String> {
        ["layers.0", "layers.1", "layers.2"].map(String::from).to_vec()
    }

    #[test]
    fn mixed_scopes_hold_their_layers_and_give_the_rest_the_variant_bits() {
        let held = resolve_held(&parse_held("last=fp32, first=8").unwrap(), &layers()).unwrap();
        let scope = Scope::Mixed(held);
        assert_eq!(scope.name(), "all+layers.0=8+layers.2=fp32", "the model's order, whatever the order given");
        assert_eq!(scope.bits_for("layers.0", 3), Some(8));
        assert_eq!(scope.bits_for("layers.1", 3), Some(3));
        assert_eq!(scope.bits_for("layers.2", 3), None);
        assert_eq!(Scope::All.bits_for("layers.1", 3), Some(3));
        assert_eq!(Scope::Layer("layers.1".into()).bits_for("layers.0", 3), None);
        assert_eq!(parse_held("layers.1=32").unwrap(), vec![Held { layer: "layers.1".into(), bits: None }]);
        assert_eq!(held_text(&parse_held(" last = 32,first=08").unwrap()), "last=fp32,first=8");
    }

    #[test]
    fn bad_layer_bits_are_errors_that_say_why() {
        assert!(parse_held("first").unwrap_err().contains("LAYER=BITS"));
        assert!(parse_held("first=0").unwrap_err().contains("1..=16 nor fp32"));
        assert!(parse_held("first=17").unwrap_err().contains("1..=16 nor fp32"));
        assert!(parse_held("first=8,first=4").unwrap_err().contains("given twice"));
        assert!(parse_held(",").unwrap_err().contains("no LAYER=BITS"));
        assert!(parse_held("a+b=4").unwrap_err().contains("not a layer name"));
        let e = resolve_held(&parse_held("fc9=4").unwrap(), &layers()).unwrap_err();
        assert!(e.contains("no layer \"fc9\"") && e.contains("layers.0, layers.1, layers.2"), "{e}");
        assert!(resolve_held(&parse_held("first=4,layers.0=8").unwrap(), &layers()).unwrap_err().contains("given twice"));
        let e = resolve_held(&parse_held("first=4,layers.1=8,last=fp32").unwrap(), &layers()).unwrap_err();
        assert!(e.contains("every layer is held"), "{e}");
    }
}
