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
