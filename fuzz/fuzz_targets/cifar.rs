#![no_main]
// Raw bytes through the Cifar path (gzip detection, UTF-8 check, parser): must never panic.
use libfuzzer_sys::fuzz_target;
use sweep_gpu::fuzz::{Format, parse};

fuzz_target!(|data: &[u8]| {
    let _ = parse(Format::Cifar, data);
});
