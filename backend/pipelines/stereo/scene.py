"""Scene stereo: the right eye rendered from the splats of a reconstruction.

The left eye is the footage. The right camera is the left one moved ``interaxial`` along its
own +x axis (parallel, no toe-in); convergence is a horizontal sensor shift: its principal
point moves right by ``f * B / Z_c`` px, so a point at depth Z lands at
``x_right = x_left - f * B * (1/Z - 1/Z_c)`` (the same convention as the depth-warp method).

The right render's colours are matched to the footage (a per-channel gain/offset fitted
between the *left* render and the footage where the splats are opaque) and where the splats
do not cover the right view (alpha below 1) the depth-warped footage, warped with the splat
depth, fills in.

On CUDA (or with ``scene_compose="torch"``) a batch of frames stays on the device from render
to composite: both eyes are rendered in one rasterizer call (:func:`render_pair_device`), the
colour affine is fitted on a random subsample of the opaque pixels, the footage is warped and
its holes filled from their background side with tensor operations
(:func:`compose_right_torch`), and only the uint8 right eyes go back to the host. The numpy
path (:func:`render_pair`, :func:`compose_right`) is the CPU one.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from backend.pipelines.stereo.colour import apply_affine, fit_affine
from backend.progress import JobError, Progress


def right_eye_cameras(matrix_world, focal_px, principal_point_px, interaxial: float,
                      convergence: float | None = None):
    """Right-eye ``(matrix_world (C,4,4), principal_point_px (C,2))`` for Blender cameras.

    ``matrix_world`` is camera-to-world (Blender: camera looks down -Z, +X right, +Y up);
    ``convergence`` None means parallel cameras without shift (zero disparity at infinity).
    """
    mw = np.array(matrix_world, np.float64).reshape(-1, 4, 4)
    f = np.broadcast_to(np.asarray(focal_px, np.float64), (len(mw),))
    pp = np.array(np.broadcast_to(np.asarray(principal_point_px, np.float64), (len(mw), 2)))
    if interaxial < 0:
        raise ValueError(f"interaxial must be >= 0, got {interaxial}")
    x_axis = mw[:, :3, 0] / np.linalg.norm(mw[:, :3, 0], axis=1, keepdims=True)
    right = mw.copy()
    right[:, :3, 3] += interaxial * x_axis
    if convergence is not None:
        if not convergence > 0:
            raise ValueError(f"convergence must be > 0, got {convergence}")
        pp[:, 0] += f * interaxial / convergence
    return right, pp


def _find_cameras(reconstruction: Path, cameras: str | None) -> Path:
    if cameras:
        return Path(cameras)
    for name in ("cameras_refined.json", "cameras.json"):
        if (reconstruction / name).is_file():
            return reconstruction / name
    raise JobError(f"no cameras for the reconstruction {reconstruction}: pass --cameras (the solve's cameras.json)",
                   "bad_params")


def _find_splats(reconstruction: Path) -> Path:
    if reconstruction.is_file():
        return reconstruction
    for name in ("splats.ply", "splats.splat"):
        if (reconstruction / name).is_file():
            return reconstruction / name
    raise JobError(f"no splats.ply or splats.splat in {reconstruction}", "bad_input")


def render_pair(splats, matrix_world, focal_px, principal_point_px, width: int, height: int,
                src_size: tuple[int, int], interaxial: float, convergence: float | None, device: str = "cpu",
                left=None):
    """Render left and right eyes of the given cameras; returns the two render dicts.

    ``left`` reuses an existing left render.
    """
    from backend.pipelines.render import cameras_from_arrays, render_views

    mw_r, pp_r = right_eye_cameras(matrix_world, focal_px, principal_point_px, interaxial, convergence)
    if left is None:
        left = render_views(splats, cameras_from_arrays(matrix_world, focal_px, principal_point_px, width, height,
                                                        src_size), device=device)
    right = render_views(splats, cameras_from_arrays(mw_r, focal_px, pp_r, width, height, src_size), device=device)
    return left, right


def compose_right(footage: np.ndarray, left_render: dict, right_render: dict, i: int, focal_px: float,
                  interaxial: float, convergence: float | None, min_alpha: float = 0.98):
    """Right eye (H, W, 3) uint8 from the renders of camera ``i`` and the footage (RGB uint8)."""
    from backend.pipelines.stereo.disparity import complete_disparity, disparity_from_depth
    from backend.pipelines.stereo.fill import inpaint_background
    from backend.pipelines.stereo.warp import warp_right

    lr = left_render["rgb"][i] * 255.0
    rr = right_render["rgb"][i] * 255.0
    ra = right_render["alpha"][i]
    opaque = left_render["alpha"][i] > min_alpha
    matched = rr
    if opaque.sum() >= 64:
        matched = apply_affine(rr, fit_affine(lr, footage.astype(np.float32), opaque))
    disp = disparity_from_depth(left_render["depth"][i], focal_px, interaxial, convergence)
    known = np.isfinite(disp)
    warped = None
    if known.any():
        disp = complete_disparity(disp)
        w = warp_right(footage.astype(np.float32), disp)
        warped = inpaint_background(w.image, w.hole, w.z)
    else:
        warped = footage.astype(np.float32)
    a = np.clip(ra, 0.0, 1.0)[..., None]
    out = np.where(a >= min_alpha, matched, a * matched + (1 - a) * warped)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), disp, ra < min_alpha


def render_pair_device(splats, matrix_world, focal_px, principal_point_px, width: int, height: int,
                       src_size: tuple[int, int], interaxial: float, convergence: float | None,
                       device: str = "cpu", gaussians=None, batch: int = 16):
    """:func:`render_pair` with device-resident results: both eyes go to the rasterizer together
    (``batch`` cameras per call) and the two dicts hold torch tensors on ``device``."""
    from backend.pipelines.render import cameras_from_arrays, render_views_device

    mw = np.asarray(matrix_world, np.float64).reshape(-1, 4, 4)
    c = len(mw)
    f = np.broadcast_to(np.asarray(focal_px, np.float64), (c,))
    pp = np.broadcast_to(np.asarray(principal_point_px, np.float64), (c, 2))
    mw_r, pp_r = right_eye_cameras(mw, f, pp, interaxial, convergence)
    cams = cameras_from_arrays(np.concatenate([mw, mw_r]), np.concatenate([f, f]), np.concatenate([pp, pp_r]),
                               width, height, src_size)
    both = render_views_device(splats, cams, device=device, batch=batch, gaussians=gaussians)
    return {k: v[:c] for k, v in both.items()}, {k: v[c:] for k, v in both.items()}


def disparity_torch(depth, focal_px, interaxial: float, convergence: float | None):
    """:func:`.disparity.disparity_from_depth` of (B, H, W) depth tensors, completed like
    :func:`.disparity.complete_disparity` (unknown pixels take the farther row neighbour,
    rows without one the frame's minimum). ``focal_px`` is a number or one per frame."""
    import torch

    from backend.pipelines.stereo.rows import nearest_valid_columns, take_columns

    b, h, w = depth.shape
    f = torch.as_tensor(focal_px, dtype=torch.float32, device=depth.device).reshape(-1, 1, 1)
    inv = torch.where(depth > 0, 1.0 / depth, torch.full_like(depth, float("nan")))
    shift = 0.0 if convergence is None else 1.0 / float(convergence)
    d = (f * interaxial) * (inv - shift)
    ok = torch.isfinite(d)
    left, right = nearest_valid_columns(ok.reshape(b * h, w))
    flat = d.reshape(b * h, w)
    inf = torch.full_like(flat, float("inf"))
    lv = torch.where(left >= 0, take_columns(flat, left.clamp(0, w - 1)), inf)
    rv = torch.where(right < w, take_columns(flat, right.clamp(0, w - 1)), inf)
    fill = torch.minimum(lv, rv).reshape(b, h, w)
    lowest = torch.where(ok, d, inf.reshape(b, h, w)).amin(dim=(1, 2), keepdim=True)
    fill = torch.where(torch.isfinite(fill), fill, lowest.expand_as(fill))
    return torch.where(ok, d, fill), ok.any(dim=2).any(dim=1)


def compose_right_torch(footage, left_render: dict, right_render: dict, focal_px, interaxial: float,
                        convergence: float | None, min_alpha: float = 0.98, samples: int = 1 << 17,
                        generator=None):
    """:func:`compose_right` for a batch of frames as device tensors.

    ``footage`` (B, H, W, 3) uint8 tensor on the renders' device; the renders are those of
    :func:`render_pair_device`. The colour affine is fitted on ``samples`` random pixels per
    frame (:func:`.colour.fit_affine_torch`), the footage is forward-warped by the left splat
    disparity (:func:`.warp.warp_right`, all frames' rows at once: the warp is horizontal) and
    its holes filled from the background side (:func:`.fill.inpaint_background_torch`).
    Returns the right eyes (B, H, W, 3) uint8, the disparity (B, H, W) and the mask of pixels
    where the splats are not opaque (B, H, W), all on the device.
    """
    import torch

    with torch.no_grad():
        return _compose_right_torch(footage, left_render, right_render, focal_px, interaxial, convergence,
                                    min_alpha, samples, generator)


def _compose_right_torch(footage, left_render, right_render, focal_px, interaxial, convergence, min_alpha,
                         samples, generator):
    import torch

    from backend.pipelines.stereo.colour import apply_affine_torch, fit_affine_torch
    from backend.pipelines.stereo.fill import inpaint_background_torch
    from backend.pipelines.stereo.warp import warp_right

    foot = footage.float()
    b, h, w, _ = foot.shape
    lr = left_render["rgb"] * 255.0
    rr = right_render["rgb"] * 255.0
    ra = right_render["alpha"]
    coeffs = fit_affine_torch(lr, foot, left_render["alpha"] > min_alpha, samples=samples, generator=generator)
    matched = apply_affine_torch(rr, coeffs)
    disp, known = disparity_torch(left_render["depth"], focal_px, interaxial, convergence)
    wp = warp_right(foot.reshape(b * h, w, 3), disp.reshape(b * h, w))
    warped = inpaint_background_torch(wp.image.reshape(b, h, w, 3), wp.hole.reshape(b, h, w),
                                      wp.z.reshape(b, h, w))
    warped = torch.where(known[:, None, None, None], warped, foot)
    a = ra.clamp(0.0, 1.0)[..., None]
    out = torch.where(a >= min_alpha, matched, a * matched + (1 - a) * warped)
    return out.round().clamp(0, 255).to(torch.uint8), disp, ra < min_alpha


class DeviceStereo:
    """Right eyes for batches of frames on a torch device, from splats to uint8.

    The splats are uploaded once; each :meth:`right_eyes` call renders both eyes of its frames
    (:func:`render_pair_device`), composes on the device (:func:`compose_right_torch`) and
    copies back only the uint8 right eyes. On CUDA the footage goes up and the eyes come down
    through page-locked buffers (several times the bandwidth of pageable memory).
    """

    def __init__(self, splats, width: int, height: int, src_size: tuple[int, int], interaxial: float,
                 device: str = "cuda", seed: int = 0):
        import torch

        from backend.pipelines.render import splats_to_tensors

        self.splats, self.width, self.height, self.src_size = splats, int(width), int(height), src_size
        self.interaxial = float(interaxial)
        self.device = torch.device(device)
        self.gaussians = splats_to_tensors(splats, self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._pin = self.device.type == "cuda"
        self._up = self._down = None

    def _buffer(self, which: str, n: int):
        import torch

        buf = getattr(self, which)
        if buf is None or buf.shape[0] < n:
            buf = torch.empty((n, self.height, self.width, 3), dtype=torch.uint8, pin_memory=self._pin)
            setattr(self, which, buf)
        return buf[:n]

    def median_depth(self, matrix_world, focal_px, principal_point_px) -> float | None:
        """Median finite splat depth of the first given camera (the default convergence distance)."""
        from backend.pipelines.render import cameras_from_arrays, render_views_device

        cams = cameras_from_arrays(np.asarray(matrix_world, np.float64).reshape(-1, 4, 4)[:1],
                                   np.ravel(focal_px)[:1], np.reshape(principal_point_px, (-1, 2))[:1],
                                   self.width, self.height, self.src_size)
        z = render_views_device(self.splats, cams, self.device, gaussians=self.gaussians)["depth"][0].cpu().numpy()
        z = z[np.isfinite(z)]
        return float(np.median(z)) if z.size else None

    def right_eyes(self, footage, matrix_world, focal_px, principal_point_px, convergence: float | None,
                   focal_scale: float = 1.0, maps: bool = False):
        """Right eyes (N, H, W, 3) uint8 of the frames ``footage`` (N RGB uint8 images) seen by the
        given cameras (intrinsics at ``src_size``); with ``maps`` also the disparity and the
        non-opaque mask (numpy). ``convergence`` None means parallel cameras."""
        import torch

        n = len(footage)
        up = self._buffer("_up", n)
        np.stack(footage, out=up.numpy())
        foot = up.to(self.device, non_blocking=self._pin)
        left, right = render_pair_device(self.splats, matrix_world, focal_px, principal_point_px, self.width,
                                         self.height, self.src_size, self.interaxial, convergence, self.device,
                                         gaussians=self.gaussians)
        focal = [float(f) * focal_scale for f in np.ravel(focal_px)]
        eyes, disp, hole = compose_right_torch(foot, left, right, focal, self.interaxial, convergence,
                                               generator=self.generator)
        down = self._buffer("_down", n)
        down.copy_(eyes, non_blocking=self._pin)
        if self._pin:
            torch.cuda.current_stream(self.device).synchronize()
        out = down.numpy().copy()
        if maps:
            return out, disp.cpu().numpy(), hole.cpu().numpy()
        return out


def _scene_device(name) -> str:
    """The torch device scene stereo renders on: ``auto`` is CUDA when there is one, ``numpy`` the CPU."""
    if name in (None, "", "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu" if name == "numpy" else str(name)


def _use_torch_compose(mode: str, device: str) -> bool:
    """Compose on the device (torch) on CUDA, with numpy on the CPU; ``mode`` torch/numpy forces one."""
    if mode not in ("auto", "torch", "numpy"):
        raise JobError(f"stereo: scene compose must be auto, torch or numpy, got {mode!r}", "bad_params")
    if mode == "auto":
        return str(device).startswith("cuda")
    return mode == "torch"


def run_scene_stereo(p: dict, out_dir: Path, progress: Progress):
    """The ``stereo`` job's scene method (called by backend.jobs.stereo.run)."""
    from shared_protocol import camera_file

    from backend.results import JobResult
    from backend.media.encode import VideoWriter
    from backend.media.video import iter_frames, probe
    from backend.pipelines.splats_io import SplatFormatError, load_splats
    from backend.pipelines.stereo.layouts import compose, debug_grid

    recon = Path(p["reconstruction"])
    try:
        splats = load_splats(_find_splats(recon))
    except SplatFormatError as exc:
        raise JobError(str(exc), "bad_input") from None
    cam_path = _find_cameras(recon, p.get("cameras"))
    try:
        doc = camera_file.read(cam_path)
    except camera_file.CameraFileError as exc:
        raise JobError(str(exc), "bad_input") from None
    by_source = {str(f["source"]): f for f in doc["frames"] if f.get("registered", True)}
    info = probe(p["input"])
    src_size = (int(doc["width"]), int(doc["height"]))
    device = _scene_device(p.get("device"))
    use_torch = _use_torch_compose(p.get("scene_compose", "auto"), device)
    interaxial = float(p.get("interaxial", 0.065))
    convergence = p.get("convergence")
    total = info.frame_count if not p.get("max_frames") else min(info.frame_count, int(p["max_frames"]))
    fps = info.fps if info.fps > 0 else float(doc.get("fps") or 24.0)
    audio = None if info.is_image_folder else p["input"]
    progress.stage("stereo", "rendering right eyes")
    missing, n, batch = 0, 0, []
    scale = info.width / src_size[0]
    conv = convergence
    t0 = time.monotonic()

    state = {}

    def flush_device(writer):
        """Render both eyes and compose the batch on the device; only uint8 frames come back."""
        nonlocal conv
        cams = [f for _, _, f in batch if f is not None]
        eyes = disp = hole = None
        if cams:
            if "stereo" not in state:
                state["stereo"] = DeviceStereo(splats, info.width, info.height, src_size, interaxial, device)
            ds = state["stereo"]
            mw = [f["matrix_world"] for f in cams]
            fl = [f["focal_px"] for f in cams]
            pp = [f["principal_point_px"] for f in cams]
            if conv is None and "conv" not in state:  # default: the median splat depth of the first frame
                conv = state["conv"] = ds.median_depth(mw, fl, pp)
            res = ds.right_eyes([rgb for _, rgb, f in batch if f is not None], mw, fl, pp, conv, scale,
                                maps=bool(p.get("debug_grid")))
            eyes, disp, hole = res if p.get("debug_grid") else (res, None, None)
        write_batch(writer, lambda k, rgb, f: (eyes[k], *((disp[k], hole[k]) if p.get("debug_grid")
                                                          else (None, None))))

    def write_batch(writer, right_of):
        """Write the batch's frames; ``right_of(k, rgb, cam)`` gives the k-th camera frame's
        (right eye, disparity, hole); a frame without a camera gets the footage in both eyes."""
        nonlocal missing
        k = 0
        for _, rgb, f in batch:
            if f is None:
                missing += 1
                right_eye, disp, hole = rgb, np.zeros(rgb.shape[:2], np.float32), np.zeros(rgb.shape[:2], bool)
            else:
                right_eye, disp, hole = right_of(k, rgb, f)
                k += 1
            if p.get("debug_grid"):
                frame = debug_grid(rgb, disp, hole, right_eye)
            else:
                frame = compose(rgb, right_eye, p.get("layout", "sbs"), p.get("anaglyph", "dubois"))
            writer.write(frame)
        batch.clear()

    def flush(writer):
        nonlocal conv
        if use_torch:
            return flush_device(writer)
        cams = [f for _, _, f in batch if f is not None]
        if cams:
            from backend.pipelines.render import cameras_from_arrays, render_views

            mw = [f["matrix_world"] for f in cams]
            fl = [f["focal_px"] for f in cams]
            pp = [f["principal_point_px"] for f in cams]
            left = render_views(splats, cameras_from_arrays(mw, fl, pp, info.width, info.height, src_size),
                                device=device)
            if conv is None:  # default: the median splat depth of the first rendered frame
                z = left["depth"][0]
                z = z[np.isfinite(z)]
                conv = float(np.median(z)) if z.size else None
            left, right = render_pair(splats, mw, fl, pp, info.width, info.height, src_size, interaxial, conv,
                                      device, left=left)
        write_batch(writer, lambda k, rgb, f: compose_right(rgb, left, right, k, float(f["focal_px"]) * scale,
                                                            interaxial, conv))

    with VideoWriter(out_dir / "stereo.mp4", fps, audio_from=audio, crf=int(p.get("crf", 18))) as writer:
        for index, source, rgb in iter_frames(p["input"], max_frames=total):
            cam = by_source.get(str(source)) or by_source.get(f"{index:06d}.png")
            batch.append((index, rgb, cam))
            n += 1
            if len(batch) >= 8:
                flush(writer)
                progress.update(n / max(total, 1), f"frame {n}/{total}")
        if batch:
            flush(writer)
    elapsed = time.monotonic() - t0
    summary = {"method": "scene", "frames": n, "frames_without_camera": missing, "fps": round(fps, 4),
               "interaxial": interaxial, "convergence": conv, "cameras": str(cam_path), "device": device,
               "compose": "torch" if use_torch else "numpy",
               "layout": "debug-grid" if p.get("debug_grid") else p.get("layout", "sbs"),
               "audio": bool(writer.audio_codec), "seconds": round(elapsed, 3),
               "frames_per_second": round(n / elapsed, 3) if elapsed > 0 else None}
    return JobResult(files=["stereo.mp4"], summary=summary)


class SplatDepth:
    """Per-frame planar depth rendered from a reconstruction, for the depth-warp method.

    ``depth(index, source, h, w)`` renders the camera registered for that frame (looked up by
    ``source``, then by ``%06d.png``); a frame without a camera reuses the last rendered depth.
    """

    def __init__(self, reconstruction: str | Path, cameras: str | None = None, device: str = "cpu"):
        from shared_protocol import camera_file

        from backend.pipelines.splats_io import SplatFormatError, load_splats

        recon = Path(reconstruction)
        try:
            self.splats = load_splats(_find_splats(recon))
        except SplatFormatError as exc:
            raise JobError(str(exc), "bad_input") from None
        self.cameras_path = _find_cameras(recon, cameras)
        try:
            doc = camera_file.read(self.cameras_path)
        except camera_file.CameraFileError as exc:
            raise JobError(str(exc), "bad_input") from None
        self.src_size = (int(doc["width"]), int(doc["height"]))
        self.by_source = {str(f["source"]): f for f in doc["frames"] if f.get("registered", True)}
        first = next(iter(self.by_source.values()), None)
        if first is None:
            raise JobError(f"{self.cameras_path} has no registered camera", "bad_input")
        self.focal_src = float(first["focal_px"])
        self.device = "cpu" if device in ("numpy", "auto", None) else device
        self._last: np.ndarray | None = None

    def focal_px(self, width: int) -> float:
        return self.focal_src * width / self.src_size[0]

    def depth(self, index: int, source: str, h: int, w: int) -> np.ndarray:
        from backend.pipelines.render import cameras_from_arrays, render_views

        cam = self.by_source.get(str(source)) or self.by_source.get(f"{index:06d}.png")
        if cam is None:
            if self._last is None:
                raise JobError(f"frame {index} ({source}) has no camera in {self.cameras_path} and no earlier "
                               "frame has one", "bad_input")
            return self._last
        cams = cameras_from_arrays([cam["matrix_world"]], [cam["focal_px"]], [cam["principal_point_px"]], w, h,
                                   self.src_size)
        self._last = render_views(self.splats, cams, device=self.device)["depth"][0]
        return self._last
