"""gsplat densification strategies (DefaultStrategy, MCMCStrategy) usable on CPU and GPU.

gsplat's MCMC operations call two CUDA kernels (``compute_relocation`` and
``quat_scale_to_covar_preci``). :func:`enable_cpu_fallbacks` installs device-dispatching
replacements into ``gsplat.strategy.ops``: CUDA tensors still go to gsplat's kernels, CPU
tensors go to the PyTorch equivalents below (the same formulas: Kheradmand et al. 2024, Eq. 9).
"""
from __future__ import annotations

import torch
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci
from gsplat.strategy import DefaultStrategy, MCMCStrategy

_installed = False


def relocation_torch(opacities, scales, ratios, binoms):
    """Opacity and scale of ``ratios`` copies that together render like the original."""
    n_max = binoms.shape[0]
    n = ratios.clamp(min=1, max=n_max).to(torch.long)
    new_op = 1.0 - torch.pow(1.0 - opacities, 1.0 / n.to(opacities.dtype))
    i = torch.arange(1, n_max + 1, device=opacities.device)  # [n_max]
    k = torch.arange(n_max, device=opacities.device)  # [n_max]
    # denominator: sum_{i=1..n} sum_{k=0..i-1} C(i-1,k) (-1)^k / sqrt(k+1) * new_op^(k+1)
    coef = binoms.to(opacities.dtype)[i - 1][:, k] * ((-1.0) ** k / torch.sqrt(k + 1.0))  # [i,k]
    coef = coef * (k[None, :] <= (i[:, None] - 1))
    powers = new_op[:, None] ** (k[None, :] + 1).to(opacities.dtype)  # [N,k]
    per_i = powers @ coef.T  # [N,i]
    mask = (i[None, :] <= n[:, None]).to(opacities.dtype)
    denom = (per_i * mask).sum(1)
    new_scales = (opacities / denom)[:, None] * scales
    return new_op, new_scales


def enable_cpu_fallbacks() -> None:
    """Make gsplat.strategy.ops work on CPU tensors (idempotent)."""
    global _installed
    if _installed:
        return
    from gsplat.strategy import ops

    cuda_reloc = ops.compute_relocation
    cuda_covar = ops.quat_scale_to_covar_preci

    def compute_relocation(opacities, scales, ratios, binoms):
        if opacities.is_cuda:
            return cuda_reloc(opacities, scales, ratios, binoms)
        return relocation_torch(opacities, scales, ratios, binoms)

    def quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=True, triu=False):
        if quats.is_cuda:
            return cuda_covar(quats, scales, compute_covar, compute_preci, triu)
        return _quat_scale_to_covar_preci(quats, scales, compute_covar, compute_preci, triu)

    ops.compute_relocation = compute_relocation
    ops.quat_scale_to_covar_preci = quat_scale_to_covar_preci
    _installed = True


def make_strategy(name: str, steps: int, cap_max: int = 1_000_000):
    """A gsplat strategy whose refinement schedule is scaled to a run of ``steps`` steps
    (gsplat's defaults are tuned for 30k steps)."""
    enable_cpu_fallbacks()
    f = min(1.0, steps / 30_000)
    refine_every = max(10, int(round(100 * max(f, 0.25))))
    start = max(refine_every, int(500 * max(f, 0.2)))
    if name == "default":
        stop = int(steps * 0.5)
        reset = int(3000 * max(f, 0.1))
        return DefaultStrategy(refine_start_iter=start, refine_stop_iter=stop, refine_every=refine_every,
                               reset_every=reset if reset < stop else stop + 1, verbose=False)
    if name == "mcmc":
        return MCMCStrategy(cap_max=cap_max, refine_start_iter=start, refine_stop_iter=int(steps * 0.85),
                            refine_every=refine_every, verbose=False)
    raise ValueError(f"unknown strategy {name!r}; expected 'default' or 'mcmc'")


__all__ = ["make_strategy", "enable_cpu_fallbacks", "relocation_torch"]
