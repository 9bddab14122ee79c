"""Stage 5: the product upright at its real size, its mesh, a turntable preview and files.

The object frame of the views already has +Z up. The extracted mesh's bounding box fixes the
placement: its footprint centre goes to the origin, its base to z = 0, and it is scaled to
``height`` metres; the splats get the same transform.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from backend.pipelines.render import cameras_from_arrays, render_views
from backend.pipelines.splats_io import Splats, write_ply
from backend.progress import JobError, Progress

from .cameras import focal_px, turntable
from .mesh import extract_mesh, sphere_cameras, to_gltf_axes

FILES = ("product.ply", "product.glb", "turntable.mp4", "turntable_strip.png", "views.png", "product.json")
TURNTABLE_FOV = 30.0
TURNTABLE_ELEVATION = 15.0


def transform_splats(splats: Splats, scale: float, offset: np.ndarray) -> Splats:
    """``scale * x + offset`` applied to the splats (sizes scale too)."""
    return Splats(splats.means * scale + offset, splats.scales + np.log(scale), splats.quats,
                  splats.opacities, splats.sh0, splats.shN)


def placement(lo: np.ndarray, hi: np.ndarray, height: float) -> tuple[float, np.ndarray]:
    """Scale and offset that put the box ``lo``..``hi`` upright on z = 0, centred, ``height`` tall."""
    s = height / float(hi[2] - lo[2])
    foot = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return s, -s * foot


def turntable_frames(splats: Splats, height: float, n: int, size: int, device: str = "cpu") -> np.ndarray:
    """``n`` uint8 frames of the product (base at z = 0) circling once over neutral grey."""
    extent = np.percentile(splats.means, 99, 0) - np.percentile(splats.means, 1, 0)
    r = 1.3 * max(float(np.linalg.norm(extent)), height) / (2 * np.tan(np.radians(TURNTABLE_FOV) / 2))
    c2w = turntable(n, TURNTABLE_ELEVATION, r, (0.0, 0.0, height / 2))
    cams = cameras_from_arrays(c2w, focal_px(TURNTABLE_FOV, size), (size / 2, size / 2), size, size)
    rgb = render_views(splats, cams, device=device, background=(0.5, 0.5, 0.5))["rgb"]
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def write_outputs(out: Path, splats: Splats, g: dict, opts, progress: Progress) -> dict:
    from backend.media.encode import write_video

    out.mkdir(parents=True, exist_ok=True)
    vs = g["views"]
    radius = float(np.mean([v.radius for v in vs.views]))
    fov = float(np.mean([v.fov_deg for v in vs.views]))
    # the views the splats were fitted to (their renders are what the fit made right), plus
    # ``mesh_views`` more around the sphere when asked
    extra = sphere_cameras(opts.mesh_views, radius, (0.0, 0.0, 0.0)) if opts.mesh_views else np.zeros((0, 4, 4))
    cams = np.concatenate([g["c2w"], extra])
    try:
        mesh = extract_mesh(splats, cams, fov, res=opts.mesh_res, device=opts.device)
    except ValueError as exc:
        raise JobError(f"product: no mesh could be extracted from the fused splats ({exc})",
                       "bad_model_output") from None
    lo, hi = mesh.bounds
    s, offset = placement(lo, hi, opts.height)
    mesh.apply_transform(np.diag([s, s, s, 1.0]) @ _translation(offset / s))
    product = transform_splats(splats, s, offset)
    write_ply(product, out / "product.ply")
    to_gltf_axes(mesh).export(out / "product.glb", file_type="glb")
    frames = turntable_frames(product, opts.height, opts.turntable_frames, opts.turntable_size, opts.device)
    write_video(out / "turntable.mp4", frames, 24)
    strip = np.concatenate(list(frames[:: max(1, len(frames) // 8)][:8]), 1)
    cv2.imwrite(str(out / "turntable_strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    views = np.concatenate(list(g["rgb"]), 1)
    cv2.imwrite(str(out / "views.png"), cv2.cvtColor(views, cv2.COLOR_RGB2BGR))
    size = (mesh.bounds[1] - mesh.bounds[0]).tolist()
    summary = {"height_m": float(opts.height), "size_m": size, "num_gaussians": int(len(product)),
               "mesh_vertices": int(len(mesh.vertices)), "mesh_faces": int(len(mesh.faces)),
               "model_units_per_m": 1.0 / s, "model_to_product": {"scale": s, "offset": offset.tolist()},
               "files": list(FILES)}
    return summary


def _translation(t) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = t
    return m
