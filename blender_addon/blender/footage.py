"""Footage setup: read a video through a movie clip and match the scene to it."""
from __future__ import annotations

from pathlib import Path

import bpy

from ..core import camera_math


def probe(video: str | Path) -> dict:
    """Width, height, fps and frame count of ``video`` as Blender reads it."""
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"{video}: video not found")
    clip = bpy.data.movieclips.load(str(video), check_existing=True)
    w, h = clip.size
    if w <= 0 or h <= 0 or clip.frame_duration <= 0:
        raise ValueError(f"{video}: Blender cannot decode this video")
    return {"clip": clip, "width": int(w), "height": int(h), "fps": float(clip.fps) or 24.0,
            "frames": int(clip.frame_duration)}


def apply_to_scene(scene, video: str | Path, frame_start: int = 0, frame_end: int = -1,
                   frame_offset: int = 1) -> dict:
    """Set the scene's resolution, fps and frame range from ``video``; returns the probe."""
    info = probe(video)
    last = info["frames"] - 1 if frame_end < 0 else min(frame_end, info["frames"] - 1)
    if frame_start > last:
        raise ValueError(f"{video}: frame range {frame_start}..{last} is empty")
    scene.render.resolution_x, scene.render.resolution_y = info["width"], info["height"]
    scene.render.resolution_percentage = 100
    scene.render.fps, scene.render.fps_base = camera_math.fps_to_blender(info["fps"])
    scene.frame_start = frame_offset + frame_start
    scene.frame_end = frame_offset + last
    info["clip"].frame_start = frame_offset
    return info
