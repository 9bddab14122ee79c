#!/usr/bin/env bash
# GPU machine check for the Gaussian-splat reconstruction:
#   1. builds gsplat's CUDA extension (JIT, about a minute the first time) into the project
#      cache, ${SPLATSTAGE_CACHE:-.cache}/torch_extensions (or TORCH_EXTENSIONS_DIR), where the
#      backend looks for it too, so later runs reuse it;
#   2. checks it: a tiny rasterization on the GPU;
#   3. runs every GPU test of the suite (pytest -m gpu tests/; test modules that need
#      imageio-ffmpeg or pycolmap are skipped where those are not installed).
# Usage: scripts/gpu_check.sh [extra pytest args]   (run from anywhere; needs nvcc and a CUDA torch)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-${SPLATSTAGE_CACHE:-$REPO/.cache}/torch_extensions}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$TORCH_EXTENSIONS_DIR"

echo "== gsplat CUDA extension (cache: $TORCH_EXTENSIONS_DIR)"
"$PY" - <<'PY'
import time, torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0))
t = time.perf_counter()
from gsplat.cuda._backend import _C
assert _C is not None, "gsplat's CUDA extension did not build (is nvcc on PATH?)"
print(f"extension ready in {time.perf_counter() - t:.1f} s")
from gsplat import rasterization
means = torch.tensor([[0.0, 0.0, 4.0]], device="cuda")
img, alpha, _ = rasterization(means, torch.tensor([[1.0, 0, 0, 0]], device="cuda"),
                              torch.full((1, 3), 0.2, device="cuda"), torch.tensor([0.9], device="cuda"),
                              torch.ones(1, 3, device="cuda"), torch.eye(4, device="cuda")[None],
                              torch.tensor([[[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]], device="cuda"), 64, 48)
peak = float(alpha[0, 24, 32, 0])
print(f"check: centre alpha {peak:.4f} (expected 0.9 * exp(-0.25/(2.5^2+0.3)) = {0.9*2.718281828**(-0.25/6.55):.4f})")
assert abs(peak - 0.9 * 2.718281828 ** (-0.25 / 6.55)) < 1e-3
PY

echo "== GPU tests"
"$PY" -m pytest -m gpu -q -s -rs -p no:cacheprovider tests/ "$@"
