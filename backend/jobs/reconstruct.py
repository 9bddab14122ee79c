"""Job ``reconstruct``: camera solve folder -> Gaussian splats (thin adapter over
:func:`backend.pipelines.reconstruct.reconstruct`).

``--gpus N`` (N > 1) trains on N GPUs of this host
(:mod:`backend.pipelines.reconstruct.distributed`).

Outputs: splats.ply (3DGS layout, Blender world), splats.splat, metrics.json, holdout.png
(ground truth | render | error), cameras_refined.json with ``--refine-cameras``. Arrays: the
"splat mesh" payload (positions, colors (linear RGB), opacity, scales, rotations, sh_rest).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from backend.jobs import JobResult
from backend.progress import JobError, Progress

#: The job's stages weighted by their rough share of a run, so progress is one overall fraction.
STAGES = [("check", 1), ("load", 4), ("train", 90), ("evaluate", 2), ("write", 3)]
STRATEGIES = ("default", "mcmc")
DEVICES = ("cpu", "cuda")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("solve_dir", type=Path, help="camera-solve folder (cameras.json, points.ply)")
    parser.add_argument("--input", "--video", "--images", dest="input", type=Path,
                        help="the footage (video file or image folder), if cameras.json does not record it")
    parser.add_argument("--steps", type=int, default=7000, help="training steps (default 7000)")
    parser.add_argument("--device", choices=DEVICES, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="densification: gsplat's default (split/clone/prune) or mcmc")
    parser.add_argument("--sh-degree", type=int, default=3, help="spherical-harmonics degree 0..3")
    parser.add_argument("--train-size", "--max-size", dest="max_size", type=int, default=1600, metavar="PX",
                        help="long side the frames are trained at, in pixels (default 1600); smaller "
                             "trains faster on a CPU")
    parser.add_argument("--resolution-start", type=float, default=0.25,
                        help="training resolution at the first step, as a fraction of --max-size; it rises "
                             "linearly to full size at half the steps (default 0.25; 1 trains at full size)")
    parser.add_argument("--coarse-to-fine", action=argparse.BooleanOptionalAction, default=False,
                        help="instead: the first 30 %% of the steps at 1/4 and the next 30 %% at 1/2 resolution")
    parser.add_argument("--refine-cameras", action="store_true", help="optimise camera poses too")
    parser.add_argument("--appearance", choices=("auto", "on", "off"), default="auto",
                        help="per-frame colour (exposure) compensation; auto (default): on only when "
                             "the footage's exposure varies")
    parser.add_argument("--no-appearance", dest="appearance", action="store_const", const="off",
                        help="same as --appearance off")
    parser.add_argument("--holdout-every", type=int, default=8, help="hold out every Nth frame (default 8)")
    parser.add_argument("--checkpoint-every", type=int, default=1000, help="checkpoint period in steps")
    parser.add_argument("--checkpoint-dir", type=Path,
                        help="where checkpoints live (default: the project cache, keyed by solve and options)")
    parser.add_argument("--frames-budget-gb", type=float, default=4.0,
                        help="GPU memory the decoded frames may take; beyond it they stay in host memory")
    parser.add_argument("--max-gaussians", type=int, default=1_000_000, help="cap for --strategy mcmc")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="CPU threads for --device cpu")
    parser.add_argument("--gpus", type=int, default=1,
                        help="train on this many GPUs of this host (gsplat's distributed training; "
                             "checkpoints only with 1)")


def params_from_args(args: argparse.Namespace) -> dict:
    p = {
        "solve_dir": str(Path(args.solve_dir).resolve()),
        "steps": args.steps, "strategy": args.strategy, "sh_degree": args.sh_degree,
        "max_size": args.max_size, "refine_cameras": bool(args.refine_cameras),
        "appearance": args.appearance, "holdout_every": args.holdout_every,
        "checkpoint_every": args.checkpoint_every, "frames_budget_gb": args.frames_budget_gb,
        "max_gaussians": args.max_gaussians, "seed": args.seed, "gpus": args.gpus,
        "coarse_to_fine": bool(args.coarse_to_fine), "resolution_start": args.resolution_start,
    }
    if args.device:
        p["device"] = args.device
    if args.input:
        p["input"] = str(Path(args.input).resolve())
    if args.checkpoint_dir:
        p["checkpoint_dir"] = str(Path(args.checkpoint_dir).resolve())
    if args.threads:
        p["threads"] = args.threads
    return p


def _int(params: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise JobError(f"reconstruct: {key} must be an integer in [{lo}, {hi}], got {v!r}", "bad_params")
    return v



def _fraction(params: dict, key: str, default: float) -> float:
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
        raise JobError(f"reconstruct: {key} must be a number in (0, 1], got {v!r}", "bad_params")
    return float(v)


def train_config(params: dict, steps: int, strategy: str, sh: int):
    """The TrainConfig a ``reconstruct`` job with ``params`` trains with (benchmarks use it too)."""
    from backend.pipelines.reconstruct import TrainConfig

    appearance = params.get("appearance", "auto")
    if isinstance(appearance, bool):
        appearance = "on" if appearance else "off"
    if appearance not in ("auto", "on", "off"):
        raise JobError(f"reconstruct: appearance must be auto, on or off, got {appearance!r}", "bad_params")
    return TrainConfig(
        steps=steps, strategy=strategy, sh_degree=sh,
        sh_degree_interval=max(1, min(1000, steps // (2 * (sh + 1)))),
        holdout_every=_int(params, "holdout_every", 8, 0, 10_000),
        appearance=appearance,
        refine_cameras=bool(params.get("refine_cameras", False)),
        coarse_to_fine=bool(params.get("coarse_to_fine", False)),
        resolution_start=_fraction(params, "resolution_start", 0.25),
        checkpoint_every=_int(params, "checkpoint_every", 1000, 0, 1_000_000),
        eval_every=max(1, min(500, steps // 10)),
        seed=_int(params, "seed", 0, 0, 2**31 - 1),
        cap_max=_int(params, "max_gaussians", 1_000_000, 1, 100_000_000),
        cpu_threads=params.get("threads"),
    )


def run(params: dict, out_dir: Path, progress: Progress) -> JobResult:
    from backend.pipelines.reconstruct import default_device, reconstruct

    if not isinstance(params.get("solve_dir"), str):
        raise JobError("reconstruct: solve_dir (the camera-solve folder) is required", "bad_params")
    steps = _int(params, "steps", 7000, 1, 1_000_000)
    sh = _int(params, "sh_degree", 3, 0, 3)
    strategy = params.get("strategy", "default")
    if strategy not in STRATEGIES:
        raise JobError(f"reconstruct: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}",
                       "bad_params")
    device = params.get("device") or default_device()
    if device not in DEVICES:
        raise JobError(f"reconstruct: device must be cpu or cuda, got {device!r}", "bad_params")
    gpus = _int(params, "gpus", 1, 1, 1024)
    if gpus > 1:
        from backend.pipelines.reconstruct.distributed import check_gpus

        check_gpus(gpus, device)
    budget = params.get("frames_budget_gb", 4.0)
    if not isinstance(budget, (int, float)) or budget < 0:
        raise JobError("reconstruct: frames_budget_gb must be a non-negative number", "bad_params")
    cfg = train_config(params, steps, strategy, sh)
    max_size = _int(params, "max_size", 1600, 16, 16384)
    if gpus > 1:
        from backend.pipelines.reconstruct.distributed import reconstruct_distributed

        files, arrays, metrics = reconstruct_distributed(
            params["solve_dir"], out_dir, cfg, gpus, device=device, input_path=params.get("input"),
            max_size=max_size, frames_budget_gb=float(budget), progress=progress)
        return JobResult(files=files, arrays=arrays, summary=metrics)
    estimate = _cpu_training_check(params["solve_dir"], cfg, max_size, progress) if device == "cpu" else None
    files, arrays, metrics, _ = reconstruct(
        params["solve_dir"], out_dir, cfg, device=device, input_path=params.get("input"),
        max_size=max_size, frames_budget_gb=float(budget),
        checkpoint_dir=params.get("checkpoint_dir"), progress=progress)
    if estimate is not None:
        metrics["train_estimate_s"] = round(estimate, 1)
    return JobResult(files=files, arrays=arrays, summary=metrics)


def _cpu_training_check(solve_dir: str, cfg, max_size: int, progress: Progress) -> float | None:
    """Estimate CPU training before it starts and warn, proposing fewer steps or a smaller
    --train-size, when it is long (:mod:`backend.pipelines.reconstruct.estimate`). A solve
    folder without a readable cameras.json is left to the pipeline to report."""
    import json

    from backend.media.video import scaled_size
    from backend.pipelines.reconstruct.estimate import warn_if_slow

    try:
        doc = json.loads((Path(solve_dir) / "cameras.json").read_text())
        w, h = scaled_size(int(doc["width"]), int(doc["height"]), max_size)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return warn_if_slow(progress, cfg, w, h, "fewer --steps")
