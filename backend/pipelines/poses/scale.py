"""Set the world scale of a camera solve without solving again.

The maths (rays, ground points, heights, the scale record) is :mod:`shared_protocol.scale`,
shared with the Blender add-on; this module validates a request, applies it to a
:class:`PoseSolution`, a solve folder (cameras.json, points.ply and the exports written from
them) or a splat file trained in the old scale, and hosts the automatic metric-depth hook.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.progress import JobError
from shared_protocol import camera_file
from shared_protocol import scale as sp

from .solution import PoseSolution

#: request parameters (job params) and what they hold
PARAMS = ("camera_height", "scale_distance", "scale_pixels", "scale_points", "scale_cameras", "scale_xyz",
          "scale_height", "scale_foot_top")


@dataclass(frozen=True)
class ScaleRequest:
    """One scale reference: ``method`` is ``camera_height``, ``ground_pixels``, ``points``
    (indices of points.ply rows), ``cameras`` (two frame positions), ``xyz`` (two 3D points in the
    solve's world) or ``foot_top``; ``value`` the known metres."""

    method: str
    value: float
    frame: int | None = None
    pixels: tuple[float, ...] = ()
    ids: tuple[int, int] = ()
    xyz: tuple[float, ...] = ()

    def key(self) -> dict:
        return {"method": self.method, "value": self.value, "frame": self.frame, "pixels": list(self.pixels),
                "ids": list(self.ids), "xyz": list(self.xyz)}


def _bad(job: str, msg: str) -> JobError:
    return JobError(f"{job}: {msg}", "bad_params")


def _positive(params: dict, key: str, job: str):
    v = params.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(job, f"{key} must be a positive number of metres, got {v!r}")
    return float(v)


def _numbers(params: dict, key: str, n: int, job: str, what: str) -> list[float] | None:
    v = params.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        try:
            v = [float(x) for x in v.split(",")]
        except ValueError:
            raise _bad(job, f"{key} must be {what}, got {v!r}") from None
    if (not isinstance(v, (list, tuple)) or len(v) != n
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
        raise _bad(job, f"{key} must be {what}, got {v!r}")
    return [float(x) for x in v]


def _frame_and_pixels(params: dict, key: str, job: str, what: str) -> tuple[int, tuple[float, ...]]:
    v = _numbers(params, key, 5, job, what)
    if v[0] != int(v[0]) or v[0] < 0:
        raise _bad(job, f"{key}: the frame must be a non-negative integer, got {v[0]:g}")
    return int(v[0]), tuple(v[1:])


def request_from_params(params: dict, job: str = "poses") -> ScaleRequest | None:
    """The scale request in ``params`` (None: none given); raises JobError(bad_params) with one
    line naming the parameter."""
    height = _positive(params, "camera_height", job)
    distance = _positive(params, "scale_distance", job)
    tall = _positive(params, "scale_height", job)
    refs = [k for k in ("scale_pixels", "scale_points", "scale_cameras", "scale_xyz") if params.get(k) is not None]
    foot_top = params.get("scale_foot_top") is not None
    given = [k for k, on in (("camera_height", height is not None), ("scale_distance", distance is not None),
                             ("scale_height", tall is not None)) if on]
    if len(given) > 1:
        raise _bad(job, f"give one scale reference, not {' and '.join(given)}")
    if len(refs) > 1:
        raise _bad(job, f"give one of {', '.join(refs)}, not several")
    if refs and distance is None:
        raise _bad(job, f"{refs[0]} needs scale_distance (the known distance in metres)")
    if distance is not None and not refs:
        raise _bad(job, "scale_distance needs scale_pixels, scale_points, scale_cameras or scale_xyz")
    if foot_top != (tall is not None):
        raise _bad(job, "scale_height and scale_foot_top go together")
    if height is not None:
        return ScaleRequest("camera_height", height)
    if tall is not None:
        frame, px = _frame_and_pixels(params, "scale_foot_top", job, "F,xf,yf,xt,yt (frame, foot and top pixel)")
        return ScaleRequest("foot_top", tall, frame=frame, pixels=px)
    if distance is None:
        return None
    ref = refs[0]
    if ref == "scale_pixels":
        frame, px = _frame_and_pixels(params, ref, job, "F,x0,y0,x1,y1 (frame and two ground pixels)")
        return ScaleRequest("ground_pixels", distance, frame=frame, pixels=px)
    if ref == "scale_xyz":
        return ScaleRequest("xyz", distance, xyz=tuple(_numbers(params, ref, 6, job, "X0,Y0,Z0,X1,Y1,Z1")))
    ids = params[ref]
    if (not isinstance(ids, (list, tuple)) or len(ids) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ids)):
        raise _bad(job, f"{ref} must be two non-negative integers, got {ids!r}")
    if ids[0] == ids[1]:
        raise _bad(job, "the two scale references must differ")
    return ScaleRequest("points" if ref == "scale_points" else "cameras", distance, ids=(int(ids[0]), int(ids[1])))


def measure(doc: dict, points_xyz: np.ndarray, req: ScaleRequest, job: str = "poses") -> tuple[float, dict]:
    """``(factor, scale record)`` for ``req`` on a cameras.json document and its points."""
    try:
        if req.method in ("points", "cameras"):
            src = points_xyz if req.method == "points" else camera_file.matrices(doc)[:, :3, 3]
            a, b = req.ids
            if not (a < len(src) and b < len(src)):
                raise sp.ScaleError(f"scale reference {req.method} {a} and {b} are not two of the {len(src)} "
                                    f"solved {req.method}")
            return sp.measure(doc, req.method, req.value, points=(src[a], src[b]))
        if req.method == "xyz":
            factor, info = sp.measure(doc, "points", req.value, points=(req.xyz[:3], req.xyz[3:]))
            info["reference"] = "xyz"
            info["note"] = f"{req.value:g} m between two 3D points"
            return factor, info
        return sp.measure(doc, req.method, req.value, frame=req.frame, pixels=req.pixels or None)
    except sp.ScaleError as exc:
        raise _bad(job, f"cannot set the scale: {exc}") from None


def apply_to_solution(sol: PoseSolution, req: ScaleRequest, job: str = "poses") -> PoseSolution:
    """``sol`` re-scaled in place about its ground point; returns it."""
    doc = sol.to_document()
    factor, info = measure(doc, sol.points_xyz, req, job)
    return rescale_solution(sol, factor, info)


def rescale_solution(sol: PoseSolution, factor: float, info: dict) -> PoseSolution:
    pivot, _ = sp.ground_of({"ground_plane": sol.ground_plane})
    new = sp.rescale_document(sol.to_document(), factor, info)
    sol.matrix_world = camera_file.matrices(new)
    sol.points_xyz = sp.scale_about(sol.points_xyz, factor, pivot)
    sol.stats = new["stats"]
    return sol


def load_solve(solve_dir: Path, job: str = "scale") -> PoseSolution:
    """A solve folder (cameras.json + points.ply when present) as a :class:`PoseSolution`."""
    from .points_ply import read_points

    solve_dir = Path(solve_dir)
    try:
        doc = camera_file.read(solve_dir / "cameras.json")
    except camera_file.CameraFileError as exc:
        raise JobError(f"{job}: {exc}", "bad_input") from None
    sol = PoseSolution.from_document(doc)
    ply = solve_dir / "points.ply"
    if ply.is_file():
        sol.points_xyz, sol.points_rgb, sol.track_length = read_points(ply)
    return sol


def rescale_solve_dir(solve_dir: Path, out_dir: Path, req: ScaleRequest,
                      job: str = "scale") -> tuple[PoseSolution, float, list[str]]:
    """Re-scale the solve in ``solve_dir`` into ``out_dir`` (may be the same folder); returns the
    solution, the factor applied and the files written (relative to ``out_dir``)."""
    from .outputs import write_outputs

    sol = load_solve(solve_dir, job)
    factor, info = measure(sol.to_document(), sol.points_xyz, req, job)
    rescale_solution(sol, factor, info)
    return sol, factor, write_outputs(sol, out_dir)


def rescale_splats(src: Path, dst: Path, factor: float, pivot) -> None:
    """Splats trained in the old scale, in the new one: centres about ``pivot``, sizes by ``factor``."""
    from backend.pipelines.splats_io import load_splats, save_splats

    s = load_splats(src)
    s.means = sp.scale_about(s.means, factor, pivot).astype(np.float32)
    s.scales = (s.scales + np.float32(math.log(factor))).astype(np.float32)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    save_splats(s, dst)


def summary_lines(stats: dict) -> dict:
    """What a job summary says about the scale: ``scale`` (one line), ``scale_record`` (the
    record itself) and ``scale_is_guess`` (true while it is the default guess)."""
    info = sp.info_of(stats)
    out = {"scale": sp.describe(info), "scale_record": info}
    if info.get("uncertainty_rel") is not None:
        out["scale_uncertainty_pct"] = round(100 * info["uncertainty_rel"], 3)
    out["scale_is_guess"] = sp.is_guess(info)
    return out


def automatic_metric(sol: PoseSolution, input_path, weights_dir=None, model=None, progress=None) -> bool:
    """Metric depth as the scale source when a metric depth model is present (``model``, else a
    transformers metric-depth folder under ``weights_dir``/depth, default ``weights/``): the
    solution is re-scaled by the robust median of metric over solved depth, the spread becomes
    the uncertainty (:mod:`.metric_scale`). Returns False, leaving the default guess, when there
    is no such model or the depths disagree (the reason goes into the record's note). Not for
    rotation-only solves (their points are directions)."""
    from backend.models.depth import has_metric_model, load_depth_model

    from .metric_scale import estimate_metric_scale

    if sol.stats.get("rotation_only") or not sp.is_guess(sp.info_of(sol.stats)):
        return False
    if model is None:
        if not has_metric_model(weights_dir):
            return False
        model = load_depth_model(weights_dir, require_metric=True)
    if progress is not None:
        progress.stage("ground_plane", "metric scale from the depth model")
    try:
        ms = estimate_metric_scale(sol, input_path, model, progress=progress)
    except JobError as exc:
        if exc.code != "scale_failed":
            raise
        info = sp.info_of(sol.stats)
        info["note"] += f" (metric depth not used: {exc.message})"
        sol.stats["scale"] = info
        return False
    info = sp.make_info("metric_depth", ms.scale, ms.uncertainty, "metric_depth",
                        f"metric depth of {ms.n_points} points in {ms.n_frames} frames")
    rescale_solution(sol, ms.scale, info)
    sol.stats.update(ms.as_stats())
    return True
