"""How much the camera-solve accuracy metrics move under small changes of the method.

At the accuracy reached on the ray-cast 1080p clips (rotation errors of a few thousandths of a
degree, trajectory errors of a few hundredths of a percent) a single solve is one draw: the
median rotation error after the similarity alignment follows the small bend of the estimated
trajectory, which changes with any detail of the tracking. This solves one clip with our
tracker's anchor renewal period set to each of ``--anchor-frames`` (the period is a tuning
choice with no right value), and plain pycolmap with each sequential-matching overlap of
``--baseline-overlaps``, and reports every run and the spread (min / median / max) of each
metric per method.

    python benchmarks/poses_spread.py --clip /data/rc300 --anchor-frames 20 25 30 40 60 80 100 150 \
        --baseline-overlaps 5 20 --machine cpu-2core
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from poses import footage, machine_description, ours, plain_pycolmap  # noqa: E402

from shared_protocol import camera_file  # noqa: E402

METRICS = ("rot_err_deg_median", "ate_pct", "focal_err_pct", "reproj_mean_px", "seconds")


def _spread(runs: list[dict]) -> dict:
    out = {}
    runs = [r for r in runs if r.get("rot_err_deg_median") is not None]
    for key in METRICS:
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"min": min(vals), "median": round(statistics.median(vals), 6), "max": max(vals)}
    return out


def markdown(res: dict) -> str:
    lines = [f"# Camera-solve metric spread: {res['machine']}", "",
             f"Machine: {res['host']['cpu']}, {res['host']['cores_available']} cores. "
             f"Clip {res['clip']} ({res['width']}x{res['height']}, {res['frames']} frames), solve size "
             f"{res['max_size']}. {res.get('note', '')}", "",
             "| method | setting | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for name, runs in (("ours", res["ours"]), ("plain pycolmap", res["plain_pycolmap"])):
        for r in runs:
            if r.get("rot_err_deg_median") is None:
                lines.append(f"| {name} | {r['setting']} | no model (mapping failed) | | | | {r.get('seconds')} |")
                continue
            lines.append(f"| {name} | {r['setting']} | " + " | ".join(str(r.get(k)) for k in METRICS) + " |")
    lines += ["", "Spread over the runs that produced a model:", "",
              "| method | metric | min | median | max |", "|---|---|---|---|---|"]
    for name in ("ours", "plain_pycolmap"):
        for key, s in res["spread"][name].items():
            lines.append(f"| {name} | {key} | {s['min']} | {s['median']} | {s['max']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, required=True, help="folder with frames/ (or clip.mp4) and truth.json")
    ap.add_argument("--anchor-frames", type=int, nargs="*", default=[20, 25, 30, 40, 60, 80, 100, 150])
    ap.add_argument("--baseline-overlaps", type=int, nargs="*", default=[5, 10, 20])
    ap.add_argument("--max-size", type=int, default=1920)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--use-frames", action="store_true")
    ap.add_argument("--machine", default="local")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    threads = args.threads or os.cpu_count() or 1
    truth = camera_file.read(args.clip / "truth.json")
    source = footage(args.clip, args.use_frames)
    res = {"machine": args.machine, "host": machine_description(threads), "note": args.note,
           "clip": str(args.clip), "width": truth["width"], "height": truth["height"],
           "frames": len(truth["frames"]), "max_size": args.max_size, "ours": [], "plain_pycolmap": []}

    def write():
        res["spread"] = {"ours": _spread(res["ours"]), "plain_pycolmap": _spread(res["plain_pycolmap"])}
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"poses-spread-{args.machine}.json").write_text(json.dumps(res, indent=1) + "\n")
        (args.out / f"poses-spread-{args.machine}.md").write_text(markdown(res))

    for frames in args.anchor_frames:
        r = ours(source, truth, threads, args.max_size, anchor_frames=frames)
        res["ours"].append({"setting": f"anchor_frames={frames}", **{k: r.get(k) for k in METRICS}})
        print("ours", res["ours"][-1], flush=True)
        write()
    for overlap in args.baseline_overlaps:
        r = plain_pycolmap(source, truth, threads, args.max_size, overlap=overlap)
        res["plain_pycolmap"].append({"setting": f"overlap={overlap}", **{k: r.get(k) for k in METRICS}})
        print("plain pycolmap", res["plain_pycolmap"][-1], flush=True)
        write()
    write()
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
