"""The product pipeline checked against a real GLB: the oracle multi-view run and its measures.

A GLB is rendered with bpy (:mod:`backend.synthetic.product_views`, flat-lit base colour) at
SyncDreamer-like fixed poses (eight views 30 degrees up, eight in between 20 degrees down) and
at held-out poses between them; the renders stand in for the generated views (and their true
depth for the depth model), the product job runs on them, and the product is compared with the
held-out renders (PSNR inside the true silhouette, silhouette IoU), with ``height`` (the splats'
silhouette from a far side camera) and with the GLB's bounding box (the extracted mesh).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

FOV, RADIUS, EXTENT = 30.0, 2.2, 0.9
VIEWS = {"views": [{"azimuth_deg": a, "elevation_deg": 30} for a in range(0, 360, 45)]
         + [{"azimuth_deg": a + 22.5, "elevation_deg": -20} for a in range(0, 360, 45)],
         "fov_deg": FOV, "radius": RADIUS}
HELD = [(10, 5), (100, 5), (190, 5), (280, 5)]


def render_truth(glb, size: int) -> dict:
    """Renders at the fixed and the held-out poses: ``views``, ``rgba``, ``depth``, ``held``, ``placement``."""
    from backend.models.multiview import parse_views
    from backend.pipelines.product.cameras import look_at, orbit_position, view_cameras
    from backend.synthetic.product_views import render_product_views

    vs = parse_views(VIEWS)
    c2w, _ = view_cameras(vs, size)
    held = np.array([look_at(orbit_position(a, e, RADIUS)) for a, e in HELD])
    r = render_product_views(glb, np.concatenate([c2w, held]), size, FOV, extent=EXTENT)
    n = len(vs)
    return {"views": vs, "rgba": r["rgba"][:n], "depth": r["depth"][:n], "held": held,
            "held_rgba": r["rgba"][n:], "placement": r["placement"], "size": size}


def run_oracle(truth: dict, photo: Path, out: Path, height: float, **options):
    """The product pipeline on the oracle models (``options``: :class:`ProductOptions` fields);
    returns its summary and the seconds it took."""
    from backend.models.oracles import OracleMultiview, OracleViewDepth
    from backend.pipelines.product import ProductOptions, make_product

    models = {"multiview": OracleMultiview(truth["views"], truth["rgba"]),
              "depth": OracleViewDepth(truth["rgba"], truth["depth"]), "enhance": None}
    opts = ProductOptions(height=height, train_size=truth["size"], device="cpu", **options)
    t0 = time.perf_counter()
    summary = make_product(photo, out, opts, models=models)
    return summary, time.perf_counter() - t0


def to_product(placement: dict, height: float):
    """Scale, offset and true size (m) from the renders' object frame to the product's."""
    lo, hi = np.array(placement["bbox_min"]), np.array(placement["bbox_max"])
    s = height / (hi[2] - lo[2])
    return s, -s * np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]]), (hi - lo) * s


def measure(truth: dict, out: Path, height: float) -> dict:
    """Held-out PSNR (dB, inside the true silhouette) and IoU per view, the splats' height and
    the mesh's bounding box against the GLB's."""
    import trimesh

    from backend.pipelines.product.cameras import focal_px, look_at
    from backend.pipelines.render import cameras_from_arrays, render_views
    from backend.pipelines.splats_io import read_ply

    size = truth["size"]
    s, off, true_size = to_product(truth["placement"], height)
    held = truth["held"].copy()
    held[:, :3, 3] = held[:, :3, 3] * s + off
    splats = read_ply(out / "product.ply")
    got = render_views(splats, cameras_from_arrays(held, focal_px(FOV, size), (size / 2, size / 2), size, size))
    ref = truth["held_rgba"].astype(np.float64) / 255.0
    psnr, iou = [], []
    for i in range(len(held)):
        a = ref[i, ..., 3]
        sil, mask = a > 0.5, got["alpha"][i] > 0.5
        iou.append(float((sil & mask).sum() / (sil | mask).sum()))
        mse = float(((got["rgb"][i] - ref[i, ..., :3] * a[..., None])[sil] ** 2).mean())
        psnr.append(10 * np.log10(1.0 / max(mse, 1e-12)))
    # height: a far, narrow side view (near-orthographic), 1 px = 1/400 of the height
    px, dist = 480, 100 * height
    fov = float(np.degrees(2 * np.arctan(0.6 * height / dist)))
    cam = look_at(np.array([0.0, -dist, height / 2]), (0.0, 0.0, height / 2))
    alpha = render_views(splats, cameras_from_arrays(cam[None], focal_px(fov, px), (px / 2, px / 2), px, px))["alpha"][0]
    rows = np.nonzero(alpha.max(1) > 0.5)[0]
    splat_height = float((rows.max() + 1 - rows.min()) * (1.2 * height / px)) if len(rows) else 0.0
    mesh = trimesh.load(out / "product.glb", force="mesh")
    ext = mesh.extents[[0, 2, 1]]  # glTF (+Y up) -> Blender axes
    return {"psnr_db": psnr, "iou": iou, "splat_height_m": splat_height,
            "mesh_size_m": ext.tolist(), "glb_size_m": true_size.tolist(),
            "mesh_size_error": (np.abs(ext / true_size - 1)).tolist(),
            "summary": json.loads((out / "product.json").read_text())}
