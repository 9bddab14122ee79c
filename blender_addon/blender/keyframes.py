"""Bulk keyframing: one ``keyframe_points.add`` + ``foreach_set`` per F-curve.

Works with legacy actions (Blender 4.2/4.3) and slotted, layered actions (4.4 and later).
"""
from __future__ import annotations

import bpy
import numpy as np


def _fcurve_collection(id_data, action):
    """The F-curve collection that animates ``id_data`` through ``action``."""
    anim = id_data.animation_data or id_data.animation_data_create()
    anim.action = action
    if not hasattr(action, "slots"):  # Blender 4.2/4.3: legacy actions
        return action.fcurves
    slot = anim.action_slot
    if slot is None:
        slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
        anim.action_slot = slot
    layer = action.layers[0] if action.layers else action.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(slot, ensure=True).fcurves


def set_keys(id_data, channels: dict[tuple[str, int], np.ndarray], frames: np.ndarray,
             action_name: str, interpolation: str = "LINEAR"):
    """Key ``id_data`` at ``frames`` with one value array per ``(data_path, index)`` channel.

    Creates a new action (replacing the ID's current one) and returns it. Each F-curve is
    filled with a single bulk ``foreach_set``; no per-key Python calls.
    """
    frames = np.asarray(frames, dtype=np.float32)
    n = len(frames)
    action = bpy.data.actions.new(action_name)
    fcurves = _fcurve_collection(id_data, action)
    interp_id = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[interpolation].value
    interp = np.full(n, interp_id, dtype=np.int32)
    co = np.empty((n, 2), dtype=np.float32)
    co[:, 0] = frames
    for (path, index), values in channels.items():
        fc = fcurves.new(path, index=index)
        fc.keyframe_points.add(n)
        co[:, 1] = np.asarray(values, dtype=np.float32)
        fc.keyframe_points.foreach_set("co", co.ravel())
        fc.keyframe_points.foreach_set("interpolation", interp)
        fc.update()
    return action
