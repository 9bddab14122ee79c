"""The coarse stage: outpaint the photo, lift it to Gaussians, then walk the trajectory and at
each view render the splats, generate what they do not cover, align its depth to the render's
and add it as Gaussians (VistaDream's warp-and-inpaint, on the project's renderer)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.progress import JobError, Progress

from ..splats_io import Splats
from .lift import align_depth, concat, far_filled, inpaint_mask, lift
from .models import View


@dataclass
class CoarseOptions:
    outpaint: float = 0.15  # border added on each side, as a fraction of the width / height
    margin_px: int = 2  # grown hole and depth-edge band regenerated at each view
    footprint: float = 0.6  # a pixel's Gaussian's standard deviation, in pixels of its view
    min_alpha: float = 0.7  # render coverage under which a pixel is a hole
    device: str = "cpu"


@dataclass
class CoarseResult:
    splats: Splats
    frames: list[np.ndarray]  # uint8 images of the views (the photo first)
    views: list[View]
    far: float  # the far (sky) depth of the photo
    depth_unit: str  # "m" (metric model) or "relative"
    alignment: list[tuple[float, float]]  # (a, b) of each generated view's depth fit
    hole_fraction: list[float]
    strip: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (render with holes, generated)
    photo_depth: np.ndarray | None = None  # depth of the outpainted photo (working units)


def render(splats: Splats, view: View, device: str = "cpu"):
    """``(rgb float [0, 1] (H, W, 3), alpha (H, W), depth (H, W), inf where empty)`` of one view."""
    from ..render import cameras_from_arrays, render_views

    cams = cameras_from_arrays([view.c2w], view.focal, (view.width / 2, view.height / 2),
                               view.width, view.height)
    out = render_views(splats, cams, device=device, batch=1)
    return out["rgb"][0], out["alpha"][0], out["depth"][0]


def outpainted(rgb: np.ndarray, focal: float, models, frac: float) -> tuple[np.ndarray, View, tuple[int, int]]:
    """The photo on a canvas ``frac`` wider on each side (same focal length), the border
    generated; returns it, its view and the border (bx, by)."""
    h, w = rgb.shape[:2]
    bx, by = int(round(w * frac)), int(round(h * frac))
    view = View(np.eye(4), focal, w + 2 * bx, h + 2 * by)
    if bx == 0 and by == 0:
        return rgb.copy(), view, (0, 0)
    canvas = np.zeros((h + 2 * by, w + 2 * bx, 3), np.uint8)
    canvas[by:by + h, bx:bx + w] = rgb
    hole = np.ones(canvas.shape[:2], bool)
    hole[by:by + h, bx:bx + w] = False
    out = np.array(models.inpaint(canvas, hole, view), np.uint8)
    out[by:by + h, bx:bx + w] = rgb
    return out, view, (bx, by)


def _checked_depth(models, rgb, view, what: str) -> np.ndarray:
    d = np.asarray(models.depth(rgb, view), np.float32)
    if d.shape != rgb.shape[:2]:
        raise JobError(f"scene: the depth model returned a {d.shape} map for the {rgb.shape[:2]} {what}",
                       "bad_model_output")
    return d


def start(rgb: np.ndarray, focal: float, models, opts: CoarseOptions, progress: Progress | None = None) -> CoarseResult:
    """The photo outpainted, its depth estimated (far depth for the sky) and lifted to
    Gaussians; its camera at the identity. A relative depth model's depth is scaled so the
    photo's median depth is one unit."""
    progress = progress or Progress()
    h, w = rgb.shape[:2]
    metric = bool(getattr(models, "metric", False))
    progress.stage("outpaint", "outpainting the photo's border")
    wide, wide_view, _ = outpainted(rgb, focal, models, opts.outpaint)
    progress.stage("lift", "depth of the photo")
    try:
        depth, far = far_filled(_checked_depth(models, wide, wide_view, "outpainted photo"))
    except ValueError:
        raise JobError("scene: the depth model found no depth in the photo", "bad_model_output") from None
    if not metric:
        med = float(np.median(depth))
        depth, far = depth / med, far / med
    splats = lift(wide, depth, wide_view, footprint=opts.footprint)
    return CoarseResult(splats, [rgb.copy()], [View(np.eye(4), focal, w, h)], far, "m" if metric else "relative",
                        [], [], photo_depth=depth)


def add_view(result: CoarseResult, view: View, models, opts: CoarseOptions, image: np.ndarray | None = None) -> None:
    """Render the splats at ``view``, take the pixels they do not cover (and a band on their
    depth edges) from ``image`` (a photo) or else from the inpainter, estimate their depth,
    align it to the render's on the rest and add them as Gaussians."""
    col, alpha, rdepth = render(result.splats, view, opts.device)
    mask = inpaint_mask(alpha, rdepth, opts.margin_px, opts.min_alpha)
    shown = np.clip(np.rint(col * 255), 0, 255).astype(np.uint8)
    if image is not None:
        gen = np.asarray(image, np.uint8)
    else:
        gen = np.array(models.inpaint(shown, mask, view), np.uint8) if mask.any() else shown
    a, b = 1.0, 0.0
    if mask.any():
        new_depth = _checked_depth(models, gen, view, "view")
        aligned, a, b = align_depth(new_depth, rdepth, ~mask & (alpha > 0.95))
        aligned = np.where(np.isfinite(aligned) & (aligned > 0), aligned, np.inf)
        if np.isfinite(result.far):
            aligned = np.minimum(aligned, result.far)
        result.splats = concat(result.splats, lift(gen, aligned, view, mask, footprint=opts.footprint))
    result.alignment.append((a, b))
    result.hole_fraction.append(float(mask.mean()))
    marked = shown.copy()
    marked[mask] = (255, 0, 255)
    result.strip.append((marked, gen))
    result.frames.append(gen)
    result.views.append(view)


def walk(result: CoarseResult, cameras: np.ndarray, models, opts: CoarseOptions,
         progress: Progress | None = None) -> CoarseResult:
    """Warp-and-inpaint along ``cameras`` (N, 4, 4, working frame), nearest first."""
    progress = progress or Progress()
    h, w = result.frames[0].shape[:2]
    focal = result.views[0].focal
    progress.stage("warp_inpaint", f"walking {len(cameras)} views")
    for k, c2w in enumerate(cameras):
        add_view(result, View(np.asarray(c2w, np.float64), focal, w, h), models, opts)
        progress.update((k + 1) / len(cameras),
                        f"view {k + 1}/{len(cameras)}: {result.hole_fraction[-1] * 100:.1f}% generated")
    return result
