"""Benchmark a scene from one photo with oracle models (our part of the pipeline only).

    python benchmarks/scene.py [--width 320 --height 180] [--views 8] [--steps 30] [--rounds 1]
                               [--repeat 3] [--device cpu] [--label cpu-2core] [--models oracle|tiny]

The photo is the ray-cast room (backend/models/scene_oracles.py) seen from 1.6 m; the depth
model returns its true depth and the diffusion model its true render, so the seconds are
those of the pipeline itself (outpainting canvas, lifting, warp-and-inpaint renders, depth
alignment, training, outputs) and the time in the stand-ins is reported apart. Each run also
measures the held-out PSNR (views halfway between the generated ones against the true render)
and the ground-plane and scale errors (backend/evaluation/scene_metrics.py). Writes medians
over ``--repeat`` runs to ``benchmarks/results/scene-<label>.json`` and the strips of the last
run beside it (``scene-<label>-coarse.jpg``, ``scene-<label>-refine.jpg``).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.evaluation.machine import describe  # noqa: E402


def one_run(args, tmp: Path) -> dict:
    import cv2

    from backend.evaluation.scene_metrics import ground_errors, held_out_psnr
    from backend.models.scene_oracles import OracleSceneModels, oracle_photo
    from backend.pipelines.scene import SceneOptions, make_scene
    from backend.pipelines.scene.models import LearnedModels
    from backend.pipelines.scene.refine import RefineOptions

    w, h = args.width, args.height
    focal = args.focal_frac * w
    room, c2w, rgb = oracle_photo(w, h, focal)
    cv2.imwrite(str(tmp / "photo.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    models = OracleSceneModels(room, c2w) if args.weights is None else LearnedModels(
        args.weights, device=args.device, steps=args.inference_steps)
    opts = SceneOptions(max_size=None, fov_deg=float(np.degrees(2 * np.arctan(w / 2 / focal))), views=args.views,
                        refine=RefineOptions(steps=args.steps, rounds=args.rounds), preview_frames=args.preview_frames,
                        device=args.device)
    t0 = time.perf_counter()
    summary = make_scene([tmp / "photo.png"], tmp / "scene", models, opts)
    wall = time.perf_counter() - t0
    sec = summary["seconds"]
    row = {"seconds_total": wall, "seconds_models": sec["models"], "seconds_ours": wall - sec["models"],
           "models_share": sec["models"] / wall, "seconds_coarse": sec["coarse"], "seconds_refine": sec["refine"],
           "seconds_outputs": sec["write"], "gaussians": summary["gaussians"]}
    if args.weights is None:  # the truth is only reproduced by the oracle models
        psnr = held_out_psnr(tmp / "scene", room, c2w, focal, w, h)
        row.update(psnr_held_out_db=statistics.median(psnr), psnr_held_out_min_db=min(psnr),
                   **ground_errors(tmp / "scene", c2w))
    return row


def tiny_weights(folder: Path) -> Path:
    """Tiny randomly initialised depth and inpainting models (the tests' builders), saved into ``folder``."""
    import warnings

    sys.path.insert(0, str(REPO))
    from tests.test_depth_model import save_tiny_depth_anything
    from tests.test_stereo_inpaint_model import build_tiny_pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save_tiny_depth_anything(folder / "depth", kind="metric", max_depth=10)
        build_tiny_pipeline(folder)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--focal-frac", type=float, default=0.78125, help="focal length / width (default 250/320)")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--preview-frames", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--label", default="cpu-2core")
    ap.add_argument("--models", choices=("oracle", "tiny"), default="oracle",
                    help="oracle: truth-returning stand-ins (our part's seconds, PSNR against the truth); tiny: "
                         "tiny random depth and inpainting models through the real loaders (the models' share of "
                         "the time; results file scene-tiny-models-<label>.json)")
    ap.add_argument("--inference-steps", type=int, default=2, help="diffusion steps per call with --models tiny")
    args = ap.parse_args()
    args.weights = tiny_weights(Path(tempfile.mkdtemp(prefix="scene-weights-"))) if args.models == "tiny" else None
    stem = "scene" if args.models == "oracle" else "scene-tiny-models"
    import cv2

    runs = []
    for i in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="scene-bench-"))
        try:
            runs.append(one_run(args, tmp))
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in runs[-1].items()}
            print(json.dumps({"run": i, **rounded}), flush=True)
            if i == args.repeat - 1 and args.models == "oracle":
                res = REPO / "benchmarks" / "results"
                for name, tag in (("coarse_strip.png", "coarse"), ("refine_strip.png", "refine")):
                    img = cv2.imread(str(tmp / "scene" / name))
                    cv2.imwrite(str(res / f"{stem}-{args.label}-{tag}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    doc = {"benchmark": stem, "machine": args.label, "machine_detail": describe(),
           "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "label"},
           "what": f"one photo of the ray-cast room to a refined scene with {args.models} models; seconds_ours is "
                   "the pipeline's own time (total minus the time in the models), models_share the models' part",
           "median": {k: round(v, 4) for k, v in med.items()}, "runs": runs}
    out = REPO / "benchmarks" / "results" / f"{stem}-{args.label}.json"
    out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
