"""Depth-warp stereo for any clip: per-frame depth -> disparity -> warp -> fill -> right eye.

For every frame t of the clip (the left eye):

1. its depth becomes disparity (:mod:`.disparity`): metric depth with the interaxial, focal
   length and convergence plane; relative inverse depth mapped onto the disparity budget;
   or disparity as given. The budget scale (and a relative source's normalisation range)
   is taken over the frames within ``temporal_radius`` of t, so it changes smoothly;
2. the left frame is forward-warped to the right eye with z-buffered splatting (numpy on
   the CPU, torch on ``device``), leaving holes where the right eye sees what the left
   does not (the occlusion mask);
3. holes are filled from neighbouring frames (:mod:`.temporal`), then spatially (:mod:`.fill`;
   ``fill="background"`` depth-aware OpenCV inpainting, ``"rows"`` the background row fill,
   which runs on the GPU too, ``"cv2"`` plain OpenCV inpainting, ``"diffusers"`` an
   inpainting model from ``weights/``, colour-matched to its surroundings).

Frames stream through :func:`.chunks.chunks`, so memory is bounded by ``chunk + 2 *
temporal_radius`` frames and the result does not depend on the chunk size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from backend.pipelines.stereo.chunks import chunks
from backend.pipelines.stereo.disparity import budget_scale, complete_disparity, disparity_from_depth
from backend.pipelines.stereo.fill import fill_background, inpaint_background, inpaint_cv2
from backend.pipelines.stereo.temporal import temporal_fill
from backend.pipelines.stereo.warp import behind_edges, warp_right
from backend.progress import JobError, Progress

FILLS = ("background", "rows", "cv2", "diffusers")


@dataclass
class WarpSettings:
    """Settings of the depth-warp method.

    ``interaxial`` (metres) and ``convergence`` (metres; default: the median depth of the
    first frame) apply to metric depth; for relative depth ``convergence`` is the fraction of
    the near..far range put on the screen plane (default 0.5). ``max_disparity`` (px) is the
    budget: relative depth spans it; metric depth and given disparity are scaled down to fit
    it (default for relative depth: 3% of the width; otherwise no limit). ``device`` is
    ``"numpy"`` (the CPU numpy warp) or a torch device (``"cuda"``, ``"cpu"``) for the torch warp.
    ``edge_px`` pixels on the background side of disparity jumps over ``edge_jump`` px are left
    out of the warp and filled like disocclusions (:func:`.warp.behind_edges`); off by default:
    it helps where colour edges are blurred across the depth edge (Middlebury Cones: +0.3 dB
    in the disoccluded region) and costs where they are not (synthetic clip: -0.6 dB).
    """

    interaxial: float = 0.065
    convergence: float | None = None
    max_disparity: float | None = None
    temporal_radius: int = 2
    fill: str = "background"
    chunk: int = 16
    device: str = "numpy"
    z_tol: float = 0.5
    edge_px: int = 0
    edge_jump: float = 3.0

    def validate(self) -> None:
        if not self.interaxial >= 0:
            raise JobError(f"interaxial must be >= 0, got {self.interaxial}", "bad_params")
        if self.convergence is not None and not self.convergence > 0:
            raise JobError(f"convergence must be > 0, got {self.convergence}", "bad_params")
        if self.max_disparity is not None and not self.max_disparity > 0:
            raise JobError(f"max disparity must be > 0 px, got {self.max_disparity}", "bad_params")
        if self.fill not in FILLS:
            raise JobError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}", "bad_params")
        if not 0 <= self.temporal_radius <= 8 or self.chunk < 1:
            raise JobError("temporal radius must be in [0, 8] and chunk >= 1", "bad_params")
        if not 0 <= self.edge_px <= 8:
            raise JobError(f"edge px must be in [0, 8], got {self.edge_px}", "bad_params")


@dataclass
class EyeResult:
    """The synthesised right eye of one frame and what produced it."""

    index: int
    left: np.ndarray  # (H, W, 3) uint8
    right: np.ndarray  # (H, W, 3) uint8
    warped: np.ndarray  # (H, W, 3) float32 (uint8 from the device-only path), before filling
    hole: np.ndarray  # (H, W) bool, the occlusion mask
    disparity: np.ndarray  # (H, W) float32
    temporal_filled: int


#: ``depth_fn(index, rgb) -> (kind, map)`` with kind "metric", "disparity" or "relative".
DepthFn = Callable[[int, np.ndarray], tuple[str, np.ndarray]]


class _Disparities:
    """Turns the raw depth of a chunk's frames into disparity for one core frame."""

    def __init__(self, settings: WarpSettings, focal_px: float | None, width: int):
        self.s = settings
        self.focal_px = focal_px
        self.width = width
        self.convergence = settings.convergence
        self.kind: str | None = None

    def unit(self, kind: str, raw: np.ndarray, valid_known: bool = True) -> np.ndarray:
        """Disparity before the budget scale (metric/disparity) or normalised inverse depth (relative)."""
        if self.kind is None:
            self.kind = kind
        elif kind != self.kind:
            raise JobError(f"depth source changed kind from {self.kind} to {kind}", "bad_input")
        if kind == "metric":
            if self.focal_px is None:
                raise JobError("metric depth needs a focal length: pass --focal-px or put cameras.json "
                               "beside the depth files", "bad_params")
            if self.convergence is None:
                z = raw[np.isfinite(raw) & (raw > 0)]
                self.convergence = float(np.median(z)) if z.size else None
            d = disparity_from_depth(raw, self.focal_px, self.s.interaxial, self.convergence)
            return complete_disparity(d) if not np.isfinite(d).all() else d
        if kind == "disparity":
            d = np.asarray(raw, np.float32)
            return d if np.isfinite(d).all() else complete_disparity(d)
        if kind == "relative":
            return np.asarray(raw, np.float32)
        raise JobError(f"unknown depth kind {kind!r}", "bad_input")

    def stats(self, unit: np.ndarray):
        """Per-frame statistic the window combines: (p1, p99) of relative depth, else the budget scale.

        Percentiles are taken on every 4th pixel of every 4th row: plenty for a robust range.
        """
        sub = unit[::4, ::4]
        if self.kind == "relative":
            v = sub[np.isfinite(sub)]
            if v.size == 0:
                raise JobError("the depth model returned no finite value", "bad_input")
            lo, hi = np.percentile(v, [1.0, 99.0])
            return float(lo), float(hi)
        return budget_scale(sub, self.s.max_disparity) if self.s.max_disparity else 1.0

    def for_frame(self, units: list[np.ndarray], stats: list, centre: int) -> Callable[[int], np.ndarray]:
        """Disparity maker for frames of ``units`` consistent with the core frame ``centre``."""
        k = self.s.temporal_radius
        window = stats[max(0, centre - k): centre + k + 1]
        if self.kind == "relative":
            cf = 0.5 if self.convergence is None else float(self.convergence)
            budget = self.s.max_disparity or 0.03 * self.width
            lo = float(np.median([a for a, _ in window]))
            hi = float(np.median([b for _, b in window]))
            span = max(hi - lo, 1e-12)
            return lambda i: (budget * (np.clip((units[i] - lo) / span, 0.0, 1.0) - cf)).astype(np.float32)
        scale = np.float32(min(window))
        m = self.s.max_disparity
        if m:
            return lambda i: np.clip(units[i] * scale, -m, m)
        return lambda i: units[i] * scale


def _warp(left_u8: np.ndarray, disp: np.ndarray, settings: WarpSettings):
    if settings.device == "numpy":
        valid = ~behind_edges(disp, settings.edge_px, settings.edge_jump) if settings.edge_px else None
        out = warp_right(left_u8.astype(np.float32), disp, valid=valid, z_tol=settings.z_tol)
        return out.image, out.hole, out.z
    import torch

    dev = torch.device(settings.device)
    d = torch.from_numpy(disp).to(dev)
    valid = ~behind_edges(d, settings.edge_px, settings.edge_jump) if settings.edge_px else None
    out = warp_right(torch.from_numpy(left_u8).to(dev).float(), d, valid=valid, z_tol=settings.z_tol)
    if settings.fill == "rows" and settings.temporal_radius == 0:
        # everything on the device; only 8-bit images and the mask come back
        filled = fill_background(out.image, out.hole, out.z)
        u8 = lambda t: t.round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # noqa: E731
        return u8(filled), out.hole.cpu().numpy(), None, u8(out.image)
    return out.image.cpu().numpy(), out.hole.cpu().numpy(), out.z.cpu().numpy()


def synthesize(left: np.ndarray, disp: np.ndarray, neighbours, settings: WarpSettings,
               inpainter=None, index: int = 0) -> EyeResult:
    """The right eye of one frame from its left image, disparity and (left, disparity) neighbours."""
    res = _warp(left, disp, settings)
    if len(res) == 4:  # filled on the device already
        right, hole, _, warped = res
        return EyeResult(index, left, right, warped, hole, disp, 0)
    warped, hole, z = res
    image, remaining, n_temporal = warped, hole, 0
    if settings.temporal_radius and neighbours and hole.any():
        image, remaining, n_temporal = temporal_fill(warped, hole, z, left, neighbours, z_tol=1.5)
    if remaining.any():
        if settings.fill == "background":
            image = inpaint_background(image, remaining, z)
        elif settings.fill == "rows":
            image = fill_background(image, remaining, z)
        elif settings.fill == "cv2":
            image = inpaint_cv2(image, remaining)
        else:
            image = inpainter(image, remaining)
    right = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return EyeResult(index, left, right, warped, hole, disp, n_temporal)


def depth_warp_stereo(frames: Iterable[np.ndarray], depth_fn: DepthFn, settings: WarpSettings,
                      focal_px: float | None = None, progress: Progress | None = None,
                      total: int | None = None, inpainter=None) -> Iterable[EyeResult]:
    """Yield an :class:`EyeResult` per frame of ``frames`` (RGB uint8), in order."""
    settings.validate()
    if settings.fill == "diffusers" and inpainter is None:
        raise JobError("fill 'diffusers' needs an inpainting model (see docs/stereo.md)", "bad_params")
    k = settings.temporal_radius
    maker: _Disparities | None = None
    for ch in chunks(enumerate(frames), settings.chunk, k):
        idx = [i for i, _ in ch.items]
        lefts = [np.ascontiguousarray(f) for _, f in ch.items]
        for f in lefts:
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8 or f.shape != lefts[0].shape:
                raise JobError(f"frame {idx[0]}: frames must be equally sized RGB uint8 images", "bad_input")
        h, w = lefts[0].shape[:2]
        if maker is None:
            maker = _Disparities(settings, focal_px, w)
        units = []
        for i, f in zip(idx, lefts):
            kind, raw = depth_fn(i, f)
            if raw.shape != (h, w):
                raise JobError(f"depth of frame {i} is {raw.shape}, the frame is {(h, w)}", "bad_input")
            units.append(maker.unit(kind, raw))
        stats = [maker.stats(u) for u in units]
        for t in ch.core():
            if progress is not None:
                progress.check()
            c = ch.local(t)
            disp_of = maker.for_frame(units, stats, c)
            order = [c + s * j for j in range(1, k + 1) for s in (-1, 1)]
            neighbours = [(lefts[o], disp_of(o)) for o in order if 0 <= o < len(lefts)]
            yield synthesize(lefts[c], disp_of(c), neighbours, settings, inpainter, t)
            if progress is not None:
                frac = (t + 1) / total if total else 0.0
                progress.update(frac, f"frame {t + 1}" + (f"/{total}" if total else ""))
