"""An analytic textured scene rendered by ray casting in numpy, with exact camera truth.

The scene (world +Z up, metres): a textured ground plane z = 0, a few textured boxes standing
on it and the textured walls of an enclosing room. Cameras use the Blender convention
(camera-to-world, looking down local -Z, +Y up) and a pinhole with the principal point at the
image centre, pixel (0, 0) being the top-left corner of the top-left pixel, optionally with
COLMAP RADIAL distortion (normalised coordinates scaled by 1 + k1 r^2 + k2 r^4). Each pixel is the
mean of ``supersample``^2 rays, so edges are anti-aliased like a real sensor's footprint.

Used by tests and benchmarks to check camera solves against known poses and intrinsics; the
clip and its truth are written as PNG frames, an mp4 and a cameras.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from backend.synthetic.paths import look_at  # noqa: F401 (part of this module's API)


def _noise_texture(seed: int, size: int = 512) -> np.ndarray:
    """A periodic multi-scale noise texture in [0, 1] (rich in corners at every scale)."""
    import cv2

    rng = np.random.default_rng(seed)
    tex = np.zeros((size, size, 3), np.float32)
    for octave, weight in ((4, 1.0), (16, 0.7), (64, 0.5), (256, 0.35)):
        small = rng.random((octave, octave, 3)).astype(np.float32)
        tiled = np.tile(small, (3, 3, 1))
        up = cv2.resize(tiled, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
        tex += weight * up[size:2 * size, size:2 * size]
    tex -= tex.min()
    tex /= tex.max()
    return tex


@dataclass
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]


@dataclass
class Scene:
    """Ground at z=0, boxes on it, a room of half-size ``room`` and height ``room_height``."""

    boxes: list[Box] = field(default_factory=lambda: [
        Box((-0.9, 1.6, 0.0), (-0.3, 2.2, 0.7)),
        Box((0.2, 2.6, 0.0), (1.0, 3.2, 1.1)),
        Box((-0.2, 1.0, 0.0), (0.25, 1.4, 0.35)),
        Box((1.3, 1.2, 0.0), (1.7, 1.7, 0.5)),
    ])
    room: float = 5.0
    room_height: float = 3.5
    texels_per_metre: float = 160.0
    seed: int = 3

    def __post_init__(self):
        self._textures = [_noise_texture(self.seed + i) for i in range(3)]

    def _sample(self, tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        size = tex.shape[0]
        x = u * self.texels_per_metre
        y = v * self.texels_per_metre
        x0 = np.floor(x).astype(np.int64)
        y0 = np.floor(y).astype(np.int64)
        fx = (x - x0)[..., None]
        fy = (y - y0)[..., None]
        x0 %= size
        y0 %= size
        x1 = (x0 + 1) % size
        y1 = (y0 + 1) % size
        return ((tex[y0, x0] * (1 - fx) + tex[y0, x1] * fx) * (1 - fy)
                + (tex[y1, x0] * (1 - fx) + tex[y1, x1] * fx) * fy)

    def shade(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """RGB in [0, 1] seen along rays ``origins + t * dirs`` (both N x 3)."""
        return self._trace(origins, dirs)[0]

    def _trace(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(RGB in [0, 1], ray parameter t of the first hit) along ``origins + t * dirs``."""
        n = len(dirs)
        best_t = np.full(n, np.inf)
        best_p = np.zeros((n, 3))
        best_axis = np.zeros(n, np.int64)
        best_kind = np.zeros(n, np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dirs
            # Room interior: the nearest exit through any of the six faces.
            r, h = self.room, self.room_height
            lo = np.array([-r, -r, 0.0])
            hi = np.array([r, r, h])
            t_hi = np.where(dirs > 0, (hi - origins) * inv, np.inf)
            t_lo = np.where(dirs < 0, (lo - origins) * inv, np.inf)
            t_face = np.minimum(t_hi, t_lo)
            axis = np.argmin(t_face, axis=1)
            t = t_face[np.arange(n), axis]
            hit = np.isfinite(t) & (t > 0)
            best_t = np.where(hit, t, best_t)
            best_axis = np.where(hit, axis, best_axis)
            best_kind = np.where(hit, np.where(axis == 2, 0, 1), best_kind)
            for k, box in enumerate(self.boxes):
                blo, bhi = np.array(box.lo), np.array(box.hi)
                t1 = (blo - origins) * inv
                t2 = (bhi - origins) * inv
                tmin = np.minimum(t1, t2)
                tmax = np.maximum(t1, t2)
                tmin = np.where(np.isnan(tmin), -np.inf, tmin)
                tmax = np.where(np.isnan(tmax), np.inf, tmax)
                enter = tmin.max(axis=1)
                leave = tmax.min(axis=1)
                axis = tmin.argmax(axis=1)
                ok = (enter <= leave) & (enter > 1e-6) & (enter < best_t)
                best_t = np.where(ok, enter, best_t)
                best_axis = np.where(ok, axis, best_axis)
                best_kind = np.where(ok, 2, best_kind)
        best_p = origins + best_t[:, None] * dirs
        out = np.zeros((n, 3))
        light = {0: 1.0, 1: 0.8, 2: 0.65}
        for axis in range(3):
            sel = best_axis == axis
            if not sel.any():
                continue
            others = [a for a in range(3) if a != axis]
            p = best_p[sel]
            for kind in range(3):
                s2 = best_kind[sel] == kind
                if not s2.any():
                    continue
                tex = self._textures[kind]
                col = self._sample(tex, p[s2, others[0]] + 7.3 * axis, p[s2, others[1]] + 3.1 * axis)
                idx = np.flatnonzero(sel)[s2]
                out[idx] = col * light[axis] * (0.8 + 0.2 * (kind == 2))
        return np.clip(out, 0.0, 1.0), best_t

    def depth(self, c2w: np.ndarray, focal: float, width: int, height: int) -> np.ndarray:
        """HxW float32 z-depth (distance along the camera's viewing axis) at the pixel centres
        of an undistorted pinhole camera with the principal point at the image centre."""
        gx, gy = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        d_cam = np.stack([(gx - width / 2) / focal, -(gy - height / 2) / focal, -np.ones_like(gx)], -1)
        dirs = d_cam.reshape(-1, 3) @ np.asarray(c2w)[:3, :3].T
        origins = np.broadcast_to(np.asarray(c2w)[:3, 3], dirs.shape)
        return self._trace(origins, dirs)[1].reshape(height, width).astype(np.float32)

    def render(self, c2w: np.ndarray, focal: float, width: int, height: int,
               supersample: int = 2, k1: float = 0.0, k2: float = 0.0) -> np.ndarray:
        """HxWx3 uint8 image from a Blender camera-to-world matrix and focal length in pixels."""
        ss = supersample
        offs = (np.arange(ss) + 0.5) / ss
        xs = (np.arange(width)[:, None] + offs[None, :]).reshape(-1)
        ys = (np.arange(height)[:, None] + offs[None, :]).reshape(-1)
        gx, gy = np.meshgrid(xs, ys)
        u, v = undistort((gx - width / 2) / focal, (gy - height / 2) / focal, k1, k2)
        d_cam = np.stack([u, -v, -np.ones_like(gx)], -1).reshape(-1, 3)
        dirs = d_cam @ np.asarray(c2w)[:3, :3].T
        origins = np.broadcast_to(np.asarray(c2w)[:3, 3], dirs.shape)
        rgb = self.shade(origins, dirs).reshape(height, ss, width, ss, 3).mean(axis=(1, 3))
        return (rgb * 255.0 + 0.5).astype(np.uint8)


def undistort(xd: np.ndarray, yd: np.ndarray, k1: float, k2: float, iterations: int = 20):
    """Normalised coordinates whose RADIAL distortion gives ``(xd, yd)`` (fixed-point inverse)."""
    x, y = xd.copy(), yd.copy()
    if k1 == 0.0 and k2 == 0.0:
        return x, y
    for _ in range(iterations):
        r2 = x * x + y * y
        d = 1.0 + k1 * r2 + k2 * r2 * r2
        x, y = xd / d, yd / d
    return x, y


def rotate_about_z(m: np.ndarray, deg: float) -> np.ndarray:
    """``m`` with its rotation turned by ``deg`` about world +Z (its position kept)."""
    a = np.radians(deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    out = m.copy()
    out[:3, :3] = rz @ m[:3, :3]
    return out


def handheld_path(n: int, seed: int = 0, travel: float = 1.2, height: float = 1.6) -> np.ndarray:
    """``n`` Blender camera-to-world matrices: a sideways-and-forward walk with small jitter."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.0, 1.0, n)
    mats = []
    jitter = np.cumsum(rng.normal(0, 0.004, (n, 3)), axis=0)
    for i, u in enumerate(s):
        eye = np.array([-0.4 * travel + travel * u, -1.6 + 0.5 * travel * u, height]) + jitter[i]
        target = np.array([0.2 + 0.3 * np.sin(2.0 * u), 2.2, 0.5]) + 2 * jitter[i]
        mats.append(look_at(eye, target))
    return np.array(mats)


def pan_path(n: int, degrees: float = 30.0, height: float = 1.6) -> np.ndarray:
    """``n`` camera-to-world matrices of a tripod pan (pure rotation about a fixed centre)."""
    base = look_at((0.0, -1.5, height), (0.0, 2.0, 0.8))
    return np.array([rotate_about_z(base, a) for a in np.linspace(-degrees / 2, degrees / 2, n)])


def write_clip(out_dir: str | Path, c2w: np.ndarray, focal: float, width: int, height: int,
               fps: float = 24.0, scene: Scene | None = None, supersample: int = 2,
               video: bool = True, k1: float = 0.0, k2: float = 0.0, workers: int = 1,
               stereo: float | None = None, depth_every: int = 0) -> dict:
    """Render frames to ``out_dir/frames/NNNNN.png`` (+ ``clip.mp4``) and ``truth.json``,
    in ``workers`` processes.

    ``stereo``: also render a parallel right eye offset by this many metres along each camera's
    +x into ``out_dir/right/frames`` (``truth.json`` then records ``interaxial_m``), the layout
    of :func:`backend.synthetic.make_clip`. ``depth_every``: write the true z-depth of every
    n-th frame as ``out_dir/depth/NNNNNN.npy`` (float32, metres; 0 = none).
    Returns the truth as a cameras.json document (ground plane z = 0).
    """
    from shared_protocol import camera_file

    out = Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    scene = scene or Scene()
    writer = None
    if video:
        import imageio_ffmpeg

        writer = imageio_ffmpeg.write_frames(str(out / "clip.mp4"), (width, height), fps=fps,
                                             quality=None, bitrate=None,
                                             output_params=["-crf", "12", "-preset", "veryfast"],
                                             macro_block_size=1)
        writer.send(None)
    render = partial(_render_frame, scene, focal, width, height, supersample, k1, k2)
    try:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as pool:
                images = pool.map(render, c2w, chunksize=4)
                for i, img in enumerate(images):
                    _emit(out, i, img, writer)
        else:
            for i, m in enumerate(c2w):
                _emit(out, i, render(m), writer)
    finally:
        if writer is not None:
            writer.close()
    doc = camera_file.make_document(width, height, fps, c2w, focal, (width / 2, height / 2),
                                    sources=[f"{i:05d}.png" for i in range(len(c2w))], k1=k1, k2=k2,
                                    ground_plane={"point": [0, 0, 0], "normal": [0, 0, 1]})
    if stereo:
        right = np.array([m @ _translation(stereo) for m in np.asarray(c2w, np.float64)])
        write_clip(out / "right", right, focal, width, height, fps, scene, supersample, False, k1, k2, workers)
        doc["interaxial_m"] = float(stereo)
    if depth_every:
        (out / "depth").mkdir(exist_ok=True)
        for i in range(0, len(c2w), depth_every):
            np.save(out / "depth" / f"{i:06d}.npy", scene.depth(np.asarray(c2w[i]), focal, width, height))
    camera_file.write(out / "truth.json", doc)
    return doc


def _translation(dx: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 3] = dx
    return m


def _render_frame(scene, focal, width, height, supersample, k1, k2, c2w) -> np.ndarray:
    return scene.render(c2w, focal, width, height, supersample, k1, k2)


def _emit(out: Path, i: int, img: np.ndarray, writer) -> None:
    import cv2

    cv2.imwrite(str(out / "frames" / f"{i:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.send(np.ascontiguousarray(img))
