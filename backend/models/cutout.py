"""Background removal: an exported segmentation network in ``weights/cutout/``.

``model.pt2`` (``torch.export.save`` of an exported program; preferred) or ``model.pt``
(TorchScript), e.g. BiRefNet or RMBG exported without their code. Contract: input
(1, 3, s, s) float32 RGB in [0, 1] normalised by ``mean``/``std`` (``s`` = ``input_size``);
output (1, 1, h, w), (1, h, w) or a tuple/list whose last element is that: foreground
probability in [0, 1] (``"output": "probability"``) or logits (``"output": "logits"``). An
optional ``config.json`` beside it overrides ``input_size`` (1024), ``mean``, ``std``
(ImageNet) and ``output`` (``"probability"``).

A model is a callable ``model(rgb uint8 (H, W, 3)) -> (H, W) float32`` alpha in [0, 1].
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from backend.progress import JobError

from . import DEFAULT_WEIGHTS

CUTOUT_DIR = "cutout"
FILES = ("model.pt2", "model.pt")
README = "weights/README.md"


class ExportedCutout:
    defaults = {"input_size": 1024, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                "output": "probability"}

    def __init__(self, folder: str | Path, device: str = "cpu"):
        import torch

        folder = Path(folder)
        model_file = next((folder / f for f in FILES if (folder / f).is_file()), None)
        if model_file is None:
            raise JobError(f"no background-removal model: {folder / FILES[0]} is missing (see {README})",
                           "missing_weights")
        cfg = dict(self.defaults)
        if (folder / "config.json").is_file():
            try:
                cfg.update(json.loads((folder / "config.json").read_text()))
            except ValueError as exc:
                raise JobError(f"bad cut-out model config {folder / 'config.json'}: {exc}", "bad_weights") from exc
        if cfg["output"] not in ("probability", "logits"):
            raise JobError(f"{folder / 'config.json'}: output must be probability or logits", "bad_weights")
        try:
            if model_file.suffix == ".pt2":
                self.model = torch.export.load(str(model_file)).module().to(device)
            else:
                self.model = torch.jit.load(str(model_file), map_location=device).eval()
        except Exception as exc:  # torch raises several kinds for broken archives
            raise JobError(f"cannot load cut-out model {model_file}: {str(exc).splitlines()[0]}",
                           "bad_weights") from exc
        self.cfg, self.device, self._torch = cfg, device, torch

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        torch = self._torch
        h, w = rgb.shape[:2]
        s = int(self.cfg["input_size"])
        x = cv2.resize(rgb, (s, s), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        x = (x - np.float32(self.cfg["mean"])) / np.float32(self.cfg["std"])
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        with torch.inference_mode():
            y = self.model(t)
        if isinstance(y, (tuple, list)):
            y = y[-1]
        y = y.float()
        if self.cfg["output"] == "logits":
            y = torch.sigmoid(y)
        y = y.reshape(y.shape[-2], y.shape[-1]).clamp(0, 1).cpu().numpy()
        return cv2.resize(y, (w, h), interpolation=cv2.INTER_LINEAR)


def cutout_folder(weights_dir: str | Path | None = None) -> Path:
    return (Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS) / CUTOUT_DIR


def load_cutout_model(weights_dir: str | Path | None = None, device: str = "cpu"):
    """The background-removal model of ``weights_dir/cutout``, or None when there is none."""
    folder = cutout_folder(weights_dir)
    if not any((folder / f).is_file() for f in FILES):
        return None
    return ExportedCutout(folder, device)
