"""The refine stage: train the coarse splats on the generated views with their cameras fixed
(the reconstruction's trainer, :class:`backend.pipelines.reconstruct.trainer.Trainer`), then a
few rounds of: render every generated view, clean it up a little with the diffusion model
conditioned on the render, train again on the cleaned views. The photo itself always stays
the target of its own view."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backend.progress import Progress

from ..splats_io import Splats
from .coarse import render


@dataclass
class RefineOptions:
    steps: int = 300  # training steps per round
    rounds: int = 1  # render -> denoise -> retrain rounds after the first training
    strength: float = 0.3  # how far each denoise re-noises the render (0..1)
    resolution_start: float = 0.5  # the trainer's training resolution at step 0, as a fraction
    resolution_full_at: float = 0.5  # ... rising to the full size at this fraction of the steps
    device: str = "cpu"


def _solve_and_frames(splats: Splats, frames: list[np.ndarray], views, device: str):
    """An in-memory camera solve (the views, the splats' centres as its points) and frame store."""
    import torch

    from ..reconstruct.frames import FrameStore
    from ..reconstruct.scene import Solve

    h, w = frames[0].shape[:2]
    K = np.array([[[v.focal, 0, w / 2], [0, v.focal, h / 2], [0, 0, 1]] for v in views], np.float64)
    solve = Solve(doc={}, path=Path("scene") / "cameras.json", width=w, height=h, index=np.arange(len(views)),
                  sources=[f"{i:05d}" for i in range(len(views))], c2w=np.array([v.c2w for v in views]), K=K,
                  k1=0.0, k2=0.0, points=splats.means.astype(np.float64), colors=splats.rgb().astype(np.float64))
    images = torch.from_numpy(np.ascontiguousarray(np.stack(frames))).to(device)
    return solve, FrameStore(images=images, K=K, width=w, height=h, on_device=True)


def train_fixed(splats: Splats, frames: list[np.ndarray], views, steps: int, opts: RefineOptions,
                progress: Progress | None = None, seed: int = 0) -> Splats:
    """``splats`` trained ``steps`` steps on ``frames`` seen from ``views`` (cameras fixed,
    every view trains, no densification: the coarse stage placed a Gaussian per pixel)."""
    import torch

    from ..reconstruct.trainer import Trainer, TrainConfig

    if steps <= 0:
        return splats
    device = torch.device(opts.device)
    cfg = TrainConfig(steps=steps, sh_degree=splats.sh_degree, holdout_every=0, appearance="off",
                      checkpoint_every=0, eval_every=0, seed=seed, max_init_points=len(splats) + 1,
                      resolution_start=opts.resolution_start,
                      resolution_full_at=opts.resolution_full_at, densify={"refine_stop_iter": 0})
    solve, store = _solve_and_frames(splats, frames, views, opts.device)
    tr = Trainer(solve, store, cfg, device, None, progress)
    with torch.no_grad():  # start from the coarse Gaussians themselves, not from their centres
        for key, value in (("scales", splats.scales), ("quats", splats.quats), ("opacities", splats.opacities),
                           ("sh0", splats.sh0[:, None, :]), ("shN", splats.shN)):
            tr.params[key].copy_(torch.as_tensor(value, dtype=torch.float32, device=device))
    prog = progress or Progress()
    for step in range(steps):
        loss = tr.train_step(step)
        prog.update((step + 1) / steps, f"step {step + 1}/{steps} loss {float(loss):.4f}")
    p = {k: v.detach().cpu().numpy() for k, v in tr.params.items()}
    return Splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"][:, 0], p["shN"])


def refine_stage(splats: Splats, frames: list[np.ndarray], views, models, opts: RefineOptions,
                 progress: Progress | None = None) -> tuple[Splats, list[np.ndarray], list[np.ndarray]]:
    """Train, then ``opts.rounds`` rounds of denoise-and-retrain. Returns the splats, the final
    targets of the views and the last round's renders of the generated views (empty without
    rounds)."""
    progress = progress or Progress()
    targets = [np.asarray(f, np.uint8) for f in frames]
    progress.stage("refine", f"training {opts.steps} steps on {len(views)} views")
    splats = train_fixed(splats, targets, views, opts.steps, opts, progress)
    renders: list[np.ndarray] = []
    for r in range(opts.rounds):
        progress.stage("refine", f"round {r + 1}/{opts.rounds}: denoising the renders")
        renders = []
        for i in range(1, len(views)):
            col = render(splats, views[i], opts.device)[0]
            renders.append(np.clip(np.rint(col * 255), 0, 255).astype(np.uint8))
            targets[i] = np.asarray(models.denoise(renders[-1], views[i], opts.strength), np.uint8)
        progress.stage("refine", f"round {r + 1}/{opts.rounds}: training {opts.steps} steps")
        splats = train_fixed(splats, targets, views, opts.steps, opts, progress, seed=r + 1)
    return splats, targets, renders
