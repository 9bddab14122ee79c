"""Scene stereo along a novel camera path: both eyes rendered from the splats.

With no footage to be the left eye (an orbit, a dolly, a smoothed path exported from Blender),
the left eye is the splat render of the path's camera and the right eye the render of that
camera moved by the interaxial along its own x axis, converged by sensor shift
(:func:`backend.pipelines.stereo.scene.right_eye_cameras`). The path is a cameras.json
document or a nerfstudio ``camera_path.json`` (what the add-on's camera-path export writes).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from backend.pipelines.render.camera_paths import is_camera_path, load_path  # noqa: F401 (part of the API)
from backend.progress import JobError, Progress


def _u8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)


def run_novel_path_stereo(p: dict, out_dir: Path, progress: Progress, batch: int = 8):
    """The ``stereo`` job for a camera-path input (called by backend.jobs.stereo.run)."""
    from backend.results import JobResult
    from backend.media.encode import VideoWriter
    from backend.pipelines.render import cameras_from_arrays, render_views
    from backend.pipelines.splats_io import SplatFormatError, load_splats
    from backend.pipelines.stereo.disparity import disparity_from_depth
    from backend.pipelines.stereo.layouts import compose, debug_grid
    from backend.pipelines.stereo.scene import _find_splats, render_pair

    if not p.get("reconstruction"):
        raise JobError(f"stereo: {p['input']} is a camera path; rendering it needs --reconstruction (splats)",
                       "bad_params")
    cams = load_path(p["input"])
    try:
        splats = load_splats(_find_splats(Path(p["reconstruction"])))
    except SplatFormatError as exc:
        raise JobError(str(exc), "bad_input") from None
    device = p.get("device") or "cpu"
    device = "cpu" if device in ("numpy", "auto") else device
    interaxial = float(p.get("interaxial", 0.065))
    conv = p.get("convergence")
    n = len(cams.matrix_world) if not p.get("max_frames") else min(len(cams.matrix_world), int(p["max_frames"]))
    size = (cams.width, cams.height)
    progress.stage("stereo", "rendering both eyes")
    t0 = time.monotonic()
    with VideoWriter(out_dir / "stereo.mp4", cams.fps, crf=int(p.get("crf", 18))) as writer:
        for start in range(0, n, batch):
            sl = slice(start, min(n, start + batch))
            mw, fl, pp = cams.matrix_world[sl], cams.focal_px[sl], cams.principal_point_px[sl]
            if conv is None:  # default: the median splat depth of the first frame, as for footage
                left = render_views(splats, cameras_from_arrays(mw[:1], fl[:1], pp[:1], *size, size), device=device)
                z = left["depth"][0]
                z = z[np.isfinite(z) & (left["alpha"][0] > 0.5)]
                conv = float(np.median(z)) if z.size else None
            left, right = render_pair(splats, mw, fl, pp, *size, size, interaxial, conv, device)
            for k in range(len(mw)):
                l_rgb, r_rgb = _u8(left["rgb"][k]), _u8(right["rgb"][k])
                if p.get("debug_grid"):
                    disp = disparity_from_depth(left["depth"][k], float(fl[k]), interaxial, conv)
                    frame = debug_grid(l_rgb, np.nan_to_num(disp), right["alpha"][k] < 0.5, r_rgb)
                else:
                    frame = compose(l_rgb, r_rgb, p.get("layout", "sbs"), p.get("anaglyph", "dubois"))
                writer.write(frame)
            progress.update(sl.stop / n, f"frame {sl.stop}/{n}")
    elapsed = time.monotonic() - t0
    summary = {"method": "scene-path", "frames": n, "fps": round(cams.fps, 4), "interaxial": interaxial,
               "convergence": conv, "cameras": str(p["input"]), "size": [cams.width, cams.height],
               "layout": "debug-grid" if p.get("debug_grid") else p.get("layout", "sbs"),
               "seconds": round(elapsed, 3), "frames_per_second": round(n / elapsed, 3) if elapsed > 0 else None}
    return JobResult(files=["stereo.mp4"], summary=summary)
