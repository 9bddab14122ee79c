"""Keyframe choice by image motion: a new keyframe once tracks moved far enough or thinned out."""
from __future__ import annotations

import numpy as np

from .tracking import Tracks


def median_motion(tracks: Tracks, a: int, b: int) -> tuple[float, int]:
    """Median displacement (full-resolution px) of the tracks frames ``a`` and ``b`` share."""
    ia, ib = tracks.common(a, b)
    if len(ia) == 0:
        return float("inf"), 0
    d = np.linalg.norm(tracks.frames[a].xy[ia] - tracks.frames[b].xy[ib], axis=1)
    return float(np.median(d)), len(ia)


def select_keyframes(tracks: Tracks, motion_frac: float = 0.05, min_survival: float = 0.6,
                     max_gap: int = 40, min_keyframes: int = 6, min_observations: int = 30) -> list[int]:
    """Frame positions (into ``tracks``) chosen as keyframes, first and last always included.

    A frame becomes a keyframe when, relative to the previous keyframe, the median track
    displacement exceeds ``motion_frac`` of the image's longer side, fewer than ``min_survival``
    of the keyframe's tracks are still seen, or ``max_gap`` frames have passed. Short clips get
    at least ``min_keyframes`` evenly spread keyframes (or all their frames). Frames with fewer
    than ``min_observations`` tracks are never keyframes.
    """
    usable = [i for i in range(len(tracks)) if len(tracks.frames[i].ids) >= min_observations]
    n = len(usable)
    if n == 0:
        return []
    limit = motion_frac * max(tracks.width, tracks.height)
    keys = [usable[0]]
    for i in usable[1:]:
        k = keys[-1]
        motion, shared = median_motion(tracks, k, i)
        survival = shared / max(1, len(tracks.frames[k].ids))
        if motion > limit or survival < min_survival or i - k >= max_gap:
            keys.append(i)
    if keys[-1] != usable[-1]:
        keys.append(usable[-1])
    if len(keys) < min(min_keyframes, n):
        even = np.unique(np.round(np.linspace(0, n - 1, min(min_keyframes, n))).astype(int))
        keys = sorted(set(keys) | {usable[i] for i in even.tolist()})
    return keys


def keyframe_pairs(tracks: Tracks, keys: list[int], window: int = 6,
                   min_shared: int = 20) -> list[tuple[int, int]]:
    """Pairs of keyframe positions to match: each keyframe with its next ``window`` keyframes."""
    pairs = []
    for a_pos, a in enumerate(keys):
        for b in keys[a_pos + 1:a_pos + 1 + window]:
            ia, _ = tracks.common(a, b)
            if len(ia) >= min_shared:
                pairs.append((a, b))
    return pairs
