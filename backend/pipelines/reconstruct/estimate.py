"""How long splat training will take on the CPU, told before it starts.

A calibrated per-pixel step cost, timed on this machine: one training step's forward and
backward pass (the PyTorch rasterizer and the photometric loss) on a small synthetic splat
image of :data:`REF_SIZE`, whose Gaussians (:data:`GAUSSIANS_PER_PIXEL`, each about
:data:`RADIUS_PX` px across in radius) give every pixel the overlap of a scene part-way
through training. The CPU rasterizer's work is per pixel and overlapping Gaussian, so a step
at another size costs in proportion to its pixels; the estimate sums that over the training
schedule (coarse-to-fine steps at their own size). It tells minutes from hours; once training
runs, the progress lines' rate-based ETA takes over.

:func:`warn_if_slow` sends a warning through the job's progress when the estimate is over
:data:`LIMIT_S`, proposing the job's faster options and the training size that would fit.
"""
from __future__ import annotations

import math
import time

import torch

from backend.progress import Progress

#: Training estimated above this many seconds gets a warning before it starts.
LIMIT_S = 600.0
REF_SIZE = (256, 144)
GAUSSIANS_PER_PIXEL = 0.02
RADIUS_PX = 10.0
#: A per-pixel step cost beyond any machine's (7x the 2-core CI box's while it was loaded
#: twentyfold): training within the limit even at this cost is not timed.
MAX_PIXEL_STEP_S = 1e-3
#: The smallest training size proposed instead (long side, px).
MIN_TRAIN_SIZE = 160


def _synthetic_set(width: int, height: int, sh_degree: int, seed: int = 0):
    """Gaussians in front of an identity camera (OpenCV axes) with focal ``0.9 * width``."""
    g = torch.Generator().manual_seed(seed)
    n, f = max(1, int(GAUSSIANS_PER_PIXEL * width * height)), 0.9 * width
    z = 2.0 + 4.0 * torch.rand(n, generator=g)
    x = (torch.rand(n, generator=g) - 0.5) * z * width / f
    y = (torch.rand(n, generator=g) - 0.5) * z * height / f
    scales = (RADIUS_PX / 3.0 * z / f)[:, None].expand(n, 3).clone()  # 3 sigma = RADIUS_PX
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    opac = 0.2 + 0.6 * torch.rand(n, generator=g)
    colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.3
    means = torch.stack([x, y, z], 1)
    return [t.requires_grad_(True) for t in (means, quats, scales, opac, colors)]


def _time_step(params, width: int, height: int, sh_degree: int) -> float:
    from .losses import photometric_loss
    from .raster_torch import rasterize

    means, quats, scales, opac, colors = params
    f = 0.9 * width
    K = torch.tensor([[[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]]])
    target = torch.full((height, width, 3), 0.5)
    t = time.perf_counter()
    img, _, _ = rasterize(means, quats, scales, opac, colors, torch.eye(4)[None], K, width, height,
                          sh_degree=sh_degree)
    photometric_loss(img[0], target).backward()
    return time.perf_counter() - t


def measure_pixel_step_cost(sh_degree: int = 3) -> float:
    """Seconds per pixel of one training step on this machine (two steps at :data:`REF_SIZE` measure it)."""
    w, h = REF_SIZE
    params = _synthetic_set(w, h, sh_degree)
    _time_step(params, w, h, sh_degree)  # warm-up: first-call allocations
    return _time_step(params, w, h, sh_degree) / (w * h)


def train_seconds(per_pixel_s: float, cfg, width: int, height: int) -> float:
    """Estimated seconds of ``cfg.steps`` steps at ``width`` x ``height`` (the schedule's
    downscale per step, :meth:`TrainConfig.downscale_at`)."""
    pixels = 0.0
    for step in range(cfg.steps):
        ds = cfg.downscale_at(step)
        pixels += max(1, int(width / ds)) * max(1, int(height / ds))
    return per_pixel_s * pixels


def _fmt(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def fitting_size(per_pixel_s: float, cfg, width: int, height: int, limit_s: float = LIMIT_S) -> int | None:
    """The largest training size (long side, multiple of 16) whose estimate is within
    ``limit_s``, or None when even :data:`MIN_TRAIN_SIZE` is not."""
    long_side = max(width, height)
    est = train_seconds(per_pixel_s, cfg, width, height)
    size = int(long_side * math.sqrt(limit_s / est) // 16 * 16) if est > 0 else long_side
    size = min(size, long_side // 16 * 16)
    while size >= MIN_TRAIN_SIZE and train_seconds(
            per_pixel_s, cfg, round(width * size / long_side), round(height * size / long_side)) > limit_s:
        size -= 16  # the schedule's integer image sizes are not exactly proportional
    return size if size >= MIN_TRAIN_SIZE else None


def slow_training_warning(per_pixel_s: float, cfg, width: int, height: int, faster: str,
                          limit_s: float = LIMIT_S) -> tuple[float, str | None]:
    """``(estimated seconds, warning or None)``; the warning names ``faster`` (the job's fast
    option, e.g. ``--preview``) and the ``--train-size`` that would fit in ``limit_s``."""
    est = train_seconds(per_pixel_s, cfg, width, height)
    if est <= limit_s:
        return est, None
    msg = (f"training on the CPU is estimated at {_fmt(est)} ({cfg.steps} steps at {width}x{height}); "
           f"for a faster result use {faster}")
    size = fitting_size(per_pixel_s, cfg, width, height, limit_s)
    if size is not None:
        s = size / max(width, height)
        fit = train_seconds(per_pixel_s, cfg, round(width * s), round(height * s))
        msg += f", or --train-size {size} (about {_fmt(fit)})"
    return est, msg


def warn_if_slow(progress: Progress, cfg, width: int, height: int, faster: str,
                 per_pixel_s: float | None = None) -> float | None:
    """Estimate CPU training of ``cfg`` at ``width`` x ``height`` (timing this machine unless
    ``per_pixel_s`` is given) and warn through ``progress`` when it is over :data:`LIMIT_S`;
    returns the estimate in seconds (None for training too small to time: under the limit
    even at :data:`MAX_PIXEL_STEP_S`)."""
    if per_pixel_s is None:
        if train_seconds(MAX_PIXEL_STEP_S, cfg, width, height) <= LIMIT_S:
            return None
        progress.stage("check", "timing a training step for the CPU estimate")
        per_pixel_s = measure_pixel_step_cost(cfg.sh_degree)
    est, msg = slow_training_warning(per_pixel_s, cfg, width, height, faster)
    if msg:
        progress.warn(msg)
    return est
