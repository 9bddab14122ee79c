"""The Scene from Image panel's operators in Blender: a bad photo path is one ERROR report and
nothing is submitted; Import Scene brings in a scene folder's camera path and splats.

usage: python scene_from_image.py OUT.json SCENE_DIR
"""
import atexit
import json
import sys

import bpy

import blender_addon

out_path, scene_dir = sys.argv[1], sys.argv[2]
blender_addon.register()
atexit.register(blender_addon.unregister)
r = {"panel": hasattr(bpy.types, "SPLATSTAGE_PT_scene_from_image")}
scene = bpy.context.scene
scene.splatstage_scene.image_path = scene_dir + "/no_such_photo.png"
try:
    r["bad_path"] = list(bpy.ops.splatstage.scene_from_image())
except RuntimeError as exc:  # an ERROR report raises in background mode
    r["bad_path"] = ["CANCELLED"]
    r["bad_path_error"] = str(exc)
res = bpy.ops.splatstage.import_scene(directory=scene_dir)
r["import"] = list(res)
cam = scene.camera
r["frames"] = [scene.frame_start, scene.frame_end]
r["size"] = [scene.render.resolution_x, scene.render.resolution_y]
mats = []
for f in range(scene.frame_start, scene.frame_end + 1):
    scene.frame_set(f)
    mats.append([list(row) for row in cam.matrix_world])
r["matrices"] = mats
splats = [o for o in scene.objects if o.name.startswith("Scene Splats")]
r["splats"] = len(splats[0].data.vertices) if splats else 0
r["result"] = scene.splatstage_scene.result
with open(out_path, "w") as fh:
    json.dump(r, fh)
print("ok")
