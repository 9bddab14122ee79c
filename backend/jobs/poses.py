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
from backend.pipelines.poses.stages import STAGES  # noqa: F401  (for Progress(stages=STAGES))
from backend.progress import JobError, Progress

MATCHERS = ("auto", "klt", "sift")


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
    parser.add_argument("--scale-distance", type=float,
                        help="known distance in metres between two cameras or two points (see "
                             "--scale-cameras / --scale-points); default scale: first camera 1.6 m "
                             "above the ground")
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument("--scale-cameras", type=int, nargs=2, metavar=("A", "B"),
                     help="two frame positions (0-based, in solve order) --scale-distance apart")
    ref.add_argument("--scale-points", type=int, nargs=2, metavar=("A", "B"),
                     help="two point indices (rows of points.ply) --scale-distance apart")
    parser.add_argument("--camera-height", type=float, default=1.6,
                        help="height of the first camera above the ground in metres (default 1.6)")
    parser.add_argument("--matcher", choices=MATCHERS, default="auto",
                        help="klt: track video frames; sift: match photos; auto: klt, falling back "
                             "to sift when tracks do not connect the frames")
    parser.add_argument("--ba-observations", type=int, default=0,
                        help="most observations of one point in the final bundle adjustment "
                             "(default 0: all of them; a cap such as 40 is faster and less "
                             "accurate)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")


def params_from_args(args: argparse.Namespace) -> dict:
    p = {"input": str(Path(args.input).resolve()), "start": args.start, "stride": args.stride,
         "max_size": args.max_size, "camera_height": args.camera_height, "matcher": args.matcher,
         "ba_observations": args.ba_observations}
    for key in ("stop", "max_frames", "focal_px", "focal_mm", "sensor_width_mm", "scale_distance",
                "threads"):
        value = getattr(args, key)
        if value is not None:
            p[key] = value
    if args.scale_cameras:
        p["scale_cameras"] = list(args.scale_cameras)
    if args.scale_points:
        p["scale_points"] = list(args.scale_points)
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
    distance = _positive(params, "scale_distance")
    cams, pts = params.get("scale_cameras"), params.get("scale_points")
    if (cams is not None) + (pts is not None) > 1:
        raise _bad("give scale_cameras or scale_points, not both")
    ref = cams if cams is not None else pts
    if ref is not None:
        if (not isinstance(ref, (list, tuple)) or len(ref) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ref)):
            raise _bad("scale_cameras / scale_points must be two non-negative integers")
        if ref[0] == ref[1]:
            raise _bad("the two scale references must differ")
        if distance is None:
            raise _bad("scale_cameras / scale_points need scale_distance")
        opts.scale_ids = ("camera" if cams is not None else "point", int(ref[0]), int(ref[1]))
        opts.scale_distance = distance
    elif distance is not None:
        raise _bad("scale_distance needs scale_cameras or scale_points")
    opts.camera_height = _positive(params, "camera_height") or 1.6
    matcher = params.get("matcher", "auto")
    if matcher not in MATCHERS:
        raise _bad(f"matcher must be one of {', '.join(MATCHERS)}, got {matcher!r}")
    opts.matcher = matcher
    threads = _int(params, "threads", None, 1, allow_none=True)
    if threads:
        opts.threads = threads
    return opts


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.poses.outputs import write_outputs
    from backend.pipelines.poses.pipeline import solve

    opts = options_from_params(params)
    sol = solve(params["input"], opts, progress)
    files = write_outputs(sol, out_dir)
    return JobResult(files=files, arrays=sol.arrays(), summary=dict(sol.stats))
