"""Feature tracking across consecutive video frames (OpenCV pyramidal KLT).

Corners (Shi-Tomasi) are tracked frame to frame and must stay inside the image; with the
translation-only anchor pass a track survives a step only if tracking it back lands within
``fb_max_px`` of where it started (forward-backward check). Frame-to-frame tracking accumulates
drift, so each position is then refined against the track's anchor (the frame where it was
detected, renewed every ``anchor_frames`` frames, or sooner when the patch has shrunk or grown
by ``max_deform``) and the track is dropped if the two disagree by more than ``anchor_max_px``.
The anchor patch is matched with an affine deformation (:mod:`.affine_klt`, from 640 px up) or
by translation alone (smaller frames). New corners are detected where tracks are sparse. A frame
in which most tracks are lost at once (a flash, a corrupt or blank frame) is recorded with no
observations and tracking resumes from the last good frame; only after ``max_lost`` such frames
in a row does tracking restart from scratch. Observations are stored per frame in
full-resolution pixel coordinates (pixel-corner origin), with the colour seen there.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import affine_klt


@dataclass
class FrameObservations:
    """Tracks seen in one frame: ids (int64), full-resolution xy (float64), colours (uint8)."""

    ids: np.ndarray
    xy: np.ndarray
    rgb: np.ndarray


@dataclass
class Tracks:
    """All observations of a clip, frame by frame, plus the frames' input identities."""

    width: int
    height: int
    frames: list[FrameObservations] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    texture: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def common(self, a: int, b: int):
        """Indices into frames ``a`` and ``b`` of the tracks both frames see."""
        _, ia, ib = np.intersect1d(self.frames[a].ids, self.frames[b].ids, assume_unique=True,
                                   return_indices=True)
        return ia, ib

    def track_lengths(self) -> dict[int, int]:
        ids, counts = np.unique(np.concatenate([f.ids for f in self.frames]), return_counts=True)
        return dict(zip(ids.tolist(), counts.tolist()))


class TrackLookup:
    """Vectorised ``track id -> point3D id`` over a frame's observations."""

    def __init__(self, track_to_point: dict[int, int]):
        tids = np.fromiter(track_to_point.keys(), np.int64, len(track_to_point))
        order = np.argsort(tids)
        self.tids = tids[order]
        self.pids = np.fromiter(track_to_point.values(), np.int64, len(track_to_point))[order]

    def points(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into ``ids`` that have a point, their point ids)."""
        if len(self.tids) == 0 or len(ids) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        at = np.minimum(np.searchsorted(self.tids, ids), len(self.tids) - 1)
        hit = np.flatnonzero(self.tids[at] == ids)
        return hit, self.pids[at[hit]]


def _texture(gray: np.ndarray) -> float:
    """Grey-level standard deviation (on a 4x subsampled grid): ~0 for blank frames."""
    return float(gray[::4, ::4].std())


class KLTTracker:
    """Streaming tracker: feed solve-resolution frames one by one with :meth:`add`."""

    def __init__(self, full_size: tuple[int, int], solve_size: tuple[int, int],
                 max_corners: int = 1500, min_distance: float | None = None,
                 quality: float = 0.005, fb_max_px: float | None = None, window: int | None = None,
                 levels: int = 4, anchor_frames: int | None = None, anchor_max_px: float = 1.0,
                 anchor_window: int | None = None, max_lost: int = 5, lost_fraction: float = 0.3,
                 anchor_model: str | None = None, anchor_half: int = 5, max_deform: float = 1.3):
        self.full_w, self.full_h = full_size
        self.w, self.h = solve_size
        self.sx = self.full_w / self.w
        self.sy = self.full_h / self.h
        self.max_corners = max_corners
        area = self.w * self.h
        self.min_distance = min_distance or max(4.0, 0.7 * np.sqrt(area / max_corners))
        self.quality = quality
        # The anchor pass measures the drift-free position. From 640 px up it aligns the anchor
        # patch with an affine deformation (affine_klt): a translation-only match is biased by
        # the patch's perspective deformation since the anchor frame, and each renewal hands the
        # bias on, so long tracks wander by a tenth of a pixel or more; on the 1080p benchmark
        # clips the affine pass lowers every pose error 2-10x. Below 640 px, where a patch spans
        # much of the scene and six parameters fit noise, the translation-only pass stays, with
        # a small window and anchors renewed sooner. Values chosen on the synthetic clips of the
        # tests and benchmarks.
        small = max(self.w, self.h) < 640
        if anchor_model is None:
            anchor_model = "translation" if small else "affine"
        if anchor_model not in ("affine", "translation"):
            raise ValueError(f"anchor_model must be 'affine' or 'translation', not {anchor_model!r}")
        self.affine = anchor_model == "affine"
        # Frame to frame: pyramidal KLT with a forward-backward check. Before the affine anchor
        # pass it only has to land within the alignment's reach, and the alignment itself
        # rejects tracks that do not match their anchor patch (normalised correlation, and
        # agreement within ``anchor_max_px``), so a smaller window and no backward pass do.
        self.fb_max = fb_max_px if fb_max_px is not None else (0.0 if self.affine else 0.5)
        window = window or (11 if self.affine else 15)
        self.window, self.levels = window, levels
        self.lk = dict(winSize=(window, window), maxLevel=levels,
                       criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.05))
        if anchor_window is None:
            anchor_window = 5 if small else 7 if max(self.w, self.h) >= 1600 else 11
        if anchor_frames is None:
            anchor_frames = 12 if small else 25
        self.anchor_lk = dict(winSize=(anchor_window, anchor_window), maxLevel=1,
                              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.003))
        self.anchor_frames = anchor_frames
        self.anchor_max = anchor_max_px
        self.anchors: dict[int, np.ndarray] = {}  # anchor frames of the translation-only pass
        self.anchor_half, self.max_deform = anchor_half, max_deform
        self.prev_tpl = affine_klt.Templates.empty(anchor_half)
        self.prev_aff = np.zeros((0, 2, 2))
        self.max_lost = max_lost
        self.lost_fraction = lost_fraction
        self.lost_run = 0
        self.frame_no = -1
        self.prev_gray: np.ndarray | None = None
        self.prev_pts = np.zeros((0, 2), np.float32)
        self.prev_ids = np.zeros(0, np.int64)
        self.prev_anchor = np.zeros(0, np.int64)
        self.prev_anchor_xy = np.zeros((0, 2), np.float32)
        self.next_id = 0
        self.tracks = Tracks(self.full_w, self.full_h)

    def _detect(self, gray: np.ndarray, pts: np.ndarray) -> np.ndarray:
        want = self.max_corners - len(pts)
        if want < self.max_corners * 0.15:
            return np.zeros((0, 2), np.float32)
        mask = np.full(gray.shape, 255, np.uint8)
        margin = 4
        mask[:margin], mask[-margin:], mask[:, :margin], mask[:, -margin:] = 0, 0, 0, 0
        r = int(round(self.min_distance))
        for x, y in pts:
            cv2.circle(mask, (int(x), int(y)), r, 0, -1)
        found = cv2.goodFeaturesToTrack(gray, maxCorners=want, qualityLevel=self.quality,
                                        minDistance=self.min_distance, mask=mask, blockSize=5)
        if found is None:
            return np.zeros((0, 2), np.float32)
        found = found.reshape(-1, 2).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01)
        cv2.cornerSubPix(gray, found, (3, 3), (-1, -1), crit)
        return found

    def _refine_from_anchors(self, gray, pts, ok, anchor, anchor_xy):
        """Re-track ``pts`` from their anchor frames (initialised at ``pts``); drop disagreements."""
        pts = pts.copy()
        ok = ok.copy()
        for a in np.unique(anchor[ok]):
            if a == self.frame_no - 1:
                continue
            sel = np.flatnonzero(ok & (anchor == a))
            guess = pts[sel].copy()
            got, st, _ = cv2.calcOpticalFlowPyrLK(self.anchors[int(a)], gray, anchor_xy[sel], guess,
                                                  flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **self.anchor_lk)
            good = (st.ravel() == 1) & (np.linalg.norm(got - guess, axis=1) < self.anchor_max)
            pts[sel[good]] = got[good]
            ok[sel[~good]] = False
        return pts, ok

    def _refine_affine(self, gray, pts, ok, tpl, aff):
        """Align each track's anchor patch (affine) starting at ``pts``; drop disagreements."""
        pts, ok, aff = pts.copy(), ok.copy(), aff.copy()
        sel = np.flatnonzero(ok)
        got, a, conv, zncc = affine_klt.refine(gray, tpl.take(sel), pts[sel], aff[sel],
                                               self.anchor_half)
        good = conv & (zncc > 0.7) & (np.linalg.norm(got - pts[sel], axis=1) < self.anchor_max)
        pts[sel[good]] = got[good]
        aff[sel[good]] = a[good]
        ok[sel[~good]] = False
        return pts, ok, aff

    def _record_empty(self, index: int, source: str, gray: np.ndarray) -> FrameObservations:
        obs = FrameObservations(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros((0, 3), np.uint8))
        self.tracks.frames.append(obs)
        self.tracks.sources.append(source)
        self.tracks.indices.append(index)
        self.tracks.texture.append(_texture(gray))
        return obs

    def add(self, rgb: np.ndarray, index: int, source: str) -> FrameObservations:
        """Track into a new frame (solve resolution RGB) and record its observations."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        fgray = gray.astype(np.float32) if self.affine else None  # what the affine pass samples
        self.frame_no += 1
        pts, ids = self.prev_pts, self.prev_ids
        anchor, anchor_xy = self.prev_anchor, self.prev_anchor_xy
        if self.prev_gray is not None and len(pts):
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(self.prev_gray, gray, pts, None, **self.lk)
            ok = st.ravel() == 1
            if self.fb_max:
                back, st2, _ = cv2.calcOpticalFlowPyrLK(gray, self.prev_gray, nxt, None, **self.lk)
                ok &= (st2.ravel() == 1) & (np.linalg.norm(back - pts, axis=1) < self.fb_max)
            tpl, aff = self.prev_tpl, self.prev_aff
            if self.affine:
                nxt, ok, aff = self._refine_affine(fgray, nxt, ok, tpl, aff)
            else:
                nxt, ok = self._refine_from_anchors(gray, nxt, ok, anchor, anchor_xy)
            ok &= (nxt[:, 0] >= 1) & (nxt[:, 1] >= 1) & (nxt[:, 0] < self.w - 1) & (nxt[:, 1] < self.h - 1)
            if len(pts) >= 50 and ok.mean() < self.lost_fraction and self.lost_run < self.max_lost:
                self.lost_run += 1
                return self._record_empty(index, source, gray)
            self.lost_run = 0
            pts, ids, anchor, anchor_xy = nxt[ok], ids[ok], anchor[ok], anchor_xy[ok]
            if self.affine:
                tpl, aff = tpl.take(ok), aff[ok]
        else:
            pts, ids = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
            anchor, anchor_xy = np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
            tpl, aff = affine_klt.Templates.empty(self.anchor_half), np.zeros((0, 2, 2))
        old = self.frame_no - anchor >= self.anchor_frames
        if self.affine and len(aff):
            sv = np.linalg.svd(aff, compute_uv=False)
            old |= (sv[:, 0] > self.max_deform) | (sv[:, 1] < 1.0 / self.max_deform)
        anchor = np.where(old, self.frame_no, anchor)
        anchor_xy = np.where(old[:, None], pts, anchor_xy).astype(np.float32)
        if self.affine and old.any():
            renewed = affine_klt.make_templates(fgray, pts[old], self.anchor_half)
            tpl.assign(old, renewed)
            aff[old] = np.eye(2)
        new = self._detect(gray, pts)
        if len(new):
            new_ids = np.arange(self.next_id, self.next_id + len(new), dtype=np.int64)
            self.next_id += len(new)
            pts = np.concatenate([pts, new])
            ids = np.concatenate([ids, new_ids])
            anchor = np.concatenate([anchor, np.full(len(new), self.frame_no)])
            anchor_xy = np.concatenate([anchor_xy, new])
            if self.affine:
                tpl = affine_klt.Templates.concat(
                    [tpl, affine_klt.make_templates(fgray, new, self.anchor_half)])
                aff = np.concatenate([aff, np.broadcast_to(np.eye(2), (len(new), 2, 2))])
        self.prev_tpl, self.prev_aff = tpl, aff
        if not self.affine:
            self.anchors[self.frame_no] = gray
            live = set(anchor.tolist())
            for k in [k for k in self.anchors if k not in live]:
                del self.anchors[k]
        self.prev_gray, self.prev_pts, self.prev_ids = gray, pts, ids
        self.prev_anchor, self.prev_anchor_xy = anchor, anchor_xy
        # KLT works in pixel-centre-at-integer coordinates; the solve uses pixel-corner origin.
        xi = np.clip(pts[:, 0].astype(np.int64), 0, self.w - 1)
        yi = np.clip(pts[:, 1].astype(np.int64), 0, self.h - 1)
        xy = np.empty((len(pts), 2), np.float64)
        xy[:, 0] = (pts[:, 0] + 0.5) * self.sx
        xy[:, 1] = (pts[:, 1] + 0.5) * self.sy
        obs = FrameObservations(ids.copy(), xy, rgb[yi, xi].copy())
        self.tracks.frames.append(obs)
        self.tracks.sources.append(source)
        self.tracks.indices.append(index)
        self.tracks.texture.append(_texture(gray))
        return obs
