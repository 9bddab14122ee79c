"""The key light (sun) of the footage, found from the shadows the scene casts on its ground.

A direct light is invisible in the splats (it is not a surface), yet it shows in the footage
as hard shadows: ground that an object hides from the light is darker by a factor
``r = E_ambient / (E_ambient + E_sun * cos(theta))`` whatever the ground's albedo. So:

1. Ground samples are the splats within ``tol_ground`` of the ground plane near the product;
   occluders are the splats higher than ``tol_occluder``, taken as columns standing on the
   ground (2.5-D: a visible surface point hides what lies below it).
2. For each candidate direction towards the light (elevation, azimuth), every occluder column
   is projected along it onto the ground grid; the cells it covers are "in shadow". The
   direction whose shadow mask explains most of the variance of the ground's log luminance
   (between-group sum of squares of shadow vs lit cells) wins (a coarse grid, then a fine one
   around the best).
3. ``r`` is the ratio of the mean linear luminance of the shadow cells and of the lit cells
   (both away from the mask's edge, so the texture averages out and edges do not blur it).

The light's strength then follows from the ambient irradiance of the environment map
(:func:`sun_strength`): the shadow the Blender shadow catcher draws under the product has the
same ratio ``r`` as the footage's own shadows. A scene without clear shadows (explained
fraction or contrast below the thresholds) has no sun: the environment map lights it alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .envmap import equirect_directions, srgb_to_linear

LUMA = np.array([0.2126, 0.7152, 0.0722])


@dataclass
class Sun:
    """A directional light: ``direction`` (unit, world, from the scene towards the light),
    ``ratio`` (shadowed / lit ground luminance), ``explained`` (fraction of the ground's
    log-luminance variance the shadow mask explains) and the cell counts it came from."""

    direction: list[float]
    elevation_deg: float
    azimuth_deg: float
    ratio: float
    explained: float
    shadow_cells: int
    lit_cells: int
    lit_rgb: list[float]

    def as_dict(self) -> dict:
        return asdict(self)


def _basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning the plane of ``normal`` (the first along world x when it can)."""
    ref = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = ref - normal * (ref @ normal)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(normal, e1)


def _direction(elev: np.ndarray, azim: np.ndarray, e1, e2, n) -> np.ndarray:
    ce = np.cos(elev)
    return (ce * np.cos(azim))[..., None] * e1 + (ce * np.sin(azim))[..., None] * e2 + np.sin(elev)[..., None] * n


def estimate_sun(means: np.ndarray, rgb: np.ndarray, ground_point, ground_normal, centre, scale: float, *,
                 radius: float = 1.5, cell: float = 0.01, tol_ground: float = 0.01,
                 tol_occluder: float = 0.03, min_explained: float = 0.05, max_ratio: float = 0.85,
                 min_cells: int = 30) -> Sun | None:
    """The sun seen through the shadows of the splats (``means`` world, ``rgb`` sRGB in [0, 1])
    on the ground plane, around ``centre``; None when the shadows do not show one. Lengths
    (``radius``, ``cell``, tolerances) are fractions of ``scale`` (the cameras' height above
    the ground is a good one)."""
    n = np.asarray(ground_normal, float)
    n = n / np.linalg.norm(n)
    e1, e2 = _basis(n)
    rel = np.asarray(means, float) - np.asarray(ground_point, float)
    h = rel @ n
    c = (np.asarray(centre, float) - np.asarray(ground_point, float))
    uv = np.stack([rel @ e1 - c @ e1, rel @ e2 - c @ e2], -1)
    rad, cs = radius * scale, cell * scale
    size = int(math.ceil(2 * rad / cs))
    ground = (np.abs(h) < tol_ground * scale) & (np.abs(uv) < rad).all(1)
    occ = h > tol_occluder * scale
    if ground.sum() < min_cells * 4 or occ.sum() < 10:
        return None
    # per-cell statistics of the ground
    ij = np.floor((uv[ground] + rad) / cs).astype(int).clip(0, size - 1)
    flat = ij[:, 1] * size + ij[:, 0]
    lin = srgb_to_linear(np.asarray(rgb, float)[ground])
    y = lin @ LUMA
    cnt = np.bincount(flat, minlength=size * size).astype(float)
    sum_rgb = np.stack([np.bincount(flat, lin[:, k], minlength=size * size) for k in range(3)], -1)
    sum_y = np.bincount(flat, y, minlength=size * size)
    sum_log = np.bincount(flat, np.log(np.maximum(y, 1e-4)), minlength=size * size)
    have = cnt > 0
    cells = np.flatnonzero(have)
    mean_log = sum_log[cells] / cnt[cells]
    total_var = float(((mean_log - mean_log.mean()) ** 2).sum())
    if total_var <= 0:
        return None
    # occluder columns: a few points between each visible point and the ground (a subsample
    # for the coarse search, more for the fine one)
    o_uv, o_h = uv[occ], h[occ]
    order = np.random.default_rng(0).permutation(len(o_h))
    t = np.linspace(0.125, 1.0, 8)
    columns = {}
    for name, count in (("coarse", 4000), ("fine", 16000)):
        sel = order[:count]
        columns[name] = (np.repeat(o_uv[sel, 0], len(t)).astype(np.float32) + np.float32(rad),
                         np.repeat(o_uv[sel, 1], len(t)).astype(np.float32) + np.float32(rad),
                         (o_h[sel, None] * t[None, :]).reshape(-1).astype(np.float32))
    kernel = np.ones((3, 3), np.uint8)

    def mask_for(elev: float, azim: float, which: str = "fine") -> np.ndarray:
        cu, cv, ch = columns[which]
        k = math.cos(elev) / math.sin(elev)  # ground shift per unit of height
        px = ((cu - ch * np.float32(k * math.cos(azim))) / np.float32(cs)).astype(np.int32)
        py = ((cv - ch * np.float32(k * math.sin(azim))) / np.float32(cs)).astype(np.int32)
        ok = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        grid = np.zeros(size * size, np.uint8)
        grid[py[ok] * size + px[ok]] = 1
        return cv2.morphologyEx(grid.reshape(size, size), cv2.MORPH_CLOSE, kernel)

    total_log = float(mean_log.sum())
    present = have.astype(np.float32)
    log_grid = np.zeros(size * size, np.float32)
    log_grid[cells] = mean_log

    def score(elev: float, azim: float, which: str = "fine") -> float:
        s = mask_for(elev, azim, which).reshape(-1).astype(np.float32)
        k = int(round(float(np.dot(s, present))))
        if k < min_cells or len(cells) - k < min_cells:
            return 0.0
        in_shadow = float(np.dot(s, log_grid))
        a, b = in_shadow / k, (total_log - in_shadow) / (len(cells) - k)
        if a >= b:  # a shadow is darker than the lit ground
            return 0.0
        return float(k * (len(cells) - k) / len(cells) * (a - b) ** 2 / total_var)

    coarse = [(math.radians(e), math.radians(a)) for e in range(10, 86, 5) for a in range(0, 360, 8)]
    best = max(coarse, key=lambda ea: score(*ea, "coarse"))
    fine = [(best[0] + math.radians(de), best[1] + math.radians(da))
            for de in np.arange(-3, 3.5, 1.0) for da in np.arange(-4, 4.5, 1.0)
            if 0 < best[0] + math.radians(de) < math.pi / 2]
    best = max(fine + [best], key=lambda ea: score(*ea))
    explained = score(*best)
    grid = mask_for(*best)
    inner = cv2.erode(grid, kernel).reshape(-1)[cells].astype(bool)
    outer = ~cv2.dilate(grid, kernel, iterations=2).reshape(-1)[cells].astype(bool)
    if explained < min_explained or inner.sum() < min_cells // 2 or outer.sum() < min_cells:
        return None
    ratio = float((sum_y[cells][inner].sum() / cnt[cells][inner].sum())
                  / (sum_y[cells][outer].sum() / cnt[cells][outer].sum()))
    if not ratio < max_ratio:
        return None
    d = _direction(np.array(best[0]), np.array(best[1]), e1, e2, n)
    lit = cells[outer]
    return Sun(direction=[float(v) for v in d / np.linalg.norm(d)], elevation_deg=math.degrees(best[0]),
               azimuth_deg=math.degrees(best[1]) % 360.0, ratio=ratio, explained=explained,
               shadow_cells=int(inner.sum()), lit_cells=int(outer.sum()),
               lit_rgb=[float(v) for v in sum_rgb[lit].sum(0) / cnt[lit].sum()])


def ambient_irradiance(env_rgb: np.ndarray, normal) -> np.ndarray:
    """Irradiance (RGB) an equirectangular environment map (linear radiance, Blender's
    convention) delivers to a surface facing ``normal``: the sum of L cos(theta) d omega."""
    h, w = env_rgb.shape[:2]
    d = equirect_directions(w, h)
    cos = np.clip(d @ np.asarray(normal, float), 0.0, None)
    omega = (2 * math.pi / w) * (math.pi / h) * np.sin((np.arange(h) + 0.5) / h * math.pi)[:, None]
    return (env_rgb * (cos * omega)[..., None]).reshape(-1, 3).sum(0)


def sun_strength(sun: Sun, env_rgb: np.ndarray, normal) -> float:
    """The sun's strength (irradiance on a surface facing it, Blender's sun ``strength``) that
    makes the ground's shadow ratio ``sun.ratio`` under the environment map's ambient light:
    ``E_amb / (E_amb + E_sun cos theta) = r``."""
    n = np.asarray(normal, float)
    e_amb = float(ambient_irradiance(env_rgb, n) @ LUMA)
    cos = max(float(np.asarray(sun.direction) @ n), 0.05)
    return e_amb * (1.0 / sun.ratio - 1.0) / cos


def scene_light(splats_path, doc: dict, anchor, env_path, angle_deg: float = 1.0, find_sun: bool = True) -> dict:
    """What the renderer needs to light the product like the footage, beyond the environment
    map: ``sun`` (``direction``, ``strength``, ``angle_deg`` and how it was found; None when
    the footage shows no clear shadows or ``find_sun`` is off) and ``ground_albedo`` (linear
    RGB of the shadow-catcher ground, so that the light it bounces onto the product is the
    footage's ground radiance: ``albedo = pi * L_ground / E``, E the irradiance the
    environment map and the sun give it). The scene scale is the cameras' median height above
    the solved ground."""
    from backend.pipelines.splats_io import load_splats
    from backend.synthetic.exr import read_exr_channels

    from .placement import ground_of

    point, normal = ground_of(doc)
    centres = np.array([np.asarray(f["matrix_world"], float)[:3, 3] for f in doc["frames"]
                        if f.get("registered", True) and f.get("matrix_world") is not None])
    heights = (centres - point) @ normal if len(centres) else np.zeros(0)
    if len(heights) and np.median(heights) < 0:  # the side of the ground the cameras are on is up
        normal, heights = -normal, -heights
    scale = float(np.median(heights)) if len(heights) else 0.0
    ch = read_exr_channels(env_path, ["R", "G", "B"])
    env = np.stack([ch["R"], ch["G"], ch["B"]], -1).astype(np.float64)
    e_amb = ambient_irradiance(env, normal)
    splats = load_splats(splats_path)
    keep = splats.alpha() > 0.5
    means, rgb = splats.means[keep], splats.rgb()[keep]
    sun = estimate_sun(means, rgb, point, normal, anchor, scale) if find_sun and scale > 0 else None
    out: dict = {"sun": None, "ground_albedo": None}
    e_ground = e_amb.copy()
    if sun is not None:
        strength = sun_strength(sun, env, normal)
        out["sun"] = {"direction": sun.direction, "strength": strength, "angle_deg": angle_deg,
                      "found": sun.as_dict()}
        e_ground = e_amb + strength * max(float(np.asarray(sun.direction) @ normal), 0.0)
        lit = np.asarray(sun.lit_rgb)
    else:
        h = (np.asarray(means, float) - point) @ normal
        near = np.linalg.norm(np.asarray(means, float) - np.asarray(anchor, float), axis=1) < 1.5 * max(scale, 1e-9)
        sel = (np.abs(h) < 0.01 * max(scale, 1e-9)) & near
        lit = srgb_to_linear(rgb[sel]).mean(0) if sel.sum() >= 30 else None
    if lit is not None and (e_ground > 0).all():
        out["ground_albedo"] = [float(v) for v in np.clip(math.pi * lit / e_ground, 0.0, 0.95)]
    return out
