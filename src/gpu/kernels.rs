//! The one table of WGSL kernels: each kernel's source is common.wgsl (+
//! levels.wgsl where it rounds) + its own file, loaded with include_str! and
//! compiled once per device into a cached pipeline.

use std::collections::HashMap;
use std::sync::Mutex;

use burn::tensor::wgpu::wgpu;

/// Every kernel in shaders/, one per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    GroupPartials,
    GroupSqdevPartials,
    ReducePartials,
    FinishStats,
    ZTable,
    LevelParams,
    Quantize,
    GroupProducts,
    Rescale,
    ScoreMlp,
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const LEVELS: &str = include_str!("../../shaders/levels.wgsl");

impl Kernel {
    pub const ALL: [Kernel; 10] = [
        Kernel::GroupPartials,
        Kernel::GroupSqdevPartials,
        Kernel::ReducePartials,
        Kernel::FinishStats,
        Kernel::ZTable,
        Kernel::LevelParams,
        Kernel::Quantize,
        Kernel::GroupProducts,
        Kernel::Rescale,
        Kernel::ScoreMlp,
    ];

    pub fn file(self) -> &'static str {
        match self {
            Kernel::GroupPartials => "group_partials.wgsl",
            Kernel::GroupSqdevPartials => "group_sqdev_partials.wgsl",
            Kernel::ReducePartials => "reduce_partials.wgsl",
            Kernel::FinishStats => "finish_stats.wgsl",
            Kernel::ZTable => "z_table.wgsl",
            Kernel::LevelParams => "level_params.wgsl",
            Kernel::Quantize => "quantize.wgsl",
            Kernel::GroupProducts => "group_products.wgsl",
            Kernel::Rescale => "rescale.wgsl",
            Kernel::ScoreMlp => "score_mlp.wgsl",
        }
    }

    fn own_source(self) -> &'static str {
        match self {
            Kernel::GroupPartials => include_str!("../../shaders/group_partials.wgsl"),
            Kernel::GroupSqdevPartials => include_str!("../../shaders/group_sqdev_partials.wgsl"),
            Kernel::ReducePartials => include_str!("../../shaders/reduce_partials.wgsl"),
            Kernel::FinishStats => include_str!("../../shaders/finish_stats.wgsl"),
            Kernel::ZTable => include_str!("../../shaders/z_table.wgsl"),
            Kernel::LevelParams => include_str!("../../shaders/level_params.wgsl"),
            Kernel::Quantize => include_str!("../../shaders/quantize.wgsl"),
            Kernel::GroupProducts => include_str!("../../shaders/group_products.wgsl"),
            Kernel::Rescale => include_str!("../../shaders/rescale.wgsl"),
            Kernel::ScoreMlp => include_str!("../../shaders/score_mlp.wgsl"),
        }
    }

    fn uses_levels(self) -> bool {
        matches!(self, Kernel::LevelParams | Kernel::Quantize)
    }

    /// Whether the kernel reads the constants buffer (bind group 1): every
    /// kernel that does exact arithmetic beyond additions.
    pub fn uses_constants(self) -> bool {
        matches!(self, Kernel::FinishStats | Kernel::ZTable | Kernel::LevelParams | Kernel::Rescale)
    }

    /// The complete WGSL the device compiles.
    pub fn source(self) -> String {
        with_prelude(&[COMMON, if self.uses_levels() { LEVELS } else { "" }, self.own_source()].concat())
    }
}

/// `const K_<NAME>: u32 = <index>;` for every constant of the specification,
/// then `body`: the kernels name constants the way the Rust reference does.
pub fn with_prelude(body: &str) -> String {
    let mut s = String::new();
    for (i, (name, _)) in crate::quant::exact::CONSTANTS.iter().enumerate() {
        s.push_str(&format!("const K_{name}: u32 = {i}u;\n"));
    }
    s.push_str(body);
    s
}

/// Compute pipelines, built on first use and kept for the device's lifetime.
#[derive(Default)]
pub struct Pipelines {
    cache: Mutex<HashMap<(Kernel, Option<u32>), wgpu::ComputePipeline>>,
}

impl Pipelines {
    pub fn get(&self, device: &wgpu::Device, kernel: Kernel) -> wgpu::ComputePipeline {
        self.get_specialised(device, kernel, None)
    }

    /// The pipeline with its `METHOD` override set (quantize.wgsl), or the
    /// shader's default when `method` is None.
    pub fn get_specialised(&self, device: &wgpu::Device, kernel: Kernel, method: Option<u32>) -> wgpu::ComputePipeline {
        let mut cache = self.cache.lock().expect("pipeline cache lock");
        cache
            .entry((kernel, method))
            .or_insert_with(|| {
                let value = method.map(f64::from);
                let constants: Vec<(&str, f64)> = value.iter().map(|v| ("METHOD", *v)).collect();
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.file()),
                    source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.file()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
                    cache: None,
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shader parses and validates with naga on the CPU: no GPU needed.
    #[test]
    fn every_shader_validates_with_naga() {
        for k in Kernel::ALL {
            let module = naga::front::wgsl::parse_str(&k.source()).unwrap_or_else(|e| panic!("{}: {}", k.file(), e.emit_to_string(&k.source())));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", k.file()));
        }
    }

    /// The bind group 1 rule in GpuQuantizer::pass must follow what each entry
    /// point really reads: a group the shader does not use has no layout entries.
    #[test]
    fn uses_constants_matches_what_each_entry_point_reads() {
        for k in Kernel::ALL {
            let module = naga::front::wgsl::parse_str(&k.source()).unwrap();
            let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                .validate(&module)
                .unwrap();
            let (handle, _) = module.global_variables.iter().find(|(_, g)| g.name.as_deref() == Some("K")).expect("K is declared");
            let reads = !info.get_entry_point(0)[handle].is_empty();
            assert_eq!(reads, k.uses_constants(), "{}", k.file());
        }
    }

    #[test]
    fn every_shader_file_is_in_the_table() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut files: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        files.retain(|f| f != "common.wgsl" && f != "levels.wgsl");
        files.sort();
        let mut table: Vec<String> = Kernel::ALL.iter().map(|k| k.file().to_string()).collect();
        table.sort();
        assert_eq!(files, table);
    }
}
