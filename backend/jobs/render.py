"""Job ``render``: splats + cameras -> RGB, alpha and depth per camera (thin adapter over
:mod:`backend.pipelines.render`).

Cameras come from a cameras.json (``cameras``) or as arrays from Blender (``matrix_world``,
``focal_px``, ``principal_point_px``, ``width``, ``height``). Writes an EXR (R G B A Z) or PNG
sequence and returns the arrays ``rgb`` [C,H,W,3], ``alpha`` [C,H,W], ``depth`` [C,H,W] (planar
depth in world units, inf where empty) unless ``return_arrays`` is false.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.jobs import JobResult
from backend.progress import JobError, Progress

FORMATS = ("exr", "png", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("splats", type=Path, help="splats file (.ply 3DGS or SuperSplat compressed, .splat)")
    parser.add_argument("--cameras", type=Path, required=True, help="cameras.json to render")
    parser.add_argument("--width", type=int, help="output width (default: the cameras' own)")
    parser.add_argument("--height", type=int, help="output height (default: keeps the aspect)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--format", choices=FORMATS, default="exr", help="image sequence format on disk")
    parser.add_argument("--batch", type=int, default=8, help="cameras rendered per rasterizer call")
    parser.add_argument("--no-arrays", action="store_true",
                        help="do not return the images as arrays (files only; for long sequences)")


def params_from_args(args: argparse.Namespace) -> dict:
    p = {"splats": str(Path(args.splats).resolve()), "cameras": str(Path(args.cameras).resolve()),
         "format": args.format, "batch": args.batch, "return_arrays": not args.no_arrays}
    for k in ("width", "height", "device"):
        if getattr(args, k):
            p[k] = getattr(args, k)
    return p


def _pos_int(params, key, default=None):
    v = params.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 16384:
        raise JobError(f"render: {key} must be an integer in [1, 16384], got {v!r}", "bad_params")
    return v


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    import numpy as np

    from backend.pipelines.reconstruct import default_device
    from backend.pipelines.render import cameras_from_arrays, cameras_from_json, render_views
    from backend.pipelines.render.writers import write_sequence
    from backend.pipelines.splats_io import SplatFormatError, load_splats

    if not isinstance(params.get("splats"), str):
        raise JobError("render: splats (a .ply or .splat file) is required", "bad_params")
    fmt = params.get("format", "exr")
    if fmt not in FORMATS:
        raise JobError(f"render: format must be one of {', '.join(FORMATS)}", "bad_params")
    if fmt == "none" and not params.get("return_arrays", True):
        raise JobError("render: format none with return_arrays false would produce nothing", "bad_params")
    device = params.get("device") or default_device()
    if device not in ("cpu", "cuda"):
        raise JobError(f"render: device must be cpu or cuda, got {device!r}", "bad_params")
    width, height = _pos_int(params, "width"), _pos_int(params, "height")
    batch = _pos_int(params, "batch", 8)
    progress.stage("load", "reading splats and cameras")
    try:
        splats = load_splats(params["splats"])
    except SplatFormatError as exc:
        raise JobError(str(exc), "bad_input") from None
    if params.get("cameras"):
        cams = cameras_from_json(params["cameras"], width, height)
    elif params.get("matrix_world") is not None:
        if not (width and height):
            raise JobError("render: width and height are required with camera arrays", "bad_params")
        try:
            mw = np.asarray(params["matrix_world"], np.float64).reshape(-1, 4, 4)
            cams = cameras_from_arrays(mw, params["focal_px"], params["principal_point_px"], width, height)
        except (KeyError, ValueError) as exc:
            raise JobError(f"render: bad camera arrays ({exc})", "bad_params") from None
    else:
        raise JobError("render: give cameras (a cameras.json) or matrix_world/focal_px/principal_point_px",
                       "bad_params")
    progress.stage("render", f"rendering {len(cams.viewmats)} cameras")
    out = render_views(splats, cams, device=device, batch=batch, progress=progress)
    files = [] if fmt == "none" else write_sequence(out_dir, out["rgb"], out["alpha"], out["depth"], fmt)
    summary = {"cameras": len(cams.viewmats), "width": cams.width, "height": cams.height,
               "num_gaussians": len(splats), "device": device, "names": cams.names}
    return JobResult(files=files, arrays=out if params.get("return_arrays", True) else {}, summary=summary)
