//! The machine a run is made on, as config.json and each checkpoint record it.
//!
//! Two properties of the CPU change float results in code that runs here but
//! is not this crate's:
//! - the widest SIMD it has: burn's CPU kernels pick their instructions at run
//!   time;
//! - its L1 data cache: burn's CPU backend multiplies matrices (and convolves,
//!   as matrix products) with the `gemm` crate's AVX2/FMA kernels, which cut
//!   the summed dimension into blocks sized from the L1d that Linux reports
//!   (at most 512 terms on a 32 KiB 8-way L1d, 1024 on a 48 KiB 12-way one)
//!   and add the blocks' partial sums. A 3x3 convolution over 64 channels
//!   sums 576 terms: two blocks of 288 on the first CPU, one on the second.
//!   So conv nets train to other float roundings, and so to other weights,
//!   from the same seed on CPUs with other caches (results/README.md,
//!   "Reproducibility across CPUs"). Dense nets sum at most a few hundred
//!   terms, one block on every CPU, and train to the same bits.
//!
//! This crate's own CPU kernels give the same bits on every CPU.

use std::path::Path;

/// CPU model, widest SIMD, logical CPUs, data caches, OS and architecture,
/// e.g. `AMD EPYC, AVX-512, 2 logical CPUs, L1d 32 KiB 8-way, L2 1 MiB
/// 8-way, L3 32 MiB 16-way shared by 2, linux x86_64`.
/// Read once, on first use: the same text all process long.
pub fn describe() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(read_host)
}

/// The machine a checkpoint was trained on (`trained_on`, as [`describe`] gave
/// it there), when that is not `here`: None for one trained here, or made
/// before the host was recorded.
pub fn elsewhere<'a>(trained_on: &'a str, here: &str) -> Option<&'a str> {
    (!trained_on.is_empty() && trained_on != here).then_some(trained_on)
}

fn read_host() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "CPU model unknown".into());
    #[cfg(target_arch = "x86_64")]
    let simd = if std::arch::is_x86_feature_detected!("avx512f") {
        ", AVX-512"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        ", AVX2"
    } else {
        ""
    };
    #[cfg(not(target_arch = "x86_64"))]
    let simd = "";
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    let caches = data_caches(Path::new("/sys/devices/system/cpu/cpu0/cache")).map(|c| format!(", {c}")).unwrap_or_default();
    format!("{cpu}{simd}, {threads} logical CPUs{caches}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The data and unified caches that Linux lists under `dir` (a CPU's
/// `cache` folder in sysfs), by level: `L1d 32 KiB 8-way, L2 1 MiB 8-way,
/// L3 32 MiB 16-way shared by 2`. None where the folder is missing or lists
/// no cache with a level and a size (not Linux, some containers).
pub fn data_caches(dir: &Path) -> Option<String> {
    let mut caches: Vec<(u32, String)> = Vec::new();
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let index = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("index") {
            continue;
        }
        let read = |name: &str| std::fs::read_to_string(index.join(name)).ok().map(|s| s.trim().to_string());
        let kind = read("type").unwrap_or_default();
        if kind == "Instruction" {
            continue;
        }
        let (Some(level), Some(bytes)) = (read("level").and_then(|l| l.parse::<u32>().ok()), read("size").and_then(|s| parse_size(&s))) else {
            continue;
        };
        let name = if level == 1 && kind == "Data" { "L1d".to_string() } else { format!("L{level}") };
        let mut text = format!("{name} {}", human_bytes(bytes));
        if let Some(ways) = read("ways_of_associativity").filter(|w| w.parse::<u32>().is_ok_and(|w| w > 0)) {
            text.push_str(&format!(" {ways}-way"));
        }
        if let Some(shared) = read("shared_cpu_list").map(|l| cpu_count(&l)).filter(|&n| n > 1) {
            text.push_str(&format!(" shared by {shared}"));
        }
        caches.push((level, text));
    }
    caches.sort();
    caches.dedup();
    (!caches.is_empty()).then(|| caches.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(", "))
}

/// sysfs cache sizes: `32K`, `1024K`, `32M`, or plain bytes.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    (n > 0).then_some(n * scale)
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// CPUs in a sysfs list such as `0-1`, `0,2-3` or `5`.
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .filter_map(|part| match part.trim().split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1),
            None => part.trim().parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cache(dir: &Path, index: u32, files: &[(&str, &str)]) {
        let d = dir.join(format!("index{index}"));
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), format!("{text}\n")).unwrap();
        }
    }

    #[test]
    fn data_caches_lists_data_and_unified_caches_by_level() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        // sysfs order is not level order: index3 first here
        write_cache(p, 3, &[("level", "3"), ("type", "Unified"), ("size", "32768K"), ("ways_of_associativity", "16"), ("shared_cpu_list", "0-1")]);
        write_cache(p, 0, &[("level", "1"), ("type", "Data"), ("size", "48K"), ("ways_of_associativity", "12"), ("shared_cpu_list", "0")]);
        write_cache(p, 1, &[("level", "1"), ("type", "Instruction"), ("size", "32K"), ("ways_of_associativity", "8")]);
        write_cache(p, 2, &[("level", "2"), ("type", "Unified"), ("size", "1024K"), ("ways_of_associativity", "16"), ("shared_cpu_list", "0,4")]);
        std::fs::write(p.join("uevent"), "").unwrap();
        assert_eq!(data_caches(p).unwrap(), "L1d 48 KiB 12-way, L2 1 MiB 16-way shared by 2, L3 32 MiB 16-way shared by 2");
    }

    #[test]
    fn data_caches_is_none_without_a_readable_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(data_caches(&dir.path().join("missing")), None);
        assert_eq!(data_caches(dir.path()), None);
        // a cache without a size says nothing
        write_cache(dir.path(), 0, &[("level", "1"), ("type", "Data")]);
        assert_eq!(data_caches(dir.path()), None);
    }

    #[test]
    fn sizes_and_cpu_lists_parse_as_sysfs_writes_them() {
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("0K"), None);
        assert_eq!(human_bytes(1536 << 10), "1536 KiB");
        assert_eq!(cpu_count("0-3,8,10-11"), 7);
        assert_eq!(cpu_count("5"), 1);
    }
}
