"""Create an animated camera from a nerfstudio camera_path.json and record, per frame, its
world matrix and where a test point projects (world_to_camera_view); then export the camera
again and check the re-exported file reads back to the same path.

usage: python camera_path_camera.py CAMERA_PATH.json OUT.json FRAME_START

Also runs the add-camera-path operator (orbit about the 3D cursor from the imported camera's
first pose) and records the new camera's distance to the cursor on every frame.
"""
import json
import sys

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from blender_addon import camera_paths_bpy
from shared_protocol import camera_paths

src, out, frame_start = sys.argv[1], sys.argv[2], int(sys.argv[3])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
cam = camera_paths_bpy.import_nerfstudio(src, frame_start=frame_start)
assert scene.camera == cam
point = Vector((0.25, 0.08, 0.34))
frames = list(range(scene.frame_start, scene.frame_end + 1))
w, h = scene.render.resolution_x, scene.render.resolution_y
mats, uv = [], []
for f in frames:
    scene.frame_set(f)
    mats.append([list(r) for r in cam.matrix_world])
    ndc = world_to_camera_view(scene, cam, point)
    uv.append([ndc.x * w, (1.0 - ndc.y) * h])

again = camera_paths_bpy.export_nerfstudio(cam, out + ".reexport.json")
a, b = camera_paths.read_nerfstudio(src), camera_paths.read_nerfstudio(again)
assert np.allclose(a.matrices, b.matrices, atol=2e-6), np.abs(a.matrices - b.matrices).max()
assert np.allclose(a.focal_px, b.focal_px, rtol=1e-5), (a.focal_px, b.focal_px)

for cls in camera_paths_bpy.classes:
    bpy.utils.register_class(cls)
scene.frame_set(scene.frame_start)
scene.cursor.location = (0.2, 0.1, 0.3)
assert bpy.ops.splatstage.add_camera_path(kind="ORBIT", frames=16, degrees=90.0) == {"FINISHED"}
orbit_cam = scene.camera
assert orbit_cam != cam
orbit = []
for f in range(scene.frame_start, scene.frame_end + 1):
    scene.frame_set(f)
    m = np.array(orbit_cam.matrix_world)
    to_cursor = np.array(scene.cursor.location) - m[:3, 3]
    orbit.append([float(np.linalg.norm(to_cursor)),
                  float(np.dot(-m[:3, 2], to_cursor) / np.linalg.norm(to_cursor))])

with open(out, "w") as fh:
    json.dump({"frames": frames, "matrices": mats, "uv": uv, "resolution": [w, h],
               "fps": [scene.render.fps, scene.render.fps_base], "orbit": orbit,
               "orbit_frames": [scene.frame_start, scene.frame_end], "eye0": mats[0]}, fh)
for cls in reversed(camera_paths_bpy.classes):
    bpy.utils.unregister_class(cls)
