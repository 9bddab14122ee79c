"""Our trainer beside gsplat's standard recipe (``gsplat_recipe.py``) on the same inputs, in one run.

Each input folder (from ``reconstruct_inputs.py``) holds ``solve/`` (the project's own solve)
and ``images/``. Both trainers get the same frames at the same size, the same cameras, the same
initial points and the same held-out frames (every 8th). Every ``eval_every`` steps the clock
stops (after a CUDA synchronise) and all held-out frames are rendered and scored, so the time
axis is training time alone and each run has a PSNR-over-time curve; from it comes the time
each needed to reach the recipe's final PSNR. Run by ``reconstruct.py --side-by-side``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from backend.pipelines.reconstruct import load_solve_and_frames
from backend.pipelines.reconstruct.losses import psnr, ssim
from backend.pipelines.reconstruct.trainer import ERROR_GAIN, Trainer, split_holdout
from backend.progress import Progress

from gsplat_recipe import RecipeTrainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def _score(render_fn, frames, ids, device) -> dict:
    """Mean PSNR/SSIM over ``ids`` and the strip (truth | render | 4 x error) of the worst frame."""
    ps, ss, worst = [], [], None
    for i in ids:
        img = render_fn(i).clamp(0, 1)
        gt = frames.get(i, device)
        ps.append(psnr(img, gt))
        ss.append(float(ssim(img, gt)))
        if worst is None or ps[-1] < worst[0]:
            worst = (ps[-1], i, img, gt)
    _, i, img, gt = worst
    err = (ERROR_GAIN * (img - gt).abs().mean(-1, keepdim=True)).clamp(0, 1).expand(-1, -1, 3)
    strip = (torch.cat([gt, img, err], 1) * 255).round().byte().cpu().numpy()
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)),
            "strip": strip, "strip_frame": int(i)}


def _curve_time(curve: list[dict], target: float) -> float | None:
    """Training seconds at which ``curve`` first reaches ``target`` PSNR (linear between points)."""
    prev = None
    for c in curve:
        if c["psnr"] >= target:
            if prev is None or c["psnr"] == prev["psnr"]:
                return c["train_s"]
            f = (target - prev["psnr"]) / (c["psnr"] - prev["psnr"])
            return prev["train_s"] + f * (c["train_s"] - prev["train_s"])
        prev = c
    return None


def _timed_run(make, step_fn, render_fn, n_gauss, frames, hold, steps, eval_every, device) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0 = time.perf_counter()
    obj = make()
    _sync(device)
    train_s = time.perf_counter() - t0
    curve = []
    for step in range(steps):
        t = time.perf_counter()
        step_fn(obj, step)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            _sync(device)
            train_s += time.perf_counter() - t
            ev = _score(lambda i: render_fn(obj, i), frames, hold, device)
            curve.append({"step": step + 1, "train_s": round(train_s, 3), "psnr": ev["psnr"],
                          "ssim": ev["ssim"], "gaussians": n_gauss(obj)})
            print(json.dumps(curve[-1]), flush=True)
        else:
            train_s += time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return {"psnr": ev["psnr"], "ssim": ev["ssim"], "train_s": train_s, "gaussians": n_gauss(obj),
            "peak_gb": peak, "curve": curve, "strip": ev["strip"], "strip_frame": ev["strip_frame"],
            "obj": obj}


def profile_steps(make, n: int, out: Path, skip: int = 1000) -> None:
    """torch.profiler table of ``n`` training steps after ``skip`` untimed ones (where the time goes)."""
    from torch.profiler import ProfilerActivity, profile

    obj = make()
    for s in range(skip):
        obj.train_step(s)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        for s in range(skip, skip + n):
            obj.train_step(s)
        _sync(next(iter(obj.params.values())).device)
    key = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    out.write_text(prof.key_averages().table(sort_by=key, row_limit=40))


def run_input(name: str, folder: Path, steps: int, device: str, ours: dict, eval_every: int,
              max_size: int, out_dir: Path, profile: int = 0) -> dict:
    """Train the recipe and each of ``ours`` (label -> TrainConfig) on one input folder."""
    import cv2

    dev = torch.device(device)
    solve, _, frames = load_solve_and_frames(folder / "solve", folder / "images", max_size, device,
                                             8.0, Progress())
    row = {"input": name, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "frames": len(solve.sources), "resolution": [frames.width, frames.height],
           "initial_points": int(len(solve.points)), "steps": steps}
    train_ids, hold = split_holdout(len(solve.sources), 8)
    hold = hold or train_ids
    row["holdout_frames"] = [solve.sources[i] for i in hold]
    # warm-up, untimed: CUDA context, cuDNN and gsplat's kernels are loaded before either clock runs
    for make in (lambda: RecipeTrainer(solve, frames, steps, dev), *(lambda c=c: Trainer(solve, frames, c, dev)
                                                                      for c in ours.values())):
        w = make()
        for s in range(30):
            w.train_step(s)
        del w
    _sync(dev)
    rec = _timed_run(lambda: RecipeTrainer(solve, frames, steps, dev), lambda o, s: o.train_step(s),
                     lambda o, i: o.render([i])[0][0], lambda o: o.num_gaussians,
                     frames, hold, steps, eval_every, dev)
    row.update(recipe_psnr=rec["psnr"], recipe_ssim=rec["ssim"], recipe_train_s=rec["train_s"],
               recipe_gaussians=rec["gaussians"], recipe_peak_gb=rec["peak_gb"], recipe_curve=rec["curve"])
    row["recipe_s_to_recipe_psnr"] = _curve_time(rec["curve"], rec["psnr"])
    strips = [rec["strip"]]
    del rec
    row["ours"] = {}
    for label, cfg in ours.items():
        def step(tr, s):
            tr.train_step(s)

        def render(tr, i):
            img = tr.render([i])[0][0, ..., :3]
            if tr.use_appearance:
                img = (tr.appearance(img, i) if i in tr.train_ids
                       else tr.appearance.blended(img, tr._neighbours(i)))
            return img

        res = _timed_run(lambda: Trainer(solve, frames, cfg, dev), step, render,
                         lambda tr: int(len(tr.params["means"])), frames, hold, steps, eval_every, dev)
        tr = res.pop("obj")
        o = {"psnr": res["psnr"], "ssim": res["ssim"], "train_s": res["train_s"], "gaussians": res["gaussians"],
             "peak_gb": res["peak_gb"], "curve": res["curve"], "appearance": tr.use_appearance,
             "exposure_spread": tr.exposure_spread, "s_to_recipe_psnr": _curve_time(res["curve"], row["recipe_psnr"]),
             "config": {k: v for k, v in cfg.__dict__.items()}}
        row["ours"][label] = o
        strips.append(res["strip"])
        del tr, res
    if profile:
        profile_steps(lambda: RecipeTrainer(solve, frames, steps, dev), profile, out_dir / f"profile-{name}-recipe.txt")
        profile_steps(lambda: Trainer(solve, frames, ours["ours"], dev), profile, out_dir / f"profile-{name}-ours.txt")
    first = next(iter(row["ours"].values()))
    row.update(ours_psnr=first["psnr"], ours_ssim=first["ssim"], ours_train_s=first["train_s"],
               ours_gaussians=first["gaussians"], ours_peak_gb=first["peak_gb"],
               ours_s_to_recipe_psnr=first["s_to_recipe_psnr"])
    h = min(s.shape[0] for s in strips)
    sheet = np.concatenate([s[:h] for s in strips], 0)
    scale = min(1.0, 1800 / sheet.shape[1])
    sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    path = out_dir / f"strips-{name}.jpg"
    cv2.imwrite(str(path), sheet[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    row["strips"] = path.name + " (rows: recipe, then " + ", ".join(row["ours"]) + "; truth | render | 4x error)"
    return row


def markdown(results: dict) -> str:
    lines = [f"# Reconstruction side by side with gsplat's standard recipe: {results['machine']}", "",
             f"- date: {results['date']}; torch {results['torch']}, gsplat {results['gsplat']}"
             + (f"; SSIM loss kernels: {results['ssim_kernels']} (both trainers)" if results.get("ssim_kernels") else ""),
             f"- {results['steps']} steps; held-out PSNR/SSIM (every 8th frame); training seconds exclude "
             "evaluation; inputs: " + ", ".join(f"{r['input']} ({r['frames']} frames, "
                                                f"{r['resolution'][0]}x{r['resolution'][1]})" for r in results["inputs"]),
             "", "| input | run | PSNR (dB) | SSIM | train s | time vs recipe | s to recipe's PSNR | "
             "that vs recipe's time | Gaussians | peak GPU GB | appearance (exposure spread) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["inputs"]:
        def fmt(v, f):
            return "-" if v is None else format(v, f)
        rt = r["recipe_train_s"]

        def frac(v):
            return "-" if v is None else f"{v / rt:.2f}"
        lines.append(f"| {r['input']} | recipe | {r['recipe_psnr']:.2f} | {r['recipe_ssim']:.4f} | "
                     f"{rt:.1f} | 1.00 | {fmt(r['recipe_s_to_recipe_psnr'], '.1f')} | "
                     f"{frac(r['recipe_s_to_recipe_psnr'])} | {r['recipe_gaussians']} | "
                     f"{fmt(r['recipe_peak_gb'], '.2f')} | off |")
        for label, o in r["ours"].items():
            app = "on" if o["appearance"] else "off"
            if o.get("exposure_spread") is not None:
                app += f" ({o['exposure_spread']:.4f})"
            lines.append(f"| {r['input']} | {label} | {o['psnr']:.2f} | {o['ssim']:.4f} | {o['train_s']:.1f} | "
                         f"{o['train_s'] / rt:.2f} | {fmt(o['s_to_recipe_psnr'], '.1f')} | "
                         f"{frac(o['s_to_recipe_psnr'])} | {o['gaussians']} | {fmt(o['peak_gb'], '.2f')} | {app} |")
    return "\n".join(lines) + "\n"
