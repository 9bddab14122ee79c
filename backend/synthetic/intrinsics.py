"""Pinhole intrinsics of a Blender perspective camera, in pixels (no bpy import).

Pixel convention: (0, 0) is the top-left corner of the top-left pixel, pixel centres at +0.5,
y grows downward. Blender's lens shift is measured in units of the fitted image dimension:
the width for ``HORIZONTAL`` fit, the height for ``VERTICAL`` and the larger one for ``AUTO``
(where ``sensor_width`` then spans that larger dimension).
"""
from __future__ import annotations


def _fit(sensor_fit: str, width: int, height: int, sensor_width: float, sensor_height: float):
    """(sensor size in mm, image size in px along the fitted axis) for a sensor fit mode."""
    if sensor_fit == "AUTO":
        return sensor_width, max(width, height)
    if sensor_fit == "HORIZONTAL":
        return sensor_width, width
    if sensor_fit == "VERTICAL":
        return sensor_height, height
    raise ValueError(f"unknown sensor_fit {sensor_fit!r}")


def blender_intrinsics(lens_mm: float, sensor_width_mm: float, sensor_height_mm: float,
                       sensor_fit: str, shift_x: float, shift_y: float,
                       width: int, height: int) -> tuple[float, tuple[float, float]]:
    """Return ``(focal_px, (cx, cy))`` of a Blender camera rendered at ``width`` x ``height``.

    Assumes square pixels (pixel aspect 1).
    """
    sensor_mm, fit_px = _fit(sensor_fit, width, height, sensor_width_mm, sensor_height_mm)
    focal_px = lens_mm / sensor_mm * fit_px
    cx = 0.5 * width - shift_x * fit_px
    cy = 0.5 * height + shift_y * fit_px
    return focal_px, (cx, cy)


def blender_lens_and_shift(focal_px: float, principal_point_px: tuple[float, float],
                           width: int, height: int, sensor_width_mm: float = 36.0):
    """Inverse of :func:`blender_intrinsics` for ``HORIZONTAL`` fit: ``(lens_mm, shift_x, shift_y)``."""
    cx, cy = principal_point_px
    lens_mm = focal_px * sensor_width_mm / width
    shift_x = (0.5 * width - cx) / width
    shift_y = (cy - 0.5 * height) / width
    return lens_mm, shift_x, shift_y
