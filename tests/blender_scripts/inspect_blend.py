"""Open a saved .blend and report its Splatstage content as JSON.

usage: python inspect_blend.py SCENE.blend OUT.json
"""
import json
import sys

import bpy
import numpy as np

blend, out_path = sys.argv[1:3]
bpy.ops.wm.open_mainfile(filepath=blend)
scene = bpy.context.scene
cam = scene.camera
report = {"camera": cam.name if cam else None, "frame_range": [scene.frame_start, scene.frame_end],
          "resolution": [scene.render.resolution_x, scene.render.resolution_y],
          "fps": scene.render.fps / scene.render.fps_base}
if cam is not None and cam.animation_data:
    anim = cam.animation_data
    if hasattr(anim.action, "slots"):
        from bpy_extras.anim_utils import action_get_channelbag_for_slot
        fcurves = action_get_channelbag_for_slot(anim.action, anim.action_slot).fcurves
    else:
        fcurves = anim.action.fcurves
    report["keys"] = {f"{fc.data_path}[{fc.array_index}]": len(fc.keyframe_points) for fc in fcurves}
    report["clip"] = bool(cam.data.background_images) and cam.data.background_images[0].clip is not None
roots = [o for o in scene.objects if "splatstage_product" in o]
if roots:
    root = roots[0]
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
    w = np.concatenate(pts)
    ground = next(o for o in scene.objects if o.get("splatstage_ground"))
    gw = np.array(ground.matrix_world)
    n = gw[:3, 2] / np.linalg.norm(gw[:3, 2])
    heights = (w - gw[:3, 3]) @ n
    rot = np.array(root.matrix_world.to_quaternion().to_matrix())
    local = (w - np.array(root.matrix_world.translation)) @ rot
    from bpy_extras.object_utils import world_to_camera_view

    scene.frame_set(scene.frame_start)
    ndc = world_to_camera_view(scene, cam, root.matrix_world.translation)
    report["product"] = {"name": root.name, "min_height": float(heights.min()),
                         "extent": (local.max(0) - local.min(0)).tolist(),
                         "first_frame_ndc": [ndc.x, ndc.y, ndc.z]}
json.dump(report, open(out_path, "w"))
