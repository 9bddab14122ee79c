"""The Product from Photo button in Blender: a bad photo path is one ERROR report and nothing is
submitted; a product folder made by the job becomes the Product panel's model at its real
height and Insert Product stands it on the ground.

usage: python product_from_photo.py OUT.json PRODUCT_DIR
"""
import atexit
import json
import sys

import bpy

import blender_addon
from blender_addon import product_photo_ops

out_path, product_dir = sys.argv[1], sys.argv[2]
blender_addon.register()
atexit.register(blender_addon.unregister)
r = {"operator": hasattr(bpy.ops.splatstage, "product_from_photo"),
     "in_product_panel": product_photo_ops.draw_product_photo in
     getattr(bpy.types.SPLATSTAGE_PT_product.draw, "_draw_funcs", [])}
scene = bpy.context.scene
scene.splatstage_product_photo.photo_path = product_dir + "/no_such_photo.png"
try:
    r["bad_path"] = list(bpy.ops.splatstage.product_from_photo())
except RuntimeError as exc:  # an ERROR report raises in background mode
    r["bad_path"] = ["CANCELLED"]
    r["bad_path_error"] = str(exc)
r["result"] = product_photo_ops.use_product(scene, product_dir)
r["product_path"] = scene.splatstage.product_path
r["product_size"] = scene.splatstage.product_size
before = set(bpy.data.objects)
s = scene.splatstage
r["insert"] = list(bpy.ops.splatstage.insert_product(filepath=s.product_path, dimension=s.product_size,
                                                     axis=s.product_axis))
new = [o for o in bpy.data.objects if o not in before and o.type == "MESH"]
bpy.context.view_layer.update()
zs = [(o.matrix_world @ v.co).z for o in new for v in o.data.vertices]
r["z"] = [min(zs), max(zs)] if zs else None
with open(out_path, "w") as fh:
    json.dump(r, fh)
print("ok")
