//! The WGSL quantizer: the same codes and weights as the CPU reference, computed
//! on the wgpu device that burn shares, many variants per dispatch, written
//! straight into burn tensors' buffers (see gpu/bridge.rs).
//!
//! Per tensor and granularity, once: group_partials -> reduce_partials ->
//! finish_stats (lo, hi, mean) -> group_sqdev_partials -> reduce_partials ->
//! finish_stats (std) -> level_params for every bit width. Per batch of
//! variants: quantize (one dispatch, the variant on z), with --rescale
//! group_products -> reduce_partials -> rescale in place, and optionally
//! group_products -> reduce_partials over the whole tensor for the weight
//! error and gain.

use std::sync::Arc;

use burn::tensor::wgpu::wgpu;
use wgpu::util::DeviceExt;

use super::reference::{GroupStats, LevelParams, Quantized, REDUCE_BLOCK};
use super::{Grouping, LevelSet, Method, Product, Rescale};
use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::gpu::bridge::Region;
use crate::gpu::kernels::{Kernel, Pipelines};

/// Mirrors `Partial` in shaders/common.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Partial {
    lo: f32,
    hi: f32,
    sum: f32,
    pad: f32,
}
const _: () = assert!(std::mem::size_of::<Partial>() == 16);
const _: () = assert!(std::mem::size_of::<GroupStats>() == 16);


/// Entries in the z table: Σ_{b=2..16} (2^b - 2).
const Z_ENTRIES: usize = (1 << 17) - 34;

/// Table entries one invocation of the quantize kernel rounds its element for:
/// the weight and its group are loaded once for all of them.
pub const VARIANTS_PER_INVOCATION: usize = 8;

/// A variant as the quantize kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuVariant {
    pub method: Method,
    pub bits: u32,
    pub seed: u32,
}

/// One dispatch of the quantize kernel: the method its pipeline is
/// specialised to (None: decided per variant) and its variants, each with
/// its slot in the output.
type Dispatch = (Option<u32>, Vec<(usize, GpuVariant)>);

/// Ranges computed on the host for [`GpuQuantizer::upload_with`] (--clip),
/// the level parameters built from them instead of from statistics computed
/// on the device.
#[derive(Clone, Debug, PartialEq)]
pub enum GivenRanges {
    /// one per group, the same at every bit width (reference::clip_stats)
    PerGroup(Vec<GroupStats>),
    /// [method][bits row][group]: each listed method's own range at each bit
    /// width of the upload (reference::mse_clip_ranges); a method rounds
    /// within its own
    PerMethod(Vec<Method>, Vec<GroupStats>),
}

/// A tensor on the device with its per-group statistics and level parameters.
pub struct GpuTensor {
    pub grouping: Grouping,
    pub tensor_index: u32,
    pub bits: Vec<u32>,
    /// the methods with level parameters of their own (--clip mse), in the
    /// order of their blocks of bits rows in `params` (empty: one block for
    /// every method)
    range_methods: Vec<Method>,
    weights: wgpu::Buffer,
    stats: wgpu::Buffer,
    params: wgpu::Buffer,
    /// the level tables of the table level sets (lloyd, kde), every bits row
    /// of each, one after another (None: none uploaded)
    tables: Option<wgpu::Buffer>,
    /// per level set, where each bits row's tables start in `tables`, in f32s
    table_rows: Vec<(LevelSet, Vec<u32>)>,
}

/// The level tables of one table level set for [`GpuQuantizer::upload_with`]:
/// one per bit width of the upload, in its order.
pub type Tables<'a> = (LevelSet, Vec<&'a [f32]>);

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.grouping.len
    }
    pub fn is_empty(&self) -> bool {
        self.grouping.len == 0
    }
}

pub struct GpuQuantizer {
    pub ctx: Arc<GpuContext>,
    pipelines: Pipelines,
    z_table: wgpu::Buffer,
    dummy: wgpu::Buffer,
    /// bound as the level tables of a tensor that has none
    no_tables: wgpu::Buffer,
    /// quant::exact::CONSTANTS, bound as group 1 of the kernels that use them
    constants: wgpu::Buffer,
}

/// Splits `workgroups` over x and y (at most 65535 per dimension).
fn grid_2d(workgroups: usize) -> (u32, u32) {
    let x = workgroups.clamp(1, 65_535);
    (x as u32, workgroups.div_ceil(x).max(1) as u32)
}

impl GpuQuantizer {
    pub fn new(ctx: Arc<GpuContext>) -> Result<GpuQuantizer> {
        let device = &ctx.device;
        let z_table = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("z_table"),
            size: (Z_ENTRIES * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused codes"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let no_tables = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("no level tables"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let constants = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("constants"),
            contents: bytemuck::cast_slice(&crate::quant::exact::constants_buffer()),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let q = GpuQuantizer { ctx, pipelines: Pipelines::default(), z_table, dummy, no_tables, constants };
        let mut enc = q.encoder();
        q.pass(&mut enc, Kernel::ZTable, &[q.z_table.as_entire_binding()], (Z_ENTRIES.div_ceil(256) as u32, 1, 1));
        q.ctx.queue.submit([enc.finish()]);
        Ok(q)
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sweep-gpu quantizer") })
    }

    /// Encodes one compute pass of `kernel` with `bindings` in binding order.
    fn pass(&self, enc: &mut wgpu::CommandEncoder, kernel: Kernel, bindings: &[wgpu::BindingResource<'_>], groups: (u32, u32, u32)) {
        self.pass_specialised(enc, kernel, None, bindings, groups)
    }

    fn pass_specialised(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: Kernel,
        method: Option<u32>,
        bindings: &[wgpu::BindingResource<'_>],
        groups: (u32, u32, u32),
    ) {
        let pipeline = self.pipelines.get_specialised(&self.ctx.device, kernel, method);
        let entries: Vec<wgpu::BindGroupEntry<'_>> =
            bindings.iter().enumerate().map(|(i, r)| wgpu::BindGroupEntry { binding: i as u32, resource: r.clone() }).collect();
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.file()),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.file()), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        if kernel.uses_constants() {
            pass.set_bind_group(1, &self.constants_bind_group(&pipeline), &[]);
        }
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Bind group 1 of a pipeline whose shader reads the constants buffer
    /// (for kernels built outside the table too, as the tests do).
    pub fn constants_bind_group(&self, pipeline: &wgpu::ComputePipeline) -> wgpu::BindGroup {
        self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("constants"),
            layout: &pipeline.get_bind_group_layout(1),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: self.constants.as_entire_binding() }],
        })
    }

    /// Reduces `rows` rows of `n` partials each down to one partial per row,
    /// returning the buffer that holds them.
    fn reduce(&self, enc: &mut wgpu::CommandEncoder, mut src: wgpu::Buffer, rows: usize, mut n: usize) -> wgpu::Buffer {
        while n > 1 {
            let out_n = n.div_ceil(REDUCE_BLOCK);
            let dst = self.ctx.empty("partials", rows * out_n * 16);
            let shape = self.ctx.storage("shape", bytemuck::cast_slice(&[n as u32, out_n as u32, 0, 0]));
            self.pass(enc, Kernel::ReducePartials, &[src.as_entire_binding(), dst.as_entire_binding(), shape.as_entire_binding()], (out_n as u32, rows as u32, 1));
            src = dst;
            n = out_n;
        }
        src
    }

    /// Encodes the group statistics kernels (lo, hi, mean, then std) into a new buffer.
    fn group_stats(&self, enc: &mut wgpu::CommandEncoder, weights: &wgpu::Buffer, grouping: Grouping, blocks: usize) -> wgpu::Buffer {
        let g = grouping.groups as u32;
        let glen = grouping.group_len();
        let stats = self.ctx.empty("stats", grouping.groups * 16);
        let shape = self.ctx.storage("shape", bytemuck::cast_slice(&[grouping.len as u32, grouping.groups as u32, grouping.stride as u32, blocks as u32]));
        let partials = self.ctx.empty("partials", grouping.groups * blocks * 16);
        self.pass(enc, Kernel::GroupPartials, &[weights.as_entire_binding(), partials.as_entire_binding(), shape.as_entire_binding()], (blocks as u32, g, 1));
        let total = self.reduce(enc, partials, grouping.groups, blocks);
        let finish = |mode: u32| self.ctx.storage("shape", bytemuck::cast_slice(&[g, glen as u32, mode, 0]));
        let finish0 = finish(0);
        self.pass(enc, Kernel::FinishStats, &[total.as_entire_binding(), stats.as_entire_binding(), finish0.as_entire_binding()], (g.div_ceil(64), 1, 1));

        let partials = self.ctx.empty("partials", grouping.groups * blocks * 16);
        self.pass(
            enc,
            Kernel::GroupSqdevPartials,
            &[weights.as_entire_binding(), stats.as_entire_binding(), partials.as_entire_binding(), shape.as_entire_binding()],
            (blocks as u32, g, 1),
        );
        let total = self.reduce(enc, partials, grouping.groups, blocks);
        let finish1 = finish(1);
        self.pass(enc, Kernel::FinishStats, &[total.as_entire_binding(), stats.as_entire_binding(), finish1.as_entire_binding()], (g.div_ceil(64), 1, 1));
        stats
    }

    /// Uploads a tensor and computes its statistics and level parameters for `bits`.
    pub fn upload(&self, data: &[f32], grouping: Grouping, tensor_index: u32, bits: &[u32]) -> Result<GpuTensor> {
        self.upload_with(data, grouping, tensor_index, bits, &[], None)
    }

    /// [`upload`](Self::upload), with the level tables the lloyd and kde methods
    /// round onto (reference::level_table), per level set one per bit width of
    /// `bits`; and with `ranges` given (--clip), the level parameters are built
    /// from those instead of statistics computed on the device.
    pub fn upload_with(&self, data: &[f32], grouping: Grouping, tensor_index: u32, bits: &[u32], tables: &[Tables<'_>], ranges: Option<&GivenRanges>) -> Result<GpuTensor> {
        let (range_methods, given): (&[Method], Option<&[GroupStats]>) = match ranges {
            None => (&[], None),
            Some(GivenRanges::PerGroup(s)) => (&[], Some(s)),
            Some(GivenRanges::PerMethod(methods, s)) => (methods, Some(s)),
        };
        let blocks_of_rows = range_methods.len().max(1);
        let expected = if range_methods.is_empty() { grouping.groups } else { grouping.groups * bits.len() * range_methods.len() };
        if given.is_some_and(|s| s.len() != expected) || range_methods.iter().any(|m| !m.is_clippable()) {
            return Err(Error::Quant("the given ranges do not match the grouping, bit widths and methods".into()));
        }
        if data.len() != grouping.len || data.is_empty() {
            return Err(Error::Quant(format!("tensor of {} elements does not match its grouping of {}", data.len(), grouping.len)));
        }
        let entries = |b: u32| grouping.groups * super::reference::table_entries(b, grouping.group_len());
        let mut table_rows = Vec::with_capacity(tables.len());
        let mut flat: Vec<f32> = Vec::new();
        for (set, rows) in tables {
            if !set.is_table() || rows.len() != bits.len() || bits.iter().zip(rows).any(|(&b, t)| t.len() != entries(b)) {
                return Err(Error::Quant(format!("the {set:?} level tables do not match the bit widths and groups")));
            }
            let mut starts = Vec::with_capacity(rows.len());
            for t in rows {
                starts.push(flat.len() as u32);
                flat.extend_from_slice(t);
            }
            table_rows.push((*set, starts));
        }
        let table_bytes = (flat.len() * 4) as u64;
        if table_bytes > self.ctx.limits().max_storage_buffer_binding_size {
            return Err(Error::Quant(format!(
                "the level tables of a tensor of {} groups need {} MiB at bits {:?}, over the adapter's {} MiB per binding: fewer or smaller bit widths, or --granularity layer",
                grouping.groups,
                table_bytes >> 20,
                bits,
                self.ctx.limits().max_storage_buffer_binding_size >> 20
            )));
        }
        let tables = (!flat.is_empty()).then(|| self.ctx.storage("level tables", bytemuck::cast_slice(&flat)));
        let limits = self.ctx.limits();
        let glen = grouping.group_len();
        let blocks = glen.div_ceil(REDUCE_BLOCK);
        if grouping.groups > limits.max_compute_workgroups_per_dimension as usize || blocks > limits.max_compute_workgroups_per_dimension as usize {
            return Err(Error::Quant(format!("a tensor of {} groups of {glen} exceeds the dispatch limits", grouping.groups)));
        }
        let weights = self.ctx.storage("weights", bytemuck::cast_slice(data));
        // [method block][bits row][group]
        let rows: Vec<u32> = bits.repeat(blocks_of_rows);
        let params = self.ctx.empty("params", rows.len() * grouping.groups * std::mem::size_of::<LevelParams>());
        let g = grouping.groups as u32;
        let mut enc = self.encoder();
        let stats = match given {
            Some(given) => self.ctx.storage("stats", bytemuck::cast_slice(given)),
            None => self.group_stats(&mut enc, &weights, grouping, blocks),
        };

        let bit_list = self.ctx.storage("bits", bytemuck::cast_slice(&rows));
        // given ranges per method are given per row; the kernel's shape[2]
        let per_row = !range_methods.is_empty() as u32;
        let pshape = self.ctx.storage("shape", bytemuck::cast_slice(&[g, rows.len() as u32, per_row, 0]));
        self.pass(
            &mut enc,
            Kernel::LevelParams,
            &[stats.as_entire_binding(), self.z_table.as_entire_binding(), bit_list.as_entire_binding(), params.as_entire_binding(), pshape.as_entire_binding()],
            (g.div_ceil(64), rows.len() as u32, 1),
        );
        self.ctx.queue.submit([enc.finish()]);
        Ok(GpuTensor { grouping, tensor_index, bits: bits.to_vec(), range_methods: range_methods.to_vec(), weights, stats, params, tables, table_rows })
    }

    /// The quantize kernel's table for `variants` (output slots in order).
    fn variant_table(&self, t: &GpuTensor, variants: &[(usize, GpuVariant)]) -> Result<wgpu::Buffer> {
        let mut table = Vec::with_capacity(variants.len() * 8);
        for (slot, v) in variants {
            let row = t.bits.iter().position(|&b| b == v.bits).ok_or_else(|| Error::Quant(format!("{} bits were not prepared for this tensor", v.bits)))?;
            let key = super::draw_key(v.seed, super::stream_id(v.method, v.bits), t.tensor_index);
            let set = v.method.level_set();
            // the row of its level parameters: its own block, when it has one
            let block = if t.range_methods.is_empty() {
                0
            } else {
                t.range_methods.iter().position(|&m| m == v.method).ok_or_else(|| Error::Quant(format!("{}: the tensor was uploaded without ranges for this method", v.method)))?
            };
            let params_row = block * t.bits.len() + row;
            let start = if set.is_table() {
                t.table_rows
                    .iter()
                    .find(|(s, _)| *s == set)
                    .map(|(_, starts)| starts[row])
                    .ok_or_else(|| Error::Quant(format!("{}: the tensor was uploaded without its level tables", v.method)))?
            } else {
                0
            };
            table.extend_from_slice(&[v.method.code(), v.bits, v.seed, (params_row * t.grouping.groups) as u32, *slot as u32, key, start, 0]);
        }
        Ok(self.ctx.storage("variants", bytemuck::cast_slice(&table)))
    }

    /// Encodes and submits the quantization of `variants` of `t` into `out`
    /// ([variant][element] f32) and, when given, their codes into `codes`:
    /// one dispatch per method present, each with the pipeline specialised to
    /// that method, covering all of its bit widths and seeds.
    pub fn quantize(&self, t: &GpuTensor, variants: &[GpuVariant], out: &Region<'_>, codes: Option<&wgpu::Buffer>) -> Result<()> {
        let mut by_method: Vec<Dispatch> = Vec::new();
        for (slot, v) in variants.iter().enumerate() {
            let key = Some(v.method.code());
            match by_method.iter_mut().find(|(m, _)| *m == key) {
                Some((_, list)) => list.push((slot, *v)),
                None => by_method.push((key, vec![(slot, *v)])),
            }
        }
        self.encode_quantize(t, variants.len(), &by_method, out, codes)
    }

    /// The same as [`quantize`](Self::quantize) in a single dispatch of the
    /// unspecialised pipeline, the method decided per variant (the parity
    /// tests check that both give the reference's codes).
    pub fn quantize_one_dispatch(&self, t: &GpuTensor, variants: &[GpuVariant], out: &Region<'_>, codes: Option<&wgpu::Buffer>) -> Result<()> {
        let all = vec![(None, variants.iter().copied().enumerate().collect())];
        self.encode_quantize(t, variants.len(), &all, out, codes)
    }

    fn encode_quantize(
        &self,
        t: &GpuTensor,
        slots: usize,
        dispatches: &[Dispatch],
        out: &Region<'_>,
        codes: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let n = t.len();
        let need = (slots * n * 4) as u64;
        if out.size < need {
            return Err(Error::Quant(format!("output region of {} bytes is smaller than {need}", out.size)));
        }
        let per = VARIANTS_PER_INVOCATION;
        let (x, y) = grid_2d(n.div_ceil(256));
        let g = t.grouping;
        let (codes, write_codes) = codes.map(|c| (c, 1u32)).unwrap_or((&self.dummy, 0));
        let mut enc = self.encoder();
        for (method, list) in dispatches {
            if list.len().div_ceil(per) > 65_535 {
                return Err(Error::Quant(format!("more than {} variants in one dispatch", 65_535 * per)));
            }
            let table = self.variant_table(t, list)?;
            let shape = self.ctx.storage(
                "shape",
                bytemuck::cast_slice(&[n as u32, g.groups as u32, g.stride as u32, write_codes, t.tensor_index, x, list.len() as u32, per as u32]),
            );
            self.pass_specialised(
                &mut enc,
                Kernel::Quantize,
                *method,
                &[
                    t.weights.as_entire_binding(),
                    self.z_table.as_entire_binding(),
                    t.params.as_entire_binding(),
                    table.as_entire_binding(),
                    out.binding(),
                    codes.as_entire_binding(),
                    shape.as_entire_binding(),
                    t.tables.as_ref().unwrap_or(&self.no_tables).as_entire_binding(),
                ],
                (x, y, list.len().div_ceil(per) as u32),
            );
        }
        self.ctx.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Applies `--rescale` to the quantized values of `variants` variants of
    /// `t` in `values` ([variant][element], as [`quantize`](Self::quantize)
    /// wrote them), in place: group_products for the two sums of each
    /// (variant, group), reduce_partials, then rescale. The same bits as
    /// reference::rescale.
    pub fn rescale(&self, t: &GpuTensor, values: &Region<'_>, variants: usize, mode: Rescale) -> Result<()> {
        let Some((num, den)) = mode.sums() else {
            return Ok(());
        };
        let n = t.len();
        let g = t.grouping;
        let mut enc = self.encoder();
        let num = self.products(&mut enc, t, g, values, variants, num, None)?;
        let den = self.products(&mut enc, t, g, values, variants, den, None)?;
        let (x, y) = grid_2d(n.div_ceil(256));
        let shape = self.ctx.storage("shape", bytemuck::cast_slice(&[n as u32, g.groups as u32, g.stride as u32, x]));
        self.pass(&mut enc, Kernel::Rescale, &[values.binding(), num.as_entire_binding(), den.as_entire_binding(), shape.as_entire_binding()], (x, y, variants as u32));
        self.ctx.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Σ (w - q)² and Σ w q per variant over the whole tensor (w flushed),
    /// each in the canonical tree order, read back: group_products with one
    /// group.
    pub fn weight_sums(&self, t: &GpuTensor, values: &Region<'_>, variants: usize) -> Result<Vec<(f32, f32)>> {
        let row_bytes = (variants * 16) as u64;
        // both sums side by side, [mode][variant], so that one readback serves them
        let both = self.ctx.empty("weight sums", 2 * variants * 16);
        let mut enc = self.encoder();
        for (i, product) in [Product::SqErr, Product::WQ].into_iter().enumerate() {
            let total = self.products(&mut enc, t, Grouping::whole(t.len()), values, variants, product, None)?;
            enc.copy_buffer_to_buffer(&total, 0, &both, i as u64 * row_bytes, row_bytes);
        }
        self.ctx.queue.submit([enc.finish()]);
        let p: Vec<Partial> = self.read(&both, 2 * variants * 16)?;
        let (sq, cross) = p.split_at(variants);
        Ok(sq.iter().zip(cross).map(|(e, c)| (e.sum, c.sum)).collect())
    }

    /// --bias-correct's shifts: per variant and output channel (`channels`, one
    /// group per output channel of `t`), Σ (w - q) × means[i] over the
    /// channel's elements, read back [variant][channel]: group_products' mode
    /// 4 and its reduction, bit for bit reference::shift_sum. `means` holds
    /// one f32 per weight ([`upload_means`](Self::upload_means)).
    pub fn shifts(&self, t: &GpuTensor, channels: Grouping, values: &Region<'_>, variants: usize, means: &wgpu::Buffer) -> Result<Vec<f32>> {
        if channels.len != t.len() || means.size() < (t.len() * 4) as u64 {
            return Err(Error::Quant(format!("bias correction of a tensor of {} elements: channels of {} elements and {} bytes of means do not fit it", t.len(), channels.len, means.size())));
        }
        let mut enc = self.encoder();
        let sums = self.products(&mut enc, t, channels, values, variants, Product::Shift, Some(means))?;
        self.ctx.queue.submit([enc.finish()]);
        let p: Vec<Partial> = self.read(&sums, variants * channels.groups * 16)?;
        Ok(p.iter().map(|p| p.sum).collect())
    }

    /// A buffer of the per-weight input means that [`shifts`](Self::shifts) reads.
    pub fn upload_means(&self, means: &[f32]) -> wgpu::Buffer {
        self.ctx.storage("input means", bytemuck::cast_slice(means))
    }

    /// Encodes group_products for `product` and its reduction for `variants`
    /// variants of `t` in `values`, grouped by `grouping`: the buffer of one
    /// fully reduced partial per (variant, group), reference::product_sum's
    /// (mode 4, [`Product::Shift`], reads `means`; the others ignore it).
    #[allow(clippy::too_many_arguments)] // one pass: its encoder, tensor, grouping, values, count, product and mode 4's means
    fn products(&self, enc: &mut wgpu::CommandEncoder, t: &GpuTensor, grouping: Grouping, values: &Region<'_>, variants: usize, product: Product, means: Option<&wgpu::Buffer>) -> Result<wgpu::Buffer> {
        let limit = self.ctx.limits().max_compute_workgroups_per_dimension as usize;
        let blocks = grouping.group_len().div_ceil(REDUCE_BLOCK);
        if variants > limit || blocks > limit {
            return Err(Error::Quant(format!("{variants} variants of a tensor of {} elements exceed the dispatch limits of its per-group sums", t.len())));
        }
        let mode = product as u32;
        let rows = variants * grouping.groups;
        let partials = self.ctx.empty("partials", rows * blocks * 16);
        let shape = self.ctx.storage("shape", bytemuck::cast_slice(&[t.len() as u32, grouping.groups as u32, grouping.stride as u32, blocks as u32, mode, 0, 0, 0]));
        self.pass(
            enc,
            Kernel::GroupProducts,
            &[t.weights.as_entire_binding(), values.binding(), partials.as_entire_binding(), shape.as_entire_binding(), means.unwrap_or(&self.dummy).as_entire_binding()],
            (blocks as u32, grouping.groups as u32, variants as u32),
        );
        Ok(self.reduce(enc, partials, rows, blocks))
    }

    /// Copies `bytes` bytes of `buffer` back to the host.
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, bytes: usize) -> Result<Vec<T>> {
        self.ctx.read(buffer, bytes)
    }

    /// Group statistics as computed on the device or given (for parity tests;
    /// of given ranges per method and bit width, the first row's).
    pub fn stats(&self, t: &GpuTensor) -> Result<Vec<GroupStats>> {
        self.read(&t.stats, t.grouping.groups * 16)
    }

    /// Level parameters as computed on the device, [method block][bits row][group]
    /// (one block unless uploaded with [`GivenRanges::PerMethod`]).
    pub fn params(&self, t: &GpuTensor) -> Result<Vec<LevelParams>> {
        self.read(&t.params, t.range_methods.len().max(1) * t.bits.len() * t.grouping.groups * std::mem::size_of::<LevelParams>())
    }

    /// The z table as computed on the device.
    pub fn z_table(&self) -> Result<Vec<f32>> {
        self.read(&self.z_table, Z_ENTRIES * 4)
    }

    /// Quantizes into our own buffers and reads codes and values back (tests, bench).
    pub fn quantize_to_host(&self, t: &GpuTensor, variants: &[GpuVariant]) -> Result<Vec<Quantized>> {
        self.quantize_to_host_with(t, variants, false)
    }

    /// As [`quantize_to_host`](Self::quantize_to_host); `one_dispatch` uses
    /// [`quantize_one_dispatch`](Self::quantize_one_dispatch).
    pub fn quantize_to_host_with(&self, t: &GpuTensor, variants: &[GpuVariant], one_dispatch: bool) -> Result<Vec<Quantized>> {
        self.to_host(t, variants, one_dispatch, Rescale::None)
    }

    /// As [`quantize_to_host`](Self::quantize_to_host), the values then
    /// rescaled by [`rescale`](Self::rescale) (the codes are the rounding's).
    pub fn quantize_to_host_rescaled(&self, t: &GpuTensor, variants: &[GpuVariant], mode: Rescale) -> Result<Vec<Quantized>> {
        self.to_host(t, variants, false, mode)
    }

    fn to_host(&self, t: &GpuTensor, variants: &[GpuVariant], one_dispatch: bool, mode: Rescale) -> Result<Vec<Quantized>> {
        let n = t.len();
        let values = self.ctx.empty("values", variants.len() * n * 4);
        let codes = self.ctx.empty("codes", variants.len() * n * 4);
        let region = Region { buffer: &values, offset: 0, size: (variants.len() * n * 4) as u64 };
        if one_dispatch {
            self.quantize_one_dispatch(t, variants, &region, Some(&codes))?;
        } else {
            self.quantize(t, variants, &region, Some(&codes))?;
        }
        self.rescale(t, &region, variants.len(), mode)?;
        let v: Vec<f32> = self.read(&values, variants.len() * n * 4)?;
        let c: Vec<u32> = self.read(&codes, variants.len() * n * 4)?;
        Ok((0..variants.len()).map(|i| Quantized { codes: c[i * n..(i + 1) * n].to_vec(), values: v[i * n..(i + 1) * n].to_vec() }).collect())
    }
}
