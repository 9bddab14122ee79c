"""The product's size as the headless batch leaves it, and as the composite render would make it.

usage: python batch_product_size.py OUT.json --blend SCENE.blend
       python batch_product_size.py OUT.json -- BATCH ARGS...   (batch.insert_product in an empty scene)

Reports the scene's objects, lights, meshes and cameras; the product's height in the scene
(its evaluated vertices along the ground normal); the ``product_height`` the Render panel's
``composite`` job would get (``render_ops.composite_params``); and the height of the product
that the render itself builds from those params (``compositing.shot.insert_product``).
"""
import json
import sys

import bpy
import numpy as np

from blender_addon import batch


def heights(root, normal):
    deps = bpy.context.evaluated_depsgraph_get()
    pts = []
    for o in root.children_recursive:
        if o.type == "MESH":
            ev = o.evaluated_get(deps)
            m = ev.to_mesh()
            co = np.empty(len(m.vertices) * 3)
            m.vertices.foreach_get("co", co)
            mw = np.array(ev.matrix_world)
            pts.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
            ev.to_mesh_clear()
    h = np.concatenate(pts) @ normal
    return float(h.max() - h.min())


out_path, mode = sys.argv[1], sys.argv[2]
if mode == "--blend":
    bpy.ops.wm.open_mainfile(filepath=sys.argv[3])
    args = None
else:
    args = batch.parse_args(sys.argv[3:])
    batch.start_empty_if_no_file()
addon, registered_here = batch.load_addon()
try:
    scene = bpy.context.scene
    report = {"objects": sorted(o.name for o in bpy.data.objects),
              "lights": [o.name for o in bpy.data.objects if o.type == "LIGHT"] + [d.name for d in bpy.data.lights],
              "meshes": sorted(m.name for m in bpy.data.meshes),
              "cameras": sorted(o.name for o in bpy.data.objects if o.type == "CAMERA")}
    if args is not None:
        scene.splatstage.video_path = str(args.video.resolve())
        batch.insert_product(args, scene)
    from blender_addon import render_ops
    from blender_addon.blender.product import ground_of
    from blender_addon.compositing import shot

    root = next(o for o in scene.objects if "splatstage_product" in o)
    normal = ground_of(scene)[1]
    report["blend_height"] = heights(root, normal)
    report["recorded_height"] = float(root["splatstage_height_m"])
    report["recorded_dimension"] = float(root["splatstage_dimension_m"])
    report["scene_product_size"] = float(scene.splatstage.product_size)
    scene.splatstage.render_output = str(bpy.app.tempdir or "/tmp") + "/size-check.mp4"
    params, _ = render_ops.composite_params(scene)
    report["render_param"] = params["product_height"]
    rendered = shot.insert_product({"product": params["product"], "product_height": params["product_height"],
                                    "anchor": [0.0, 0.0, 0.0], "rotate_deg": params["rotate"]})
    report["render_height"] = heights(rendered, normal)
finally:
    if registered_here:
        addon.unregister()
json.dump(report, open(out_path, "w"))
