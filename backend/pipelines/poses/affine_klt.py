"""Affine Lucas-Kanade against a track's anchor frame (inverse compositional, Baker & Matthews).

A translation-only match of a patch seen many frames ago is biased by the patch's perspective
deformation since then, and renewing the patch hands that bias on as a permanent offset, so the
error of a long track walks. Matching with a 2x2 affine deformation as well removes the bias to
first order, which lets a track keep its anchor patch for long.

Patches are compared after normalising each to zero mean and unit variance, so gradual exposure
changes do not move them. Coordinates follow OpenCV: pixel centres at integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Templates:
    """Per track: the normalised anchor patch and the rows of its Gauss-Newton update
    (inverse Hessian times the transposed steepest-descent images)."""
    patch: np.ndarray  # (N, P) float32
    update: np.ndarray  # (N, 6, P) float32
    valid: np.ndarray  # (N,) bool: enough texture for all six parameters

    def take(self, sel) -> "Templates":
        return Templates(self.patch[sel], self.update[sel], self.valid[sel])

    def assign(self, sel, other: "Templates") -> None:
        self.patch[sel], self.update[sel], self.valid[sel] = other.patch, other.update, other.valid

    @staticmethod
    def concat(parts: list["Templates"]) -> "Templates":
        return Templates(*(np.concatenate([getattr(p, k) for p in parts])
                           for k in ("patch", "update", "valid")))

    @staticmethod
    def empty(half: int) -> "Templates":
        p = (2 * half + 1) ** 2
        return Templates(np.zeros((0, p), np.float32), np.zeros((0, 6, p), np.float32),
                         np.zeros(0, bool))


def grid(half: int) -> np.ndarray:
    """Patch offsets (P, 2) of a (2 half + 1)^2 window."""
    r = np.arange(-half, half + 1, dtype=np.float32)
    ux, uy = np.meshgrid(r, r)
    return np.column_stack([ux.ravel(), uy.ravel()])


def _maps(centres: np.ndarray, affine: np.ndarray, u: np.ndarray):
    """Sample positions ``centres + affine @ u`` as two (N, P) float32 maps."""
    r = np.matmul(affine.astype(np.float32), u.T)  # (N, 2, P)
    return (centres[:, 0:1].astype(np.float32) + r[:, 0],
            centres[:, 1:2].astype(np.float32) + r[:, 1])


def _sample(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``img`` at the (N, P) maps (edges replicated)."""
    if mx.shape[0] == 0:
        return np.zeros(mx.shape, np.float32)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _normalise(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = v - v.mean(axis=1, keepdims=True)
    std = np.sqrt((v * v).mean(axis=1, keepdims=True))
    return v / np.maximum(std, 1e-6), std[:, 0]


def make_templates(gray: np.ndarray, centres: np.ndarray, half: int) -> Templates:
    """Templates of the patches of ``gray`` (float32, or converted) centred at ``centres`` (N, 2).

    Gradients are 3x3 Sobel filters of the bilinearly sampled image, on a window two pixels
    wider than the patch."""
    if not len(centres):
        return Templates.empty(half)
    img = gray if gray.dtype == np.float32 else gray.astype(np.float32)
    n, side = len(centres), 2 * half + 1
    wide = grid(half + 2)
    c = centres.astype(np.float32)
    w = _sample(img, c[:, :1] + wide[:, 0], c[:, 1:] + wide[:, 1]).reshape(n, side + 4, side + 4)
    raw = w[:, 2:-2, 2:-2].reshape(n, -1)
    dx = 0.5 * (w[:, :, 2:] - w[:, :, :-2])  # (n, side + 4, side + 2)
    dy = 0.5 * (w[:, 2:, :] - w[:, :-2, :])  # (n, side + 2, side + 4)
    gx = (0.25 * (dx[:, 1:-3] + 2.0 * dx[:, 2:-2] + dx[:, 3:-1]))[:, :, 1:-1].reshape(n, -1)
    gy = (0.25 * (dy[:, :, 1:-3] + 2.0 * dy[:, :, 2:-2] + dy[:, :, 3:-1]))[:, 1:-1, :].reshape(n, -1)
    patch, std = _normalise(raw)
    s = 1.0 / np.maximum(std, 1e-6)[:, None]
    tx, ty = gx * s, gy * s
    u = grid(half)
    ux, uy = u[None, :, 0], u[None, :, 1]
    sd = np.stack([tx * ux, ty * ux, tx * uy, ty * uy, tx, ty], axis=1).astype(np.float64)
    h = np.matmul(sd, sd.transpose(0, 2, 1))  # (N, 6, 6)
    # The inverse comes from the eigen-decomposition that the conditioning test needs anyway:
    # np.linalg.inv solves each 6x6 system through LAPACK, and OpenBLAS hands every such call
    # to its thread pool, thousands of tiny hand-offs per frame that stall whenever another
    # process holds the cores.
    ev, vec = np.linalg.eigh(h)
    valid = (std > 1.0) & (ev[:, 0] > 1e-7 * ev[:, -1]) & (ev[:, 0] > 0)
    update = np.zeros(sd.shape, np.float32)
    if valid.any():
        v = vec[valid]
        h_inv = np.matmul(v / ev[valid][:, None, :], v.transpose(0, 2, 1))
        update[valid] = np.matmul(h_inv, sd[valid])
    return Templates(patch.astype(np.float32), update, valid)


def refine(gray: np.ndarray, tpl: Templates, centres: np.ndarray, affine: np.ndarray,
           half: int, iterations: int = 10, eps: float = 0.005, converged_px: float = 0.05):
    """Align each template to ``gray`` starting from ``centres`` (N, 2) and ``affine`` (N, 2, 2).

    Iterates until an update moves the centre less than ``eps`` px (at most ``iterations``).
    Returns (centres, affine, converged, zncc): the aligned centres and deformations, whether
    each converged (last update under ``converged_px``), and the normalised correlation of the
    patch before the last update.
    """
    img = gray if gray.dtype == np.float32 else gray.astype(np.float32)
    u = grid(half)
    c = centres.astype(np.float64)
    a = affine.astype(np.float64)
    n = len(c)
    step = np.full(n, np.inf, np.float32)
    zncc = np.zeros(n, np.float32)
    idx = np.flatnonzero(tpl.valid)  # tracks still moving, and their working copies
    ci, ai, upd, patch = c[idx], a[idx], tpl.update[idx], tpl.patch[idx]
    for _ in range(iterations):
        if not len(idx):
            break
        cur, _ = _normalise(_sample(img, *_maps(ci, ai, u)))
        zncc[idx] = (cur * patch).mean(axis=1)
        dp = np.matmul(upd, (cur - patch)[:, :, None])[:, :, 0].astype(np.float64)
        # incremental warp u -> (I + D) u + d in template coordinates, composed inversely
        m00, m01, m10, m11 = 1.0 + dp[:, 0], dp[:, 2], dp[:, 1], 1.0 + dp[:, 3]
        det = m00 * m11 - m01 * m10
        ok = np.abs(det) > 0.2
        det = np.where(ok, det, 1.0)
        minv = np.stack([np.stack([m11, -m01], 1), np.stack([-m10, m00], 1)], 1) / det[:, None, None]
        ai = np.where(ok[:, None, None], np.matmul(ai, minv), ai)
        shift = np.matmul(ai, dp[:, 4:6, None])[:, :, 0]
        ci = np.where(ok[:, None], ci - shift, ci)
        c[idx], a[idx] = ci, ai
        moved = np.where(ok, np.sqrt((shift * shift).sum(axis=1)), np.inf)
        step[idx] = moved
        keep = ok & (moved >= eps)
        if not keep.all():
            idx, ci, ai, upd, patch = idx[keep], ci[keep], ai[keep], upd[keep], patch[keep]
    converged = tpl.valid & (step < converged_px)
    return c.astype(np.float32), a, converged, zncc
