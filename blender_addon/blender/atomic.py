"""All-or-nothing changes to the Blender file.

:func:`atomic` snapshots every ``bpy.data`` ID collection (by ``session_uid``), the selection,
the active object and the scene's frame and fps settings; if the body raises, every ID created
since is removed (a second pass catches IDs orphaned by the first) and the rest is restored,
so the file is exactly as it was, with no orphan data.
"""
from __future__ import annotations

from contextlib import contextmanager

import bpy

_SCENE_SETTINGS = ("frame_start", "frame_end", "frame_current", "camera")
_RENDER_SETTINGS = ("fps", "fps_base", "resolution_x", "resolution_y", "resolution_percentage")
_SKIP = ("window_managers", "screens", "workspaces")


def _is_id_type(struct) -> bool:
    while struct is not None:
        if struct.identifier == "ID":
            return True
        struct = struct.base
    return False


def id_collections() -> dict[str, bpy.types.bpy_prop_collection]:
    """Every ``bpy.data`` collection of IDs (objects, meshes, images, actions, ...), by name."""
    out = {}
    for prop in bpy.data.bl_rna.properties:
        if prop.type != "COLLECTION" or prop.identifier in _SKIP:
            continue
        fixed = getattr(prop, "fixed_type", None)
        if fixed is not None and _is_id_type(fixed.bl_rna):
            out[prop.identifier] = getattr(bpy.data, prop.identifier)
    return out


def data_snapshot() -> dict[str, set[int]]:
    """``session_uid`` of every ID in every ``bpy.data`` collection."""
    return {name: {idb.session_uid for idb in coll} for name, coll in id_collections().items()}


def new_ids(before: dict[str, set[int]]) -> list:
    """IDs created since ``before``."""
    out = []
    for name, coll in id_collections().items():
        old = before.get(name, set())
        out.extend(idb for idb in coll if idb.session_uid not in old)
    return out


def rollback(before: dict[str, set[int]]) -> None:
    """Remove every ID created since ``before``."""
    for _ in range(2):
        ids = new_ids(before)
        if ids:
            bpy.data.batch_remove(ids)


@contextmanager
def atomic(context):
    """Run the body as one change: on any exception, undo its data and scene changes and re-raise."""
    scene, view_layer = context.scene, context.view_layer
    before = data_snapshot()
    selected = [o for o in view_layer.objects if o.select_get()]
    active = view_layer.objects.active
    saved = {k: getattr(scene, k) for k in _SCENE_SETTINGS}
    saved_render = {k: getattr(scene.render, k) for k in _RENDER_SETTINGS}
    try:
        yield before
    except BaseException:
        rollback(before)
        view_layer.update()
        for k, v in saved.items():
            setattr(scene, k, v)
        for k, v in saved_render.items():
            setattr(scene.render, k, v)
        for o in view_layer.objects:
            if o is not None:
                o.select_set(o in selected)
        view_layer.objects.active = active
        raise
