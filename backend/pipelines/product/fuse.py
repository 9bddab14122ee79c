"""Stage 4: object splats fitted to the fixed views, then back-projection colour refinement.

:func:`train_object` runs the project's trainer (:mod:`backend.pipelines.reconstruct.trainer`)
on the views as a camera solve with fixed cameras: the targets are the views with their
background removed (premultiplied by their alpha, the renderer composites over black) and the
trainer's alpha loss fits the rendered coverage to the silhouettes.

:func:`refine_colours` is the multi-view colour refinement of Glimpse3D (MVCRM): each round
renders every view and, where the rendered depth agrees with the view's estimated depth, pulls
the colour of the splats that made those pixels toward the view's colour, weighted by their
share of each pixel (the rasterizer's compositing weights, read through autograd).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from backend.pipelines.reconstruct.frames import FrameStore
from backend.pipelines.reconstruct.raster import rasterize
from backend.pipelines.reconstruct.scene import Solve, blender_to_viewmats
from backend.pipelines.reconstruct.trainer import TrainConfig, train
from backend.pipelines.splats_io import SH_C0, Splats
from backend.progress import Progress


def object_config(steps: int, sh_degree: int = 0, seed: int = 0, size: int = 256) -> TrainConfig:
    """Trainer options for a few hundred steps on a handful of object views ``size`` px wide
    (views up to 128 px train at full size from the start; larger ones from half size)."""
    return TrainConfig(steps=steps, sh_degree=sh_degree, sh_degree_interval=max(1, steps // 3),
                       holdout_every=0, appearance="off", checkpoint_every=0, eval_every=0, seed=seed,
                       init_opacity=0.5, resolution_start=1.0 if size <= 128 else 0.5, alpha_lambda=1.0,
                       densify={"refine_every": max(10, steps // 8), "reset_every": steps + 1,
                                "refine_start_iter": max(10, steps // 10),
                                "refine_stop_iter": int(0.7 * steps)})


def train_object(rgb: np.ndarray, alpha: np.ndarray, c2w: np.ndarray, K: np.ndarray,
                 points: np.ndarray, colors: np.ndarray, cfg: TrainConfig, device: str = "cpu",
                 progress: Progress | None = None) -> tuple[Splats, dict]:
    """Splats fitted to views ``rgb`` (V, H, W, 3) float in [0, 1] with silhouettes ``alpha``
    (V, H, W), seen by Blender cameras ``c2w`` with intrinsics ``K``, starting from ``points``."""
    v, h, w = alpha.shape
    solve = Solve(doc={}, path=Path("views") / "cameras.json", width=w, height=h, index=np.arange(v),
                  sources=[f"view{i:02d}" for i in range(v)], c2w=np.asarray(c2w, np.float64),
                  K=np.asarray(K, np.float64), k1=0.0, k2=0.0, points=np.asarray(points, np.float64),
                  colors=np.clip(np.asarray(colors, np.float64), 0, 1))
    premult = (np.clip(rgb * alpha[..., None], 0, 1) * 255).round().astype(np.uint8)
    frames = FrameStore(images=torch.from_numpy(premult).to(device), K=solve.K.copy(), width=w, height=h,
                        on_device=True,
                        alphas=torch.from_numpy((np.clip(alpha, 0, 1) * 255).round().astype(np.uint8)[..., None]).to(device))
    result = train(solve, frames, cfg, device=device, progress=progress)
    return result.splats, result.metrics


def _tensors(splats: Splats, device) -> dict:
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return {"means": t(splats.means), "quats": t(splats.quats), "scales": t(np.exp(splats.scales)),
            "opacities": t(splats.alpha()), "sh0": t(splats.sh0), "shN": t(splats.shN)}


def refine_colours(splats: Splats, rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray,
                   c2w: np.ndarray, K: np.ndarray, rounds: int = 2, rate: float = 0.5,
                   tolerance: float = 0.02, device: str = "cpu") -> tuple[Splats, dict]:
    """Pull splat colours toward the views where rendered and estimated ``depth`` agree within
    ``tolerance`` (relative); ``rate`` of the way per round. Returns the splats and per-round
    statistics (agreeing pixel share, mean absolute colour error on them before the round)."""
    g = _tensors(splats, device)
    v, h, w = alpha.shape
    vms = torch.as_tensor(blender_to_viewmats(c2w), dtype=torch.float32, device=device)
    Ks = torch.as_tensor(K, dtype=torch.float32, device=device)
    target = torch.as_tensor(rgb * alpha[..., None], dtype=torch.float32, device=device)  # premultiplied
    sil = torch.as_tensor(alpha > 0.5, device=device)
    est = torch.as_tensor(np.where(np.isfinite(depth), depth, 0), dtype=torch.float32, device=device)
    deg = splats.sh_degree
    stats = []
    for _ in range(rounds):
        num = torch.zeros_like(g["sh0"])
        den = torch.zeros(len(g["sh0"]), device=device)
        errs, agree = [], []
        for i in range(v):
            sh = torch.cat([g["sh0"][:, None], g["shN"]], 1).requires_grad_(True)
            img, acc, _ = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], sh,
                                    vms[i:i + 1], Ks[i:i + 1], w, h, sh_degree=deg, render_mode="RGB+ED")
            col, d = img[0, ..., :3], img[0, ..., 3]
            ok = sil[i] & (acc[0, ..., 0] > 0.5) & (est[i] > 0) & ((d - est[i]).abs() < tolerance * est[i])
            agree.append(float(ok.float().sum() / sil[i].float().sum().clamp(min=1)))
            if not ok.any():
                continue
            m = ok.float()[..., None]
            # d(sum m * col_c)/d(sh0) = SH_C0 * sum over pixels of the splat's weight: the weights;
            # d(sum m * col_c * residual_c)/d(sh0): the weighted residual toward the view
            w_grad, = torch.autograd.grad((m * col).sum(), sh, retain_graph=True)
            t_grad, = torch.autograd.grad((m * col * (target[i] - col.detach())).sum(), sh)
            num += t_grad[:, 0] / SH_C0
            den += w_grad[:, 0].mean(1) / SH_C0
            errs.append(float(((col.detach() - target[i]).abs() * m).sum() / (3 * m.sum())))
        with torch.no_grad():
            hit = den > 1e-3
            now = 0.5 + SH_C0 * g["sh0"][hit]
            new = now + rate * num[hit] / den[hit, None]  # the weighted mean residual, ``rate`` of it
            g["sh0"][hit] = (new.clamp(0, 1) - 0.5) / SH_C0
        stats.append({"agreeing": float(np.mean(agree)), "colour_error": float(np.mean(errs)) if errs else None,
                      "splats_updated": int(hit.sum())})
    out = Splats(splats.means, splats.scales, splats.quats, splats.opacities,
                 g["sh0"].cpu().numpy(), splats.shN)
    return out, {"rounds": stats}
