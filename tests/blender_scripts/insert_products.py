"""Insert GLB files through the add-on's operator, each into a fresh scene, and report.

usage: python insert_products.py OUT.json CASES.json
CASES.json: [{"name", "path", "dimension", "axis", "rotation_z", "fail_placement", "no_draco"}]
For every case the report holds the operator's error (if any), whether bpy.data and the
scene state are identical before/after a failure, and for successes the product's geometry
expressed in the frame of its root (rotation only), plus counts of what was imported.
"""
import atexit
import json
import sys

import bpy
import numpy as np
from mathutils import Matrix

import blender_addon
from blender_addon.blender import product as product_mod
from blender_addon.core import placement

out_path, cases_path = sys.argv[1:3]
cases = json.load(open(cases_path))
blender_addon.register()
atexit.register(blender_addon.unregister)  # also on errors: bpy 4.x must not exit with classes registered
GROUND_Z = 0.25
CURSOR = (0.4, -0.3, 1.0)


def data_state():
    """Every ID (name, users) in every bpy.data collection, enumerated independently of the add-on."""
    state = {}
    for name in dir(bpy.data):
        coll = getattr(bpy.data, name, None)
        if name.startswith("_") or name in ("window_managers", "screens", "workspaces") or \
                not isinstance(coll, bpy.types.bpy_prop_collection):
            continue
        state[name] = sorted((idb.name, idb.users) for idb in coll if isinstance(idb, bpy.types.ID))
    vl = bpy.context.view_layer
    state["_scene"] = [sorted(o.name for o in bpy.context.scene.objects),
                       sorted(o.name for o in vl.objects if o.select_get()),
                       vl.objects.active.name if vl.objects.active else None,
                       bpy.context.scene.frame_start, bpy.context.scene.frame_end,
                       bpy.context.scene.render.fps]
    return state


def setup_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    mesh = bpy.data.meshes.new("Ground")
    mesh.from_pydata([(-5, -5, 0), (5, -5, 0), (5, 5, 0), (-5, 5, 0)], [], [(0, 1, 2, 3)])
    ground = bpy.data.objects.new("Ground", mesh)
    ground["splatstage_ground"] = True
    ground.location.z = GROUND_Z
    scene.collection.objects.link(ground)
    ground.select_set(True)
    bpy.context.view_layer.objects.active = ground
    scene.cursor.location = CURSOR
    return scene


def product_geometry(root):
    deps = bpy.context.evaluated_depsgraph_get()
    rot = root.matrix_world.to_quaternion().to_matrix()
    origin = np.array(root.matrix_world.translation)
    pts = []
    for obj in root.children_recursive:
        if obj.type != "MESH":
            continue
        ev = obj.evaluated_get(deps)
        m = ev.to_mesh()
        co = np.empty(len(m.vertices) * 3)
        m.vertices.foreach_get("co", co)
        mw = np.array(ev.matrix_world)
        pts.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
        ev.to_mesh_clear()
    w = np.concatenate(pts)
    local = (w - origin) @ np.array(rot)
    return local.min(0).tolist(), local.max(0).tolist(), origin.tolist(), [list(r) for r in rot]


real_scale = placement.scale_for_dimension
real_draco = product_mod.draco_available
report = {"draco_available": real_draco()}
for case in cases:
    scene = setup_scene()
    before = data_state()
    if case.get("fail_placement"):
        def failing(*a, **k):
            raise ValueError("injected placement failure")
        placement.scale_for_dimension = failing
    if case.get("no_draco"):
        product_mod.draco_available = lambda: False
    n_objs = len(bpy.data.objects)
    helpers = lambda: sum(product_mod._importer_helper(o) for o in bpy.data.objects)  # noqa: E731
    r = {"error": ""}
    try:
        res = bpy.ops.splatstage.insert_product(filepath=case["path"], dimension=case["dimension"],
                                                axis=case.get("axis", "LARGEST"),
                                                rotation_z=case.get("rotation_z", 0.0))
        r["result"] = sorted(res)
    except RuntimeError as exc:
        r["error"] = str(exc)
    finally:
        placement.scale_for_dimension = real_scale
        product_mod.draco_available = real_draco
    after = data_state()
    r["unchanged"] = before == after
    if not r["unchanged"]:
        r["diff"] = {k: [before.get(k), after.get(k)] for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if not r["error"]:
        root = bpy.context.view_layer.objects.active
        r["root"] = root.name
        r["bbox_min"], r["bbox_max"], r["origin"], r["rotation"] = product_geometry(root)
        kids = [o for o in root.children_recursive]
        r["mesh_objects"] = sum(o.type == "MESH" for o in kids)
        r["armatures"] = sum(o.type == "ARMATURE" for o in kids)
        r["actions"] = len(bpy.data.actions)
        r["all_new_under_root"] = len(bpy.data.objects) - helpers() - n_objs == len(kids) + 1
        r["warnings"] = root.get("splatstage_warnings", "")
    report[case["name"]] = r
json.dump(report, open(out_path, "w"), indent=1)
