"""*Submit Shot to Queue*: the open .blend's shot as an entry of a shots file for
``splatstage batch`` (docs/cluster.md, "Batch"), and its first job on the backend's queue.

The entry (footage, product, placement and options from the Camera Solve and Render panels)
is built and checked by the bpy-free :mod:`shared_protocol.shots` (a bad input is one
``ERROR`` report, and nothing is written or submitted), written into the shots file (a shot
of the same name is replaced), and the shot's camera solve is submitted with exactly the
parameters the batch gives it: over the add-on's link when it is connected (progress in the
status bar), else on a connection of its own. ``splatstage batch FILE --backend ADDRESS``
then runs the shot's chain; its solve is already done or under way (the server answers an
identical job from its cache).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import bpy
from bpy.props import StringProperty

from . import preferences
from .blender import link_state
from .blender.link_state import STATE
from .render_ops import blend_path
from .vendor import module


def shot_entry(scene, name: str) -> dict:
    """The scene's shot as a shots-file entry (absolute paths)."""
    s = scene.splatstage
    placement = {"at_frame": int(s.render_frame), "rotate": round(math.degrees(s.product_rotation), 6)}
    if s.render_placement == "PIXEL":
        placement["at_pixel"] = [float(v) for v in s.render_pixel]
    if s.render_product_height > 0:
        placement["product_height"] = float(s.render_product_height)
    options: dict = {"preview": bool(s.render_preview), "device": s.render_device}
    if s.render_max_frames > 0:
        options["frames"] = int(s.render_max_frames)
    if s.render_steps > 0:
        options["reconstruct"] = {"steps": int(s.render_steps)}
    return {"name": name, "footage": blend_path(s.video_path), "product": blend_path(s.product_path),
            "placement": placement, "options": options}


def default_shot_name() -> str:
    stem = Path(bpy.data.filepath).stem if bpy.data.filepath else "shot"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("_.-")[:64] or "shot"


class SPLATSTAGE_OT_submit_shot(bpy.types.Operator):
    """Add this .blend's shot to a shots file for 'splatstage batch' and queue its camera solve on the backend"""

    bl_idname = "splatstage.submit_shot"
    bl_label = "Submit Shot to Queue"
    bl_options = {"REGISTER"}

    filepath: StringProperty(name="Shots File", subtype="FILE_PATH", default="//splatstage_shots.json",
                             description="The shots file the batch reads (created if missing)")
    shot_name: StringProperty(name="Shot Name", default="",
                              description="Name of the shot and of its output folder (default: the .blend's name)")
    address: StringProperty(name="Address", default="", options={"SKIP_SAVE"},
                            description="Backend address (empty: the link's or the preferences')")

    def execute(self, context):
        shots = module("shots")
        queue = Path(blend_path(self.filepath))
        name = self.shot_name or default_shot_name()
        entry = shot_entry(context.scene, name)
        try:
            shot = shots.check_shot(entry, queue.parent)
        except shots.ShotError as exc:
            self.report({"ERROR"}, f"Submit Shot: {exc}")
            return {"CANCELLED"}
        params = shots.stage_params(shot, shots.STAGES[0], shots.output_folder(queue) / name)
        try:
            shots.add_shot(queue, entry)
            where = self._submit(context, params)
        except (shots.ShotError, OSError, RuntimeError) as exc:
            self.report({"ERROR"}, f"Submit Shot: {' '.join(str(exc).split())}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"shot {name} is in {queue}; its camera solve is queued ({where}); "
                              f"run 'splatstage batch {queue}' for its reconstruction and composite")
        return {"FINISHED"}

    def _submit(self, context, params: dict) -> str:
        if not self.address and STATE.link is not None and STATE.status == "connected":
            view = link_state.submit("poses", params, "Camera Solve (queued shot)")
            return f"over the link, {view.tag}"
        prefs = preferences.get(context)
        address = self.address or (STATE.link.address if STATE.link else (prefs.address if prefs else
                                                                           "tcp://127.0.0.1:5555"))
        from .core import backend_link

        keys = backend_link.load_curve_keys(prefs.server_key_file if prefs else "",
                                            prefs.client_key_file if prefs else "")
        client = module("client").Client(address, server_public_key=keys[0], client_keys=keys[1], timeout=10.0)
        try:
            client.connect()
            return f"job {client.submit('poses', params, watch=False)} on {address}"
        except module("client").BackendError as exc:
            raise RuntimeError(f"the backend at {address}: {exc.message}") from None
        finally:
            client.close()


classes = (SPLATSTAGE_OT_submit_shot,)
