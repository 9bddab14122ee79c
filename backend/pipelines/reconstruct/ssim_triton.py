"""Triton kernels behind :mod:`ssim_fused` on CUDA: a valid blur along one axis, its adjoint,
and the elementwise SSIM map with its derivatives. Planes are contiguous [P, H, W] float32."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .ssim_window import C1, C2

BLOCK = 512


def available() -> bool:
    return torch.cuda.is_available()


@triton.jit
def _blur_valid(src, dst, g, n, L_in, L_out, S, K: tl.constexpr, BLOCK: tl.constexpr):
    """dst[r, i, s] = sum_k g[k] src[r, i + k, s] (src [R, L_in, S], dst [R, L_out, S])."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    s = idx % S
    t = idx // S
    i = t % L_out
    r = t // L_out
    base = r * (L_in * S) + i * S + s
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        acc += tl.load(g + k) * tl.load(src + base + k * S, mask=m, other=0.0)
    tl.store(dst + idx, acc, mask=m)


@triton.jit
def _blur_adjoint(src, dst, g, n, L_in, L_out, S, K: tl.constexpr, BLOCK: tl.constexpr):
    """dst[r, j, s] = sum_k g[k] src[r, j - k, s] over 0 <= j - k < L_in (the adjoint of _blur_valid)."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    s = idx % S
    t = idx // S
    j = t % L_out
    r = t // L_out
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        jj = j - k
        ok = m & (jj >= 0) & (jj < L_in)
        acc += tl.load(g + k) * tl.load(src + r * (L_in * S) + jj * S + s, mask=ok, other=0.0)
    tl.store(dst + idx, acc, mask=m)


@triton.jit
def _stats_rows(x, y, dst, g, n, L_in, L_out, S, K: tl.constexpr, BLOCK: tl.constexpr):
    """Blur along H of x, y, x^2, y^2, xy in one pass: dst [5, P, L_out, S]."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    s = idx % S
    t = idx // S
    i = t % L_out
    r = t // L_out
    base = r * (L_in * S) + i * S + s
    a0 = tl.zeros([BLOCK], dtype=tl.float32)
    a1 = tl.zeros([BLOCK], dtype=tl.float32)
    a2 = tl.zeros([BLOCK], dtype=tl.float32)
    a3 = tl.zeros([BLOCK], dtype=tl.float32)
    a4 = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        w = tl.load(g + k)
        xv = tl.load(x + base + k * S, mask=m, other=0.0)
        yv = tl.load(y + base + k * S, mask=m, other=0.0)
        a0 += w * xv
        a1 += w * yv
        a2 += w * xv * xv
        a3 += w * yv * yv
        a4 += w * xv * yv
    tl.store(dst + idx, a0, mask=m)
    tl.store(dst + n + idx, a1, mask=m)
    tl.store(dst + 2 * n + idx, a2, mask=m)
    tl.store(dst + 3 * n + idx, a3, mask=m)
    tl.store(dst + 4 * n + idx, a4, mask=m)


@triton.jit
def _ssim_map(st, smap, dg, n, c1, c2, GRAD: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    mx = tl.load(st + idx, mask=m, other=0.0)
    my = tl.load(st + n + idx, mask=m, other=0.0)
    exx = tl.load(st + 2 * n + idx, mask=m, other=0.0)
    eyy = tl.load(st + 3 * n + idx, mask=m, other=0.0)
    exy = tl.load(st + 4 * n + idx, mask=m, other=0.0)
    a1 = 2 * mx * my + c1
    a2 = 2 * (exy - mx * my) + c2
    b1 = mx * mx + my * my + c1
    b2 = (exx - mx * mx) + (eyy - my * my) + c2
    d = b1 * b2
    s = a1 * a2 / d
    tl.store(smap + idx, s, mask=m)
    if GRAD:
        tl.store(dg + idx, (2 * my * (a2 - a1) - 2 * mx * s * (b2 - b1)) / d, mask=m)
        tl.store(dg + n + idx, -s / b2, mask=m)
        tl.store(dg + 2 * n + idx, 2 * a1 / d, mask=m)


@triton.jit
def _combine(t, x, y, dx, scale, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < n
    sc = tl.load(scale)
    tm = tl.load(t + idx, mask=m, other=0.0)
    txx = tl.load(t + n + idx, mask=m, other=0.0)
    txy = tl.load(t + 2 * n + idx, mask=m, other=0.0)
    xv = tl.load(x + idx, mask=m, other=0.0)
    yv = tl.load(y + idx, mask=m, other=0.0)
    tl.store(dx + idx, sc * (tm + 2 * xv * txx + yv * txy), mask=m)


def _grid(n: int):
    return (triton.cdiv(n, BLOCK),)


def forward(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, need_grad: bool):
    """SSIM map [P, h, w] and (when ``need_grad``) derivative maps [3, P, h, w]."""
    P, H, W = x.shape
    k = g.numel()
    h, w = H - k + 1, W - k + 1
    rows = torch.empty((5, P, h, W), device=x.device, dtype=x.dtype)
    n = P * h * W
    _stats_rows[_grid(n)](x, y, rows, g, n, H, h, W, K=k, BLOCK=BLOCK)
    st = torch.empty((5, P, h, w), device=x.device, dtype=x.dtype)
    n5 = 5 * P * h * w
    _blur_valid[_grid(n5)](rows, st, g, n5, W, w, 1, K=k, BLOCK=BLOCK)
    m = P * h * w
    smap = torch.empty((P, h, w), device=x.device, dtype=x.dtype)
    grads = torch.empty((3, P, h, w), device=x.device, dtype=x.dtype) if need_grad else smap
    _ssim_map[_grid(m)](st, smap, grads, m, C1, C2, GRAD=need_grad, BLOCK=BLOCK)
    return smap, (grads if need_grad else None)


def backward(x, y, g, grads, scale):
    """dL/dx from the derivative maps and dL/dS (``scale``: a 0-d tensor, dL/dmean / count)."""
    P, H, W = x.shape
    k = g.numel()
    h, w = H - k + 1, W - k + 1
    cols = torch.empty((3, P, h, W), device=x.device, dtype=x.dtype)
    n = 3 * P * h * W
    _blur_adjoint[_grid(n)](grads, cols, g, n, w, W, 1, K=k, BLOCK=BLOCK)
    full = torch.empty((3, P, H, W), device=x.device, dtype=x.dtype)
    n = 3 * P * H * W
    _blur_adjoint[_grid(n)](cols, full, g, n, h, H, W, K=k, BLOCK=BLOCK)
    dx = torch.empty_like(x)
    n = P * H * W
    _combine[_grid(n)](full, x, y, dx, scale.reshape(1).to(x.dtype).contiguous(), n, BLOCK=BLOCK)
    return dx
