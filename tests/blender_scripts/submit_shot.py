"""Submit the scene's shot to a shots file and a backend through the add-on's operator.

usage: python submit_shot.py OUT.json SPEC.json
SPEC: {"video", "product", "queue", "bad_queue", "address", "blend"}
Reports the operator's result and messages for a complete scene (saved as SPEC's blend, so the
shot takes the .blend's name) and for one without a product (which must write nothing).
"""
import atexit
import json
import math
import sys

import bpy

import blender_addon

out_path, spec_path = sys.argv[1:3]
spec = json.load(open(spec_path))
blender_addon.register()
atexit.register(blender_addon.unregister)
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=spec["blend"])
s = bpy.context.scene.splatstage
s.video_path = spec["video"]
s.product_path = spec["product"]
s.render_placement = "PIXEL"
s.render_pixel = (240.0, 200.0)
s.render_frame = 1
s.render_product_height = 0.25
s.product_rotation = math.radians(30)
s.render_preview = True
s.render_max_frames = 10
s.render_steps = 20
s.render_device = "cpu"
out = {}


def run(key, **kw):
    try:
        out[key] = {"result": sorted(bpy.ops.splatstage.submit_shot(**kw)), "error": ""}
    except RuntimeError as exc:  # an ERROR report raises in background mode
        out[key] = {"result": ["CANCELLED"], "error": str(exc)}


run("good", filepath=spec["queue"], address=spec["address"])
s.product_path = ""
run("no_product", filepath=spec["bad_queue"], address=spec["address"])
json.dump(out, open(out_path, "w"))
