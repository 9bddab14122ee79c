"""Import each cameras.json given on the command line through the add-on's operator, then
record where every known 3D point projects (world_to_camera_view) on every keyed frame and on
the half-frames between keys.

usage: python import_cameras.py OUT.npz CAMERAS.json POINTS.npy [CAMERAS.json POINTS.npy ...]
"""
import atexit
import sys

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

import blender_addon

out_path, rest = sys.argv[1], sys.argv[2:]
blender_addon.register()
atexit.register(blender_addon.unregister)  # also on errors: bpy 4.x must not exit with classes registered
results = {}
for case, (cam_json, pts_path) in enumerate(zip(rest[0::2], rest[1::2])):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    res = bpy.ops.splatstage.import_cameras(filepath=cam_json, frame_offset=1)
    assert res == {"FINISHED"}, res
    cam = scene.camera
    pts = [Vector(p) for p in np.load(pts_path)]
    w, h = scene.render.resolution_x, scene.render.resolution_y
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    pix = np.zeros((len(frames), len(pts), 2))
    fwd_half = np.zeros((len(frames) - 1, 3))
    for i, f in enumerate(frames):
        scene.frame_set(f)
        for j, p in enumerate(pts):
            ndc = world_to_camera_view(scene, cam, p)
            pix[i, j] = (ndc.x * w, (1.0 - ndc.y) * h)
        if i + 1 < len(frames):
            scene.frame_set(f, subframe=0.5)
            fwd_half[i] = np.array(cam.matrix_world.to_3x3() @ Vector((0, 0, -1)))
    anim = cam.animation_data
    if hasattr(anim.action, "slots"):
        from bpy_extras.anim_utils import action_get_channelbag_for_slot
        fcurves = action_get_channelbag_for_slot(anim.action, anim.action_slot).fcurves
    else:
        fcurves = anim.action.fcurves
    keyed = {(fc.data_path, fc.array_index): len(fc.keyframe_points) for fc in fcurves}
    results[f"pix{case}"] = pix
    results[f"fwd_half{case}"] = fwd_half
    results[f"frames{case}"] = np.array(frames)
    results[f"res{case}"] = np.array([w, h, scene.render.fps, scene.render.fps_base])
    results[f"lens{case}"] = np.array([cam.data.lens, cam.data.sensor_width])
    results[f"keys{case}"] = np.array([keyed[("location", i)] for i in range(3)]
                                      + [keyed[("rotation_quaternion", i)] for i in range(4)])
np.savez(out_path, **results)
print("ok")
