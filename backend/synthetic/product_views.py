"""Renders a glTF product alone at given cameras: RGBA and depth (run as a subprocess; imports bpy).

    python -m backend.synthetic.product_views SPEC.json

SPEC: ``{"glb": PATH, "out": DIR, "size": PX, "fov_deg": DEG, "extent": 1.0, "matrix_world":
[[4x4], ...], "engine": "WORKBENCH" | "CYCLES", "samples": 16}``. The product is scaled so that
the longest side of its bounding box is ``extent`` and centred on the origin (Blender axes, +Z
up). Workbench renders its base colour with flat light (albedo: the same from every side);
Cycles renders it under a uniform white sky. Writes ``rgba.npy`` (V, H, W, 4) uint8 and
``depth.npy`` (V, H, W) float32 planar depth (inf where empty), and ``placement.json`` (scale,
the centred bounding box).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_REPO_ROOT = Path(__file__).resolve().parents[2]


def render_product_views(glb, matrix_world, size: int, fov_deg: float, extent: float = 1.0,
                         engine: str = "WORKBENCH", samples: int = 16, timeout: float = 300) -> dict:
    """Render in a subprocess; returns ``{"rgba", "depth", "placement"}``."""
    import os

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"glb": str(glb), "out": tmp, "size": int(size), "fov_deg": float(fov_deg), "extent": extent,
                "matrix_world": np.asarray(matrix_world, float).tolist(), "engine": engine, "samples": samples}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-m", "backend.synthetic.product_views", str(Path(tmp) / "spec.json")],
                              capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"product view render failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return {"rgba": np.load(Path(tmp) / "rgba.npy"), "depth": np.load(Path(tmp) / "depth.npy"),
                "placement": json.loads((Path(tmp) / "placement.json").read_text())}


def _place(bpy, path: str, extent: float) -> dict:
    from .scene import import_gltf, parent_under_empty

    new, pts = import_gltf(path)
    lo, hi = pts.min(0), pts.max(0)
    s = extent / float((hi - lo).max())
    m = np.eye(4)
    m[:3, :3] *= s
    m[:3, 3] = -s * (lo + hi) / 2
    parent_under_empty(new, m)
    return {"scale": s, "bbox_min": (s * (lo - (lo + hi) / 2)).tolist(), "bbox_max": (s * (hi - (lo + hi) / 2)).tolist()}


def main(spec_path: str) -> int:
    import math

    import bpy
    from mathutils import Matrix

    from .exr import read_exr_channels
    from .render import BACKGROUND_DEPTH, DEPTH_CHANNEL

    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    placement = _place(bpy, spec["glb"], spec.get("extent", 1.0))
    r = scene.render
    if spec.get("engine", "WORKBENCH") == "CYCLES":
        r.engine = "CYCLES"
        scene.cycles.samples = int(spec.get("samples", 16))
        scene.cycles.device = "CPU"
        world = bpy.data.worlds.new("sky")
        world.use_nodes = True
        world.node_tree.nodes["Background"].inputs[0].default_value = (1, 1, 1, 1)
        scene.world = world
    else:
        r.engine = "BLENDER_WORKBENCH"
        scene.display.shading.light = "FLAT"
        scene.display.shading.color_type = "TEXTURE"
        scene.display.render_aa = "8"
    size = int(spec["size"])
    r.resolution_x = r.resolution_y = size
    r.resolution_percentage = 100
    r.film_transparent = True
    r.threads_mode, r.threads = "FIXED", 2
    scene.view_settings.view_transform = "Standard"
    scene.view_layers[0].use_pass_z = True
    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    cam.data.sensor_fit = "HORIZONTAL"
    cam.data.angle = math.radians(spec["fov_deg"])
    cam.data.clip_start, cam.data.clip_end = 0.01, 100.0
    rgba, depth = [], []
    im = r.image_settings
    for i, m in enumerate(spec["matrix_world"]):
        cam.matrix_world = Matrix(m)
        bpy.ops.render.render()
        rr = bpy.data.images["Render Result"]
        im.media_type, im.file_format, im.color_mode, im.color_depth = "IMAGE", "PNG", "RGBA", "8"
        png = out / "view.png"
        rr.save_render(str(png), scene=scene)
        import cv2
        rgba.append(cv2.cvtColor(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA))
        im.media_type = "MULTI_LAYER_IMAGE"
        im.exr_codec, im.color_depth = "NONE", "32"
        rr.save_render(str(out / "view.exr"), scene=scene)
        z = read_exr_channels(out / "view.exr", [DEPTH_CHANNEL])[DEPTH_CHANNEL].astype(np.float32)
        z[z >= BACKGROUND_DEPTH] = np.inf
        depth.append(z)
    np.save(out / "rgba.npy", np.stack(rgba))
    np.save(out / "depth.npy", np.stack(depth))
    (out / "placement.json").write_text(json.dumps(placement))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
