//! Dense nets on a GPU: a whole batch of variants scored by one dispatch of
//! shaders/score_mlp.wgsl instead of burn's per-layer kernels (matmul, bias,
//! ReLU, argmax, compare, sum: a dozen launches, each a round of work over
//! [V, rows, width] activations in device memory). The kernel keeps each row's
//! activations in private memory and leaves only one partial sum per workgroup
//! and variant, so a batch costs its arithmetic, the packing of its parameters
//! (padded to vec4 blocks, one burn `cat`, one copy into a texture) and one
//! readback.
//!
//! Input: the stacked parameters of the batch (burn tensors [V or 1, rows,
//! cols] on the shared wgpu device, as the WGSL quantizer writes them), the
//! first layer any variant changes, and the fp32 activations before it
//! (uploaded once). Output: the per-variant sums of the metric over the rows.

use std::sync::{Arc, Mutex};

use burn::tensor::Tensor;
use burn::tensor::wgpu::wgpu;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::bridge;
use crate::gpu::kernels::Kernel;

/// Widest layer the kernel holds in private memory (each row's activation
/// arrays hold HALF vec4 blocks in the shader, HALF at most 32).
pub const MAX_WIDTH: usize = 128;
/// Most dense layers the kernel's layer table holds.
pub const MAX_LAYERS: usize = 8;
/// Evaluation rows per workgroup: 64 invocations of 8 rows (ROWS in the shader).
const ROWS_PER_GROUP: usize = 64 * 8;
/// Most evaluation rows: 65,535 workgroups.
pub const MAX_ROWS: usize = ROWS_PER_GROUP * 65_535;
const NO_BIAS: u32 = u32::MAX;
/// Width of the parameter texture in texels (vec4s): a power of two, and a
/// whole number of the 256-byte rows buffer-to-texture copies need.
const TEXTURE_WIDTH: usize = 256;

/// Mirrors `Net` in shaders/score_mlp.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Net {
    rows: u32,
    start: u32,
    layers: u32,
    stride: u32,
    task: u32,
    target_mean: f32,
    target_std: f32,
    outputs: u32,
    layer: [[u32; 4]; MAX_LAYERS],
}

/// What the kernel needs to know of the evaluation split.
pub struct Split<'a> {
    /// the fp32 activations entering each layer, [1, rows, width] (index 0:
    /// the inputs)
    pub prefixes: &'a [Tensor<3>],
    /// class index (classifiers) or target in its own units (regressors), per row
    pub truth: Vec<f32>,
    pub classifier: bool,
    /// (mean, std) turning a regressor's output into the target's units
    pub target_affine: (f32, f32),
}

pub struct FusedMlp {
    ctx: Arc<GpuContext>,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// the most variants one round of copy and dispatch takes, besides what
    /// the texture's height allows
    round_cap: usize,
    /// the parameter texture, kept from call to call and replaced by a taller
    /// one when a batch needs more rows
    texture: Mutex<Option<(wgpu::Texture, wgpu::TextureView)>>,
    /// per layer: the fp32 activations entering it, [rows][inputs]
    inputs: Vec<wgpu::Buffer>,
    truth: wgpu::Buffer,
    rows: usize,
    /// per layer: (inputs, outputs)
    dims: Vec<(usize, usize)>,
    classifier: bool,
    target_affine: (f32, f32),
}

/// Widths as the kernel holds them: padded with zeros to whole vec4 blocks.
fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Output widths as the kernel computes them: two vec4 blocks at a time.
fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// `[V0, rows, cols]` zero-padded to `[V0, rows_to, cols_to]` and flattened to
/// `[v, rows_to * cols_to]`, broadcasting a shared tensor.
fn padded(p: &Tensor<3>, v: usize, rows_to: usize, cols_to: usize) -> Tensor<2> {
    let [pv, r, c] = p.dims();
    let device = p.device();
    let mut t = p.clone();
    if cols_to > c {
        t = Tensor::cat(vec![t, Tensor::zeros([pv, r, cols_to - c], &device)], 2);
    }
    if rows_to > r {
        t = Tensor::cat(vec![t, Tensor::zeros([pv, rows_to - r, cols_to], &device)], 1);
    }
    let f: Tensor<2> = t.reshape([pv, rows_to * cols_to]);
    if pv == v { f } else { f.expand([v, rows_to * cols_to]) }
}

/// Whether the kernel runs a net of `dims` (inputs, outputs) per layer on `rows` rows.
pub fn supports(dims: &[(usize, usize)], rows: usize) -> bool {
    !dims.is_empty() && dims.len() <= MAX_LAYERS && rows <= MAX_ROWS && dims.iter().all(|&(i, o)| pad4(i) <= MAX_WIDTH && pad8(o) <= MAX_WIDTH)
}

/// The kernel's source with its HALF constant (vec4 blocks in each row's
/// activation arrays) and the parameter texture's width set.
fn source(half: usize) -> Result<String> {
    let mut s = Kernel::ScoreMlp.source().to_string();
    for (name, value) in [("HALF", half), ("SHIFT", TEXTURE_WIDTH.trailing_zeros() as usize)] {
        let start = format!("const {name}: u32 = ");
        let line = s.lines().find(|l| l.starts_with(&start)).map(str::to_string);
        let line = line.ok_or_else(|| Error::Gpu(format!("{} declares no {name} constant", Kernel::ScoreMlp.file())))?;
        s = s.replacen(&line, &format!("{start}{value}u;"), 1);
    }
    Ok(s)
}

/// The kernel's bindings: storage buffers, and the parameters as an
/// unfilterable float texture (read with textureLoad only).
fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let buffer = |binding: u32| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only: false }, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let texture = wgpu::BindGroupLayoutEntry {
        binding: 3,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Texture {
            sample_type: wgpu::TextureSampleType::Float { filterable: false },
            view_dimension: wgpu::TextureViewDimension::D2,
            multisampled: false,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(Kernel::ScoreMlp.file()),
        entries: &[buffer(0), buffer(1), buffer(2), texture, buffer(4)],
    })
}

impl FusedMlp {
    /// The kernel for a net of `dims` (inputs, outputs) per layer, or None when
    /// the net does not fit it (see [`supports`]): burn's kernels score those.
    pub fn new(ctx: Arc<GpuContext>, dims: Vec<(usize, usize)>, split: Split<'_>) -> Result<Option<FusedMlp>> {
        let rows = split.truth.len();
        if !supports(&dims, rows) {
            return Ok(None);
        }
        // vec4 blocks of the widest layer, rounded up to a multiple of 4: lavapipe
        // ran 15 blocks at about 0.7x the speed of 16 (mlp-complex, churn)
        let half = pad4(dims.iter().map(|&(i, o)| pad4(i).max(pad8(o)) / 4).max().unwrap_or(1));
        let module = ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(Kernel::ScoreMlp.file()),
            source: wgpu::ShaderSource::Wgsl(source(half)?.into()),
        });
        let layout = bind_group_layout(&ctx.device);
        let pipeline_layout = ctx.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(Kernel::ScoreMlp.file()),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(Kernel::ScoreMlp.file()),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let storage = |label: &str, data: &[f32]| ctx.storage(label, bytemuck::cast_slice(if data.is_empty() { &[0.0f32; 4] } else { data }));
        let mut inputs = Vec::with_capacity(dims.len());
        for (l, p) in split.prefixes.iter().enumerate().take(dims.len()) {
            let [_, r, c] = p.dims();
            if r != rows || c != dims[l].0 {
                return Err(Error::Eval(format!("activations entering layer {l} are [{r}, {c}], the net expects [{rows}, {}]", dims[l].0)));
            }
            let host = p.clone().try_to_vec_as::<f32>().map_err(|e| Error::Eval(format!("reading activations back: {e:?}")))?;
            let width = pad4(c);
            let mut padded = vec![0.0f32; rows * width];
            for (dst, src) in padded.chunks_mut(width).zip(host.chunks(c.max(1))) {
                dst[..c].copy_from_slice(src);
            }
            inputs.push(storage("score_mlp inputs", &padded));
        }
        let truth = storage("score_mlp truth", &split.truth);
        Ok(Some(FusedMlp {
            ctx,
            pipeline,
            layout,
            round_cap: usize::MAX,
            texture: Mutex::new(None),
            inputs,
            truth,
            rows,
            dims,
            classifier: split.classifier,
            target_affine: split.target_affine,
        }))
    }

    /// At most `variants` (at least 1) per round of copy and dispatch; by
    /// default as many as the texture's height holds. Tests reach the
    /// several-round path with a few variants this way.
    pub fn limit_variants_per_round(&mut self, variants: usize) {
        self.round_cap = variants.max(1);
    }

    /// Per-variant sums over the rows (accuracy hits and top-5 hits, or squared
    /// and absolute errors) of `v` variants whose stacked parameters are
    /// `params`; `layers` names each layer's (weight, bias) tensors in
    /// `params`, and layers before `start` are the fp32 ones for every variant.
    pub fn sums(&self, params: &[Tensor<3>], layers: &[(usize, Option<usize>)], v: usize, start: usize) -> Result<Vec<[f64; 2]>> {
        if layers.len() != self.dims.len() || start >= layers.len() {
            return Err(Error::Eval(format!("a net of {} layers cannot start at layer {start} of {}", self.dims.len(), layers.len())));
        }
        if v == 0 || v > 65_535 {
            return Err(Error::Eval(format!("{v} variants in one dispatch; 1 to 65,535")));
        }
        // per layer: W [inputs][outputs] then its bias, widths padded to vec4
        // blocks, offsets counted in blocks
        let mut parts = Vec::new();
        let mut table = [[0u32; 4]; MAX_LAYERS];
        let mut offset = 0usize;
        for (l, &(w, b)) in layers.iter().enumerate().skip(start) {
            let (i, o) = (pad4(self.dims[l].0), pad8(self.dims[l].1));
            table[l] = [(i / 4) as u32, (o / 4) as u32, (offset / 4) as u32, NO_BIAS];
            parts.push(padded(&params[w], v, i, o));
            offset += i * o;
            if let Some(b) = b {
                table[l][3] = (offset / 4) as u32;
                parts.push(padded(&params[b], v, 1, o));
                offset += o;
            }
        }
        // a padding block keeps cat from returning one of its inputs (a
        // broadcast or narrowed view), and fills each variant out to whole
        // rows of the parameter texture
        let row = 4 * TEXTURE_WIDTH;
        let stride = (offset + 4).div_ceil(row) * row;
        parts.push(Tensor::zeros([v, stride - offset], &self.ctx.burn));
        let packed = Tensor::cat(parts, 1);
        let (mean, std) = self.target_affine;
        let net = Net {
            rows: self.rows as u32,
            start: start as u32,
            layers: self.dims.len() as u32,
            stride: (stride / 4) as u32,
            task: if self.classifier { 0 } else { 1 },
            target_mean: mean,
            target_std: std,
            outputs: self.dims[self.dims.len() - 1].1 as u32,
            layer: table,
        };
        let groups = self.rows.div_ceil(ROWS_PER_GROUP);
        let device = &self.ctx.device;
        let net_buffer = self.ctx.storage("score_mlp net", bytemuck::bytes_of(&net));
        // the texture holds as many variants as its height allows; more take
        // several rounds of copy and dispatch, each writing its own aligned
        // slot of one partials buffer
        let texture_rows = stride / row;
        let height = self.ctx.limits().max_texture_dimension_2d as usize;
        let per_round = (height / texture_rows).max(1).min(self.round_cap).min(v);
        let rounds: Vec<(usize, usize)> = (0..v).step_by(per_round).map(|a| (a, per_round.min(v - a))).collect();
        let align = (self.ctx.limits().min_storage_buffer_offset_alignment as usize).max(8);
        let slot = per_round * groups * 8;
        let slot_stride = slot.div_ceil(align) * align;
        let partials = self.ctx.empty("score_mlp partials", slot_stride * rounds.len());
        let mut cached = self.texture.lock().unwrap_or_else(|e| e.into_inner());
        let rows_needed = (per_round * texture_rows) as u32;
        if cached.as_ref().is_none_or(|(t, _)| t.height() < rows_needed) {
            let texture = device.create_texture(&wgpu::TextureDescriptor {
                label: Some("score_mlp params"),
                size: wgpu::Extent3d { width: TEXTURE_WIDTH as u32, height: rows_needed, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            *cached = Some((texture, view));
        }
        let (texture, view) = cached.as_ref().expect("made above");
        bridge::with_region(&packed, |region| {
            let need = (v * stride * 4) as u64;
            if region.size < need {
                return Err(Error::Gpu(format!("packed parameters hold {} bytes, {need} expected", region.size)));
            }
            let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("score_mlp") });
            for (r, &(first, n)) in rounds.iter().enumerate() {
                enc.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: region.buffer,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: region.offset + (first * stride * 4) as u64,
                            bytes_per_row: Some((row * 4) as u32),
                            rows_per_image: None,
                        },
                    },
                    texture.as_image_copy(),
                    wgpu::Extent3d { width: TEXTURE_WIDTH as u32, height: (n * texture_rows) as u32, depth_or_array_layers: 1 },
                );
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("score_mlp"),
                    layout: &self.layout,
                    entries: &[
                        wgpu::BindGroupEntry { binding: 0, resource: net_buffer.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 1, resource: self.inputs[start].as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 2, resource: self.truth.as_entire_binding() },
                        wgpu::BindGroupEntry { binding: 3, resource: wgpu::BindingResource::TextureView(view) },
                        wgpu::BindGroupEntry {
                            binding: 4,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: &partials,
                                offset: (r * slot_stride) as u64,
                                size: std::num::NonZeroU64::new((n * groups * 8) as u64),
                            }),
                        },
                    ],
                });
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("score_mlp"), timestamp_writes: None });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(groups as u32, n as u32, 1);
            }
            self.ctx.queue.submit([enc.finish()]);
            Ok(())
        })??;
        drop(cached);
        let p: Vec<[f32; 2]> = self.ctx.read(&partials, slot_stride * rounds.len())?;
        let out = rounds
            .iter()
            .enumerate()
            .flat_map(|(r, &(_, n))| p[r * slot_stride / 8..][..n * groups].chunks(groups))
            .map(|c| c.iter().fold([0.0f64; 2], |acc, s| [acc[0] + f64::from(s[0]), acc[1] + f64::from(s[1])]))
            .collect();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The source the device compiles, for each width the host may pick,
    /// validates with naga (no GPU needed).
    #[test]
    fn every_width_setting_validates() {
        for half in [4, 16, 32] {
            let src = source(half).unwrap();
            assert!(src.contains(&format!("const HALF: u32 = {half}u;")), "{half}");
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&src)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all()).validate(&module).unwrap();
        }
    }

    #[test]
    fn the_kernel_takes_the_study_nets_and_refuses_what_it_cannot_hold() {
        let churn = [(13, 20), (20, 40), (40, 60), (60, 30), (30, 2)];
        let mv = [(10, 50), (50, 100), (100, 100), (100, 50), (50, 1)];
        assert!(supports(&churn, 2_000) && supports(&mv, 8_000));
        assert!(supports(&[(128, 128)], 10) && !supports(&[(129, 2)], 10) && !supports(&[(2, 129)], 10));
        assert!(!supports(&[(4, 4); 9], 10) && !supports(&[], 10));
        assert!(supports(&churn, MAX_ROWS) && !supports(&churn, MAX_ROWS + 1));
    }

    #[test]
    fn widths_pad_to_whole_blocks() {
        assert_eq!([0, 1, 4, 5, 60, 126].map(pad4), [0, 4, 4, 8, 60, 128]);
    }
}
