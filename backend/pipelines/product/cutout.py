"""Stage 1: the product cut out of its photo, centred and cropped over neutral grey.

The cut-out is the photo's alpha channel when it has one; else the background-removal model
of ``weights/cutout/`` when present; else OpenCV's GrabCut seeded by a box (default: the
centre 80 % of the photo).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.progress import JobError

MIN_SIDE = 64  # px: a smaller photo holds too little of the product to generate views from
MIN_FRACTION = 0.005  # of the photo: a smaller cut-out is "nothing found"
GREY = 0.5


def read_photo(path: str | Path) -> np.ndarray:
    """The photo as uint8 RGB (H, W, 3) or RGBA (H, W, 4); JobError for unreadable or tiny ones."""
    path = Path(path)
    if not path.is_file():
        raise JobError(f"photo not found: {path}", "bad_input")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise JobError(f"cannot read photo {path} (not an image OpenCV can decode)", "bad_input")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if min(img.shape[:2]) < MIN_SIDE:
        raise JobError(f"photo {path} is {img.shape[1]}x{img.shape[0]} px; at least {MIN_SIDE} px a side "
                       f"is needed", "bad_input")
    code = cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(img, code)


def parse_box(text: str | None, width: int, height: int) -> tuple[int, int, int, int]:
    """``x0,y0,x1,y1`` in pixels (default: the centre 80 %), checked against the photo."""
    if text is None:
        return (round(0.1 * width), round(0.1 * height), round(0.9 * width), round(0.9 * height))
    try:
        x0, y0, x1, y1 = (int(round(float(v))) for v in str(text).split(","))
    except ValueError:
        raise JobError(f"--box must be x0,y0,x1,y1 in pixels, got {text!r}", "bad_params") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height) or x1 - x0 < 8 or y1 - y0 < 8:
        raise JobError(f"--box {text} does not fit inside the {width}x{height} photo", "bad_params")
    return x0, y0, x1, y1


def grabcut(rgb: np.ndarray, box, iterations: int = 5) -> np.ndarray:
    """Foreground mask (H, W) bool by GrabCut seeded with ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    mask = np.zeros(rgb.shape[:2], np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return np.zeros(rgb.shape[:2], bool)  # e.g. a flat box: no colour model to fit
    fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    return _largest_component(fg)


def _largest_component(fg: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(fg, bool)
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == keep


def separable(fg: np.ndarray, box) -> bool:
    """Whether GrabCut separated an object: enough pixels, and not (nearly) the whole box."""
    x0, y0, x1, y1 = box
    area = fg.sum()
    return area >= MIN_FRACTION * fg.size and area <= 0.97 * (x1 - x0) * (y1 - y0)


def cut_out(photo: np.ndarray, box=None, model=None, name: str = "photo") -> tuple[np.ndarray, str]:
    """``(alpha (H, W) float32 in [0, 1], method)`` for an RGB or RGBA photo."""
    h, w = photo.shape[:2]
    if photo.shape[2] == 4:
        alpha = photo[..., 3].astype(np.float32) / 255.0
        if (alpha > 0.5).mean() < MIN_FRACTION:
            raise JobError(f"{name}: its alpha channel is (nearly) empty; no product to cut out", "bad_input")
        return alpha, "alpha"
    rgb = photo[..., :3]
    if model is not None:
        alpha = np.clip(np.asarray(model(rgb), np.float32), 0, 1)
        if alpha.shape != (h, w):
            raise JobError(f"the cut-out model returned a {alpha.shape} mask for a {w}x{h} photo",
                           "bad_model_output")
        if (alpha > 0.5).mean() < MIN_FRACTION:
            raise JobError(f"{name}: the background-removal model found no product", "bad_input")
        return alpha, "model"
    box = box if isinstance(box, tuple) else parse_box(box, w, h)
    fg = grabcut(rgb, box)
    if not separable(fg, box):
        raise JobError(f"{name}: GrabCut found no object separable from the background inside the box "
                       f"{','.join(map(str, box))}; give --box around the product or a photo with an alpha "
                       f"channel", "bad_input")
    alpha = cv2.GaussianBlur(fg.astype(np.float32), (3, 3), 0)  # soften the hard cut by one pixel
    return alpha, "grabcut"


def centre_crop(rgb: np.ndarray, alpha: np.ndarray, size: int, fill: float = 0.85,
                grey: float = GREY) -> tuple[np.ndarray, np.ndarray]:
    """The product centred in a ``size`` x ``size`` square over ``grey``, its longer side
    ``fill`` of the square. Returns (RGB uint8, alpha float32)."""
    ys, xs = np.nonzero(alpha > 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(x1 - x0, y1 - y0) / fill
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    s = size / side
    M = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    a = cv2.warpAffine(alpha.astype(np.float32), M, (size, size), flags=interp, borderValue=0)
    c = cv2.warpAffine(rgb.astype(np.float32) / 255.0, M, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    a = np.clip(a, 0, 1)
    out = c * a[..., None] + grey * (1 - a[..., None])
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8), a
