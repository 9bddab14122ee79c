"""Import a solve whose only error is scale, run Set Scale three ways, report the scene.

usage: python set_scale.py OUT.json CAMERAS.json POINTS.ply SPEC.json
SPEC: {"g0": [...], "g1": [...], "distance": m, "frame": scene frame for the height, "height": m}
"""
import atexit
import json
import sys

import bpy
import numpy as np

import blender_addon

out_path, cams, pts, spec_path = sys.argv[1:5]
spec = json.load(open(spec_path))
blender_addon.register()
atexit.register(blender_addon.unregister)
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
s = scene.splatstage
out = {}

try:
    bpy.ops.splatstage.set_scale(mode="CAMERA", distance=1.0)
    out["no_solve_error"] = ""
except RuntimeError as exc:
    out["no_solve_error"] = str(exc)

assert bpy.ops.splatstage.import_cameras(filepath=cams, points_path=pts) == {"FINISHED"}
from blender_addon import panels  # noqa: E402
from blender_addon.core.set_scale import describe, scale_params  # noqa: E402


class Layout:
    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kwargs):
            self.log.append(kwargs.get("text") or (args[0] if name == "operator" else ""))
            return Layout(self.log) if name in ("row", "column", "box") else None
        return call


def panel_lines():
    log = []
    panels.SPLATSTAGE_PT_camera_solve.draw(type("P", (), {"layout": Layout(log)})(), bpy.context)
    return [t for t in log if t]


def camera_positions():
    cam = scene.camera
    res = []
    for f in range(scene.frame_start, scene.frame_end + 1):
        scene.frame_set(f)
        res.append(list(cam.matrix_world.translation))
    return res


def points_world():
    obj = next(o for o in scene.objects if o.type == "MESH" and not o.data.polygons and "splatstage_splats" not in o)
    co = np.empty(3 * len(obj.data.vertices), np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    return (co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]).tolist()


def ground():
    g = next(o for o in scene.objects if o.get("splatstage_ground"))
    m = np.array(g.matrix_world)
    return {"origin": m[:3, 3].tolist(), "normal": (m[:3, :3] @ [0, 0, 1]).tolist(),
            "size": float(max(v.co.x for v in g.data.vertices) - min(v.co.x for v in g.data.vertices))}


out["before"] = {"panel": panel_lines(), "guess": describe(s.scale_record)[1], "ground": ground()}

# 1. two empties snapped to two points of the (wrongly scaled) cloud
wrong = float(spec["wrong"])
splats = bpy.data.objects.new("Splats", bpy.data.meshes.new("Splats"))
splats["splatstage_splats"] = {"count": 0}
product = bpy.data.objects.new("Product", None)
product["splatstage_product"] = True
for o, loc in ((splats, (0.0, 0.0, 0.0)), (product, [wrong * v for v in spec["g1"]])):
    scene.collection.objects.link(o)
    o.location = loc
empties = []
for name, p in (("A", spec["g0"]), ("B", spec["g1"])):
    e = bpy.data.objects.new(name, None)
    scene.collection.objects.link(e)
    e.location = [wrong * v for v in p]
    empties.append(e)
try:
    bpy.ops.splatstage.set_scale(mode="SELECTED", distance=spec["distance"])
    out["no_selection_error"] = ""
except RuntimeError as exc:
    out["no_selection_error"] = str(exc)
for o in scene.objects:
    o.select_set(o in empties)
assert bpy.ops.splatstage.set_scale(mode="SELECTED", distance=spec["distance"]) == {"FINISHED"}
out["selected"] = {"cameras": camera_positions(), "points": points_world(), "ground": ground(),
                   "empties": [list(e.location) for e in empties], "panel": panel_lines(),
                   "guess": describe(s.scale_record)[1], "params": scale_params(s.scale_params),
                   "splats_scale": list(splats.matrix_world.to_scale()), "product": list(product.matrix_world.translation),
                   "product_scale": list(product.matrix_world.to_scale())}

# 2. the camera's height at one frame, set to twice the truth
scene.frame_set(spec["frame"])
assert bpy.ops.splatstage.set_scale(mode="CAMERA", distance=2 * spec["height"]) == {"FINISHED"}
out["camera"] = {"cameras": camera_positions(), "params": scale_params(s.scale_params),
                 "record": json.loads(s.scale_record)}

# 3. the 3D cursor to the active object, back to the true scale
scene.cursor.location = [2 * v for v in spec["g0"]]
bpy.context.view_layer.objects.active = empties[1]
empties[1].location = [2 * v for v in spec["g1"]]
assert bpy.ops.splatstage.set_scale(mode="CURSOR", distance=spec["distance"]) == {"FINISHED"}
out["cursor"] = {"cameras": camera_positions(), "params": scale_params(s.scale_params),
                 "cursor": list(scene.cursor.location)}

# 4. a job-style reference measured on the solve's own cameras.json (what the batch does)
from blender_addon.set_scale_bpy import apply_reference  # noqa: E402

doc = json.load(open(cams))
out["reference"] = {"factor": apply_reference(scene, doc, {"camera_height": spec["h0"]}),
                    "cameras": camera_positions(), "params": scale_params(s.scale_params)}

# 5. the Render panel's composite job, reusing the solve folder, carries the reference
from blender_addon import render_ops  # noqa: E402

s.video_path, s.product_path = spec["video"], spec["product"]
s.solve_dir = str(__import__("pathlib").Path(cams).parent)
s.render_reuse = True
params, _ = render_ops.composite_params(scene)
out["composite_params"] = params
json.dump(out, open(out_path, "w"))
