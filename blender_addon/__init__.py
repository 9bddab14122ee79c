"""Splatstage for Blender: camera solve, product insertion and splat compositing through an
out-of-process backend.

Installed as a Blender extension (see ``blender_manifest.toml``) or imported as the
``blender_addon`` package of a source checkout (tests, ``batch.py``).
"""
from __future__ import annotations

import sys

# Inside Blender (and in scripts that import bpy first) bpy is already loaded; anywhere else,
# such as the backend or a test process, only the bpy-free modules are used and bpy stays out.
bpy = sys.modules.get("bpy")

if bpy is not None:
    from . import camera_paths_bpy, operators, panels, preferences, properties, queue_ops, render_ops, set_scale_bpy
    from . import product_photo_ops, scene_ops
    from .blender import link_state
    from .splats import operators as splat_operators

    classes = (
        *properties.classes,
        *preferences.classes,
        *operators.classes,
        *set_scale_bpy.classes,
        *render_ops.classes,
        *queue_ops.classes,
        *splat_operators.classes,
        *camera_paths_bpy.classes,
        *panels.classes,
        *scene_ops.classes,
        *product_photo_ops.classes,
    )


def register() -> None:
    for cls in classes:
        bpy.utils.register_class(cls)
    properties.register_props()
    scene_ops.register_props()
    product_photo_ops.register_props()
    bpy.types.STATUSBAR_HT_header.append(panels.draw_status_bar)


def unregister() -> None:
    link_state.shutdown()
    bpy.types.STATUSBAR_HT_header.remove(panels.draw_status_bar)
    properties.unregister_props()
    product_photo_ops.unregister_props()
    scene_ops.unregister_props()
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
