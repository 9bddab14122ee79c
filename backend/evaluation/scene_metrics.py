"""How a scene made from a photo of the ray-cast room compares with the room's truth.

The scene's world is mapped to the room's through the photo's camera (``truth = T @ scene``
with ``T = c2w_true @ inv(photo camera in the scene)``, a rigid map): a wrong scale or ground
shows up both in the ground errors and as misregistered held-out views.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def scene_to_truth(scene_dir: str | Path, c2w_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scene's cameras (N, 4, 4) and the map of its world to the room's."""
    from shared_protocol import camera_file

    mats = camera_file.matrices(camera_file.read(Path(scene_dir) / "cameras.json"))
    return mats, np.asarray(c2w_true, np.float64) @ np.linalg.inv(mats[0])


def held_out_psnr(scene_dir: str | Path, room, c2w_true: np.ndarray, focal: float, width: int, height: int,
                  which=None) -> list[float]:
    """PSNR (dB) of the splats' renders against the room's true render at the views halfway
    between consecutive cameras of the scene (``which``: their indices, default all)."""
    from backend.evaluation.image_metrics import psnr
    from backend.pipelines.render import cameras_from_arrays, render_views
    from backend.pipelines.scene.trajectory import through
    from backend.pipelines.splats_io import read_ply

    mats, to_truth = scene_to_truth(scene_dir, c2w_true)
    k = len(mats) - 1
    held = through(mats, (np.arange(k) + 0.5) / k)
    held = held if which is None else held[list(which)]
    splats = read_ply(Path(scene_dir) / "splats.ply")
    out = []
    for m in held:
        cams = cameras_from_arrays([m], focal, (width / 2, height / 2), width, height)
        col = render_views(splats, cams, batch=1)["rgb"][0]
        got = np.clip(np.rint(col * 255), 0, 255).astype(np.uint8)
        out.append(psnr(got, room.render(to_truth @ m, focal, width, height, 2)))
    return out


def ground_errors(scene_dir: str | Path, c2w_true: np.ndarray) -> dict:
    """The room's floor is z = 0. ``normal_rad``: angle between the scene's +Z and the floor's
    normal; ``height_rel``: relative error of the photo camera's height above the ground;
    ``distance_rel``: of its distance to where its optical axis meets the ground (the scene's
    origin); ``origin_height_m``: the scene's origin's height above the true floor."""
    mats, to_truth = scene_to_truth(scene_dir, c2w_true)
    c2w_true = np.asarray(c2w_true, np.float64)
    up = to_truth[:3, :3] @ np.array([0.0, 0.0, 1.0])
    fwd = -c2w_true[:3, 2]
    true_dist = c2w_true[2, 3] / -fwd[2]
    return {"normal_rad": float(np.arccos(np.clip(up[2], -1.0, 1.0))),
            "height_rel": float(mats[0][2, 3] / c2w_true[2, 3] - 1.0),
            "distance_rel": float(np.linalg.norm(mats[0][:3, 3]) / true_dist - 1.0),
            "origin_height_m": float((to_truth @ np.array([0.0, 0.0, 0.0, 1.0]))[2])}
