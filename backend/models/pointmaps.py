"""The multi-view pointmap network of ``poses --method learned``, from ``weights/poses/``.

Files (no model code is needed):

- ``model.pt2`` (``torch.export.save`` of an exported program; preferred) or ``model.pt``
  (TorchScript, ``torch.jit.save``);
- ``poses.json``: ``{"input_size": [h, w], "window": T, "memory": K, "mean": [r, g, b],
  "std": [r, g, b]}`` (``mean``/``std`` default to ImageNet's, ``memory`` to 2).

Contract of the network (MUSt3R-style causal window with keyframe memory):

- input: one tensor (1, T, 3, h, w) float32, the window's frames resized to (h, w) (the
  aspect ratio is not kept), RGB in [0, 1] normalised by ``mean``/``std``. The first K entries
  are keyframes the pipeline carries over from earlier windows (the first window has none:
  all T are new frames); the last window is padded by repeating its last frame;
- output: the pointmaps (1, T, h, w, 3) float32, or a tuple (pointmaps, confidence (1, T, h,
  w)): for every pixel of every frame, its 3D point in the OpenCV camera coordinates of the
  window's **first** frame (x right, y down, z forward), at any scale (each window may have
  its own). Pixel (i, j) of the (h, w) grid is the footage pixel ((j + 0.5) W / w, (i + 0.5)
  H / h). Confidence > 0, larger = surer (all ones when not given).

:class:`PointmapNetwork` loads and calls it; the pipeline calls any object with the same
members (``window``, ``memory``, ``input_size`` and ``__call__(frames, positions)``), so a test
can plug in an oracle that returns a synthetic clip's true pointmaps.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from backend.progress import JobError

from . import DEFAULT_WEIGHTS

POSES_DIR = "poses"
EXPORTED = "model.pt2"
TORCHSCRIPT = "model.pt"
CONFIG = "poses.json"
README = "weights/README.md"
DEFAULTS = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "memory": 2}


def _config(path: Path) -> dict:
    if not path.is_file():
        raise JobError(f"no learned pose model: {path} is missing (input size, window and "
                       f"normalisation of the network; see {README})", "missing_weights")
    try:
        cfg = {**DEFAULTS, **json.loads(path.read_text())}
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {path}: {str(exc).splitlines()[0]}", "bad_weights") from exc
    try:
        h, w = (int(v) for v in cfg["input_size"])
        window, memory = int(cfg["window"]), int(cfg["memory"])
        mean = np.asarray(cfg["mean"], np.float32).reshape(3)
        std = np.asarray(cfg["std"], np.float32).reshape(3)
    except (KeyError, TypeError, ValueError) as exc:
        raise JobError(f"{path}: needs input_size [h, w], window and optionally memory, mean, std "
                       f"({exc!r}; see {README})", "bad_weights") from None
    if min(h, w) < 8 or window < 2 or not 1 <= memory < window or (std <= 0).any():
        raise JobError(f"{path}: input_size must be at least 8 px, window >= 2 and 1 <= memory < "
                       f"window, std > 0", "bad_weights")
    return {"input_size": (h, w), "window": window, "memory": memory, "mean": mean, "std": std}


class PointmapNetwork:
    """The exported network of ``weights_dir/poses/`` (see the module docstring)."""

    def __init__(self, weights_dir: str | Path | None = None, device: str = "cpu"):
        import torch

        folder = (Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS) / POSES_DIR
        exported, scripted = folder / EXPORTED, folder / TORCHSCRIPT
        model_file = exported if exported.is_file() else scripted
        if not model_file.is_file():
            raise JobError(f"no learned pose model: {exported} (torch.export) or {scripted} "
                           f"(TorchScript) is missing; see {README}", "missing_weights")
        cfg = _config(folder / CONFIG)
        self.input_size = cfg["input_size"]
        self.window, self.memory = cfg["window"], cfg["memory"]
        self.mean, self.std = cfg["mean"], cfg["std"]
        self.device = device
        try:
            if model_file.suffix == ".pt2":
                self.net = torch.export.load(str(model_file)).module().to(device)
            else:
                self.net = torch.jit.load(str(model_file), map_location=device).eval()
        except Exception as exc:  # torch raises many types for a bad archive
            raise JobError(f"cannot load learned pose model {model_file}: "
                           f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                           "bad_weights") from exc
        self._torch = torch

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """One frame as the network sees it: (3, h, w) float32, resized and normalised."""
        h, w = self.input_size
        if rgb.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if rgb.shape[0] >= h else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (w, h), interpolation=interp)
        x = (rgb.astype(np.float32) / 255.0 - self.mean) / self.std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, frames: list[np.ndarray], positions: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Pointmaps (T, h, w, 3) and confidence (T, h, w) of a window of RGB uint8 frames
        (``positions`` identify the frames; the network does not use them)."""
        torch = self._torch
        h, w = self.input_size
        x = torch.from_numpy(np.stack([self.prepare(f) for f in frames]))[None].to(self.device)
        try:
            with torch.inference_mode():
                y = self.net(x)
        except Exception as exc:
            raise JobError(f"learned pose model failed on a window of {len(frames)} frames at "
                           f"{w}x{h}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                           "bad_model_output") from exc
        pts, conf = (y[0], y[1]) if isinstance(y, (tuple, list)) else (y, None)
        t = len(frames)
        if tuple(pts.shape) != (1, t, h, w, 3):
            raise JobError(f"learned pose model returned pointmaps of shape {tuple(pts.shape)}, "
                           f"expected {(1, t, h, w, 3)}", "bad_model_output")
        pts = pts[0].float().cpu().numpy()
        if conf is None:
            conf = np.ones((t, h, w), np.float32)
        else:
            if tuple(conf.shape) != (1, t, h, w):
                raise JobError(f"learned pose model returned confidence of shape "
                               f"{tuple(conf.shape)}, expected {(1, t, h, w)}", "bad_model_output")
            conf = conf[0].float().cpu().numpy()
        return pts, conf
