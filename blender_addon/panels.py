"""Sidebar panels (3D Viewport > Splatstage) and the status-bar progress."""
from __future__ import annotations

import bpy

from .blender.link_state import STATE


def _fmt_eta(eta) -> str:
    if eta is None:
        return ""
    eta = int(round(float(eta)))
    return f" - {eta // 60}:{eta % 60:02d} left" if eta >= 60 else f" - {eta}s left"


def draw_job(layout, view) -> None:
    """Progress bar with stage text and ETA, and a Cancel button, for one job."""
    if view is None:
        return
    row = layout.row(align=True)
    if view.status in ("submitted", "running"):
        text = f"{view.stage}: {view.message}"[:60] + _fmt_eta(view.eta_s)
        if hasattr(row, "progress"):
            row.progress(factor=view.fraction, type="BAR", text=text)
        else:
            row.label(text=f"{100 * view.fraction:.0f}% {text}")
        op = row.operator("splatstage.cancel_job", text="", icon="CANCEL")
        op.tag = view.tag
    elif view.status == "error":
        layout.label(text=view.message[:80], icon="ERROR")
    elif view.status == "cancelled":
        layout.label(text="cancelled", icon="CANCEL")


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Splatstage"


class SPLATSTAGE_PT_backend(_Panel, bpy.types.Panel):
    bl_label = "Backend"

    def draw(self, context):
        layout = self.layout
        icon = {"connected": "LINKED", "connecting": "SORTTIME"}.get(STATE.status, "UNLINKED")
        layout.label(text=STATE.status.capitalize(), icon=icon)
        if STATE.status == "connected":
            w = STATE.welcome
            layout.label(text=f"Device: {w.get('device', '?')}")
            if w.get("gpu_memory_gb") is not None:
                layout.label(text=f"GPU memory: {float(w['gpu_memory_gb']):.1f} GB")
            layout.label(text=f"Server {w.get('server_version', '?')}, protocol {w.get('protocol_version', '?')}")
            layout.operator("splatstage.disconnect")
        else:
            layout.operator("splatstage.connect")
            if STATE.last_error:
                layout.label(text=STATE.last_error[:80], icon="ERROR")
        row = layout.row(align=True)
        running = STATE.server_proc is not None and STATE.server_proc.poll() is None
        row.operator("splatstage.start_backend", text="Restart Local" if running else "Start Local")
        if running:
            row.operator("splatstage.stop_backend", text="Stop Local")


class SPLATSTAGE_PT_footage(_Panel, bpy.types.Panel):
    bl_label = "Footage"

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "video_path")
        row = col.row(align=True)
        row.prop(s, "frame_start")
        row.prop(s, "frame_end")
        row.prop(s, "stride")
        col.operator("splatstage.load_footage")


class SPLATSTAGE_PT_camera_solve(_Panel, bpy.types.Panel):
    bl_label = "Camera Solve"

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "solve_dir")
        col.operator("splatstage.solve_cameras")
        draw_job(col, STATE.job_of_kind("poses"))
        col.operator("splatstage.import_cameras", text="Import cameras.json...")
        if s.solve_summary:
            col.label(text=s.solve_summary[:90], icon="INFO")
        draw_scale(col, s)


def draw_scale(layout, s) -> None:
    """The solve's scale source (a warning while it is the default guess) and the Set Scale tool."""
    from .core.set_scale import describe

    line, guess = describe(s.scale_record)
    box = layout.box()
    box.label(text=line[:90], icon="ERROR" if guess else "INFO")
    box.prop(s, "scale_mode", text="")
    row = box.row(align=True)
    row.prop(s, "scale_distance")
    row.operator("splatstage.set_scale")


class SPLATSTAGE_PT_product(_Panel, bpy.types.Panel):
    bl_label = "Product"

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "product_path")
        col.prop(s, "product_size")
        col.prop(s, "product_axis")
        col.prop(s, "product_rotation")
        col.operator("splatstage.insert_product")


def _draw_result(layout, path: str) -> None:
    """The last output file with an Open button (the system's video player)."""
    if not path:
        return
    row = layout.row(align=True)
    row.label(text=path[-70:], icon="FILE_MOVIE")
    op = row.operator("wm.path_open", text="", icon="FILEBROWSER")
    op.filepath = path


class SPLATSTAGE_PT_reconstruction(_Panel, bpy.types.Panel):
    bl_label = "Reconstruction"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "reconstruction_dir")
        row = col.row(align=True)
        row.prop(s, "recon_steps")
        row.prop(s, "recon_strategy", text="")
        row = col.row(align=True)
        row.prop(s, "recon_max_size")
        row.prop(s, "recon_device", text="")
        col.operator("splatstage.reconstruct")
        draw_job(col, STATE.job_of_kind("reconstruct"))
        col.separator()
        col.operator("splatstage.import_splats")
        col.operator("splatstage.splat_display")


class SPLATSTAGE_PT_stereo(_Panel, bpy.types.Panel):
    bl_label = "Stereo"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "stereo_interaxial")
        col.prop(s, "stereo_convergence")
        col.prop(s, "stereo_layout")
        col.prop(s, "stereo_method")
        col.prop(s, "stereo_debug_grid")
        col.prop(s, "stereo_output")
        col.operator("splatstage.render_stereo")
        draw_job(col, STATE.job_of_kind("stereo"))
        _draw_result(col, s.stereo_result)


class SPLATSTAGE_PT_render(_Panel, bpy.types.Panel):
    bl_label = "Render"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.splatstage
        col = self.layout.column()
        col.prop(s, "product_path")
        col.prop(s, "render_placement")
        if s.render_placement == "PIXEL":
            row = col.row(align=True)
            row.prop(s, "render_pixel", text="")
            row.prop(s, "render_frame")
        else:
            col.prop(s, "render_frame")
        col.operator("splatstage.placement_from_cursor", icon="PIVOT_CURSOR")
        row = col.row(align=True)
        row.prop(s, "render_product_height")
        row.prop(s, "product_rotation")
        row = col.row(align=True)
        row.prop(s, "render_preview")
        row.prop(s, "render_stereo")
        col.prop(s, "render_reuse", text="Reuse Solve/Splats")
        col.prop(s, "render_camera")
        row = col.row(align=True)
        row.prop(s, "render_env_exposure", text="Light EV")
        row.prop(s, "render_env_rotation", text="Rotation")
        row = col.row(align=True)
        row.prop(s, "render_steps")
        row.prop(s, "render_max_frames")
        col.prop(s, "render_device")
        col.prop(s, "render_output")
        col.operator("splatstage.render_composite", icon="RENDER_ANIMATION")
        col.operator("splatstage.submit_shot", icon="EXPORT")
        draw_job(col, STATE.job_of_kind("composite"))
        _draw_result(col, s.render_result)
        col.separator()
        col.label(text="Camera paths")
        col.operator("splatstage.add_camera_path")
        row = col.row(align=True)
        row.operator("splatstage.import_camera_path", text="Import Path")
        row.operator("splatstage.export_camera_path", text="Export Path")


def draw_status_bar(self, context) -> None:
    """Status-bar entry: the first running job's progress."""
    jobs = STATE.active_jobs()
    if not jobs:
        return
    draw_job(self.layout.row(), jobs[0])


classes = (SPLATSTAGE_PT_backend, SPLATSTAGE_PT_footage, SPLATSTAGE_PT_camera_solve, SPLATSTAGE_PT_product,
           SPLATSTAGE_PT_reconstruction, SPLATSTAGE_PT_stereo, SPLATSTAGE_PT_render)
