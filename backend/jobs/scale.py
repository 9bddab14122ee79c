"""Job ``scale``: re-scale an existing camera solve without solving again (thin adapter over
:mod:`backend.pipelines.poses.scale`), and the scale options ``poses`` and ``composite`` share.

``splatstage scale SOLVE_DIR -o OUT --camera-height 0.32`` (``-o`` may be ``SOLVE_DIR`` itself)
rewrites cameras.json, points.ply, colmap/ and transforms.json with every camera position and
point scaled about the ground's origin, rotations and the ground plane unchanged.
Summary: the factor applied and the new scale record (source, uncertainty, one line).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.jobs import JobResult
from backend.progress import JobError, Progress

STAGES = [("scale", 1)]


def add_scale_arguments(parser: argparse.ArgumentParser, solving: bool = True, required: bool = False) -> None:
    """The scale options (one reference; without any, a metric depth model's scale when there is
    one, else the first camera is put 1.6 m above the ground and the result says it is a guess).
    ``solving``: the job solves (``--scale-cameras`` refers to its frames)."""
    g = parser.add_argument_group("scale (one reference" + (")" if required else "; default: a metric depth model in "
                                                            "weights/depth/, else a guess, the first camera 1.6 m "
                                                            "above the ground)"))
    g.add_argument("--camera-height", type=float, metavar="M",
                   help="height of the first camera above the ground in metres")
    g.add_argument("--scale-distance", type=float, metavar="M",
                   help="known distance in metres between the two references of --scale-pixels, --scale-points, "
                        "--scale-xyz" + (" or --scale-cameras" if solving else ""))
    ref = g.add_mutually_exclusive_group()
    ref.add_argument("--scale-pixels", metavar="F,X0,Y0,X1,Y1",
                     help="two footage pixels of video frame F on the ground, --scale-distance apart")
    ref.add_argument("--scale-points", type=int, nargs=2, metavar=("A", "B"),
                     help="two point indices (rows of points.ply) --scale-distance apart")
    ref.add_argument("--scale-xyz", metavar="X0,Y0,Z0,X1,Y1,Z1",
                     help="two 3D points in the solve's world (e.g. picked in Blender) --scale-distance apart")
    if solving:
        ref.add_argument("--scale-cameras", type=int, nargs=2, metavar=("A", "B"),
                         help="two frame positions (0-based, in solve order) --scale-distance apart")
    g.add_argument("--scale-height", type=float, metavar="M",
                   help="known height in metres of something standing on the ground (see --scale-foot-top)")
    g.add_argument("--scale-foot-top", metavar="F,XF,YF,XT,YT",
                   help="its foot pixel and its top pixel in video frame F")


def scale_params_from_args(args: argparse.Namespace) -> dict:
    p = {}
    for key in ("camera_height", "scale_distance", "scale_pixels", "scale_xyz", "scale_height", "scale_foot_top"):
        value = getattr(args, key, None)
        if value is not None:
            p[key] = value
    for key in ("scale_points", "scale_cameras"):
        if getattr(args, key, None):
            p[key] = list(getattr(args, key))
    return p


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("solve", type=Path, help="camera-solve folder (cameras.json, points.ply)")
    add_scale_arguments(parser, solving=False, required=True)


def params_from_args(args: argparse.Namespace) -> dict:
    return {"solve": str(Path(args.solve).resolve()), **scale_params_from_args(args)}


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.poses.scale import request_from_params, rescale_solve_dir, summary_lines

    solve = params.get("solve")
    if not isinstance(solve, str) or not solve:
        raise JobError("scale: solve (a camera-solve folder) is required", "bad_params")
    if not (Path(solve) / "cameras.json").is_file():
        raise JobError(f"scale: no cameras.json in {solve}", "bad_input")
    req = request_from_params(params, "scale")
    if req is None:
        raise JobError("scale: give a scale reference (--camera-height, --scale-distance with --scale-pixels/"
                       "--scale-points/--scale-xyz, or --scale-height with --scale-foot-top)", "bad_params")
    if req.method == "cameras":
        raise JobError("scale: scale_cameras is for a new solve; use scale_xyz with the two cameras' positions",
                       "bad_params")
    progress.stage("scale", f"re-scaling {solve}")
    sol, factor, files = rescale_solve_dir(Path(solve), Path(out_dir), req)
    summary = {"factor": factor, "world_scale": sol.stats.get("world_scale"), "scale_source": sol.stats["scale_source"],
               **summary_lines(sol.stats)}
    return JobResult(files=files, summary=summary)
