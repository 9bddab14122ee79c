"""The right eye of a stereo composite through Blender's own stereo 3D camera (bpy side).

The scene renders as stereo 3D multiview (``views_format = "STEREO_3D"``) with only the
``right`` view switched on: the left eye of a stereo composite is the mono composite itself.
The solved camera becomes the left camera of Blender's stereo rig (``pivot = "LEFT"``), so
Blender places the right camera ``interocular_distance`` metres along the camera's own +x
axis, parallel to it. Convergence is a horizontal sensor shift (``OFFAXIS``): the right
camera's ``shift_x`` drops by ``lens * B / (sensor_width * Z_c)``, i.e. its principal point
moves right by ``f * B / Z_c`` pixels, so a point at planar depth ``Z`` lands at
``x_right = x_left - f * B * (1/Z - 1/Z_c)``. With no convergence distance the cameras stay
parallel without shift (``PARALLEL``: zero disparity at infinity). This is the right camera
of :func:`backend.pipelines.stereo.scene.right_eye_cameras`, which renders the splat layer
of the same eye.
"""
from __future__ import annotations

import math


def setup_right_eye(scene, camera_obj, interaxial: float, convergence: float | None) -> str:
    """Switch ``scene`` to render the right view of ``camera_obj``'s stereo rig; returns the
    file-name suffix Blender appends to that view's output (``"_R"``)."""
    b = float(interaxial)
    if not (math.isfinite(b) and b > 0.0):
        raise ValueError(f"stereo interaxial must be a positive distance in metres, got {interaxial!r}")
    if convergence is not None and not (math.isfinite(float(convergence)) and float(convergence) > 0.0):
        raise ValueError(f"stereo convergence must be a positive distance in metres, got {convergence!r}")
    r = scene.render
    r.use_multiview = True
    r.views_format = "STEREO_3D"
    r.views["left"].use = False
    r.views["right"].use = True
    r.image_settings.views_format = "INDIVIDUAL"
    st = camera_obj.data.stereo
    st.pivot = "LEFT"
    st.interocular_distance = b
    if convergence is None:
        st.convergence_mode = "PARALLEL"
    else:
        st.convergence_mode = "OFFAXIS"
        st.convergence_distance = float(convergence)
    # Blender clamps out-of-range values silently: refuse instead of rendering another rig
    wanted = {"interocular_distance": b}
    if convergence is not None:
        wanted["convergence_distance"] = float(convergence)
    for key, value in wanted.items():
        got = float(getattr(st, key))
        if abs(got - value) > 1e-6 * max(1.0, abs(value)):
            raise ValueError(f"stereo {key} {value:g} m is outside Blender's range (it would use {got:g})")
    return r.views["right"].file_suffix
