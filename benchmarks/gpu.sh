#!/usr/bin/env bash
# The prepared GPU check (issue 15): CUDA correctness, unit timings of the 160m/410m/1.4b/2.8b
# Pythia shapes (bf16, fp32), peak GPU memory -> one JSON. Under 8 minutes on a lent device.
#
#   bash benchmarks/gpu.sh                         # on the device (default --device cuda)
#   bash benchmarks/gpu.sh --device cpu --quick    # CPU smoke run: every code path, ~1-2 min
#
# Every other argument goes to benchmarks/gpu_check.py (--budget-s, --shapes, --dtypes, ...).
# Environment: PYTHON (default: python, else python3), GPU_CHECK_OUT (output folder; default
# $OUT when set, as on the device machine, else benchmarks/results, which git ignores),
# GPU_CHECK_TIMEOUT (seconds; default 470, quick 400). Exit status: gpu_check.py's (0 ok,
# 1 a correctness check failed), 124 when the timeout stopped it (the JSON keeps what it got).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
py="${PYTHON:-$(command -v python || command -v python3)}"
out_dir="${GPU_CHECK_OUT:-${OUT:-$root/benchmarks/results}}"
mkdir -p "$out_dir"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
json="$out_dir/gpu_check-$stamp.json"
log="$out_dir/gpu_check-$stamp.log"
smi="$out_dir/gpu_check-$stamp.nvidia-smi.txt"

quick=0
for a in "$@"; do [ "$a" = "--quick" ] && quick=1; done
timeout_s="${GPU_CHECK_TIMEOUT:-$([ $quick = 1 ] && echo 400 || echo 470)}"

{
  echo "== gpu.sh $stamp on $(hostname)"
  echo "== python: $py ($("$py" --version 2>&1))"
  "$py" -c 'import torch; print("== torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available(), "devices", torch.cuda.device_count())' 2>&1
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi >"$smi" 2>&1
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,mig.mode.current \
      --format=csv >>"$smi" 2>&1
    echo "== nvidia-smi: $(sed -n '3p' "$smi")"
  else
    echo "== nvidia-smi: not found"
    smi=""
  fi
} 2>&1 | tee "$log"

cd "$root" || exit 2
export PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
timeout --kill-after=15 "$timeout_s" "$py" "$here/gpu_check.py" --out "$json" \
  ${smi:+--nvidia-smi "$smi"} "$@" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "== gpu.sh: stopped by the ${timeout_s} s timeout (rc $rc); the JSON has what was measured" \
    | tee -a "$log"
fi
echo "== gpu.sh: rc $rc; JSON: $json; log: $log" | tee -a "$log"
exit "$rc"
