"""Per-frame depth for the depth-warp method.

Three kinds of source, each giving one (H, W) float32 map per frame at the frame's size:

- ``metric``: planar depth Z in metres (``--depth`` files, the splat depth of a
  reconstruction); needs the focal length in pixels to become disparity.
- ``disparity``: disparity in pixels of the left image (``x_right = x_left - d``), e.g. the
  ground truth of a rectified pair; used as is (NaN = unknown, filled from the farther side).
- ``relative``: relative inverse depth from a monocular model (larger = nearer, unknown
  scale and offset), mapped onto the disparity budget.

File formats for ``--depth PATH``: a folder of per-frame ``.npy`` (Z, like the synthetic
clips' ``depth/%06d.npy``), ``.npz`` (key ``depth`` or ``disparity``) or float ``.tif``/``.exr``
files in natural order; or one ``.npz`` with a (N, H, W) array ``depth`` or ``disparity``
and optionally ``focal_px``. Non-finite or non-positive depth is unknown (``inf`` is sky).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.progress import JobError

DEPTH_SUFFIXES = (".npy", ".npz", ".tif", ".tiff", ".exr")
#: Where the monocular depth model is looked for, relative to the weights folder: a
#: ``torch.export`` archive (preferred) or a TorchScript file.
MONO_EXPORTED = Path("depth") / "depth_model.pt2"
MONO_MODEL = Path("depth") / "depth_model.pt"
MONO_CONFIG = Path("depth") / "config.json"


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def resize_map(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize a depth-like map to (h, w): nearest for enlargement of sharp edges, area otherwise."""
    if a.shape == (h, w):
        return a.astype(np.float32, copy=False)
    interp = cv2.INTER_NEAREST if (h > a.shape[0] or w > a.shape[1]) else cv2.INTER_AREA
    return cv2.resize(a.astype(np.float32), (w, h), interpolation=interp)


@dataclass
class FileDepth:
    """Depth or disparity read from ``--depth PATH`` (see the module docstring)."""

    path: Path
    kind: str  # "metric" or "disparity"
    focal_px: float | None = None

    def __post_init__(self):
        p = Path(self.path)
        self._stack = None
        self._files: list[Path] = []
        if p.is_dir():
            self._files = sorted((f for f in p.iterdir() if f.suffix.lower() in DEPTH_SUFFIXES),
                                 key=lambda f: _natural_key(f.name))
            if not self._files:
                raise JobError(f"depth folder {p} has no {', '.join(DEPTH_SUFFIXES)} files", "bad_input")
        elif p.suffix.lower() == ".npz" and p.is_file():
            with np.load(p) as z:
                key = "disparity" if "disparity" in z.files else "depth" if "depth" in z.files else None
                if key is None:
                    raise JobError(f"depth file {p} has neither a 'depth' nor a 'disparity' array", "bad_input")
                self._stack = np.asarray(z[key], np.float32)
                if self._stack.ndim == 2:
                    self._stack = self._stack[None]
                if self._stack.ndim != 3:
                    raise JobError(f"depth file {p}: '{key}' must be (N, H, W), got {self._stack.shape}",
                                   "bad_input")
                self.kind = "disparity" if key == "disparity" else "metric"
                if "focal_px" in z.files and self.focal_px is None:
                    self.focal_px = float(np.asarray(z["focal_px"]).ravel()[0])
        else:
            raise JobError(f"depth path {p} is neither a folder nor an .npz file", "bad_input")
        if self.kind == "metric" and self.focal_px is None:
            self.focal_px = _focal_from_cameras(p)

    def __len__(self) -> int:
        return len(self._stack) if self._stack is not None else len(self._files)

    def get(self, index: int, h: int, w: int) -> np.ndarray:
        if index >= len(self):
            raise JobError(f"depth {self.path} has {len(self)} frames; frame {index} has none", "bad_input")
        if self._stack is not None:
            a = self._stack[index]
        else:
            a = _read_map(self._files[index])
        return resize_map(np.asarray(a, np.float32), h, w)


def _read_map(f: Path) -> np.ndarray:
    s = f.suffix.lower()
    try:
        if s == ".npy":
            return np.load(f)
        if s == ".npz":
            with np.load(f) as z:
                key = next((k for k in ("depth", "disparity") if k in z.files), None)
                if key is None:
                    raise JobError(f"depth file {f} has neither 'depth' nor 'disparity'", "bad_input")
                return z[key]
        a = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read depth file {f}: {exc}", "bad_input") from exc
    if a is None:
        raise JobError(f"cannot read depth file {f}", "bad_input")
    return a if a.ndim == 2 else a[..., 0]


def _focal_from_cameras(p: Path) -> float | None:
    """``focal_px`` of the first frame of a cameras.json / truth.json beside or above ``p``."""
    base = p if p.is_dir() else p.parent
    for folder in (base, base.parent):
        for name in ("cameras.json", "truth.json"):
            f = folder / name
            if f.is_file():
                try:
                    frames = json.loads(f.read_text()).get("frames") or []
                    if frames and "focal_px" in frames[0]:
                        return float(frames[0]["focal_px"])
                except (OSError, ValueError):
                    continue
    return None


class MonocularDepth:
    """A monocular relative-depth network from ``weights/depth/``.

    The network is a ``torch.export`` archive ``depth_model.pt2`` (``torch.export.save``; its
    input size must then match ``input_size`` unless exported with dynamic shapes) or a
    TorchScript file ``depth_model.pt`` (``torch.jit.save``); no model code is needed.

    Contract: input (1, 3, h, w) float32 RGB in [0, 1] normalised by ``mean``/``std`` with h, w
    multiples of ``multiple`` and the longer side ``input_size``; output (1, h', w') or
    (1, 1, h', w') relative inverse depth (larger = nearer), resized back to the frame. An
    optional ``weights/depth/config.json`` overrides ``input_size``, ``multiple``, ``mean``,
    ``std`` and ``output`` (``"inverse_depth"`` or ``"depth"``). Depth-Anything-V2-Small
    traced with ``torch.jit.trace`` satisfies it with the defaults.
    """

    defaults = {"input_size": 518, "multiple": 14, "mean": [0.485, 0.456, 0.406],
                "std": [0.229, 0.224, 0.225], "output": "inverse_depth"}

    def __init__(self, weights_dir: str | Path, device: str = "cpu"):
        import torch

        weights_dir = Path(weights_dir)
        exported = weights_dir / MONO_EXPORTED
        model_file = exported if exported.is_file() else weights_dir / MONO_MODEL
        if not model_file.is_file():
            raise JobError(
                f"no monocular depth model: put a depth network at {exported} (torch.export) or "
                f"{weights_dir / MONO_MODEL} (TorchScript), see docs/stereo.md, or pass --depth with "
                f"per-frame depth", "missing_weights",
                hint="e.g. Depth-Anything-V2-Small exported with torch.export and saved with torch.export.save")
        cfg = dict(self.defaults)
        cfg_file = weights_dir / MONO_CONFIG
        if cfg_file.is_file():
            try:
                cfg.update(json.loads(cfg_file.read_text()))
            except ValueError as exc:
                raise JobError(f"bad depth model config {cfg_file}: {exc}", "bad_input") from exc
        if cfg["output"] not in ("inverse_depth", "depth"):
            raise JobError(f"{cfg_file}: output must be inverse_depth or depth", "bad_input")
        self.cfg = cfg
        self.device = device
        try:
            if model_file.suffix == ".pt2":
                self.model = torch.export.load(str(model_file)).module().to(device)
            else:
                self.model = torch.jit.load(str(model_file), map_location=device).eval()
        except Exception as exc:  # torch raises RuntimeError/ValueError subclasses for bad archives
            raise JobError(f"cannot load depth model {model_file}: {str(exc).splitlines()[0]}",
                           "bad_input") from exc
        self._torch = torch

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        m, s = int(self.cfg["multiple"]), float(self.cfg["input_size"])
        k = s / max(h, w)
        return max(m, int(round(h * k / m)) * m), max(m, int(round(w * k / m)) * m)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """Relative inverse depth (H, W) float32 of an RGB uint8 frame."""
        torch = self._torch
        h, w = rgb.shape[:2]
        ih, iw = self.input_size(h, w)
        x = cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = (x - np.float32(self.cfg["mean"])) / np.float32(self.cfg["std"])
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        with torch.inference_mode():
            y = self.model(t)
        if isinstance(y, (tuple, list)):
            y = y[0]
        y = y.float().reshape(y.shape[-2], y.shape[-1]).cpu().numpy()
        if self.cfg["output"] == "depth":
            with np.errstate(divide="ignore"):
                y = np.where(y > 0, 1.0 / y, 0.0).astype(np.float32)
        return cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)
