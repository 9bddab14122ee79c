"""Render service: splats + cameras -> RGB, alpha and depth per camera, batched over cameras.

Cameras come from a cameras.json (Blender convention) or from arrays sent by Blender
(``matrix_world`` 4x4 per camera, focal length and principal point in pixels). They may be
rendered at another resolution than the one they were solved at: intrinsics scale with it.
Depth is the camera-space z distance (planar depth) in world units, ``inf`` where nothing was hit.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.progress import JobError, Progress

from ..reconstruct.raster import ensure_gsplat_cuda, rasterize, resolve_backend
from ..reconstruct.scene import blender_to_viewmats
from ..splats_io import Splats


@dataclass
class Cameras:
    viewmats: np.ndarray  # [C,4,4] world-to-camera, OpenCV axes
    Ks: np.ndarray  # [C,3,3] at (width, height)
    width: int
    height: int
    names: list[str]


def cameras_from_arrays(matrix_world, focal_px, principal_point_px, width: int, height: int,
                        src_size: tuple[int, int] | None = None, names=None) -> Cameras:
    """Cameras from Blender arrays; ``src_size`` is the (w, h) the intrinsics refer to
    (default: the output size)."""
    mw = np.asarray(matrix_world, np.float64).reshape(-1, 4, 4)
    c = len(mw)
    f = np.broadcast_to(np.asarray(focal_px, np.float64), (c,))
    pp = np.broadcast_to(np.asarray(principal_point_px, np.float64), (c, 2))
    sw, sh = src_size or (width, height)
    Ks = np.zeros((c, 3, 3))
    Ks[:, 0, 0] = f * width / sw
    Ks[:, 1, 1] = f * height / sh
    Ks[:, 0, 2] = pp[:, 0] * width / sw
    Ks[:, 1, 2] = pp[:, 1] * height / sh
    Ks[:, 2, 2] = 1.0
    return Cameras(blender_to_viewmats(mw), Ks, int(width), int(height),
                   list(names) if names is not None else [str(i) for i in range(c)])


def cameras_from_json(path: str | Path, width: int | None = None, height: int | None = None,
                      registered_only: bool = True) -> Cameras:
    """Cameras of a cameras.json, optionally at another resolution (keeping the aspect)."""
    from shared_protocol import camera_file

    try:
        doc = camera_file.read(path)
    except camera_file.CameraFileError as exc:
        raise JobError(str(exc), code="bad_input") from None
    frames = [f for f in doc["frames"] if f.get("registered", True) or not registered_only]
    if not frames:
        raise JobError(f"{path}: no registered cameras", code="bad_input")
    sw, sh = int(doc["width"]), int(doc["height"])
    if width and not height:
        height = max(1, round(sh * width / sw))
    if height and not width:
        width = max(1, round(sw * height / sh))
    width, height = width or sw, height or sh
    return cameras_from_arrays([f["matrix_world"] for f in frames], [f["focal_px"] for f in frames],
                               [f["principal_point_px"] for f in frames], width, height, (sw, sh),
                               names=[str(f["source"]) for f in frames])


def splats_to_tensors(splats: Splats, device: torch.device) -> dict[str, torch.Tensor]:
    t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)  # noqa: E731
    return {
        "means": t(splats.means), "quats": t(splats.quats), "scales": t(np.exp(splats.scales)),
        "opacities": t(splats.alpha()),
        "colors": t(np.concatenate([splats.sh0[:, None, :], splats.shN], 1)),
    }


def _render_batches(g: dict[str, torch.Tensor], sh_degree: int, cameras: Cameras, device: torch.device,
                    batch: int, backend: str, background):
    """Yield ``(a, b, rgb, alpha, depth)`` device tensors for cameras ``a:b``, ``batch`` at a time."""
    C, W, H = len(cameras.viewmats), cameras.width, cameras.height
    vm = torch.as_tensor(cameras.viewmats, dtype=torch.float32, device=device)
    Ks = torch.as_tensor(cameras.Ks, dtype=torch.float32, device=device)
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    for a in range(0, C, batch):
        b = min(C, a + batch)
        img, alpha, _ = rasterize(g["means"], g["quats"], g["scales"], g["opacities"], g["colors"],
                                  vm[a:b], Ks[a:b], W, H, sh_degree=sh_degree,
                                  render_mode="RGB+ED", backgrounds=bg.expand(b - a, 3),
                                  backend=backend)
        alpha = alpha[..., 0]
        depth = torch.where(alpha > 1e-4, img[..., 3], torch.full_like(alpha, float("inf")))
        yield a, b, img[..., :3].clamp(0, 1), alpha, depth


@torch.no_grad()
def render_views(splats: Splats, cameras: Cameras, device: str | torch.device = "cpu",
                 batch: int = 8, backend: str = "auto", background=(0.0, 0.0, 0.0),
                 progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Render every camera; returns float32 ``rgb`` [C,H,W,3], ``alpha`` [C,H,W] and
    ``depth`` [C,H,W]. Cameras go to the rasterizer ``batch`` at a time."""
    device = torch.device(device)
    if resolve_backend(backend, device) == "gsplat":
        ensure_gsplat_cuda()
    g = splats_to_tensors(splats, device)
    C, W, H = len(cameras.viewmats), cameras.width, cameras.height
    out = {"rgb": np.zeros((C, H, W, 3), np.float32), "alpha": np.zeros((C, H, W), np.float32),
           "depth": np.zeros((C, H, W), np.float32)}
    for a, b, rgb, alpha, depth in _render_batches(g, splats.sh_degree, cameras, device, batch, backend,
                                                   background):
        out["rgb"][a:b] = rgb.cpu().numpy()
        out["alpha"][a:b] = alpha.cpu().numpy()
        out["depth"][a:b] = depth.cpu().numpy()
        if progress is not None:
            progress.update(b / C, f"rendered {b}/{C} cameras")
    return out


@torch.no_grad()
def render_views_device(splats: Splats, cameras: Cameras, device: str | torch.device = "cpu",
                        batch: int = 16, backend: str = "auto", background=(0.0, 0.0, 0.0),
                        gaussians: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """:func:`render_views` whose maps stay on ``device``: float32 tensors ``rgb`` [C,H,W,3],
    ``alpha`` [C,H,W] and ``depth`` [C,H,W] (``inf`` where nothing was hit).

    ``gaussians`` are the splats already on the device (:func:`splats_to_tensors`), so that
    repeated calls do not upload them again. On CUDA the kernels are queued asynchronously:
    nothing here waits for the GPU.
    """
    device = torch.device(device)
    if resolve_backend(backend, device) == "gsplat":
        ensure_gsplat_cuda()
    g = gaussians if gaussians is not None else splats_to_tensors(splats, device)
    parts = list(_render_batches(g, splats.sh_degree, cameras, device, batch, backend, background))
    if not parts:
        W, H = cameras.width, cameras.height
        return {"rgb": torch.zeros((0, H, W, 3), device=device), "alpha": torch.zeros((0, H, W), device=device),
                "depth": torch.zeros((0, H, W), device=device)}
    if len(parts) == 1:
        _, _, rgb, alpha, depth = parts[0]
        return {"rgb": rgb, "alpha": alpha, "depth": depth}
    return {"rgb": torch.cat([p[2] for p in parts]), "alpha": torch.cat([p[3] for p in parts]),
            "depth": torch.cat([p[4] for p in parts])}
