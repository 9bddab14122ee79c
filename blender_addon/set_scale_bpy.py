"""The *Set Scale* tool of the Camera Solve panel: scale the imported solve in place.

Like the movie-clip tracker's Set Scale: a known distance between two selected objects (e.g.
empties snapped to the imported points), between the 3D cursor and the active object, or the
solve camera's height above the ground at the current frame. The imported camera's location
keys, the points and the ground are scaled about the ground plane's point, rotations kept, and
the references (the selected objects, the cursor) move with them, imported splats scale with
them and inserted products keep their real size where they stand. The maths is
:mod:`.core.set_scale`; nothing is solved again.
"""
from __future__ import annotations

import json

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty

from .core import set_scale as core
from .properties import SCALE_MODE_ITEMS as MODE_ITEMS


def mark_imported(scene, out: dict, stats: dict) -> None:
    """Remember an imported solve's ground and scale on its collection and the scene."""
    coll = out["collection"]
    coll["splatstage_solve"] = True
    ground = out.get("ground")
    if ground is not None:
        m = np.array(ground.matrix_world)
        coll["splatstage_pivot"] = m[:3, 3].tolist()
        coll["splatstage_normal"] = (m[:3, 2] / np.linalg.norm(m[:3, 2])).tolist()
    record = core.scale.info_of({"stats": stats})
    coll["splatstage_scale"] = json.dumps(record)
    coll["splatstage_applied"] = 1.0
    s = scene.splatstage
    s.scale_record, s.scale_params = json.dumps(record), ""


def solve_collection(scene):
    """The imported solve of ``scene.camera`` (else the last solve imported into the scene)."""
    found = [c for c in scene.collection.children_recursive if c.get("splatstage_solve")]
    if scene.camera is not None:
        for c in scene.camera.users_collection:
            if c.get("splatstage_solve"):
                return c
    return found[-1] if found else None


def _vec(coll, key: str, default) -> np.ndarray:
    v = coll.get(key)
    return np.array(list(v) if v is not None else default, np.float64)


def _location_fcurves(obj) -> list:
    anim = obj.animation_data
    if anim is None or anim.action is None:
        return []
    act = anim.action
    if hasattr(act, "slots"):
        slot = anim.action_slot
        if slot is None or not act.layers or not act.layers[0].strips:
            return []
        bag = act.layers[0].strips[0].channelbag(slot)
        fcurves = bag.fcurves if bag is not None else []
    else:
        fcurves = act.fcurves
    return [fc for fc in fcurves if fc.data_path == "location"]


def _scale_keys(obj, factor: float, pivot: np.ndarray) -> None:
    curves = _location_fcurves(obj)
    for fc in curves:
        p = float(pivot[fc.array_index])
        n = len(fc.keyframe_points)
        for attr in ("co", "handle_left", "handle_right"):
            buf = np.empty(2 * n, np.float32)
            fc.keyframe_points.foreach_get(attr, buf)
            buf[1::2] = p + factor * (buf[1::2] - p)
            fc.keyframe_points.foreach_set(attr, buf)
        fc.update()
    if not curves:
        obj.location = core.scale_about(np.array(obj.location), factor, pivot)[0]


def _scale_mesh_world(obj, factor: float, pivot: np.ndarray) -> None:
    mesh = obj.data
    co = np.empty(3 * len(mesh.vertices), np.float64)
    mesh.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    world = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    new = core.scale_about(world, factor, pivot)
    local = (new - m[:3, 3]) @ np.linalg.inv(m[:3, :3]).T
    mesh.vertices.foreach_set("co", local.astype(np.float32).ravel())
    mesh.update()


def apply_scale(scene, coll, factor: float, movers=(), cursor: bool = False) -> None:
    """Scale the solve in ``coll`` (and ``movers``, the cursor) by ``factor`` about its ground point."""
    pivot = _vec(coll, "splatstage_pivot", (0.0, 0.0, 0.0))
    for obj in coll.objects:
        if obj.type == "CAMERA":
            _scale_keys(obj, factor, pivot)
        elif obj.get("splatstage_ground"):
            obj.data.vertices.foreach_set("co", (np.array([v.co for v in obj.data.vertices]) * factor)
                                          .astype(np.float32).ravel())
            obj.data.update()
        elif obj.type == "MESH":
            _scale_mesh_world(obj, factor, pivot)
    for obj in scene.objects:
        if obj.parent is not None or obj.name in coll.objects:
            continue
        if "splatstage_splats" in obj:  # imported splats: the whole object scales with the world
            m = np.array(obj.matrix_world)
            m[:3, :3] *= factor
            m[:3, 3] = core.scale_about(m[:3, 3], factor, pivot)[0]
            obj.matrix_world = [list(r) for r in m]
        elif "splatstage_product" in obj or obj in movers:  # products keep their real size
            obj.location = core.scale_about(np.array(obj.matrix_world.translation), factor, pivot)[0]
    if cursor:
        scene.cursor.location = core.scale_about(np.array(scene.cursor.location), factor, pivot)[0]
    scene.frame_set(scene.frame_current)


def apply_reference(scene, doc: dict, params: dict) -> float:
    """Scale the imported solve of ``doc`` (its cameras.json) by a job-style reference (see
    :func:`.core.set_scale.measure_reference`); the same reference then goes to the jobs that
    reuse the solve folder. Returns the factor applied to the scene; raises ScaleError."""
    coll = solve_collection(scene)
    if coll is None:
        raise core.ScaleError("no imported camera solve in this scene")
    factor, record = core.measure_reference(doc, params)
    applied = float(coll.get("splatstage_applied", 1.0))
    apply_scale(scene, coll, factor / applied)
    coll["splatstage_applied"] = factor
    coll["splatstage_scale"] = json.dumps(record)
    s = scene.splatstage
    s.scale_record, s.scale_params = json.dumps(record), json.dumps(core.scale_params(json.dumps(params)))
    return factor / applied


class SPLATSTAGE_OT_set_scale(bpy.types.Operator):
    """Scale the imported camera solve (cameras, points, ground) so a reference measures a known size,
    without solving again"""
    bl_idname = "splatstage.set_scale"
    bl_label = "Set Scale"
    bl_options = {"REGISTER", "UNDO"}

    mode: EnumProperty(name="Reference", items=MODE_ITEMS, default="SELECTED")
    distance: FloatProperty(name="Distance", default=0.0, min=0.0, unit="LENGTH",
                            description="Known distance or camera height (0: the panel's value)")

    def invoke(self, context, event):
        s = context.scene.splatstage
        self.mode = s.scale_mode
        return self.execute(context)

    def execute(self, context):
        scene = context.scene
        s = scene.splatstage
        distance = float(self.distance or s.scale_distance)
        coll = solve_collection(scene)
        if coll is None:
            self.report({"ERROR"}, "no imported camera solve in this scene (Camera Solve: Import cameras.json)")
            return {"CANCELLED"}
        pivot, normal = _vec(coll, "splatstage_pivot", (0.0, 0.0, 0.0)), _vec(coll, "splatstage_normal", (0, 0, 1.0))
        movers, cursor = [], False
        try:
            if self.mode == "SELECTED":
                objs = list(context.selected_objects)
                if len(objs) != 2:
                    raise core.ScaleError(f"select exactly two objects (e.g. empties snapped to points), "
                                          f"not {len(objs)}")
                a, b = (np.array(o.matrix_world.translation) for o in objs)
                movers = objs
            elif self.mode == "CURSOR":
                obj = context.active_object
                if obj is None:
                    raise core.ScaleError("no active object to measure from the 3D cursor")
                a, b = np.array(scene.cursor.location), np.array(obj.matrix_world.translation)
                movers, cursor = [obj], True
            else:
                cam = next((o for o in coll.objects if o.type == "CAMERA"), None)
                if cam is None:
                    raise core.ScaleError("the imported solve has no camera")
                a = np.array(cam.matrix_world.translation)
                b = core.camera_foot(a, pivot, normal)
            factor = core.factor_from_points(a, b, distance)
        except core.ScaleError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        applied = float(coll.get("splatstage_applied", 1.0))
        reference = core.job_reference(core.original_points(a, pivot, applied)[0],
                                       core.original_points(b, pivot, applied)[0], distance)
        apply_scale(scene, coll, factor, movers, cursor)
        record = core.record_for(self.mode, distance)
        coll["splatstage_applied"] = applied * factor
        coll["splatstage_scale"] = json.dumps(record)
        s.scale_record, s.scale_params = json.dumps(record), json.dumps(reference)
        self.report({"INFO"}, f"scaled the solve by {factor:.4g} ({record['note']})")
        return {"FINISHED"}


classes = (SPLATSTAGE_OT_set_scale,)
