"""Add-on preferences: backend address, CURVE keys and a local backend to start."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty

from .blender.link_state import STATE


class SPLATSTAGE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    address: StringProperty(name="Backend Address", default="tcp://127.0.0.1:5555",
                            description="ZeroMQ address of the Splatstage backend")
    server_key_file: StringProperty(name="Server Public Key", subtype="FILE_PATH", default="",
                                    description="CURVE public key file of the backend (empty: no encryption)")
    client_key_file: StringProperty(name="Client Secret Key", subtype="FILE_PATH", default="",
                                    description="This client's CURVE secret certificate (empty: ephemeral keys)")
    backend_python: StringProperty(name="Backend Python", subtype="FILE_PATH", default="",
                                   description="Python interpreter of an installed Splatstage backend")
    backend_cache: StringProperty(name="Cache Folder", subtype="DIR_PATH", default="",
                                  description="Result cache of a local backend (empty: a temp folder)")
    backend_root: StringProperty(name="Data Root", subtype="DIR_PATH", default="",
                                 description="Folder a local backend may read inputs from (empty: home)")
    start_local: BoolProperty(name="Start Local Backend on Connect", default=False,
                              description="Spawn 'splatstage serve' when connecting; it stops when Blender quits")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "address")
        col.prop(self, "server_key_file")
        col.prop(self, "client_key_file")
        box = col.box()
        box.prop(self, "start_local")
        sub = box.column()
        sub.active = self.start_local
        sub.prop(self, "backend_python")
        sub.prop(self, "backend_cache")
        sub.prop(self, "backend_root")
        col.label(text=f"Status: {STATE.status}")


def get(context=None) -> SPLATSTAGE_AP_preferences | None:
    """This add-on's preferences (None if it is not enabled as an add-on)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


classes = (SPLATSTAGE_AP_preferences,)
