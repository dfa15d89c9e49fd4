//! The one place that reaches into burn for a tensor's wgpu buffer, so our WGSL
//! kernels can write quantized weights straight into burn tensors (no host round
//! trip). burn 0.22.1 path (see ../shared/BURN-WGPU-NOTES.md §4, Path B):
//! `Tensor::try_into_primitive::<Cube>()` gives the fusion tensor;
//! `resolve_tensor_float::<CubeBackend>` drains burn's pending work for it and
//! yields the `CubeTensor`; `client.flush()` submits that work to the shared
//! queue; `client.get_resource::<WgpuServer<AutoCompiler>>` pins the allocation
//! and exposes `WgpuResource { buffer, offset, size }`. Our later submissions
//! go to the same queue, which runs in order, so burn's later reads see our
//! writes without a host wait.

use burn::backend::Cube;
use burn::backend::wgpu::{AutoCompiler, CubeBackend, CubeTensor, WgpuResource};
use burn::cubecl::wgpu::WgpuServer;
use burn::tensor::Tensor;

use crate::error::{Error, Result};

/// A region of a wgpu buffer to bind.
pub struct Region<'a> {
    pub buffer: &'a burn::tensor::wgpu::wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

impl Region<'_> {
    pub fn binding(&self) -> burn::tensor::wgpu::wgpu::BindingResource<'_> {
        burn::tensor::wgpu::wgpu::BindingResource::Buffer(burn::tensor::wgpu::wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// Calls `f` with the wgpu buffer region behind `t`, a contiguous float tensor
/// on a burn wgpu device; the allocation stays pinned while `f` runs. Clones of
/// `t` share the buffer: writing through `f` changes every one of them.
pub fn with_region<const D: usize, R>(t: &Tensor<D>, f: impl FnOnce(Region<'_>) -> R) -> Result<R> {
    let fusion = t
        .clone()
        .try_into_primitive::<Cube>()
        .map_err(|e| Error::Gpu(format!("tensor is not on a burn wgpu device: {e:?}")))?;
    let cube: CubeTensor = fusion.client.clone().resolve_tensor_float::<CubeBackend>(fusion);
    cube.client.flush().map_err(|e| Error::Gpu(format!("flushing burn's queue: {e:?}")))?;
    let resource = cube
        .client
        .get_resource::<WgpuServer<AutoCompiler>>(cube.handle.clone())
        .map_err(|e| Error::Gpu(format!("reaching a burn tensor's buffer: {e:?}")))?;
    let r: &WgpuResource = resource.resource();
    let out = f(Region { buffer: &r.buffer, offset: r.offset, size: r.size });
    drop(resource);
    Ok(out)
}
