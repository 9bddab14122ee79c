"""Choose the rasterizer: gsplat's CUDA ``rasterization`` or the pure-PyTorch one.

gsplat 1.5.3 compiles its CUDA extension on first use (about a minute on an H100). The build
goes to ``$TORCH_EXTENSIONS_DIR``, which defaults here to the project cache
(``<cache>/torch_extensions``, see :mod:`backend.pipelines.reconstruct.cache`), so every
process reuses one build; ``scripts/gpu_check.sh`` builds and checks it ahead of time.
"""
from __future__ import annotations

import torch

from .cache import use_project_extension_cache

BACKENDS = ("auto", "gsplat", "torch")


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown rasterizer backend {backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" else "torch"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError("the gsplat rasterizer needs a CUDA device")
    return backend


def ensure_gsplat_cuda() -> None:
    """Build or load gsplat's CUDA extension now; a clear JobError if it cannot be had."""
    use_project_extension_cache()
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:  # the JIT build raises compiler errors of several kinds
        _C, why = None, str(exc).strip().splitlines()[-1:] or ["unknown error"]
    else:
        why = ["no CUDA toolkit (nvcc) found"]
    if _C is None:
        from backend.progress import JobError

        raise JobError(f"gsplat's CUDA extension is unavailable: {why[0]}", code="gpu_unavailable",
                       hint="run scripts/gpu_check.sh on the GPU machine, or use --device cpu")


def rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
              backend: str = "auto", **kwargs):
    """Render like ``gsplat.rasterization`` (non-packed) with the chosen backend.

    Returns ``(colors [C,H,W,D], alphas [C,H,W,1], info)``.
    """
    which = resolve_backend(backend, means.device)
    if which == "gsplat":
        use_project_extension_cache()
        from gsplat import rasterization

        return rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                             packed=False, **kwargs)
    from .raster_torch import rasterize as rasterize_torch

    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs)
