""""Does the product look like it belongs?": our composite against a rendered truth.

A synthetic scene (the project's textured room, lit by its own sun and sky) is rendered with
Cycles twice from the same handheld cameras: empty (the footage) and with the product really
standing on its ground (the truth). The footage then goes through the composite job with the
true cameras as the solve and splats made from the footage's true depth (so this measures
lighting, shadow and colour, not the solve or the reconstruction), placing the same product at
the same spot, size and turn. Each lighting variant of the job renders the same frames:

* ``before``: the environment map takes the splats' sRGB values as linear light, no key light,
  Cycles' default grey shadow-catcher ground (``env_linear=False, key_light=False``);
* ``linear``: the environment map in linear light and the ground's albedo from the footage,
  no key light (``key_light=False``);
* ``after``: the defaults: linear map, ground albedo and the sun found from the footage's
  shadows (``backend/pipelines/composite/sunlight.py``).

Per frame (``backend/evaluation/realism.py``): PSNR/SSIM of composite against truth in the
product's screen box; the truth's shadow region (ground near the foot, outside the product,
darker than the footage by more than 10 %) and its mean darkening ``1 - Y/Y_footage`` (linear
luminance) in the truth and in the composite; the composite's darkening of the nearby ground
the truth leaves lit. Medians over the frames are the figures. Targets: >= 30 dB in the
product box; shadow darkening within 20 % of the truth's.

    python benchmarks/realism.py --machine cpu-2core             (480x270, 3 frames, 32 samples)

Writes ``benchmarks/results/realism-<machine>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation import realism  # noqa: E402
from backend.evaluation.machine import cpu_model  # noqa: E402

PRODUCT = ROOT.parent / "shared" / "data" / "glb" / "products" / "WaterBottle.glb"
VARIANTS = {"before": {"env_linear": False, "key_light": False},
            "linear": {"env_linear": True, "key_light": False},
            "after": {"env_linear": True, "key_light": True}}
TARGETS = {"psnr_box_db": 30.0, "darkening_ratio": [0.8, 1.2]}


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    return statistics.median(vals) if vals else None


def run(args) -> dict:
    work = Path(args.work or tempfile.mkdtemp(prefix="realism-"))
    t0 = time.monotonic()
    pair = realism.render_pair(work, args.product, args.at, args.product_height, width=args.width,
                               height=args.height, frames=args.frames, samples=args.samples, denoise=True,
                               seed=args.seed)
    render_s = time.monotonic() - t0
    true_sun = realism.true_sun(args.seed)
    out = {"benchmark": "realism", "machine": args.machine, "cpu": cpu_model(), "cores": os.cpu_count(),
           "python": platform.python_version(), "product": args.product.name,
           "product_height_m": args.product_height, "product_at": list(args.at),
           "size": f"{args.width}x{args.height}", "frames": args.frames, "samples": args.samples,
           "denoise": True, "seed": args.seed, "targets": TARGETS, "truth_render_seconds": round(render_s, 1),
           "true_sun": true_sun, "variants": {}}
    for name in args.variants:
        t = time.monotonic()
        frames, summary = realism.composite_footage(pair["empty"], args.product, args.at, args.product_height,
                                                    work / name, samples=args.samples, denoise=True,
                                                    env_face=args.env_face, splat_frames=range(args.frames),
                                                    **VARIANTS[name])
        rows = [realism.compare_frame(pair["empty"], pair["truth"], frames, i, reach=args.reach)
                for i in range(args.frames)]
        med = {k: _median(rows, k) for k in ("psnr_box_db", "ssim_box", "psnr_product_db", "psnr_shadow_db",
                                              "ssim_shadow", "darkening_truth", "darkening_composite",
                                              "darkening_ratio", "darkening_lit_truth", "darkening_lit_composite")}
        light = json.loads((frames.parent / "light.json").read_text()) if (frames.parent / "light.json").is_file() \
            else None
        v = {"settings": VARIANTS[name], "median": med, "frames": rows, "light": light,
             "key_light": summary.get("key_light"), "seconds": round(time.monotonic() - t, 1),
             "render_seconds_per_frame": summary.get("render_seconds_per_frame")}
        if light and light.get("sun") and true_sun:
            d = light["sun"]["direction"]
            v["sun_angle_error_deg"] = math.degrees(math.acos(max(-1.0, min(1.0, sum(
                a * b for a, b in zip(d, true_sun["direction"]))))))
        v["meets_targets"] = bool(med["psnr_box_db"] is not None and med["psnr_box_db"] >= TARGETS["psnr_box_db"]
                                  and med["darkening_ratio"] is not None
                                  and TARGETS["darkening_ratio"][0] <= med["darkening_ratio"]
                                  <= TARGETS["darkening_ratio"][1])
        out["variants"][name] = v
        print(name, json.dumps(med), flush=True)
    return out


def markdown(r: dict) -> str:
    lines = [f"# Realism: composite vs rendered truth ({r['machine']})", "",
             f"`python benchmarks/realism.py --machine {r['machine']}` on {r['cpu']} ({r['cores']} cores). "
             f"Scene: synthetic room, its own sun and sky; product {r['product']} {r['product_height_m']} m tall at "
             f"{r['product_at']}; {r['size']}, {r['frames']} handheld frames, Cycles {r['samples']} samples + "
             "denoise for truth, footage and composite. True cameras, splats from the true depth. Medians over "
             "the frames.", "",
             "| variant | PSNR product box (dB) | SSIM box | PSNR product pixels (dB) | shadow darkening truth "
             "| composite | ratio | darkening of lit ground near foot (truth / composite) | meets targets |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        m = v["median"]

        def f(key, fmt="{:.2f}"):
            return fmt.format(m[key]) if m.get(key) is not None else "-"
        lines.append(f"| {name} | {f('psnr_box_db')} | {f('ssim_box', '{:.3f}')} | {f('psnr_product_db')} | "
                     f"{f('darkening_truth', '{:.3f}')} | {f('darkening_composite', '{:.3f}')} | "
                     f"{f('darkening_ratio')} | {f('darkening_lit_truth', '{:.3f}')} / "
                     f"{f('darkening_lit_composite', '{:.3f}')} | {v['meets_targets']} |")
    after = r["variants"].get("after", {})
    if after.get("key_light") and r.get("true_sun"):
        k, t = after["key_light"], r["true_sun"]
        lines += ["", f"Key light found from the footage's shadows: elevation {k['elevation_deg']} deg, azimuth "
                      f"{k['azimuth_deg']} deg (truth {t['elevation_deg']:.1f} deg, {t['azimuth_deg']:.1f} deg; "
                      f"{after['sun_angle_error_deg']:.2f} deg apart), shadow ratio {k['shadow_ratio']}, strength "
                      f"{k['strength']} W/m^2 (truth {t['strength']})."]
    lines += ["", f"Targets: product box >= {TARGETS['psnr_box_db']} dB; shadow darkening ratio in "
                  f"{TARGETS['darkening_ratio']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machine", required=True, help="name for the result file, e.g. cpu-2core")
    p.add_argument("--product", type=Path, default=PRODUCT)
    p.add_argument("--product-height", type=float, default=0.5)
    p.add_argument("--at", type=float, nargs=2, default=(-0.25, -0.3), metavar=("X", "Y"))
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--height", type=int, default=270)
    p.add_argument("--frames", type=int, default=3)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--env-face", type=int, default=128)
    p.add_argument("--reach", type=float, default=0.6, help="shadow region: ground within this many metres")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--work", type=Path, default=None, help="keep the renders here (reused when present)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    if not args.product.is_file():
        print(f"error: no product file {args.product}", file=sys.stderr)
        return 2
    r = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"realism-{args.machine}"
    base.with_suffix(".json").write_text(json.dumps(r, indent=1))
    base.with_suffix(".md").write_text(markdown(r))
    print(markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
