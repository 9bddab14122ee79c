"""gsplat's standard 3DGS recipe, as its ``examples/simple_trainer.py`` sets it up by default.

Written out here so the side-by-side benchmark can run it on exactly the frames, cameras and
initial points our trainer gets: ``DefaultStrategy()`` with its own defaults (refine from step
500 every 100 steps until 15,000, opacity reset every 3,000, grow_grad2d 2e-4), SH degree 3
raised one degree per 1,000 steps, L1 + 0.2 (1 - SSIM) on the "valid" window (simple_trainer
computes it with the fused-ssim CUDA package; here the project's fused SSIM, the same 11x11
Gaussian-window SSIM with a one-pass analytic backward, stands in for it), Adam (eps 1e-15)
with the trainer's learning rates (means 1.6e-4 x scene scale, decayed to 1 % over the run by
ExponentialLR; scales 5e-3, quats 1e-3, opacities 5e-2, sh0 2.5e-3, shN 2.5e-3/20), random
quaternions, opacity 0.1 and the mean distance to the 3 nearest points as initial scale, scene
scale = 1.1 x the largest camera distance from the cameras' centroid, batch 1, no appearance
model, non-packed classic rasterization.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from backend.pipelines.reconstruct.ssim_fused import ssim_loss_term
from backend.pipelines.reconstruct.raster import rasterize
from backend.pipelines.reconstruct.trainer import _knn_scale, split_holdout
from backend.pipelines.splats_io import SH_C0


class RecipeTrainer:
    """One training run of the recipe; ``train_step(step)`` and ``render(i)`` mirror our Trainer."""

    def __init__(self, solve, frames, steps: int, device: torch.device, holdout_every: int = 8, seed: int = 0):
        from gsplat.strategy import DefaultStrategy

        torch.manual_seed(seed)
        self.frames, self.device, self.steps, self.seed = frames, device, steps, seed
        self.train_ids, self.hold_ids = split_holdout(len(solve.sources), holdout_every)
        self.viewmats = torch.as_tensor(solve.viewmats, dtype=torch.float32, device=device)
        self.Ks = torch.as_tensor(frames.K, dtype=torch.float32, device=device)
        centres = np.asarray(solve.c2w)[:, :3, 3]
        self.scene_scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) * 1.1
        pts, rgb = np.asarray(solve.points), np.asarray(solve.colors)
        n = len(pts)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
        params = {
            "means": t(pts),
            "scales": t(np.log(_knn_scale(pts))[:, None].repeat(3, 1)),
            "quats": torch.rand((n, 4), device=device),
            "opacities": torch.full((n,), math.log(0.1 / 0.9), device=device),
            "sh0": t((rgb - 0.5) / SH_C0)[:, None, :],
            "shN": torch.zeros((n, 15, 3), device=device),
        }
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in params.items()})
        lrs = {"means": 1.6e-4 * self.scene_scale, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2,
               "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
        self.optimizers = {k: torch.optim.Adam([{"params": self.params[k], "lr": lr, "name": k}], eps=1e-15)
                           for k, lr in lrs.items()}
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"],
                                                                gamma=0.01 ** (1.0 / steps))
        self.strategy = DefaultStrategy(verbose=False)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.state = self.strategy.initialize_state(scene_scale=self.scene_scale)

    def _frame(self, step: int) -> int:
        n = len(self.train_ids)
        perm = np.random.default_rng(self.seed * 7919 + step // n).permutation(n)
        return self.train_ids[perm[step % n]]

    def render(self, frames: list[int], sh_degree: int = 3):
        p = self.params  # gsplat's rasterization() with its defaults on CUDA (the PyTorch one on CPU)
        return rasterize(p["means"], p["quats"], torch.exp(p["scales"]), torch.sigmoid(p["opacities"]),
                         torch.cat([p["sh0"], p["shN"]], 1), self.viewmats[frames], self.Ks[frames],
                         self.frames.width, self.frames.height, sh_degree=sh_degree)

    def train_step(self, step: int) -> None:
        i = self._frame(step)
        gt = self.frames.get(i, self.device)
        img, _, info = self.render([i], sh_degree=min(step // 1000, 3))
        self.strategy.step_pre_backward(self.params, self.optimizers, self.state, step, info)
        img = img[0]
        loss = 0.8 * torch.abs(img - gt).mean() + 0.2 * (1.0 - ssim_loss_term(img, gt))
        loss.backward()
        for o in self.optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.strategy.step_post_backward(self.params, self.optimizers, self.state, step, info, packed=False)

    @property
    def num_gaussians(self) -> int:
        return int(len(self.params["means"]))
