"""Monocular depth models from ``weights/depth/``: one interface, two formats.

- A **transformers** depth-estimation folder (``config.json`` with a ``model_type``, the
  weights ``model.safetensors`` or ``pytorch_model.bin``, and ``preprocessor_config.json``), as
  written by ``model.save_pretrained(dir)`` and ``processor.save_pretrained(dir)``. Loaded with
  ``AutoModelForDepthEstimation`` / ``AutoImageProcessor`` and ``local_files_only=True``.
  It is **metric** when its config says ``depth_estimation_type: "metric"`` (Depth Anything
  V2 metric), or its type is one that always predicts metres (``depth_pro``, ``zoedepth``,
  ``glpn``); an optional ``splatstage.json`` beside it overrides this with ``{"metric":
  true|false}``. Metric models return depth in metres, relative ones relative inverse depth.
- The **exported** relative-depth network of ``stereo --method warp``
  (``depth_model.pt2`` / ``depth_model.pt``, see :class:`MonocularDepth`): relative inverse
  depth, never metric.

Every model is a callable ``model(rgb, focal_px=None) -> (H, W) float32`` at the frame's size
with attributes ``metric`` (bool) and ``output`` (``"depth"`` or ``"inverse_depth"``), so a
test can plug in a stand-in with the same three members. :func:`metric_depth` turns any metric
model's output into depth in metres.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backend.progress import JobError

from . import DEFAULT_WEIGHTS

DEPTH_DIR = "depth"
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
              "pytorch_model.bin.index.json")
HF_PROCESSOR = "preprocessor_config.json"
OVERRIDES = "splatstage.json"
#: transformers model types that always predict metres.
METRIC_TYPES = ("depth_pro", "zoedepth", "glpn")
README = "weights/README.md"


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JobError(f"cannot read {path}: {str(exc).splitlines()[0]}", "bad_weights") from exc
    if not isinstance(doc, dict):
        raise JobError(f"{path} is not a JSON object", "bad_weights")
    return doc


def depth_folder(weights_dir: str | Path | None = None) -> Path:
    """``weights_dir/depth`` (default: the project's ``weights/``); a folder that itself holds
    a transformers ``config.json`` is taken as is."""
    base = Path(weights_dir) if weights_dir else DEFAULT_WEIGHTS
    return base if (base / HF_CONFIG).is_file() and not (base / DEPTH_DIR).is_dir() else base / DEPTH_DIR


def is_transformers_folder(folder: str | Path) -> bool:
    cfg = Path(folder) / HF_CONFIG
    if not cfg.is_file():
        return False
    try:
        return "model_type" in json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False


def _is_metric(config: dict, overrides: dict) -> bool:
    if "metric" in overrides:
        return bool(overrides["metric"])
    return (config.get("depth_estimation_type") == "metric"
            or config.get("model_type") in METRIC_TYPES)


def has_metric_model(weights_dir: str | Path | None = None) -> bool:
    """True when ``weights/depth/`` holds a metric transformers depth model (reads only the
    JSON files; does not import torch). The automatic metric scale of a solve applies then."""
    folder = depth_folder(weights_dir)
    if not is_transformers_folder(folder):
        return False
    overrides = _read_json(folder / OVERRIDES) if (folder / OVERRIDES).is_file() else {}
    return _is_metric(_read_json(folder / HF_CONFIG), overrides)


class TransformersDepth:
    """A transformers depth-estimation folder (see the module docstring)."""

    def __init__(self, folder: str | Path, device: str = "cpu"):
        folder = Path(folder)
        missing = _missing_files(folder)
        if missing:
            raise JobError(f"no depth model: {missing} is missing (a transformers depth-estimation "
                           f"folder saved with save_pretrained; see {README})", "missing_weights")
        config = _read_json(folder / HF_CONFIG)
        overrides = _read_json(folder / OVERRIDES) if (folder / OVERRIDES).is_file() else {}
        self.folder = folder
        self.model_type = str(config.get("model_type"))
        self.metric = _is_metric(config, overrides)
        self.output = "depth" if self.metric else "inverse_depth"
        if overrides.get("output") in ("depth", "inverse_depth"):
            self.output = overrides["output"]
        self.device = device
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # e.g. "falls back to the PIL image processor"
            try:
                self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
                self.model = AutoModelForDepthEstimation.from_pretrained(
                    folder, local_files_only=True).to(device).eval()
            finally:
                hf_logging.set_verbosity(verbosity)
        except ImportError as exc:
            raise JobError(f"the depth model in {folder} needs the transformers package: {exc}",
                           "missing_dependency") from exc
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise JobError(f"cannot load depth model {folder}: {str(exc).splitlines()[0]}",
                           "bad_weights") from exc
        self._torch = torch

    def inputs(self, rgb: np.ndarray) -> dict:
        """The processor's tensors for one RGB uint8 frame (resized and normalised)."""
        return self.processor(images=np.ascontiguousarray(rgb), return_tensors="pt")

    def __call__(self, rgb: np.ndarray, focal_px: float | None = None) -> np.ndarray:
        """Depth in metres (metric models) or relative inverse depth, (H, W) float32.

        ``focal_px`` (the frame's focal length in pixels, when known) replaces Depth Pro's own
        field-of-view estimate; other models do not use it.
        """
        torch = self._torch
        h, w = rgb.shape[:2]
        inputs = {k: v.to(self.device) for k, v in self.inputs(rgb).items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        raw = out.predicted_depth
        if self.model_type == "depth_pro" and focal_px:
            inv = torch.nn.functional.interpolate(raw.reshape(1, 1, *raw.shape[-2:]).float(),
                                                  size=(h, w), mode="bilinear", align_corners=False)
            y = focal_px / (w * inv.clamp(min=1e-8))
        elif hasattr(self.processor, "post_process_depth_estimation"):
            y = self.processor.post_process_depth_estimation(out, target_sizes=[(h, w)])[0]["predicted_depth"]
        else:
            y = torch.nn.functional.interpolate(raw.reshape(1, 1, *raw.shape[-2:]).float(),
                                                size=(h, w), mode="bilinear", align_corners=False)
        return y.float().reshape(h, w).cpu().numpy()


def _missing_files(folder: Path) -> Path | None:
    if not (folder / HF_CONFIG).is_file():
        return folder / HF_CONFIG
    if not any((folder / name).is_file() for name in HF_WEIGHTS):
        return folder / HF_WEIGHTS[0]
    if not (folder / HF_PROCESSOR).is_file():
        return folder / HF_PROCESSOR
    return None


class ExportedDepth:
    """The exported relative-depth network of ``stereo`` behind this module's interface."""

    metric = False
    output = "inverse_depth"

    def __init__(self, weights_dir: str | Path, device: str = "cpu"):
        from backend.pipelines.stereo.depth import MonocularDepth

        self.net = MonocularDepth(weights_dir, device=device)

    def __call__(self, rgb: np.ndarray, focal_px: float | None = None) -> np.ndarray:
        return self.net(rgb)


def load_depth_model(weights_dir: str | Path | None = None, device: str = "cpu",
                     require_metric: bool = False):
    """The depth model under ``weights_dir`` (default ``weights/``): the transformers folder
    ``depth/`` when it has a transformers ``config.json``, else the exported network
    ``depth/depth_model.pt2`` (or ``.pt``). Raises JobError ``missing_weights`` naming the
    missing file, or ``not_metric`` when ``require_metric`` and the model is relative."""
    folder = depth_folder(weights_dir)
    base = folder.parent
    from backend.pipelines.stereo.depth import MONO_EXPORTED, MONO_MODEL

    if is_transformers_folder(folder):
        model = TransformersDepth(folder, device)
    elif not require_metric and ((base / MONO_EXPORTED).is_file() or (base / MONO_MODEL).is_file()):
        model = ExportedDepth(base, device)
    elif require_metric:
        raise JobError(f"no metric depth model: {folder / HF_CONFIG} is missing (a transformers "
                       f"depth-estimation folder such as Depth Anything V2 metric or Depth Pro; "
                       f"see {README})", "missing_weights")
    else:
        raise JobError(f"no depth model: {folder / HF_CONFIG} (a transformers depth-estimation "
                       f"folder) or {base / MONO_EXPORTED} is missing; see {README}",
                       "missing_weights")
    if require_metric and not model.metric:
        raise JobError(f"the depth model in {folder} predicts relative depth; a metric one is "
                       f"needed (config depth_estimation_type \"metric\", or {OVERRIDES} with "
                       f"{{\"metric\": true}}; see {README})", "not_metric")
    return model


def metric_depth(model, rgb: np.ndarray, focal_px: float | None = None) -> np.ndarray:
    """Depth in metres (H, W) float32 from a metric model; NaN where it predicts none."""
    if not getattr(model, "metric", False):
        raise JobError("the depth model is not metric", "not_metric")
    y = np.asarray(model(rgb, focal_px), np.float32)
    if y.shape != rgb.shape[:2]:
        raise JobError(f"the depth model returned a {y.shape} map for a {rgb.shape[:2]} frame",
                       "bad_model_output")
    if getattr(model, "output", "depth") == "inverse_depth":
        with np.errstate(divide="ignore", invalid="ignore"):
            y = 1.0 / y
    return np.where(np.isfinite(y) & (y > 0), y, np.nan).astype(np.float32)
