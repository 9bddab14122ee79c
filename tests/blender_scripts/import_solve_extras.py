"""Import cameras.json with points.ply and a video through the operator; report the scene.

usage: python import_solve_extras.py OUT.json CAMERAS.json POINTS.ply VIDEO
"""
import atexit
import json
import sys

import bpy
import numpy as np

import blender_addon

out_path, cams, pts, video = sys.argv[1:5]
blender_addon.register()
atexit.register(blender_addon.unregister)  # also on errors: bpy 4.x must not exit with classes registered
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
bpy.ops.splatstage.load_footage(filepath=video, frame_start=1, frame_end=3)
footage = {"resolution": [scene.render.resolution_x, scene.render.resolution_y],
           "fps": scene.render.fps / scene.render.fps_base, "range": [scene.frame_start, scene.frame_end],
           "video_path": scene.splatstage.video_path}
res = bpy.ops.splatstage.import_cameras(filepath=cams, points_path=pts, video_path=video)
assert res == {"FINISHED"}, res
cam = scene.camera
points = next(o for o in scene.objects if o.type == "MESH" and len(o.data.vertices) and not o.data.polygons)
ground = next(o for o in scene.objects if o.get("splatstage_ground"))
co = np.empty(len(points.data.vertices) * 3, dtype=np.float32)
points.data.vertices.foreach_get("co", co)
col = points.data.color_attributes["Col"]
rgba = np.empty(len(col.data) * 4, dtype=np.float32)
col.data.foreach_get("color_srgb", rgba)
bg = cam.data.background_images[0]
gw = np.array(ground.matrix_world)
out = {
    "footage": footage,
    "points": co.reshape(-1, 3).tolist(),
    "colors": np.round(rgba.reshape(-1, 4)[:, :3] * 255).astype(int).tolist(),
    "ground_normal": (gw[:3, :3] @ [0, 0, 1]).tolist(),
    "ground_origin": gw[:3, 3].tolist(),
    "shadow_catcher": bool(ground.is_shadow_catcher),
    "bg_source": bg.source,
    "clip_path": bpy.path.abspath(bg.clip.filepath),
    "clip_start": bg.clip.frame_start,
    "clip_size": list(bg.clip.size),
    "show_bg": cam.data.show_background_images,
    "undistorted": bg.clip_user.use_render_undistorted,
    "clip_lens": [bg.clip.tracking.camera.distortion_model, bg.clip.tracking.camera.k1, bg.clip.tracking.camera.k2,
                  list(bg.clip.tracking.camera.principal_point_pixels), bg.clip.tracking.camera.focal_length_pixels],
    "frame_range": [scene.frame_start, scene.frame_end],
    "objects_in_collection": sorted(o.name for o in cam.users_collection[0].objects),
}
# an invalid file: clear error, nothing added
n_before = len(bpy.data.objects)
bad = cams + ".bad.json"
open(bad, "w").write('{"version": 1, "convention": "blender", "width": 10}')
try:
    bpy.ops.splatstage.import_cameras(filepath=bad)
    out["bad_error"] = ""
except RuntimeError as exc:
    out["bad_error"] = str(exc)
out["objects_added_by_bad"] = len(bpy.data.objects) - n_before

# a video Blender cannot decode: the whole import is undone
counts = {k: len(getattr(bpy.data, k)) for k in ("objects", "cameras", "meshes", "actions", "collections",
                                                   "movieclips")}
broken = cams + ".broken.mp4"
open(broken, "wb").write(b"\x00" * 4096)
try:
    bpy.ops.splatstage.import_cameras(filepath=cams, points_path=pts, video_path=broken)
    out["broken_video_error"] = ""
except RuntimeError as exc:
    out["broken_video_error"] = str(exc)
out["broken_video_leftovers"] = {k: len(getattr(bpy.data, k)) - v for k, v in counts.items()
                                 if len(getattr(bpy.data, k)) != v}

# the Camera Solve panel's result handler (what a finished 'poses' job triggers in the UI)
from blender_addon import operators  # noqa: E402
from blender_addon.core.backend_link import LinkEvent  # noqa: E402

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.splatstage.video_path = video
operators.finish_solve(scene.name, "", LinkEvent("result", "poses-1", "job", {"summary": {"registered": 6}},
                                                 files={"cameras.json": cams, "points.ply": pts}))
out["handler"] = {"camera": bool(scene.camera), "summary": scene.splatstage.solve_summary,
                  "points": sum(o.type == "MESH" and not o.data.polygons for o in scene.objects),
                  "clip": bool(scene.camera and scene.camera.data.background_images)}
json.dump(out, open(out_path, "w"))
