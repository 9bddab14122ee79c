"""Row-wise nearest-valid look-ups, for numpy arrays and torch tensors alike.

Holes left by a horizontal warp are bounded on the left and right by valid pixels of the same
row; the fills and the disparity completion here work from those two neighbours.
"""
from __future__ import annotations

import numpy as np

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None


def _is_torch(a) -> bool:
    return torch is not None and isinstance(a, torch.Tensor)


def nearest_valid_columns(valid):
    """For every pixel, the column of the nearest valid pixel at or left of it and at or right of it.

    ``valid`` (H, W) bool. Returns ``(left, right)`` integer arrays; ``-1`` / ``W`` where a row
    has no valid pixel on that side.
    """
    if _is_torch(valid):
        h, w = valid.shape
        idx = torch.arange(w, device=valid.device).expand(h, w)
        left = torch.where(valid, idx, torch.full_like(idx, -1)).cummax(dim=1).values
        rev = torch.where(valid, w - 1 - idx, torch.full_like(idx, -1)).flip(1).cummax(dim=1).values
        right = (w - 1 - rev).flip(1)
        return left, right
    valid = np.asarray(valid, bool)
    h, w = valid.shape
    idx = np.broadcast_to(np.arange(w), (h, w))
    left = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    right = np.minimum.accumulate(np.where(valid, idx, w)[:, ::-1], axis=1)[:, ::-1]
    return left, right


def take_columns(a, cols):
    """``a[y, cols[y, x]]`` for every pixel; ``cols`` must be in range. ``a`` is (H, W) or (H, W, C)."""
    if _is_torch(a):
        if a.ndim == 3:
            return torch.gather(a, 1, cols[..., None].expand(-1, -1, a.shape[2]))
        return torch.gather(a, 1, cols)
    rows = np.arange(a.shape[0])[:, None]
    return a[rows, cols]
