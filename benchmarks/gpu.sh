#!/usr/bin/env bash
# SEGA's cost on a GPU against diffusers (issue 19): SD-1.5- and SDXL-sized U-Nets with random weights, float16,
# SDPA attention; parity with diffusers' semantic pipeline and the timings, written into the folder given.
#
#   bash benchmarks/gpu.sh out/gpu              # on a GPU machine, from the repository root (under 8 minutes)
#   bash benchmarks/gpu.sh /tmp/gpu --dry-run   # anywhere: CPU, tiny components, proves the script runs
#
# Then copy the numbers from OUT/results.json into docs/benchmarks.md with the date and device.
set -euo pipefail
out="${1:?usage: bash benchmarks/gpu.sh OUT_DIR [--dry-run] [gpu_bench.py options]}"
shift
here="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
{ date -u; (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"); } > "$out/machine.txt"
timeout 480 "$python" "$here/benchmarks/gpu_bench.py" --out "$out" "$@" 2>&1 | tee "$out/log.txt"
