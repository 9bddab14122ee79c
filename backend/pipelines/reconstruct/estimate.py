"""How long splat training will take on the CPU, told before it starts.

A short timed warm-up: one training step's forward and backward pass (the PyTorch rasterizer
and the photometric loss) on a synthetic splat set, at a quarter and at half of the training
size. A per-step cost ``fixed + per_pixel * pixels`` fitted to the two is summed over the
training schedule, so coarse-to-fine steps count at their own size. The synthetic set
(:data:`N_GAUSSIANS` Gaussians covering each pixel about :data:`DEPTH_COMPLEXITY` times) stands
in for a scene part-way through training; the estimate is meant to tell minutes from hours,
and the progress lines' rate-based ETA takes over once training runs.

:func:`warn_if_slow` sends a warning through the job's progress when the estimate is over
:data:`LIMIT_S`, proposing the job's faster options and the training size that would fit.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from backend.progress import Progress

#: Training estimated above this many seconds gets a warning before it starts.
LIMIT_S = 600.0
N_GAUSSIANS = 30_000
DEPTH_COMPLEXITY = 8.0
#: The smallest training size proposed instead (long side, px).
MIN_TRAIN_SIZE = 160


@dataclass(frozen=True)
class StepCost:
    """Seconds of one training step: ``fixed_s + per_pixel_s * width * height``."""

    fixed_s: float
    per_pixel_s: float

    def step_seconds(self, width: int, height: int) -> float:
        return self.fixed_s + self.per_pixel_s * width * height


def _synthetic_set(width: int, height: int, sh_degree: int, seed: int = 0):
    """Gaussians in front of an identity camera (OpenCV axes) with focal ``0.9 * width``."""
    g = torch.Generator().manual_seed(seed)
    n, f = N_GAUSSIANS, 0.9 * width
    z = 2.0 + 4.0 * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * z * width / f
    y = (torch.rand(n, generator=g) - 0.5) * z * height / f
    r_px = math.sqrt(DEPTH_COMPLEXITY * width * height / (math.pi * n))
    scales = (r_px * z / f / 2.0)[:, None].expand(n, 3).clone()
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    opac = 0.2 + 0.6 * torch.rand(n, generator=g)
    colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    means = torch.stack([x, y, z], 1)
    return [t.requires_grad_(True) for t in (means, quats, scales, opac, colors)]


def _time_step(params, width: int, height: int, sh_degree: int) -> float:
    from .losses import photometric_loss
    from .raster_torch import rasterize

    means, quats, scales, opac, colors = params
    f = 0.9 * width  # the set was laid out for 0.9 * full_w: it shrinks with the image
    K = torch.tensor([[[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]]])
    target = torch.full((height, width, 3), 0.5)
    t = time.perf_counter()
    img, _, _ = rasterize(means, quats, scales, opac, colors, torch.eye(4)[None], K, width, height,
                          sh_degree=sh_degree)
    photometric_loss(img[0], target).backward()
    return time.perf_counter() - t


def measure_step_cost(width: int, height: int, sh_degree: int = 3) -> StepCost:
    """Time a training step at a quarter and at half of ``width`` x ``height`` (a few seconds
    at 1600 px on two cores) and fit the per-step cost."""
    params = _synthetic_set(width, height, sh_degree)
    sizes = [(max(16, width // d), max(16, height // d)) for d in (4, 2)]
    _time_step(params, *sizes[0], sh_degree)  # warm-up: first-call allocations
    (w1, h1), (w2, h2) = sizes
    t1 = _time_step(params, w1, h1, sh_degree)
    t2 = _time_step(params, w2, h2, sh_degree)
    per_px = max(0.0, (t2 - t1) / max(1, w2 * h2 - w1 * h1))
    return StepCost(max(0.0, t1 - per_px * w1 * h1), per_px)


def train_seconds(cost: StepCost, cfg, width: int, height: int) -> float:
    """Estimated seconds of ``cfg.steps`` steps at ``width`` x ``height`` (the schedule's
    downscale per step, :meth:`TrainConfig.downscale_at`)."""
    total = 0.0
    for step in range(cfg.steps):
        ds = cfg.downscale_at(step)
        total += cost.step_seconds(max(1, int(width / ds)), max(1, int(height / ds)))
    return total


def _fmt(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fitting_size(cost: StepCost, cfg, width: int, height: int, limit_s: float = LIMIT_S) -> int | None:
    """The largest training size (long side, multiple of 16) whose estimate is within
    ``limit_s``, or None when even :data:`MIN_TRAIN_SIZE` is not."""
    long_side = max(width, height)
    size = (long_side // 16) * 16
    while size >= MIN_TRAIN_SIZE:
        s = size / long_side
        if train_seconds(cost, cfg, max(1, round(width * s)), max(1, round(height * s))) <= limit_s:
            return size
        size -= 16
    return None


def slow_training_warning(cost: StepCost, cfg, width: int, height: int, faster: str,
                          limit_s: float = LIMIT_S) -> tuple[float, str | None]:
    """``(estimated seconds, warning or None)``; the warning names ``faster`` (the job's fast
    option, e.g. ``--preview``) and the ``--train-size`` that would fit in ``limit_s``."""
    est = train_seconds(cost, cfg, width, height)
    if est <= limit_s:
        return est, None
    msg = (f"training on the CPU is estimated at {_fmt(est)} ({cfg.steps} steps at {width}x{height}); "
           f"for a faster result use {faster}")
    size = fitting_size(cost, cfg, width, height, limit_s)
    if size is not None and size < max(width, height):
        s = size / max(width, height)
        fit = train_seconds(cost, cfg, round(width * s), round(height * s))
        msg += f", or --train-size {size} (about {_fmt(fit)})"
    return est, msg


def warn_if_slow(progress: Progress, cfg, width: int, height: int, faster: str,
                 cost: StepCost | None = None) -> float:
    """Estimate CPU training of ``cfg`` at ``width`` x ``height`` (timing a warm-up unless
    ``cost`` is given), warn through ``progress`` when it is over :data:`LIMIT_S`; returns the
    estimate in seconds."""
    if cost is None:
        progress.stage("check", "timing a training step for the CPU estimate")
        cost = measure_step_cost(width, height, cfg.sh_degree)
    est, msg = slow_training_warning(cost, cfg, width, height, faster)
    if msg:
        progress.warn(msg)
    return est
