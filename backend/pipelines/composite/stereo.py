"""Stereo composite: the right eye of the main job, beside the mono composite (the left eye).

Right eye, per frame (all under ``shot/right-<key>/``, resumable like the mono shot):

* ``background/%06d.png``: the splat layer rendered through the right-eye camera of
  :func:`backend.pipelines.stereo.scene.right_eye_cameras` (the solved camera moved
  ``interaxial`` along its own +x axis, convergence by sensor shift), colour-matched to the
  footage and filled with the depth-warped footage where the splats leave it uncovered
  (:func:`backend.pipelines.stereo.scene.compose_right`, the scene-stereo right eye);
* ``depth/%06d.exr``: that render's planar depth (the occluder of the product);
* ``frames/%06d.png``: Blender's render of the product for the right view of its stereo
  3D camera rig (the same offset and shift; :mod:`blender_addon.compositing.stereo`),
  composited over the right background with the mono shot's shadow catcher and depth
  occlusion (the same spec, with the right eye's per-frame files).

The two eyes are packed by :func:`backend.pipelines.stereo.layouts.compose`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.progress import JobError, Progress

from .layers import FAR, _atomic

#: Default interaxial (metres): the human eye distance, as ``splatstage stereo``.
DEFAULT_INTERAXIAL = 0.065


@dataclass
class StereoOptions:
    """Stereo output of the main job.

    ``layout``: one of :data:`backend.pipelines.stereo.layouts.LAYOUTS`; ``interaxial``:
    camera separation in metres; ``convergence``: distance (metres, planar depth) put on the
    screen plane, None for the product anchor's depth in the placement frame.
    """

    layout: str = "sbs"
    interaxial: float = DEFAULT_INTERAXIAL
    convergence: float | None = None
    anaglyph: str = "dubois"

    def check(self) -> None:
        from backend.pipelines.stereo.layouts import LAYOUTS

        if self.layout not in LAYOUTS:
            raise JobError(f"composite: stereo layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}",
                           "bad_params")
        if not (math.isfinite(self.interaxial) and self.interaxial > 0):
            raise JobError(f"composite: interaxial must be a positive distance in metres, got {self.interaxial}",
                           "bad_params")
        if self.convergence is not None and not (math.isfinite(self.convergence) and self.convergence > 0):
            raise JobError(f"composite: convergence must be a positive distance in metres, got {self.convergence}",
                           "bad_params")
        if self.anaglyph not in ("dubois", "simple"):
            raise JobError(f"composite: anaglyph must be dubois or simple, got {self.anaglyph!r}", "bad_params")


def anchor_depth(doc: dict, anchor, frame: int) -> float:
    """Planar depth (metres) of the anchor in the camera of video frame ``frame``."""
    from .placement import PinholeCamera, frame_for_video_index

    fr = frame_for_video_index(doc, frame)
    if fr is None:
        raise JobError(f"composite: frame {frame} has no solved camera (convergence needs one)", "bad_params")
    z = float(PinholeCamera.from_frame(fr, doc.get("distortion")).project(anchor)[1][0])
    if not z > 0:
        raise JobError(f"composite: the product stands behind the camera of frame {frame}", "bad_params")
    return z


def write_right_layers(splats_path: str | Path, cameras_path: str | Path, folder: Path, size: tuple[int, int],
                       backgrounds: list[Path], interaxial: float, convergence: float | None,
                       device: str = "cpu", batch: int = 8, progress: Progress | None = None) -> dict[int, dict]:
    """Right-eye background and depth for every registered camera of the first
    ``len(backgrounds)`` video frames; returns ``{video frame: {"background", "depth"}}``.
    Frames whose two files exist are not rendered again."""
    import cv2

    from backend.pipelines.render.writers import write_exr, write_png
    from backend.pipelines.splats_io import load_splats
    from backend.pipelines.stereo.scene import compose_right, render_pair
    from shared_protocol import camera_file

    w, h = size
    doc = camera_file.read(Path(cameras_path))
    src = (int(doc["width"]), int(doc["height"]))
    registered = [f for f in doc["frames"] if f.get("registered", True)]
    # video frame of each camera: the same rule as the mono depth layer (layers.write_depths)
    index = [int(n) if n.strip().isdigit() else i for i, n in enumerate(str(f["source"]) for f in registered)]
    for sub in ("background", "depth"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    out = {vid: {"background": folder / "background" / f"{vid:06d}.png", "depth": folder / "depth" / f"{vid:06d}.exr"}
           for vid in index if vid < len(backgrounds)}
    todo = [i for i, vid in enumerate(index) if vid in out and not all(p.exists() for p in out[vid].values())]
    if not todo:
        return out
    splats = load_splats(splats_path)
    for a in range(0, len(todo), batch):
        sel = todo[a:a + batch]
        frames = [registered[i] for i in sel]
        left, right = render_pair(splats, [f["matrix_world"] for f in frames], [f["focal_px"] for f in frames],
                                  [f["principal_point_px"] for f in frames], w, h, src, interaxial, convergence,
                                  device=device)
        for j, i in enumerate(sel):
            vid = index[i]
            footage = cv2.cvtColor(cv2.imread(str(backgrounds[vid]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            rgb, _, _ = compose_right(footage, left, right, j, float(frames[j]["focal_px"]) * w / src[0],
                                      interaxial, convergence)
            d = np.where(np.isfinite(right["depth"][j]), right["depth"][j], FAR).astype(np.float32)
            _atomic(out[vid]["depth"], lambda p, d=d: write_exr(p, {"R": d, "G": d, "B": d}))
            _atomic(out[vid]["background"], lambda p, rgb=rgb: write_png(p, rgb))
        if progress is not None:
            progress.update((a + len(sel)) / len(todo), f"right-eye splat render {a + len(sel)}/{len(todo)}")
    return out


def right_spec(mono_spec: dict, folder: Path, layers: dict[int, dict], interaxial: float,
               convergence: float | None) -> dict:
    """The right-eye shot spec: the mono spec with the right eye's per-frame files and the
    stereo rig; frames without right-eye layers are left out."""
    spec = copy.deepcopy(mono_spec)
    spec["frames"] = [{"index": f["index"], "background": str(layers[f["index"]]["background"]),
                       "depth": str(layers[f["index"]]["depth"]),
                       "output": str(folder / "frames" / f"{f['index']:06d}.png")}
                      for f in mono_spec["frames"] if f["index"] in layers]
    spec["stereo"] = {"eye": "right", "interaxial": float(interaxial),
                      "convergence": None if convergence is None else float(convergence)}
    return spec


def pack(left: np.ndarray, right: np.ndarray, options: StereoOptions) -> np.ndarray:
    """One output frame of the stereo layout (RGB uint8)."""
    from backend.pipelines.stereo.layouts import compose

    return compose(left, right, options.layout, options.anaglyph)
