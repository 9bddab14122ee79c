"""Benchmark the add-on's bulk imports inside Blender (bpy as a module, run in this process).

    python benchmarks/blender_import.py [--frames 10000] [--points 1000000] [--repeat 3]

Times (best of ``--repeat``): reading a ``--frames``-frame cameras.json document
(validation by shared_protocol.camera_file + conversion to arrays), keying one camera over
all frames (bulk F-curves, lens/sensor/shift, scene setup), and creating a sparse point
cloud of ``--points`` coloured points. Targets: keying < 1 s, points < 2 s.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_document(frames: int) -> dict:
    t = np.linspace(0, 8 * np.pi, frames)
    docs = []
    for i, a in enumerate(t):
        c, s = np.cos(a), np.sin(a)
        m = np.eye(4)
        m[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
        m[:3, 3] = [5 * c, 5 * s, 1.6]
        docs.append({"frame": i, "source": str(i), "matrix_world": m.tolist(), "focal_px": 1500.0,
                     "principal_point_px": [960.0, 540.0], "registered": True, "reproj_error_px": 0.3})
    return {"version": 1, "convention": "blender", "width": 1920, "height": 1080, "fps": 24.0, "frames": docs,
            "distortion": {"model": "radial2", "k1": 0.0, "k2": 0.0},
            "ground_plane": {"point": [0, 0, 0], "normal": [0, 0, 1]}, "stats": {}}


def best(fn, repeat: int, reset) -> float:
    times = []
    for _ in range(repeat):
        reset()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import bpy

    from blender_addon.blender import camera_import
    from blender_addon.core import cameras_json
    from blender_addon.vendor import module

    camera_file = module("camera_file")

    doc = synthetic_document(args.frames)
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(args.points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(args.points, 3), dtype=np.uint8)

    def reset():
        bpy.ops.wm.read_factory_settings(use_empty=True)

    track = cameras_json.from_document(json.loads(json.dumps(doc)))

    def parse():
        cameras_json.from_document(camera_file.validate(json.loads(json.dumps(doc))))

    def key_camera():
        camera_import.configure_scene(bpy.context.scene, track, 1)
        camera_import.create_camera(track)

    def point_cloud():
        camera_import.create_point_cloud(xyz, rgb)

    t_parse = best(parse, args.repeat, lambda: None)
    t_cam = best(key_camera, args.repeat, reset)
    t_pts = best(point_cloud, args.repeat, reset)
    result = {"blender": bpy.app.version_string, "frames": args.frames,
              "cameras_json_parse_s": round(t_parse, 4), "camera_keying_s": round(t_cam, 4),
              "points": args.points, "point_cloud_s": round(t_pts, 4),
              "camera_target_met": t_cam < 1.0, "points_target_met": t_pts < 2.0}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
