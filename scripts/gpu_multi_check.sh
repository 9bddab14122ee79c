#!/usr/bin/env bash
# Multi-GPU check for the Gaussian-splat reconstruction, on a machine with 2 (or more) GPUs:
#   1. builds gsplat's CUDA extension into the project cache (as scripts/gpu_check.sh does);
#   2. runs the multi-GPU tests (pytest -m gpu tests/test_reconstruct_distributed.py): gsplat's
#      distributed rasterization over NCCL renders and differentiates like one GPU, and a
#      2-GPU training run;
#   3. makes one synthetic scene (analytic Gaussians, known truth, no Blender needed) and trains
#      it through the CLI with --gpus 1 and --gpus 2, printing one JSON line per run:
#      {"gpus", "psnr_holdout", "psnr_init", "train_seconds", "wall_seconds", "num_gaussians",
#       "gaussians_per_rank", "peak_gpu_mem_gb", "steps", "steps_per_rank", "device"}.
#   The timing runs happen even if a test fails; the script then exits non-zero at the end.
# Usage: scripts/gpu_multi_check.sh [steps (default 6000)] [image width (default 640)]
#   PARTS="tests" or PARTS="bench" runs only steps 1-2 or 1 and 3 (default: all).
# Needs nvcc and a CUDA torch; run from anywhere. Typically 4-6 min; every step has a time limit
# (at most about 20 min in all: PARTS splits it into two shorter runs).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
STEPS="${1:-6000}"
WIDTH="${2:-640}"
PARTS="${PARTS:-tests bench}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-${SPLATSTAGE_CACHE:-$REPO/.cache}/torch_extensions}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$TORCH_EXTENSIONS_DIR"
WORK="$(mktemp -d -t splatstage-multigpu-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

echo "== GPUs and gsplat's CUDA extension (cache: $TORCH_EXTENSIONS_DIR)"
"$PY" - <<'PY'
import time, torch, torch.distributed
assert torch.cuda.is_available(), "no CUDA device visible to torch"
n = torch.cuda.device_count()
print("torch", torch.__version__, "cuda", torch.version.cuda, "GPUs", n,
      [torch.cuda.get_device_name(i) for i in range(n)], "NCCL", torch.distributed.is_nccl_available())
assert torch.distributed.is_nccl_available(), "this torch build has no NCCL"
assert n >= 2, f"this check needs 2 GPUs, torch sees {n}"
t = time.perf_counter()
from gsplat.cuda._backend import _C
assert _C is not None, "gsplat's CUDA extension did not build (is nvcc on PATH?)"
print(f"extension ready in {time.perf_counter() - t:.1f} s")
PY

TESTS=0
if [[ " $PARTS " == *" tests "* ]]; then
echo "== multi-GPU tests"
timeout 330 "$PY" -m pytest -m gpu -q -s -p no:cacheprovider tests/test_reconstruct_distributed.py || TESTS=$?
fi

if [[ " $PARTS " == *" bench "* ]]; then

echo "== synthetic scene: ${WIDTH} px wide, 64 frames, 6000 Gaussians"
timeout 240 "$PY" - "$WORK/solve" "$WIDTH" <<'PY'
import sys
from backend.pipelines.reconstruct.synthetic_solve import analytic_solve
w = int(sys.argv[2])
analytic_solve(sys.argv[1], n_gaussians=6000, n_frames=64, width=w, height=w * 3 // 4, seed=1, device="cuda")
PY

echo "== training with --gpus 1 and --gpus 2 ($STEPS steps = images seen)"
for G in 1 2; do
  T0=$(date +%s.%N)
  timeout 300 "$PY" -m backend.cli reconstruct "$WORK/solve" -o "$WORK/out$G" --device cuda --gpus "$G" \
      --steps "$STEPS" --sh-degree 1 --checkpoint-every 0 > "$WORK/log$G.txt" 2>&1 \
    || { tail -n 60 "$WORK/log$G.txt"; echo "--gpus $G failed" >&2; exit 1; }
  T1=$(date +%s.%N)
  "$PY" - "$WORK/out$G/metrics.json" "$G" "$T0" "$T1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(json.dumps({"gpus": int(sys.argv[2]), "psnr_holdout": round(m["psnr_holdout"], 3),
                  "psnr_init": round(m["psnr_init"], 3), "train_seconds": round(m["train_seconds"], 2),
                  "wall_seconds": round(float(sys.argv[4]) - float(sys.argv[3]), 2),
                  "num_gaussians": m["num_gaussians"], "gaussians_per_rank": m.get("gaussians_per_rank"),
                  "peak_gpu_mem_gb": m["peak_gpu_mem_gb"], "steps": m["steps"],
                  "steps_per_rank": m.get("steps_per_rank", m["steps"]), "device": m["device"]}))
PY
done
fi
if [ "$TESTS" -ne 0 ]; then echo "multi-GPU tests failed (pytest exit $TESTS)" >&2; exit "$TESTS"; fi
echo "== multi-GPU check passed"
