"""Job ``scene``: one photo (or 2-8 photos of one place) -> an explorable splat scene (thin
adapter over :func:`backend.pipelines.scene.make_scene`, docs/scene.md).

Outputs (into the output folder): ``splats.ply``, ``cameras.json`` (the trajectory's views,
Blender convention, ground z = 0, +Z up) with their images in ``frames/`` and ``points.ply``
(so the folder is also a camera solve and a reconstruction for ``composite``, ``stereo`` and
``render``), ``preview.mp4`` and ``preview_path.json``, ``coarse_strip.png``,
``refine_strip.png`` and ``scene.json``. The depth and inpainting models load from
``weights/`` (or ``--weights``); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from backend.jobs import JobResult
from backend.progress import JobError, Progress

STAGES = [("load", 1), ("outpaint", 3), ("lift", 2), ("warp_inpaint", 30), ("refine", 50), ("write", 14)]
DEVICES = ("auto", "cpu", "cuda")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", type=Path, nargs="+", help="one photo, or 2-8 photos of one place")
    p.add_argument("--prompt", default="", help="text prompt of the inpainting model (default: none)")
    p.add_argument("--weights", type=Path, help="weights folder with depth/ and inpaint/ (default: weights/)")
    p.add_argument("--fov", type=float, metavar="DEG",
                   help="horizontal field of view of the photo (default: its EXIF 35 mm focal, else 60)")
    p.add_argument("--max-size", type=int, default=1024, metavar="PX",
                   help="longest side the scene is built at (larger photos are downscaled; default 1024)")
    p.add_argument("--views", type=int, default=8, help="views generated along the trajectory (default 8)")
    p.add_argument("--steps", type=int, default=300, help="training steps of each refine round (default 300)")
    p.add_argument("--rounds", type=int, default=1, help="render -> denoise -> retrain rounds (default 1)")
    p.add_argument("--strength", type=float, default=0.3, help="denoise strength of a round, 0..1 (default 0.3)")
    p.add_argument("--inference-steps", type=int, default=20, help="diffusion steps per call (default 20)")
    p.add_argument("--preview-frames", type=int, default=48, help="frames of preview.mp4 (default 48)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="model and splat device (default auto)")


def params_from_args(args: argparse.Namespace) -> dict:
    return {"images": [str(Path(i).resolve()) for i in args.images], "prompt": args.prompt,
            "weights": str(Path(args.weights).resolve()) if args.weights else None, "fov": args.fov,
            "max_size": args.max_size, "views": args.views, "steps": args.steps, "rounds": args.rounds,
            "strength": args.strength, "inference_steps": args.inference_steps,
            "preview_frames": args.preview_frames, "device": args.device}


def _bad(msg: str) -> JobError:
    return JobError(f"scene: {msg}", "bad_params")


def _int(p: dict, key: str, lo: int, hi: int, default: int) -> int:
    v = p.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _float(p: dict, key: str, lo: float, hi: float, default):
    v = p.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise _bad(f"{key} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _device(name) -> str:
    import torch

    if name in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in DEVICES:
        raise _bad(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise _bad("--device cuda asked for, but no CUDA device is available")
    return name


def options_from_params(params: dict):
    """``(image paths, SceneOptions, prompt, weights, inference steps)``; raises JobError."""
    from backend.pipelines.scene import SceneOptions
    from backend.pipelines.scene.images import MAX_IMAGES
    from backend.pipelines.scene.refine import RefineOptions

    images = params.get("images")
    if isinstance(images, str):
        images = [images]
    if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
        raise _bad("images must be a list of 1 to 8 image paths")
    if len(images) > MAX_IMAGES:
        raise _bad(f"give 1 to {MAX_IMAGES} images, got {len(images)}")
    for i in images:
        if not Path(i).is_file():
            raise JobError(f"scene: image not found: {i}", "bad_input")
    prompt = params.get("prompt") or ""
    if not isinstance(prompt, str):
        raise _bad("prompt must be text")
    weights = params.get("weights")
    if weights is not None and (not isinstance(weights, str) or not Path(weights).is_dir()):
        raise JobError(f"scene: weights folder not found: {weights}", "bad_input")
    device = _device(params.get("device"))
    opts = SceneOptions(
        max_size=_int(params, "max_size", 32, 8192, 1024), fov_deg=_float(params, "fov", 1.0, 179.0, None),
        views=_int(params, "views", 1, 256, 8), preview_frames=_int(params, "preview_frames", 2, 10_000, 48),
        refine=RefineOptions(steps=_int(params, "steps", 0, 1_000_000, 300), rounds=_int(params, "rounds", 0, 16, 1),
                             strength=_float(params, "strength", 0.0, 1.0, 0.3)),
        device=device)
    return images, opts, prompt, weights, _int(params, "inference_steps", 1, 1000, 20)


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.scene import make_scene
    from backend.pipelines.scene.models import LearnedModels

    images, opts, prompt, weights, inference_steps = options_from_params(params)
    progress.stage("load", "loading the depth and inpainting models")
    models = LearnedModels(weights, prompt=prompt, device=opts.device, steps=inference_steps)
    summary = make_scene(images, out_dir, models, opts, progress)
    out = Path(out_dir)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
    flat["notes"] = "; ".join(summary["notes"]) or "none"
    flat["seconds_total"] = summary["seconds"]["total"]
    flat["seconds_models"] = summary["seconds"]["models"]
    return JobResult(files=files, summary=flat)
