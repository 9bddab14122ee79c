"""Install the built extension zip into a private user repository, enable it, then disable and
enable it twice more, recording what is registered at each step.

usage: python install_extension.py ZIP OUT.json
"""
import json
import sys

import bpy  # noqa: I001  (bpy first: it puts Blender's script modules on sys.path)
import addon_utils

zip_path, out_path = sys.argv[1:3]
MODULE = "bl_ext.user_default.splatstage"
report = {"steps": []}


def state(label):
    import sys as _sys

    ops = [name for name in dir(bpy.ops.splatstage) if not name.startswith("_")]
    import glob
    import threading

    registered = [name for name in ("SPLATSTAGE_OT_import_cameras", "SPLATSTAGE_OT_insert_product",
                                    "SPLATSTAGE_OT_import_splats", "SPLATSTAGE_OT_add_camera_path",
                                    "SPLATSTAGE_PT_backend", "SPLATSTAGE_PT_camera_solve",
                                    "SPLATSTAGE_PT_render")
                  if hasattr(bpy.types, name)]
    addon = bpy.context.preferences.addons.get(MODULE)
    if addon is not None and addon.preferences is not None:
        registered.append("preferences:" + addon.preferences.address)
    site = glob.glob(bpy.utils.user_resource("EXTENSIONS") + "/.local/lib/python3*/site-packages/zmq/**/*.so", recursive=True)
    link_state = _sys.modules.get(MODULE + ".blender.link_state")
    timer = bool(link_state and bpy.app.timers.is_registered(link_state.tick))
    enabled = MODULE in bpy.context.preferences.addons
    vendored = _sys.modules.get(MODULE + ".vendor")
    shared = {}
    if enabled:  # the modules that use the shared formats, and where those come from
        import importlib

        for mod, attr in (("camera_paths_bpy", "camera_paths"), ("core.job_params", "glb_check"),
                          ("blender.product", "glb_check")):
            shared[mod] = getattr(importlib.import_module(f"{MODULE}.{mod}"), attr).__name__
    report["steps"].append({
        "label": label, "enabled": enabled, "registered": registered,
        "scene_prop": hasattr(bpy.types.Scene, "splatstage"),
        "operators_callable": bool(ops) and all(hasattr(getattr(bpy.ops.splatstage, o), "poll") for o in ops),
        "timer": timer,
        "status_draw": sum(getattr(f, "__name__", "") == "draw_status_bar"
                           for f in getattr(bpy.types.STATUSBAR_HT_header.draw, "_draw_funcs", [])),
        "protocol_module": vendored.shared_protocol.__name__ if vendored else None,
        "shared_modules": shared,
        "wheel_zmq_binaries": len(site),
        "link_threads": sum(t.name == "splatstage-link" and t.is_alive() for t in threading.enumerate()),
    })


def validate_with_blender(path):
    """Blender's own extension validator (bl_pkg/cli/blender_ext.py validate)."""
    import os
    import subprocess

    tool = os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py")
    if not os.path.exists(tool):
        return None
    proc = subprocess.run([sys.executable, tool, "validate", path], capture_output=True, text=True)
    return {"rc": proc.returncode, "output": (proc.stdout + proc.stderr)[-2000:]}


report["validate"] = validate_with_blender(zip_path)
try:
    res = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    report["install"] = sorted(res)
except Exception as exc:  # noqa: BLE001
    report["install_error"] = str(exc)
state("installed")
try:
    import zmq

    report["zmq_file"] = zmq.__file__
except ImportError as exc:
    report["zmq_file"] = f"ImportError: {exc}"
for i in range(2):
    addon_utils.disable(MODULE, default_set=True)
    state(f"disabled {i}")
    addon_utils.enable(MODULE, default_set=True)
    state(f"enabled {i}")
    # exercise the link's registration path: connect to a closed port, then unregister cleanly
    bpy.ops.splatstage.connect(address="tcp://127.0.0.1:9")
    state(f"connecting {i}")
addon_utils.disable(MODULE, default_set=True)
state("final disabled")
json.dump(report, open(out_path, "w"), indent=1)
