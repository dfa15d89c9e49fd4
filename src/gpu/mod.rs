//! Shared GPU plumbing: one wgpu device for our WGSL kernels and for burn.
//!
//! Input: the adapter choice (`--adapter`, `SWEEP_ADAPTER`, `--device`).
//! Output: a [`GpuContext`] holding the wgpu device and queue and the burn device
//! registered on them. No ML knowledge lives here.

pub mod bridge;
pub mod context;
pub mod kernels;

pub use context::{AdapterSummary, GpuContext, list_adapters};
