"""Does the composited product look like it belongs? A comparison against a rendered truth.

A synthetic scene (:mod:`backend.synthetic`) is rendered twice from the same cameras with the
same renderer settings: the empty scene (the footage) and the scene with the product really
standing in it (the truth, lit by the scene's own sun and sky, casting its own shadow). The
footage then goes through the composite job (:func:`backend.pipelines.composite.composite`,
the code path of ``splatstage composite``) with the true cameras as the solve and splats made
from the true depth, placing the same product at the same spot and size. Measured per frame:

* PSNR and SSIM of composite against truth inside the product's screen box (the projected
  bounding box of the product's world bounding box);
* the truth's shadow: ground pixels near the foot (outside the product's silhouette) where
  the truth is darker than the footage; its mean darkening ``1 - sum(Y) / sum(Y_footage)``
  (linear luminance) in the truth and in the composite, and the composite's darkening on the
  nearby ground the truth leaves lit (a shadow where there should be none).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from backend.evaluation.image_metrics import psnr, ssim
from backend.pipelines.composite.envmap import srgb_to_linear

#: Rec. 709 luminance weights (linear RGB).
LUMA = np.array([0.2126, 0.7152, 0.0722])


def read_rgb(path: str | Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def luminance(rgb8: np.ndarray) -> np.ndarray:
    """Linear luminance of an 8-bit sRGB image."""
    return srgb_to_linear(rgb8 / 255.0) @ LUMA


def render_pair(out: Path, product: Path, at_xy, product_height: float | None, *, width: int, height: int,
                frames: int, samples: int, denoise: bool, seed: int = 0, timeout: float | None = None) -> dict:
    """Render the empty scene (``out/empty``) and the scene with the product (``out/truth``) with
    identical cameras and settings; existing complete renders are kept."""
    from backend.synthetic import clip_paths, make_clip

    common = dict(width=width, height=height, frames=frames, samples=samples, denoise=denoise, seed=seed,
                  video=False, threads=2, timeout=timeout)
    paths = {}
    for name, extra in (("empty", {}), ("truth", dict(product=str(product), product_at=tuple(at_xy),
                                                        product_height=product_height))):
        folder = Path(out) / name
        if not (folder / "truth.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            make_clip(folder, **common, **extra)
        paths[name] = clip_paths(folder)["dir"]
    return paths


_TRUE_SUN = """
import json, math, bpy, numpy as np
from backend.synthetic import scene
bpy.ops.wm.read_factory_settings(use_empty=True)
scene.build_scene({seed}, pixel_m=0.01)
bpy.context.view_layer.update()
sun = bpy.data.objects["sun"]
d = np.array(sun.matrix_world)[:3, 2]
print("SUN " + json.dumps({{"direction": d.tolist(), "elevation_deg": math.degrees(math.asin(d[2])),
      "azimuth_deg": math.degrees(math.atan2(d[1], d[0])) % 360, "strength": sun.data.energy,
      "angle_deg": math.degrees(sun.data.angle)}}))
"""


def true_sun(seed: int) -> dict:
    """The synthetic scene's sun for ``seed`` (direction towards it, strength in W/m^2), read from
    the scene the renderer builds (bpy in a subprocess)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p))
    res = subprocess.run([sys.executable, "-c", _TRUE_SUN.format(seed=int(seed))], capture_output=True, text=True,
                         env=env, cwd=str(root), check=True)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("SUN "))
    return json.loads(line[4:])


def splats_from_clip(clip: Path, frames) -> "object":
    """Splats reproducing the clip's visible surfaces: one small opaque Gaussian per pixel of
    each listed frame at its true depth, with the footage's colour (as a reconstruction would
    fit it)."""
    from backend.pipelines.splats_io import SH_C0, Splats

    doc = json.loads((Path(clip) / "truth.json").read_text())
    means, scales, colours = [], [], []
    for i in frames:
        fr = doc["frames"][i]
        mw, f = np.asarray(fr["matrix_world"], float), float(fr["focal_px"])
        cx, cy = fr["principal_point_px"]
        z = np.load(Path(clip) / "depth" / f"{i:06d}.npy").astype(np.float64)
        rgb = read_rgb(Path(clip) / "frames" / f"{i:06d}.png")
        vv, uu = np.mgrid[0:z.shape[0], 0:z.shape[1]] + 0.5
        ok = np.isfinite(z)
        cam = np.stack([(uu - cx) / f * z, -(vv - cy) / f * z, -z, np.ones_like(z)], -1)[ok]
        means.append((cam @ mw.T)[:, :3])
        scales.append(np.repeat((0.6 * z[ok] / f)[:, None], 3, 1))
        colours.append(rgb[ok] / 255.0)
    means, scales, colours = (np.concatenate(a) for a in (means, scales, colours))
    n = len(means)
    return Splats(means=means, scales=np.log(scales), quats=np.tile([1.0, 0, 0, 0], (n, 1)),
                  opacities=np.full(n, 6.0), sh0=(colours - 0.5) / SH_C0)


def composite_footage(empty: Path, product: Path, at_xy, product_height: float | None, work: Path, *,
                      samples: int, denoise: bool, env_face: int, splat_frames, max_frames: int | None = None,
                      **settings) -> tuple[Path, dict]:
    """Composite the product into the empty scene's footage with the composite job (true
    cameras as the solve, splats from the true depth); returns (folder of the composited
    frames, the job's summary)."""
    from backend.pipelines.composite import CompositeRequest, CompositeSettings, composite
    from backend.pipelines.composite.placement import PinholeCamera
    from backend.pipelines.splats_io import write_ply

    work = Path(work)
    (work / "solve").mkdir(parents=True, exist_ok=True)
    (work / "recon").mkdir(exist_ok=True)
    shutil.copy(Path(empty) / "truth.json", work / "solve" / "cameras.json")
    if not (work / "recon" / "splats.ply").is_file():
        write_ply(splats_from_clip(empty, splat_frames), work / "recon" / "splats.ply")
    doc = json.loads((Path(empty) / "truth.json").read_text())
    px = PinholeCamera.from_frame(doc["frames"][0]).project(np.array([at_xy[0], at_xy[1], 0.0]))[0][0]
    s = CompositeSettings.for_mode(False, "cpu", samples=samples, denoise=denoise, env_face=env_face,
                                   render_long_side=max(doc["width"], doc["height"]), threads=2, **settings)
    req = CompositeRequest(video=Path(empty) / "frames", product=Path(product), settings=s,
                           at_pixel=(float(px[0]), float(px[1])), at_frame=0, product_height=product_height,
                           solve_dir=work / "solve", reconstruction=work / "recon", work_dir=work / "job",
                           max_frames=max_frames)
    summary = composite(req, work / "out.mp4")
    shot = max((work / "job").glob("shot-*/spec.json"), key=lambda p: p.stat().st_mtime_ns).parent
    return shot / "frames", summary


def product_record(truth_doc: dict) -> dict:
    return next(r for r in truth_doc["scene"] if r.get("role") == "product")


def product_box(truth_doc: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Screen box (lo, hi) in px of the product's world bounding box in frame ``i``."""
    from backend.pipelines.composite.placement import PinholeCamera

    rec = product_record(truth_doc)
    lo, hi = np.asarray(rec["bbox_min"]), np.asarray(rec["bbox_max"])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    px, _ = PinholeCamera.from_frame(truth_doc["frames"][i]).project(corners)
    return px.min(0), px.max(0)


def ground_points(doc: dict, depth: np.ndarray, i: int) -> np.ndarray:
    """World position (H, W, 3) of each pixel's centre at its planar depth."""
    fr = doc["frames"][i]
    mw, f = np.asarray(fr["matrix_world"], float), float(fr["focal_px"])
    cx, cy = fr["principal_point_px"]
    vv, uu = np.mgrid[0:depth.shape[0], 0:depth.shape[1]] + 0.5
    z = np.where(np.isfinite(depth), depth, 0.0)
    cam = np.stack([(uu - cx) / f * z, -(vv - cy) / f * z, -z], -1)
    return cam @ mw[:3, :3].T + mw[:3, 3]


def frame_masks(empty: Path, truth: Path, i: int, reach: float, shadow_threshold: float) -> dict:
    """Per-pixel masks of frame ``i``: ``box`` (the product's screen box), ``product`` (where
    the truth sees the product: nearer than the empty scene, grown by one pixel), ``near``
    (ground within ``reach`` metres of the product's footprint centre, outside ``product``)
    and ``shadow`` (``near`` pixels the truth darkens by more than ``shadow_threshold``,
    after a 3x3 box filter of both images' luminance)."""
    doc = json.loads((Path(truth) / "truth.json").read_text())
    z_empty = np.load(Path(empty) / "depth" / f"{i:06d}.npy")
    z_truth = np.load(Path(truth) / "depth" / f"{i:06d}.npy")
    h, w = z_empty.shape
    lo, hi = product_box(doc, i)
    vv, uu = np.mgrid[0:h, 0:w] + 0.5
    box = (uu >= lo[0]) & (uu <= hi[0]) & (vv >= lo[1]) & (vv <= hi[1])
    nearer = np.nan_to_num(z_truth, posinf=1e9) < np.nan_to_num(z_empty, posinf=1e9) * 0.999
    product = cv2.dilate(nearer.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    rec = product_record(doc)
    foot = np.array([rec["centre"][0], rec["centre"][1], 0.0])
    p = ground_points(doc, z_empty, i)
    on_ground = np.isfinite(z_empty) & (np.abs(p[..., 2]) < 0.01)
    near = on_ground & (np.linalg.norm(p[..., :2] - foot[:2], axis=-1) < reach) & ~product
    y_e = cv2.blur(luminance(read_rgb(Path(empty) / "frames" / f"{i:06d}.png")), (3, 3))
    y_t = cv2.blur(luminance(read_rgb(Path(truth) / "frames" / f"{i:06d}.png")), (3, 3))
    shadow = near & (y_t < (1.0 - shadow_threshold) * y_e)
    return {"box": box, "product": product, "near": near, "shadow": shadow}


def darkening(img: np.ndarray, footage: np.ndarray, mask: np.ndarray) -> float:
    """Mean darkening ``1 - sum(Y_img) / sum(Y_footage)`` over ``mask`` (linear luminance)."""
    return float(1.0 - luminance(img)[mask].sum() / max(luminance(footage)[mask].sum(), 1e-12))


def compare_frame(empty: Path, truth: Path, composited: Path, i: int, reach: float,
                  shadow_threshold: float = 0.1) -> dict:
    """The realism figures of frame ``i`` (see the module docstring)."""
    m = frame_masks(empty, truth, i, reach, shadow_threshold)
    foot = read_rgb(Path(empty) / "frames" / f"{i:06d}.png")
    tru = read_rgb(Path(truth) / "frames" / f"{i:06d}.png")
    comp = read_rgb(Path(composited) / f"{i:06d}.png")
    lit = m["near"] & ~m["shadow"]
    prod = m["product"] & m["box"]
    out = {"frame": i, "box_px": int(m["box"].sum()), "product_px": int(prod.sum()),
           "shadow_px": int(m["shadow"].sum()),
           "psnr_box_db": psnr(comp, tru, mask=m["box"]), "ssim_box": ssim(comp, tru, mask=m["box"]),
           "psnr_product_db": psnr(comp, tru, mask=prod),
           "median_abs_product": float(np.median(np.abs(comp.astype(float) - tru)[prod].mean(1))),
           "product_mean_rgb_truth": [float(v) for v in tru[prod].mean(0)],
           "product_mean_rgb_composite": [float(v) for v in comp[prod].mean(0)],
           "psnr_footage_box_db": psnr(foot, tru, mask=m["box"])}
    if m["shadow"].any():
        out.update(psnr_shadow_db=psnr(comp, tru, mask=m["shadow"]), ssim_shadow=ssim(comp, tru, mask=m["shadow"]),
                   darkening_truth=darkening(tru, foot, m["shadow"]),
                   darkening_composite=darkening(comp, foot, m["shadow"]))
        out["darkening_ratio"] = out["darkening_composite"] / out["darkening_truth"]
    if lit.any():
        out.update(lit_px=int(lit.sum()), darkening_lit_truth=darkening(tru, foot, lit),
                   darkening_lit_composite=darkening(comp, foot, lit))
    return out
