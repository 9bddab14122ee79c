"""Pure-rotation (tripod pan) detection and the rotation-only solve with points at infinity.

Under pure rotation every track is explained by one direction per track, one rotation per frame
and the shared intrinsics, with no translation at all. The detector fits exactly that model to
the keyframes; when it explains the tracks to within the tracking noise, translation is not
observable and a general SfM solve would return arbitrary translation, so the solve stays
rotation-only. Cameras use OpenCV axes here (x right, y down, z forward) and the first
keyframe's camera frame is the world.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from .tracking import Tracks


@dataclass
class RotationModel:
    """Per-frame world-to-camera rotations, shared intrinsics and unit track directions."""

    rotations: dict[int, np.ndarray]
    focal: float
    k1: float
    directions: dict[int, np.ndarray]
    rms_px: float


def _angles_to_dir(a: np.ndarray) -> np.ndarray:
    th, ph = a[..., 0], a[..., 1]
    return np.stack([np.cos(ph) * np.sin(th), np.sin(ph), np.cos(ph) * np.cos(th)], -1)


def _dir_to_angles(d: np.ndarray) -> np.ndarray:
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    return np.stack([np.arctan2(d[..., 0], d[..., 2]), np.arcsin(np.clip(d[..., 1], -1, 1))], -1)


def _project(rot: np.ndarray, dirs: np.ndarray, f: float, k1: float, c: np.ndarray) -> np.ndarray:
    v = dirs @ rot.T
    z = np.where(np.abs(v[:, 2]) < 1e-9, 1e-9, v[:, 2])
    u = v[:, :2] / z[:, None]
    r2 = (u ** 2).sum(1, keepdims=True)
    return f * u * (1 + k1 * r2) + c


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R with R @ a_i ~ b_i."""
    u, _, vt = np.linalg.svd(b.T @ a)
    e = np.eye(3)
    e[2, 2] = np.sign(np.linalg.det(u @ vt))
    return u @ e @ vt


def _bearings(xy: np.ndarray, f: float, c: np.ndarray) -> np.ndarray:
    b = np.concatenate([(xy - c) / f, np.ones((len(xy), 1))], 1)
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def _pair_residual(xa, xb, f, c) -> tuple[float, np.ndarray]:
    """Median transfer error (px) of the rotation best mapping ``xa`` to ``xb`` at focal ``f``,
    and that rotation: fitted to all pairs, then again to those within 3 median errors (at least
    1 px) of the first fit, so that a few tracks that jumped do not tilt it."""
    ba, bb = _bearings(xa, f, c), _bearings(xb, f, c)
    r = _kabsch(ba, bb)
    err = np.linalg.norm(_project(r, ba, f, 0.0, c) - xb, axis=1)
    inl = err < max(3.0 * float(np.median(err)), 1.0)
    if 3 <= inl.sum() < len(err):
        r = _kabsch(ba[inl], bb[inl])
        err = np.linalg.norm(_project(r, ba, f, 0.0, c) - xb, axis=1)
    return float(np.median(err)), r


def estimate_focal(tracks: Tracks, keys: list[int], c: np.ndarray) -> float:
    """Focal (px) that best explains the keyframe pair with the most motion as a rotation."""
    best_pair, best_motion = None, 0.0
    for i in range(len(keys)):
        for j in range(i + 1, len(keys)):
            ia, ib = tracks.common(keys[i], keys[j])
            if len(ia) < 30:
                continue
            m = np.median(np.linalg.norm(tracks.frames[keys[i]].xy[ia] - tracks.frames[keys[j]].xy[ib], axis=1))
            if m > best_motion:
                best_pair, best_motion = (keys[i], keys[j], ia, ib), m
    size = max(tracks.width, tracks.height)
    if best_pair is None:
        return 1.2 * size
    a, b, ia, ib = best_pair
    xa, xb = tracks.frames[a].xy[ia], tracks.frames[b].xy[ib]
    grid = size * np.exp(np.linspace(np.log(0.3), np.log(6.0), 60))
    errs = [_pair_residual(xa, xb, f, c)[0] for f in grid]
    k = int(np.argmin(errs))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    fine = np.exp(np.linspace(np.log(lo), np.log(hi), 25))
    errs = [_pair_residual(xa, xb, f, c)[0] for f in fine]
    return float(fine[int(np.argmin(errs))])


def fit_rotation_only(tracks: Tracks, frames: list[int], focal: float | None,
                      fixed_focal: bool = False, min_track: int = 2,
                      loss_scale_px: float = 1.0) -> RotationModel | None:
    """Joint least squares of rotations, focal, k1 and track directions over ``frames``
    (Huber loss with scale ``loss_scale_px``)."""
    c = np.array([tracks.width / 2.0, tracks.height / 2.0])
    f0 = focal or estimate_focal(tracks, frames, c)
    # Chain rotations between consecutive frames.
    rots = {frames[0]: np.eye(3)}
    for a, b in zip(frames[:-1], frames[1:]):
        ia, ib = tracks.common(a, b)
        if len(ia) < 8:
            return None
        _, r_ab = _pair_residual(tracks.frames[a].xy[ia], tracks.frames[b].xy[ib], f0, c)
        rots[b] = r_ab @ rots[a]
    # Observations of tracks seen at least min_track times.
    obs_f, obs_t, obs_xy = [], [], []
    for fi, pos in enumerate(frames):
        o = tracks.frames[pos]
        obs_f.append(np.full(len(o.ids), fi))
        obs_t.append(o.ids)
        obs_xy.append(o.xy)
    obs_f = np.concatenate(obs_f)
    obs_t = np.concatenate(obs_t)
    obs_xy = np.concatenate(obs_xy)
    uniq, inv, counts = np.unique(obs_t, return_inverse=True, return_counts=True)
    keep = counts[inv] >= min_track
    obs_f, obs_xy, tix = obs_f[keep], obs_xy[keep], inv[keep]
    used, tix = np.unique(tix, return_inverse=True)
    track_ids = uniq[used]
    if len(track_ids) < 10:
        return None
    # Initial directions from the first observation of each track.
    first = np.full(len(track_ids), -1)
    order = np.argsort(obs_f, kind="stable")
    for o in order[::-1]:
        first[tix[o]] = o
    d0 = np.array([rots[frames[obs_f[o]]].T @ _bearings(obs_xy[o:o + 1], f0, c)[0] for o in first])
    nf, nt = len(frames), len(track_ids)
    n_intr = 0 if fixed_focal else 2

    def unpack(x):
        rv = np.concatenate([np.zeros(3), x[:3 * (nf - 1)]]).reshape(nf, 3)
        ang = x[3 * (nf - 1):3 * (nf - 1) + 2 * nt].reshape(nt, 2)
        if fixed_focal:
            f, k1 = f0, x[-1]
        else:
            f, k1 = x[-2], x[-1]
        return rv, ang, f, k1

    def residuals(x):
        rv, ang, f, k1 = unpack(x)
        rmat = Rotation.from_rotvec(rv).as_matrix()
        d = _angles_to_dir(ang)[tix]
        v = np.einsum("nij,nj->ni", rmat[obs_f], d)
        z = np.where(np.abs(v[:, 2]) < 1e-9, 1e-9, v[:, 2])
        u = v[:, :2] / z[:, None]
        r2 = (u ** 2).sum(1, keepdims=True)
        return (f * u * (1 + k1 * r2) + c - obs_xy).ravel()

    rv0 = np.array([Rotation.from_matrix(rots[p]).as_rotvec() for p in frames[1:]]).reshape(-1)
    x0 = np.concatenate([rv0, _dir_to_angles(d0).ravel(), ([] if fixed_focal else [f0]), [0.0]])
    m = len(obs_f)
    sparsity = lil_matrix((2 * m, len(x0)), dtype=np.int8)
    rows = np.arange(m)
    for k in range(2):
        for j in range(3):
            sel = obs_f > 0
            sparsity[2 * rows[sel] + k, 3 * (obs_f[sel] - 1) + j] = 1
        for j in range(2):
            sparsity[2 * rows + k, 3 * (nf - 1) + 2 * tix + j] = 1
        for j in range(n_intr if not fixed_focal else 1):
            sparsity[2 * rows + k, len(x0) - 1 - j] = 1
    res = least_squares(residuals, x0, jac_sparsity=sparsity.tocsr(), loss="huber", f_scale=loss_scale_px,
                        x_scale="jac", method="trf", max_nfev=60)
    rv, ang, f, k1 = unpack(res.x)
    err = np.linalg.norm(res.fun.reshape(-1, 2), axis=1)
    rmats = Rotation.from_rotvec(rv).as_matrix()
    dirs = _angles_to_dir(ang)
    return RotationModel({p: rmats[i] for i, p in enumerate(frames)}, float(f), float(k1),
                         {int(t): dirs[i] for i, t in enumerate(track_ids)},
                         float(np.sqrt(np.mean(np.minimum(err, 10.0) ** 2))))


def register_rotation(tracks: Tracks, model: RotationModel, pos: int,
                      max_error_px: float = 3.0) -> tuple[np.ndarray, float] | None:
    """World-to-camera rotation of one frame against known track directions (+ its RMS px)."""
    o = tracks.frames[pos]
    c = np.array([tracks.width / 2.0, tracks.height / 2.0])
    sel = [i for i, t in enumerate(o.ids.tolist()) if t in model.directions]
    if len(sel) < 8:
        return None
    xy = o.xy[sel]
    d = np.array([model.directions[int(o.ids[i])] for i in sel])
    b = _undistorted_bearings(xy, model.focal, model.k1, c)
    r = _kabsch(d, b)

    def res(rv):
        return (_project(Rotation.from_rotvec(rv).as_matrix() @ r, d, model.focal, model.k1, c) - xy).ravel()

    sol = least_squares(res, np.zeros(3), loss="huber", f_scale=1.0)
    r = Rotation.from_rotvec(sol.x).as_matrix() @ r
    err = np.linalg.norm(_project(r, d, model.focal, model.k1, c) - xy, axis=1)
    inl = err < max_error_px
    if inl.sum() < 8:
        return None
    return r, float(err[inl].mean())


def _undistorted_bearings(xy, f, k1, c):
    u = (xy - c) / f
    for _ in range(5):
        r2 = (u ** 2).sum(1, keepdims=True)
        u = ((xy - c) / f) / (1 + k1 * r2)
    b = np.concatenate([u, np.ones((len(u), 1))], 1)
    return b / np.linalg.norm(b, axis=1, keepdims=True)


@dataclass
class ModelSelection:
    """Clip-wide choice between a homography (pure rotation) and a fundamental matrix
    (translation): Torr's GRIC of each model summed over wide keyframe pairs spread over the whole
    clip, with the noise level ``sigma_px`` estimated from the fundamental matrices' residuals."""

    gric_h: float
    gric_f: float
    sigma_px: float
    n_pairs: int
    n_correspondences: int

    @property
    def homography(self) -> bool:
        return self.n_pairs > 0 and self.gric_h < self.gric_f

    def as_stats(self) -> dict:
        return {"gric_homography": round(self.gric_h, 1), "gric_fundamental": round(self.gric_f, 1),
                "noise_px": round(self.sigma_px, 4), "pairs": self.n_pairs,
                "correspondences": self.n_correspondences,
                "model": "homography" if self.homography else "fundamental"}


def _homog(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1))], 1)


def sampson_sq(fm: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Squared Sampson distance of correspondences ``xa -> xb`` to ``xb^T F xa = 0``."""
    a, b = _homog(xa), _homog(xb)
    fa, fb = a @ fm.T, b @ fm
    num = (b * fa).sum(1) ** 2
    den = fa[:, 0] ** 2 + fa[:, 1] ** 2 + fb[:, 0] ** 2 + fb[:, 1] ** 2
    return num / np.maximum(den, 1e-300)


def homography_sq(hm: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Squared distance of correspondences to the homography's manifold: the two transfer
    errors averaged, halved (a transfer error carries the noise of both images)."""
    def transfer(h, x, y):
        p = _homog(x) @ h.T
        return ((p[:, :2] / p[:, 2:3] - y) ** 2).sum(1)

    return 0.25 * (transfer(hm, xa, xb) + transfer(np.linalg.inv(hm), xb, xa))


def gric_pairs(tracks: Tracks, keys: list[int], min_shared: int = 30) -> list[tuple[int, int]]:
    """Each keyframe with the farthest later keyframe it still shares ``min_shared`` tracks
    with: the widest baselines the clip offers, where a translation shows the most parallax
    (a homography's residual grows with the baseline, a rotation's does not)."""
    pairs = []
    for i, a in enumerate(keys[:-1]):
        for b in keys[:i:-1]:
            if len(tracks.common(a, b)[0]) >= min_shared:
                pairs.append((a, b))
                break
    return sorted(set(pairs))


def _fit_pair(tracks: Tracks, a: int, b: int, threshold_px: float):
    """Squared residuals (homography, fundamental) of the tracks ``a`` and ``b`` share, or None."""
    ia, ib = tracks.common(a, b)
    xa, xb = tracks.frames[a].xy[ia], tracks.frames[b].xy[ib]
    hm, _ = cv2.findHomography(xa.astype(np.float32), xb.astype(np.float32), cv2.RANSAC,
                               threshold_px)
    fm, inl = cv2.findFundamentalMat(xa.astype(np.float32), xb.astype(np.float32),
                                     cv2.FM_RANSAC, threshold_px, 0.999)
    if hm is None or fm is None or fm.shape != (3, 3) or abs(np.linalg.det(hm)) < 1e-12:
        return None
    inl = inl.ravel().astype(bool)
    if inl.sum() >= 15:  # least squares over the RANSAC inliers (normalised 8-point)
        refit, _ = cv2.findFundamentalMat(xa[inl], xb[inl], cv2.FM_8POINT)
        if refit is not None and refit.shape == (3, 3):
            fm = refit
    return homography_sq(hm, xa, xb), sampson_sq(fm, xa, xb)


def select_model(tracks: Tracks, keys: list[int], threshold_px: float,
                 min_sigma_px: float = 0.02, min_shared: int = 30) -> ModelSelection:
    """GRIC (Torr 1998) of a homography and a fundamental matrix over the whole clip.

    For every pair of :func:`gric_pairs` both models are fitted by RANSAC (inlier threshold
    ``threshold_px``) and every shared track is scored: GRIC = sum of min(e^2 / sigma^2,
    2 (4 - d)) + ln(4) d n + ln(4 n) k, with d = 2, k = 8 for the homography and d = 3, k = 7
    for the fundamental matrix (e: the distance to the model's manifold). The scores are summed
    over all pairs before they are compared, so the decision rests on the whole clip rather
    than on its weakest pair. ``sigma``, the noise of one coordinate, is 1.4826 x the median
    Sampson distance to the fundamental matrices: that model fits a rotation as well as a
    translation (and under a rotation it is ill-determined, which only raises ``sigma`` and
    favours the homography further). Under pure rotation the homography wins by at least about
    0.39 per correspondence whatever the noise; a parallax of about 1.2 sigma (rms) over the
    clip's widest pairs hands the choice to the fundamental matrix.
    """
    fits = [f for f in (_fit_pair(tracks, a, b, threshold_px)
                        for a, b in gric_pairs(tracks, keys, min_shared)) if f is not None]
    if not fits:
        return ModelSelection(0.0, 0.0, 0.0, 0, 0)
    sigma = max(1.4826 * float(np.median(np.sqrt(np.concatenate([f for _, f in fits])))),
                min_sigma_px)
    gh = gf = 0.0
    for e_h, e_f in fits:
        n = len(e_h)
        gh += np.minimum(e_h / sigma ** 2, 4.0).sum() + np.log(4) * 2 * n + np.log(4 * n) * 8
        gf += np.minimum(e_f / sigma ** 2, 2.0).sum() + np.log(4) * 3 * n + np.log(4 * n) * 7
    return ModelSelection(float(gh), float(gf), sigma, len(fits), sum(len(f[0]) for f in fits))


def detect_pure_rotation(tracks: Tracks, keys: list[int], focal: float | None,
                         noise_px: float, stats: dict | None = None) -> RotationModel | None:
    """The rotation-only model of the keyframes when the clip is a pure rotation, else None.

    Two tests, both over the whole clip: the GRIC model selection (:func:`select_model`) must
    prefer a homography, and the joint rotation-only fit of all keyframes (one direction per
    track, one rotation per keyframe, shared focal length and k1) must explain the tracks to
    within ``max(3 noise_px, 6 sigma)`` RMS (the floor allows for the drift of long tracks,
    which pairs do not see). The second test rejects a camera translating over a planar scene,
    whose pairs a homography also explains, once the rotation model misses the tracks by more
    than that; a smaller translation over a plane passes as a rotation (the fit's RMS is in
    ``stats``). ``stats`` receives the selection.
    """
    if len(keys) < 2:
        return None
    sel = select_model(tracks, keys, 3.0 * noise_px)
    if stats is not None:
        stats["model_selection"] = sel.as_stats()
    if not sel.homography:
        return None
    model = fit_rotation_only(tracks, keys, focal, fixed_focal=bool(focal),
                              loss_scale_px=max(2.0 * noise_px, 3.0 * sel.sigma_px))
    if stats is not None and model is not None:
        stats["model_selection"]["rotation_fit_rms_px"] = round(model.rms_px, 4)
    if model is None or model.rms_px > max(3.0 * noise_px, 6.0 * sel.sigma_px):
        return None
    return model
