"""Camera-pose accuracy metrics against ground truth (shared by tests and benchmarks).

All poses are camera-to-world 4x4 matrices in one common camera-axis convention (both Blender
or both OpenCV). The estimate is first brought onto the truth by the similarity (Umeyama) that
best aligns the camera centres; then:

- ``ate_rmse``: RMS distance between aligned and true centres (truth units), and ``ate_pct``:
  the same as a percentage of the true trajectory's extent (largest distance between two true
  centres);
- ``rot_err_deg``: per-frame angle of ``R_true^T R_align R_est``;
- two rotation errors that do not depend on the centres: ``rot_err_deg_orientation_aligned``
  (the same angle after the rotation that best aligns the orientations alone) and
  ``rel_rot_err_deg`` (angle between estimated and true rotations from each frame to the next);
  when the rotation error follows the trajectory's bend, these show the orientations themselves;
- ``focal_err_pct``: relative focal-length error;
- ``reproj_mean_px``: mean of the per-frame reprojection errors reported by the solver;
- ``fraction_registered``.

When the true centres coincide (a tripod pan), only a rotation is aligned and ATE is not defined.
"""
from __future__ import annotations

import numpy as np

OPENCV_TO_BLENDER = np.diag([1.0, -1.0, -1.0])


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True):
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991). Returns ``(s, R, t)``."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise ValueError("umeyama needs two N x 3 arrays with N >= 3")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    e = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[2, 2] = -1
    r = u @ e @ vt
    var_s = (xs ** 2).sum() / len(src)
    s = float(np.trace(np.diag(d) @ e) / var_s) if with_scale else 1.0
    t = mu_d - s * r @ mu_s
    return s, r, t


def rotation_alignment(r_est: np.ndarray, r_true: np.ndarray) -> np.ndarray:
    """Rotation ``A`` minimising sum ||R_true - A R_est||_F over frames (for coincident centres)."""
    m = np.einsum("nij,nkj->ik", r_true, r_est)
    u, _, vt = np.linalg.svd(m)
    e = np.eye(3)
    if np.linalg.det(u @ vt) < 0:
        e[2, 2] = -1
    return u @ e @ vt


def rotation_angle_deg(r: np.ndarray) -> np.ndarray:
    """Angle (degrees) of rotation matrices ``[..., 3, 3]``."""
    r = np.asarray(r, np.float64)
    c = (np.trace(r, axis1=-2, axis2=-1) - 1.0) / 2.0
    v = np.stack([r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0],
                  r[..., 1, 0] - r[..., 0, 1]], -1)
    s = np.linalg.norm(v, axis=-1) / 2.0
    return np.degrees(np.arctan2(s, c))


def trajectory_extent(centres: np.ndarray) -> float:
    """Largest distance between two points of ``centres`` (N x 3)."""
    c = np.asarray(centres, np.float64)
    d = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
    return float(d.max()) if len(c) else 0.0


def _pose_points(c2w: np.ndarray, reach: float) -> np.ndarray:
    """Camera centres plus points ``reach`` along each camera's local Y and Z axes."""
    c = c2w[:, :3, 3]
    return np.concatenate([c, c + reach * c2w[:, :3, 1], c + reach * c2w[:, :3, 2]])


def align(est_c2w: np.ndarray, true_c2w: np.ndarray, mask: np.ndarray | None = None):
    """Similarity ``(s, R, t)`` taking the estimated cameras onto the true ones (over ``mask``).

    Umeyama on the centres together with points one trajectory-extent along each camera's Y
    and Z axes, so orientation constrains the rotation too (centres alone leave the roll about
    a straight trajectory undetermined).
    """
    est_c2w = np.asarray(est_c2w, np.float64)
    true_c2w = np.asarray(true_c2w, np.float64)
    m = np.ones(len(est_c2w), bool) if mask is None else np.asarray(mask, bool)
    ce, ct = est_c2w[m, :3, 3], true_c2w[m, :3, 3]
    ext_t, ext_e = trajectory_extent(ct), trajectory_extent(ce)
    if ext_t < 1e-9 or ext_e < 1e-12 or len(ce) < 3:
        r = rotation_alignment(est_c2w[m, :3, :3], true_c2w[m, :3, :3])
        return 1.0, r, ct.mean(0) - r @ ce.mean(0)
    return umeyama(_pose_points(est_c2w[m], ext_e), _pose_points(true_c2w[m], ext_t))


def pose_errors(est_c2w, true_c2w, est_focal=None, true_focal=None, registered=None,
                reproj_errors=None, mask=None) -> dict:
    """All metrics of the module docstring as a dict of plain floats (plus per-frame arrays).

    ``mask`` selects the frames used for alignment and the error statistics (default: the
    registered ones when ``registered`` is given, else all).
    """
    est_c2w = np.asarray(est_c2w, np.float64)
    true_c2w = np.asarray(true_c2w, np.float64)
    if est_c2w.shape != true_c2w.shape:
        raise ValueError(f"pose arrays differ in shape: {est_c2w.shape} vs {true_c2w.shape}")
    n = len(est_c2w)
    reg = np.ones(n, bool) if registered is None else np.asarray(registered, bool)
    m = reg.copy() if mask is None else np.asarray(mask, bool)
    s, r, t = align(est_c2w, true_c2w, m)
    centres = (s * (r @ est_c2w[:, :3, 3].T)).T + t
    pos_err = np.linalg.norm(centres - true_c2w[:, :3, 3], axis=1)
    rot_err = rotation_angle_deg(np.einsum("nji,jk,nkl->nil", true_c2w[:, :3, :3], r,
                                           est_c2w[:, :3, :3]))
    extent = trajectory_extent(true_c2w[m, :3, 3])
    r_only = rotation_alignment(est_c2w[m, :3, :3], true_c2w[m, :3, :3])
    rot_only = rotation_angle_deg(np.einsum("nji,jk,nkl->nil", true_c2w[m, :3, :3], r_only,
                                            est_c2w[m, :3, :3]))
    idx = np.flatnonzero(m)
    pairs = idx[:-1][np.diff(idx) == 1]
    rel_e = np.einsum("nji,njk->nik", est_c2w[pairs, :3, :3], est_c2w[pairs + 1, :3, :3])
    rel_t = np.einsum("nji,njk->nik", true_c2w[pairs, :3, :3], true_c2w[pairs + 1, :3, :3])
    rel = rotation_angle_deg(np.einsum("nji,njk->nik", rel_t, rel_e))
    out = {
        "rot_err_deg_orientation_aligned_median": float(np.median(rot_only)),
        "rel_rot_err_deg_median": float(np.median(rel)) if len(rel) else float("nan"),
        "n_frames": int(n),
        "fraction_registered": float(reg.mean()) if n else 0.0,
        "scale": float(s),
        "extent": extent,
        "rot_err_deg_median": float(np.median(rot_err[m])),
        "rot_err_deg_mean": float(np.mean(rot_err[m])),
        "rot_err_deg_max": float(np.max(rot_err[m])),
        "per_frame_rot_err_deg": rot_err,
        "per_frame_pos_err": pos_err,
    }
    if extent > 1e-9:
        ate = float(np.sqrt(np.mean(pos_err[m] ** 2)))
        out.update(ate_rmse=ate, ate_pct=100.0 * ate / extent,
                   pos_err_max=float(pos_err[m].max()))
    else:
        out.update(ate_rmse=float("nan"), ate_pct=float("nan"), pos_err_max=float("nan"))
    if est_focal is not None and true_focal is not None:
        ef = np.asarray(est_focal, np.float64).reshape(-1)
        tf = np.asarray(true_focal, np.float64).reshape(-1)
        out["focal_err_pct"] = float(100.0 * np.max(np.abs(ef - tf) / tf))
    if reproj_errors is not None:
        e = np.asarray([np.nan if v is None else v for v in reproj_errors], np.float64)
        e = e[reg & np.isfinite(e)]
        out["reproj_mean_px"] = float(e.mean()) if len(e) else float("nan")
    return out


def camera_file_errors(est_doc: dict, true_doc: dict) -> dict:
    """:func:`pose_errors` for two cameras.json documents matched frame by frame on ``source``."""
    true_by_src = {f["source"]: f for f in true_doc["frames"]}
    pairs = [(f, true_by_src[f["source"]]) for f in est_doc["frames"] if f["source"] in true_by_src]
    if len(pairs) < 3:
        raise ValueError("fewer than 3 frames in common between estimate and truth")
    est = np.array([p[0]["matrix_world"] for p in pairs])
    tru = np.array([p[1]["matrix_world"] for p in pairs])
    out = pose_errors(est, tru,
                      est_focal=[p[0]["focal_px"] for p in pairs],
                      true_focal=[p[1]["focal_px"] for p in pairs],
                      registered=[p[0].get("registered", True) for p in pairs],
                      reproj_errors=[p[0].get("reproj_error_px") for p in pairs])
    out["fraction_registered"] = float(sum(p[0].get("registered", True) for p in pairs)
                                       / len(true_doc["frames"]))
    return out
