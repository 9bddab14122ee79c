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


class SyncFreeDefaultStrategy(DefaultStrategy):
    """gsplat's DefaultStrategy whose per-step gradient statistics are accumulated densely
    (masked sums over all Gaussians) instead of through ``torch.where`` and boolean indexing,
    which wait for the GPU every step. The statistics are the same: per Gaussian, the sum of
    its normalised screen-space gradient norms and the number of views it was visible in."""

    def _update_state(self, params, state, info, packed: bool = False):
        if packed or self.refine_scale2d_stop_iter > 0:
            return super()._update_state(params, state, info, packed)
        grad = info[self.key_for_gradient].absgrad if self.absgrad else info[self.key_for_gradient].grad
        scale = grad.new_tensor([info["width"] / 2.0 * info["n_cameras"],
                                 info["height"] / 2.0 * info["n_cameras"]])
        visible = (info["radii"] > 0.0).all(dim=-1)  # [C, N]
        norms = ((grad * scale).norm(dim=-1) * visible).sum(0)  # [N]
        if state["grad2d"] is None:
            state["grad2d"] = torch.zeros_like(norms)
        if state["count"] is None:
            state["count"] = torch.zeros_like(norms)
        state["grad2d"] += norms
        state["count"] += visible.sum(0).to(norms.dtype)


def make_strategy(name: str, steps: int, cap_max: int = 1_000_000, **overrides):
    """A gsplat strategy with its refinement schedule fitted to a run of ``steps`` steps.

    ``default``: densify every 100 steps from step 500 until half the run, opacity reset at step
    3000 (start and reset scaled down for runs under 7,000 steps), growth on the absolute screen-space
    gradient (absgrad, threshold 8e-4: fewer, better-placed Gaussians than gsplat's 2e-4 on the
    plain gradient). ``mcmc``: gsplat's schedule scaled to the run. ``overrides`` replace the
    strategy's arguments (``refine_stop_frac`` sets ``refine_stop_iter`` as a fraction of ``steps``)."""
    enable_cpu_fallbacks()
    f = min(1.0, steps / 30_000)
    refine_every = max(10, int(round(100 * max(f, 0.25))))
    start = max(refine_every, int(500 * max(f, 0.2)))
    overrides = dict(overrides)
    if "refine_stop_frac" in overrides:
        overrides["refine_stop_iter"] = int(steps * float(overrides.pop("refine_stop_frac")))
    if name == "default":
        f7 = min(1.0, steps / 7000)
        stop = int(steps * 0.5)
        reset = int(3000 * f7)
        kw = dict(refine_start_iter=int(500 * f7), refine_stop_iter=stop, refine_every=100,
                  reset_every=reset if reset < stop else stop + 1, absgrad=True, grow_grad2d=8e-4,
                  verbose=False)
        kw.update(overrides)
        cls = SyncFreeDefaultStrategy
    elif name == "mcmc":
        kw = dict(cap_max=cap_max, refine_start_iter=start, refine_stop_iter=int(steps * 0.85),
                  refine_every=refine_every, verbose=False)
        kw.update(overrides)
        cls = MCMCStrategy
    else:
        raise ValueError(f"unknown strategy {name!r}; expected 'default' or 'mcmc'")
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ValueError(f"bad densification option for the {name} strategy: {exc}") from None


__all__ = ["make_strategy", "enable_cpu_fallbacks", "relocation_torch", "SyncFreeDefaultStrategy"]
