"""A product from one photo (Glimpse3D's stages on the project's own parts).

1. cut-out (:mod:`.cutout`), centred over neutral grey;
2. multi-view generation at the model's fixed poses (:mod:`backend.models.multiview`);
3. depth per view (:mod:`backend.models.depth`, fitted to the views' visual hull) and the
   optional enhancement of each view (:mod:`backend.models.enhance`);
4. object splats trained on the views (:mod:`.fuse`), then back-projection colour refinement;
5. outputs (:mod:`.outputs`): ``product.ply`` upright with its base at z = 0 and ``height``
   metres tall, ``product.glb`` (mesh from the splats), ``turntable.mp4``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from backend.progress import JobError, Progress

from .cameras import view_cameras
from .cutout import centre_crop, cut_out, read_photo
from .fuse import object_config, refine_colours, train_object
from .lift import SILHOUETTE, align_depth, hull_depth, lift, visual_hull

DEFAULT_HEIGHT = 0.3  # m; a photo holds no scale, so the real height must be given
SIZE_NOTE = ("the product's real size cannot be known from one photo: it is scaled to --height "
             "(default 0.3 m); give the real height")


@dataclass
class ProductOptions:
    height: float = DEFAULT_HEIGHT
    elevation: float = 0.0  # the photo's camera elevation (deg), for models with relative poses
    box: str | None = None
    train_size: int | None = 256  # views are resized to this many px for fitting (None: as generated)
    steps: int = 600
    sh_degree: int = 0  # view-independent colour: generated views differ in shading, not in material
    refine_rounds: int = 2
    hull_res: int = 64
    max_points: int = 20000
    mesh_res: int = 128
    mesh_views: int = 0  # extra TSDF cameras on a sphere, besides the fitted views
    turntable_frames: int = 48
    turntable_size: int = 256
    device: str = "cpu"
    seed: int = 0
    weights: str | None = None

    def check(self) -> None:
        if not (isinstance(self.height, (int, float)) and math.isfinite(self.height) and 0 < self.height <= 100):
            raise JobError(f"product: height must be in (0, 100] m, got {self.height!r}", "bad_params")
        if not (isinstance(self.elevation, (int, float)) and -90 < self.elevation < 90):
            raise JobError(f"product: elevation must be in (-90, 90) degrees, got {self.elevation!r}", "bad_params")
        if self.steps < 1 or self.refine_rounds < 0:
            raise JobError("product: steps must be >= 1 and refine_rounds >= 0", "bad_params")


def load_models(opts: ProductOptions, models: dict | None) -> dict:
    """The models to use: those given in ``models`` (a value None means "none"), the rest loaded
    from the weights folder (the multi-view model is required; depth and enhancement are
    optional)."""
    from backend.models.depth import load_depth_model
    from backend.models.enhance import load_enhancer
    from backend.models.multiview import load_multiview_model

    models = dict(models or {})
    if "multiview" not in models:
        models["multiview"] = load_multiview_model(opts.weights, opts.device, opts.seed)
    if "depth" not in models:
        try:
            models["depth"] = load_depth_model(opts.weights, opts.device)
        except JobError as exc:
            if exc.code != "missing_weights":
                raise
            models["depth"] = None
    if "enhance" not in models:
        models["enhance"] = load_enhancer(opts.weights, opts.device, opts.seed)
    return models


def view_alphas(views: np.ndarray, background, cutout=None) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb uint8 (V,H,W,3), alpha float32 (V,H,W))`` of generated views: their own alpha
    channel, else the cut-out model, else the pixels that differ from the model's background."""
    if views.shape[-1] == 4:
        return views[..., :3], views[..., 3].astype(np.float32) / 255.0
    if cutout is not None:
        return views, np.stack([np.clip(cutout(v), 0, 1) for v in views]).astype(np.float32)
    bg = np.asarray(background, np.float32) * 255
    diff = np.abs(views.astype(np.float32) - bg).max(-1)
    masks = []
    for d in diff:
        m = cv2.morphologyEx((d > 12).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        masks.append(m.astype(np.float32))
    return views, np.stack(masks)


def _resize(views: np.ndarray, alphas: np.ndarray, size: int | None):
    if size is None or views.shape[1] == size:
        return views, alphas
    interp = cv2.INTER_AREA if views.shape[1] > size else cv2.INTER_LINEAR
    return (np.stack([cv2.resize(v, (size, size), interpolation=interp) for v in views]),
            np.stack([cv2.resize(a, (size, size), interpolation=interp) for a in alphas]))


def generate_views(photo: np.ndarray, alpha: np.ndarray, method: str, opts: ProductOptions, models: dict,
                   progress: Progress) -> dict:
    """Stages 2-3 for the cut-out ``photo``: the generated views with silhouettes, their
    cameras and depth."""
    mv = models["multiview"]
    vs = mv.views
    crop, crop_alpha = centre_crop(photo[..., :3], alpha, vs.input_size)
    progress.stage("views", f"generating {len(vs)} views")
    raw = np.asarray(mv(crop))
    if raw.ndim != 4 or len(raw) != len(vs) or raw.shape[-1] not in (3, 4):
        raise JobError(f"the multi-view model returned an array of shape {raw.shape}, expected "
                       f"({len(vs)}, H, W, 3 or 4)", "bad_model_output")
    rgb, alphas = view_alphas(raw, vs.background, models.get("cutout"))
    rgb, alphas = _resize(rgb, alphas, opts.train_size)
    size = rgb.shape[1]
    c2w, K = view_cameras(vs, size, opts.elevation)
    empty = [i for i, a in enumerate(alphas) if (a > SILHOUETTE).mean() < 0.002]
    if empty:
        raise JobError(f"the multi-view model's views {empty} show no object", "bad_model_output")
    progress.stage("depth", "visual hull and depth per view")
    half = max(v.radius * math.tan(math.radians(v.fov_deg) / 2) for v in vs.views)
    hull = visual_hull(alphas, c2w, K, half, opts.hull_res)
    if hull.occupied.sum() < 8:
        raise JobError("the generated views' silhouettes share no volume (inconsistent views)",
                       "bad_model_output")
    ref = np.stack([hull_depth(hull, m, k, size, size) for m, k in zip(c2w, K)])
    depth_model = models.get("depth")
    depth, source = ref, "visual hull"
    if depth_model is not None:
        depth = np.stack([align_depth(np.asarray(depth_model(v), np.float32),
                                      getattr(depth_model, "output", "depth"), r, a > SILHOUETTE)
                          for v, r, a in zip(rgb, ref, alphas)])
        source = "depth model"
    enhancer = models.get("enhance")
    if enhancer is not None:
        progress.stage("enhance", "enhancing the views")
        rgb = np.stack([enhancer(v, d, a) for v, d, a in zip(rgb, depth, alphas)])
    return {"photo": photo, "cutout": method, "crop": crop, "crop_alpha": crop_alpha, "rgb": rgb,
            "alpha": alphas, "c2w": c2w, "K": K, "depth": depth, "depth_source": source, "hull": hull,
            "views": vs}


def initial_points(g: dict, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lifted depth points that lie in the hull (dilated by two voxels), at most ``max_points``."""
    pts, cols = [], []
    for rgb, a, d, m, k in zip(g["rgb"], g["alpha"], g["depth"], g["c2w"], g["K"]):
        p, c = lift(rgb.astype(np.float32) / 255.0, a, d, m, k)
        pts.append(p)
        cols.append(c)
    pts, cols = np.concatenate(pts), np.concatenate(cols)
    keep = g["hull"].contains(pts, dilate=2)
    pts, cols = pts[keep], cols[keep]
    if len(pts) < 16:
        raise JobError("the views' depth lifts to no points inside their visual hull", "bad_model_output")
    if len(pts) > max_points:
        pick = np.random.default_rng(seed).choice(len(pts), max_points, replace=False)
        pts, cols = pts[pick], cols[pick]
    return pts, cols


def make_product(photo, out_dir, opts: ProductOptions | None = None, models: dict | None = None,
                 progress: Progress | None = None) -> dict:
    """Run every stage; writes the outputs into ``out_dir`` and returns the summary."""
    from .outputs import write_outputs

    opts = opts or ProductOptions()
    opts.check()
    progress = progress or Progress()
    from backend.models.cutout import load_cutout_model

    progress.stage("cutout", "cutting the product out of the photo")
    models = dict(models or {})
    if "cutout" not in models:
        models["cutout"] = load_cutout_model(opts.weights, opts.device)
    image = read_photo(photo)
    alpha, method = cut_out(image, opts.box, models["cutout"], name=str(photo))
    models = load_models(opts, models)
    g = generate_views(image, alpha, method, opts, models, progress)
    pts, cols = initial_points(g, opts.max_points, opts.seed)
    progress.stage("fuse", f"training object splats on {len(g['rgb'])} views")
    rgbf = g["rgb"].astype(np.float32) / 255.0
    splats, metrics = train_object(rgbf, g["alpha"], g["c2w"], g["K"], pts, cols,
                                   object_config(opts.steps, opts.sh_degree, opts.seed, int(g['rgb'].shape[1])), opts.device, progress)
    progress.stage("refine", f"{opts.refine_rounds} rounds of back-projection refinement")
    splats, refine = refine_colours(splats, rgbf, g["alpha"], g["depth"], g["c2w"], g["K"],
                                    rounds=opts.refine_rounds, device=opts.device)
    progress.stage("write", "mesh, turntable and files")
    summary = write_outputs(Path(out_dir), splats, g, opts, progress)
    summary.update({"cutout": g["cutout"], "views": len(g["rgb"]), "view_size": int(g["rgb"].shape[1]),
                    "depth_source": g["depth_source"], "enhanced": models.get("enhance") is not None,
                    "initial_points": int(len(pts)), "train": {"psnr_views": metrics["psnr_holdout"], "seconds": metrics["train_seconds"],
                              "num_gaussians": metrics["num_gaussians"]},
                    "refine": refine, "note": SIZE_NOTE})
    (Path(out_dir) / "product.json").write_text(json.dumps(summary, indent=1))
    return summary
