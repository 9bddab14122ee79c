"""SSIM as a loss with an analytic backward (the same SSIM as :func:`losses.ssim`).

Autograd through the separable Gaussian window costs dozens of kernels per step, and on CUDA
the grouped (depthwise) convolutions it runs on are slow. Here the five window statistics
(means, second moments and cross moment) are blurred once, the SSIM map and its derivatives
with respect to those statistics come from one elementwise pass, and the gradient with
respect to the render is the transposed blur of three derivative maps::

    dS/dx = B^T(dS/dmu_x) + 2 x B^T(dS/dE[x^2]) + y B^T(dS/dE[xy])

On CUDA with Triton the blurs and the elementwise pass are Triton kernels (about ten launches
for forward and backward together); elsewhere the same computation runs as PyTorch
convolutions. The render gets a gradient; the target does not.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .ssim_window import C1, C2, _kernel1d


@functools.lru_cache(maxsize=1)
def _triton():
    """The Triton kernels when they load, compile and agree with the PyTorch path here; else None."""
    try:
        from . import ssim_triton
    except Exception:  # no Triton in this installation (the CPU build)
        return None
    if not ssim_triton.available():
        return None
    try:
        _check(ssim_triton, "cuda")
    except Exception as exc:  # a Triton that cannot compile for this GPU: the PyTorch path
        import warnings

        warnings.warn(f"fused SSIM kernels unavailable ({str(exc).splitlines()[0][:120]}); using PyTorch's")
        return None
    return ssim_triton


def _check(kernels, device: str) -> None:
    """Run ``kernels`` on a small random pair and compare value and gradient with PyTorch's."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(3, 40, 57, generator=gen).to(device)
    y = (x + 0.1 * torch.rand(3, 40, 57, generator=gen).to(device)).clamp(0, 1)
    g = _kernel1d(11, 1.5, x.device, x.dtype)
    smap, grads = kernels.forward(x, y, g, True)
    st = _blur_torch(torch.cat([x, y, x * x, y * y, x * y]), g)
    s_ref, g_ref = _ssim_terms(st.view(5, 3, *st.shape[-2:]))
    scale = torch.tensor(1.0 / s_ref.numel(), device=device)
    dx = kernels.backward(x, y, g, grads, scale)
    t = _blur_t_torch(g_ref.reshape(9, *g_ref.shape[2:]), g).view(3, 3, 40, 57)
    dx_ref = scale * (t[0] + 2 * x * t[1] + y * t[2])
    if not (torch.allclose(smap, s_ref, atol=1e-5) and torch.allclose(dx, dx_ref, rtol=1e-4, atol=1e-9)):
        raise RuntimeError("fused SSIM kernels disagree with the PyTorch path")


def _planes(a: torch.Tensor) -> torch.Tensor:
    """[..., H, W, C] -> contiguous [P, H, W] planes (P = batch x channels)."""
    return a.reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2).reshape(-1, a.shape[-3], a.shape[-2]).contiguous()


def _ssim_terms(st: torch.Tensor):
    """SSIM map and dS/d(mu_x, E[x^2], E[xy]) from blurred statistics [5, P, h, w]."""
    mx, my, exx, eyy, exy = st
    sxx, syy, sxy = exx - mx * mx, eyy - my * my, exy - mx * my
    a1, a2 = 2 * mx * my + C1, 2 * sxy + C2
    b1, b2 = mx * mx + my * my + C1, sxx + syy + C2
    d = b1 * b2
    s = a1 * a2 / d
    grads = torch.stack([(2 * my * (a2 - a1) - 2 * mx * s * (b2 - b1)) / d, -s / b2, 2 * a1 / d])
    return s, grads


def _blur_torch(planes: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid separable blur of [N, H, W] planes."""
    k = g.numel()
    x = planes[:, None]
    x = F.conv2d(x, g.view(1, 1, k, 1))
    return F.conv2d(x, g.view(1, 1, 1, k))[:, 0]


def _blur_t_torch(planes: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_blur_torch`: [N, h, w] -> [N, h + k - 1, w + k - 1]."""
    k = g.numel()
    x = planes[:, None]
    x = F.conv_transpose2d(x, g.view(1, 1, 1, k))
    return F.conv_transpose2d(x, g.view(1, 1, k, 1))[:, 0]


class _SSIM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, g):
        tk = _triton() if x.is_cuda else None
        need_grad = ctx.needs_input_grad[0]
        if tk is not None:
            s, grads = tk.forward(x, y, g, need_grad)
        else:
            st = _blur_torch(torch.cat([x, y, x * x, y * y, x * y]), g)
            s, grads = _ssim_terms(st.view(5, x.shape[0], *st.shape[-2:]))
        ctx.save_for_backward(x, y, g, grads if need_grad else None)
        ctx.count = s.numel()
        return s.mean()

    @staticmethod
    def backward(ctx, grad_out):
        x, y, g, grads = ctx.saved_tensors
        if grads is None:
            return None, None, None
        scale = grad_out / ctx.count
        tk = _triton() if x.is_cuda else None
        if tk is not None:
            return tk.backward(x, y, g, grads, scale), None, None
        n = grads.shape[1]
        t = _blur_t_torch(grads.reshape(3 * n, *grads.shape[2:]), g).view(3, n, *x.shape[1:])
        return scale * (t[0] + 2 * x * t[1] + y * t[2]), None, None


def ssim_loss_term(render: torch.Tensor, target: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of ``render`` against ``target`` ([..., H, W, C] in [0, 1]), differentiable in
    ``render`` through the analytic backward; equal to :func:`losses.ssim`."""
    x, y = _planes(render), _planes(target.detach())
    size = min(size, x.shape[-1], x.shape[-2])
    g = _kernel1d(size, sigma, x.device, x.dtype)
    return _SSIM.apply(x, y, g)


__all__ = ["ssim_loss_term"]
