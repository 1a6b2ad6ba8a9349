#!/usr/bin/env bash
# Times `zoo convert` on VGG16 (random weights, 553 MB) between every pair of formats:
# wall time and peak resident memory (/usr/bin/time -v), warm (each input read once
# before it is timed, so the page cache holds it), beside `cp` of the same input file
# timed just before it (the disk-speed floor; safetensors <-> ONNX copy their tensors
# file to file with copy_file_range, as cp does; Keras HDF5 kernels are transposed in
# bands from the input's pages into the output). The last column is the page cache's
# dirty and writeback MB just before the conversion: earlier outputs still on their way to
# the disk. Each output is new (removed after each run): replacing an existing file on
# ext4 flushes it at the rename and waits for the old one's writeback (about 0.4 s more for
# 553 MB, for cp onto an existing file too). Needs a release build:
#   swift build -c release && Tools/bench_convert.sh
# ZOO=path/to/zoo overrides the binary; ARCH=resnet50-keras picks another network.
set -euo pipefail
cd "$(dirname "$0")/.."
ZOO=${ZOO:-.build/release/zoo}
ARCH=${ARCH:-vgg16}
work=$(mktemp -d "${TMPDIR:-/tmp}/zoo-bench-convert-XXXXXX")
trap 'rm -rf "$work"' EXIT

"$ZOO" init "$ARCH" "$work/model.safetensors" > /dev/null
for ext in onnx h5 weights.h5; do
  "$ZOO" convert "$work/model.safetensors" "$work/model.$ext" > /dev/null
done
size=$(stat -c %s "$work/model.safetensors")
printf '%s: %s bytes of weights (safetensors)\n' "$ARCH" "$size"
printf 'load %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-12s -> %-12s %8s %10s %8s %8s %8s %9s\n' from to seconds "peak MB" "x size" "cp s" "x cp" "dirty MB"
for from in safetensors onnx h5 weights.h5; do
  for to in safetensors onnx h5 weights.h5; do
    [ "$from" = "$to" ] && continue
    cat "$work/model.$from" > /dev/null
    /usr/bin/time -f '%e' -o "$work/cp.txt" cp "$work/model.$from" "$work/copy.$from"
    cp_seconds=$(cat "$work/cp.txt")
    rm -f "$work/copy.$from"
    out="$work/out.$to"
    dirty=$(awk '/^(Dirty|Writeback):/ {s += $2} END {printf "%d", s / 1024}' /proc/meminfo)
    /usr/bin/time -v "$ZOO" convert "$work/model.$from" "$out" --arch "$ARCH" --force > /dev/null 2> "$work/time.txt"
    seconds=$(awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); print t[1] * 60 + t[2]}' "$work/time.txt")
    kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    awk -v f="$from" -v t="$to" -v s="$seconds" -v kb="$kb" -v size="$size" -v cp="$cp_seconds" -v dirty="$dirty" \
      'BEGIN { printf "%-12s -> %-12s %8.2f %10.0f %8.2f %8.2f %8.2f %9d\n", f, t, s, kb / 1024, kb * 1024 / size, cp, s / (cp > 0 ? cp : 0.01), dirty }'
    rm -f "$out"
  done
done
