"""Job ``composite``: footage + product GLB -> composited H.264 video (thin adapter over
:func:`backend.pipelines.composite.composite`).

Output: ``composite.mp4`` (the CLI moves it to ``-o``) at the footage's fps with its audio.
Arrays: ``anchor_frames`` [N] and ``anchor_px`` [N,2] (the anchor's projection per solved frame).
``--preview`` runs with reduced settings (small render size, few samples and training steps)
so the job fits a CPU-only machine; the summary says so. ``--stereo LAYOUT`` makes it a
stereo video: the mono composite is the left eye, the right eye is rendered from the splats
and by Blender's stereo camera rig ``--interaxial`` to the right, converged at ``--convergence``
(default: the product's distance) by sensor shift (docs/compositing.md, "Stereo").
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from backend.jobs import JobResult
from backend.jobs.scale import add_scale_arguments, scale_params_from_args
from backend.pipelines.composite.stereo import DEFAULT_INTERAXIAL
from backend.pipelines.stereo.layouts import LAYOUTS
from backend.progress import JobError, Progress

MAIN_OUTPUT = "composite.mp4"

#: Every stage the main job passes through (its own, the camera solve's and the
#: reconstruction's), weighted by its rough share of the run, so progress is one overall bar.
STAGES = [("check", 1), ("decode", 1), ("track", 4), ("keyframes", 1), ("sfm", 3), ("register", 1),
          ("bundle_adjust", 3), ("ground_plane", 1), ("place", 1), ("load", 2), ("train", 35),
          ("evaluate", 1), ("write", 1), ("layers", 5), ("environment", 4), ("render", 34), ("right_layers", 3),
          ("right_render", 34), ("encode", 2)]
DEVICES = ("auto", "cpu", "cuda")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", type=Path,
                   help="the footage (video file or image folder), or a scene folder made by `splatstage scene` "
                        "(its views are the footage, its cameras the solve, its splats the reconstruction)")
    p.add_argument("product", type=Path, help="the product model (.glb)")
    p.add_argument("--at-pixel", metavar="U,V",
                   help="place the product where the ground meets this pixel (default: centre of the lower third)")
    p.add_argument("--at-frame", type=int, default=0, metavar="N", help="the frame --at-pixel refers to (default 0)")
    p.add_argument("--product-height", type=float, metavar="METRES",
                   help="scale the product to this height (default: the model's own size)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG", help="turn the product about the ground normal")
    p.add_argument("--preview", action="store_true",
                   help="reduced settings for CPU-only machines (render long side 240 px, 8 samples, "
                        "60 training steps at 240 px)")
    p.add_argument("--steps", type=int, help="reconstruction training steps (default 7000; preview 60)")
    p.add_argument("--samples", type=int, help="Cycles samples per pixel (default 64; preview 8)")
    p.add_argument("--render-size", type=int, metavar="PX", help="long side of the render (default: the footage's)")
    p.add_argument("--train-size", type=int, metavar="PX",
                   help="long side the reconstruction trains frames at (default 1600; preview 240); "
                        "smaller trains faster on a CPU")
    p.add_argument("--device", choices=DEVICES, default="auto", help="reconstruction/render device (default auto)")
    p.add_argument("--exposure", type=float, default=0.0, help="environment light exposure in EV (default 0)")
    p.add_argument("--env-rotation", type=float, default=0.0, metavar="DEG",
                   help="turn the environment map about +Z (default 0)")
    p.add_argument("--no-key-light", action="store_true",
                   help="light the product by the environment map alone (no sun found from the footage's shadows)")
    p.add_argument("--solve", type=Path, help="reuse this camera-solve folder (cameras.json) instead of solving")
    add_scale_arguments(p, solving=False)
    p.add_argument("--reconstruction", type=Path, help="reuse this reconstruction folder (splats.ply)")
    p.add_argument("--camera-path", type=Path, metavar="JSON",
                   help="render along this novel camera path (cameras.json or nerfstudio camera_path.json, in the "
                        "solve's world) with the splat render as the background, instead of the footage's cameras")
    p.add_argument("--work-dir", type=Path, help="where intermediate results and frames are kept (default: cache)")
    p.add_argument("--max-frames", type=int, help="composite only the first N frames")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality (default 18)")
    g = p.add_argument_group("stereo")
    g.add_argument("--stereo", choices=LAYOUTS, metavar="LAYOUT",
                   help=f"stereo output in this layout ({', '.join(LAYOUTS)}); the mono composite is the left eye")
    g.add_argument("--interaxial", type=float, metavar="M",
                   help=f"camera separation of the stereo eyes in metres (default {DEFAULT_INTERAXIAL})")
    g.add_argument("--convergence", type=float, metavar="M",
                   help="distance put on the screen plane, in metres (default: the product's distance in --at-frame)")
    g.add_argument("--anaglyph", choices=("dubois", "simple"), default="dubois",
                   help="anaglyph colour method for --stereo anaglyph (default dubois)")


def _pixel(text: str | None):
    if text is None:
        return None
    try:
        u, v = (float(x) for x in str(text).split(","))
    except ValueError:
        raise JobError(f"composite: --at-pixel must be U,V (two numbers), got {text!r}", "bad_params") from None
    return [u, v]


def params_from_args(args: argparse.Namespace) -> dict:
    def path(p):
        return str(Path(p).resolve()) if p is not None else None

    return {"video": path(args.video), "product": path(args.product), "at_pixel": _pixel(args.at_pixel),
            "at_frame": args.at_frame, "product_height": args.product_height, "rotate": args.rotate,
            "preview": bool(args.preview), "steps": args.steps, "samples": args.samples,
            "render_size": args.render_size, "train_size": args.train_size, "device": args.device, "exposure": args.exposure,
            "env_rotation": args.env_rotation, "key_light": not args.no_key_light, "solve": path(args.solve), "reconstruction": path(args.reconstruction),
            "work_dir": path(args.work_dir), "max_frames": args.max_frames, "crf": args.crf,
            "stereo": args.stereo, "interaxial": args.interaxial, "convergence": args.convergence,
            "anaglyph": args.anaglyph, "camera_path": path(args.camera_path), **scale_params_from_args(args)}


def _bad(msg: str) -> JobError:
    return JobError(f"composite: {msg}", "bad_params")


def _number(p: dict, key: str, lo=None, positive=False, default=None):
    v = p.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _bad(f"{key} must be a number, got {v!r}")
    if positive and v <= 0:
        raise _bad(f"{key} must be positive, got {v}")
    if lo is not None and v < lo:
        raise _bad(f"{key} must be >= {lo}, got {v}")
    return v


def _int(p: dict, key: str, lo: int, hi: int, default=None):
    v = p.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _bad(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _key_light(p: dict) -> bool:
    v = p.get("key_light", True)
    if not isinstance(v, bool):
        raise _bad(f"key_light must be true or false, got {v!r}")
    return v


def _device(name: str | None) -> str:
    if name in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in DEVICES:
        raise _bad(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise _bad("--device cuda asked for, but no CUDA device is available")
    return name


def request_from_params(params: dict):
    """Validated :class:`CompositeRequest` (raises JobError code bad_params / bad_input)."""
    from backend.pipelines.composite import CompositeRequest, CompositeSettings

    for key in ("video", "product"):
        if not isinstance(params.get(key), str) or not params[key]:
            raise _bad(f"{key} is required")
        if not Path(params[key]).exists():
            raise JobError(f"composite: {key} not found: {params[key]}", "bad_input")
    params = _scene_folder(params)
    for key in ("solve", "reconstruction", "work_dir"):
        if params.get(key) is not None and not isinstance(params[key], str):
            raise _bad(f"{key} must be a folder path")
    cam_path = params.get("camera_path")
    if cam_path is not None and (not isinstance(cam_path, str) or not Path(cam_path).is_file()):
        raise JobError(f"composite: camera_path file not found: {cam_path}", "bad_input")
    for key in ("solve", "reconstruction"):
        if params.get(key) and not Path(params[key]).is_dir():
            raise JobError(f"composite: {key} folder not found: {params[key]}", "bad_input")
    pixel = params.get("at_pixel")
    if pixel is not None:
        if not isinstance(pixel, (list, tuple)) or len(pixel) != 2:
            raise _bad("at_pixel must be [U, V]")
        pixel = tuple(_number({"v": x}, "v") for x in pixel)
    settings = CompositeSettings.for_mode(
        bool(params.get("preview", False)), _device(params.get("device")),
        steps=_int(params, "steps", 1, 1_000_000), samples=_int(params, "samples", 1, 1_000_000),
        render_long_side=_int(params, "render_size", 16, 16384),
        train_max_size=_int(params, "train_size", 16, 16384),
        env_exposure=_number(params, "exposure", default=0.0),
        env_rotation_deg=_number(params, "env_rotation", default=0.0),
        key_light=_key_light(params),
        crf=_int(params, "crf", 0, 51, 18))
    return CompositeRequest(
        video=Path(params["video"]), product=Path(params["product"]), settings=settings, at_pixel=pixel,
        at_frame=_int(params, "at_frame", 0, 10_000_000, 0),
        product_height=_number(params, "product_height", positive=True),
        rotate_deg=_number(params, "rotate", default=0.0),
        solve_dir=Path(params["solve"]) if params.get("solve") else None,
        reconstruction=Path(params["reconstruction"]) if params.get("reconstruction") else None,
        work_dir=Path(params["work_dir"]) if params.get("work_dir") else None,
        max_frames=_int(params, "max_frames", 1, 10_000_000), stereo=_stereo(params),
        camera_path=Path(cam_path) if cam_path else None, scale=_scale(params))


def _scene_folder(params: dict) -> dict:
    """A scene folder (``splatstage scene``: scene.json, cameras.json, splats.ply, frames/) given
    as the footage: its views are the footage, its folder the solve and the reconstruction
    unless they are given."""
    from backend.pipelines.scene.outputs import FRAMES_DIR, SCENE_FILE

    folder = Path(params["video"])
    if not (folder.is_dir() and (folder / SCENE_FILE).is_file()):
        return params
    for name in ("cameras.json", "splats.ply", FRAMES_DIR):
        if not (folder / name).exists():
            raise JobError(f"composite: scene folder {folder} lacks {name}", "bad_input")
    return {**params, "video": str(folder / FRAMES_DIR), "solve": params.get("solve") or str(folder),
            "reconstruction": params.get("reconstruction") or str(folder)}


def _scale(params: dict):
    from backend.pipelines.poses.scale import request_from_params

    req = request_from_params(params, "composite")
    if req is not None and req.method == "cameras":
        raise _bad("scale_cameras is for a new solve; use scale_xyz with the two cameras' positions")
    return req


def _stereo(params: dict):
    """:class:`StereoOptions` from the params (None without ``stereo``); raises bad_params."""
    from backend.pipelines.composite.stereo import StereoOptions

    layout = params.get("stereo")
    if layout in (None, "", False):
        for key in ("interaxial", "convergence"):
            if params.get(key) is not None:
                raise _bad(f"{key} needs stereo (a layout: {', '.join(LAYOUTS)})")
        return None
    if not isinstance(layout, str):
        raise _bad(f"stereo must be a layout name ({', '.join(LAYOUTS)}), got {layout!r}")
    opts = StereoOptions(layout=layout,
                         interaxial=_number(params, "interaxial", positive=True, default=DEFAULT_INTERAXIAL),
                         convergence=_number(params, "convergence", positive=True),
                         anaglyph=params.get("anaglyph") or "dubois")
    opts.check()
    return opts


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.composite import composite

    req = request_from_params(params)
    estimate = None
    if req.settings.preview:
        progress.stage("check", "preview mode: reduced render size, samples and training steps")
    elif req.settings.device == "cpu" and req.reconstruction is None:
        estimate = _cpu_training_check(req, progress)
    summary = composite(req, Path(out_dir) / MAIN_OUTPUT, progress)
    if estimate is not None:
        summary["train_estimate_s"] = round(estimate, 1)
    track = summary.pop("anchor_track")
    arrays = {"anchor_frames": np.asarray(track["frames"], np.int64),
              "anchor_px": np.asarray(track["pixels"], np.float64).reshape(-1, 2)}
    return JobResult(files=[MAIN_OUTPUT], arrays=arrays, summary=summary)


def _cpu_training_check(req, progress: Progress) -> float | None:
    """Full-quality training on the CPU: estimate its time before anything starts and warn,
    proposing --preview or a smaller --train-size, when it is long
    (:mod:`backend.pipelines.reconstruct.estimate`)."""
    from backend.media.video import probe, scaled_size
    from backend.pipelines.composite.pipeline import train_config
    from backend.pipelines.reconstruct.estimate import warn_if_slow

    info = probe(req.video, count=False)
    w, h = scaled_size(info.width, info.height, req.settings.train_max_size)
    return warn_if_slow(progress, train_config(req.settings), w, h, "--preview")
