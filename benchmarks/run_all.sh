#!/usr/bin/env bash
# Every benchmark on one device, one after the other, in one go; JSON files to benchmarks/results/.
#
#   bash benchmarks/run_all.sh [cpu|cuda]
#
# Prints each benchmark's table (ratios measured in the same run; nothing is asserted) and writes
# benchmarks/results/<benchmark>-<device>.json with the device, torch version and date.
set -euo pipefail
device="${1:-cpu}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/results"
mkdir -p "$out"
cd "$here/.."
run() { echo; echo "== $*"; python "$@"; }

if [[ $device == cpu ]]; then
    run benchmarks/bench_updates.py --json "$out/updates-cpu.json"   # package vs reference-style baseline (CPU)
    run benchmarks/bench_denormals.py --json "$out/denormals-cpu.json"  # dense epochs, denormals kept vs flushed
fi
compile=off  # on CUDA also time the step as a CUDA graph (config key compile); on this CPU it did not pay
if [[ $device == cuda ]]; then compile=reduce-overhead; fi
run benchmarks/bench_training.py --device "$device" --readout dense --compile "$compile" \
    --json "$out/training-dense-$device.json"
run benchmarks/bench_training.py --device "$device" --readout particle --compile "$compile" \
    --json "$out/training-particle-$device.json"
run benchmarks/bench_replicas.py --device "$device" --readout particle --replicas 1 4 10 16 \
    --json "$out/replicas-particle-$device.json"
run benchmarks/bench_replicas.py --device "$device" --readout dense --methods drmmd --replicas 1 10 \
    --json "$out/replicas-dense-$device.json"
run benchmarks/bench_replicas.py --device "$device" --problem flow --replicas 1 4 10 16 \
    --json "$out/replicas-flow-$device.json"
run benchmarks/bench_flows.py --devices "$device" --output "$out/flows-$device.json"
run benchmarks/bench_scale.py --device "$device" --json "$out/scale-$device.json"
run benchmarks/bench_dmmd.py --devices "$device" --sizes 250 1000 4000 --json "$out/dmmd-$device.json"
run benchmarks/bench_srmmd.py --device "$device" --json "$out/srmmd-$device.json"
