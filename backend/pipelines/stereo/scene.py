"""Scene stereo: the right eye rendered from the splats of a reconstruction.

The left eye is the footage. The right camera is the left one moved ``interaxial`` along its
own +x axis (parallel, no toe-in); convergence is a horizontal sensor shift: its principal
point moves right by ``f * B / Z_c`` px, so a point at depth Z lands at
``x_right = x_left - f * B * (1/Z - 1/Z_c)`` (the same convention as the depth-warp method).

The right render's colours are matched to the footage (a per-channel gain/offset fitted
between the *left* render and the footage where the splats are opaque) and where the splats
do not cover the right view (alpha below 1) the depth-warped footage, warped with the splat
depth, fills in.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from backend.pipelines.stereo.colour import apply_affine, fit_affine
from backend.progress import JobError, Progress


def right_eye_cameras(matrix_world, focal_px, principal_point_px, interaxial: float,
                      convergence: float | None = None):
    """Right-eye ``(matrix_world (C,4,4), principal_point_px (C,2))`` for Blender cameras.

    ``matrix_world`` is camera-to-world (Blender: camera looks down -Z, +X right, +Y up);
    ``convergence`` None means parallel cameras without shift (zero disparity at infinity).
    """
    mw = np.array(matrix_world, np.float64).reshape(-1, 4, 4)
    f = np.broadcast_to(np.asarray(focal_px, np.float64), (len(mw),))
    pp = np.array(np.broadcast_to(np.asarray(principal_point_px, np.float64), (len(mw), 2)))
    if interaxial < 0:
        raise ValueError(f"interaxial must be >= 0, got {interaxial}")
    x_axis = mw[:, :3, 0] / np.linalg.norm(mw[:, :3, 0], axis=1, keepdims=True)
    right = mw.copy()
    right[:, :3, 3] += interaxial * x_axis
    if convergence is not None:
        if not convergence > 0:
            raise ValueError(f"convergence must be > 0, got {convergence}")
        pp[:, 0] += f * interaxial / convergence
    return right, pp


def _find_cameras(reconstruction: Path, cameras: str | None) -> Path:
    if cameras:
        return Path(cameras)
    for name in ("cameras_refined.json", "cameras.json"):
        if (reconstruction / name).is_file():
            return reconstruction / name
    raise JobError(f"no cameras for the reconstruction {reconstruction}: pass --cameras (the solve's cameras.json)",
                   "bad_params")


def _find_splats(reconstruction: Path) -> Path:
    if reconstruction.is_file():
        return reconstruction
    for name in ("splats.ply", "splats.splat"):
        if (reconstruction / name).is_file():
            return reconstruction / name
    raise JobError(f"no splats.ply or splats.splat in {reconstruction}", "bad_input")


def render_pair(splats, matrix_world, focal_px, principal_point_px, width: int, height: int,
                src_size: tuple[int, int], interaxial: float, convergence: float | None, device: str = "cpu",
                left=None):
    """Render left and right eyes of the given cameras; returns the two render dicts.

    ``left`` reuses an existing left render.
    """
    from backend.pipelines.render import cameras_from_arrays, render_views

    mw_r, pp_r = right_eye_cameras(matrix_world, focal_px, principal_point_px, interaxial, convergence)
    if left is None:
        left = render_views(splats, cameras_from_arrays(matrix_world, focal_px, principal_point_px, width, height,
                                                        src_size), device=device)
    right = render_views(splats, cameras_from_arrays(mw_r, focal_px, pp_r, width, height, src_size), device=device)
    return left, right


def compose_right(footage: np.ndarray, left_render: dict, right_render: dict, i: int, focal_px: float,
                  interaxial: float, convergence: float | None, min_alpha: float = 0.98):
    """Right eye (H, W, 3) uint8 from the renders of camera ``i`` and the footage (RGB uint8)."""
    from backend.pipelines.stereo.disparity import complete_disparity, disparity_from_depth
    from backend.pipelines.stereo.fill import inpaint_background
    from backend.pipelines.stereo.warp import warp_right

    lr = left_render["rgb"][i] * 255.0
    rr = right_render["rgb"][i] * 255.0
    ra = right_render["alpha"][i]
    opaque = left_render["alpha"][i] > min_alpha
    matched = rr
    if opaque.sum() >= 64:
        matched = apply_affine(rr, fit_affine(lr, footage.astype(np.float32), opaque))
    disp = disparity_from_depth(left_render["depth"][i], focal_px, interaxial, convergence)
    known = np.isfinite(disp)
    warped = None
    if known.any():
        disp = complete_disparity(disp)
        w = warp_right(footage.astype(np.float32), disp)
        warped = inpaint_background(w.image, w.hole, w.z)
    else:
        warped = footage.astype(np.float32)
    a = np.clip(ra, 0.0, 1.0)[..., None]
    out = np.where(a >= min_alpha, matched, a * matched + (1 - a) * warped)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), disp, ra < min_alpha


def run_scene_stereo(p: dict, out_dir: Path, progress: Progress):
    """The ``stereo`` job's scene method (called by backend.jobs.stereo.run)."""
    from shared_protocol import camera_file

    from backend.jobs import JobResult
    from backend.media.encode import VideoWriter
    from backend.media.video import iter_frames, probe
    from backend.pipelines.splats_io import SplatFormatError, load_splats
    from backend.pipelines.stereo.layouts import compose, debug_grid

    recon = Path(p["reconstruction"])
    try:
        splats = load_splats(_find_splats(recon))
    except SplatFormatError as exc:
        raise JobError(str(exc), "bad_input") from None
    cam_path = _find_cameras(recon, p.get("cameras"))
    try:
        doc = camera_file.read(cam_path)
    except camera_file.CameraFileError as exc:
        raise JobError(str(exc), "bad_input") from None
    by_source = {str(f["source"]): f for f in doc["frames"] if f.get("registered", True)}
    info = probe(p["input"])
    src_size = (int(doc["width"]), int(doc["height"]))
    device = p.get("device") or "cpu"
    device = "cpu" if device in ("numpy", "auto") else device
    interaxial = float(p.get("interaxial", 0.065))
    convergence = p.get("convergence")
    total = info.frame_count if not p.get("max_frames") else min(info.frame_count, int(p["max_frames"]))
    fps = info.fps if info.fps > 0 else float(doc.get("fps") or 24.0)
    audio = None if info.is_image_folder else p["input"]
    progress.stage("stereo", "rendering right eyes")
    missing, n, batch = 0, 0, []
    scale = info.width / src_size[0]
    conv = convergence
    t0 = time.monotonic()

    def flush(writer):
        nonlocal missing, conv
        cams = [f for _, _, f in batch if f is not None]
        if cams:
            from backend.pipelines.render import cameras_from_arrays, render_views

            mw = [f["matrix_world"] for f in cams]
            fl = [f["focal_px"] for f in cams]
            pp = [f["principal_point_px"] for f in cams]
            left = render_views(splats, cameras_from_arrays(mw, fl, pp, info.width, info.height, src_size),
                                device=device)
            if conv is None:  # default: the median splat depth of the first rendered frame
                z = left["depth"][0]
                z = z[np.isfinite(z)]
                conv = float(np.median(z)) if z.size else None
            left, right = render_pair(splats, mw, fl, pp, info.width, info.height, src_size, interaxial, conv,
                                      device, left=left)
        k = 0
        for _, rgb, f in batch:
            if f is None:
                missing += 1
                right_eye, disp, hole = rgb, np.zeros(rgb.shape[:2], np.float32), np.zeros(rgb.shape[:2], bool)
            else:
                right_eye, disp, hole = compose_right(rgb, left, right, k, float(f["focal_px"]) * scale, interaxial,
                                                      conv)
                k += 1
            if p.get("debug_grid"):
                frame = debug_grid(rgb, disp, hole, right_eye)
            else:
                frame = compose(rgb, right_eye, p.get("layout", "sbs"), p.get("anaglyph", "dubois"))
            writer.write(frame)
        batch.clear()

    with VideoWriter(out_dir / "stereo.mp4", fps, audio_from=audio, crf=int(p.get("crf", 18))) as writer:
        for index, source, rgb in iter_frames(p["input"], max_frames=total):
            cam = by_source.get(str(source)) or by_source.get(f"{index:06d}.png")
            batch.append((index, rgb, cam))
            n += 1
            if len(batch) >= 8:
                flush(writer)
                progress.update(n / max(total, 1), f"frame {n}/{total}")
        if batch:
            flush(writer)
    elapsed = time.monotonic() - t0
    summary = {"method": "scene", "frames": n, "frames_without_camera": missing, "fps": round(fps, 4),
               "interaxial": interaxial, "convergence": conv, "cameras": str(cam_path),
               "layout": "debug-grid" if p.get("debug_grid") else p.get("layout", "sbs"),
               "audio": bool(writer.audio_codec), "seconds": round(elapsed, 3),
               "frames_per_second": round(n / elapsed, 3) if elapsed > 0 else None}
    return JobResult(files=["stereo.mp4"], summary=summary)


class SplatDepth:
    """Per-frame planar depth rendered from a reconstruction, for the depth-warp method.

    ``depth(index, source, h, w)`` renders the camera registered for that frame (looked up by
    ``source``, then by ``%06d.png``); a frame without a camera reuses the last rendered depth.
    """

    def __init__(self, reconstruction: str | Path, cameras: str | None = None, device: str = "cpu"):
        from shared_protocol import camera_file

        from backend.pipelines.splats_io import SplatFormatError, load_splats

        recon = Path(reconstruction)
        try:
            self.splats = load_splats(_find_splats(recon))
        except SplatFormatError as exc:
            raise JobError(str(exc), "bad_input") from None
        self.cameras_path = _find_cameras(recon, cameras)
        try:
            doc = camera_file.read(self.cameras_path)
        except camera_file.CameraFileError as exc:
            raise JobError(str(exc), "bad_input") from None
        self.src_size = (int(doc["width"]), int(doc["height"]))
        self.by_source = {str(f["source"]): f for f in doc["frames"] if f.get("registered", True)}
        first = next(iter(self.by_source.values()), None)
        if first is None:
            raise JobError(f"{self.cameras_path} has no registered camera", "bad_input")
        self.focal_src = float(first["focal_px"])
        self.device = "cpu" if device in ("numpy", "auto", None) else device
        self._last: np.ndarray | None = None

    def focal_px(self, width: int) -> float:
        return self.focal_src * width / self.src_size[0]

    def depth(self, index: int, source: str, h: int, w: int) -> np.ndarray:
        from backend.pipelines.render import cameras_from_arrays, render_views

        cam = self.by_source.get(str(source)) or self.by_source.get(f"{index:06d}.png")
        if cam is None:
            if self._last is None:
                raise JobError(f"frame {index} ({source}) has no camera in {self.cameras_path} and no earlier "
                               "frame has one", "bad_input")
            return self._last
        cams = cameras_from_arrays([cam["matrix_world"]], [cam["focal_px"]], [cam["principal_point_px"]], w, h,
                                   self.src_size)
        self._last = render_views(self.splats, cams, device=self.device)["depth"][0]
        return self._last
