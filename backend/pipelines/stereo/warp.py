"""Forward warping with z-buffered bilinear splatting.

A source pixel whose centre is at ``(x + 0.5, y + 0.5)`` moves to ``(x + dx, y + dy)`` and
spreads its colour over the (up to) four target pixels around that point with bilinear
weights. Every target pixel keeps only the contributions whose depth key ``z`` lies within
``z_tol`` of the largest key that reached it (the z-buffer; a larger key is nearer: the
warps here use disparity as the key), and averages them by weight. Neighbouring pixels of one
surface differ in disparity by its slope (well under 0.5 px per px except at grazing angles),
while a depth edge is a jump, so ``z_tol = 0.5`` px separates them.

The same function runs on numpy arrays (CPU) and on torch tensors (CPU or CUDA); the result
has the type of ``image``.

For a rectified pair with ``x_right = x_left - d`` the right eye is
``forward_warp(left, -disparity, z=disparity)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # torch is optional for the CPU path
    import torch
except ImportError:  # pragma: no cover - torch is a project dependency
    torch = None

#: Target pixels whose splat weight is below this receive nothing: they are holes.
MIN_WEIGHT = 1e-3


@dataclass
class Warped:
    """Result of a forward warp.

    ``image`` (H, W, C) float32 averaged colour (0 in holes), ``weight`` (H, W) summed splat
    weight of the accepted contributions, ``z`` (H, W) the z-buffer (``-inf`` in holes) and
    ``hole`` (H, W) bool, True where nothing landed.
    """

    image: Any
    weight: Any
    z: Any
    hole: Any


def _is_torch(a) -> bool:
    return torch is not None and isinstance(a, torch.Tensor)


def forward_warp(image, dx, z=None, dy=None, valid=None, z_tol: float = 0.5) -> Warped:
    """Warp ``image`` (H, W, C) or (H, W) by per-pixel displacements ``dx`` (and ``dy``).

    ``z`` is the per-pixel depth key (larger = nearer; defaults to 0 everywhere, i.e. plain
    averaging); ``valid`` (H, W) bool excludes source pixels (unknown depth). ``dy=None``
    means a purely horizontal warp (two taps per pixel instead of four).
    """
    if _is_torch(image):
        return _warp_torch(image, dx, z, dy, valid, z_tol)
    return _warp_numpy(np.asarray(image), dx, z, dy, valid, z_tol)


def _taps(x, y, dx, dy, xp_floor):
    """Target pixel indices and bilinear weights of every source pixel (pixel-centre convention)."""
    tx = x + dx  # continuous target coordinate of the source centre, minus 0.5
    x0 = xp_floor(tx)
    fx = tx - x0
    if dy is None:
        return [(x0, y, 1.0 - fx), (x0 + 1, y, fx)]
    ty = y + dy
    y0 = xp_floor(ty)
    fy = ty - y0
    return [
        (x0, y0, (1.0 - fx) * (1.0 - fy)),
        (x0 + 1, y0, fx * (1.0 - fy)),
        (x0, y0 + 1, (1.0 - fx) * fy),
        (x0 + 1, y0 + 1, fx * fy),
    ]


def _warp_numpy(image, dx, z, dy, valid, z_tol) -> Warped:
    squeeze = image.ndim == 2
    img = image[..., None] if squeeze else image
    h, w, c = img.shape
    img = img.reshape(-1, c).astype(np.float32, copy=False)
    dx = np.asarray(dx, np.float32)
    if dx.shape != (h, w):
        raise ValueError(f"forward_warp: dx has shape {dx.shape}, expected {(h, w)}")
    z = np.zeros((h, w), np.float32) if z is None else np.asarray(z, np.float32)
    keep = np.isfinite(dx) & np.isfinite(z)
    dyv = None if dy is None else np.asarray(dy, np.float32)
    if dyv is not None:
        keep &= np.isfinite(dyv)
    if valid is not None:
        keep &= np.asarray(valid, bool)
    all_valid = bool(keep.all())
    xs = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    ys = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    if all_valid:
        src = None
        xs, ys, dxs, zs = xs.ravel(), ys.ravel(), dx.ravel(), z.ravel()
        dys = None if dyv is None else dyv.ravel()
    else:
        src = np.flatnonzero(keep.ravel())
        xs, ys, dxs, zs = xs.ravel()[src], ys.ravel()[src], dx.ravel()[src], z.ravel()[src]
        dys = None if dyv is None else dyv.ravel()[src]
    n = h * w
    tis, wts = [], []
    for tx, ty, wt in _taps(xs, ys, dxs, dys, np.floor):
        ok = (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h) & (wt > 0)
        ti = ty.astype(np.int64) * w + tx.astype(np.int64)
        tis.append(np.where(ok, ti, n))  # slot n collects the taps that leave the image
        wts.append(np.where(ok, wt, np.float32(0)))
    taps = len(tis)
    ti = np.concatenate(tis)
    wt = np.concatenate(wts).astype(np.float32, copy=False)
    zk = np.tile(zs, taps)
    zbuf = np.full(n + 1, -np.inf, np.float32)
    np.maximum.at(zbuf, ti, zk)
    wt = wt * (zk >= zbuf[ti] - np.float32(z_tol))
    weight = np.bincount(ti, weights=wt, minlength=n + 1)[:n].astype(np.float32)
    colours = img if src is None else img[src]
    out = np.empty((n, c), np.float32)
    for ch in range(c):
        out[:, ch] = np.bincount(ti, weights=wt * np.tile(colours[:, ch], taps), minlength=n + 1)[:n]
    zbuf = zbuf[:n]
    hole = weight < MIN_WEIGHT
    out /= np.where(hole, np.float32(1), weight)[:, None]
    out[hole] = 0.0
    zbuf[hole] = -np.inf
    out = out.reshape(h, w, c)
    if squeeze:
        out = out[..., 0]
    return Warped(out, weight.reshape(h, w), zbuf.reshape(h, w), hole.reshape(h, w))


def _warp_torch(image, dx, z, dy, valid, z_tol) -> Warped:
    """Torch version: no data-dependent shapes (invalid taps go to a spare slot), so on a GPU
    every step is an asynchronous kernel."""
    dev = image.device
    squeeze = image.ndim == 2
    img = image[..., None] if squeeze else image
    h, w, c = img.shape
    img = img.reshape(-1, c).float()
    dx = torch.as_tensor(dx, device=dev, dtype=torch.float32)
    if tuple(dx.shape) != (h, w):
        raise ValueError(f"forward_warp: dx has shape {tuple(dx.shape)}, expected {(h, w)}")
    z = torch.zeros((h, w), device=dev) if z is None else torch.as_tensor(z, device=dev, dtype=torch.float32)
    xs = torch.arange(w, device=dev, dtype=torch.float32).expand(h, w)
    ys = torch.arange(h, device=dev, dtype=torch.float32)[:, None].expand(h, w)
    dyv = None if dy is None else torch.as_tensor(dy, device=dev, dtype=torch.float32)
    keep = torch.isfinite(dx) & torch.isfinite(z)
    if dyv is not None:
        keep &= torch.isfinite(dyv)
        dyv = torch.where(keep, dyv, 0.0).reshape(-1)
    if valid is not None:
        keep &= torch.as_tensor(valid, device=dev, dtype=torch.bool)
    keep = keep.reshape(-1)
    dxs = torch.where(keep, dx.reshape(-1), 0.0)
    zs = torch.where(keep, z.reshape(-1), -float("inf"))
    n = h * w
    tis, wts = [], []
    for tx, ty, wt in _taps(xs.reshape(-1), ys.reshape(-1), dxs, dyv, torch.floor):
        ok = keep & (tx >= 0) & (tx < w) & (ty >= 0) & (ty < h) & (wt > 0)
        tis.append(torch.where(ok, ty.long() * w + tx.long(), n))  # slot n collects invalid taps
        wts.append(torch.where(ok, wt, 0.0))
    taps = len(tis)
    ti = torch.cat(tis)
    wt = torch.cat(wts)
    zk = zs.repeat(taps)
    zbuf = torch.full((n + 1,), -float("inf"), device=dev)
    zbuf.scatter_reduce_(0, ti, zk, reduce="amax", include_self=True)
    wt = wt * (zk >= zbuf[ti] - z_tol)
    weight = torch.zeros(n + 1, device=dev).index_add_(0, ti, wt)[:n]
    out = torch.zeros((n + 1, c), device=dev).index_add_(0, ti, img.repeat(taps, 1) * wt[:, None])[:n]
    zbuf = zbuf[:n]
    hole = weight < MIN_WEIGHT
    out = out / torch.where(hole, torch.ones_like(weight), weight)[:, None]
    out = torch.where(hole[:, None], 0.0, out)
    zbuf = torch.where(hole, -float("inf"), zbuf)
    out = out.reshape(h, w, c)
    if squeeze:
        out = out[..., 0]
    return Warped(out, weight.reshape(h, w), zbuf.reshape(h, w), hole.reshape(h, w))


def warp_right(left, disparity, valid=None, z_tol: float = 0.5) -> Warped:
    """The right eye of a rectified pair from the left image and its disparity (``x_r = x_l - d``)."""
    neg = -disparity
    return forward_warp(left, neg, z=disparity, valid=valid, z_tol=z_tol)


def behind_edges(disparity, radius: int = 1, jump: float = 2.0):
    """Pixels within ``radius`` px (same row) of a nearer pixel by more than ``jump`` px of disparity.

    These are the background side of depth edges, where the colour usually mixes foreground
    and background (anti-aliasing, blur, depth maps a pixel off). Leaving them out of the warp
    (``valid=~behind_edges(d)``) turns them into holes that the fills take from clean
    background, instead of a foreground-tinted fringe. numpy or torch.
    """
    d = disparity
    if _is_torch(d):
        bad = torch.zeros_like(d, dtype=torch.bool)
    else:
        d = np.asarray(d, np.float32)
        bad = np.zeros(d.shape, bool)
    for s in range(1, radius + 1):
        bad[:, :-s] |= d[:, s:] - d[:, :-s] > jump  # nearer pixel s to the right
        bad[:, s:] |= d[:, :-s] - d[:, s:] > jump  # nearer pixel s to the left
    return bad
