#!/usr/bin/env python3
"""How well each way of setting a camera solve's world scale recovers the true scale.

Synthetic (truth known): ray-cast hand-held clips (``raycast_scene.handheld_path``, camera
0.9 m above the floor, boxes of known size) solved at the defaults. For each reference an
artist could give, the solve is re-scaled (``shared_protocol.scale``) and its scale compared
with the truth's (Umeyama similarity over the camera centres): the relative error.
References, in three frames of each clip (first, middle, last):

- ``camera_height``: the camera's true height above the floor;
- ``ground_pixels``: two floor points at least 0.5 m apart, the pixels being their true
  projections (what a careful artist clicks), with their true distance;
- ``foot_top``: the foot and top pixels of every box edge seen whole, with its true height;
- ``xyz``: two sparse points of the solve on the floor (snapped to in Blender), with the true
  distance between the places they stand for (where the true camera's ray through the point's
  pixel meets the true scene; points standing for the same place in two frames only);
- ``guess``: the default, the first camera put 1.6 m above the ground.

Real footage (no truth, ``--real-video``): the desk clip shows a keyboard with a 19.05 mm key
pitch. Along a row of keys in one frame (the row's two ends given with ``--key-row``) the key
gaps are found in the image's brightness profile; two key centres N keys apart then set the
scale as two ground pixels, and the solve's camera height that follows is reported. The key
tops stand above the desk the solve takes for the ground, which biases that height low by about
their height over the camera's.

    python benchmarks/scale.py --machine cpu-2core --seeds 0 1 \
        --real-video ../shared/data/real-video/lumia_box_on_desk_handheld.mp4 --real-frames 210

writes ``benchmarks/results/scale-<machine>.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.evaluation import raycast_scene  # noqa: E402
from backend.evaluation.pose_metrics import umeyama  # noqa: E402
from backend.pipelines.composite.placement import PinholeCamera  # noqa: E402
from backend.pipelines.poses.pipeline import SolveOptions, solve  # noqa: E402
from shared_protocol import camera_file  # noqa: E402
from shared_protocol import scale as sp  # noqa: E402

KEY_PITCH_M = 0.01905


def scale_error(doc: dict, truth: dict) -> float:
    reg = [i for i, f in enumerate(doc["frames"]) if f["registered"]]
    s, _, _ = umeyama(camera_file.matrices(doc)[reg, :3, 3], camera_file.matrices(truth)[reg, :3, 3])
    return float(s - 1.0)


def visible(scene, c2w: np.ndarray, pts: np.ndarray) -> np.ndarray:
    o = np.repeat(c2w[None, :3, 3], len(pts), 0)
    d = pts - o
    t = np.linalg.norm(d, axis=1)
    _, hit = scene._trace(o, d / t[:, None])
    return np.abs(hit - t) < 1e-3 * np.maximum(t, 1.0)


def pixels(truth: dict, frame: int, pts: np.ndarray) -> np.ndarray | None:
    cam = PinholeCamera.from_frame(truth["frames"][frame], truth.get("distortion"))
    px, depth = cam.project(pts)
    w, h = truth["width"], truth["height"]
    margin = 2.0
    ok = (depth > 0).all() and (px[:, 0] > margin).all() and (px[:, 0] < w - margin).all() \
        and (px[:, 1] > margin).all() and (px[:, 1] < h - margin).all()
    return px if ok else None


def stands_for(sol, truth: dict, scene, k: int) -> np.ndarray:
    """Where each sparse point of the solve really is: the true camera k's ray through the
    pixel the point projects to in the solved camera k meets the true scene (NaN: not in view)."""
    px, depth = PinholeCamera.from_frame(sol.to_document()["frames"][k]).project(sol.points_xyz)
    w, h = truth["width"], truth["height"]
    out = np.full((len(px), 3), np.nan)
    idx = np.flatnonzero((depth > 0) & (px[:, 0] > 0) & (px[:, 0] < w) & (px[:, 1] > 0) & (px[:, 1] < h))
    cam = PinholeCamera.from_frame(truth["frames"][k], truth.get("distortion"))
    rays = np.array([cam.ray(*px[i])[1] for i in idx]).reshape(-1, 3)
    eye = camera_file.matrices(truth)[k, :3, 3]
    _, hit = scene._trace(np.repeat(eye[None], len(idx), 0), rays)
    out[idx] = eye + hit[:, None] * rays
    return out


def references(truth: dict, sol, scene, rng) -> list[tuple[str, float, dict]]:
    """(method, metres, measure kwargs) for every reference of the clip."""
    mats = camera_file.matrices(truth)
    n = len(mats)
    refs = []
    floor = np.c_[rng.uniform(-2.5, 2.5, 400), rng.uniform(-0.5, 4.0, 400), np.zeros(400)]
    for frame in (0, n // 2, n - 1):
        refs.append(("camera_height", float(mats[frame, 2, 3]), {"frame": frame}))
        seen = floor[visible(scene, mats[frame], floor)]
        seen = np.array([p for p in seen if pixels(truth, frame, p[None]) is not None])
        pairs = 0
        for i in rng.permutation(len(seen)):
            j = int(np.argmax(np.linalg.norm(seen - seen[i], axis=1) * rng.uniform(0.5, 1.0, len(seen))))
            dist = float(np.linalg.norm(seen[j] - seen[i]))
            if dist < 0.5:
                continue
            px = pixels(truth, frame, np.array([seen[i], seen[j]]))
            refs.append(("ground_pixels", dist, {"frame": frame, "pixels": px.ravel().tolist()}))
            pairs += 1
            if pairs == 5:
                break
        for box in scene.boxes:
            for x in (box.lo[0], box.hi[0]):
                for y in (box.lo[1], box.hi[1]):
                    edge = np.array([[x, y, 0.0], [x, y, box.hi[2]]])
                    if not visible(scene, mats[frame], edge).all():
                        continue
                    px = pixels(truth, frame, edge)
                    if px is not None:
                        refs.append(("foot_top", float(box.hi[2]), {"frame": frame, "pixels": px.ravel().tolist()}))
    # snapped sparse points: two solve points on the floor far apart, with the true distance
    # between what they stand for (see stands_for), taking only points that stand for the same
    # surface point in two frames (a real point, not one made up by an occlusion edge)
    here = stands_for(sol, truth, scene, n // 2)
    other = stands_for(sol, truth, scene, n // 4)
    real_pt = np.linalg.norm(here - other, axis=1) < 0.005
    floor_idx = np.flatnonzero(real_pt & (np.abs(here[:, 2]) < 1e-6))
    for _ in range(10):
        if len(floor_idx) < 2:
            break
        a, b = rng.choice(floor_idx, 2, replace=False)
        dist = float(np.linalg.norm(here[a] - here[b]))
        if dist >= 0.5:
            refs.append(("xyz", dist, {"points": (sol.points_xyz[a], sol.points_xyz[b])}))
    return refs


def synthetic(seeds, frames, size, focal, workdir: Path) -> dict:
    w, h = size
    scene = raycast_scene.Scene()
    per_method: dict[str, list] = {}
    uncert: dict[str, list] = {}
    clips = []
    for seed in seeds:
        out = workdir / f"clip{seed}-{frames}-{w}x{h}-f{focal:g}"
        if (out / "truth.json").is_file():  # rendered by an earlier run (the ray caster is deterministic)
            truth = camera_file.read(out / "truth.json")
        else:
            truth = raycast_scene.write_clip(out, raycast_scene.handheld_path(frames, seed=seed, height=0.9), focal,
                                             w, h, video=False, workers=2)
        t0 = time.perf_counter()
        sol = solve(out / "frames", SolveOptions(threads=2))
        doc = sol.to_document()
        clips.append({"seed": seed, "frames": frames, "size": [w, h], "focal_px": focal,
                      "solve_s": round(time.perf_counter() - t0, 2),
                      "registered": int(sol.registered.sum()),
                      "reproj_px": round(float(np.nanmean(sol.reproj_error_px)), 4)})
        per_method.setdefault("guess", []).append(scale_error(doc, truth))
        rng = np.random.default_rng(seed)
        for method, metres, kw in references(truth, sol, scene, rng):
            name = "points" if method == "xyz" else method
            try:
                factor, info = sp.measure(doc, name, metres, **kw)
            except sp.ScaleError as exc:
                print(f"seed {seed}: {method} skipped ({exc})", flush=True)
                continue
            err = scale_error(sp.rescale_document(doc, factor, info), truth)
            per_method.setdefault(method, []).append(err)
            if info.get("uncertainty_rel") is not None:
                uncert.setdefault(method, []).append(info["uncertainty_rel"])
        print(f"seed {seed}: " + ", ".join(f"{k} {100 * np.median(np.abs(v)):.3f} %" for k, v in per_method.items()),
              flush=True)
    methods = {}
    for k, v in per_method.items():
        a = np.abs(np.array(v))
        methods[k] = {"n": len(v), "median_abs_err_pct": round(100 * float(np.median(a)), 4),
                      "p90_abs_err_pct": round(100 * float(np.percentile(a, 90)), 4),
                      "max_abs_err_pct": round(100 * float(a.max()), 4),
                      "median_signed_err_pct": round(100 * float(np.median(v)), 4)}
        if k in uncert:
            methods[k]["median_reported_uncertainty_pct"] = round(100 * float(np.median(uncert[k])), 4)
    return {"clips": clips, "methods": methods}


def key_centres(rgb: np.ndarray, p0, p1, samples: int = 2000) -> np.ndarray:
    """Key centres along the line p0 -> p1 across a row of keys: the gaps between keys are the
    dark minima of the brightness profile; a key centre is the midpoint of two gaps."""
    import cv2

    grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.0)
    t = np.linspace(0.0, 1.0, samples)
    xy = np.outer(1 - t, p0) + np.outer(t, p1)
    prof = cv2.remap(grey, xy[:, 0:1].astype(np.float32) - 0.5, xy[:, 1:2].astype(np.float32) - 0.5,
                     cv2.INTER_LINEAR)[:, 0]
    base = cv2.GaussianBlur(prof.reshape(1, -1), (0, 0), samples / 40)[0]
    dark = base - prof
    step = np.linalg.norm(np.subtract(p1, p0)) / samples
    spacing = int(10 / step)  # gaps at least 10 px apart
    gaps = []
    for i in np.argsort(-dark):
        if dark[i] < 0.35 * dark.max():
            break
        if all(abs(i - g) > spacing for g in gaps):
            gaps.append(i)
    gaps = np.sort(gaps)
    mids = 0.5 * (gaps[1:] + gaps[:-1])
    return np.outer(1 - mids / (samples - 1), p0) + np.outer(mids / (samples - 1), p1)


def real(video: Path, frame: int, row, max_frames: int | None, workdir: Path) -> dict:
    from backend.media.video import iter_frames

    t0 = time.perf_counter()
    sol = solve(video, SolveOptions(threads=2, max_frames=max_frames))
    doc = sol.to_document()
    rgb = next(f for i, _, f in iter_frames(video, frame, frame + 1, 1, None, None))
    centres = key_centres(rgb, row[:2], row[2:])
    keys = len(centres) - 1
    px = np.concatenate([centres[0], centres[-1]]).tolist()
    factor, info = sp.measure(doc, "ground_pixels", keys * KEY_PITCH_M, frame=frame, pixels=px)
    scaled = sp.rescale_document(doc, factor, info)
    heights = camera_file.matrices(scaled)[sol.registered, 2, 3]
    pitch_px = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    return {"video": video.name, "frames_solved": len(sol.sources), "registered": int(sol.registered.sum()),
            "reproj_px": round(float(np.nanmean(sol.reproj_error_px)), 4),
            "solve_s": round(time.perf_counter() - t0, 1),
            "key_frame": frame, "key_row_line": list(row), "keys_apart": keys,
            "key_centres_px": np.round(centres, 2).tolist(), "key_pitch_px": np.round(pitch_px, 2).tolist(),
            "known_distance_m": round(keys * KEY_PITCH_M, 5), "factor_vs_guess": round(factor, 5),
            "uncertainty_pct_1px": round(100 * info["uncertainty_rel"], 3) if info["uncertainty_rel"] else None,
            "camera_height_m_at_key_frame": round(float(camera_file.matrices(scaled)[frame, 2, 3]), 4),
            "camera_height_m_median": round(float(np.median(heights)), 4),
            "camera_height_m_range": [round(float(heights.min()), 4), round(float(heights.max()), 4)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--machine", default="cpu-2core")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, nargs=2, default=[640, 360])
    ap.add_argument("--focal", type=float, default=560.0)
    ap.add_argument("--real-video", type=Path)
    ap.add_argument("--key-frame", type=int, default=200)
    ap.add_argument("--key-row", type=float, nargs=4, default=[30.0, 60.0, 335.0, 54.0],
                    metavar=("X0", "Y0", "X1", "Y1"),
                    help="a line along one row of keys in --key-frame, from end to end")
    ap.add_argument("--real-frames", type=int, help="solve only the first N frames of --real-video")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--work", type=Path,
                    help="keep the rendered clips here and reuse them (default: a temporary folder)")
    args = ap.parse_args()
    from backend.evaluation.machine import describe

    result = {"benchmark": "scale", "machine": args.machine, "cpu": describe(), "python": platform.python_version(),
              "script": "benchmarks/scale.py", "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = args.work or Path(tmp)
        result["synthetic"] = synthetic(args.seeds, args.frames, tuple(args.size), args.focal, work)
        if args.real_video:
            result["real"] = real(args.real_video, args.key_frame, args.key_row, args.real_frames, work)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{args.machine}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["synthetic"]["methods"], indent=1))
    if "real" in result:
        print(json.dumps({k: v for k, v in result["real"].items() if "centres" not in k}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
