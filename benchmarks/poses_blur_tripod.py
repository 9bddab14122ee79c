"""Every frame gets a camera, and tripod shots are solved as rotations.

Part ``blur``: the real 1080p hand-held tabletop clip (``../shared/data/real-video``, 117
frames, no camera truth), solved at the defaults with and without re-tracking the frames the
tracker loses (``SolveOptions.retrack``): frames registered, re-tracked and interpolated, and
the mean reprojection error over all registered frames and over the re-tracked ones.

Part ``tripod``: ray-cast clips (``backend.evaluation.raycast_scene``, exact truth) rendered
into ``~/.cache/splatstage-bench``: tripod pans (pure rotation about a fixed centre) short and
long, slow and fast, one with fixed-pattern noise (6 grey levels, as a path tracer at a few
samples leaves it) through H.264, and pans with a small sideways travel. For each: whether the
solve flagged it rotation-only, the clip-wide GRIC margin per correspondence (fundamental minus
homography; positive selects the homography), the spread of the camera centres, and the
rotation errors (after aligning the orientations, in pixels of angle) at frames 0, 1, the
median frame and the last, and frame to frame.

Part ``cycles`` (not in ``all``: Blender renders it, about 15 minutes on a 2-core box): a 640x360
tripod pan rendered by Cycles at 8 samples (``backend.synthetic.make_clip``), through H.264,
evaluated the same way.

    python benchmarks/poses_blur_tripod.py --machine cpu-2core [--part blur|tripod|cycles|all]

Writes ``benchmarks/results/poses-blur-tripod-<machine>.json`` and ``.md``; the parts not run
keep their earlier results there.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation import raycast_scene  # noqa: E402
from backend.evaluation.machine import describe  # noqa: E402
from backend.evaluation.pose_metrics import pose_errors, rotation_angle_deg  # noqa: E402
from backend.pipelines.poses.pipeline import SolveOptions, solve  # noqa: E402
from shared_protocol import camera_file  # noqa: E402

CLIP = ROOT.parent / "shared" / "data" / "real-video" / "tabletop_objects_handheld_1080p.mp4"
CACHE = Path.home() / ".cache" / "splatstage-bench"

# name: (width, frames, degrees of pan per frame, sideways travel in m, noise grey levels)
TRIPOD = {
    "pan 640x360, 40 frames, 1.3 deg/frame": (640, 40, 1.3, 0.0, 0),
    "pan 640x360, 8 frames, 0.3 deg/frame": (640, 8, 0.3, 0.0, 0),
    "pan 960x540, 40 frames, 1.3 deg/frame, noise + H.264": (960, 40, 1.3, 0.0, 6),
    "pan + 5 cm travel 640x360, 40 frames, 1.3 deg/frame": (640, 40, 1.3, 0.05, 0),
    "pan + 5 cm travel 320x180, 24 frames, 0.65 deg/frame": (320, 24, 0.65, 0.05, 0),
}


def blur_part() -> list[dict]:
    rows = []
    for retrack in (False, True):
        t = time.perf_counter()
        sol = solve(CLIP, SolveOptions(retrack=retrack))
        seconds = time.perf_counter() - t
        st = sol.stats
        err = sol.reproj_error_px
        re = st.get("retracked_frames", [])
        rows.append({
            "retrack": retrack, "frames": st["n_frames"], "registered": st["n_registered"],
            "retracked_frames": re, "interpolated_frames": st["interpolated_frames"],
            "reproj_mean_px": float(np.nanmean(err)),
            "reproj_mean_px_retracked": float(np.mean(err[re])) if re else None,
            "reproj_mean_px_others": float(np.nanmean(np.delete(err, re))),
            "seconds": round(seconds, 1),
        })
        print(rows[-1], flush=True)
    return rows


def _render(name: str, width: int, n: int, step: float, travel: float, noise: int) -> Path:
    height, focal = width * 9 // 16, width * 0.875
    out = CACHE / ("tripod-" + "".join(c if c.isalnum() else "-" for c in name))
    c2w = raycast_scene.pan_path(n, step * (n - 1))
    c2w[:, 0, 3] += np.linspace(-0.5, 0.5, n) * travel
    if not (out / "truth.json").exists():
        raycast_scene.write_clip(out, c2w, focal, width, height, video=False, supersample=1)
    if not noise:
        return out / "frames"
    video = out / "noisy.mp4"
    if not video.exists():
        import cv2
        import imageio_ffmpeg

        pattern = np.random.default_rng(0).normal(0, noise, (height, width, 3))
        writer = imageio_ffmpeg.write_frames(str(video), (width, height), fps=24.0,
                                             output_params=["-crf", "18"], macro_block_size=1)
        writer.send(None)
        for i in range(n):
            img = cv2.cvtColor(cv2.imread(str(out / "frames" / f"{i:05d}.png")), cv2.COLOR_BGR2RGB)
            writer.send(np.ascontiguousarray(np.clip(img + pattern, 0, 255).astype(np.uint8)))
        writer.close()
    return video


def tripod_part() -> list[dict]:
    rows = []
    for name, (width, n, step, travel, noise) in TRIPOD.items():
        clip = _render(name, width, n, step, travel, noise)
        truth = camera_file.read(clip.parent / "truth.json")
        rows.append(_evaluate(name, clip, truth, bool(travel)))
    return rows


def cycles_part(width: int = 640, n: int = 24, step: float = 1.3) -> list[dict]:
    """A tripod pan rendered by Blender Cycles (8 samples, H.264), the kind of clip the
    ray-cast ones stand in for."""
    from backend.synthetic import clip_paths, make_clip

    name = f"Cycles pan {width}x{width * 9 // 16}, {n} frames, {step} deg/frame, H.264"
    out = CACHE / f"tripod-cycles-{width}-{n}-{step}"
    paths = clip_paths(out) if (out / "truth.json").exists() else make_clip(
        out, path="pan", width=width, height=width * 9 // 16, frames=n, samples=8,
        pan_deg=step * (n - 1))
    return [_evaluate(name, paths["video"], camera_file.read(paths["truth"]), False)]


def _evaluate(name: str, clip: Path, truth_doc: dict, translating: bool) -> dict:
    truth = camera_file.matrices(truth_doc)
    focal = float(truth_doc["frames"][0]["focal_px"])
    px_deg = math.degrees(1.0 / focal)
    t = time.perf_counter()
    sol = solve(clip, SolveOptions(matcher="klt"))
    seconds = time.perf_counter() - t
    sel = sol.stats.get("model_selection", {})
    m = pose_errors(sol.matrix_world, truth, sol.focal_px, focal, sol.registered)
    e = m["per_frame_rot_err_deg"] / px_deg
    rel_e = np.einsum("nji,njk->nik", sol.matrix_world[:-1, :3, :3], sol.matrix_world[1:, :3, :3])
    rel_t = np.einsum("nji,njk->nik", truth[:-1, :3, :3], truth[1:, :3, :3])
    rel = rotation_angle_deg(np.einsum("nji,njk->nik", rel_t, rel_e)) / px_deg
    centres = sol.matrix_world[:, :3, 3]
    row = {
        "clip": name, "translating": translating, "rotation_only": sol.stats["rotation_only"],
        "gric_margin_per_correspondence": round(
            (sel["gric_fundamental"] - sel["gric_homography"]) / sel["correspondences"], 3)
        if sel.get("correspondences") else None,
        "noise_px": sel.get("noise_px"),
        "centre_spread_m": float(np.abs(centres - centres[0]).max()),
        "rot_err_px": {"frame0": round(float(e[0]), 3), "frame1": round(float(e[1]), 3),
                       "median": round(float(np.median(e)), 3), "last": round(float(e[-1]), 3)},
        "rel_rot_err_px": {"0-1": round(float(rel[0]), 4),
                           "median": round(float(np.median(rel)), 4),
                           "last": round(float(rel[-1]), 4)},
        "focal_err_pct": round(m["focal_err_pct"], 3),
        "seconds": round(seconds, 1),
    }
    print(row, flush=True)
    return row


def write(results: dict, machine: str) -> Path:
    out = ROOT / "benchmarks" / "results" / f"poses-blur-tripod-{machine}"
    if out.with_suffix(".json").exists():  # keep the parts not run this time
        results = {**json.loads(out.with_suffix(".json").read_text()), **results}
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"# Every frame a camera; tripod shots ({machine})", "",
             f"Machine: {results['machine']}. Script: `benchmarks/poses_blur_tripod.py`.", ""]
    if results.get("blur"):
        lines += ["## Blurred frames: 1080p hand-held tabletop clip (117 frames, no truth)", "",
                  "| re-tracking | registered | re-tracked | interpolated | reprojection, all (px) "
                  "| re-tracked frames (px) | other frames (px) | solve (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in results["blur"]:
            rt = r["reproj_mean_px_retracked"]
            lines.append(f"| {'on' if r['retrack'] else 'off'} | {r['registered']}/{r['frames']} | "
                         f"{r['retracked_frames']} | {r['interpolated_frames']} | "
                         f"{r['reproj_mean_px']:.3f} | {'-' if rt is None else f'{rt:.3f}'} | "
                         f"{r['reproj_mean_px_others']:.3f} | {r['seconds']} |")
        lines.append("")
    tripod = results.get("tripod", []) + results.get("cycles", [])
    if tripod:
        lines += ["## Tripod pans and small-baseline clips (rendered with exact truth)", "",
                  "Rotation errors in pixels of angle (1 px = 1/f rad), after aligning the "
                  "orientations; frame-to-frame errors between consecutive frames.", "",
                  "| clip | rotation-only | GRIC margin | centre spread (m) "
                  "| rotation err 0 / 1 / median / last (px) "
                  "| frame-to-frame 0-1 / median / last (px) | focal err (%) | solve (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in tripod:
            e, rel = r["rot_err_px"], r["rel_rot_err_px"]
            lines.append(f"| {r['clip']} | {r['rotation_only']} | "
                         f"{r['gric_margin_per_correspondence']} | {r['centre_spread_m']:.3g} | "
                         f"{e['frame0']} / {e['frame1']} / {e['median']} / "
                         f"{e['last']} | {rel['0-1']} / {rel['median']} / {rel['last']} | "
                         f"{r['focal_err_pct']} | {r['seconds']} |")
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machine", required=True, help="machine label for the results file")
    ap.add_argument("--part", choices=("blur", "tripod", "cycles", "all"), default="all",
                    help="all: blur and tripod (cycles renders with Blender: slow)")
    args = ap.parse_args()
    results = {"machine": f"{args.machine}: {describe()}"}
    if args.part in ("blur", "all"):
        results["blur"] = blur_part()
    if args.part in ("tripod", "all"):
        results["tripod"] = tripod_part()
    if args.part == "cycles":
        results["cycles"] = cycles_part()
    print(write(results, args.machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
