"""Where a training step's time goes at a clip's full resolution (CUDA events, synchronised).

    python benchmarks/train_step_profile.py --clip CLIP [--steps 300] [--warmup 600]

Trains ``--warmup`` steps on the clip's truth solve (as benchmarks/reconstruct.py builds it),
then times ``--steps`` full-resolution steps split into: render (forward), loss (forward),
backward, optimisers + densification. Also times SSIM alone, forward + backward, at that size.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.pipelines.reconstruct import TrainConfig  # noqa: E402
from backend.pipelines.reconstruct.frames import load_frames  # noqa: E402
from backend.pipelines.reconstruct.losses import photometric_loss, ssim  # noqa: E402
from backend.pipelines.reconstruct.scene import load_solve  # noqa: E402
from backend.pipelines.reconstruct.synthetic_solve import solve_from_clip  # noqa: E402
from backend.pipelines.reconstruct.trainer import Trainer  # noqa: E402


def timed(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t) / repeats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=600)
    ap.add_argument("--frames-step", type=int, default=8)
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    solve_dir = solve_from_clip(args.clip, Path("/tmp/profile-solve"), n_points=50000, noise=0.01,
                                frames_step=args.frames_step)
    solve = load_solve(solve_dir)
    frames = load_frames(solve.input_path(), solve.sources, solve.width, solve.height, solve.K, device=dev)
    cfg = TrainConfig(steps=7000, checkpoint_every=0, eval_every=0)
    tr = Trainer(solve, frames, cfg, dev)
    for s in range(args.warmup):
        tr.train_step(s)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(5)]
    parts = {"render": [], "loss": [], "backward": [], "optimise": []}
    for s in range(args.warmup, args.warmup + args.steps):
        i = tr._frame_for_step(s)
        ev[0].record()
        gt = tr._target(i, 1)
        img, _, info = tr.render([i], sh_degree=tr.sh_degree_at(s))
        ev[1].record()
        img = tr.appearance(img[0], i)
        tr.strategy.step_pre_backward(tr.params, tr.optimizers, tr.strategy_state, s, info)
        loss = photometric_loss(img, gt, cfg.ssim_lambda)
        ev[2].record()
        loss.backward()
        ev[3].record()
        for o in tr.optimizers.values():
            o.step()
            o.zero_grad(set_to_none=True)
        tr.app_opt.step()
        tr.app_opt.zero_grad(set_to_none=True)
        tr.strategy.step_post_backward(tr.params, tr.optimizers, tr.strategy_state, s, info, packed=False)
        ev[4].record()
        torch.cuda.synchronize()
        for k, (a, b) in zip(parts, zip(ev[:-1], ev[1:])):
            parts[k].append(a.elapsed_time(b))
    out = {k: float(np.median(v)) for k, v in parts.items()}
    out["step_ms_median"] = float(np.median(np.sum([parts[k] for k in parts], 0)))
    out["gaussians"] = int(len(tr.params["means"]))
    h, w = frames.height, frames.width
    a = torch.rand(h, w, 3, device=dev, requires_grad=True)
    b = torch.rand(h, w, 3, device=dev)
    out["ssim_fwd_bwd_ms"] = timed(lambda: ssim(a, b).backward())
    out["ssim_fwd_ms"] = timed(lambda: ssim(a.detach(), b))
    out["size"] = [w, h]
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
