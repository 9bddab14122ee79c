"""Gaussian-splat reconstruction from a camera solve (see :func:`reconstruct`)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from backend.progress import JobError, Progress

from .cache import cache_dir
from .frames import load_frames
from .outputs import splat_payload, write_outputs, write_refined_cameras
from .scene import load_solve
from .trainer import TrainConfig, TrainResult, train


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_dir_for(solve_dir: Path, cfg: TrainConfig, input_path: Path) -> Path:
    key = json.dumps([str(Path(solve_dir).resolve()), str(input_path), cfg.fingerprint()])
    return cache_dir() / "reconstruct" / hashlib.sha256(key.encode()).hexdigest()[:20]


def load_solve_and_frames(solve_dir, input_path, max_size, device, frames_budget_gb: float, progress: Progress):
    """``(solve, footage path, frames)``: the camera solve and its frames at the training size."""
    progress.stage("load", "reading the camera solve")
    solve = load_solve(solve_dir)
    src = Path(input_path) if input_path else solve.input_path()
    if src is None:
        raise JobError(f"{solve.path} does not record its footage; pass the video or image folder",
                       code="bad_input")
    frames = load_frames(src, solve.sources, solve.width, solve.height, solve.K, solve.k1, solve.k2,
                         max_size=max_size, device=device, device_budget_gb=frames_budget_gb,
                         progress=progress)
    return solve, src, frames


def reconstruct(solve_dir: str | Path, out_dir: str | Path, cfg: TrainConfig | None = None,
                device: str | None = None, input_path: str | Path | None = None,
                max_size: int | None = 1600, frames_budget_gb: float = 4.0,
                checkpoint_dir: str | Path | None = None, progress: Progress | None = None):
    """Train splats for the solve in ``solve_dir`` and write them into ``out_dir``.

    Writes splats.ply, splats.splat, metrics.json, holdout.png (and cameras_refined.json with
    camera refinement). Returns ``(files, payload arrays, metrics, TrainResult)``.
    """
    cfg = cfg or TrainConfig()
    progress = progress or Progress()
    device = device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise JobError("--device cuda asked for, but no CUDA device is available", code="bad_params")
    solve, src, frames = load_solve_and_frames(solve_dir, input_path, max_size, device, frames_budget_gb, progress)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else checkpoint_dir_for(Path(solve_dir), cfg, src)
    result: TrainResult = train(solve, frames, cfg, device=device, checkpoint_dir=ckpt, progress=progress)
    result.metrics["frames_on_device"] = frames.on_device
    out_dir = Path(out_dir)
    progress.stage("write", "writing splats")
    files = write_outputs(out_dir, result.splats, result.metrics, result.strip)
    if cfg.refine_cameras:
        write_refined_cameras(solve, result.viewmats, out_dir / "cameras_refined.json")
        files.append("cameras_refined.json")
    return files, splat_payload(result.splats), result.metrics, result


__all__ = ["reconstruct", "TrainConfig", "default_device", "cache_dir"]
