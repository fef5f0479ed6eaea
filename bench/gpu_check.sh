#!/usr/bin/env bash
# The GPU check: bench/gpu_udfs.py on a machine with an NVIDIA GPU, one prepared command under its
# own time limit. Run bench/gpu_prepare.sh here first; then, on the GPU machine, from a copy of the
# repository that carries .gpu/:
#
#     bash bench/gpu_check.sh [SECONDS] [GPU_UDFS ARGS...]     (default 420 s)
#
# The bench stops starting cells 60 s before SECONDS (--budget-s: what it measured is still
# printed, the skipped cells are listed); `timeout` kills it at SECONDS only if it hangs. Writes
# gpu_udfs.txt (the table, with nvidia-smi's line) and gpu_udfs.json (the rows) to $OUT (default
# bench/results). Uses python3 (PYTHON overrides), the image's PyTorch and transformers, pricewave
# from this checkout, and the wheels in .gpu/wheels when pydantic is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
limit=${1:-420}
shift || true
out=${OUT:-bench/results}
python=${PYTHON:-python3}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
if ! "$python" -c "import pydantic" 2>/dev/null && [ -d .gpu/wheels ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/pricewave-site \
    .gpu/wheels/*.whl || exit 1
  export PYTHONPATH=/tmp/pricewave-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } |
  sed 's/^/nvidia-smi: /' | tee "$out/gpu_udfs.txt"
extra=()
[ -f .gpu/minilm/config.json ] && extra+=(--model-path .gpu/minilm)
[ -f .gpu/reviews.txt ] && extra+=(--texts .gpu/reviews.txt)
timeout --kill-after=10 "$limit" "$python" bench/gpu_udfs.py --budget-s $((limit > 120 ? limit - 60 : limit / 2)) \
  "${extra[@]}" --json "$out/gpu_udfs.json" "$@" 2>&1 | tee -a "$out/gpu_udfs.txt"
exit "${PIPESTATUS[0]}"
