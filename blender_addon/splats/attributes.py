"""Activated, Blender-ready splat attributes (bpy-free).

Point attributes written on the splat object (names as Blender's Gaussian-splat support and
the issue define them):

========== ============= ==========================================================
name       type          value
========== ============= ==========================================================
color      FLOAT_COLOR   scene-linear RGB of the DC term, ``srgb_to_linear(clip(0.5 +
                         SH_C0 * f_dc, 0, 1))``, alpha = opacity
opacity    FLOAT         ``sigmoid(opacity logit)``
scale      FLOAT_VECTOR  ``exp(log scale)``: the Gaussian's standard deviations (m)
rotation   QUATERNION    unit ``(w, x, y, z)``
sh_0       FLOAT_VECTOR  the DC coefficients ``f_dc`` as stored (RGB)
sh_k       FLOAT_VECTOR  higher-band coefficient k = 1..K (RGB), K = 3, 8 or 15
========== ============= ==========================================================

3DGS colours live in the training images' (sRGB-encoded) space; Blender colour attributes are
scene-linear, hence the conversion, matching the backend's splat payload
(``backend.pipelines.reconstruct.outputs.splat_payload``), which this module also accepts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ply import RawSplats

SH_C0 = 0.28209479177387814


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)


@dataclass
class SplatAttributes:
    """Per-splat arrays, float32, C-contiguous, ready for ``foreach_set``."""

    positions: np.ndarray    # (N, 3) world metres (the cameras.json world)
    color: np.ndarray        # (N, 4) linear RGB + opacity
    opacity: np.ndarray      # (N,)
    scale: np.ndarray        # (N, 3)
    rotation: np.ndarray     # (N, 4) unit w, x, y, z
    sh: np.ndarray           # (N, 1 + K, 3): sh_0 (DC) then the K higher coefficients

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def sh_degree(self) -> int:
        return {1: 0, 4: 1, 9: 2, 16: 3}[self.sh.shape[1]]

    def subset(self, idx) -> "SplatAttributes":
        return SplatAttributes(*(np.ascontiguousarray(a[idx]) for a in
                                 (self.positions, self.color, self.opacity, self.scale, self.rotation, self.sh)))


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _unit(q: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(q, axis=1, keepdims=True)
    out = q / np.where(n > 0, n, 1.0)
    out[n[:, 0] == 0] = (1.0, 0.0, 0.0, 0.0)
    return out


def from_raw(raw: RawSplats) -> SplatAttributes:
    """Activate PLY parameters: sigmoid opacity, exp scale, normalised rotation, linear colour
    (float32 throughout: the attributes are float32 in Blender anyway)."""
    n = len(raw)
    with np.errstate(over="ignore"):
        opacity = np.float32(1.0) / (np.float32(1.0) + np.exp(-_f32(raw.opacities)))
    color = np.empty((n, 4), dtype=np.float32)
    color[:, :3] = srgb_to_linear(np.float32(0.5) + np.float32(SH_C0) * _f32(raw.sh0))
    color[:, 3] = opacity
    sh = np.concatenate([raw.sh0[:, None, :], raw.shN], axis=1)
    return SplatAttributes(_f32(raw.means), color, _f32(opacity), _f32(np.exp(_f32(raw.scales))),
                           _f32(_unit(_f32(raw.quats))), _f32(sh))


def from_payload(arrays: dict) -> SplatAttributes:
    """The backend's splat payload (positions, colors (linear RGB), opacity, scales, rotations,
    sh_rest) as attributes; ``sh_0`` is recovered from the colour (exact inside [0, 1])."""
    need = ("positions", "colors", "opacity", "scales", "rotations")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ValueError(f"splat payload: missing arrays {', '.join(missing)}")
    pos = np.asarray(arrays["positions"], dtype=np.float32).reshape(-1, 3)
    n = len(pos)
    rgb = np.asarray(arrays["colors"], dtype=np.float32).reshape(n, 3)
    opacity = np.asarray(arrays["opacity"], dtype=np.float32).reshape(n)
    rest = arrays.get("sh_rest")
    rest = np.zeros((n, 0, 3), np.float32) if rest is None else np.asarray(rest, dtype=np.float32).reshape(n, -1, 3)
    if rest.shape[1] not in (0, 3, 8, 15):
        raise ValueError(f"splat payload: sh_rest must hold 0, 3, 8 or 15 coefficients, got {rest.shape[1]}")
    color = np.empty((n, 4), dtype=np.float32)
    color[:, :3], color[:, 3] = rgb, opacity
    sh0 = (linear_to_srgb(rgb) - np.float32(0.5)) / np.float32(SH_C0)
    sh = np.concatenate([sh0[:, None, :], rest], axis=1)
    return SplatAttributes(_f32(pos), color, _f32(opacity),
                           _f32(np.asarray(arrays["scales"]).reshape(n, 3)),
                           _f32(_unit(np.asarray(arrays["rotations"], dtype=np.float32).reshape(n, 4))), _f32(sh))


def load(path) -> SplatAttributes:
    """Read a 3DGS PLY and activate it."""
    from .ply import read_ply

    return from_raw(read_ply(path))


def default_display_fraction(n: int, budget: int = 200_000) -> float:
    """Share of splats the preview shows by default: all up to ``budget``, then ``budget / n``."""
    return 1.0 if n <= budget else budget / float(n)
