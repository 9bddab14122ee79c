"""Job ``product``: one product photo -> object splats, a mesh and a turntable (thin adapter over
:func:`backend.pipelines.product.make_product`).

Outputs: ``product.ply`` (3DGS, upright, base at z = 0, ``height`` metres tall), ``product.glb``
(mesh with vertex colours), ``turntable.mp4``, ``turntable_strip.png``, ``views.png`` (the
generated views), ``product.json`` (the summary). The multi-view model comes from
``weights/multiview/`` (or ``weights`` given); the cut-out, depth and enhancement models are used
when their folders exist. A photo holds no scale: the product is scaled to ``height`` (default
0.3 m) and the summary says so.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.jobs import JobResult
from backend.progress import JobError, Progress

DEVICES = ("auto", "cpu", "cuda")
PREVIEW = {"train_size": 128, "steps": 150, "turntable_frames": 16, "turntable_size": 128, "mesh_res": 64,
           "max_points": 8000}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("photo", type=Path, help="the product photo (PNG with alpha, or any photo)")
    p.add_argument("--height", type=float, metavar="METRES",
                   help="the product's real height (default 0.3 m; one photo cannot tell its size)")
    p.add_argument("--elevation", type=float, default=0.0, metavar="DEG",
                   help="the photo's camera elevation above the horizon (for models with relative view poses)")
    p.add_argument("--box", metavar="X0,Y0,X1,Y1",
                   help="the product's box in the photo for GrabCut (default: the centre 80 %%)")
    p.add_argument("--steps", type=int, help="splat training steps (default 600; preview 150)")
    p.add_argument("--train-size", type=int, metavar="PX", help="view size for fitting (default 256; preview 128)")
    p.add_argument("--refine-rounds", type=int, default=2, help="back-projection refinement rounds (default 2)")
    p.add_argument("--preview", action="store_true",
                   help="reduced settings for CPU-only machines (views at 128 px, 150 steps, a 16-frame "
                        "128 px turntable, a 64-voxel mesh)")
    p.add_argument("--weights", type=Path, help="weights folder (default: the project's weights/)")
    p.add_argument("--device", choices=DEVICES, default="auto")


def params_from_args(args: argparse.Namespace) -> dict:
    p = {"photo": str(Path(args.photo).resolve()), "elevation": args.elevation,
         "refine_rounds": args.refine_rounds, "device": args.device}
    if args.preview:
        p.update(PREVIEW)
    for key in ("steps", "train_size"):
        if getattr(args, key) is not None:
            p[key] = getattr(args, key)
    if args.height is not None:
        p["height"] = args.height
    if args.box:
        p["box"] = args.box
    if args.weights:
        p["weights"] = str(Path(args.weights).resolve())
    return p


def _number(params, key, kind, default):
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
        raise JobError(f"product: {key} must be {'a number' if kind is float else 'an integer'}, got {v!r}",
                       "bad_params")
    return kind(v)


def options_from_params(params: dict):
    from backend.pipelines.product import ProductOptions
    from backend.pipelines.reconstruct import default_device

    if not isinstance(params.get("photo"), str):
        raise JobError("product: photo (an image file) is required", "bad_params")
    device = params.get("device", "auto")
    if device not in DEVICES:
        raise JobError(f"product: device must be one of {', '.join(DEVICES)}", "bad_params")
    size = _number(params, "train_size", int, 256)
    if not 32 <= size <= 2048:
        raise JobError(f"product: train_size must be in [32, 2048] px, got {size}", "bad_params")
    box = params.get("box")
    if box is not None and not isinstance(box, str):
        raise JobError("product: box must be the text x0,y0,x1,y1", "bad_params")
    opts = ProductOptions(height=_number(params, "height", float, 0.3),
                          elevation=_number(params, "elevation", float, 0.0), box=box,
                          train_size=size, steps=_number(params, "steps", int, 600),
                          refine_rounds=_number(params, "refine_rounds", int, 2),
                          device=default_device() if device == "auto" else device,
                          weights=params.get("weights"))
    for key in ("turntable_frames", "turntable_size", "mesh_res", "mesh_views", "max_points", "hull_res"):
        if key in params:  # smaller settings for quick runs (tests, previews)
            value = _number(params, key, int, 0)
            if not 1 <= value <= 1_000_000:
                raise JobError(f"product: {key} must be in [1, 1000000], got {value}", "bad_params")
            setattr(opts, key, value)
    opts.check()
    return opts


def run(params: dict, out_dir: Path, progress: Progress, models: dict | None = None) -> JobResult:
    from backend.pipelines.product import make_product

    opts = options_from_params(params)
    summary = make_product(params["photo"], out_dir, opts, models=models, progress=progress)
    if "height" not in params:
        progress.warn(summary["note"])
    return JobResult(files=list(summary["files"]), summary=summary)
