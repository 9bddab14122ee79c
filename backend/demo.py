"""``splatstage demo`` / ``make demo``: the main job on the embedded sample.

The sample (``backend/samples/``) is a short clip and a product model that the project
generates itself. The demo runs the main job, the product composite (camera solve, reconstruction, product
placement, lighting, render, H.264), keeping its intermediate results under ``work/``.
Without a GPU it uses the reduced ``--preview`` settings and says so.
"""
from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from backend.progress import JobError

SAMPLES = Path(__file__).resolve().parent / "samples"
SAMPLE_CLIP = SAMPLES / "sample_clip.mp4"
SAMPLE_PRODUCT = SAMPLES / "product.glb"


def _has(kind: str) -> bool:
    return importlib.util.find_spec(f"backend.jobs.{kind}") is not None


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def run_demo(output: Path, backend: str | None = None) -> int:
    """Run the demo; errors (JobError, BackendError, OSError) are raised for the caller to report."""
    from backend.pipeline_cli import run_argv

    if not SAMPLE_CLIP.is_file():
        raise JobError(f"the embedded sample clip {SAMPLE_CLIP} is missing", "not_found",
                       "regenerate it with: python -m backend.samples.make_sample")
    output = Path(output).resolve()
    gpu = _cuda()
    print(f"splatstage demo: sample {SAMPLE_CLIP.name}; output in {output}")
    if not gpu:
        print("splatstage demo: no CUDA GPU found: running on the CPU with reduced settings "
              "(fewer training steps, lower resolution)")
    extra = ["--backend", backend] if backend else []
    t0 = time.monotonic()
    if _has("composite") and SAMPLE_PRODUCT.is_file():
        # the main job: solve -> reconstruct -> place the product -> light -> render -> H.264
        argv = ["composite", str(SAMPLE_CLIP), str(SAMPLE_PRODUCT), "-o", str(output / "composite.mp4"),
                "--work-dir", str(output / "work")] + ([] if gpu else ["--preview"])
    else:
        argv = ["poses", str(SAMPLE_CLIP), "-o", str(output / "solve")]
    steps = [(argv[0], argv)]
    for name, argv in steps:
        code = run_argv(argv + extra)
        if code != 0:
            return code
    print(f"splatstage demo: finished in {time.monotonic() - t0:.0f} s; results in {output}")
    return 0


if __name__ == "__main__":
    import sys

    from shared_protocol.client import BackendError

    ap = argparse.ArgumentParser()
    ap.add_argument("-o", "--output", type=Path, default=Path("out/demo"))
    try:
        raise SystemExit(run_demo(ap.parse_args().output))
    except (JobError, BackendError, OSError, ValueError) as exc:
        print(f"splatstage demo: error: {' '.join(str(getattr(exc, 'message', exc)).split())}", file=sys.stderr)
        raise SystemExit(1) from None
