"""Product sizing and placement on the ground plane (pure numpy)."""
from __future__ import annotations

import numpy as np

AXES = ("LARGEST", "HEIGHT", "WIDTH", "DEPTH")


def scale_for_dimension(bbox_min, bbox_max, dimension: float, axis: str = "LARGEST") -> float:
    """Uniform scale that makes the box's ``axis`` extent equal ``dimension`` (metres).

    ``HEIGHT`` is Z, ``WIDTH`` is X and ``DEPTH`` is Y (Blender's axes after glTF import);
    ``LARGEST`` uses the largest of the three.
    """
    if not (np.isfinite(dimension) and dimension > 0):
        raise ValueError(f"real-world size must be a positive number of metres, got {dimension}")
    ext = np.asarray(bbox_max, dtype=np.float64) - np.asarray(bbox_min, dtype=np.float64)
    if axis not in AXES:
        raise ValueError(f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    size = float(ext.max()) if axis == "LARGEST" else float(ext[{"WIDTH": 0, "DEPTH": 1, "HEIGHT": 2}[axis]])
    if not (np.isfinite(size) and size > 0):
        raise ValueError(f"the model has zero {axis.lower()} extent; choose another axis")
    return float(dimension) / size


def project_to_plane(point, plane_point, plane_normal) -> np.ndarray:
    """Orthogonal projection of ``point`` onto the plane."""
    p = np.asarray(point, dtype=np.float64)
    n = np.asarray(plane_normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    return p - np.dot(p - np.asarray(plane_point, dtype=np.float64), n) * n


def align_z_to(normal) -> np.ndarray:
    """The smallest rotation (3x3) taking +Z to ``normal``."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    z = np.array([0.0, 0.0, 1.0])
    c = float(np.dot(z, n))
    if c < -1 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    v = np.cross(z, n)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def product_matrix(ground_point, ground_normal, cursor, rotation_z: float, scale: float) -> np.ndarray:
    """World matrix (4x4) of the product's root: origin at the cursor snapped to the ground
    plane, local +Z along the plane normal, turned ``rotation_z`` radians about it, scaled."""
    m = np.eye(4)
    c, s = np.cos(rotation_z), np.sin(rotation_z)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    m[:3, :3] = align_z_to(ground_normal) @ rz * scale
    m[:3, 3] = project_to_plane(cursor, ground_point, ground_normal)
    return m
