"""Render the world of :func:`blender_addon.compositing.world.setup` straight into a narrow
camera looking along given directions; write each centre pixel's linear RGB to JSON.

usage: python composite_envmap.py ENVMAP.exr OUT.json WORK_DIR
Cases: every cube-face direction (the vertical ones 3 degrees off the pole) with rotation 0 and exposure 0, and +Y with rotation 90,
and +X with exposure 1.
"""
import json
import sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from backend.pipelines.composite.envmap import FACES, face_matrices
from backend.synthetic.exr import read_exr_channels
from blender_addon.compositing import world

env_path, out_path, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.samples = 1
scene.cycles.use_denoising = False
scene.cycles.filter_width = 0.01
scene.render.resolution_x = scene.render.resolution_y = 9
scene.render.resolution_percentage = 100
scene.render.use_compositing = False
scene.view_settings.view_transform = "Standard"
scene.render.image_settings.file_format = "OPEN_EXR"
scene.render.image_settings.color_depth = "32"
scene.render.image_settings.exr_codec = "NONE"
cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
cam.data.lens = 200.0
scene.collection.objects.link(cam)
scene.camera = cam
w = world.setup(scene, env_path)
mats = dict(zip(FACES, face_matrices(np.zeros(3))))
cases = [(name, 0.0, 0.0) for name in FACES] + [("+y", 90.0, 0.0), ("+x", 0.0, 1.0)]
report = []
for k, (name, rot, ev) in enumerate(cases):
    world.set_controls(w, ev, rot)
    m = mats[name].copy()
    if name in ("+z", "-z"):  # 3 degrees off the pole: Cycles wraps the image vertically at the pole itself
        t = np.radians(3.0)
        m[:3, :3] = np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]) @ m[:3, :3]
    cam.matrix_world = Matrix(m.tolist())  # rows (a plain nested list would be read column-major)
    scene.render.filepath = str(work / f"case{k}.exr")
    bpy.ops.render.render(write_still=True)
    ch = read_exr_channels(work / f"case{k}.exr")
    report.append({"face": name, "rotation": rot, "exposure": ev, "forward": (-m[:3, 2]).tolist(),
                   "rgb": [float(ch[c][4, 4]) for c in ("R", "G", "B")]})
Path(out_path).write_text(json.dumps(report))
