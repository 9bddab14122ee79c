"""Splat import and preview checks inside Blender.

usage:
  python splat_preview.py attrs SPLATS.ply OUT.npz          attributes as Blender stores them
  python splat_preview.py fraction SPLATS.ply OUT.json F... instances drawn per display fraction
  python splat_preview.py render SCENE.npz OUT.png ENGINE   render (CYCLES or EEVEE) of given
                                                            splats through a pinhole camera
                                                            (SCENE.npz: splat arrays + c2w +
                                                            focal + width/height)
"""
import json
import sys

import bpy
import numpy as np
from mathutils import Matrix

from blender_addon.splats import attributes, importer, preview

mode = sys.argv[1]
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene

if mode == "attrs":
    from blender_addon.splats import operators

    for cls in operators.classes:
        bpy.utils.register_class(cls)
    assert bpy.ops.splatstage.import_splats(filepath=sys.argv[2]) == {"FINISHED"}
    obj = bpy.context.active_object
    me = obj.data
    n = len(me.vertices)
    out = {"matrix_world": np.array(obj.matrix_world), "count": n,
           "has_preview": obj.modifiers.get(preview.MODIFIER_NAME) is not None}
    co = np.empty(n * 3, np.float32)
    me.vertices.foreach_get("co", co)
    out["positions"] = co.reshape(n, 3)
    for a in me.attributes:
        if a.domain != "POINT" or a.name.startswith(".") or a.name == "position":
            continue
        prop, comps = importer._PROPS[a.data_type]
        buf = np.empty(n * comps, np.float32)
        a.data.foreach_get(prop, buf)
        out[f"attr:{a.name}:{a.data_type}"] = buf.reshape(n, comps) if comps > 1 else buf
    np.savez(sys.argv[3], **out)
    for cls in reversed(operators.classes):
        bpy.utils.unregister_class(cls)

elif mode == "fraction":
    obj = importer.import_ply(sys.argv[2])
    counts = {}
    for f in map(float, sys.argv[4:]):
        preview.set_inputs(obj, display_fraction=f)
        dg = bpy.context.evaluated_depsgraph_get()
        dg.update()
        counts[str(f)] = sum(1 for inst in dg.object_instances
                             if inst.is_instance and inst.parent and inst.parent.original == obj)
    with open(sys.argv[3], "w") as fh:
        json.dump({"count": len(obj.data.vertices), "instances": counts}, fh)

elif mode == "render":
    d = np.load(sys.argv[2])
    w, h, f = int(d["width"]), int(d["height"]), float(d["focal_px"])
    splats = attributes.from_payload({k: d[k] for k in ("positions", "colors", "opacity", "scales", "rotations")})
    obj = importer.create_splat_object(splats, "Splats", display_fraction=1.0, splat_size=float(d["splat_size"]))
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.matrix_world = Matrix(d["c2w"].tolist())           # rows (RNA arrays are column-major)
    cam.data.sensor_fit, cam.data.sensor_width = "HORIZONTAL", 36.0
    cam.data.lens = f * 36.0 / w
    scene.camera = cam
    world = bpy.data.worlds.new("black")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.0
    scene.world = world
    r = scene.render
    engine = sys.argv[4]
    r.engine = "CYCLES" if engine == "CYCLES" else \
        next(e.identifier for e in r.bl_rna.properties["engine"].enum_items
             if e.identifier in ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"))
    if engine != "CYCLES":
        scene.eevee.taa_render_samples = 64
    r.resolution_x, r.resolution_y, r.resolution_percentage = w, h, 100
    r.image_settings.file_format = "PNG"
    r.filepath = sys.argv[3]
    scene.view_settings.view_transform = "Standard"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    r.threads_mode, r.threads = "FIXED", 2
    bpy.ops.render.render(write_still=True)
else:
    raise SystemExit(f"unknown mode {mode}")
