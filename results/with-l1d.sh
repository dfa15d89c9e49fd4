#!/usr/bin/env bash
# Runs a command while Linux reports another L1 data cache, so that burn's CPU
# matmuls (the gemm crate sizes its blocks from the L1d in sysfs) add their
# partial sums as they do on a CPU with that cache: results/README.md,
# "Reproducibility across CPUs". The conv-net checkpoints behind results/ were
# trained where the blocking is that of a 48 KiB 12-way L1d.
#
# Usage (Linux, as root: it bind-mounts over sysfs in a private mount
# namespace; nothing outside the command sees the change):
#   results/with-l1d.sh SIZE WAYS COMMAND...
#   results/with-l1d.sh 48K 12 cargo run -- --model cnn --dataset fashion-mnist ...
# config.json's host then names the emulated L1d.
set -euo pipefail
if [[ $# -lt 3 ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
size=$1 ways=$2
shift 2
[[ $size =~ ^[0-9]+[KM]$ ]] || { echo "with-l1d.sh: SIZE is like 48K, not '$size'" >&2; exit 2; }
[[ $ways =~ ^[0-9]+$ ]] || { echo "with-l1d.sh: WAYS is a number, not '$ways'" >&2; exit 2; }

fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
found=0
for cache in /sys/devices/system/cpu/cpu[0-9]*/cache; do
  cpu=$(basename "$(dirname "$cache")")
  for index in "$cache"/index*; do
    copy=$fake/$cpu/$(basename "$index")
    mkdir -p "$copy"
    for f in "$index"/*; do
      [[ -f $f && -r $f ]] && cat "$f" > "$copy/$(basename "$f")" 2>/dev/null || true
    done
    if [[ $(cat "$copy/level" 2>/dev/null) == 1 && $(cat "$copy/type" 2>/dev/null) == Data ]]; then
      echo "$size" > "$copy/size"
      echo "$ways" > "$copy/ways_of_associativity"
      found=1
    fi
  done
done
[[ $found == 1 ]] || { echo "with-l1d.sh: no L1 data cache under /sys/devices/system/cpu/cpu*/cache" >&2; exit 1; }

export FAKE_CACHES=$fake
unshare --mount --propagation private bash -c '
  for cache in /sys/devices/system/cpu/cpu[0-9]*/cache; do
    cpu=$(basename "$(dirname "$cache")")
    mount --bind "$FAKE_CACHES/$cpu" "$cache"
  done
  unset FAKE_CACHES
  exec "$@"' with-l1d "$@"
