"""Benchmark the Gaussian-splat reconstruction and the render service.

Trains on a synthetic clip (``backend.synthetic.make_clip`` output: truth.json, frames/, depth/)
whose solve is built from the truth (cameras exact, points sampled from the true depth with
noise), for each ``--steps`` value, and reports held-out PSNR/SSIM, training seconds, peak GPU
memory and the Gaussian count. Then times rendering ``--render-splats`` random splats at
``--render-size``. Writes ``benchmarks/results/reconstruct-<machine>.{json,md}`` (``--machine``,
default from the device, e.g. ``nvidia-h100-x1``; a copy and the work files go to ``--out-dir``).

    python benchmarks/reconstruct.py --clip CLIP --steps 7000 30000 --out-dir OUT
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.pipelines.reconstruct import TrainConfig, default_device, reconstruct  # noqa: E402
from backend.pipelines.reconstruct.synthetic_solve import solve_from_clip  # noqa: E402


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def bench_training(solve: Path, work: Path, steps: int, strategy: str, device: str, name: str,
                   input_path: Path | None = None, max_size: int | None = None,
                   coarse_to_fine: bool = False) -> dict:
    cfg = TrainConfig(steps=steps, strategy=strategy, sh_degree=3, checkpoint_every=0,
                      eval_every=max(1, steps // 5), coarse_to_fine=coarse_to_fine)
    t = time.perf_counter()
    tag = "-c2f" if coarse_to_fine else ""
    _, _, m, res = reconstruct(solve, work / f"out-{name}-{strategy}-{steps}{tag}", cfg, device=device,
                               input_path=input_path, max_size=max_size, checkpoint_dir=work / "ckpt")
    m["wall_seconds"] = time.perf_counter() - t
    m["dataset"] = name
    m["coarse_to_fine"] = coarse_to_fine
    m["history"] = res.history
    return m


@torch.no_grad()
def bench_render(n: int, width: int, height: int, device: str, repeats: int = 20) -> dict:
    from backend.pipelines.reconstruct.raster import rasterize

    g = torch.Generator(device="cpu").manual_seed(0)
    means = (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor([8.0, 4.5, 4.0]) + torch.tensor([0, 0, 6.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.exp(torch.empty(n, 3).uniform_(np.log(0.003), np.log(0.03), generator=g))
    opac = torch.empty(n).uniform_(0.1, 0.99, generator=g)
    sh = torch.randn(n, 16, 3, generator=g) * 0.2
    f = 0.8 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    args = [t.to(device) for t in (means, quats, scales, opac, sh)]
    vm, K = torch.eye(4, device=device)[None], K.to(device)[None]
    out = {}
    for label, mode in (("rgb", "RGB"), ("rgb_depth", "RGB+ED")):
        times = []
        for i in range(repeats + 3):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            rasterize(*args, vm, K, width, height, sh_degree=3, render_mode=mode)
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 3:
                times.append(time.perf_counter() - t)
        out[f"ms_per_frame_{label}"] = 1000 * float(np.median(times))
    out.update(splats=n, width=width, height=height, sh_degree=3)
    return out


def render_raycast(clip: Path, width: int, height: int, frames: int, interaxial: float) -> float:
    """Render the analytic scene's handheld clip (PNG frames, right eye, depth); returns seconds."""
    import os

    from backend.evaluation import raycast_scene

    t = time.perf_counter()
    path = raycast_scene.handheld_path(frames, travel=1.2)
    raycast_scene.write_clip(clip, path, 0.875 * width, width, height, supersample=2, video=False,
                             workers=os.cpu_count() or 1, stereo=interaxial, depth_every=8)
    return time.perf_counter() - t


def markdown(results: dict) -> str:
    lines = [f"# Reconstruction benchmark: {results['machine']}", "",
             f"- date: {results['date']}", f"- torch {results['torch']}, gsplat {results['gsplat']}, "
             f"device {results['device']}", f"- clip: {results['clip']}", ""]
    if results["training"]:
        lines += ["| dataset | strategy | coarse-to-fine | steps | resolution | PSNR holdout (dB) | SSIM holdout | PSNR at init | "
                  "train s | peak GPU GB | Gaussians |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in results["training"]:
            mem = "-" if m["peak_gpu_mem_gb"] is None else f"{m['peak_gpu_mem_gb']:.2f}"
            lines.append(f"| {m['dataset']} | {m['strategy']} | {'yes' if m.get('coarse_to_fine') else 'no'} | {m['steps']} | {m['resolution'][0]}x{m['resolution'][1]} | "
                         f"{m['psnr_holdout']:.2f} | {m['ssim_holdout']:.4f} | {m['psnr_init']:.2f} | "
                         f"{m['train_seconds']:.1f} | {mem} | {m['num_gaussians']} |")
    if results.get("render"):
        r = results["render"]
        lines += ["", f"Render of {r['splats']:,} random splats (SH degree 3) at {r['width']}x{r['height']}: "
                  f"{r['ms_per_frame_rgb']:.2f} ms/frame RGB, {r['ms_per_frame_rgb_depth']:.2f} ms/frame RGB+depth "
                  "(median of 20, after 3 warm-ups, synchronised)."]
    return "\n".join(lines) + "\n"


def machine_label(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0).lower()
        for key in ("h200", "h100", "a100", "l40s", "4090"):
            if key in name:
                return f"nvidia-{key}-x1"
        return "gpu-" + "".join(c if c.isalnum() else "-" for c in name).strip("-")
    return f"cpu-{__import__('os').cpu_count()}core"


def side_by_side_main(args) -> int:
    """``--side-by-side``: the recipe and ours on each input, one results file for the machine."""
    import dataclasses

    import gsplat

    import side_by_side
    from backend.jobs.reconstruct import train_config

    steps = args.steps[0] if args.steps else 7000
    base = dataclasses.replace(train_config({}, steps, "default", 3), checkpoint_every=0, eval_every=0)
    ours = {"ours": base}
    for item in args.ours:
        label, _, overrides = item.partition("=")
        ours[label] = dataclasses.replace(base, **json.loads(overrides))
    label = args.machine or machine_label(args.device)
    res_dir = Path(__file__).resolve().parent / "results"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "machine_label": label,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "gsplat": gsplat.__version__, "device": args.device,
               "steps": steps, "inputs": []}
    if args.device.startswith("cuda"):  # which SSIM kernels both trainers ran
        from backend.pipelines.reconstruct import ssim_fused

        results["ssim_kernels"] = "triton" if ssim_fused._triton() is not None else "pytorch"
    stem = f"reconstruct-side-by-side-{label}"
    for folder in args.side_by_side:
        row = side_by_side.run_input(folder.name, folder, steps, args.device, ours, args.eval_every,
                                     args.max_size or 1600, args.out_dir, args.profile)
        strip = args.out_dir / f"strips-{folder.name}.jpg"
        strip.replace(args.out_dir / f"{stem}-{strip.name}")
        row["strips"] = f"{stem}-{row['strips']}"
        results["inputs"].append(row)
        for where in (args.out_dir, res_dir):
            (where / f"{stem}.json").write_text(json.dumps(results, indent=1))
            (where / f"{stem}.md").write_text(side_by_side.markdown(results))
    print(side_by_side.markdown(results))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, help="synthetic clip folder (truth.json, frames/, depth/)")
    ap.add_argument("--solve", type=Path, help="a camera-solve folder to train on instead of a clip")
    ap.add_argument("--input", type=Path, help="footage of --solve when cameras.json does not record it")
    ap.add_argument("--name", default=None, help="dataset label in the results")
    ap.add_argument("--max-size", type=int, default=None, help="longest training side (default: full)")
    ap.add_argument("--render-raycast", type=int, nargs=3, metavar=("WIDTH", "HEIGHT", "FRAMES"),
                    help="first render --clip with the analytic ray caster (handheld path, stereo right "
                         "eye at --interaxial, true depth of every 8th frame) unless it has a truth.json")
    ap.add_argument("--interaxial", type=float, default=0.065)
    ap.add_argument("--coarse-to-fine", nargs="*", type=int, default=[0], choices=[0, 1],
                    help="train without (0) and/or with (1) the coarse-to-fine resolution schedule")
    ap.add_argument("--steps", type=int, nargs="*", default=[7000, 30000])
    ap.add_argument("--strategy", nargs="*", default=["default"], choices=["default", "mcmc"])
    ap.add_argument("--points", type=int, default=20000, help="initial points sampled from the true depth")
    ap.add_argument("--device", default=default_device())
    ap.add_argument("--render-splats", type=int, default=1_000_000)
    ap.add_argument("--render-size", type=int, nargs=2, default=[1920, 1080])
    ap.add_argument("--out-dir", type=Path, default=Path("out/bench-reconstruct"))
    ap.add_argument("--side-by-side", type=Path, nargs="+", metavar="INPUT",
                    help="input folders from reconstruct_inputs.py (solve/ + images/): train gsplat's "
                         "standard recipe and ours on each, in this run, and write "
                         "results/reconstruct-side-by-side-<machine>.{json,md}")
    ap.add_argument("--ours", action="append", default=[], metavar="LABEL=JSON",
                    help="with --side-by-side: also train ours with these TrainConfig overrides "
                         "(the first run is always the job's defaults, labelled 'ours')")
    ap.add_argument("--eval-every", type=int, default=500, help="with --side-by-side: steps between evaluations")
    ap.add_argument("--markdown-from", type=Path, metavar="JSON",
                    help="rewrite the .md table of a side-by-side results file from its JSON")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="with --side-by-side: also write a torch.profiler table of N steps of each trainer")
    ap.add_argument("--machine", default=None, help="machine label of the results file (default: from the device)")
    args = ap.parse_args(argv)
    import gsplat

    if args.markdown_from:
        import side_by_side

        md = args.markdown_from.with_suffix(".md")
        md.write_text(side_by_side.markdown(json.loads(args.markdown_from.read_text())))
        print(md.read_text())
        return 0
    if args.side_by_side:
        return side_by_side_main(args)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "gsplat": gsplat.__version__, "device": args.device,
               "clip": str(args.clip), "training": [], "render": None}
    if args.render_splats:
        results["render"] = bench_render(args.render_splats, *args.render_size, args.device)
        print(json.dumps(results["render"]), flush=True)
    solve, name = args.solve, args.name
    step = 1
    if args.clip and args.render_raycast:
        step = 8
        if not (args.clip / "truth.json").is_file():
            results["raycast_render_s"] = render_raycast(args.clip, *args.render_raycast, args.interaxial)
    if args.clip and not solve:
        solve = solve_from_clip(args.clip, args.out_dir / "work" / "solve", n_points=args.points, noise=0.01,
                                frames_step=step)
        name = name or f"synthetic {args.clip.name}"
    if solve:
        name = name or Path(solve).name
        results["clip"] = str(args.clip or args.solve)
        for strategy, c2f, steps in itertools.product(args.strategy, args.coarse_to_fine, args.steps):
            m = bench_training(solve, args.out_dir / "work", steps, strategy, args.device, name,
                               args.input, args.max_size, bool(c2f))
            results["training"].append(m)
            print(json.dumps({k: v for k, v in m.items() if k != "history"}), flush=True)
            (args.out_dir / "reconstruct.json").write_text(json.dumps(results, indent=1))
            (args.out_dir / "reconstruct.md").write_text(markdown(results))
    (args.out_dir / "reconstruct.json").write_text(json.dumps(results, indent=1))
    (args.out_dir / "reconstruct.md").write_text(markdown(results))
    stem = Path(__file__).resolve().parent / "results" / f"reconstruct-{args.machine or machine_label(args.device)}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=1))
    stem.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
