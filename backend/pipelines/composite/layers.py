"""Per-frame inputs of the compositor, written once and reused by re-runs.

* ``background/%06d.png``: the footage at render size (8-bit sRGB, area-resampled).
* ``depth/%06d.exr``: the splat layer's planar depth for the solved camera at render size
  (R = G = B = depth in metres, :data:`FAR` where no splat covers the pixel), rendered by the
  render service (:func:`backend.pipelines.render.render_views`).

Each file is written under a temporary name and renamed, so an existing file is complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.progress import Progress

#: Depth written where the splats leave a pixel empty (metres; finite so that every image
#: library and the compositor's math treat it as "far").
FAR = 1.0e6


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.stem}.partial{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def write_backgrounds(video: str | Path, folder: Path, size: tuple[int, int],
                      progress: Progress | None = None, total: int | None = None) -> list[Path]:
    """Decode the first ``total`` frames (default all) of the footage into ``folder`` at
    ``size`` (w, h); frames already there are kept."""
    import cv2

    from backend.media.video import iter_frames
    from backend.pipelines.render.writers import write_png

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = size
    for index, _source, rgb in iter_frames(video, max_frames=total):
        path = folder / f"{index:06d}.png"
        paths.append(path)
        if path.exists():
            continue
        img = rgb if rgb.shape[:2] == (h, w) else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        _atomic(path, lambda p, img=img: write_png(p, img))
        if progress is not None and total:
            progress.update(min(1.0, (index + 1) / total), f"footage frame {index + 1}/{total}")
    return paths


def write_depths(splats_path: str | Path, cameras_path: str | Path, folder: Path, size: tuple[int, int],
                 device: str = "cpu", batch: int = 8, progress: Progress | None = None,
                 total: int | None = None) -> dict[int, Path]:
    """Render the splat depth for every registered camera (of the first ``total`` video
    frames) into ``folder``; returns ``{video frame index: path}``. Frames already there are
    not rendered again."""
    from backend.pipelines.render import cameras_from_json

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    cams = cameras_from_json(cameras_path, w, h)
    index = [int(n) if n.strip().isdigit() else i for i, n in enumerate(cams.names)]
    paths = {vid: folder / f"{vid:06d}.exr" for vid in index if total is None or vid < total}
    todo = [i for i, vid in enumerate(index) if vid in paths and not paths[vid].exists()]
    _render_frames(splats_path, cams, todo, device, batch, progress, "splat depth",
                   lambda i, out, j: _write_depth(paths[index[i]], out["depth"][j]))
    return paths


def _write_depth(path: Path, depth: np.ndarray) -> None:
    from backend.pipelines.render.writers import write_exr

    d = np.where(np.isfinite(depth), depth, FAR).astype(np.float32)
    _atomic(path, lambda p: write_exr(p, {"R": d, "G": d, "B": d}))


def _render_frames(splats_path, cams, todo: list[int], device: str, batch: int, progress: Progress | None,
                   what: str, write) -> None:
    """Render cameras ``todo`` (indices into ``cams``) in batches; ``write(i, render, j)`` stores
    camera ``i``, the ``j``-th of its batch's render."""
    if not todo:
        return
    from backend.pipelines.render import render_views
    from backend.pipelines.splats_io import load_splats

    splats = load_splats(splats_path)
    for a in range(0, len(todo), batch):
        sel = todo[a:a + batch]
        sub = type(cams)(cams.viewmats[sel], cams.Ks[sel], cams.width, cams.height, [cams.names[i] for i in sel])
        out = render_views(splats, sub, device=device, batch=batch)
        for j, i in enumerate(sel):
            write(i, out, j)
        if progress is not None:
            progress.update((a + len(sel)) / len(todo), f"{what} {a + len(sel)}/{len(todo)}")


def write_path_layers(splats_path: str | Path, cameras_path: str | Path, folder: Path, size: tuple[int, int],
                      device: str = "cpu", batch: int = 8, progress: Progress | None = None,
                      total: int | None = None) -> tuple[list[Path], dict[int, Path]]:
    """For a novel camera path (no footage): the splat render as the background
    (``background/%06d.png``) and its depth (``depth/%06d.exr``) for the first ``total`` cameras
    of ``cameras_path``, from one render per frame. Returns (backgrounds, ``{frame: depth}``)."""
    from backend.pipelines.render import cameras_from_json
    from backend.pipelines.render.writers import write_png

    w, h = size
    cams = cameras_from_json(cameras_path, w, h)
    n = len(cams.names) if total is None else min(total, len(cams.names))
    bg, dp = folder / "background", folder / "depth"
    bg.mkdir(parents=True, exist_ok=True)
    dp.mkdir(parents=True, exist_ok=True)
    backgrounds = [bg / f"{i:06d}.png" for i in range(n)]
    depths = {i: dp / f"{i:06d}.exr" for i in range(n)}

    def write(i, out, j):
        _atomic(backgrounds[i], lambda p: write_png(p, out["rgb"][j]))
        _write_depth(depths[i], out["depth"][j])

    todo = [i for i in range(n) if not (backgrounds[i].exists() and depths[i].exists())]
    _render_frames(splats_path, cams, todo, device, batch, progress, "splat layers", write)
    return backgrounds, depths
