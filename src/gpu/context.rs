//! Adapter discovery and the one wgpu device that serves both our kernels and
//! burn (registered through `WgpuSetup`, burn's `WgpuDevice::Existing`).

use std::sync::{Arc, OnceLock};

use burn::tensor::Device;
use burn::tensor::wgpu::{WgpuSetup, wgpu};
use serde::Serialize;
use wgpu::util::DeviceExt;

use crate::error::{Error, Result};

/// What `sweep-gpu devices` prints and every result row records.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// true for discrete, integrated and virtual GPUs; false for software
    /// rasterisers such as Mesa's llvmpipe (lavapipe)
    pub hardware: bool,
}

impl AdapterSummary {
    fn new(info: &wgpu::AdapterInfo) -> AdapterSummary {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            hardware: is_hardware(info.device_type),
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver_info.is_empty() {
            write!(f, ", {}", self.driver_info)?;
        }
        f.write_str(")")
    }
}

fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(t, wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::VirtualGpu)
}

/// High-performance first: discrete, integrated, virtual, then software.
fn preference(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Native compute backends only: wgpu's GL backend would list llvmpipe a second time.
fn backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor { backends: backends(), ..wgpu::InstanceDescriptor::new_without_display_handle() })
}

fn sorted_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends()));
    adapters.sort_by_key(|a| preference(a.get_info().device_type));
    adapters
}

/// Every adapter wgpu finds, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    sorted_adapters(&instance()).iter().map(|a| AdapterSummary::new(&a.get_info())).collect()
}

/// Whether a hardware GPU adapter exists (what `--device auto` asks).
pub fn hardware_adapter() -> Option<AdapterSummary> {
    list_adapters().into_iter().find(|a| a.hardware)
}

/// One wgpu device and queue, with burn registered on them.
#[derive(Clone)]
pub struct GpuContext {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    /// burn's device on the same wgpu device (`WgpuDevice::Existing`).
    pub burn: Device,
}

impl GpuContext {
    /// Opens the adapter whose name contains `selector` (case-insensitive), or the
    /// best one when `selector` is None.
    pub fn open(selector: Option<&str>) -> Result<GpuContext> {
        let instance = instance();
        let adapters = sorted_adapters(&instance);
        if adapters.is_empty() {
            return Err(Error::NoAdapter(
                "wgpu found no Vulkan, Metal or DX12 adapter. On Linux without a GPU install Mesa's \
                 software Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers), or run \
                 with --device cpu"
                    .into(),
            ));
        }
        let adapter = match selector {
            None => adapters[0].clone(),
            Some(text) => {
                let needle = text.to_lowercase();
                adapters.iter().find(|a| a.get_info().name.to_lowercase().contains(&needle)).cloned().ok_or_else(|| {
                    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                    Error::NoAdapter(format!(
                        "no adapter name contains {text:?} (from --adapter or SWEEP_ADAPTER); found: {}",
                        names.join(", ")
                    ))
                })?
            }
        };
        let info = adapter.get_info();
        // Request what cubecl itself requests: cubecl derives its capabilities
        // from the adapter, so a device with fewer features could be handed
        // shaders it rejects (../shared/BURN-WGPU-NOTES.md, pitfall 6).
        let features = adapter
            .features()
            .difference(wgpu::Features::MAPPABLE_PRIMARY_BUFFERS)
            .difference(wgpu::Features::all_experimental_mask());
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sweep-gpu"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", info.name)))?;
        let burn = Device::wgpu_options()
            .setup(WgpuSetup {
                instance,
                adapter: adapter.clone(),
                device: device.clone(),
                queue: queue.clone(),
                backend: info.backend,
            })
            .init()
            .map_err(|e| Error::Gpu(format!("cannot register burn on {}: {e:?}", info.name)))?;
        Ok(GpuContext { adapter, device, queue, summary: AdapterSummary::new(&info), burn })
    }

    /// The process's one context: burn registers a new runtime per device, so
    /// every user in a process (the CLI, the tests) shares the first one opened.
    pub fn shared(selector: Option<&str>) -> Result<Arc<GpuContext>> {
        static SHARED: OnceLock<std::result::Result<Arc<GpuContext>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| GpuContext::open(selector).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(Error::Gpu)
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// A storage buffer holding `bytes` (copyable both ways).
    pub fn storage(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A zeroed storage buffer of `size` bytes (at least 16).
    pub fn empty(&self, label: &str, size: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copies `bytes` bytes of `buffer` back to the host.
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, bytes: usize) -> Result<Vec<T>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("sweep-gpu readback") });
        enc.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes as u64);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        rx.recv()
            .map_err(|_| Error::Gpu("the readback never completed".into()))?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let view = staging.slice(..).get_mapped_range().map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e:?}")))?;
        let out = bytemuck::cast_slice::<u8, T>(&view).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
