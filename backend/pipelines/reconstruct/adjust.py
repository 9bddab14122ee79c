"""Per-frame corrections learned with the splats: affine colour (exposure / white balance)
and camera pose refinement."""
from __future__ import annotations

import numpy as np
import torch


class Appearance(torch.nn.Module):
    """Per-frame affine colour ``out = A_f @ rgb + b_f`` (identity at start)."""

    def __init__(self, n_frames: int):
        super().__init__()
        self.A = torch.nn.Parameter(torch.eye(3).repeat(n_frames, 1, 1))
        self.b = torch.nn.Parameter(torch.zeros(n_frames, 3))

    def forward(self, rgb: torch.Tensor, frame: int) -> torch.Tensor:
        return rgb @ self.A[frame].T + self.b[frame]

    @torch.no_grad()
    def blended(self, rgb: torch.Tensor, frames: list[int]) -> torch.Tensor:
        """Apply the mean correction of ``frames`` (used for held-out frames)."""
        A = self.A[frames].mean(0)
        b = self.b[frames].mean(0)
        return rgb @ A.T + b


def _skew(v: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(v[..., 0])
    return torch.stack([z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0],
                        -v[..., 1], v[..., 0], z], -1).reshape(*v.shape[:-1], 3, 3)


def rotvec_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, differentiable at 0."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2 + 1e-12)
    K = _skew(w)
    eye = torch.eye(3, device=w.device, dtype=w.dtype).expand(K.shape)
    a = torch.where(theta2 < 1e-8, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(theta2 < 1e-8, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    return eye + a * K + b * (K @ K)


class CameraAdjust(torch.nn.Module):
    """Per-frame rigid correction applied in camera space: ``viewmat' = T(delta) @ viewmat``."""

    def __init__(self, n_frames: int):
        super().__init__()
        self.delta = torch.nn.Parameter(torch.zeros(n_frames, 6))

    def transforms(self, frames) -> torch.Tensor:
        d = self.delta[frames]
        T = torch.eye(4, device=d.device, dtype=d.dtype).repeat(d.shape[0], 1, 1)
        T[:, :3, :3] = rotvec_to_matrix(d[:, :3])
        T[:, :3, 3] = d[:, 3:]
        return T

    def forward(self, viewmats: torch.Tensor, frames) -> torch.Tensor:
        return self.transforms(frames) @ viewmats


def pose_change(old_viewmats: np.ndarray, new_viewmats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per camera: centre displacement (world units) and rotation change (degrees)."""
    def centre(v):
        return -np.einsum("...ji,...j->...i", v[..., :3, :3], v[..., :3, 3])
    dt = np.linalg.norm(centre(new_viewmats) - centre(old_viewmats), axis=-1)
    R = np.einsum("...ij,...kj->...ik", new_viewmats[..., :3, :3], old_viewmats[..., :3, :3])
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)
    return dt, np.degrees(np.arccos(cos))


EXPOSURE_SPREAD_ON = 0.06  # "auto" appearance turns on above this spread of per-frame log gain


def exposure_spread(solve, frames, frame_ids: list[int], max_frames: int = 48,
                    min_points: int = 30) -> float | None:
    """How much the footage's exposure varies: the 5-95 % range of the per-frame gain (natural
    log) over ``frame_ids``, or None when too few sparse points are seen to tell.

    Each sparse point of the solve is projected into the frames; its luminance in a frame
    divided by its median luminance over all frames that see it is that frame's gain at the
    point, and the frame's gain is the median over its points. View-dependent shading moves
    single points, not that median; a change of exposure or white level moves all of them."""
    if len(frame_ids) < 3 or len(solve.points) < min_points:
        return None
    ids = list(frame_ids)
    if len(ids) > max_frames:
        ids = [ids[int(round(k))] for k in np.linspace(0, len(ids) - 1, max_frames)]
    pts = np.asarray(solve.points, np.float64)
    view = np.asarray(solve.viewmats, np.float64)
    lum = np.full((len(ids), len(pts)), np.nan)
    for row, i in enumerate(ids):
        cam = pts @ view[i, :3, :3].T + view[i, :3, 3]
        uvw = cam @ np.asarray(frames.K[i], np.float64).T
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = uvw[:, 0] / z, uvw[:, 1] / z
        ok = (z > 1e-6) & (u >= 1) & (v >= 1) & (u < frames.width - 1) & (v < frames.height - 1)
        if not ok.any():
            continue
        img = frames.images[i].cpu().numpy().astype(np.float32)
        rgb = img[v[ok].astype(int), u[ok].astype(int)]
        lum[row, ok] = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32) + 1.0
    seen = np.isfinite(lum).sum(0) >= 2
    if seen.sum() < min_points:
        return None
    log = np.log(lum[:, seen])
    rel = log - np.nanmedian(log, axis=0)
    counts = np.isfinite(rel).sum(1)
    gains = np.array([np.nanmedian(r) for r, c in zip(rel, counts) if c >= min_points // 3])
    if len(gains) < 3:
        return None
    return float(np.percentile(gains, 95) - np.percentile(gains, 5))
