#!/usr/bin/env python3
"""A product from one photo, checked against real GLBs with the oracle multi-view model.

Each GLB of ``../shared/data/glb/products`` named on the command line is rendered with bpy at the
oracle's sixteen fixed views and four held-out views (``backend/evaluation/product_oracle.py``),
the ``product`` job runs on the renders as the generated views (true depth as the depth model),
and the result is measured: held-out PSNR inside the true silhouette and silhouette IoU, the
splats' height against ``--height``, the extracted mesh's bounding box against the GLB's, and the
job's time.

    python benchmarks/product.py --machine cpu-2core

writes ``benchmarks/results/product-<machine>.{json,md}`` and the first GLB's turntable strip to
``docs/images/product_turntable.png``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation import product_oracle as oracle  # noqa: E402
from backend.evaluation.machine import describe  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "glb" / "products"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--glb", nargs="+", default=["Avocado.glb", "Duck.glb"])
    ap.add_argument("--size", type=int, default=96, help="view size in px")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--height", type=float, default=0.3)
    args = ap.parse_args()
    rows = []
    for k, name in enumerate(args.glb):
        truth = oracle.render_truth(DATA / name, args.size)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            photo = tmp / "photo.png"
            cv2.imwrite(str(photo), cv2.cvtColor(truth["rgba"][0], cv2.COLOR_RGBA2BGRA))
            _, seconds = oracle.run_oracle(truth, photo, tmp / "out", args.height, steps=args.steps,
                                           max_points=8000, turntable_frames=16, turntable_size=96, mesh_res=96)
            m = oracle.measure(truth, tmp / "out", args.height)
            if k == 0:
                (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
                shutil.copy(tmp / "out" / "turntable_strip.png", ROOT / "docs" / "images" / "product_turntable.png")
        rows.append({"glb": name, "seconds": round(seconds, 1),
                     "psnr_db_median": round(float(np.median(m["psnr_db"])), 2),
                     "psnr_db_min": round(float(np.min(m["psnr_db"])), 2),
                     "iou_median": round(float(np.median(m["iou"])), 3), "iou_min": round(float(np.min(m["iou"])), 3),
                     "height_error_pct": round(100 * abs(m["splat_height_m"] / args.height - 1), 2),
                     "mesh_size_error_pct_max": round(100 * max(m["mesh_size_error"]), 2),
                     "num_gaussians": m["summary"]["num_gaussians"], "per_view": m})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_view"}), flush=True)
    doc = {"machine": args.machine, "host": describe(), "size_px": args.size, "steps": args.steps,
           "views": len(oracle.VIEWS["views"]), "held_out": len(oracle.HELD), "height_m": args.height, "rows": rows}
    out = ROOT / "benchmarks" / "results" / f"product-{args.machine}"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1, default=float))
    lines = [f"# product from one photo, oracle views ({args.machine})", "",
             f"{describe()}; {doc['views']} fixed views and {doc['held_out']} held-out views at {args.size} px, "
             f"{args.steps} training steps, height {args.height} m.", "",
             "| GLB | held-out PSNR median (dB) | min (dB) | IoU median | IoU min | height error (%) | mesh box error max (%) | job (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['glb']} | {r['psnr_db_median']} | {r['psnr_db_min']} | {r['iou_median']} | {r['iou_min']} | "
                     f"{r['height_error_pct']} | {r['mesh_size_error_pct_max']} | {r['seconds']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
