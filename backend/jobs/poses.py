"""Job ``poses``: video or image folder -> camera solve (thin adapter over
:func:`backend.pipelines.poses.pipeline.solve`).

Outputs: cameras.json, points.ply, colmap/{cameras,images,points3D}.txt, transforms.json.
Arrays: matrix_world [N,4,4] float64, focal_px [N], principal_point_px [N,2], registered [N],
reproj_error_px [N], points_xyz [M,3], points_rgb [M,3], points_track_length [M].
Summary: the solve's stats.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from backend.jobs import JobResult
from backend.jobs.scale import add_scale_arguments, scale_params_from_args
from backend.pipelines.poses.scale import apply_to_solution, automatic_metric, request_from_params, summary_lines
from backend.pipelines.poses.stages import STAGES  # noqa: F401  (for Progress(stages=STAGES))
from backend.progress import JobError, Progress

MATCHERS = ("auto", "klt", "sift")
METHODS = ("tracks", "learned")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="video file (mp4, mov, mkv, ...) or image folder")
    parser.add_argument("--start", type=int, default=0, help="first frame index (default 0)")
    parser.add_argument("--stop", type=int, help="stop before this frame index")
    parser.add_argument("--stride", type=int, default=1, help="use every Nth frame (default 1)")
    parser.add_argument("--max-frames", type=int, help="solve at most this many frames")
    parser.add_argument("--max-size", type=int, default=1920,
                        help="longest side of the solve resolution in pixels (default 1920); "
                             "results are always in full-resolution pixels")
    focal = parser.add_mutually_exclusive_group()
    focal.add_argument("--focal-px", type=float, help="known focal length in pixels (full resolution)")
    focal.add_argument("--focal-mm", type=float, help="known focal length in mm (needs --sensor-width-mm)")
    parser.add_argument("--sensor-width-mm", type=float, help="sensor width in mm, for --focal-mm")
    add_scale_arguments(parser)
    parser.add_argument("--matcher", choices=MATCHERS, default="auto",
                        help="klt: track video frames; sift: match photos; auto: klt, falling back "
                             "to sift when tracks do not connect the frames")
    parser.add_argument("--ba-observations", type=int, default=0,
                        help="most observations of one point in the final bundle adjustment "
                             "(default 0: all of them; a cap such as 40 is faster and less "
                             "accurate)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--method", choices=METHODS, default="tracks",
                        help="tracks: KLT tracks and structure from motion (default); learned: a "
                             "multi-view pointmap network from weights/poses/, refined by bundle "
                             "adjustment where tracks exist (see weights/README.md)")
    parser.add_argument("--weights", type=Path,
                        help="weights folder for the learned models (default: the project's weights/)")


def params_from_args(args: argparse.Namespace) -> dict:
    p = {"input": str(Path(args.input).resolve()), "start": args.start, "stride": args.stride,
         "max_size": args.max_size, "matcher": args.matcher, "ba_observations": args.ba_observations,
         **scale_params_from_args(args)}
    for key in ("stop", "max_frames", "focal_px", "focal_mm", "sensor_width_mm", "threads"):
        value = getattr(args, key)
        if value is not None:
            p[key] = value
    if getattr(args, "method", "tracks") != "tracks":
        p["method"] = args.method
    if getattr(args, "weights", None) is not None:
        p["weights"] = str(Path(args.weights).resolve())
    return p


def _bad(msg: str) -> JobError:
    return JobError(f"poses: {msg}", "bad_params")


def _int(params: dict, key: str, default, lo: int, allow_none: bool = False):
    v = params.get(key, default)
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _bad(f"{key} must be an integer >= {lo}, got {v!r}")
    return v


def _positive(params: dict, key: str):
    v = params.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(f"{key} must be a positive number, got {v!r}")
    return float(v)


def options_from_params(params: dict):
    """Validated :class:`SolveOptions` (raises JobError code bad_params)."""
    from backend.pipelines.poses.pipeline import SolveOptions

    if not isinstance(params.get("input"), str) or not params["input"]:
        raise _bad("input (a video file or image folder) is required")
    start = _int(params, "start", 0, 0)
    stop = _int(params, "stop", None, 1, allow_none=True)
    if stop is not None and stop <= start:
        raise _bad(f"stop ({stop}) must be greater than start ({start})")
    opts = SolveOptions(start=start, stop=stop, stride=_int(params, "stride", 1, 1),
                        max_frames=_int(params, "max_frames", None, 3, allow_none=True),
                        max_size=_int(params, "max_size", 1920, 64),
                        ba_observations=_int(params, "ba_observations", 0, 0) or None)
    focal_px, focal_mm = _positive(params, "focal_px"), _positive(params, "focal_mm")
    sensor = _positive(params, "sensor_width_mm")
    if focal_px and focal_mm:
        raise _bad("give focal_px or focal_mm, not both")
    if focal_mm and not sensor:
        raise _bad("focal_mm needs sensor_width_mm")
    opts.focal_px = focal_px
    opts.focal_mm, opts.sensor_width_mm = focal_mm, sensor
    req = request_from_params(params, "poses")
    if req is not None and req.method == "camera_height":
        opts.camera_height = req.value
    elif req is not None and req.method in ("points", "cameras"):
        opts.scale_ids = (req.method[:-1], *req.ids)
        opts.scale_distance = req.value
    matcher = params.get("matcher", "auto")
    if matcher not in MATCHERS:
        raise _bad(f"matcher must be one of {', '.join(MATCHERS)}, got {matcher!r}")
    opts.matcher = matcher
    threads = _int(params, "threads", None, 1, allow_none=True)
    if threads:
        opts.threads = threads
    method = params.get("method", "tracks")
    if method not in METHODS:
        raise _bad(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    opts.method = method
    weights = params.get("weights")
    if weights is not None and (not isinstance(weights, str) or not weights):
        raise _bad(f"weights must be a folder path, got {weights!r}")
    opts.weights_dir = weights
    return opts


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.poses.outputs import write_outputs
    from backend.pipelines.poses.pipeline import solve

    opts = options_from_params(params)
    req = request_from_params(params, "poses")
    if opts.method == "learned":  # fail on missing weights before decoding anything
        from backend.pipelines.poses.learned import load_model

        opts.pose_model = load_model(opts)
    sol = solve(params["input"], opts, progress)
    if req is not None and req.method in ("ground_pixels", "xyz", "foot_top"):
        apply_to_solution(sol, req, "poses")
    elif req is None:  # no reference given: metric depth when weights/depth has a metric model
        automatic_metric(sol, params["input"], opts.weights_dir, progress=progress)
    files = write_outputs(sol, out_dir)
    return JobResult(files=files, arrays=sol.arrays(), summary={**sol.stats, **summary_lines(sol.stats)})
